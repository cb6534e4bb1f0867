//! Fuzz targets for the port grammar: `-p/--publish` ([`parse_publish`]), `--expose`
//! ([`parse_expose`]), the `reef port NAME 80/tcp` filter and API port keys
//! ([`parse_port_filter`]), and the host file the daemon reads for port picking
//! ([`parse_port_range`], for `net.ipv4.ip_local_port_range`). Issue 6, "Bad input"; the
//! harness and how to run a target for longer are in `fuzz_support/mod.rs` (proptest, not
//! cargo-fuzz: cargo-fuzz needs nightly Rust, which these machines cannot install).
//!
//! Properties: no input panics or hangs; every accepted spec is consistent (container port
//! never 0, consecutive container ports, host ports paired at a constant offset, a host
//! range only for one container port and never starting at 0); accepted specs round-trip
//! from their parts; the three parsers agree where their grammars overlap.

mod fuzz_support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use fuzz_support::{any_text, fuzz, mutate_text, mutations, soup};
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;
use reef_core::ports::{
    format_port_line, parse_expose, parse_port_filter, parse_port_range, parse_publish, PortSpec,
    Proto,
};

/// Words and separators of the `-p` grammar, valid and nearly valid.
const PORT_TOKENS: &[&str] = &[
    "0",
    "1",
    "8",
    "53",
    "80",
    "053",
    "8080",
    "32768",
    "65535",
    "65536",
    "99999",
    "4294967296",
    "-",
    "-",
    "-",
    ":",
    ":",
    ":",
    "::",
    "/",
    "/",
    "[",
    "]",
    "tcp",
    "udp",
    "sctp",
    "TCP",
    "Udp",
    "icmp",
    "0.0.0.0",
    "127.0.0.1",
    "300.1.1.1",
    "1.2.3",
    "::1",
    "[::1]",
    "fe80::1%eth0",
    "2001:db8::1",
    "::ffff:1.2.3.4",
    " ",
    "\t",
    "+",
    "",
    "٣",
    "８",
    "8000-8009",
    "80-89",
    "89-80",
    "1-65535",
    "0-5",
];

fn port_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => soup(PORT_TOKENS, 8),
        1 => any_text(40),
        1 => (soup(PORT_TOKENS, 6), mutations(4)).prop_map(|(s, m)| mutate_text(&s, &m)),
    ]
}

/// The invariants every accepted `-p` value holds.
fn check_publish(s: &str, specs: &[PortSpec]) -> TestCaseResult {
    prop_assert!(!specs.is_empty(), "accepted with no spec");
    let first = &specs[0];
    let paired = first.host_port.is_some();
    for (i, p) in specs.iter().enumerate() {
        prop_assert!(p.container_port > 0, "container port 0: {p:?}");
        prop_assert_eq!(
            usize::from(p.container_port),
            usize::from(first.container_port) + i,
            "container ports not consecutive"
        );
        prop_assert_eq!(p.proto, first.proto);
        prop_assert_eq!(p.host_ip, first.host_ip);
        prop_assert_ne!(p.host_port, Some(0), "host port 0 must mean ephemeral");
        prop_assert_eq!(
            p.host_port.is_some(),
            paired,
            "some host ports paired, some not"
        );
        if let Some(hp) = p.host_port {
            // A host range pairs port by port: the same offset for every container port,
            // so the host range has the container range's size.
            let offset = i32::from(hp) - i32::from(p.container_port);
            let first_offset =
                i32::from(first.host_port.unwrap_or(0)) - i32::from(first.container_port);
            prop_assert_eq!(offset, first_offset, "host range not paired in order");
        }
        if let Some((lo, hi)) = p.host_range {
            prop_assert!(p.host_port.is_none());
            prop_assert!(lo >= 1 && lo < hi, "bad host range {lo}-{hi}");
            prop_assert_eq!(specs.len(), 1, "a host range is for one container port");
        }
    }
    if first.host_ip.is_some_and(|ip| ip.is_ipv6()) {
        prop_assert!(
            s.starts_with('['),
            "an IPv6 host address was accepted unbracketed"
        );
    }
    // Without an address or host part, -p and --expose are one grammar.
    if !s.contains(':') && !s.contains('[') {
        let exposed: Vec<(u16, Proto)> =
            specs.iter().map(|p| (p.container_port, p.proto)).collect();
        prop_assert_eq!(parse_expose(s), Ok(exposed));
    }
    Ok(())
}

#[test]
fn fuzz_ports_publish() {
    fuzz("ports_publish", 3600, port_text(), |s| {
        match parse_publish(&s) {
            Ok(specs) => check_publish(&s, &specs)?,
            // Every error renders, and names something.
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        Ok(())
    });
}

#[test]
fn fuzz_ports_expose_and_filter() {
    fuzz("ports_expose_and_filter", 3600, port_text(), |s| {
        match parse_expose(&s) {
            Ok(ports) => {
                prop_assert!(!ports.is_empty());
                for (i, &(p, proto)) in ports.iter().enumerate() {
                    prop_assert!(p > 0);
                    prop_assert_eq!(usize::from(p), usize::from(ports[0].0) + i);
                    prop_assert_eq!(proto, ports[0].1);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        match parse_port_filter(&s) {
            Ok((p, proto)) => {
                prop_assert!(p > 0);
                // A filter is a one-port --expose, and renders back to itself.
                prop_assert_eq!(parse_expose(&s), Ok(vec![(p, proto)]));
                prop_assert_eq!(parse_port_filter(&format!("{p}/{proto}")), Ok((p, proto)));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        Ok(())
    });
}

/// The host side of a generated `-p` value.
#[derive(Debug, Clone)]
enum Host {
    /// No host part at all (`80`).
    Absent,
    /// An empty one (`:80`, `IP::80`).
    Empty,
    /// `0`: ephemeral.
    Zero,
    /// One port, 1 or more.
    Port(u16),
    /// `lo-hi`, lo >= 1 (length 0 is `p-p`).
    Range(u16, u16),
}

/// A `-p` value built from its parts, and what parsing it must give.
#[derive(Debug, Clone)]
struct Shape {
    ip: Option<IpAddr>,
    host: Host,
    cont_lo: u16,
    cont_len: u16,
    /// The protocol and how it is spelled (`""`, `"/"`, `"/UDP"`...).
    proto: (Proto, String),
}

fn shape() -> impl Strategy<Value = Shape> {
    let ip = prop_oneof![
        2 => Just(None),
        1 => any::<[u8; 4]>().prop_map(|o| Some(IpAddr::from(Ipv4Addr::from(o)))),
        1 => any::<[u16; 8]>().prop_map(|s| Some(IpAddr::from(Ipv6Addr::from(s)))),
    ];
    let host = prop_oneof![
        Just(Host::Absent),
        Just(Host::Empty),
        Just(Host::Zero),
        (1u16..).prop_map(Host::Port),
        (1u16.., 0u16..40).prop_map(|(lo, len)| Host::Range(lo, len)),
    ];
    let proto = prop_oneof![
        Just((Proto::Tcp, String::new())),
        Just((Proto::Tcp, "/".to_string())),
        (
            prop::sample::select(vec![Proto::Tcp, Proto::Udp, Proto::Sctp]),
            any::<bool>()
        )
            .prop_map(|(p, upper)| {
                let name = if upper {
                    p.as_str().to_uppercase()
                } else {
                    p.to_string()
                };
                (p, format!("/{name}"))
            }),
    ];
    (
        ip,
        host,
        1u16..,
        prop_oneof![3 => Just(0u16), 1 => 0u16..40],
        proto,
    )
        .prop_map(|(ip, host, cont_lo, cont_len, proto)| {
            // An address needs a host part, even an empty one (`IP::80`).
            let host = match (&ip, host) {
                (Some(_), Host::Absent) => Host::Empty,
                (_, h) => h,
            };
            Shape {
                ip,
                host,
                cont_lo,
                cont_len: cont_len.min(u16::MAX - cont_lo),
                proto,
            }
        })
}

fn range_text(lo: u16, len: u16) -> String {
    if len == 0 {
        lo.to_string()
    } else {
        format!("{lo}-{}", lo + len)
    }
}

impl Shape {
    fn render(&self) -> String {
        let host = match self.host {
            Host::Absent => None,
            Host::Empty => Some(String::new()),
            Host::Zero => Some("0".to_string()),
            Host::Port(p) => Some(p.to_string()),
            Host::Range(lo, len) => Some(format!("{lo}-{}", lo.saturating_add(len))),
        };
        let cont = format!(
            "{}{}",
            range_text(self.cont_lo, self.cont_len),
            self.proto.1
        );
        match (self.ip, host) {
            (None, None) => cont,
            (None, Some(h)) => format!("{h}:{cont}"),
            (Some(IpAddr::V4(ip)), h) => format!("{ip}:{}:{cont}", h.unwrap_or_default()),
            (Some(IpAddr::V6(ip)), h) => format!("[{ip}]:{}:{cont}", h.unwrap_or_default()),
        }
    }

    /// What `parse_publish` must return: `None` for a refusal (a range mismatch).
    fn expected(&self) -> Option<Vec<PortSpec>> {
        let clo = self.cont_lo;
        let chi = clo + self.cont_len;
        let spec = |host_port, host_range, container_port| PortSpec {
            host_ip: self.ip,
            host_port,
            host_range,
            container_port,
            proto: self.proto.0,
        };
        let single = clo == chi;
        let (hlo, hhi) = match self.host {
            Host::Absent | Host::Empty => {
                return Some((clo..=chi).map(|c| spec(None, None, c)).collect())
            }
            Host::Zero => (0, 0),
            Host::Port(p) => (p, p),
            Host::Range(lo, len) => (lo, lo.saturating_add(len)),
        };
        match (single, hlo == hhi) {
            (true, true) => Some(vec![spec((hlo != 0).then_some(hlo), None, clo)]),
            (true, false) => Some(vec![spec(None, Some((hlo, hhi)), clo)]),
            _ if hhi - hlo == chi - clo => Some(
                (clo..=chi)
                    .map(|c| spec(Some(hlo + (c - clo)), None, c))
                    .collect(),
            ),
            _ => None,
        }
    }
}

#[test]
fn fuzz_ports_publish_round_trip() {
    fuzz("ports_publish_round_trip", 3600, shape(), |shape| {
        let text = shape.render();
        let got = parse_publish(&text);
        match shape.expected() {
            Some(want) => {
                prop_assert_eq!(got.as_ref().ok(), Some(&want), "{}", text);
                check_publish(&text, &want)?;
            }
            None => prop_assert!(got.is_err(), "{text:?} accepted: {got:?}"),
        }
        Ok(())
    });
}

#[test]
fn fuzz_ports_port_line_round_trip() {
    let input = (
        1u16..,
        prop::sample::select(vec![Proto::Tcp, Proto::Udp, Proto::Sctp]),
        any::<IpAddr>(),
        any::<u16>(),
    );
    fuzz(
        "ports_port_line_round_trip",
        1800,
        input,
        |(cp, proto, ip, hp)| {
            let line = format_port_line(cp, proto, ip, hp);
            let (left, right) = line.split_once(" -> ").expect("an arrow");
            prop_assert_eq!(parse_port_filter(left), Ok((cp, proto)));
            prop_assert_eq!(
                right.parse::<SocketAddr>().ok(),
                Some(SocketAddr::new(ip, hp))
            );
            Ok(())
        },
    );
}

/// `/proc/net/tcp`-like text: a header, real-looking lines, and junk.
fn proc_net_text() -> impl Strategy<Value = String> {
    const TOKENS: &[&str] = &[
        "  sl  local_address rem_address   st tx_queue\n",
        "   0: ",
        "0100007F:1F90",
        "00000000:0016",
        "00000000000000000000000001000000:1F90",
        " 00000000:0000 ",
        "0A",
        "07",
        "0a0",
        " 00000000:00000000 00:00000000 00000000     0        0 12345\n",
        "\n",
        ":",
        " ",
        "ZZ",
        "1F9",
    ];
    prop_oneof![soup(TOKENS, 30), any_text(200)]
}

#[test]
fn fuzz_ports_host_files() {
    fuzz("ports_host_files", 1800, proc_net_text(), |text| {
        if let Ok((lo, hi)) = parse_port_range(&text) {
            prop_assert!(lo >= 1 && lo <= hi);
        }
        Ok(())
    });
}
