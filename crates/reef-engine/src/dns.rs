//! Feeding the embedded DNS server: which gateway addresses it listens on, and the table of
//! container names per network, republished after every change so a name resolves as soon
//! as `reef run -d` returns and stops resolving when its container stops.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use reef_core::etc;
use reef_core::model::Container;
use reef_core::names;
use reef_dns::{ContainerDns, DnsEndpoint, DnsState};

use super::{io_err, Engine, Inner, Result};

impl Engine {
    /// Serve DNS on a user network's gateway address.
    pub(crate) fn dns_listen(&self, gw: Ipv4Addr) -> Result<()> {
        let dns = self.dns.clone();
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
        let addrs: Vec<Ipv4Addr> = {
            let inner = self.lock();
            inner
                .networks
                .values()
                .filter(|n| n.name != names::DEFAULT_NETWORK)
                .filter_map(|n| n.driver.endpoints()?.dns_address())
                .collect()
        };
        for addr in addrs {
            if let Err(e) = self.dns_listen(addr) {
                tracing::warn!(%addr, error = %e, "embedded DNS cannot listen");
            }
        }
        let inner = self.lock();
        self.publish_dns(&inner);
    }

    /// Rebuild the DNS table from the state (after networks change).
    pub(crate) fn publish_dns(&self, inner: &Inner) {
        let sources = self.dns_sources(inner);
        let mut state = DnsState::default();
        for c in inner.containers.values() {
            if let Some(entry) = sources.container(c) {
                state.endpoints.extend(entry.endpoints);
                state.upstreams.insert(c.id.clone(), entry.upstreams);
            }
        }
        // Containers of other hosts on the overlays: resolvable, never asking.
        let remote = self.remote_dns_endpoints(inner);
        tracing::debug!(
            remote = remote.len(),
            "DNS table with other hosts' containers"
        );
        state.endpoints.extend(remote);
        state.gateways = sources.gateways;
        self.dns.publish(state);
        self.cluster_publish_all(inner);
    }

    /// Republish what DNS knows of container `id` alone (after it starts, stops, connects or
    /// disconnects): the cost does not grow with the number of containers.
    pub(crate) fn publish_dns_container(&self, inner: &Inner, id: &str) {
        let sources = self.dns_sources(inner);
        let entry = inner.containers.get(id).and_then(|c| sources.container(c));
        self.dns.update_container(id, entry.as_ref());
        self.cluster_publish_container(inner, id);
    }

    fn dns_sources(&self, inner: &Inner) -> DnsSources {
        let gateways = inner
            .networks
            .values()
            .filter(|n| n.name != names::DEFAULT_NETWORK)
            .filter_map(|n| Some((n.id.clone(), n.driver.endpoints()?.dns_address()?)))
            .collect();
        let host_servers = etc::parse_resolv_conf(&self.host.resolv_conf())
            .nameservers
            .iter()
            .filter_map(|s| s.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        let daemon_servers = self
            .cfg
            .dns
            .iter()
            .map(|ip| SocketAddr::new(*ip, 53))
            .collect();
        DnsSources {
            gateways,
            daemon_servers,
            host_servers,
        }
    }
}

/// What every container's DNS entries are derived from.
struct DnsSources {
    /// Network id -> gateway, for the networks with embedded DNS (user networks).
    gateways: HashMap<String, Ipv4Addr>,
    daemon_servers: Vec<SocketAddr>,
    host_servers: Vec<SocketAddr>,
}

impl DnsSources {
    /// A running container's attachments on networks with DNS and its upstream servers (its
    /// `--dns`, else the daemon's, else the host's); `None` when it has no such attachment.
    fn container(&self, c: &Container) -> Option<ContainerDns> {
        if !c.is_running() {
            return None;
        }
        let endpoints: Vec<DnsEndpoint> = c
            .endpoints
            .iter()
            .filter(|ep| self.gateways.contains_key(&ep.network_id))
            .map(|ep| {
                let mut names = vec![c.name.to_lowercase(), c.short_id().to_string()];
                names.extend(ep.aliases.iter().map(|a| a.to_lowercase()));
                DnsEndpoint {
                    container_id: c.id.clone(),
                    network_id: ep.network_id.clone(),
                    ip: ep.ip,
                    names,
                }
            })
            .collect();
        if endpoints.is_empty() {
            return None;
        }
        let own: Vec<SocketAddr> = c
            .spec
            .dns
            .iter()
            .filter_map(|s| s.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        let upstreams = [&own, &self.daemon_servers, &self.host_servers]
            .into_iter()
            .find(|v| !v.is_empty())
            .cloned()
            .unwrap_or_default();
        Some(ContainerDns {
            endpoints,
            upstreams,
        })
    }
}
