//! `reef host bridge-nic`: the reference's manual step of putting a host's NIC on a bridge
//! (so containers share its segment) done as one plan with its undo. The NIC becomes a
//! port of the bridge, its addresses and routes move to the bridge, and the bridge takes
//! the NIC's MAC so the neighbours' ARP caches stay right. Undoing the plan (a gateway
//! that stops answering, or `reef host unbridge-nic`) puts everything back.

use core::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use crate::names;
use crate::plan::{NsRef, Op, Plan};

/// A route through the NIC that is not a connected one (those follow the addresses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicRoute {
    /// Destination (`0.0.0.0/0` for the default route).
    pub dst: Ipv4Net,
    /// Next hop.
    pub via: Option<Ipv4Addr>,
}

/// What `bridge-nic` did, kept so `unbridge-nic` can undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgedNic {
    /// The NIC.
    pub nic: String,
    /// The bridge it is a port of now.
    pub bridge: String,
    /// True when reef created the bridge (and so deletes it on undo).
    pub created_bridge: bool,
    /// The NIC's MAC (the bridge took it).
    pub mac: [u8; 6],
    /// The NIC's MTU (the bridge got it).
    pub mtu: u32,
    /// The NIC's IPv4 addresses, moved to the bridge.
    pub addrs: Vec<Ipv4Net>,
    /// The NIC's routes with a next hop, moved to the bridge.
    pub routes: Vec<NicRoute>,
}

/// What the host has of the NIC and the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicFacts {
    /// The NIC's MAC, MTU, whether it is up, and whether it is a port of a bridge already.
    pub mac: Option<[u8; 6]>,
    /// Its MTU.
    pub mtu: u32,
    /// Its kind (`None` for a physical device; `veth` in the test bed).
    pub kind: Option<String>,
    /// Whether it is a port of some bridge already.
    pub enslaved: bool,
    /// Its IPv4 addresses.
    pub addrs: Vec<Ipv4Net>,
    /// Its routes with a next hop.
    pub routes: Vec<NicRoute>,
    /// The bridge: `None` when missing, `Some(true)` when it is a bridge, `Some(false)`
    /// when a link of that name is not one.
    pub bridge: Option<bool>,
}

/// Why `bridge-nic` refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NicError(pub String);

/// Decide `bridge-nic`: what will be moved, or why not.
pub fn decide(nic: &str, bridge: &str, facts: &NicFacts) -> Result<BridgedNic, NicError> {
    names::validate_ifname(bridge).map_err(|e| NicError(format!("--bridge {bridge}: {e}")))?;
    if nic == bridge {
        return Err(NicError(format!("--nic and --bridge are both {nic}")));
    }
    if facts.kind.as_deref() == Some("bridge") {
        return Err(NicError(format!("{nic} is a bridge itself, not a NIC")));
    }
    if facts.enslaved {
        return Err(NicError(format!(
            "{nic} is a port of a bridge already; `reef host unbridge-nic` first"
        )));
    }
    if facts.bridge == Some(false) {
        return Err(NicError(format!(
            "{bridge} exists and is not a bridge; choose another --bridge"
        )));
    }
    let mac = facts.mac.ok_or_else(|| {
        NicError(format!(
            "{nic} has no Ethernet address: it cannot be bridged"
        ))
    })?;
    Ok(BridgedNic {
        nic: nic.into(),
        bridge: bridge.into(),
        created_bridge: facts.bridge.is_none(),
        mac,
        mtu: facts.mtu,
        addrs: facts.addrs.clone(),
        routes: facts.routes.clone(),
    })
}

fn route_op(r: &NicRoute, dev: &str) -> Op {
    Op::AddRoute {
        ns: NsRef::Host,
        dst: IpNet::V4(r.dst),
        via: r.via.map(IpAddr::V4),
        dev: dev.into(),
    }
}

/// The plan that bridges the NIC; its undo (`Plan::rollback` of every step) restores the
/// NIC as it was. Steps whose op changes nothing (setting an up link up) exist for their
/// undo, which must run at that point of the rollback: the NIC's routes can only come
/// back once its addresses have.
pub fn plan(b: &BridgedNic) -> Plan {
    let mut p = Plan::default();
    let up = |link: &str| Op::SetUp {
        ns: NsRef::Host,
        link: link.into(),
    };
    if b.created_bridge {
        p.push(
            Op::CreateBridge {
                name: b.bridge.clone(),
                mtu: b.mtu,
            },
            Some(Op::DeleteLink {
                ns: NsRef::Host,
                name: b.bridge.clone(),
            }),
        );
    }
    p.push(
        Op::SetMac {
            link: b.bridge.clone(),
            mac: b.mac,
        },
        None,
    );
    p.push(up(&b.bridge), None);
    for r in &b.routes {
        p.push(up(&b.nic), Some(route_op(r, &b.nic)));
    }
    p.push(up(&b.nic), Some(up(&b.nic)));
    p.push(
        Op::SetMaster {
            link: b.nic.clone(),
            master: b.bridge.clone(),
        },
        Some(Op::ReleaseLink {
            name: b.nic.clone(),
        }),
    );
    for a in &b.addrs {
        p.push(
            Op::DelAddr {
                ns: NsRef::Host,
                link: b.nic.clone(),
                addr: IpNet::V4(*a),
            },
            Some(Op::AddAddr {
                ns: NsRef::Host,
                link: b.nic.clone(),
                addr: IpNet::V4(*a),
            }),
        );
        p.push(
            Op::AddAddr {
                ns: NsRef::Host,
                link: b.bridge.clone(),
                addr: IpNet::V4(*a),
            },
            Some(Op::DelAddr {
                ns: NsRef::Host,
                link: b.bridge.clone(),
                addr: IpNet::V4(*a),
            }),
        );
    }
    for r in &b.routes {
        p.push(route_op(r, &b.bridge), None);
    }
    p
}

/// The address to probe after the move: the default route's gateway.
pub fn gateway(b: &BridgedNic) -> Option<Ipv4Addr> {
    b.routes
        .iter()
        .find(|r| r.dst.prefix_len() == 0)
        .and_then(|r| r.via)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> NicFacts {
        NicFacts {
            mac: Some([0x02, 0, 0, 0, 0, 0x11]),
            mtu: 1500,
            kind: Some("veth".into()),
            enslaved: false,
            addrs: vec!["10.77.0.11/24".parse().unwrap()],
            routes: vec![NicRoute {
                dst: "0.0.0.0/0".parse().unwrap(),
                via: Some("10.77.0.1".parse().unwrap()),
            }],
            bridge: None,
        }
    }

    #[test]
    fn the_nic_moves_onto_the_bridge_and_back() {
        let b = decide("ens33", "br0", &facts()).unwrap();
        assert_eq!(gateway(&b), Some("10.77.0.1".parse().unwrap()));
        let p = plan(&b);
        assert_eq!(
            p.to_string(),
            "ip link add br0 type bridge mtu 1500\n\
             ip link set br0 address 02:00:00:00:00:11\n\
             ip link set br0 up\n\
             ip link set ens33 up\n\
             ip link set ens33 up\n\
             ip link set ens33 master br0\n\
             ip addr del 10.77.0.11/24 dev ens33\n\
             ip addr add 10.77.0.11/24 dev br0\n\
             ip route add default via 10.77.0.1 dev br0\n"
        );
        let undo: Vec<String> = p
            .rollback(p.steps.len())
            .iter()
            .map(|o| o.to_string())
            .collect();
        assert_eq!(
            undo,
            vec![
                "ip addr del 10.77.0.11/24 dev br0",
                "ip addr add 10.77.0.11/24 dev ens33",
                "ip link set ens33 down nomaster",
                "ip link set ens33 up",
                "ip route add default via 10.77.0.1 dev ens33",
                "ip link del br0",
            ]
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        let mut f = facts();
        f.enslaved = true;
        assert!(decide("ens33", "br0", &f)
            .unwrap_err()
            .0
            .contains("port of a bridge already"));
        let mut f = facts();
        f.bridge = Some(false);
        assert!(decide("ens33", "br0", &f)
            .unwrap_err()
            .0
            .contains("not a bridge"));
        assert!(decide("ens33", "ens33", &facts()).is_err());
        assert!(decide("ens33", "a/b", &facts()).is_err());
        let mut f = facts();
        f.bridge = Some(true);
        let b = decide("ens33", "br0", &f).unwrap();
        assert!(!b.created_bridge);
        assert!(!plan(&b).to_string().contains("type bridge"));
    }
}
