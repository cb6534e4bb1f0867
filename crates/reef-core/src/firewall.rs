//! Firewall policy, rendered as nftables scripts for reef's own table `ip reef`.
//!
//! The chain skeleton is fixed: a handful of rules that look packets up in sets and maps.
//! Everything per network, per container and per port is an element of those sets, so
//! publishing the thousandth port is one `add element` transaction and a packet costs one
//! hash lookup whatever the number of ports. reef never touches any other table, and never
//! flushes the chain `REEF-USER`, which the forward chain consults first: administrators put
//! their own rules there (e.g. `nft add rule ip reef REEF-USER ip saddr 10.200.55.3 tcp dport 80 drop`).
//!
//! What each piece does (facts proven in shared/testbed-notes/05-netns-nft-nat.sh):
//! - `published` (jumped from nat prerouting and output for local destinations): DNAT by
//!   host address, protocol and port (`dnat_ip`), then by protocol and port alone (`dnat_any`).
//! - `postrouting`: masquerade DNATed traffic that goes back out its own bridge (hairpin),
//!   `127.0.0.0/8` sources leaving through a bridge (the host's own `127.0.0.1:PORT`), and
//!   traffic of masqueraded subnets leaving by any other interface (`--ip-masq`).
//! - `forward`: `REEF-USER`, then established flows, then `--link` openings, then the
//!   inter-container drop of bridges with `--icc=false` (bridged traffic reaches this hook
//!   through br_netfilter).
//! - `allow-pre`/`allow-out`: per-port source allow-lists, checked before DNAT.

use core::net::Ipv4Addr;
use std::fmt::Write;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::ports::Proto;

/// reef's table (family `ip`).
pub const TABLE: &str = "reef";
/// The chain reef creates once and never changes.
pub const USER_CHAIN: &str = "REEF-USER";

/// A bridge network's firewall facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRule {
    /// Bridge interface.
    pub bridge: String,
    /// Its subnet.
    pub subnet: Ipv4Net,
    /// Masquerade traffic leaving the subnet through other interfaces.
    pub masquerade: bool,
    /// Let containers on the bridge reach each other.
    pub icc: bool,
    /// Docker's `--internal`: nothing is forwarded between this bridge and anywhere else.
    #[serde(default)]
    pub internal: bool,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRule {
    /// Host address it is bound to; `None` (0.0.0.0) means every local address.
    pub host_ip: Option<Ipv4Addr>,
    /// Host port.
    pub host_port: u16,
    /// Protocol.
    pub proto: Proto,
    /// Container address.
    pub ctr_ip: Ipv4Addr,
    /// Container port.
    pub ctr_port: u16,
    /// Sources allowed to reach it; empty means everyone.
    #[serde(default)]
    pub allow: Vec<Ipv4Net>,
}

/// A `--link` opening: `src` may reach `dst` on `proto`/`port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRule {
    /// The linking container.
    pub src: Ipv4Addr,
    /// The linked container.
    pub dst: Ipv4Addr,
    /// Protocol.
    pub proto: Proto,
    /// Exposed port.
    pub port: u16,
}

/// A set of firewall elements: what one container (or one network) adds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Elements {
    /// Networks.
    #[serde(default)]
    pub networks: Vec<NetworkRule>,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<PortRule>,
    /// Link openings.
    #[serde(default)]
    pub links: Vec<LinkRule>,
    /// Container interfaces and the only MAC and IPv4 address each may send from.
    #[serde(default)]
    pub endpoints: Vec<EndpointRule>,
}

/// Anti-spoofing identity of one container interface, checked on its bridge port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRule {
    /// Host-side veth (the bridge port the container's frames enter by).
    pub port: String,
    /// The container interface's MAC.
    pub mac: String,
    /// Its address.
    pub ip: Ipv4Addr,
}

impl Elements {
    /// True when there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
            && self.ports.is_empty()
            && self.links.is_empty()
            && self.endpoints.is_empty()
    }

    /// Append another set of elements.
    pub fn extend(&mut self, other: &Elements) {
        self.networks.extend(other.networks.iter().cloned());
        self.ports.extend(other.ports.iter().cloned());
        self.links.extend(other.links.iter().cloned());
        self.endpoints.extend(other.endpoints.iter().cloned());
    }
}

const SETS: &[(&str, &str)] = &[
    ("bridges", "type ifname;"),
    ("bridge_nets", "type ifname . ipv4_addr; flags interval;"),
    ("masq_nets", "type ipv4_addr; flags interval;"),
    ("icc_deny", "type ifname . ifname;"),
    ("same_bridge", "type ifname . ifname;"),
    ("internal", "type ifname;"),
    ("restricted", "type inet_proto . inet_service;"),
    (
        "allowed",
        "type inet_proto . inet_service . ipv4_addr; flags interval;",
    ),
    (
        "links",
        "type ipv4_addr . ipv4_addr . inet_proto . inet_service;",
    ),
];

const MAPS: &[(&str, &str)] = &[
    (
        "dnat_any",
        "type inet_proto . inet_service : ipv4_addr . inet_service;",
    ),
    (
        "dnat_ip",
        "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;",
    ),
];

const CHAINS: &[(&str, &str)] = &[
    (
        "prerouting",
        "type nat hook prerouting priority dstnat; policy accept;",
    ),
    (
        "output",
        "type nat hook output priority -100; policy accept;",
    ),
    ("published", ""),
    (
        "postrouting",
        "type nat hook postrouting priority srcnat; policy accept;",
    ),
    (
        "forward",
        "type filter hook forward priority filter; policy accept;",
    ),
    (
        "allow-pre",
        "type filter hook prerouting priority -110; policy accept;",
    ),
    (
        "allow-out",
        "type filter hook output priority -110; policy accept;",
    ),
];

const RULES: &[(&str, &str)] = &[
    ("prerouting", "fib daddr type local jump published"),
    ("output", "fib daddr type local jump published"),
    (
        "published",
        "dnat ip to ip daddr . meta l4proto . th dport map @dnat_ip",
    ),
    ("published", "dnat ip to meta l4proto . th dport map @dnat_any"),
    (
        "postrouting",
        "ct status dnat oifname . ip saddr @bridge_nets masquerade",
    ),
    ("postrouting", "ip saddr 127.0.0.0/8 oifname @bridges masquerade"),
    ("postrouting", "oifname . ip saddr @bridge_nets return"),
    ("postrouting", "ip saddr @masq_nets masquerade"),
    ("forward", "jump REEF-USER"),
    // Every packet of a flow comes here (bridged ones too, through br_netfilter): a flow
    // the rules below let start goes on with one conntrack check, not five set lookups.
    ("forward", "ct state established,related accept"),
    // Networks are isolated from each other, except through published ports (DNAT).
    (
        "forward",
        "iifname @bridges oifname @bridges ct status & dnat == 0 iifname . oifname != @same_bridge drop",
    ),
    ("forward", "iifname @internal iifname . oifname != @same_bridge drop"),
    ("forward", "oifname @internal iifname . oifname != @same_bridge drop"),
    (
        "forward",
        "ip saddr . ip daddr . meta l4proto . th dport @links accept",
    ),
    ("forward", "iifname . oifname @icc_deny drop"),
    // Every packet passes these hooks: the (usually empty) set lookup comes before the
    // route lookup, which is dearer, so that most packets stop at the first.
    (
        "allow-pre",
        "meta l4proto . th dport @restricted fib daddr type local meta l4proto . th dport . ip saddr != @allowed drop",
    ),
    (
        "allow-out",
        "meta l4proto . th dport @restricted fib daddr type local meta l4proto . th dport . ip saddr != @allowed drop",
    ),
];

/// The whole ruleset for reef's table, with `all` as its elements, as one transaction.
/// Idempotent: creates what is missing, empties reef's own chains and sets and fills them
/// again, and leaves `REEF-USER` (and its rules) alone. Used at start-up and by repair.
pub fn render_sync(all: &Elements) -> String {
    let mut s = String::new();
    let t = TABLE;
    let _ = writeln!(s, "add table ip {t}");
    let _ = writeln!(s, "add chain ip {t} {USER_CHAIN}");
    for (name, def) in SETS {
        let _ = writeln!(s, "add set ip {t} {name} {{ {def} }}");
        let _ = writeln!(s, "flush set ip {t} {name}");
    }
    for (name, def) in MAPS {
        let _ = writeln!(s, "add map ip {t} {name} {{ {def} }}");
        let _ = writeln!(s, "flush map ip {t} {name}");
    }
    for (name, def) in CHAINS {
        if def.is_empty() {
            let _ = writeln!(s, "add chain ip {t} {name}");
        } else {
            let _ = writeln!(s, "add chain ip {t} {name} {{ {def} }}");
        }
        let _ = writeln!(s, "flush chain ip {t} {name}");
    }
    for (chain, rule) in RULES {
        let _ = writeln!(s, "add rule ip {t} {chain} {rule}");
    }
    // Anti-spoofing runs in the bridge family, on the port a frame enters by, before
    // anything else sees it: a container may send only from its own MAC and IPv4 address
    // (IP and ARP), whatever br_netfilter is set to.
    let _ = writeln!(s, "add table bridge {t}");
    let _ = writeln!(s, "add set bridge {t} ports {{ type ifname; }}");
    let _ = writeln!(s, "flush set bridge {t} ports");
    let _ = writeln!(
        s,
        "add set bridge {t} port_mac {{ type ifname . ether_addr; }}"
    );
    let _ = writeln!(s, "flush set bridge {t} port_mac");
    let _ = writeln!(
        s,
        "add set bridge {t} port_ip {{ type ifname . ipv4_addr; }}"
    );
    let _ = writeln!(s, "flush set bridge {t} port_ip");
    let _ = writeln!(
        s,
        "add chain bridge {t} spoof {{ type filter hook prerouting priority -300; policy accept; }}"
    );
    let _ = writeln!(s, "flush chain bridge {t} spoof");
    for rule in [
        "iifname @ports iifname . ether saddr != @port_mac drop",
        "iifname @ports ether type ip iifname . ip saddr != @port_ip drop",
        "iifname @ports ether type arp iifname . arp saddr ip != @port_ip drop",
    ] {
        let _ = writeln!(s, "add rule bridge {t} spoof {rule}");
    }
    s.push_str(&render_add(all));
    s
}

fn bridge_element(s: &mut String, verb: &str, set: &str, elem: &str) {
    let _ = writeln!(s, "{verb} element bridge {TABLE} {set} {{ {elem} }}");
}

fn element(s: &mut String, verb: &str, set: &str, elem: &str) {
    let _ = writeln!(s, "{verb} element ip {TABLE} {set} {{ {elem} }}");
}

/// Lines for one kind of change; `adding` selects `add` (with map values) or `delete`
/// (map keys only).
fn render(el: &Elements, adding: bool) -> String {
    let verb = if adding { "add" } else { "delete" };
    let mut s = String::new();
    for n in &el.networks {
        let b = &n.bridge;
        element(&mut s, verb, "bridges", &format!("\"{b}\""));
        element(
            &mut s,
            verb,
            "bridge_nets",
            &format!("\"{b}\" . {}", n.subnet),
        );
        element(&mut s, verb, "same_bridge", &format!("\"{b}\" . \"{b}\""));
        if n.internal {
            element(&mut s, verb, "internal", &format!("\"{b}\""));
        }
        if n.masquerade {
            element(&mut s, verb, "masq_nets", &n.subnet.to_string());
        }
        if !n.icc {
            element(&mut s, verb, "icc_deny", &format!("\"{b}\" . \"{b}\""));
        }
    }
    for p in &el.ports {
        let key = match p.host_ip {
            Some(ip) => format!("{ip} . {} . {}", p.proto, p.host_port),
            None => format!("{} . {}", p.proto, p.host_port),
        };
        let map = if p.host_ip.is_some() {
            "dnat_ip"
        } else {
            "dnat_any"
        };
        if adding {
            element(
                &mut s,
                verb,
                map,
                &format!("{key} : {} . {}", p.ctr_ip, p.ctr_port),
            );
        } else {
            element(&mut s, verb, map, &key);
        }
        if !p.allow.is_empty() {
            element(
                &mut s,
                verb,
                "restricted",
                &format!("{} . {}", p.proto, p.host_port),
            );
            for net in &p.allow {
                element(
                    &mut s,
                    verb,
                    "allowed",
                    &format!("{} . {} . {net}", p.proto, p.host_port),
                );
            }
        }
    }
    for e in &el.endpoints {
        let p = &e.port;
        bridge_element(&mut s, verb, "ports", &format!("\"{p}\""));
        bridge_element(&mut s, verb, "port_mac", &format!("\"{p}\" . {}", e.mac));
        bridge_element(&mut s, verb, "port_ip", &format!("\"{p}\" . {}", e.ip));
    }
    for l in &el.links {
        element(
            &mut s,
            verb,
            "links",
            &format!("{} . {} . {} . {}", l.src, l.dst, l.proto, l.port),
        );
    }
    s
}

/// `add element` lines for `el` (one transaction when applied together).
pub fn render_add(el: &Elements) -> String {
    render(el, true)
}

/// `delete element` lines for `el`.
pub fn render_delete(el: &Elements) -> String {
    render(el, false)
}

/// The anti-spoofing identity of an endpoint with a host end (a bridge port); an endpoint
/// without one (macvlan) sends straight out its parent, past reef's firewall.
pub fn endpoint_rule(ep: &crate::model::Endpoint) -> Option<EndpointRule> {
    Some(EndpointRule {
        port: ep.host_ifname.clone()?,
        mac: ep.mac.clone(),
        ip: ep.ip,
    })
}

/// Every firewall element a running container stands for: what it recorded, with the
/// anti-spoofing identities derived from its endpoints (so an attachment cut off before it
/// recorded its identity is still covered).
pub fn container_elements(c: &crate::model::Container) -> Elements {
    let mut el = c.firewall.clone();
    el.endpoints = c.endpoints.iter().filter_map(endpoint_rule).collect();
    el
}

/// An endpoint's identity as elements of their own (empty for an endpoint without one).
pub fn identity(ep: &crate::model::Endpoint) -> Elements {
    Elements {
        endpoints: endpoint_rule(ep).into_iter().collect(),
        ..Default::default()
    }
}

/// The elements of a running container that go when it leaves the network of `ep`: that
/// endpoint's identity and, when it was the container's first network (`primary`, where
/// ports and links point), its published ports and link openings. Taken out of `el`.
pub fn take_on_leave(el: &mut Elements, ep: &crate::model::Endpoint, primary: bool) -> Elements {
    let port = ep.host_ifname.as_deref();
    let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut el.endpoints)
        .into_iter()
        .partition(|e| Some(e.port.as_str()) == port);
    el.endpoints = kept;
    let mut taken = Elements {
        endpoints: gone,
        ..Default::default()
    };
    if primary {
        taken.ports = std::mem::take(&mut el.ports);
        taken.links = std::mem::take(&mut el.links);
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Elements {
        Elements {
            networks: vec![NetworkRule {
                bridge: "reef0".into(),
                subnet: "172.17.0.0/16".parse().unwrap(),
                masquerade: true,
                icc: false,
                internal: false,
            }],
            ports: vec![
                PortRule {
                    host_ip: None,
                    host_port: 8080,
                    proto: Proto::Tcp,
                    ctr_ip: "172.17.0.2".parse().unwrap(),
                    ctr_port: 80,
                    allow: vec![],
                },
                PortRule {
                    host_ip: Some("192.0.2.1".parse().unwrap()),
                    host_port: 5353,
                    proto: Proto::Udp,
                    ctr_ip: "172.17.0.3".parse().unwrap(),
                    ctr_port: 53,
                    allow: vec!["10.0.0.0/8".parse().unwrap()],
                },
            ],
            links: vec![LinkRule {
                src: "172.17.0.4".parse().unwrap(),
                dst: "172.17.0.2".parse().unwrap(),
                proto: Proto::Tcp,
                port: 80,
            }],
            endpoints: vec![EndpointRule {
                port: "veth1234567".into(),
                mac: "02:42:ac:11:00:02".into(),
                ip: "172.17.0.2".parse().unwrap(),
            }],
        }
    }

    #[test]
    fn elements_render_as_set_and_map_lines() {
        let add = render_add(&sample());
        let expected = "\
add element ip reef bridges { \"reef0\" }
add element ip reef bridge_nets { \"reef0\" . 172.17.0.0/16 }
add element ip reef same_bridge { \"reef0\" . \"reef0\" }
add element ip reef masq_nets { 172.17.0.0/16 }
add element ip reef icc_deny { \"reef0\" . \"reef0\" }
add element ip reef dnat_any { tcp . 8080 : 172.17.0.2 . 80 }
add element ip reef dnat_ip { 192.0.2.1 . udp . 5353 : 172.17.0.3 . 53 }
add element ip reef restricted { udp . 5353 }
add element ip reef allowed { udp . 5353 . 10.0.0.0/8 }
add element bridge reef ports { \"veth1234567\" }
add element bridge reef port_mac { \"veth1234567\" . 02:42:ac:11:00:02 }
add element bridge reef port_ip { \"veth1234567\" . 172.17.0.2 }
add element ip reef links { 172.17.0.4 . 172.17.0.2 . tcp . 80 }
";
        assert_eq!(add, expected);
        let del = render_delete(&sample());
        assert!(
            del.contains("delete element ip reef dnat_any { tcp . 8080 }\n"),
            "{del}"
        );
        assert!(del.contains("delete element ip reef dnat_ip { 192.0.2.1 . udp . 5353 }\n"));
        assert!(!del.contains(" : "), "deletes name map keys only: {del}");
    }

    #[test]
    fn sync_keeps_the_user_chain_and_never_deletes_the_table() {
        let s = render_sync(&Elements::default());
        assert!(s.contains("add chain ip reef REEF-USER\n"));
        assert!(!s.contains("flush chain ip reef REEF-USER"));
        assert!(!s.contains("delete table"));
        // The skeleton's rule count does not depend on the number of elements.
        let rules = |s: &str| s.lines().filter(|l| l.starts_with("add rule")).count();
        let mut many = Elements::default();
        for i in 0..1000u16 {
            many.ports.push(PortRule {
                host_ip: None,
                host_port: 10000 + i,
                proto: Proto::Tcp,
                ctr_ip: Ipv4Addr::new(172, 17, (i / 250) as u8, (i % 250 + 2) as u8),
                ctr_port: 80,
                allow: vec![],
            });
        }
        assert_eq!(rules(&render_sync(&many)), rules(&s));
        // nft 1.0.6 refuses a rule followed by `}` on one line: the script has none.
        assert!(s
            .lines()
            .all(|l| !(l.starts_with("add rule") && l.contains('}'))));
    }
}
