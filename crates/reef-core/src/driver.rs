//! The network-driver seam: what differs between drivers, behind one trait.
//!
//! A network's [`DriverConfig`] names its driver; the engine asks the driver for the plans
//! of the network's own objects (up, down) and of each endpoint (join, leave), and for the
//! facts that differ by driver (a host-side interface, the embedded DNS address, whether
//! ports can be published). `host` and `null` have no endpoints and so no driver here.
//! A new driver is a new [`DriverConfig`] variant, a type implementing [`NetworkDriver`],
//! and its create-time decision (see [`macvlan::decide`]).

pub mod macvlan;
pub mod overlay;

use core::net::Ipv4Addr;
use std::collections::BTreeMap;
use std::path::PathBuf;

use ipnet::Ipv4Net;

use crate::model::{BridgeNetwork, DriverConfig, Endpoint, MacvlanNetwork};
use crate::names;
use crate::plan::{self, NsRef, Op, Plan, Step};

/// `reef network create`, as asked (Docker's `POST /networks/create`).
#[derive(Debug, Clone, Default)]
pub struct NetworkCreate {
    /// Name.
    pub name: String,
    /// Driver (`bridge` when empty).
    pub driver: String,
    /// `--subnet`.
    pub subnet: Option<Ipv4Net>,
    /// `--ip-range`.
    pub ip_range: Option<Ipv4Net>,
    /// `--gateway`.
    pub gateway: Option<Ipv4Addr>,
    /// `--internal`.
    pub internal: bool,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `-o`.
    pub options: BTreeMap<String, String>,
    /// `--attachable` (overlay).
    pub attachable: bool,
}

/// `-o com.docker.network.driver.mtu=`: the MTU of a network's interfaces.
pub const OPT_MTU: &str = "com.docker.network.driver.mtu";

/// Why a network cannot be created as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    /// The request itself is wrong (Docker answers 400).
    #[error("{0}")]
    Invalid(String),
    /// It collides with what exists (Docker answers 409).
    #[error("{0}")]
    Conflict(String),
}

/// A new network's subnet and gateway: `--subnet` (which must not overlap another
/// network's) or the first free default pool, and `--gateway` (a host address of the
/// subnet) or the subnet's first host. `--ip-range` must lie within the subnet.
/// `in_use` are the subnets a chosen pool must avoid (the host's and the networks').
pub fn choose_addresses(
    req: &NetworkCreate,
    others: &[&crate::model::Network],
    in_use: &[Ipv4Net],
) -> Result<(Ipv4Net, Ipv4Addr), CreateError> {
    let subnet = match req.subnet {
        Some(s) => {
            let s = s.trunc();
            if let Some(n) = others
                .iter()
                .find(|n| n.pool().is_some_and(|p| crate::ipam::overlaps(p.subnet, s)))
            {
                return Err(CreateError::Conflict(format!(
                    "invalid pool request: Pool overlaps with other one on this address space: {s} overlaps network {}",
                    n.name
                )));
            }
            s
        }
        None => {
            crate::ipam::choose_subnet(in_use).map_err(|e| CreateError::Invalid(e.to_string()))?
        }
    };
    let gateway = match req.gateway {
        Some(gw) if !subnet.contains(&gw) || gw == subnet.network() || gw == subnet.broadcast() => {
            return Err(CreateError::Invalid(format!(
                "no matching subnet for gateway {gw}: it is not a host address of {subnet}"
            )))
        }
        Some(gw) => gw,
        None => crate::ipam::first_host(subnet),
    };
    if let Some(r) = req.ip_range {
        if !subnet.contains(&r) {
            return Err(CreateError::Invalid(format!(
                "--ip-range {r} is not within subnet {subnet}"
            )));
        }
    }
    Ok((subnet, gateway))
}

/// A network's own objects coming up at create: its driver's, and for a bridge what
/// published ports need and its firewall rule (`rule`, when reef writes a firewall).
pub fn network_up(net: &crate::model::Network, rule: Option<crate::firewall::NetworkRule>) -> Plan {
    let Some(driver) = net.driver.endpoints() else {
        return Plan::default();
    };
    let mut plan = driver.plan_up(false);
    if let (Some(br), Some(rule)) = (net.bridge(), rule) {
        plan.extend(plan::bridge_publishing(&br.ifname));
        plan.extend(plan::firewall(crate::firewall::Elements {
            networks: vec![rule],
            ..Default::default()
        }));
    }
    plan
}

/// A network's own objects going at `network rm`: its firewall rule, then its driver's
/// objects. Each op tolerates its object being gone; the caller applies them all.
pub fn network_down(
    net: &crate::model::Network,
    rule: Option<crate::firewall::NetworkRule>,
) -> Vec<Op> {
    let mut ops = Vec::new();
    if let (Some(_), Some(rule)) = (net.bridge(), rule) {
        ops.push(Op::FirewallDelete(crate::firewall::Elements {
            networks: vec![rule],
            ..Default::default()
        }));
    }
    if let Some(driver) = net.driver.endpoints() {
        ops.extend(driver.plan_down().steps.into_iter().map(|s| s.op));
    }
    ops
}

/// Rebuild an endpoint whose attachment drifted or was cut off: clear what is left of it
/// (the host end, the container's end), then join it again.
pub fn rejoin(driver: &dyn NetworkDriver, ep: &Endpoint, sandbox: PathBuf) -> Plan {
    let mut p = Plan::default();
    if let Some(host) = &ep.host_ifname {
        p.steps.push(Step {
            op: Op::DeleteLink {
                ns: NsRef::Host,
                name: host.clone(),
            },
            undo: None,
        });
    }
    p.steps.push(Step {
        op: Op::DeleteLink {
            ns: NsRef::Sandbox(sandbox.clone()),
            name: ep.ifname.clone(),
        },
        undo: None,
    });
    p.extend(driver.plan_join(ep, sandbox));
    p
}

/// What differs between drivers whose containers have endpoints.
pub trait NetworkDriver {
    /// Bring the network's own kernel objects up; `exists` says they are there already
    /// (a daemon restart), so only what is missing is planned.
    fn plan_up(&self, exists: bool) -> Plan;
    /// Remove the network's own kernel objects (those reef made; never a user's).
    fn plan_down(&self) -> Plan;
    /// Attach an endpoint to a container's sandbox.
    fn plan_join(&self, ep: &Endpoint, sandbox: PathBuf) -> Plan;
    /// The host-namespace interface of a new endpoint with this id, if the driver has one.
    fn host_ifname(&self, endpoint_id: &str) -> Option<String>;
    /// The address the embedded DNS server answers on for this network's containers, if
    /// it can serve them.
    fn dns_address(&self) -> Option<Ipv4Addr>;
    /// Why ports cannot be published from this network's containers, if they cannot.
    fn refuses_ports(&self, network: &str) -> Option<String>;
}

impl DriverConfig {
    /// The driver of a network whose containers get endpoints; `None` for host and null.
    pub fn endpoints(&self) -> Option<&dyn NetworkDriver> {
        match self {
            DriverConfig::Bridge { bridge } => Some(bridge),
            DriverConfig::Macvlan { macvlan } => Some(macvlan),
            DriverConfig::Overlay { overlay } => Some(overlay),
            DriverConfig::Host | DriverConfig::Null => None,
        }
    }
}

impl NetworkDriver for BridgeNetwork {
    fn plan_up(&self, exists: bool) -> Plan {
        plan::bridge_setup(self, exists)
    }

    fn plan_down(&self) -> Plan {
        let mut p = Plan::default();
        if self.owned {
            p.steps.push(Step {
                op: Op::DeleteLink {
                    ns: NsRef::Host,
                    name: self.ifname.clone(),
                },
                undo: None,
            });
        }
        p
    }

    fn plan_join(&self, ep: &Endpoint, sandbox: PathBuf) -> Plan {
        plan::attach(self, ep, sandbox)
    }

    fn host_ifname(&self, endpoint_id: &str) -> Option<String> {
        Some(names::veth_name(endpoint_id))
    }

    fn dns_address(&self) -> Option<Ipv4Addr> {
        Some(self.gateway)
    }

    fn refuses_ports(&self, _network: &str) -> Option<String> {
        None
    }
}

impl NetworkDriver for MacvlanNetwork {
    fn plan_up(&self, exists: bool) -> Plan {
        let mut p = Plan::default();
        if !self.created_parent {
            // A user's parent is theirs: reef neither creates nor changes it.
            return p;
        }
        if !exists {
            let op = match macvlan::vlan_of(&self.parent) {
                Some((base, vlan_id)) => Op::CreateVlan {
                    name: self.parent.clone(),
                    parent: base.to_string(),
                    vlan_id,
                },
                None => Op::CreateDummy {
                    name: self.parent.clone(),
                },
            };
            p.steps.push(Step {
                op,
                undo: Some(Op::DeleteLink {
                    ns: NsRef::Host,
                    name: self.parent.clone(),
                }),
            });
        }
        // A macvlan link carries traffic only while its parent is up.
        p.steps.push(Step {
            op: Op::SetUp {
                ns: NsRef::Host,
                link: self.parent.clone(),
            },
            undo: None,
        });
        p
    }

    fn plan_down(&self) -> Plan {
        let mut p = Plan::default();
        if self.created_parent {
            p.steps.push(Step {
                op: Op::DeleteLink {
                    ns: NsRef::Host,
                    name: self.parent.clone(),
                },
                undo: None,
            });
        }
        p
    }

    fn plan_join(&self, ep: &Endpoint, sandbox: PathBuf) -> Plan {
        plan::attach_macvlan(self, ep, sandbox)
    }

    fn host_ifname(&self, _endpoint_id: &str) -> Option<String> {
        None
    }

    fn dns_address(&self) -> Option<Ipv4Addr> {
        // reef's DNS server listens in the host namespace, which a macvlan container
        // cannot reach through its parent (the kernel does not pass frames between a
        // parent and its macvlans).
        None
    }

    fn refuses_ports(&self, network: &str) -> Option<String> {
        Some(format!(
            "cannot publish ports of a container on the macvlan network {network}: \
             it has an address of its own on the parent's segment; connect to that instead"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MacvlanMode;

    fn macvlan(parent: &str, created_parent: bool) -> MacvlanNetwork {
        MacvlanNetwork {
            parent: parent.into(),
            mode: MacvlanMode::Bridge,
            subnet: "192.168.50.0/24".parse().unwrap(),
            gateway: "192.168.50.1".parse().unwrap(),
            ip_range: None,
            mtu: None,
            created_parent,
        }
    }

    fn ep() -> Endpoint {
        Endpoint {
            id: "e".repeat(64),
            network_id: "n".repeat(64),
            ifname: "eth0".into(),
            host_ifname: None,
            ip: "192.168.50.2".parse().unwrap(),
            prefix_len: 24,
            gateway: Some("192.168.50.1".parse().unwrap()),
            mac: "02:42:c0:a8:32:02".into(),
            aliases: vec![],
            pending: false,
        }
    }

    #[test]
    fn macvlan_join_makes_the_link_inside_the_sandbox() {
        let plan = macvlan("eth0", false).plan_join(&ep(), "/run/reef/netns/c1".into());
        assert_eq!(
            plan.to_string(),
            "ip link add eth0 link eth0 address 02:42:c0:a8:32:02 netns /run/reef/netns/c1 \
             type macvlan mode bridge\n\
             nsenter --net=/run/reef/netns/c1 ip addr add 192.168.50.2/24 dev eth0\n\
             nsenter --net=/run/reef/netns/c1 ip link set eth0 up\n\
             nsenter --net=/run/reef/netns/c1 ip route add default via 192.168.50.1 dev eth0\n"
        );
        // Undone inside the sandbox: nothing of it is in the host namespace.
        assert_eq!(
            plan.rollback(1),
            vec![Op::DeleteLink {
                ns: NsRef::Sandbox("/run/reef/netns/c1".into()),
                name: "eth0".into()
            }]
        );
    }

    #[test]
    fn a_users_parent_is_left_alone() {
        let net = macvlan("eth0", false);
        assert!(net.plan_up(false).steps.is_empty());
        assert!(net.plan_down().steps.is_empty());
    }

    #[test]
    fn reef_makes_and_removes_a_vlan_or_dummy_parent() {
        let vlan = macvlan("eth0.10", true);
        assert_eq!(
            vlan.plan_up(false).to_string(),
            "ip link add link eth0 name eth0.10 type vlan id 10\nip link set eth0.10 up\n"
        );
        assert_eq!(vlan.plan_up(true).to_string(), "ip link set eth0.10 up\n");
        assert_eq!(vlan.plan_down().to_string(), "ip link del eth0.10\n");
        let dummy = macvlan("dm-0123456789ab", true);
        assert_eq!(
            dummy.plan_up(false).to_string(),
            "ip link add dm-0123456789ab type dummy\nip link set dm-0123456789ab up\n"
        );
    }

    #[test]
    fn only_bridges_have_host_ends_dns_and_ports() {
        let br = BridgeNetwork {
            ifname: "br-x".into(),
            subnet: "10.1.0.0/24".parse().unwrap(),
            gateway: "10.1.0.1".parse().unwrap(),
            bridge_addr: None,
            ip_range: None,
            mtu: 1500,
            owned: true,
        };
        let id = "ab".repeat(32);
        assert_eq!(br.host_ifname(&id), Some(names::veth_name(&id)));
        assert_eq!(br.dns_address(), Some("10.1.0.1".parse().unwrap()));
        assert!(br.refuses_ports("x").is_none());
        let mv = macvlan("eth0", false);
        assert_eq!(mv.host_ifname(&id), None);
        assert_eq!(mv.dns_address(), None);
        assert!(mv
            .refuses_ports("lan")
            .unwrap()
            .contains("macvlan network lan"));
        assert!(DriverConfig::Host.endpoints().is_none());
        assert!(DriverConfig::Null.endpoints().is_none());
    }
}
