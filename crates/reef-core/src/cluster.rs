//! The state hosts of a cluster share through the cluster store (etcd), and the decisions
//! taken from it: which address block a host takes, whether a requested address is free
//! cluster-wide, which tunnel entries a host programs for the endpoints of other hosts.
//!
//! The store holds one key per fact, under [`ROOT`]:
//!
//! | key | value | lifetime |
//! | --- | --- | --- |
//! | `networks/<name>` | the global [`Network`] record (no host's tunnel end) | until `network rm` |
//! | `vnis/<vni>` | the network's id | with the network |
//! | `netver` | bumped by every create and remove, so two creates race safely | forever |
//! | `hosts/<host id>` | [`HostRecord`] | the host's lease |
//! | `blocks/<network id>/<first address hex>-<prefix>` | [`BlockRecord`] | the host's lease |
//! | `ips/<network id>/<address hex>` | [`IpClaim`] (`--ip` outside the host's blocks) | the host's lease |
//! | `endpoints/<network id>/<address hex>` | [`EndpointRecord`] | the host's lease |
//!
//! Addresses are written as 8 hex digits so that the keys of a block sort, and can be
//! read, as one contiguous range. A host allocates inside the blocks it holds without
//! asking anyone; only taking a new block and an `--ip` outside its blocks cost a round
//! trip. Everything with a lease vanishes when its host stops renewing it.

use core::net::Ipv4Addr;
use std::collections::{BTreeMap, BTreeSet};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::ipam::AddressSpace;
use crate::model::{DriverConfig, Network};
use crate::plan::{Op, Plan};

/// Every key of reef's lives under this prefix.
pub const ROOT: &str = "/reef/v1/";
/// The first VXLAN network identifier reef gives an overlay (Docker's overlay starts there
/// too, leaving the low ones to hand-made tunnels).
pub const FIRST_VNI: u32 = 4096;
/// The largest VNI (24 bits).
pub const LAST_VNI: u32 = (1 << 24) - 1;

/// A host of the cluster, as it registers itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Its id (persisted in its data root, so a restart is the same host).
    pub id: String,
    /// Its tunnel address (`--cluster-advertise`).
    pub addr: Ipv4Addr,
    /// The subnets of its local networks, which an overlay must not overlap.
    #[serde(default)]
    pub subnets: Vec<Ipv4Net>,
}

/// Who holds an address block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// The holding host's id.
    pub host: String,
}

/// An address given with `--ip` outside the blocks of the host that gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpClaim {
    /// The claiming host's id.
    pub host: String,
    /// The container it is for.
    pub container_id: String,
}

/// An endpoint on an overlay, as the other hosts need to know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// The host it lives on.
    pub host: String,
    /// That host's tunnel address.
    pub vtep: Ipv4Addr,
    /// Its network.
    pub network_id: String,
    /// Its endpoint id.
    pub endpoint_id: String,
    /// Its container's id.
    pub container_id: String,
    /// Its container's name (resolved by the embedded DNS of every host).
    pub container_name: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its MAC address.
    pub mac: String,
    /// Its `--network-alias` names.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A key of the store, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `networks/<name>`.
    Network(String),
    /// `vnis/<vni>`.
    Vni(u32),
    /// `netver`.
    NetVer,
    /// `hosts/<id>`.
    Host(String),
    /// `blocks/<network id>/<block>`.
    Block(String, Ipv4Net),
    /// `ips/<network id>/<address>`.
    IpClaim(String, Ipv4Addr),
    /// `endpoints/<network id>/<address>`.
    Endpoint(String, Ipv4Addr),
}

fn hex(ip: Ipv4Addr) -> String {
    format!("{:08x}", u32::from(ip))
}

fn unhex(s: &str) -> Option<Ipv4Addr> {
    (s.len() == 8)
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
        .map(Ipv4Addr::from)
}

impl Key {
    /// The key's full text.
    pub fn text(&self) -> String {
        let rest = match self {
            Key::Network(name) => format!("networks/{name}"),
            Key::Vni(v) => format!("vnis/{v}"),
            Key::NetVer => "netver".into(),
            Key::Host(id) => format!("hosts/{id}"),
            Key::Block(net, b) => format!("blocks/{net}/{}-{}", hex(b.network()), b.prefix_len()),
            Key::IpClaim(net, ip) => format!("ips/{net}/{}", hex(*ip)),
            Key::Endpoint(net, ip) => format!("endpoints/{net}/{}", hex(*ip)),
        };
        format!("{ROOT}{rest}")
    }

    /// Parse a key of the store; `None` for keys this version does not know.
    pub fn parse(key: &str) -> Option<Key> {
        let rest = key.strip_prefix(ROOT)?;
        let (kind, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let two = || rest.split_once('/');
        match kind {
            "networks" if !rest.is_empty() => Some(Key::Network(rest.into())),
            "vnis" => rest.parse().ok().map(Key::Vni),
            "netver" if rest.is_empty() => Some(Key::NetVer),
            "hosts" if !rest.is_empty() => Some(Key::Host(rest.into())),
            "blocks" => {
                let (net, b) = two()?;
                let (first, len) = b.split_once('-')?;
                let block = Ipv4Net::new(unhex(first)?, len.parse().ok()?).ok()?;
                Some(Key::Block(net.into(), block))
            }
            "ips" => two().and_then(|(n, ip)| Some(Key::IpClaim(n.into(), unhex(ip)?))),
            "endpoints" => two().and_then(|(n, ip)| Some(Key::Endpoint(n.into(), unhex(ip)?))),
            _ => None,
        }
    }
}

/// The key range `[start, end)` holding the address keys (`ips/` or `endpoints/`) of one
/// block, for a ranged read or compare.
pub fn address_range(kind: &str, network_id: &str, block: Ipv4Net) -> (String, String) {
    let first = u32::from(block.network());
    let after = u64::from(u32::from(block.broadcast())) + 1;
    let base = format!("{ROOT}{kind}/{network_id}/");
    let end = if after > u64::from(u32::MAX) {
        format!("{base}~")
    } else {
        format!("{base}{:08x}", after)
    };
    (format!("{base}{first:08x}"), end)
}

/// The prefix of every key about one network's addresses of `kind` (`blocks`, `ips`,
/// `endpoints`).
pub fn network_prefix(kind: &str, network_id: &str) -> String {
    format!("{ROOT}{kind}/{network_id}/")
}

/// A value that does not parse as the record its key says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cluster store key {key}: {reason}")]
pub struct BadRecord {
    /// The key.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// What a host knows of the cluster: everything under [`ROOT`], mirrored from a full read
/// and the watch that follows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The store revision this view is at.
    pub revision: i64,
    /// The revision `netver` was last changed at (0: never), which a network create
    /// compares against.
    pub netver: i64,
    /// Global networks by name.
    pub networks: BTreeMap<String, Network>,
    /// VNIs in use.
    pub vnis: BTreeMap<u32, String>,
    /// Hosts by id.
    pub hosts: BTreeMap<String, HostRecord>,
    /// Blocks by (network id, block) -> holder.
    pub blocks: BTreeMap<(String, Ipv4Net), String>,
    /// `--ip` claims by (network id, address).
    pub ip_claims: BTreeMap<(String, Ipv4Addr), IpClaim>,
    /// Endpoints by (network id, address).
    pub endpoints: BTreeMap<(String, Ipv4Addr), EndpointRecord>,
}

fn parse<T: for<'de> Deserialize<'de>>(key: &str, v: &[u8]) -> Result<T, BadRecord> {
    serde_json::from_slice(v).map_err(|e| BadRecord {
        key: key.into(),
        reason: e.to_string(),
    })
}

impl ClusterView {
    /// Apply one put (`Some(value)`) or delete (`None`) of `key`. Keys this version does
    /// not know are ignored, so a newer host's additions do not stop an older one.
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), BadRecord> {
        let Some(k) = Key::parse(key) else {
            return Ok(());
        };
        match (k, value) {
            (Key::Network(name), Some(v)) => {
                self.networks.insert(name, parse(key, v)?);
            }
            (Key::Network(name), None) => {
                self.networks.remove(&name);
            }
            (Key::Vni(n), Some(v)) => {
                self.vnis.insert(n, String::from_utf8_lossy(v).into_owned());
            }
            (Key::Vni(n), None) => {
                self.vnis.remove(&n);
            }
            (Key::NetVer, _) => {}
            (Key::Host(id), Some(v)) => {
                self.hosts.insert(id, parse(key, v)?);
            }
            (Key::Host(id), None) => {
                self.hosts.remove(&id);
            }
            (Key::Block(n, b), Some(v)) => {
                let rec: BlockRecord = parse(key, v)?;
                self.blocks.insert((n, b), rec.host);
            }
            (Key::Block(n, b), None) => {
                self.blocks.remove(&(n, b));
            }
            (Key::IpClaim(n, ip), Some(v)) => {
                self.ip_claims.insert((n, ip), parse(key, v)?);
            }
            (Key::IpClaim(n, ip), None) => {
                self.ip_claims.remove(&(n, ip));
            }
            (Key::Endpoint(n, ip), Some(v)) => {
                self.endpoints.insert((n, ip), parse(key, v)?);
            }
            (Key::Endpoint(n, ip), None) => {
                self.endpoints.remove(&(n, ip));
            }
        }
        Ok(())
    }

    /// A global network by id.
    pub fn network_by_id(&self, id: &str) -> Option<&Network> {
        self.networks.values().find(|n| n.id == id)
    }

    /// The blocks of a network that `host` holds, lowest first.
    pub fn blocks_of(&self, network_id: &str, host: &str) -> Vec<Ipv4Net> {
        self.blocks
            .iter()
            .filter(|((n, _), h)| n == network_id && h.as_str() == host)
            .map(|((_, b), _)| *b)
            .collect()
    }

    /// Endpoints of a network on hosts other than `me`.
    pub fn remote_endpoints<'a>(
        &'a self,
        network_id: &'a str,
        me: &'a str,
    ) -> impl Iterator<Item = &'a EndpointRecord> + 'a {
        self.endpoints
            .iter()
            .filter(move |((n, _), e)| n == network_id && e.host != me)
            .map(|(_, e)| e)
    }

    /// How many endpoints a network has, on any host.
    pub fn endpoint_count(&self, network_id: &str) -> usize {
        self.endpoints
            .keys()
            .filter(|(n, _)| n == network_id)
            .count()
    }
}

/// The prefix length of a network's address blocks: about 16 blocks for a small pool,
/// blocks of 64 addresses for a large one, so a host takes a new block rarely and a
/// small overlay still has blocks for many hosts.
pub fn block_prefix(pool: Ipv4Net) -> u8 {
    let p = pool.prefix_len();
    if p >= 28 {
        p
    } else {
        (p + 4).clamp(26, 28)
    }
}

/// The lowest block of `space`'s pool no host holds, if any is left.
pub fn free_block(space: &AddressSpace, held: &BTreeSet<Ipv4Net>) -> Option<Ipv4Net> {
    let pool = space.pool();
    let len = block_prefix(pool);
    pool.subnets(len).ok()?.find(|b| !held.contains(b))
}

/// An address for a new endpoint from the blocks a host holds (`mine`), avoiding the
/// addresses taken there (`taken`: this host's endpoints and others' claims). `None`
/// when the blocks are full (or there are none): the host must take a new block.
pub fn allocate_in_blocks(
    space: &AddressSpace,
    mine: &[Ipv4Net],
    taken: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    mine.iter().find_map(|b| {
        let within = AddressSpace {
            subnet: space.subnet,
            range: Some(*b),
            reserved: space.reserved.clone(),
        };
        within.allocate(taken, None).ok()
    })
}

/// What a requested address (`--ip`) on an overlay needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// It is in a block this host holds: check it locally.
    Mine,
    /// It is in no host's block: claim it in the store (one round trip).
    Claim,
    /// It cannot be had; the message says why.
    Refused(String),
}

/// Decide a requested address on an overlay from the view.
pub fn requested_address(
    view: &ClusterView,
    network_id: &str,
    ip: Ipv4Addr,
    me: &str,
) -> Requested {
    if let Some(e) = view.endpoints.get(&(network_id.to_string(), ip)) {
        if e.host != me {
            return Requested::Refused(format!(
                "Address already in use: {ip} is held by container {} on host {}",
                e.container_name, e.host
            ));
        }
    }
    if let Some(c) = view.ip_claims.get(&(network_id.to_string(), ip)) {
        if c.host != me {
            return Requested::Refused(format!(
                "Address already in use: {ip} is claimed on host {}",
                c.host
            ));
        }
        return Requested::Mine;
    }
    match view
        .blocks
        .iter()
        .find(|((n, b), _)| n == network_id && b.contains(&ip))
    {
        Some((_, h)) if h == me => Requested::Mine,
        Some((_, h)) => Requested::Refused(format!(
            "Address already in use: {ip} lies in the address block of host {h}, which gives \
             its addresses out itself; choose an address outside it"
        )),
        None => Requested::Claim,
    }
}

/// The lowest VNI no network has.
pub fn choose_vni(view: &ClusterView) -> Option<u32> {
    (FIRST_VNI..=LAST_VNI).find(|v| !view.vnis.contains_key(v))
}

/// A tunnel entry for an endpoint of another host: its MAC behind that host's address,
/// its address answered by that MAC.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RemoteEntry {
    /// The endpoint's MAC.
    pub mac: String,
    /// The endpoint's address.
    pub ip: Ipv4Addr,
    /// Its host's tunnel address.
    pub vtep: Ipv4Addr,
}

/// The entries a host should have on an overlay's VXLAN device: one per endpoint of every
/// other host.
pub fn wanted_entries(view: &ClusterView, network_id: &str, me: &str) -> Vec<RemoteEntry> {
    let mut v: Vec<RemoteEntry> = view
        .remote_endpoints(network_id, me)
        .map(|e| RemoteEntry {
            mac: e.mac.to_lowercase(),
            ip: e.ip,
            vtep: e.vtep,
        })
        .collect();
    v.sort();
    v
}

/// What a VXLAN device has: its forwarding entries (MAC, remote address) and neighbour
/// entries (address, MAC), as the kernel lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoundEntries {
    /// `bridge fdb show dev VX` (self entries with a destination).
    pub fdb: Vec<(String, Ipv4Addr)>,
    /// `ip neigh show dev VX`: (address, MAC if it has one).
    pub neighbours: Vec<(Ipv4Addr, Option<String>)>,
}

/// The plan that brings a VXLAN device's entries from `found` to `wanted`: stale entries
/// deleted (peers that went away, a MAC now elsewhere), missing or changed ones replaced.
/// Entries are permanent, so nothing is learned and nothing expires.
pub fn converge_entries(dev: &str, wanted: &[RemoteEntry], found: &FoundEntries) -> Plan {
    let mut p = Plan::default();
    let want_fdb: BTreeSet<(String, Ipv4Addr)> =
        wanted.iter().map(|e| (e.mac.clone(), e.vtep)).collect();
    let want_neigh: BTreeMap<Ipv4Addr, String> =
        wanted.iter().map(|e| (e.ip, e.mac.clone())).collect();
    for (mac, dst) in &found.fdb {
        if !want_fdb.contains(&(mac.to_lowercase(), *dst)) {
            p.push(
                Op::FdbDelete {
                    dev: dev.into(),
                    mac: mac.clone(),
                    dst: *dst,
                },
                None,
            );
        }
    }
    for (ip, _) in found
        .neighbours
        .iter()
        .filter(|(ip, _)| !want_neigh.contains_key(ip))
    {
        p.push(
            Op::NeighDelete {
                dev: dev.into(),
                ip: *ip,
            },
            None,
        );
    }
    let have_fdb: BTreeSet<(String, Ipv4Addr)> = found
        .fdb
        .iter()
        .map(|(m, d)| (m.to_lowercase(), *d))
        .collect();
    for (mac, dst) in want_fdb.difference(&have_fdb) {
        p.push(
            Op::FdbReplace {
                dev: dev.into(),
                mac: mac.clone(),
                dst: *dst,
            },
            None,
        );
    }
    let have_neigh: BTreeMap<Ipv4Addr, String> = found
        .neighbours
        .iter()
        .filter_map(|(ip, m)| Some((*ip, m.as_ref()?.to_lowercase())))
        .collect();
    for (ip, mac) in &want_neigh {
        if have_neigh.get(ip) != Some(mac) {
            p.push(
                Op::NeighReplace {
                    dev: dev.into(),
                    ip: *ip,
                    mac: mac.clone(),
                },
                None,
            );
        }
    }
    p
}

/// How this host's overlay networks follow the cluster's: the global networks it has not
/// adopted yet, and its overlays the cluster no longer has (removed on another host),
/// unless a container here still uses one. `authoritative` is false while the view may
/// be stale (etcd unreachable, or not read yet): then nothing is dropped.
pub fn network_changes(
    local: &[&Network],
    view: &ClusterView,
    authoritative: bool,
    in_use: &BTreeSet<String>,
) -> (Vec<Network>, Vec<String>) {
    let local_ids: BTreeSet<&str> = local.iter().map(|n| n.id.as_str()).collect();
    let local_names: BTreeSet<&str> = local.iter().map(|n| n.name.as_str()).collect();
    let adopt = view
        .networks
        .values()
        .filter(|g| !local_ids.contains(g.id.as_str()) && !local_names.contains(g.name.as_str()))
        .cloned()
        .collect();
    let drop = if authoritative {
        local
            .iter()
            .filter(|n| n.overlay().is_some())
            .filter(|n| view.network_by_id(&n.id).is_none() && !in_use.contains(&n.id))
            .map(|n| n.id.clone())
            .collect()
    } else {
        Vec::new()
    };
    (adopt, drop)
}

/// The global record of a local overlay network: what every host shares (no host's own
/// tunnel end).
pub fn global_record(net: &Network) -> Network {
    let mut n = net.clone();
    if let DriverConfig::Overlay { overlay } = &mut n.driver {
        overlay.local = None;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net_id() -> String {
        "ab".repeat(32)
    }

    fn ep(host: &str, ip: &str, mac: &str, vtep: &str) -> EndpointRecord {
        EndpointRecord {
            host: host.into(),
            vtep: vtep.parse().unwrap(),
            network_id: net_id(),
            endpoint_id: "e".repeat(64),
            container_id: "c".repeat(64),
            container_name: format!("c-{ip}"),
            ip: ip.parse().unwrap(),
            mac: mac.into(),
            aliases: vec![],
        }
    }

    #[test]
    fn keys_round_trip_and_sort_by_address() {
        let keys = [
            Key::Network("ov".into()),
            Key::Vni(4096),
            Key::NetVer,
            Key::Host("h1".into()),
            Key::Block(net_id(), "10.0.0.16/28".parse().unwrap()),
            Key::IpClaim(net_id(), "10.0.0.200".parse().unwrap()),
            Key::Endpoint(net_id(), "10.0.0.2".parse().unwrap()),
        ];
        for k in keys {
            assert_eq!(Key::parse(&k.text()), Some(k.clone()), "{}", k.text());
        }
        assert_eq!(
            Key::Endpoint(net_id(), "10.0.0.2".parse().unwrap()).text(),
            format!("/reef/v1/endpoints/{}/0a000002", net_id())
        );
        let (start, end) = address_range("ips", &net_id(), "10.0.0.16/28".parse().unwrap());
        let inside = Key::IpClaim(net_id(), "10.0.0.31".parse().unwrap()).text();
        let after = Key::IpClaim(net_id(), "10.0.0.32".parse().unwrap()).text();
        assert!(start <= inside && inside < end);
        assert!(after >= end);
        assert_eq!(Key::parse("/reef/v1/something-new/x"), None);
        assert_eq!(Key::parse("/other/networks/x"), None);
    }

    #[test]
    fn blocks_fit_the_pool() {
        assert_eq!(block_prefix("10.0.0.0/24".parse().unwrap()), 28);
        assert_eq!(block_prefix("10.0.0.0/16".parse().unwrap()), 26);
        assert_eq!(block_prefix("10.0.0.0/22".parse().unwrap()), 26);
        assert_eq!(block_prefix("10.0.0.0/29".parse().unwrap()), 29);
        let space = AddressSpace::new(
            "10.0.0.0/24".parse().unwrap(),
            None,
            vec!["10.0.0.1".parse().unwrap()],
        )
        .unwrap();
        let mut held = BTreeSet::new();
        let first = free_block(&space, &held).unwrap();
        assert_eq!(first, "10.0.0.0/28".parse::<Ipv4Net>().unwrap());
        held.insert(first);
        assert_eq!(
            free_block(&space, &held).unwrap(),
            "10.0.0.16/28".parse::<Ipv4Net>().unwrap()
        );
        for b in space.subnet.subnets(28).unwrap() {
            held.insert(b);
        }
        assert_eq!(free_block(&space, &held), None);
    }

    #[test]
    fn allocation_stays_in_the_hosts_blocks_and_skips_the_gateway() {
        let space = AddressSpace::new(
            "10.0.0.0/24".parse().unwrap(),
            None,
            vec!["10.0.0.1".parse().unwrap()],
        )
        .unwrap();
        let mine: Vec<Ipv4Net> = vec!["10.0.0.0/28".parse().unwrap()];
        let mut taken = BTreeSet::new();
        let a = allocate_in_blocks(&space, &mine, &taken).unwrap();
        assert_eq!(a, "10.0.0.2".parse::<Ipv4Addr>().unwrap());
        for i in 2..=15 {
            taken.insert(Ipv4Addr::new(10, 0, 0, i));
        }
        assert_eq!(allocate_in_blocks(&space, &mine, &taken), None);
        let two: Vec<Ipv4Net> = vec![
            "10.0.0.0/28".parse().unwrap(),
            "10.0.0.32/28".parse().unwrap(),
        ];
        assert_eq!(
            allocate_in_blocks(&space, &two, &taken),
            Some("10.0.0.32".parse().unwrap())
        );
        assert_eq!(allocate_in_blocks(&space, &[], &taken), None);
    }

    #[test]
    fn requested_addresses_are_checked_cluster_wide() {
        let mut view = ClusterView::default();
        let id = net_id();
        view.blocks
            .insert((id.clone(), "10.0.0.0/28".parse().unwrap()), "h1".into());
        view.blocks
            .insert((id.clone(), "10.0.0.16/28".parse().unwrap()), "h2".into());
        view.endpoints.insert(
            (id.clone(), "10.0.0.17".parse().unwrap()),
            ep("h2", "10.0.0.17", "02:42:0a:00:00:11", "10.77.0.12"),
        );
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            requested_address(&view, &id, ip("10.0.0.5"), "h1"),
            Requested::Mine
        );
        assert!(matches!(
            requested_address(&view, &id, ip("10.0.0.17"), "h1"),
            Requested::Refused(m) if m.contains("Address already in use") && m.contains("h2")
        ));
        assert!(matches!(
            requested_address(&view, &id, ip("10.0.0.20"), "h1"),
            Requested::Refused(m) if m.contains("block of host h2")
        ));
        assert_eq!(
            requested_address(&view, &id, ip("10.0.0.200"), "h1"),
            Requested::Claim
        );
        view.ip_claims.insert(
            (id.clone(), ip("10.0.0.200")),
            IpClaim {
                host: "h3".into(),
                container_id: "x".into(),
            },
        );
        assert!(matches!(
            requested_address(&view, &id, ip("10.0.0.200"), "h1"),
            Requested::Refused(m) if m.contains("claimed on host h3")
        ));
    }

    #[test]
    fn the_view_follows_puts_and_deletes() {
        let mut view = ClusterView::default();
        let e = ep("h2", "10.0.0.17", "02:42:0a:00:00:11", "10.77.0.12");
        let key = Key::Endpoint(net_id(), e.ip).text();
        view.apply(&key, Some(&serde_json::to_vec(&e).unwrap()))
            .unwrap();
        assert_eq!(view.endpoint_count(&net_id()), 1);
        assert_eq!(view.remote_endpoints(&net_id(), "h1").count(), 1);
        assert_eq!(view.remote_endpoints(&net_id(), "h2").count(), 0);
        view.apply(&key, None).unwrap();
        assert_eq!(view.endpoint_count(&net_id()), 0);
        let bad = view.apply(&key, Some(b"{not json"));
        assert!(bad.unwrap_err().to_string().contains(&key));
        view.apply("/reef/v1/unknown/k", Some(b"x")).unwrap();
    }

    #[test]
    fn entries_converge_both_ways() {
        let mut view = ClusterView::default();
        for (h, ip, mac, vtep) in [
            ("h2", "10.0.0.17", "02:42:0a:00:00:11", "10.77.0.12"),
            ("h3", "10.0.0.33", "02:42:0a:00:00:21", "10.77.0.13"),
            ("h1", "10.0.0.2", "02:42:0a:00:00:02", "10.77.0.11"),
        ] {
            let e = ep(h, ip, mac, vtep);
            view.endpoints.insert((net_id(), e.ip), e);
        }
        let wanted = wanted_entries(&view, &net_id(), "h1");
        assert_eq!(
            wanted.len(),
            2,
            "never an entry for this host's own endpoints"
        );
        let plan = converge_entries("vx-1", &wanted, &FoundEntries::default());
        assert_eq!(
            plan.to_string(),
            "bridge fdb replace 02:42:0a:00:00:11 dev vx-1 dst 10.77.0.12 self permanent\n\
             bridge fdb replace 02:42:0a:00:00:21 dev vx-1 dst 10.77.0.13 self permanent\n\
             ip neigh replace 10.0.0.17 lladdr 02:42:0a:00:00:11 dev vx-1 nud permanent\n\
             ip neigh replace 10.0.0.33 lladdr 02:42:0a:00:00:21 dev vx-1 nud permanent\n"
        );
        // A host rebooted and came back at another address; one endpoint went away.
        let found = FoundEntries {
            fdb: vec![
                ("02:42:0a:00:00:11".into(), "10.77.0.12".parse().unwrap()),
                ("02:42:0a:00:00:21".into(), "10.77.0.99".parse().unwrap()),
                ("02:42:0a:00:00:99".into(), "10.77.0.12".parse().unwrap()),
            ],
            neighbours: vec![
                (
                    "10.0.0.17".parse().unwrap(),
                    Some("02:42:0a:00:00:11".into()),
                ),
                ("10.0.0.33".parse().unwrap(), None),
                (
                    "10.0.0.99".parse().unwrap(),
                    Some("02:42:0a:00:00:99".into()),
                ),
            ],
        };
        assert_eq!(
            converge_entries("vx-1", &wanted, &found).to_string(),
            "bridge fdb del 02:42:0a:00:00:21 dev vx-1 dst 10.77.0.99 self\n\
             bridge fdb del 02:42:0a:00:00:99 dev vx-1 dst 10.77.0.12 self\n\
             ip neigh del 10.0.0.99 dev vx-1\n\
             bridge fdb replace 02:42:0a:00:00:21 dev vx-1 dst 10.77.0.13 self permanent\n\
             ip neigh replace 10.0.0.33 lladdr 02:42:0a:00:00:21 dev vx-1 nud permanent\n"
        );
        let settled = FoundEntries {
            fdb: wanted.iter().map(|e| (e.mac.clone(), e.vtep)).collect(),
            neighbours: wanted.iter().map(|e| (e.ip, Some(e.mac.clone()))).collect(),
        };
        assert!(converge_entries("vx-1", &wanted, &settled).steps.is_empty());
    }

    #[test]
    fn vnis_start_where_dockers_do() {
        let mut view = ClusterView::default();
        assert_eq!(choose_vni(&view), Some(FIRST_VNI));
        view.vnis.insert(FIRST_VNI, "x".into());
        assert_eq!(choose_vni(&view), Some(FIRST_VNI + 1));
    }
}
