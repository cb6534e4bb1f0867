//! Feeding the embedded DNS server: which gateway addresses it listens on, and the table of
//! container names per network, republished after every change so a name resolves as soon
//! as `reef run -d` returns and stops resolving when its container stops.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use reef_core::etc;
use reef_core::model::BridgeNetwork;
use reef_core::names;
use reef_dns::{DnsEndpoint, DnsState};

use super::{io_err, Engine, Inner, Result};

impl Engine {
    /// Serve DNS on a user network's gateway address.
    pub(crate) fn dns_listen(&self, br: &BridgeNetwork) -> Result<()> {
        let dns = self.dns.clone();
        let gw = br.gateway;
        self.rt
            .block_on(async move { dns.listen(gw).await })
            .map_err(io_err(format!("embedded DNS: listen on {gw}:53")))
    }

    /// Stop serving a gateway address.
    pub(crate) fn dns_unlisten(&self, gw: Ipv4Addr) {
        self.dns.unlisten(gw);
    }

    /// Listen on every user network's gateway (at start-up).
    pub(crate) fn dns_listen_all(&self) {
        let bridges: Vec<BridgeNetwork> = {
            let inner = self.lock();
            inner
                .networks
                .values()
                .filter(|n| n.name != names::DEFAULT_NETWORK)
                .filter_map(|n| n.bridge.clone())
                .collect()
        };
        for br in bridges {
            if let Err(e) = self.dns_listen(&br) {
                tracing::warn!(bridge = %br.ifname, error = %e, "embedded DNS cannot listen");
            }
        }
        let inner = self.lock();
        self.publish_dns(&inner);
    }

    /// Rebuild the DNS table from the state.
    pub(crate) fn publish_dns(&self, inner: &Inner) {
        let mut state = DnsState::default();
        for n in inner.networks.values() {
            if n.name == names::DEFAULT_NETWORK {
                continue;
            }
            if let Some(br) = &n.bridge {
                state.gateways.insert(n.id.clone(), br.gateway);
            }
        }
        let host_servers: Vec<SocketAddr> = etc::parse_resolv_conf(&self.host.resolv_conf())
            .nameservers
            .iter()
            .filter_map(|s| s.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        let daemon_servers: Vec<SocketAddr> = self
            .cfg
            .dns
            .iter()
            .map(|ip| SocketAddr::new(*ip, 53))
            .collect();
        let mut upstreams: HashMap<String, Vec<SocketAddr>> = HashMap::new();
        for c in inner.containers.values().filter(|c| c.is_running()) {
            let mut on_user_net = false;
            for ep in &c.endpoints {
                if !state.gateways.contains_key(&ep.network_id) {
                    continue;
                }
                on_user_net = true;
                let mut names = vec![c.name.to_lowercase(), c.short_id().to_string()];
                names.extend(ep.aliases.iter().map(|a| a.to_lowercase()));
                state.endpoints.push(DnsEndpoint {
                    container_id: c.id.clone(),
                    network_id: ep.network_id.clone(),
                    ip: ep.ip,
                    names,
                });
            }
            if on_user_net {
                let own: Vec<SocketAddr> = c
                    .spec
                    .dns
                    .iter()
                    .filter_map(|s| s.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, 53))
                    .collect();
                let chosen = [own, daemon_servers.clone(), host_servers.clone()]
                    .into_iter()
                    .find(|v| !v.is_empty())
                    .unwrap_or_default();
                upstreams.insert(c.id.clone(), chosen);
            }
        }
        state.upstreams = upstreams;
        self.dns.publish(state);
    }
}
