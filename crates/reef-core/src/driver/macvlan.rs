//! Creating a macvlan network: Docker's options and rules, decided from the request and
//! the host's links.
//!
//! `-o parent=IFACE` names the host interface containers appear on; `parent=IFACE.ID`
//! names an 802.1q sub-interface, which reef creates when it is missing (and then removes
//! with the network). Without a parent, or with `--internal`, the parent is a dummy
//! interface of reef's own (`dm-<12 hex>`), so the containers reach only each other.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;

use super::{CreateError, NetworkCreate, OPT_MTU};
use crate::model::{DriverConfig, MacvlanMode, MacvlanNetwork, Network};
use crate::names;

/// `-o parent=`: the host interface.
pub const OPT_PARENT: &str = "parent";
/// `-o macvlan_mode=`: bridge (default), private, vepa, passthru.
pub const OPT_MODE: &str = "macvlan_mode";

/// The VLAN a parent name asks for: `eth0.10` is VLAN 10 on `eth0`. `None` for a name
/// without a numeric suffix.
pub fn vlan_of(parent: &str) -> Option<(&str, u16)> {
    let (base, id) = parent.rsplit_once('.')?;
    if base.is_empty() || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base, id.parse().unwrap_or(u16::MAX)))
}

/// The dummy parent of an internal macvlan network.
pub fn dummy_parent(network_id: &str) -> String {
    format!("dm-{}", &network_id[..12.min(network_id.len())])
}

/// The host links [`decide`] needs the MTUs of: the parent and, for a VLAN parent, the
/// interface it tags.
pub fn links_to_look_up(req: &NetworkCreate) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(parent) = req.options.get(OPT_PARENT) {
        names.push(parent.clone());
        if let Some((base, _)) = vlan_of(parent) {
            names.push(base.to_string());
        }
    }
    names
}

/// What [`decide`] needs to know of the host.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// MTU of each link [`links_to_look_up`] named that exists.
    pub link_mtus: BTreeMap<String, u32>,
    /// Subnets taken on the host (its addresses and routes) and by reef's networks.
    pub subnets_in_use: Vec<Ipv4Net>,
}

/// Decide a macvlan network from a create request: its parent (and whether reef makes
/// it), mode, subnet, gateway and MTU. `id` is the new network's id; `others` are the
/// networks that exist.
pub fn decide(
    req: &NetworkCreate,
    id: &str,
    others: &[&Network],
    host: &HostFacts,
) -> Result<MacvlanNetwork, CreateError> {
    let invalid = |m: String| CreateError::Invalid(m);
    for key in req.options.keys() {
        if key.starts_with("com.docker.network.bridge.") {
            return Err(invalid(format!(
                "-o {key} is a bridge driver option: the macvlan driver does not take it"
            )));
        }
    }
    let mode = match req.options.get(OPT_MODE) {
        Some(m) => m
            .parse::<MacvlanMode>()
            .map_err(|e| invalid(format!("-o {OPT_MODE}={m}: {e}")))?,
        None => MacvlanMode::Bridge,
    };
    let (parent, created_parent) = match (req.options.get(OPT_PARENT), req.internal) {
        (Some(p), true) => {
            return Err(invalid(format!(
                "-o {OPT_PARENT}={p} with --internal: an internal macvlan network has a \
                 dummy parent of its own; leave out -o {OPT_PARENT}"
            )))
        }
        (None, _) => (dummy_parent(id), true),
        (Some(p), false) => {
            names::validate_ifname(p).map_err(|e| invalid(format!("-o {OPT_PARENT}={p}: {e}")))?;
            if host.link_mtus.contains_key(p) {
                (p.clone(), false)
            } else {
                match vlan_of(p) {
                    Some((_, id)) if !(1..=4094).contains(&id) => {
                        return Err(invalid(format!(
                            "-o {OPT_PARENT}={p}: VLAN id {} is out of range 1-4094",
                            p.rsplit_once('.').map_or("", |(_, v)| v)
                        )))
                    }
                    Some((base, _)) if !host.link_mtus.contains_key(base) => {
                        return Err(invalid(format!(
                            "-o {OPT_PARENT}={p}: the interface {base} it would tag does not \
                             exist on this host"
                        )))
                    }
                    Some(_) => (p.clone(), true),
                    None => {
                        return Err(invalid(format!(
                            "-o {OPT_PARENT}={p}: no such interface on this host"
                        )))
                    }
                }
            }
        }
    };
    if let Some(n) = others.iter().find(
        |n| matches!(&n.driver, DriverConfig::Macvlan { macvlan } if macvlan.parent == parent),
    ) {
        return Err(CreateError::Conflict(format!(
            "network {} is already using parent interface {parent}",
            n.name
        )));
    }
    let parent_mtu = host
        .link_mtus
        .get(&parent)
        .or_else(|| vlan_of(&parent).and_then(|(base, _)| host.link_mtus.get(base)))
        .copied();
    let mtu = match req.options.get(OPT_MTU) {
        None => None,
        Some(v) => {
            let m = v
                .parse::<u32>()
                .ok()
                .filter(|m| (68..=65535).contains(m))
                .ok_or_else(|| {
                    invalid(format!("invalid -o {OPT_MTU}={v}: expected 68 to 65535"))
                })?;
            if let Some(pm) = parent_mtu.filter(|pm| m > *pm) {
                return Err(invalid(format!(
                    "invalid -o {OPT_MTU}={m}: above the MTU {pm} of the parent {parent}"
                )));
            }
            Some(m)
        }
    };
    let (subnet, gateway) = super::choose_addresses(req, others, &host.subnets_in_use)?;
    Ok(MacvlanNetwork {
        parent,
        mode,
        subnet,
        gateway,
        ip_range: req.ip_range.map(|r| r.trunc()),
        mtu,
        created_parent,
    })
}

/// Whether a macvlan network is internal: asked so, or without a parent (its dummy
/// parent leads nowhere, so its containers get no default route).
pub fn is_internal(req: &NetworkCreate) -> bool {
    req.internal || !req.options.contains_key(OPT_PARENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(opts: &[(&str, &str)]) -> NetworkCreate {
        NetworkCreate {
            name: "lan".into(),
            driver: "macvlan".into(),
            subnet: Some("192.168.50.0/24".parse().unwrap()),
            options: opts
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn host(links: &[(&str, u32)]) -> HostFacts {
        HostFacts {
            link_mtus: links.iter().map(|(n, m)| (n.to_string(), *m)).collect(),
            subnets_in_use: vec!["192.168.50.0/24".parse().unwrap()],
        }
    }

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn err(r: Result<MacvlanNetwork, CreateError>) -> String {
        match r.unwrap_err() {
            CreateError::Invalid(m) | CreateError::Conflict(m) => m,
        }
    }

    #[test]
    fn an_existing_parent_is_used_as_it_is() {
        let n = decide(
            &req(&[("parent", "eth0")]),
            ID,
            &[],
            &host(&[("eth0", 1500)]),
        )
        .unwrap();
        assert_eq!(n.parent, "eth0");
        assert!(!n.created_parent);
        assert_eq!(n.mode, MacvlanMode::Bridge);
        // The host's own LAN subnet is the point of macvlan: not a conflict.
        assert_eq!(n.subnet, "192.168.50.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(
            n.gateway,
            "192.168.50.1".parse::<core::net::Ipv4Addr>().unwrap()
        );
        assert_eq!(n.mtu, None);
    }

    #[test]
    fn a_missing_vlan_parent_is_made_by_reef() {
        let n = decide(
            &req(&[("parent", "eth0.10")]),
            ID,
            &[],
            &host(&[("eth0", 1500)]),
        )
        .unwrap();
        assert_eq!((n.parent.as_str(), n.created_parent), ("eth0.10", true));
        let m = err(decide(
            &req(&[("parent", "eth9.10")]),
            ID,
            &[],
            &host(&[("eth0", 1500)]),
        ));
        assert_eq!(
            m,
            "-o parent=eth9.10: the interface eth9 it would tag does not exist on this host"
        );
        let m = err(decide(
            &req(&[("parent", "eth0.5000")]),
            ID,
            &[],
            &host(&[("eth0", 1500)]),
        ));
        assert_eq!(
            m,
            "-o parent=eth0.5000: VLAN id 5000 is out of range 1-4094"
        );
        let m = err(decide(
            &req(&[("parent", "eth9")]),
            ID,
            &[],
            &host(&[("eth0", 1500)]),
        ));
        assert_eq!(m, "-o parent=eth9: no such interface on this host");
    }

    #[test]
    fn without_a_parent_or_internal_the_parent_is_a_dummy() {
        let n = decide(&req(&[]), ID, &[], &host(&[])).unwrap();
        assert_eq!(
            (n.parent.as_str(), n.created_parent),
            ("dm-0123456789ab", true)
        );
        let mut internal = req(&[]);
        internal.internal = true;
        assert_eq!(
            decide(&internal, ID, &[], &host(&[])).unwrap().parent,
            "dm-0123456789ab"
        );
        let mut both = req(&[("parent", "eth0")]);
        both.internal = true;
        assert!(err(decide(&both, ID, &[], &host(&[("eth0", 1500)]))).contains("--internal"));
    }

    #[test]
    fn modes_mtus_and_options_are_checked() {
        let h = host(&[("eth0", 1500)]);
        let n = decide(
            &req(&[("parent", "eth0"), ("macvlan_mode", "private")]),
            ID,
            &[],
            &h,
        )
        .unwrap();
        assert_eq!(n.mode, MacvlanMode::Private);
        let m = err(decide(
            &req(&[("parent", "eth0"), ("macvlan_mode", "l2")]),
            ID,
            &[],
            &h,
        ));
        assert_eq!(
            m,
            "-o macvlan_mode=l2: invalid macvlan mode \"l2\": expected bridge, private, vepa or passthru"
        );
        let n = decide(&req(&[("parent", "eth0"), (OPT_MTU, "1400")]), ID, &[], &h).unwrap();
        assert_eq!(n.mtu, Some(1400));
        let m = err(decide(
            &req(&[("parent", "eth0"), (OPT_MTU, "9000")]),
            ID,
            &[],
            &h,
        ));
        assert_eq!(
            m,
            "invalid -o com.docker.network.driver.mtu=9000: above the MTU 1500 of the parent eth0"
        );
        let m = err(decide(
            &req(&[("parent", "eth0"), ("com.docker.network.bridge.name", "x")]),
            ID,
            &[],
            &h,
        ));
        assert!(m.contains("bridge driver option"), "{m}");
    }

    #[test]
    fn one_network_per_parent_and_no_overlapping_subnets() {
        let h = host(&[("eth0", 1500), ("eth1", 1500)]);
        let first = decide(&req(&[("parent", "eth0")]), ID, &[], &h).unwrap();
        let existing = Network {
            id: "f".repeat(64),
            name: "lan1".into(),
            driver: DriverConfig::Macvlan { macvlan: first },
            internal: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            created: "t".into(),
        };
        let m = err(decide(&req(&[("parent", "eth0")]), ID, &[&existing], &h));
        assert_eq!(m, "network lan1 is already using parent interface eth0");
        let m = err(decide(&req(&[("parent", "eth1")]), ID, &[&existing], &h));
        assert!(m.contains("overlaps"), "{m}");
    }
}
