//! Fuzz targets for the DNS server's packet handling: the server's own wire path over raw
//! bytes ([`handle_packet`], what its UDP and TCP tasks run on every packet) and the
//! reference rules over decoded messages ([`answer`]). Issue 6, "Bad input"; harness and
//! long runs in `crates/reef-core/tests/fuzz_support/mod.rs` (shared, included below).
//! No sockets and no root: these run anywhere, unlike `tests/server.rs`.
//!
//! Inputs: arbitrary bytes (empty to oversized), valid queries (built byte by byte, with
//! arbitrary label bytes, any type and class, EDNS of any payload and version, any header
//! bits but QR and the opcode) and every kind of mutation of them (truncation, bit flips,
//! compression pointers, inflated counts), from known clients, strangers and wrong gateways,
//! over UDP and TCP, against a table with odd names (dots, case, non-ASCII, long labels).
//!
//! Properties: nothing panics or hangs; a reply carries the query's id and the QR bit,
//! echoes the question byte for byte or none at all, and fits the transport (512 bytes
//! over UDP without EDNS, 1232 with); a response is never answered (no loops, no
//! reflection); a stranger gets nothing over UDP and at most REFUSED over TCP (never an
//! open resolver); a valid query from a known client always gets a reply or a forward, with
//! its id and question; and the wire path and [`answer`] agree on it.

#[path = "../../reef-core/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};

use fuzz_support::{any_bytes, any_text, fuzz, mutate, mutations};
use hickory_proto::op::{Message, MessageType, OpCode};
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;
use reef_dns::{
    answer, handle_packet, Decision, DnsEndpoint, DnsState, PacketAction, Table, Transport,
};

const GW_A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const GW_B: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const WEB1: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
const WEB2: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 4);
const SECRET: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 5);
const LONER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 6);
const STRANGER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 99);
/// What the server advertises and caps its own UDP answers at (`wire::OUR_UDP_PAYLOAD`).
const OUR_UDP_PAYLOAD: usize = 1232;
const REFUSED: u8 = 5;

fn id(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

fn ep(c: char, net: &str, ip: Ipv4Addr, names: &[&str]) -> DnsEndpoint {
    let mut names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    names.insert(1.min(names.len()), id(c)[..12].to_string());
    DnsEndpoint {
        container_id: id(c),
        network_id: net.into(),
        ip,
        names,
    }
}

/// Two served networks, a container on both sides with upstreams and one without, shared
/// and dotted aliases; plus `extra` endpoints with generated (odd) names.
fn state(extra: &[(u8, u8, Vec<String>)]) -> DnsState {
    let mut s = DnsState {
        endpoints: vec![
            ep('a', "neta", CLIENT, &["client"]),
            ep('b', "neta", WEB1, &["web1", "web"]),
            ep('c', "neta", WEB2, &["web2", "web", "db.local"]),
            ep('d', "netb", SECRET, &["secret"]),
            ep('e', "netb", LONER, &["loner"]),
        ],
        ..DnsState::default()
    };
    for (i, (net, host, names)) in extra.iter().enumerate() {
        let (net, base) = match net % 3 {
            0 => ("neta", [10, 1, 0]),
            1 => ("netb", [10, 2, 0]),
            // A network the server does not serve: visible to nobody, asks nothing.
            _ => ("netc", [10, 3, 0]),
        };
        s.endpoints.push(DnsEndpoint {
            container_id: id(char::from(b'f' + i as u8)),
            network_id: net.into(),
            ip: Ipv4Addr::new(base[0], base[1], base[2], *host),
            names: names.clone(),
        });
    }
    s.gateways.insert("neta".into(), GW_A);
    s.gateways.insert("netb".into(), GW_B);
    s.upstreams
        .insert(id('a'), vec![SocketAddr::from(([192, 0, 2, 53], 53))]);
    s.upstreams.insert(
        id('b'),
        vec![
            SocketAddr::from(([192, 0, 2, 53], 53)),
            SocketAddr::from(([192, 0, 2, 54], 5353)),
        ],
    );
    s
}

/// Whether `client` is an endpoint on the network served at `gateway`.
fn knows(s: &DnsState, gateway: Ipv4Addr, client: Ipv4Addr) -> bool {
    s.endpoints
        .iter()
        .any(|e| e.ip == client && s.gateways.get(&e.network_id) == Some(&gateway))
}

/// Extra endpoints with odd names: network, last octet, names.
fn extras() -> impl Strategy<Value = Vec<(u8, u8, Vec<String>)>> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "",
            ".",
            "web",
            "WEB1",
            "a.b",
            "x..y",
            "trailing.",
            "ünï",
            "a b",
            "client"
        ])
        .prop_map(String::from),
        any_text(12),
        "[a-z]{60,70}(\\.[a-z]{1,63}){0,5}",
    ];
    prop::collection::vec(
        (any::<u8>(), any::<u8>(), prop::collection::vec(name, 0..3)),
        0..3,
    )
}

/// Where a packet comes from: (gateway it arrived on, source address).
fn origin() -> impl Strategy<Value = (Ipv4Addr, Ipv4Addr)> {
    prop_oneof![
        4 => Just((GW_A, CLIENT)),
        1 => Just((GW_A, WEB1)),
        1 => Just((GW_B, LONER)),
        1 => Just((GW_B, SECRET)),
        1 => Just((GW_A, STRANGER)),
        1 => Just((GW_B, CLIENT)),
        1 => (any::<[u8; 4]>(), any::<u8>()).prop_map(|(g, h)| (Ipv4Addr::from(g), Ipv4Addr::new(10, 1, 0, h))),
    ]
}

fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![Just(Transport::Udp), Just(Transport::Tcp)]
}

/// A query as its parts, written byte by byte so labels can hold any bytes.
#[derive(Debug, Clone)]
struct RawQuery {
    id: u16,
    /// Header flags; QR and the opcode are cleared by `encode`.
    flags: u16,
    labels: Vec<Vec<u8>>,
    qtype: u16,
    qclass: u16,
    /// EDNS: (UDP payload, version, DO bit).
    edns: Option<(u16, u8, bool)>,
}

impl RawQuery {
    fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(64);
        p.extend_from_slice(&self.id.to_be_bytes());
        p.extend_from_slice(&(self.flags & !0xF800).to_be_bytes());
        p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(self.edns.is_some())]);
        p.extend_from_slice(&self.question());
        if let Some((payload, version, dnssec_ok)) = self.edns {
            p.push(0);
            p.extend_from_slice(&41u16.to_be_bytes());
            p.extend_from_slice(&payload.to_be_bytes());
            p.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        }
        p
    }

    /// The question section as it goes on the wire.
    fn question(&self) -> Vec<u8> {
        let mut q = Vec::new();
        for l in &self.labels {
            q.push(l.len() as u8);
            q.extend_from_slice(l);
        }
        q.push(0);
        q.extend_from_slice(&self.qtype.to_be_bytes());
        q.extend_from_slice(&self.qclass.to_be_bytes());
        q
    }
}

fn label() -> impl Strategy<Value = Vec<u8>> {
    const WORDS: &[&str] = &[
        "web",
        "WEB",
        "Web1",
        "web2",
        "db",
        "local",
        "client",
        "secret",
        "loner",
        "in-addr",
        "arpa",
        "IN-ADDR",
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "10",
        "256",
        "example",
        "com",
        "bbbbbbbbbbbb",
        "aaaaaaaaaaaa",
    ];
    prop_oneof![
        6 => prop::sample::select(WORDS).prop_map(|w| w.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 1..=63),
        1 => Just(b"a.b".to_vec()),
    ]
}

/// Labels whose wire form fits the 255-byte limit.
fn labels() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let ptr =
        prop::sample::select(vec![CLIENT, WEB1, WEB2, SECRET, LONER, STRANGER]).prop_map(|ip| {
            let o = ip.octets();
            let mut l: Vec<Vec<u8>> = o.iter().rev().map(|b| b.to_string().into_bytes()).collect();
            l.push(b"in-addr".to_vec());
            l.push(b"arpa".to_vec());
            l
        });
    // Mostly names the table may know (one label, or the dotted alias), so that answers,
    // not forwards, dominate.
    let known = prop::sample::select(vec![
        "web",
        "WEB1",
        "Web2",
        "client",
        "secret",
        "loner",
        "nosuch",
        "bbbbbbbbbbbb",
        "db.local",
        "DB.Local",
    ])
    .prop_map(|n| {
        n.split('.')
            .map(|l| l.as_bytes().to_vec())
            .collect::<Vec<_>>()
    });
    prop_oneof![4 => known, 3 => prop::collection::vec(label(), 0..6), 2 => ptr].prop_map(
        |mut ls| {
            while ls.iter().map(|l| l.len() + 1).sum::<usize>() + 1 > 255 {
                ls.pop();
            }
            ls
        },
    )
}

fn raw_query() -> impl Strategy<Value = RawQuery> {
    let qtype = prop_oneof![
        4 => Just(1u16),
        1 => Just(12u16),
        1 => prop::sample::select(vec![28u16, 15, 16, 255, 41, 0, 65535]),
        1 => any::<u16>(),
    ];
    let qclass = prop_oneof![6 => Just(1u16), 1 => prop::sample::select(vec![3u16, 254, 255, 0]), 1 => any::<u16>()];
    let edns = prop::option::of((
        prop_oneof![Just(4096u16), Just(512u16), Just(1232u16), any::<u16>()],
        prop_oneof![6 => Just(0u8), 1 => any::<u8>()],
        any::<bool>(),
    ));
    let flags = prop_oneof![3 => Just(0x0100u16), 1 => any::<u16>()];
    (any::<u16>(), flags, labels(), qtype, qclass, edns).prop_map(
        |(id, flags, labels, qtype, qclass, edns)| RawQuery {
            id,
            flags,
            labels,
            qtype,
            qclass,
            edns,
        },
    )
}

/// The length of the question section of `packet` when its header says one question and
/// its name is plain labels that fit, else `None`.
fn question_len(packet: &[u8]) -> Option<usize> {
    if packet.len() < 12 || packet[4..6] != [0, 1] {
        return None;
    }
    let mut at = 12;
    loop {
        let len = usize::from(*packet.get(at)?);
        if len & 0xC0 != 0 {
            return None;
        }
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    (at + 4 <= packet.len()).then_some(at + 4 - 12)
}

/// What every action of the wire path must respect, whatever the packet.
fn check_action(
    packet: &[u8],
    action: &PacketAction,
    transport: Transport,
    known: bool,
) -> TestCaseResult {
    let is_response = packet.len() > 2 && packet[2] & 0x80 != 0;
    match action {
        PacketAction::Drop => {}
        PacketAction::Forward(upstreams) => {
            prop_assert!(known, "a stranger's query forwarded: an open resolver");
            prop_assert!(!upstreams.is_empty());
            prop_assert!(!is_response);
        }
        PacketAction::Reply(r) => {
            prop_assert!(!is_response, "a response was answered");
            prop_assert!(r.len() >= 12);
            prop_assert_eq!(&r[..2], &packet[..2], "reply id differs from the query's");
            prop_assert!(r[2] & 0x80 != 0, "reply without QR");
            let rcode = r[3] & 0x0F;
            if !known {
                prop_assert_eq!(transport, Transport::Tcp, "a stranger answered over UDP");
                prop_assert_eq!(rcode, REFUSED, "a stranger got more than REFUSED");
            }
            let (qd, an, ns, ar) = (&r[4..6], &r[6..8], &r[8..10], &r[10..12]);
            prop_assert!(qd == [0, 0] || qd == [0, 1]);
            prop_assert_eq!(ns, &[0, 0]);
            prop_assert!(ar == [0, 0] || ar == [0, 1]);
            if qd == [0, 1] {
                let q = question_len(packet)
                    .ok_or_else(|| TestCaseError::fail("echoed a question the query lacks"))?;
                prop_assert_eq!(
                    &r[12..12 + q],
                    &packet[12..12 + q],
                    "question not echoed verbatim"
                );
            }
            if an != [0, 0] {
                prop_assert!(known && rcode == 0);
            }
            match transport {
                Transport::Udp if ar == [0, 0] => {
                    prop_assert!(r.len() <= 512, "{} bytes over UDP", r.len())
                }
                Transport::Udp => {
                    prop_assert!(r.len() <= OUR_UDP_PAYLOAD, "{} bytes over UDP", r.len())
                }
                Transport::Tcp => prop_assert!(r.len() <= usize::from(u16::MAX)),
            }
        }
    }
    Ok(())
}

/// Runs the wire path on `packet` and checks what it did.
fn wire(
    st: &DnsState,
    (gateway, client): (Ipv4Addr, Ipv4Addr),
    packet: &[u8],
    transport: Transport,
) -> Result<PacketAction, TestCaseError> {
    let table = Table::new(st);
    let action = handle_packet(&table, gateway, client, packet, transport);
    check_action(packet, &action, transport, knows(st, gateway, client))?;
    Ok(action)
}

/// Bytes: arbitrary (small to oversized), or a valid query mutated.
fn packet() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => any_bytes(64),
        1 => any_bytes(600),
        1 => any_bytes(5000),
        4 => (raw_query(), mutations(2)).prop_map(|(q, m)| mutate(q.encode(), &m)),
        3 => (raw_query(), mutations(8)).prop_map(|(q, m)| mutate(q.encode(), &m)),
        // Header counts inflated past what the packet holds.
        2 => (raw_query(), any::<[u8; 8]>()).prop_map(|(q, counts)| {
            let mut p = q.encode();
            p[4..12].copy_from_slice(&counts);
            p
        }),
    ]
}

#[test]
fn fuzz_dns_wire_malformed() {
    fuzz(
        "dns_wire_malformed",
        3600,
        (packet(), origin(), transport(), extras()),
        |(p, from, t, extra)| {
            wire(&state(&extra), from, &p, t)?;
            Ok(())
        },
    );
}

#[test]
fn fuzz_dns_answer_malformed() {
    fuzz(
        "dns_answer_malformed",
        2400,
        (packet(), origin(), transport(), extras()),
        |(p, (gw, client), t, extra)| {
            let Ok(query) = Message::from_vec(&p) else {
                return Ok(());
            };
            let st = state(&extra);
            let decision = answer(&Table::new(&st), gw, client, &query, t);
            let known = knows(&st, gw, client);
            if query.metadata.message_type == MessageType::Response {
                prop_assert_eq!(&decision, &Decision::Drop, "a response was answered");
            }
            match decision {
                Decision::Drop => {}
                Decision::Forward(u) => prop_assert!(known && !u.is_empty()),
                Decision::Reply(m) => {
                    prop_assert!(known || t == Transport::Tcp);
                    prop_assert_eq!(m.metadata.id, query.metadata.id);
                    prop_assert_eq!(m.metadata.message_type, MessageType::Response);
                    if query.queries.len() == 1 {
                        prop_assert_eq!(&m.queries, &query.queries);
                    } else {
                        prop_assert!(m.queries.is_empty());
                    }
                    // Encoding the reply may fail on odd input but must not panic.
                    let _ = m.to_vec();
                }
            }
            Ok(())
        },
    );
}

/// A valid query from anyone, and the same query through the reference rules.
#[test]
fn fuzz_dns_valid_queries() {
    let input = (
        raw_query(),
        origin(),
        transport(),
        prop_oneof![3 => Just(vec![]), 1 => extras()],
    );
    fuzz(
        "dns_valid_queries",
        3600,
        input,
        |(q, (gw, client), t, extra)| {
            let st = state(&extra);
            let p = q.encode();
            let known = knows(&st, gw, client);
            let action = wire(&st, (gw, client), &p, t)?;
            if !known {
                return Ok(());
            }
            // A known client's valid query is always answered or forwarded, never dropped,
            // and the reply carries its id and its question.
            let r = match &action {
                PacketAction::Drop => return Err(TestCaseError::fail("a valid query was dropped")),
                PacketAction::Forward(_) => None,
                PacketAction::Reply(r) => Some(r),
            };
            if let Some(r) = r {
                prop_assert_eq!(&r[4..6], &[0, 1]);
                let question = q.question();
                prop_assert_eq!(&r[12..12 + question.len()], question.as_slice());
                prop_assert_eq!(r[2] & 0x79, p[2] & 0x01, "opcode or RD not copied");
                prop_assert_eq!(r[3] & 0x10, p[3] & 0x10, "CD not copied");
                if let (Transport::Udp, Some((payload, _, _))) = (t, q.edns) {
                    prop_assert!(r.len() <= usize::from(payload).clamp(512, OUR_UDP_PAYLOAD));
                }
            }

            // The reference rules, on the message as hickory reads the same bytes.
            let Ok(query) = Message::from_vec(&p) else {
                return Ok(());
            };
            let decision = answer(&Table::new(&st), gw, client, &query, t);
            match (&action, &decision) {
                (PacketAction::Forward(a), Decision::Forward(b)) => prop_assert_eq!(a, b),
                (PacketAction::Reply(r), Decision::Reply(m)) => {
                    prop_assert_eq!(m.metadata.id, q.id);
                    prop_assert_eq!(m.metadata.op_code, OpCode::Query);
                    prop_assert_eq!(&m.queries, &query.queries);
                    // Over TCP (no truncation), for the table's plain names, the two agree
                    // on the whole message.
                    let plain = extra.is_empty();
                    if t == Transport::Tcp && plain {
                        let wire_msg = Message::from_vec(r).map_err(|e| {
                            TestCaseError::fail(format!("wire reply unreadable: {e}"))
                        })?;
                        let reference = m
                            .to_vec()
                            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
                        let reference = Message::from_vec(&reference)
                            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
                        prop_assert_eq!(wire_msg, reference);
                    }
                }
                (a, d) => prop_assert!(false, "wire path {a:?} but answer() {d:?}"),
            }
            Ok(())
        },
    );
}

/// Every upstream list a forward names is one the table was given.
#[test]
fn fuzz_dns_forwards_name_known_upstreams() {
    fuzz(
        "dns_forwards_name_known_upstreams",
        1200,
        (raw_query(), origin(), transport()),
        |(q, (gw, client), t)| {
            let st = state(&[]);
            if let PacketAction::Forward(u) = wire(&st, (gw, client), &q.encode(), t)? {
                let lists: HashSet<&Vec<SocketAddr>> = st.upstreams.values().collect();
                prop_assert!(lists.contains(&u), "{u:?}");
            }
            Ok(())
        },
    );
}
