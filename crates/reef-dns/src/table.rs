//! The lookup table: a [`DnsState`] indexed for the query path, and the resolution rules
//! that both the wire path and [`crate::answer`] run.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::DnsState;

/// DNS record type numbers the rules care about.
pub(crate) const TYPE_A: u16 = 1;
pub(crate) const TYPE_PTR: u16 = 12;
/// The Internet class.
pub(crate) const CLASS_IN: u16 = 1;

/// What the server knows, indexed for lookups: built once per [`crate::DnsServer::publish`]
/// and never changed afterwards (except for its round-robin counter).
#[derive(Debug, Default)]
pub struct Table {
    /// (gateway address, client address) -> index into `containers`.
    clients: HashMap<(Ipv4Addr, Ipv4Addr), usize>,
    containers: Vec<ContainerView>,
    networks: Vec<NetworkView>,
    /// Round-robin counter for answers with several addresses.
    rotation: AtomicUsize,
}

#[derive(Debug)]
struct ContainerView {
    /// Indexes into `Table::networks`: every network the container is on.
    networks: Box<[usize]>,
    upstreams: Arc<[SocketAddr]>,
}

#[derive(Debug, Default)]
struct NetworkView {
    /// Lower-case name -> addresses on this network, in endpoint order.
    names: HashMap<Box<str>, Vec<Ipv4Addr>>,
    /// Address -> the primary (container) name of the endpoint holding it.
    ptr: HashMap<Ipv4Addr, Box<str>>,
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
fn normalize(name: &str) -> Box<str> {
    name.strip_suffix('.')
        .unwrap_or(name)
        .to_ascii_lowercase()
        .into_boxed_str()
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
        let mut network_index: HashMap<&str, usize> = HashMap::new();
        let mut container_index: HashMap<&str, usize> = HashMap::new();
        let mut networks: Vec<NetworkView> = Vec::new();
        let mut container_nets: Vec<Vec<usize>> = Vec::new();
        let mut container_ids: Vec<&str> = Vec::new();
        let mut clients = HashMap::new();

        for ep in &state.endpoints {
            let n = *network_index
                .entry(ep.network_id.as_str())
                .or_insert_with(|| {
                    networks.push(NetworkView::default());
                    networks.len() - 1
                });
            let c = *container_index
                .entry(ep.container_id.as_str())
                .or_insert_with(|| {
                    container_nets.push(Vec::new());
                    container_ids.push(ep.container_id.as_str());
                    container_nets.len() - 1
                });
            if !container_nets[c].contains(&n) {
                container_nets[c].push(n);
            }
            let net = &mut networks[n];
            for name in &ep.names {
                let name = normalize(name);
                if name.is_empty() {
                    continue;
                }
                let addrs = net.names.entry(name).or_default();
                if !addrs.contains(&ep.ip) {
                    addrs.push(ep.ip);
                }
            }
            if let Some(primary) = ep.names.first() {
                net.ptr.entry(ep.ip).or_insert_with(|| normalize(primary));
            }
            if let Some(gw) = state.gateways.get(&ep.network_id) {
                clients.entry((*gw, ep.ip)).or_insert(c);
            }
        }

        let containers = container_nets
            .into_iter()
            .zip(container_ids)
            .map(|(nets, id)| ContainerView {
                networks: nets.into_boxed_slice(),
                upstreams: state
                    .upstreams
                    .get(id)
                    .map(|u| Arc::from(u.as_slice()))
                    .unwrap_or_else(|| Arc::from(Vec::new())),
            })
            .collect();

        Table {
            clients,
            containers,
            networks,
            rotation: AtomicUsize::new(0),
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
        let Some(&c) = self.clients.get(&(gateway, client)) else {
            return Outcome::UnknownClient;
        };
        let container = &self.containers[c];
        if qclass == CLASS_IN {
            if let Some(key) = name.as_str() {
                if qtype == TYPE_PTR {
                    if let Some(ip) = parse_arpa(key) {
                        for &n in container.networks.iter() {
                            if let Some(primary) = self.networks[n].ptr.get(&ip) {
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
    fn lookup(&self, networks: &[usize], key: &str) -> Option<Addrs<'_>> {
        let mut found: Option<Addrs<'_>> = None;
        for &n in networks {
            let Some(addrs) = self.networks[n].names.get(key) else {
                continue;
            };
            found = Some(match found {
                None => Addrs::One(addrs),
                Some(prev) => {
                    let mut merged = prev.as_slice().to_vec();
                    for a in addrs {
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
}
