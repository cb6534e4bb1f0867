//! The overlay driver: one network across the hosts of a cluster. On each host it is a
//! bridge (as a bridge network has, gateway address included) with a VXLAN device as a
//! port; the device learns nothing and floods nothing: each host programs a forwarding
//! entry (MAC -> remote host) and a neighbour entry (address -> MAC, answered by the
//! device's ARP proxy) for every endpoint of the other hosts, from the cluster store
//! (`cluster::converge_entries`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use core::net::Ipv4Addr;
use ipnet::Ipv4Net;

use super::{choose_addresses, CreateError, NetworkCreate, NetworkDriver, OPT_MTU};
use crate::cluster::{self, ClusterView};
use crate::model::{BridgeNetwork, Endpoint, Network, OverlayNetwork, Vtep};
use crate::names;
use crate::plan::{self, NsRef, Op, Plan, Step};

/// The VXLAN UDP port (IANA's).
pub const VXLAN_PORT: u16 = 4789;
/// What VXLAN adds to every frame: outer IPv4 (20), UDP (8), VXLAN (8), inner Ethernet
/// (14).
pub const VXLAN_OVERHEAD: u32 = 50;
/// `-o com.docker.network.driver.overlay.vxlanid_list=N`: Docker's option to choose the
/// VNI.
pub const OPT_VNI: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// What the creating host knows: its tunnel end and the MTU of the interface under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayHost {
    /// This host's tunnel end.
    pub vtep: Vtep,
    /// MTU of `vtep.underlay`.
    pub underlay_mtu: u32,
    /// Subnets in use on this host and on every host of the cluster (their addresses,
    /// routes and local networks).
    pub subnets_in_use: Vec<Ipv4Net>,
}

/// Decide an overlay network from a create request. `local` are this host's networks,
/// `view` the cluster's (whose networks and hosts' subnets it must not overlap).
pub fn decide(
    req: &NetworkCreate,
    id: &str,
    local: &[&Network],
    view: &ClusterView,
    host: &OverlayHost,
) -> Result<OverlayNetwork, CreateError> {
    let invalid = |m: String| CreateError::Invalid(m);
    for key in req.options.keys() {
        if key.starts_with("com.docker.network.bridge.") || key.starts_with("macvlan") {
            return Err(invalid(format!(
                "-o {key} is not an option of the overlay driver"
            )));
        }
    }
    let mut others: Vec<&Network> = local.to_vec();
    others.extend(view.networks.values().filter(|n| n.id != id));
    let mut in_use = host.subnets_in_use.clone();
    in_use.extend(view.hosts.values().flat_map(|h| h.subnets.iter().copied()));
    if let Some(s) = req.subnet {
        if let Some((h, sub)) = view.hosts.values().find_map(|h| {
            h.subnets
                .iter()
                .find(|x| crate::ipam::overlaps(**x, s))
                .map(|x| (h, *x))
        }) {
            return Err(CreateError::Conflict(format!(
                "invalid pool request: Pool overlaps with other one on this address space: \
                 {s} overlaps {sub}, a local network of host {} ({})",
                h.id, h.addr
            )));
        }
    }
    let (subnet, gateway) = choose_addresses(req, &others, &in_use)?;
    let mtu = match req.options.get(OPT_MTU) {
        Some(m) => match m.parse::<u32>() {
            Ok(v) if (68..=65535).contains(&v) => v,
            _ => return Err(invalid(format!("-o {OPT_MTU}={m}: not an MTU (68-65535)"))),
        },
        None => host.underlay_mtu.saturating_sub(VXLAN_OVERHEAD).max(68),
    };
    let vni = match req.options.get(OPT_VNI) {
        Some(v) => {
            let n: u32 = v
                .parse()
                .ok()
                .filter(|n| (1..=cluster::LAST_VNI).contains(n))
                .ok_or_else(|| invalid(format!("-o {OPT_VNI}={v}: not a VNI (1-16777215)")))?;
            if let Some(other) = view.vnis.get(&n) {
                return Err(CreateError::Conflict(format!(
                    "-o {OPT_VNI}={n}: VNI {n} is used by network {other}"
                )));
            }
            n
        }
        None => cluster::choose_vni(view)
            .ok_or_else(|| invalid("no VXLAN network identifier is left".into()))?,
    };
    Ok(OverlayNetwork {
        bridge: BridgeNetwork {
            ifname: names::overlay_bridge_name(id),
            subnet,
            gateway,
            bridge_addr: Some(
                Ipv4Net::new(gateway, subnet.prefix_len()).expect("prefix of a subnet"),
            ),
            ip_range: req.ip_range.map(|r| r.trunc()),
            mtu,
            owned: true,
        },
        vxlan: names::vxlan_name(id),
        vni,
        port: VXLAN_PORT,
        attachable: req.attachable,
        local: Some(host.vtep.clone()),
    })
}

/// The subnets of a host's local networks, which it publishes so that no overlay is made
/// over them.
pub fn local_subnets(networks: &[&Network]) -> Vec<Ipv4Net> {
    let set: BTreeSet<Ipv4Net> = networks
        .iter()
        .filter(|n| n.overlay().is_none())
        .filter_map(|n| n.pool().map(|p| p.subnet))
        .collect();
    set.into_iter().collect()
}

/// A global overlay record as this host keeps it: with its own tunnel end.
pub fn adopt(global: &Network, vtep: &Vtep) -> Network {
    let mut n = global.clone();
    if let crate::model::DriverConfig::Overlay { overlay } = &mut n.driver {
        overlay.local = Some(vtep.clone());
    }
    n
}

impl OverlayNetwork {
    /// The VXLAN device's own steps: created when missing, made a port of the bridge, up
    /// (also at start-up and in repair, where `exists` says whether it is there).
    pub fn plan_vxlan(&self, exists: bool) -> Plan {
        let mut p = Plan::default();
        let Some(vtep) = &self.local else {
            return p;
        };
        if !exists {
            p.steps.push(Step {
                op: Op::CreateVxlan {
                    name: self.vxlan.clone(),
                    vni: self.vni,
                    local: vtep.addr,
                    underlay: vtep.underlay.clone(),
                    port: self.port,
                    mtu: self.bridge.mtu,
                },
                undo: Some(Op::DeleteLink {
                    ns: NsRef::Host,
                    name: self.vxlan.clone(),
                }),
            });
        }
        p.push(
            Op::SetMaster {
                link: self.vxlan.clone(),
                master: self.bridge.ifname.clone(),
            },
            None,
        );
        p.push(
            Op::SetUp {
                ns: NsRef::Host,
                link: self.vxlan.clone(),
            },
            None,
        );
        p
    }

    /// The tunnel address of this host, if it has adopted the network.
    pub fn local_addr(&self) -> Option<Ipv4Addr> {
        self.local.as_ref().map(|v| v.addr)
    }
}

impl NetworkDriver for OverlayNetwork {
    fn plan_up(&self, exists: bool) -> Plan {
        let mut p = plan::bridge_setup(&self.bridge, exists);
        p.extend(self.plan_vxlan(exists));
        p
    }

    fn plan_down(&self) -> Plan {
        let mut p = Plan::default();
        for name in [&self.vxlan, &self.bridge.ifname] {
            p.steps.push(Step {
                op: Op::DeleteLink {
                    ns: NsRef::Host,
                    name: name.clone(),
                },
                undo: None,
            });
        }
        p
    }

    fn plan_join(&self, ep: &Endpoint, sandbox: PathBuf) -> Plan {
        plan::attach(&self.bridge, ep, sandbox)
    }

    fn host_ifname(&self, endpoint_id: &str) -> Option<String> {
        Some(names::veth_name(endpoint_id))
    }

    fn dns_address(&self) -> Option<Ipv4Addr> {
        Some(self.bridge.gateway)
    }

    fn refuses_ports(&self, _network: &str) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::HostRecord;

    fn host() -> OverlayHost {
        OverlayHost {
            vtep: Vtep {
                addr: "10.77.0.11".parse().unwrap(),
                underlay: "ens33".into(),
            },
            underlay_mtu: 1500,
            subnets_in_use: vec!["10.77.0.0/24".parse().unwrap()],
        }
    }

    fn req(subnet: Option<&str>) -> NetworkCreate {
        NetworkCreate {
            name: "ov".into(),
            driver: "overlay".into(),
            subnet: subnet.map(|s| s.parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn an_overlay_gets_a_bridge_a_vni_and_the_underlay_mtu_less_50() {
        let id = "0123456789ab".repeat(5) + "cdef";
        let ov = decide(
            &req(Some("10.42.0.0/24")),
            &id,
            &[],
            &ClusterView::default(),
            &host(),
        )
        .unwrap();
        assert_eq!(ov.bridge.ifname, "ov-0123456789ab");
        assert_eq!(ov.vxlan, "vx-0123456789ab");
        assert_eq!(ov.vni, cluster::FIRST_VNI);
        assert_eq!(ov.bridge.mtu, 1450);
        assert_eq!(ov.bridge.gateway, "10.42.0.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(
            ov.plan_up(false).to_string(),
            "ip link add ov-0123456789ab type bridge mtu 1450\n\
             ip link set ov-0123456789ab address 02:42:0a:2a:00:01\n\
             ip addr add 10.42.0.1/24 dev ov-0123456789ab\n\
             ip link set ov-0123456789ab up\n\
             ip link add vx-0123456789ab type vxlan id 4096 local 10.77.0.11 dev ens33 \
             dstport 4789 nolearning proxy mtu 1450\n\
             ip link set vx-0123456789ab master ov-0123456789ab\n\
             ip link set vx-0123456789ab up\n"
        );
        assert_eq!(
            ov.plan_down().to_string(),
            "ip link del vx-0123456789ab\nip link del ov-0123456789ab\n"
        );
        let global = cluster::global_record(&Network {
            id: id.clone(),
            name: "ov".into(),
            driver: crate::model::DriverConfig::Overlay { overlay: ov },
            internal: false,
            labels: Default::default(),
            options: Default::default(),
            created: "now".into(),
        });
        let json = serde_json::to_string(&global).unwrap();
        assert!(!json.contains("10.77.0.11"), "no host's own facts: {json}");
        let adopted = adopt(&global, &host().vtep);
        assert_eq!(
            adopted.overlay().unwrap().local_addr(),
            Some("10.77.0.11".parse().unwrap())
        );
        assert_eq!(adopted.scope(), "global");
    }

    #[test]
    fn overlaps_with_any_hosts_local_networks_are_refused() {
        let mut view = ClusterView::default();
        view.hosts.insert(
            "h2".into(),
            HostRecord {
                id: "h2".into(),
                addr: "10.77.0.12".parse().unwrap(),
                subnets: vec!["172.18.0.0/16".parse().unwrap()],
            },
        );
        let id = "ab".repeat(32);
        let e = decide(&req(Some("172.18.5.0/24")), &id, &[], &view, &host()).unwrap_err();
        assert!(
            matches!(&e, CreateError::Conflict(m) if m.contains("host h2")),
            "{e}"
        );
        // Without --subnet the pool chosen avoids the other host's subnets too.
        let ov = decide(&req(None), &id, &[], &view, &host()).unwrap();
        assert!(!crate::ipam::overlaps(
            ov.bridge.subnet,
            "172.18.0.0/16".parse().unwrap()
        ));
    }

    #[test]
    fn options_are_checked() {
        let id = "ab".repeat(32);
        let mut r = req(Some("10.42.0.0/24"));
        r.options.insert(OPT_MTU.into(), "1400".into());
        r.options.insert(OPT_VNI.into(), "77".into());
        let ov = decide(&r, &id, &[], &ClusterView::default(), &host()).unwrap();
        assert_eq!((ov.bridge.mtu, ov.vni), (1400, 77));
        let mut view = ClusterView::default();
        view.vnis.insert(77, "other".into());
        assert!(decide(&r, &id, &[], &view, &host()).is_err());
        let mut bad = req(None);
        bad.options
            .insert("com.docker.network.bridge.name".into(), "x".into());
        assert!(decide(&bad, &id, &[], &ClusterView::default(), &host()).is_err());
    }
}
