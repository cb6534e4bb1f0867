//! Published ports and legacy links of a container being started on a bridge network:
//! host port choice and conflict checks, source allow-lists, link hosts entries,
//! environment and firewall openings.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use reef_core::firewall::{LinkRule, PortRule};
use reef_core::links;
use reef_core::model::{Container, ContainerSpec, PortBinding};
use reef_core::ports::{self, PortSpec, Proto};

use super::{Engine, EngineError, Inner, Result};

/// What links add to a container.
#[derive(Default)]
pub(crate) struct LinkSetup {
    /// `/etc/hosts` entries: address and names.
    pub hosts: Vec<(Ipv4Addr, Vec<String>)>,
    /// Environment variables.
    pub env: Vec<String>,
    /// Firewall openings.
    pub rules: Vec<LinkRule>,
}

/// Exposed ports of a spec: `--expose` plus the container side of `-p`, sorted, unique.
pub fn exposed(spec: &ContainerSpec) -> Vec<(u16, Proto)> {
    let set: BTreeSet<(u16, Proto)> = spec
        .expose
        .iter()
        .copied()
        .chain(spec.publish.iter().map(|p| (p.container_port, p.proto)))
        .collect();
    set.into_iter().collect()
}

/// Two host bindings of one port collide when they are of one family and either is the
/// wildcard or both are the same address (IPv6 relays are IPV6_V6ONLY, IPv4 ports are NAT).
fn ip_collides(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a.is_unspecified() || b.is_unspecified() || a == b)
}

impl Engine {
    /// Choose host ports for `c`'s `-p`/`-P` and build their firewall rules.
    pub(crate) fn allocate_ports(
        &self,
        inner: &Inner,
        c: &Container,
        ctr_ip: Ipv4Addr,
        default_ip: IpAddr,
    ) -> Result<(Vec<PortBinding>, Vec<PortRule>)> {
        let mut wanted: Vec<PortSpec> = c.spec.publish.clone();
        if c.spec.publish_all {
            for (port, proto) in exposed(&c.spec) {
                if !wanted
                    .iter()
                    .any(|p| p.container_port == port && p.proto == proto)
                {
                    wanted.push(PortSpec {
                        host_ip: None,
                        host_port: None,
                        host_range: None,
                        container_port: port,
                        proto,
                    });
                }
            }
        }
        if wanted.is_empty() {
            return Ok((vec![], vec![]));
        }
        if !self.cfg.iptables {
            return Err(EngineError::Invalid(
                "cannot publish ports: reefd runs with --iptables=false, and reef publishes ports only through its firewall".into(),
            ));
        }
        let used: Vec<(IpAddr, u16, Proto)> = inner
            .containers
            .values()
            .filter(|o| o.id != c.id)
            .flat_map(|o| o.ports.iter().map(|b| (b.host_ip, b.host_port, b.proto)))
            .collect();
        let mut out: Vec<PortBinding> = Vec::new();
        let mut rules = Vec::new();
        for spec in wanted {
            let host_ip = spec.host_ip.unwrap_or(default_ip);
            if host_ip.is_ipv6() && spec.proto == Proto::Sctp {
                return Err(EngineError::Invalid(format!(
                    "cannot publish {}/sctp on [{host_ip}]: IPv6 host addresses carry tcp and udp",
                    spec.container_port
                )));
            }
            let taken_by_container = |port: u16| {
                let hit = |ip: IpAddr, p: u16, pr: Proto| {
                    p == port && pr == spec.proto && ip_collides(ip, host_ip)
                };
                used.iter().any(|&(ip, p, pr)| hit(ip, p, pr))
                    || out.iter().any(|b| hit(b.host_ip, b.host_port, b.proto))
            };
            let taken_on_host = |port: u16| self.host.port_in_use(spec.proto, host_ip, port);
            let host_port = match (spec.host_port, spec.host_range) {
                (Some(p), _) => {
                    if taken_by_container(p) {
                        return Err(EngineError::Conflict(format!(
                            "Bind for {host_ip}:{p} failed: port is already allocated"
                        )));
                    }
                    if taken_on_host(p) {
                        return Err(EngineError::Conflict(format!(
                            "Bind for {host_ip}:{p} failed: address already in use by a process on the host"
                        )));
                    }
                    p
                }
                (None, Some((lo, hi))) => ports::first_free(lo, hi, |p| {
                    taken_by_container(p) || taken_on_host(p)
                })
                .ok_or_else(|| {
                    EngineError::Conflict(format!(
                        "Bind for {host_ip}:{lo}-{hi} failed: every port of the range is already allocated"
                    ))
                })?,
                (None, None) => {
                    let (lo, hi) = self.host.ephemeral_range();
                    ports::first_free(lo, hi, |p| taken_by_container(p) || taken_on_host(p))
                        .ok_or_else(|| {
                            EngineError::Conflict(format!(
                                "no free host port left in the ephemeral range {lo}-{hi}"
                            ))
                        })?
                }
            };
            let allow = c
                .spec
                .publish_allow
                .iter()
                .filter(|a| a.host_port == host_port && a.proto == spec.proto)
                .flat_map(|a| a.sources.iter().copied())
                .collect();
            out.push(PortBinding {
                host_ip,
                host_port,
                container_port: spec.container_port,
                proto: spec.proto,
            });
            // IPv6 bindings are relayed by reefd (see proxy.rs), IPv4 ones NATed by the kernel.
            if let IpAddr::V4(v4) = host_ip {
                rules.push(PortRule {
                    host_ip: (!v4.is_unspecified()).then_some(v4),
                    host_port,
                    proto: spec.proto,
                    ctr_ip,
                    ctr_port: spec.container_port,
                    allow,
                });
            }
        }
        Ok((out, rules))
    }

    /// Resolve `--link`s: each target must run on the same network.
    pub(crate) fn link_setup(
        &self,
        inner: &Inner,
        c: &Container,
        network_id: &str,
        ctr_ip: Ipv4Addr,
    ) -> Result<LinkSetup> {
        let mut setup = LinkSetup::default();
        for (name, alias) in &c.spec.links {
            let t = self.find_in(inner, name).map_err(|_| {
                EngineError::NotFound(format!(
                    "could not get container for {name}: No such container: {name}"
                ))
            })?;
            if !t.is_running() {
                return Err(EngineError::Conflict(format!(
                    "Cannot link to a non running container: /{} AS /{}/{alias}",
                    t.name, c.name
                )));
            }
            let ep = t
                .endpoints
                .iter()
                .find(|e| e.network_id == network_id)
                .ok_or_else(|| {
                    EngineError::Invalid(format!(
                        "Cannot link to /{}, as it does not belong to the same network",
                        t.name
                    ))
                })?;
            let mut names = vec![alias.clone()];
            for n in [t.short_id().to_string(), t.name.clone()] {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            setup.hosts.push((ep.ip, names));
            let exposed = exposed(&t.spec);
            setup.env.extend(links::link_env(
                alias,
                &c.name,
                ep.ip,
                &exposed,
                &t.spec.env,
            ));
            setup
                .rules
                .extend(exposed.iter().map(|(port, proto)| LinkRule {
                    src: ctr_ip,
                    dst: ep.ip,
                    proto: *proto,
                    port: *port,
                }));
        }
        Ok(setup)
    }
}
