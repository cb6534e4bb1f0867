//! The resolution rules as a pure function over hickory-proto messages: what the server
//! does with one query, without sockets. The server runs the same rules (through
//! [`Table`]'s resolver) on its own wire path; this is the reference and the testing seam.

use std::net::{Ipv4Addr, SocketAddr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{Name, RData, Record};

use crate::table::{NameKey, Outcome, Table};
use crate::wire::OUR_UDP_PAYLOAD;
use crate::LOCAL_TTL;

/// The transport a query arrived on; it decides what an unknown client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: unknown clients get no answer at all.
    Udp,
    /// TCP: unknown clients get REFUSED.
    Tcp,
}

/// What to do with one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send this reply.
    Reply(Box<Message>),
    /// Relay the query to these upstream servers, in order, over the same transport; the
    /// first answer within [`crate::UPSTREAM_TIMEOUT`] goes back with the client's id, and
    /// SERVFAIL if none answers. Never empty (no upstreams means a SERVFAIL reply).
    Forward(Vec<SocketAddr>),
    /// Say nothing.
    Drop,
}

/// Applies the resolution rules to `query`, which arrived from `client` on the address
/// serving `gateway`. Round-robin answers advance `table`'s counter. UDP size limits
/// (truncation) are the transport's business, not decided here.
pub fn answer(
    table: &Table,
    gateway: Ipv4Addr,
    client: Ipv4Addr,
    query: &Message,
    transport: Transport,
) -> Decision {
    if query.metadata.message_type != MessageType::Query {
        return Decision::Drop;
    }
    if !table.knows(gateway, client) {
        return match transport {
            Transport::Udp => Decision::Drop,
            Transport::Tcp => reply(query, ResponseCode::Refused, false),
        };
    }
    if query.metadata.op_code != OpCode::Query {
        return reply(query, ResponseCode::NotImp, false);
    }
    let [question] = query.queries.as_slice() else {
        return reply(query, ResponseCode::FormErr, false);
    };
    if query.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return reply(query, ResponseCode::BADVERS, false);
    }
    let key = NameKey::from_labels(question.name().iter());
    let outcome = table.resolve(
        gateway,
        client,
        &key,
        u16::from(question.query_type()),
        u16::from(question.query_class()),
    );
    match outcome {
        Outcome::UnknownClient => Decision::Drop,
        Outcome::Addrs(addrs) => {
            let addrs = addrs.as_slice();
            let rotate = table.rotation(addrs.len());
            let (tail, head) = addrs.split_at(rotate);
            let mut m = response(query, ResponseCode::NoError, true);
            for ip in head.iter().chain(tail) {
                m.add_answer(Record::from_rdata(
                    question.name().clone(),
                    LOCAL_TTL,
                    RData::A(A(*ip)),
                ));
            }
            Decision::Reply(Box::new(m))
        }
        Outcome::Ptr(primary) => match Name::from_ascii(primary) {
            Ok(mut target) => {
                target.set_fqdn(true);
                let mut m = response(query, ResponseCode::NoError, true);
                m.add_answer(Record::from_rdata(
                    question.name().clone(),
                    LOCAL_TTL,
                    RData::PTR(PTR(target)),
                ));
                Decision::Reply(Box::new(m))
            }
            Err(_) => reply(query, ResponseCode::ServFail, false),
        },
        Outcome::NoData => reply(query, ResponseCode::NoError, true),
        Outcome::NxDomain => reply(query, ResponseCode::NXDomain, true),
        Outcome::Forward(upstreams) if upstreams.is_empty() => {
            reply(query, ResponseCode::ServFail, false)
        }
        Outcome::Forward(upstreams) => Decision::Forward(upstreams.to_vec()),
    }
}

fn reply(query: &Message, code: ResponseCode, authoritative: bool) -> Decision {
    Decision::Reply(Box::new(response(query, code, authoritative)))
}

/// A reply skeleton: the query's id, opcode, RD and CD, its question, and an OPT record
/// when the query had one.
fn response(query: &Message, code: ResponseCode, authoritative: bool) -> Message {
    let mut m = Message::response(query.metadata.id, query.metadata.op_code);
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.checking_disabled = query.metadata.checking_disabled;
    m.metadata.recursion_available = true;
    m.metadata.authoritative = authoritative;
    m.metadata.response_code = code;
    if query.queries.len() == 1 {
        m.add_queries(query.queries.iter().cloned());
    }
    if let Some(q_edns) = &query.edns {
        let mut e = Edns::new();
        e.set_max_payload(OUR_UDP_PAYLOAD);
        e.set_dnssec_ok(q_edns.flags().dnssec_ok);
        m.set_edns(e);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DnsEndpoint, DnsState};
    use hickory_proto::op::Query;
    use hickory_proto::rr::RecordType;

    const GW_A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
    const GW_B: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    const WEB1: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
    const WEB2: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 4);
    const SECRET: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 5);
    const LONER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 6);

    fn id(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    fn ep(c: char, net: &str, ip: Ipv4Addr, names: &[&str]) -> DnsEndpoint {
        let mut all: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        all.insert(1.min(all.len()), id(c)[..12].to_string());
        DnsEndpoint {
            container_id: id(c),
            network_id: net.into(),
            ip,
            names: all,
        }
    }

    fn upstream() -> SocketAddr {
        "127.0.0.53:53".parse().unwrap()
    }

    fn table() -> Table {
        let mut state = DnsState {
            endpoints: vec![
                ep('a', "neta", CLIENT, &["client"]),
                ep('b', "neta", WEB1, &["web1", "web"]),
                ep('c', "neta", WEB2, &["web2", "web", "db.local"]),
                ep('d', "netb", SECRET, &["secret"]),
                ep('e', "netb", LONER, &["loner"]),
            ],
            ..DnsState::default()
        };
        state.gateways.insert("neta".into(), GW_A);
        state.gateways.insert("netb".into(), GW_B);
        state.upstreams.insert(id('a'), vec![upstream()]);
        Table::new(&state)
    }

    fn query(name: &str, qtype: RecordType) -> Message {
        let mut m = Message::query();
        m.metadata.id = 4242;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m
    }

    fn ask(t: &Table, name: &str, qtype: RecordType) -> Decision {
        answer(t, GW_A, CLIENT, &query(name, qtype), Transport::Udp)
    }

    fn reply(d: Decision) -> Message {
        match d {
            Decision::Reply(m) => *m,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn addrs(m: &Message) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .map(|r| match &r.data {
                RData::A(a) => a.0,
                other => panic!("not an A record: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn container_name_short_id_and_case() {
        let t = table();
        for name in [
            "web1",
            "WEB1",
            "Web1.",
            &id('b')[..12],
            &id('b')[..12].to_uppercase(),
        ] {
            let m = reply(ask(&t, name, RecordType::A));
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
            assert_eq!(addrs(&m), vec![WEB1], "{name}");
            assert_eq!(m.answers[0].ttl, 600);
            assert_eq!(m.metadata.id, 4242);
            assert!(m.metadata.recursion_desired && m.metadata.recursion_available);
        }
    }

    #[test]
    fn shared_alias_rotates() {
        let t = table();
        let first = addrs(&reply(ask(&t, "web", RecordType::A)));
        let second = addrs(&reply(ask(&t, "web", RecordType::A)));
        let third = addrs(&reply(ask(&t, "web", RecordType::A)));
        assert_eq!(first.len(), 2);
        assert!(first.contains(&WEB1) && first.contains(&WEB2));
        assert_ne!(first, second);
        assert_eq!(first, third);
    }

    #[test]
    fn dotted_alias_answers_locally() {
        let t = table();
        assert_eq!(
            addrs(&reply(ask(&t, "DB.local", RecordType::A))),
            vec![WEB2]
        );
    }

    #[test]
    fn aaaa_and_other_types_of_known_names_are_empty() {
        let t = table();
        for qtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
            let m = reply(ask(&t, "web1", qtype));
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.answers.is_empty());
        }
    }

    #[test]
    fn ptr_names_the_container() {
        let t = table();
        let m = reply(ask(&t, "4.0.1.10.in-addr.arpa.", RecordType::PTR));
        match &m.answers[..] {
            [r] => match &r.data {
                RData::PTR(p) => assert_eq!(p.0.to_ascii(), "web2."),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        // Out of scope: another network's container is not ours to name.
        assert_eq!(
            ask(&t, "5.0.2.10.in-addr.arpa.", RecordType::PTR),
            Decision::Forward(vec![upstream()])
        );
    }

    #[test]
    fn unknown_single_label_is_nxdomain() {
        let t = table();
        for qtype in [RecordType::A, RecordType::AAAA, RecordType::MX] {
            let m = reply(ask(&t, "nosuch", qtype));
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        }
    }

    #[test]
    fn scope_is_the_clients_networks() {
        let t = table();
        let m = reply(ask(&t, "secret", RecordType::A));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        // From netb, secret is visible and web is not.
        let q = query("secret", RecordType::A);
        assert_eq!(
            addrs(&reply(answer(&t, GW_B, LONER, &q, Transport::Udp))),
            vec![SECRET]
        );
        let q = query("web", RecordType::A);
        let m = reply(answer(&t, GW_B, LONER, &q, Transport::Udp));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn unknown_clients_get_nothing_or_refused() {
        let t = table();
        let q = query("web", RecordType::A);
        let stranger = Ipv4Addr::new(10, 1, 0, 99);
        assert_eq!(
            answer(&t, GW_A, stranger, &q, Transport::Udp),
            Decision::Drop
        );
        let m = reply(answer(&t, GW_A, stranger, &q, Transport::Tcp));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        // A known address asking on the wrong gateway is a stranger there.
        assert_eq!(answer(&t, GW_B, CLIENT, &q, Transport::Udp), Decision::Drop);
    }

    #[test]
    fn the_rest_is_forwarded_or_servfail() {
        let t = table();
        assert_eq!(
            ask(&t, "example.com", RecordType::A),
            Decision::Forward(vec![upstream()])
        );
        assert_eq!(
            ask(&t, ".", RecordType::NS),
            Decision::Forward(vec![upstream()])
        );
        // loner's container has no upstreams.
        let q = query("example.com", RecordType::A);
        let m = reply(answer(&t, GW_B, LONER, &q, Transport::Udp));
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }

    #[test]
    fn responses_and_odd_requests() {
        let t = table();
        let mut q = query("web", RecordType::A);
        q.metadata.message_type = MessageType::Response;
        assert_eq!(answer(&t, GW_A, CLIENT, &q, Transport::Udp), Decision::Drop);
        let mut q = query("web", RecordType::A);
        q.add_query(Query::query(
            Name::from_ascii("web1").unwrap(),
            RecordType::A,
        ));
        let m = reply(answer(&t, GW_A, CLIENT, &q, Transport::Udp));
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        let mut q = query("web", RecordType::A);
        q.metadata.op_code = OpCode::Status;
        let m = reply(answer(&t, GW_A, CLIENT, &q, Transport::Udp));
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    }

    #[test]
    fn edns_is_echoed() {
        let t = table();
        let mut q = query("web1", RecordType::A);
        let mut e = Edns::new();
        e.set_max_payload(4096);
        q.set_edns(e);
        let m = reply(answer(&t, GW_A, CLIENT, &q, Transport::Udp));
        assert_eq!(m.edns.map(|e| e.max_payload()), Some(OUR_UDP_PAYLOAD));
    }

    /// The server's wire path and this function agree.
    #[test]
    fn wire_path_matches() {
        use crate::wire::{encode_reply, parse, Body, Parsed};
        let t = table();
        let cases = [
            ("web1", RecordType::A),
            ("WEB2", RecordType::AAAA),
            ("nosuch", RecordType::A),
            ("3.0.1.10.in-addr.arpa", RecordType::PTR),
        ];
        for (name, qtype) in cases {
            let q = query(name, qtype);
            let bytes = q.to_vec().unwrap();
            let Ok(Parsed::Query {
                meta,
                key,
                qtype: wt,
                qclass,
            }) = parse(&bytes)
            else {
                panic!("parse {name}");
            };
            let outcome = t.resolve(GW_A, CLIENT, &key, wt, qclass);
            let body = match &outcome {
                Outcome::Addrs(a) => {
                    assert_eq!(a.as_slice().len(), 1);
                    Body::Addrs(a.as_slice(), 0)
                }
                Outcome::Ptr(p) => Body::Ptr(p),
                Outcome::NoData => Body::Rcode(0),
                Outcome::NxDomain => Body::Rcode(3),
                other => panic!("{other:?}"),
            };
            let mut out = Vec::new();
            encode_reply(&bytes, &meta, body, Some(512), &mut out);
            let wire = Message::from_vec(&out).unwrap();
            let reference = reply(answer(&t, GW_A, CLIENT, &q, Transport::Udp));
            // Compare as they go on the wire (names come back fully qualified).
            let reference = Message::from_vec(&reference.to_vec().unwrap()).unwrap();
            assert_eq!(wire, reference, "{name}");
        }
    }
}
