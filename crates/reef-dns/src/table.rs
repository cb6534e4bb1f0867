//! The lookup table: a [`DnsState`] indexed for the query path, and the resolution rules
//! that both the wire path and [`crate::answer`] run.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::{ContainerDns, DnsEndpoint, DnsState};

/// DNS record type numbers the rules care about.
pub(crate) const TYPE_A: u16 = 1;
pub(crate) const TYPE_PTR: u16 = 12;
/// The Internet class.
pub(crate) const CLASS_IN: u16 = 1;

/// A persistent map: cloning it is O(1) and an update copies only the path to the entry,
/// so a table can be derived from the previous one in time independent of its size.
type Map<K, V> = imbl::HashMap<K, V>;

/// What the server knows, indexed for lookups. A published table never changes (except
/// for its round-robin counter); [`Table::with_container`] derives the next one from it,
/// sharing everything the change does not touch, so a container start, stop, connect or
/// disconnect costs the same with 10 or 10,000 endpoints.
#[derive(Debug, Default)]
pub struct Table {
    /// Network id -> the gateway address queries for that network arrive on.
    gateways: Arc<HashMap<Box<str>, Ipv4Addr>>,
    /// (gateway address, client address) -> the container of the endpoint.
    clients: Map<(Ipv4Addr, Ipv4Addr), Arc<ContainerView>>,
    /// Container id -> what it contributed (to remove it again).
    containers: Map<Arc<str>, Arc<ContainerView>>,
    /// Network id -> its names.
    networks: Map<Arc<str>, NetworkView>,
    /// Round-robin counter for answers with several addresses.
    rotation: AtomicUsize,
}

#[derive(Debug)]
struct ContainerView {
    id: Arc<str>,
    /// Every network the container is on, in endpoint order, once each.
    networks: Box<[Arc<str>]>,
    endpoints: Box<[EndpointView]>,
    upstreams: Arc<[SocketAddr]>,
}

/// One attachment as the table stored it.
#[derive(Debug)]
struct EndpointView {
    network: Arc<str>,
    ip: Ipv4Addr,
    /// Normalised, non-empty, once each.
    names: Box<[Arc<str>]>,
}

#[derive(Debug, Default, Clone)]
struct NetworkView {
    /// Lower-case name -> addresses on this network, in the order they were added.
    names: Map<Arc<str>, Arc<[Ipv4Addr]>>,
    /// Address -> the primary (container) name of the endpoint holding it, and the
    /// container's id.
    ptr: Map<Ipv4Addr, (Arc<str>, Arc<str>)>,
}

impl NetworkView {
    fn is_empty(&self) -> bool {
        self.names.is_empty() && self.ptr.is_empty()
    }
}

/// The outcome of the resolution rules for one question.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome<'t> {
    /// The source is no endpoint on the network of the gateway the query arrived on.
    UnknownClient,
    /// A records for a known name (not yet rotated).
    Addrs(Addrs<'t>),
    /// A PTR record: the primary name of the endpoint holding the address.
    Ptr(&'t str),
    /// The name is known but has no records of the asked type (NOERROR, no answers).
    NoData,
    /// An unknown single-label name.
    NxDomain,
    /// Not ours: ask these upstream servers (may be empty).
    Forward(&'t Arc<[SocketAddr]>),
}

/// The addresses of a known name, borrowed when they come from one network.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Addrs<'t> {
    /// All from one network.
    One(&'t [Ipv4Addr]),
    /// Merged from several networks, without duplicates.
    Many(Vec<Ipv4Addr>),
}

impl Addrs<'_> {
    pub(crate) fn as_slice(&self) -> &[Ipv4Addr] {
        match self {
            Addrs::One(s) => s,
            Addrs::Many(v) => v,
        }
    }
}

/// A query name as a lookup key: lower case, labels joined by dots, no trailing dot, kept
/// on the stack.
pub(crate) struct NameKey {
    buf: [u8; 256],
    len: usize,
    labels: usize,
    /// False when a label holds a dot or the name is too long: such a name matches nothing.
    plain: bool,
}

impl NameKey {
    pub(crate) fn new() -> Self {
        NameKey {
            buf: [0; 256],
            len: 0,
            labels: 0,
            plain: true,
        }
    }

    /// Appends one label (its raw bytes), lower-casing ASCII.
    pub(crate) fn push_label(&mut self, label: &[u8]) {
        let need = label.len() + usize::from(self.labels > 0);
        self.labels += 1;
        if self.len + need > self.buf.len() {
            self.plain = false;
            return;
        }
        if self.labels > 1 {
            self.buf[self.len] = b'.';
            self.len += 1;
        }
        for &b in label {
            if b == b'.' {
                self.plain = false;
            }
            self.buf[self.len] = b.to_ascii_lowercase();
            self.len += 1;
        }
    }

    /// Builds a key from labels.
    pub(crate) fn from_labels<'a>(labels: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut key = NameKey::new();
        for label in labels {
            key.push_label(label);
        }
        key
    }

    /// The key as a string, when it can match anything.
    pub(crate) fn as_str(&self) -> Option<&str> {
        if !self.plain {
            return None;
        }
        std::str::from_utf8(&self.buf[..self.len]).ok()
    }

    /// The number of labels (0 for the root).
    pub(crate) fn labels(&self) -> usize {
        self.labels
    }
}

/// A stored name: lower case, without a trailing dot.
fn normalize(name: &str) -> Arc<str> {
    Arc::from(name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase())
}

/// `d.c.b.a.in-addr.arpa` (lower case, no trailing dot) -> `a.b.c.d`.
pub(crate) fn parse_arpa(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut parts = rest.split('.');
    for slot in octets.iter_mut().rev() {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

impl Table {
    /// Indexes `state`. Names are lower-cased; duplicate addresses for a name are kept once;
    /// an endpoint whose network has no gateway is visible to others but cannot ask.
    pub fn new(state: &DnsState) -> Table {
        let mut table = Table {
            gateways: Arc::new(
                state
                    .gateways
                    .iter()
                    .map(|(id, gw)| (Box::from(id.as_str()), *gw))
                    .collect(),
            ),
            ..Table::default()
        };
        // Each container's endpoints, in the order of their first appearance.
        let mut order: Vec<&str> = Vec::new();
        let mut by_container: HashMap<&str, Vec<&DnsEndpoint>> = HashMap::new();
        for ep in &state.endpoints {
            by_container
                .entry(ep.container_id.as_str())
                .or_insert_with(|| {
                    order.push(ep.container_id.as_str());
                    Vec::new()
                })
                .push(ep);
        }
        for id in order {
            let upstreams = state.upstreams.get(id).map_or(&[][..], Vec::as_slice);
            table.add(id, &by_container[id], upstreams);
        }
        table
    }

    /// This table with container `id`'s entries replaced by `now` (`None`: removed), in
    /// time proportional to the container's own entries. The gateways stay as they are.
    pub fn with_container(&self, id: &str, now: Option<&ContainerDns>) -> Table {
        let mut next = Table {
            gateways: Arc::clone(&self.gateways),
            clients: self.clients.clone(),
            containers: self.containers.clone(),
            networks: self.networks.clone(),
            rotation: AtomicUsize::new(0),
        };
        next.remove(id);
        if let Some(c) = now {
            let eps: Vec<&DnsEndpoint> = c.endpoints.iter().collect();
            next.add(id, &eps, &c.upstreams);
        }
        next
    }

    fn add(&mut self, id: &str, eps: &[&DnsEndpoint], upstreams: &[SocketAddr]) {
        if eps.is_empty() {
            return;
        }
        let id: Arc<str> = Arc::from(id);
        let mut networks: Vec<Arc<str>> = Vec::new();
        let mut endpoints = Vec::with_capacity(eps.len());
        for ep in eps {
            let network = match networks.iter().find(|n| ***n == *ep.network_id) {
                Some(n) => Arc::clone(n),
                None => {
                    let n: Arc<str> = Arc::from(ep.network_id.as_str());
                    networks.push(Arc::clone(&n));
                    n
                }
            };
            let mut names: Vec<Arc<str>> = Vec::with_capacity(ep.names.len());
            for name in &ep.names {
                let name = normalize(name);
                if !name.is_empty() && !names.contains(&name) {
                    names.push(name);
                }
            }
            let net = self.networks.entry(Arc::clone(&network)).or_default();
            for name in &names {
                let addrs = match net.names.get(name) {
                    Some(old) if old.contains(&ep.ip) => continue,
                    Some(old) => old.iter().copied().chain([ep.ip]).collect(),
                    None => Arc::from([ep.ip]),
                };
                net.names.insert(Arc::clone(name), addrs);
            }
            if let Some(primary) = ep.names.first() {
                if !net.ptr.contains_key(&ep.ip) {
                    net.ptr.insert(ep.ip, (normalize(primary), Arc::clone(&id)));
                }
            }
            endpoints.push(EndpointView {
                network,
                ip: ep.ip,
                names: names.into_boxed_slice(),
            });
        }
        let view = Arc::new(ContainerView {
            id: Arc::clone(&id),
            networks: networks.into_boxed_slice(),
            endpoints: endpoints.into_boxed_slice(),
            upstreams: Arc::from(upstreams),
        });
        for ep in view.endpoints.iter() {
            if let Some(gw) = self.gateways.get(&*ep.network) {
                if !self.clients.contains_key(&(*gw, ep.ip)) {
                    self.clients.insert((*gw, ep.ip), Arc::clone(&view));
                }
            }
        }
        self.containers.insert(id, view);
    }

    fn remove(&mut self, id: &str) {
        let Some(view) = self.containers.remove(id) else {
            return;
        };
        for ep in view.endpoints.iter() {
            if let Some(net) = self.networks.get_mut(&*ep.network) {
                for name in ep.names.iter() {
                    let Some(old) = net.names.get(name) else {
                        continue;
                    };
                    let rest: Arc<[Ipv4Addr]> =
                        old.iter().copied().filter(|a| *a != ep.ip).collect();
                    if rest.is_empty() {
                        net.names.remove(name);
                    } else if rest.len() != old.len() {
                        net.names.insert(Arc::clone(name), rest);
                    }
                }
                if net
                    .ptr
                    .get(&ep.ip)
                    .is_some_and(|(_, owner)| *owner == view.id)
                {
                    net.ptr.remove(&ep.ip);
                }
                if net.is_empty() {
                    self.networks.remove(&*ep.network);
                }
            }
            if let Some(gw) = self.gateways.get(&*ep.network) {
                let key = (*gw, ep.ip);
                if self
                    .clients
                    .get(&key)
                    .is_some_and(|c| Arc::ptr_eq(c, &view))
                {
                    self.clients.remove(&key);
                }
            }
        }
    }

    /// Whether `client` is an endpoint on the network served at `gateway`.
    pub(crate) fn knows(&self, gateway: Ipv4Addr, client: Ipv4Addr) -> bool {
        self.clients.contains_key(&(gateway, client))
    }

    /// The next round-robin offset for an answer of `len` addresses.
    pub(crate) fn rotation(&self, len: usize) -> usize {
        if len < 2 {
            0
        } else {
            self.rotation.fetch_add(1, Ordering::Relaxed) % len
        }
    }

    /// The resolution rules for one question.
    pub(crate) fn resolve(
        &self,
        gateway: Ipv4Addr,
        client: Ipv4Addr,
        name: &NameKey,
        qtype: u16,
        qclass: u16,
    ) -> Outcome<'_> {
        let Some(container) = self.clients.get(&(gateway, client)) else {
            return Outcome::UnknownClient;
        };
        if qclass == CLASS_IN {
            if let Some(key) = name.as_str() {
                if qtype == TYPE_PTR {
                    if let Some(ip) = parse_arpa(key) {
                        for n in container.networks.iter() {
                            let ptr = self.networks.get(n).and_then(|net| net.ptr.get(&ip));
                            if let Some((primary, _)) = ptr {
                                return Outcome::Ptr(primary);
                            }
                        }
                    }
                }
                if let Some(addrs) = self.lookup(&container.networks, key) {
                    return if qtype == TYPE_A {
                        Outcome::Addrs(addrs)
                    } else {
                        Outcome::NoData
                    };
                }
            }
        }
        if name.labels() == 1 {
            return Outcome::NxDomain;
        }
        Outcome::Forward(&container.upstreams)
    }

    /// The addresses of `key` across `networks`.
    fn lookup(&self, networks: &[Arc<str>], key: &str) -> Option<Addrs<'_>> {
        let mut found: Option<Addrs<'_>> = None;
        for n in networks {
            let Some(addrs) = self.networks.get(n).and_then(|net| net.names.get(key)) else {
                continue;
            };
            found = Some(match found {
                None => Addrs::One(&addrs[..]),
                Some(prev) => {
                    let mut merged = prev.as_slice().to_vec();
                    for a in addrs.iter() {
                        if !merged.contains(a) {
                            merged.push(*a);
                        }
                    }
                    Addrs::Many(merged)
                }
            });
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DnsEndpoint;

    fn ep(c: &str, n: &str, ip: [u8; 4], names: &[&str]) -> DnsEndpoint {
        DnsEndpoint {
            container_id: c.repeat(64 / c.len()),
            network_id: n.into(),
            ip: Ipv4Addr::from(ip),
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn key(s: &str) -> NameKey {
        NameKey::from_labels(s.split('.').filter(|l| !l.is_empty()).map(str::as_bytes))
    }

    #[test]
    fn arpa_names() {
        assert_eq!(
            parse_arpa("4.3.2.10.in-addr.arpa"),
            Some(Ipv4Addr::new(10, 2, 3, 4))
        );
        assert_eq!(parse_arpa("3.2.10.in-addr.arpa"), None);
        assert_eq!(parse_arpa("5.4.3.2.10.in-addr.arpa"), None);
        assert_eq!(parse_arpa("256.3.2.10.in-addr.arpa"), None);
        assert_eq!(parse_arpa("+4.3.2.10.in-addr.arpa"), None);
        assert_eq!(parse_arpa("4.3.2.10.ip6.arpa"), None);
    }

    #[test]
    fn key_lower_cases_and_flags_dotted_labels() {
        let k = NameKey::from_labels([b"Web".as_slice(), b"LOCAL".as_slice()]);
        assert_eq!(k.as_str(), Some("web.local"));
        assert_eq!(k.labels(), 2);
        let k = NameKey::from_labels([b"a.b".as_slice()]);
        assert_eq!(k.as_str(), None);
        assert_eq!(k.labels(), 1);
    }

    #[test]
    fn merges_networks_and_dedups() {
        let mut state = DnsState {
            endpoints: vec![
                ep("a", "n1", [10, 0, 1, 2], &["client"]),
                ep("a", "n2", [10, 0, 2, 2], &["client"]),
                ep("b", "n1", [10, 0, 1, 3], &["web", "WEB."]),
                ep("b", "n2", [10, 0, 2, 3], &["web"]),
            ],
            ..DnsState::default()
        };
        state
            .gateways
            .insert("n1".into(), Ipv4Addr::new(10, 0, 1, 1));
        let t = Table::new(&state);
        let gw = Ipv4Addr::new(10, 0, 1, 1);
        let me = Ipv4Addr::new(10, 0, 1, 2);
        assert_eq!(
            t.resolve(gw, me, &key("web"), TYPE_A, CLASS_IN),
            Outcome::Addrs(Addrs::Many(vec![
                Ipv4Addr::new(10, 0, 1, 3),
                Ipv4Addr::new(10, 0, 2, 3)
            ]))
        );
        // n2 has no gateway: its addresses cannot ask.
        assert_eq!(
            t.resolve(
                gw,
                Ipv4Addr::new(10, 0, 2, 2),
                &key("web"),
                TYPE_A,
                CLASS_IN
            ),
            Outcome::UnknownClient
        );
    }

    /// What `t` answers to every client of `gateways` for every name of `names` (A and
    /// PTR), address lists sorted: the order of addresses on a name may differ between a
    /// table built at once and one updated container by container.
    fn answers(
        t: &Table,
        gateways: &[Ipv4Addr],
        clients: &[Ipv4Addr],
        names: &[String],
    ) -> Vec<String> {
        let mut out = Vec::new();
        for gw in gateways {
            for client in clients {
                for name in names {
                    let r = match t.resolve(*gw, *client, &key(name), TYPE_A, CLASS_IN) {
                        Outcome::Addrs(a) => {
                            let mut v = a.as_slice().to_vec();
                            v.sort();
                            format!("{v:?}")
                        }
                        Outcome::Forward(u) => format!("forward {u:?}"),
                        other => format!("{other:?}"),
                    };
                    out.push(format!("{gw} {client} {name}: {r}"));
                }
                for ip in clients {
                    let o = ip.octets();
                    let arpa = format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0]);
                    let r = t.resolve(*gw, *client, &key(&arpa), TYPE_PTR, CLASS_IN);
                    out.push(format!("{gw} {client} {arpa}: {r:?}"));
                }
            }
        }
        out
    }

    proptest::proptest! {
        /// A table updated one container at a time answers exactly as one built at once
        /// from the same final state.
        #[test]
        fn updates_match_a_full_build(
            steps in proptest::collection::vec(
                (0u8..6, proptest::option::of((proptest::collection::vec(0u8..3, 0..3), 0u8..4, 0u8..3))),
                1..40,
            )
        ) {
            let gws: Vec<Ipv4Addr> = (0..3).map(|n| Ipv4Addr::new(10, n, 0, 1)).collect();
            let net_gw: HashMap<String, Ipv4Addr> =
                // Network 2 has no gateway: visible to others, cannot ask.
                (0..2).map(|n| (format!("n{n}"), gws[n])).collect();
            let names = ["web", "db", "cache", "x"];
            let id = |c: u8| format!("{c}").repeat(64);
            let mut current: HashMap<u8, ContainerDns> = HashMap::new();
            let mut t = Table::new(&DnsState { gateways: net_gw.clone(), ..DnsState::default() });
            for (c, now) in steps {
                let entry = now.map(|(nets, alias, up)| ContainerDns {
                    endpoints: nets
                        .iter()
                        .map(|&n| DnsEndpoint {
                            container_id: id(c),
                            network_id: format!("n{n}"),
                            ip: Ipv4Addr::new(10, n, 1, c + 2),
                            names: vec![format!("C{c}"), names[usize::from(alias)].to_string()],
                        })
                        .collect(),
                    upstreams: vec![SocketAddr::from(([192, 0, 2, up], 53))],
                });
                t = t.with_container(&id(c), entry.as_ref());
                match entry {
                    Some(e) => current.insert(c, e),
                    None => current.remove(&c),
                };
            }
            let mut state = DnsState { gateways: net_gw, ..DnsState::default() };
            for (c, e) in &current {
                state.endpoints.extend(e.endpoints.iter().cloned());
                state.upstreams.insert(id(*c), e.upstreams.clone());
            }
            let full = Table::new(&state);
            let clients: Vec<Ipv4Addr> =
                (0..3).flat_map(|n| (0..6).map(move |c| Ipv4Addr::new(10, n, 1, c + 2))).collect();
            let mut all_names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            all_names.extend((0..6).map(|c| format!("c{c}")));
            all_names.push("example.com".into());
            proptest::prop_assert_eq!(
                answers(&t, &gws, &clients, &all_names),
                answers(&full, &gws, &clients, &all_names)
            );
        }
    }
}
