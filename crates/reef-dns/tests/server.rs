//! End to end: real UDP and TCP queries against a listening [`DnsServer`], each test in a
//! private network namespace of its own (only `lo`, only addresses the test adds), with an
//! upstream server the test runs there too. Needs root, and fails (never skips) without it.

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use reef_dns::{DnsEndpoint, DnsServer, DnsState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::{timeout, Instant};

/// Runs `test` on a fresh thread moved into a new network namespace with `lo` up, on a
/// runtime whose threads all live there.
fn in_netns<F, Fut>(test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    assert!(
        nix::unistd::geteuid().is_root(),
        "reef-dns server tests must run as root: they create network namespaces"
    );
    let outer = std::fs::read_link("/proc/thread-self/ns/net").expect("read own netns");
    let thread = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        let inner = std::fs::read_link("/proc/thread-self/ns/net").expect("read new netns");
        assert_ne!(outer, inner, "not in a new network namespace");
        ip(&["link", "set", "lo", "up"]);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(test());
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `ip ARGS` in the calling thread's namespace.
fn ip(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

// The logical gateways of two networks; listeners on 127.0.0.1 stand in for them.
const GW_A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const GW_B: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
// Container addresses (all on lo inside the namespace).
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const WEB1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const WEB2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
const LONER: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 2);
const SECRET: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 3);
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 99);
/// What the test upstream answers for every A query (never contacted: just data).
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

fn cid(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

fn ep(c: char, net: &str, ip: Ipv4Addr, names: &[&str]) -> DnsEndpoint {
    let mut all: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    all.insert(1.min(all.len()), cid(c)[..12].to_string());
    DnsEndpoint {
        container_id: cid(c),
        network_id: net.into(),
        ip,
        names: all,
    }
}

fn state(upstreams: Vec<SocketAddr>) -> DnsState {
    let mut s = DnsState {
        endpoints: vec![
            ep('a', "neta", CLIENT, &["client"]),
            ep('b', "neta", WEB1, &["web1", "web"]),
            ep('c', "neta", WEB2, &["web2", "web"]),
            ep('d', "netb", LONER, &["loner"]),
            ep('e', "netb", SECRET, &["secret"]),
        ],
        gateways: HashMap::from([("neta".into(), GW_A), ("netb".into(), GW_B)]),
        upstreams: HashMap::new(),
    };
    s.upstreams.insert(cid('a'), upstreams.clone());
    s.upstreams.insert(cid('d'), upstreams);
    s
}

/// A server serving network A and B on 127.0.0.1 (ports returned).
async fn server(upstreams: Vec<SocketAddr>) -> (Arc<DnsServer>, SocketAddr, SocketAddr) {
    let server = DnsServer::new();
    server.publish(state(upstreams));
    let a = server
        .listen_on("127.0.0.1:0".parse().unwrap(), GW_A)
        .await
        .expect("listen A");
    let b = server
        .listen_on("127.0.0.1:0".parse().unwrap(), GW_B)
        .await
        .expect("listen B");
    (server, a, b)
}

fn query(id: u16, name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

/// Sends `q` over UDP from `from` and waits `wait` for the reply.
async fn udp_raw(server: SocketAddr, from: Ipv4Addr, q: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind((from, 0)).await.expect("bind client");
    sock.send_to(q, server).await.expect("send");
    let mut buf = vec![0u8; 65535];
    match timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        Ok(Err(e)) => panic!("recv: {e}"),
        Err(_) => None,
    }
}

async fn udp_msg(
    server: SocketAddr,
    from: Ipv4Addr,
    q: &Message,
    wait: Duration,
) -> Option<Message> {
    let reply = udp_raw(server, from, &q.to_vec().unwrap(), wait).await?;
    Some(Message::from_vec(&reply).expect("parse reply"))
}

async fn udp_ask(server: SocketAddr, from: Ipv4Addr, name: &str, qtype: RecordType) -> Message {
    udp_msg(
        server,
        from,
        &query(0x5151, name, qtype),
        Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|| panic!("no UDP answer for {name}"))
}

async fn tcp_connect(server: SocketAddr, from: Ipv4Addr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind((from, 0).into()).unwrap();
    sock.connect(server).await.expect("connect")
}

async fn tcp_send(stream: &mut TcpStream, m: &Message) {
    let bytes = m.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.unwrap();
}

async fn tcp_recv(stream: &mut TcpStream) -> Message {
    let len = timeout(Duration::from_secs(5), stream.read_u16())
        .await
        .expect("tcp reply in time")
        .expect("tcp length");
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

async fn tcp_ask(server: SocketAddr, from: Ipv4Addr, name: &str, qtype: RecordType) -> Message {
    let mut s = tcp_connect(server, from).await;
    tcp_send(&mut s, &query(0x7171, name, qtype)).await;
    tcp_recv(&mut s).await
}

fn addrs(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// Whether the peer closed `stream` (EOF or reset) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 1];
    match timeout(wait, stream.read(&mut b)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("unexpected data"),
        Err(_) => false,
    }
}

/// A tiny upstream: answers every A query with [`UPSTREAM_ANSWER`] over UDP and TCP on one
/// port, logging (transport, id, name) of what it saw. `tc.example` over UDP gets an empty
/// truncated reply; a `silent` upstream never answers at all.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// What an upstream saw: transport, query id, name.
type Seen = (&'static str, u16, String);

impl Upstream {
    async fn start(silent: bool) -> Upstream {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
                let q = Message::from_vec(&buf[..n]).unwrap();
                let name = q.queries[0].name().to_ascii();
                log.lock()
                    .unwrap()
                    .push(("udp", q.metadata.id, name.clone()));
                if silent {
                    continue;
                }
                let r = Self::reply(&q, name == "tc.example.");
                udp.send_to(&r.to_vec().unwrap(), peer).await.unwrap();
            }
        });
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = tcp.accept().await.unwrap();
                let log = log.clone();
                tokio::spawn(async move {
                    while let Ok(len) = s.read_u16().await {
                        let mut buf = vec![0u8; usize::from(len)];
                        s.read_exact(&mut buf).await.unwrap();
                        let q = Message::from_vec(&buf).unwrap();
                        let name = q.queries[0].name().to_ascii();
                        log.lock().unwrap().push(("tcp", q.metadata.id, name));
                        if silent {
                            continue;
                        }
                        let r = Self::reply(&q, false).to_vec().unwrap();
                        let mut framed = (r.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&r);
                        s.write_all(&framed).await.unwrap();
                    }
                });
            }
        });
        Upstream { addr, seen }
    }

    fn reply(q: &Message, truncated: bool) -> Message {
        let mut r = Message::response(q.metadata.id, q.metadata.op_code);
        r.metadata.recursion_desired = q.metadata.recursion_desired;
        r.metadata.recursion_available = true;
        r.add_queries(q.queries.iter().cloned());
        if truncated {
            r.metadata.truncation = true;
        } else if q.queries[0].query_type() == RecordType::A {
            r.add_answer(Record::from_rdata(
                q.queries[0].name().clone(),
                5,
                RData::A(A(UPSTREAM_ANSWER)),
            ));
        }
        r
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn names_short_ids_and_case_over_udp_and_tcp() {
    in_netns(|| async {
        let (_server, a, _) = server(vec![]).await;
        let short = cid('b')[..12].to_string();
        for name in [
            "web1",
            "WEB1",
            "Web1.",
            short.as_str(),
            &short.to_uppercase(),
        ] {
            for m in [
                udp_ask(a, CLIENT, name, RecordType::A).await,
                tcp_ask(a, CLIENT, name, RecordType::A).await,
            ] {
                assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
                assert_eq!(addrs(&m), vec![WEB1], "{name}");
                assert_eq!(m.answers[0].ttl, 600);
                assert_eq!(m.metadata.message_type, MessageType::Response);
            }
        }
        let m = udp_ask(a, CLIENT, "web1", RecordType::AAAA).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
    });
}

#[test]
fn shared_alias_returns_both_in_rotating_order() {
    in_netns(|| async {
        let (_server, a, _) = server(vec![]).await;
        let mut orders = std::collections::HashSet::new();
        for _ in 0..4 {
            let got = addrs(&udp_ask(a, CLIENT, "web", RecordType::A).await);
            let mut sorted = got.clone();
            sorted.sort();
            assert_eq!(sorted, vec![WEB1, WEB2]);
            orders.insert(got);
        }
        assert_eq!(orders.len(), 2, "order never rotated");
        let got = addrs(&tcp_ask(a, CLIENT, "web", RecordType::A).await);
        assert_eq!(got.len(), 2);
    });
}

#[test]
fn ptr_and_nxdomain() {
    in_netns(|| async {
        let (_server, a, _) = server(vec![]).await;
        let m = udp_ask(a, CLIENT, "4.0.0.127.in-addr.arpa.", RecordType::PTR).await;
        match &m.answers[..] {
            [r] => match &r.data {
                RData::PTR(p) => assert_eq!(p.0.to_ascii(), "web2."),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        for qtype in [RecordType::A, RecordType::AAAA] {
            let m = udp_ask(a, CLIENT, "nosuch", qtype).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        }
        let m = tcp_ask(a, CLIENT, "nosuch", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    });
}

#[test]
fn scoping_and_unknown_clients() {
    in_netns(|| async {
        let (_server, a, b) = server(vec![]).await;
        // A client on network A does not see B's containers, and vice versa.
        let m = udp_ask(a, CLIENT, "secret", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let m = udp_ask(b, LONER, "web1", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(
            addrs(&udp_ask(b, LONER, "secret", RecordType::A).await),
            vec![SECRET]
        );
        // Unknown sources: silence over UDP, REFUSED over TCP. LONER is known, but not on
        // the network served at `a`.
        for from in [STRANGER, LONER] {
            let q = query(1, "web1", RecordType::A);
            assert!(udp_msg(a, from, &q, Duration::from_millis(300))
                .await
                .is_none());
            let m = tcp_ask(a, from, "web1", RecordType::A).await;
            assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        }
    });
}

#[test]
fn forwards_over_udp_and_tcp_keeping_the_id() {
    in_netns(|| async {
        let up = Upstream::start(false).await;
        let (_server, a, _) = server(vec![up.addr]).await;
        let q = query(0xBEEF, "www.example.com", RecordType::A);
        let m = udp_msg(a, CLIENT, &q, Duration::from_secs(3))
            .await
            .expect("udp answer");
        assert_eq!(m.metadata.id, 0xBEEF);
        assert_eq!(addrs(&m), vec![UPSTREAM_ANSWER]);

        let mut s = tcp_connect(a, CLIENT).await;
        tcp_send(&mut s, &query(0xCAFE, "tcp.example.com", RecordType::A)).await;
        let m = tcp_recv(&mut s).await;
        assert_eq!(m.metadata.id, 0xCAFE);
        assert_eq!(addrs(&m), vec![UPSTREAM_ANSWER]);

        let seen = up.seen();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!((seen[0].0, seen[0].2.as_str()), ("udp", "www.example.com."));
        assert_eq!((seen[1].0, seen[1].2.as_str()), ("tcp", "tcp.example.com."));

        // Other types of known names are not forwarded; unknown dotted ones are.
        let m = udp_ask(a, CLIENT, "web1", RecordType::MX).await;
        assert!(m.answers.is_empty());
        udp_ask(a, CLIENT, "web1.example", RecordType::TXT).await;
        assert_eq!(up.seen().len(), 3);
    });
}

#[test]
fn truncated_upstream_answer_makes_the_client_retry_over_tcp() {
    in_netns(|| async {
        let up = Upstream::start(false).await;
        let (_server, a, _) = server(vec![up.addr]).await;
        let m = udp_ask(a, CLIENT, "tc.example", RecordType::A).await;
        assert!(m.metadata.truncation);
        let m = tcp_ask(a, CLIENT, "tc.example", RecordType::A).await;
        assert_eq!(addrs(&m), vec![UPSTREAM_ANSWER]);
    });
}

#[test]
fn servfail_when_upstreams_fail() {
    in_netns(|| async {
        // Nothing listens on port 1: refused at once.
        let dead: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let (_server, a, _) = server(vec![dead]).await;
        let started = Instant::now();
        let m = udp_ask(a, CLIENT, "www.example.com", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        let m = tcp_ask(a, CLIENT, "www.example.com", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(started.elapsed() < Duration::from_secs(1));
        // No upstreams at all: SERVFAIL too.
        let m = udp_ask(a, WEB1, "www.example.com", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    });
}

#[test]
fn silent_upstream_times_out_and_the_next_one_answers() {
    in_netns(|| async {
        let silent = Upstream::start(true).await;
        let good = Upstream::start(false).await;
        let (server, a, _) = server(vec![silent.addr, good.addr]).await;
        let started = Instant::now();
        let pending = tokio::spawn(udp_ask(a, CLIENT, "slow.example.com", RecordType::A));
        // Local answers are not held up by the forward in flight.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let local_started = Instant::now();
        udp_ask(a, CLIENT, "web1", RecordType::A).await;
        assert!(local_started.elapsed() < Duration::from_millis(500));
        let m = pending.await.unwrap();
        let took = started.elapsed();
        assert_eq!(addrs(&m), vec![UPSTREAM_ANSWER]);
        assert!(took >= Duration::from_millis(1900), "{took:?}");
        assert!(took < Duration::from_secs(4), "{took:?}");
        assert_eq!(silent.seen().len(), 1);

        // Only silent upstreams: SERVFAIL after the timeout.
        server.publish(state(vec![silent.addr]));
        let started = Instant::now();
        let m = tcp_ask(a, CLIENT, "slow.example.com", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(started.elapsed() >= Duration::from_millis(1900));
    });
}

#[test]
fn publish_takes_effect_at_once() {
    in_netns(|| async {
        let (server, a, _) = server(vec![]).await;
        let m = udp_ask(a, CLIENT, "late", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        // Keep a TCP connection open across the changes.
        let mut s = tcp_connect(a, CLIENT).await;
        for round in 0..3 {
            let mut st = state(vec![]);
            st.endpoints
                .push(ep('f', "neta", Ipv4Addr::new(127, 0, 0, 50), &["late"]));
            server.publish(st);
            assert_eq!(
                addrs(&udp_ask(a, CLIENT, "late", RecordType::A).await),
                vec![Ipv4Addr::new(127, 0, 0, 50)],
                "round {round}"
            );
            tcp_send(&mut s, &query(round, "late", RecordType::A)).await;
            assert_eq!(tcp_recv(&mut s).await.answers.len(), 1);
            server.publish(state(vec![]));
            let m = udp_ask(a, CLIENT, "late", RecordType::A).await;
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NXDomain,
                "round {round}"
            );
            tcp_send(&mut s, &query(round, "late", RecordType::A)).await;
            assert_eq!(
                tcp_recv(&mut s).await.metadata.response_code,
                ResponseCode::NXDomain
            );
        }
        // A container that stops is gone for good, clients included.
        let mut st = state(vec![]);
        st.endpoints.retain(|e| e.ip != CLIENT);
        server.publish(st);
        let q = query(1, "web1", RecordType::A);
        assert!(udp_msg(a, CLIENT, &q, Duration::from_millis(300))
            .await
            .is_none());
    });
}

#[test]
fn survives_malformed_packets() {
    in_netns(|| async {
        let up = Upstream::start(false).await;
        let (_server, a, _) = server(vec![up.addr]).await;
        let good = query(9, "web1", RecordType::A).to_vec().unwrap();
        let mut garbage: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xFF],
            vec![0; 11],
            vec![0xFF; 512],
            good[..good.len() - 3].to_vec(),
        ];
        let mut response = good.clone();
        response[2] |= 0x80;
        garbage.push(response);
        let mut pointer_loop = good.clone();
        pointer_loop[12] = 0xC0;
        pointer_loop[13] = 12;
        garbage.push(pointer_loop);
        // Pseudo-random junk, deterministic.
        let mut x: u32 = 0x1234_5678;
        for len in [12usize, 17, 40, 300, 4096] {
            garbage.push(
                (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect(),
            );
        }
        let sock = UdpSocket::bind((CLIENT, 0)).await.unwrap();
        for g in &garbage {
            sock.send_to(g, a).await.unwrap();
        }
        assert_eq!(
            addrs(&udp_ask(a, CLIENT, "web1", RecordType::A).await),
            vec![WEB1]
        );
        // Nothing malformed was answered or forwarded.
        let mut buf = [0u8; 512];
        assert!(
            timeout(Duration::from_millis(200), sock.recv_from(&mut buf))
                .await
                .is_err()
        );
        assert!(up.seen().is_empty());

        // TCP: garbage closes that connection; the next one works.
        for g in &garbage {
            let mut s = tcp_connect(a, CLIENT).await;
            let mut framed = (g.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(g);
            s.write_all(&framed).await.unwrap();
            assert!(closed_within(&mut s, Duration::from_secs(2)).await, "{g:?}");
        }
        assert_eq!(
            addrs(&tcp_ask(a, CLIENT, "web1", RecordType::A).await),
            vec![WEB1]
        );
    });
}

#[test]
fn udp_truncates_big_answers_without_edns() {
    in_netns(|| async {
        let server = DnsServer::new();
        let mut st = state(vec![]);
        for i in 0..40u8 {
            let c = char::from(b'g' + (i % 20));
            let mut e = ep(c, "neta", Ipv4Addr::new(127, 0, 3, i), &["crowd"]);
            e.container_id = format!("{:064x}", 1000 + u32::from(i));
            st.endpoints.push(e);
        }
        server.publish(st);
        let a = server
            .listen_on("127.0.0.1:0".parse().unwrap(), GW_A)
            .await
            .unwrap();
        let m = udp_ask(a, CLIENT, "crowd", RecordType::A).await;
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
        let m = tcp_ask(a, CLIENT, "crowd", RecordType::A).await;
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 40);
        // With EDNS the client takes more over UDP.
        let mut q = query(3, "crowd", RecordType::A);
        let mut e = Edns::new();
        e.set_max_payload(4096);
        q.set_edns(e);
        let m = udp_msg(a, CLIENT, &q, Duration::from_secs(2))
            .await
            .unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 40);
        assert!(m.edns.is_some());
    });
}

#[test]
fn tcp_pipelines_several_queries_per_connection() {
    in_netns(|| async {
        let up = Upstream::start(false).await;
        let (_server, a, _) = server(vec![up.addr]).await;
        let mut s = tcp_connect(a, CLIENT).await;
        let mut all = Vec::new();
        for (id, name) in [
            (1, "web1"),
            (2, "www.example.com"),
            (3, "web2"),
            (4, "nosuch"),
        ] {
            let bytes = query(id, name, RecordType::A).to_vec().unwrap();
            all.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            all.extend_from_slice(&bytes);
        }
        s.write_all(&all).await.unwrap();
        let mut got = HashMap::new();
        for _ in 0..4 {
            let m = tcp_recv(&mut s).await;
            got.insert(m.metadata.id, m);
        }
        assert_eq!(addrs(&got[&1]), vec![WEB1]);
        assert_eq!(addrs(&got[&2]), vec![UPSTREAM_ANSWER]);
        assert_eq!(addrs(&got[&3]), vec![WEB2]);
        assert_eq!(got[&4].metadata.response_code, ResponseCode::NXDomain);
    });
}

#[test]
fn tcp_idle_connections_are_closed_after_ten_seconds() {
    in_netns(|| async {
        let (_server, a, _) = server(vec![]).await;
        let mut s = tcp_connect(a, CLIENT).await;
        tcp_send(&mut s, &query(1, "web1", RecordType::A)).await;
        tcp_recv(&mut s).await;
        let idle_since = Instant::now();
        assert!(
            !closed_within(&mut s, Duration::from_secs(9)).await,
            "closed too early"
        );
        assert!(
            closed_within(&mut s, Duration::from_secs(3)).await,
            "never closed"
        );
        let idle = idle_since.elapsed();
        assert!(
            idle >= Duration::from_secs(9) && idle < Duration::from_secs(12),
            "{idle:?}"
        );
    });
}

#[test]
fn tcp_connections_are_capped() {
    in_netns(|| async {
        let (_server, a, _) = server(vec![]).await;
        let mut conns = Vec::new();
        for i in 0..reef_dns::MAX_TCP_CONNECTIONS {
            let mut s = tcp_connect(a, CLIENT).await;
            tcp_send(&mut s, &query(i as u16, "web1", RecordType::A)).await;
            assert_eq!(tcp_recv(&mut s).await.answers.len(), 1);
            conns.push(s);
        }
        let mut extra = tcp_connect(a, CLIENT).await;
        assert!(closed_within(&mut extra, Duration::from_secs(2)).await);
        // Room again once one goes.
        drop(conns.pop());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let m = tcp_ask(a, CLIENT, "web1", RecordType::A).await;
        assert_eq!(addrs(&m), vec![WEB1]);
    });
}

#[test]
fn listen_on_port_53_unlisten_and_listen_again() {
    in_netns(|| async {
        let gw = Ipv4Addr::new(10, 77, 0, 1);
        let me = Ipv4Addr::new(10, 77, 0, 2);
        ip(&["addr", "add", "10.77.0.1/32", "dev", "lo"]);
        ip(&["addr", "add", "10.77.0.2/32", "dev", "lo"]);
        let server = DnsServer::new();
        let mut st = state(vec![]);
        st.endpoints.push(ep('f', "neta", me, &["me"]));
        server.publish(st);
        let at: SocketAddr = (gw, 53).into();
        for _ in 0..3 {
            server.listen(gw).await.expect("listen on 53");
            server.listen(gw).await.expect("listen is idempotent");
            assert_eq!(
                addrs(&udp_ask(at, me, "web1", RecordType::A).await),
                vec![WEB1]
            );
            assert_eq!(addrs(&tcp_ask(at, me, "me", RecordType::A).await), vec![me]);
            let mut open = tcp_connect(at, me).await;
            server.unlisten(gw);
            assert!(closed_within(&mut open, Duration::from_secs(2)).await);
            let q = query(1, "web1", RecordType::A);
            assert!(udp_msg(at, me, &q, Duration::from_millis(300))
                .await
                .is_none());
        }
        // An address not in this namespace cannot be served.
        assert!(server.listen(Ipv4Addr::new(10, 99, 0, 1)).await.is_err());
    });
}

#[test]
fn dig_agrees() {
    in_netns(|| async {
        let (_server, a, _) = server(vec![]).await;
        let port = a.port().to_string();
        for tcp in [false, true] {
            let mut cmd = tokio::process::Command::new("dig");
            cmd.args([
                "@127.0.0.1",
                "-p",
                &port,
                "-b",
                "127.0.0.2",
                "+short",
                "+tries=1",
            ]);
            if tcp {
                cmd.arg("+tcp");
            }
            let out = cmd.args(["WEB", "A"]).output().await.expect("run dig");
            assert!(out.status.success(), "{out:?}");
            let mut lines: Vec<String> = String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect();
            lines.sort();
            assert_eq!(lines, vec!["127.0.0.3", "127.0.0.4"], "tcp={tcp}");
        }
    });
}
