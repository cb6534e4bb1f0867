//! Temporary: serve a fixed table on 127.0.0.1:5300 for dnsperf (client 127.0.0.1).
use reef_dns::{DnsEndpoint, DnsServer, DnsState};
use std::net::Ipv4Addr;
fn main() {
    let workers: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = DnsServer::new();
        let mut st = DnsState::default();
        st.gateways.insert("n".into(), Ipv4Addr::new(10, 0, 0, 1));
        for (i, name) in ["client", "web", "db"].iter().enumerate() {
            st.endpoints.push(DnsEndpoint {
                container_id: format!("{:064x}", i),
                network_id: "n".into(),
                ip: if i == 0 {
                    Ipv4Addr::LOCALHOST
                } else {
                    Ipv4Addr::new(10, 0, 0, 2 + i as u8)
                },
                names: vec![name.to_string(), format!("{:012x}", i)],
            });
        }
        s.publish(st);
        s.listen_on(
            "127.0.0.1:5300".parse().unwrap(),
            Ipv4Addr::new(10, 0, 0, 1),
        )
        .await
        .unwrap();
        std::future::pending::<()>().await;
    });
}
