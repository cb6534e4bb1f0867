//! The server's wire path: parse a query's header and question straight from the packet and
//! write replies into a reused buffer, so a locally answered query allocates nothing.
//!
//! Replies copy the query's question verbatim (keeping the client's letter case) and point
//! every answer's owner name at it (offset 12). A query with an OPT record gets one back.

use std::net::Ipv4Addr;

use thiserror::Error;

use crate::table::NameKey;
use crate::LOCAL_TTL;

/// Header flag bits.
const QR: u16 = 0x8000;
const OPCODE: u16 = 0x7800;
const AA: u16 = 0x0400;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;
const RA: u16 = 0x0080;
const CD: u16 = 0x0010;

/// Response codes the server writes itself.
pub(crate) const NOERROR: u16 = 0;
pub(crate) const FORMERR: u16 = 1;
pub(crate) const SERVFAIL: u16 = 2;
pub(crate) const NXDOMAIN: u16 = 3;
pub(crate) const NOTIMP: u16 = 4;
pub(crate) const REFUSED: u16 = 5;
pub(crate) const BADVERS: u16 = 16;

/// The OPT record type.
const TYPE_OPT: u16 = 41;

/// The UDP payload size the server advertises and caps its own answers at.
pub(crate) const OUR_UDP_PAYLOAD: u16 = 1232;

/// Why a packet is not a query the server will look at.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum WireError {
    /// Shorter than a header, or a section runs past the end.
    #[error("packet truncated")]
    Truncated,
    /// A label length byte the question may not hold (a pointer or a reserved kind).
    #[error("bad label in question")]
    BadLabel,
    /// The question name is longer than 255 bytes on the wire.
    #[error("name too long")]
    NameTooLong,
    /// The QR bit is set: a response, never answered (no loops, no reflection).
    #[error("not a query")]
    NotQuery,
}

/// The EDNS(0) facts of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EdnsInfo {
    /// The requestor's UDP payload size.
    pub(crate) payload: u16,
    /// The EDNS version.
    pub(crate) version: u8,
    /// The DO bit, copied into the reply.
    pub(crate) dnssec_ok: bool,
}

/// What a reply needs to know about its query, besides the packet itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueryMeta {
    /// The query id.
    pub(crate) id: u16,
    /// The query's flags word.
    pub(crate) flags: u16,
    /// End of the question section (it starts at 12); 12 when there is no question to echo.
    pub(crate) question_end: usize,
    /// The OPT record, if any.
    pub(crate) edns: Option<EdnsInfo>,
}

impl QueryMeta {
    /// The largest UDP reply this client takes for answers the server makes itself.
    pub(crate) fn local_udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => usize::from(e.payload.clamp(512, OUR_UDP_PAYLOAD)),
            None => 512,
        }
    }

    /// The largest UDP reply this client takes for relayed upstream answers.
    pub(crate) fn relay_udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => usize::from(e.payload.max(512)),
            None => 512,
        }
    }
}

/// A parsed query.
// The name key lives on the stack on purpose: boxing it would allocate per query.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Parsed {
    /// One question of the standard opcode.
    Query {
        /// Reply facts.
        meta: QueryMeta,
        /// The question name as a lookup key.
        key: NameKey,
        /// QTYPE.
        qtype: u16,
        /// QCLASS.
        qclass: u16,
    },
    /// A well-formed header the server answers with only a response code (FORMERR for
    /// a question count other than one, NOTIMP for other opcodes).
    Reject {
        /// Reply facts.
        meta: QueryMeta,
        /// The response code.
        rcode: u16,
    },
}

struct Reader<'a> {
    p: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, WireError> {
        let b = *self.p.get(self.pos).ok_or(WireError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let s = self
            .p
            .get(self.pos..self.pos + 2)
            .ok_or(WireError::Truncated)?;
        self.pos += 2;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn skip(&mut self, n: usize) -> Result<(), WireError> {
        if self.p.len() - self.pos < n {
            return Err(WireError::Truncated);
        }
        self.pos += n;
        Ok(())
    }
    /// Skips a whole resource record.
    fn skip_record(&mut self) -> Result<(), WireError> {
        self.skip_name()?;
        self.skip(8)?;
        let rdlen = self.u16()?;
        self.skip(usize::from(rdlen))
    }
    /// Skips a name in a record (pointers allowed).
    fn skip_name(&mut self) -> Result<(), WireError> {
        loop {
            let len = self.u8()?;
            match len & 0xC0 {
                0x00 if len == 0 => return Ok(()),
                0x00 => self.skip(usize::from(len))?,
                0xC0 => return self.skip(1),
                _ => return Err(WireError::BadLabel),
            }
        }
    }
}

/// Parses a query packet.
pub(crate) fn parse(p: &[u8]) -> Result<Parsed, WireError> {
    if p.len() < 12 {
        return Err(WireError::Truncated);
    }
    let mut r = Reader { p, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    if flags & QR != 0 {
        return Err(WireError::NotQuery);
    }
    let qdcount = r.u16()?;
    let ancount = r.u16()?;
    let nscount = r.u16()?;
    let arcount = r.u16()?;
    let mut meta = QueryMeta {
        id,
        flags,
        question_end: 12,
        edns: None,
    };
    if flags & OPCODE != 0 || qdcount != 1 {
        // Answered with a bare response code, but only when the packet holds what its
        // header says: junk is dropped, not answered.
        for _ in 0..qdcount {
            r.skip_name()?;
            r.skip(4)?;
        }
        for _ in 0..u32::from(ancount) + u32::from(nscount) + u32::from(arcount) {
            r.skip_record()?;
        }
        let rcode = if flags & OPCODE != 0 { NOTIMP } else { FORMERR };
        return Ok(Parsed::Reject { meta, rcode });
    }

    let mut key = NameKey::new();
    let start = r.pos;
    loop {
        let len = r.u8()?;
        if len == 0 {
            break;
        }
        if len & 0xC0 != 0 {
            return Err(WireError::BadLabel);
        }
        let label = p
            .get(r.pos..r.pos + usize::from(len))
            .ok_or(WireError::Truncated)?;
        r.pos += usize::from(len);
        if r.pos - start > 254 {
            return Err(WireError::NameTooLong);
        }
        key.push_label(label);
    }
    let qtype = r.u16()?;
    let qclass = r.u16()?;
    meta.question_end = r.pos;

    if arcount > 0 {
        for _ in 0..u32::from(ancount) + u32::from(nscount) {
            r.skip_record()?;
        }
        for _ in 0..arcount {
            r.skip_name()?;
            let rtype = r.u16()?;
            let class = r.u16()?;
            let _ext_rcode = r.u8()?;
            let version = r.u8()?;
            let eflags = r.u16()?;
            let rdlen = r.u16()?;
            r.skip(usize::from(rdlen))?;
            if rtype == TYPE_OPT && meta.edns.is_none() {
                meta.edns = Some(EdnsInfo {
                    payload: class,
                    version,
                    dnssec_ok: eflags & 0x8000 != 0,
                });
            }
        }
    }
    Ok(Parsed::Query {
        meta,
        key,
        qtype,
        qclass,
    })
}

/// The body of a reply the server writes itself.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    /// A records, written starting at `rotate`.
    Addrs(&'a [Ipv4Addr], usize),
    /// One PTR record naming this (dotted, lower-case) name.
    Ptr(&'a str),
    /// No answers, this response code (may be extended, e.g. BADVERS).
    Rcode(u16),
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a reply to `query` (whose facts are `meta`) to `out`. With `limit`, a reply longer
/// than it is replaced by an empty one with the TC bit set.
pub(crate) fn encode_reply(
    query: &[u8],
    meta: &QueryMeta,
    body: Body<'_>,
    limit: Option<usize>,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    write_reply(query, meta, body, false, out);
    if let Some(limit) = limit {
        if out.len() - start > limit {
            out.truncate(start);
            let rcode = match body {
                Body::Rcode(r) => r,
                _ => NOERROR,
            };
            write_reply(query, meta, Body::Rcode(rcode), true, out);
        }
    }
}

/// Appends an empty reply with the TC bit set (for relayed answers too big for the client).
pub(crate) fn encode_truncated(query: &[u8], meta: &QueryMeta, out: &mut Vec<u8>) {
    write_reply(query, meta, Body::Rcode(NOERROR), true, out);
}

fn write_reply(query: &[u8], meta: &QueryMeta, body: Body<'_>, truncated: bool, out: &mut Vec<u8>) {
    let (rcode, answers, authoritative) = match body {
        Body::Addrs(a, _) => (NOERROR, a.len(), true),
        Body::Ptr(_) => (NOERROR, 1, true),
        Body::Rcode(r) => (r, 0, r == NOERROR || r == NXDOMAIN),
    };
    let mut flags = QR | (meta.flags & (OPCODE | RD | CD)) | RA | (rcode & 0x000F);
    if authoritative {
        flags |= AA;
    }
    if truncated {
        flags |= TC;
    }
    let question = &query[12..meta.question_end];
    put_u16(out, meta.id);
    put_u16(out, flags);
    put_u16(out, u16::from(!question.is_empty()));
    put_u16(out, answers as u16);
    put_u16(out, 0);
    put_u16(out, u16::from(meta.edns.is_some()));
    out.extend_from_slice(question);
    match body {
        Body::Addrs(addrs, rotate) => {
            let (tail, head) = addrs.split_at(rotate.min(addrs.len()));
            for ip in head.iter().chain(tail) {
                out.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
                out.extend_from_slice(&LOCAL_TTL.to_be_bytes());
                out.extend_from_slice(&[0, 4]);
                out.extend_from_slice(&ip.octets());
            }
        }
        Body::Ptr(name) => {
            out.extend_from_slice(&[0xC0, 0x0C, 0, 12, 0, 1]);
            out.extend_from_slice(&LOCAL_TTL.to_be_bytes());
            let len_at = out.len();
            put_u16(out, 0);
            for label in name.split('.').filter(|l| !l.is_empty()) {
                let label = &label.as_bytes()[..label.len().min(63)];
                out.push(label.len() as u8);
                out.extend_from_slice(label);
            }
            out.push(0);
            let rdlen = (out.len() - len_at - 2) as u16;
            out[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        }
        Body::Rcode(_) => {}
    }
    if let Some(edns) = meta.edns {
        out.push(0);
        put_u16(out, TYPE_OPT);
        put_u16(out, OUR_UDP_PAYLOAD);
        out.push((rcode >> 4) as u8);
        out.push(0);
        out.push(if edns.dnssec_ok { 0x80 } else { 0 });
        out.push(0);
        put_u16(out, 0);
    }
}

/// Reads a reply's id and checks its QR bit.
pub(crate) fn reply_id(p: &[u8]) -> Option<u16> {
    if p.len() < 12 || p[2] & 0x80 == 0 {
        return None;
    }
    Some(u16::from_be_bytes([p[0], p[1]]))
}

/// A reply's response code (header part only).
pub(crate) fn reply_rcode(p: &[u8]) -> u16 {
    u16::from(p.get(3).copied().unwrap_or(0) & 0x0F)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RData, RecordType};

    fn query(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            e.set_dnssec_ok(true);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn parse_query(p: &[u8]) -> (QueryMeta, NameKey, u16, u16) {
        match parse(p).unwrap() {
            Parsed::Query {
                meta,
                key,
                qtype,
                qclass,
            } => (meta, key, qtype, qclass),
            Parsed::Reject { .. } => panic!("rejected"),
        }
    }

    #[test]
    fn parses_question_and_edns() {
        let p = query("Web.Example.", RecordType::A, true);
        let (meta, key, qtype, qclass) = parse_query(&p);
        assert_eq!(meta.id, 0x1234);
        assert_eq!(key.as_str(), Some("web.example"));
        assert_eq!((qtype, qclass), (1, 1));
        assert_eq!(
            meta.edns,
            Some(EdnsInfo {
                payload: 4096,
                version: 0,
                dnssec_ok: true
            })
        );
        assert_eq!(meta.local_udp_limit(), 1232);
        assert_eq!(meta.relay_udp_limit(), 4096);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        let good = query("web", RecordType::A, true);
        for len in 0..good.len() {
            let _ = parse(&good[..len]);
        }
        // Every single-byte corruption, too.
        for i in 0..good.len() {
            for b in [0u8, 0x3F, 0x40, 0xC0, 0xFF] {
                let mut p = good.clone();
                p[i] = b;
                let _ = parse(&p);
            }
        }
        assert_eq!(parse(&[0; 5]).err(), Some(WireError::Truncated));
        let mut resp = good.clone();
        resp[2] |= 0x80;
        assert_eq!(parse(&resp).err(), Some(WireError::NotQuery));
        let mut ptr = good.clone();
        ptr[12] = 0xC0;
        assert_eq!(parse(&ptr).err(), Some(WireError::BadLabel));
    }

    #[test]
    fn rejects_odd_opcodes_and_counts() {
        let mut p = query("web", RecordType::A, false);
        p[5] = 2; // qdcount 2, but one question: junk
        assert_eq!(parse(&p).err(), Some(WireError::Truncated));
        let q = p[12..].to_vec();
        p.extend_from_slice(&q); // now two
        assert!(matches!(
            parse(&p),
            Ok(Parsed::Reject { rcode: FORMERR, .. })
        ));
        p[5] = 0; // no question, trailing bytes ignored
        assert!(matches!(
            parse(&p),
            Ok(Parsed::Reject { rcode: FORMERR, .. })
        ));
        let mut p = query("web", RecordType::A, false);
        p[2] |= 0x10; // opcode 2 (status)
        assert!(matches!(
            parse(&p),
            Ok(Parsed::Reject { rcode: NOTIMP, .. })
        ));
    }

    #[test]
    fn encodes_rotated_addresses_and_edns() {
        let p = query("WeB", RecordType::A, true);
        let (meta, ..) = parse_query(&p);
        let addrs = [Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)];
        let mut out = Vec::new();
        encode_reply(&p, &meta, Body::Addrs(&addrs, 1), Some(512), &mut out);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.op_code, OpCode::Query);
        assert!(m.metadata.recursion_desired && m.metadata.recursion_available);
        assert!(m.metadata.authoritative);
        assert_eq!(m.queries[0].name().to_ascii(), "WeB.");
        let got: Vec<_> = m
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::A(a) => (a.0, r.ttl, r.name.to_ascii()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (addrs[1], 600, "WeB.".to_string()),
                (addrs[0], 600, "WeB.".to_string())
            ]
        );
        let edns = m.edns.expect("OPT echoed");
        assert_eq!(edns.max_payload(), OUR_UDP_PAYLOAD);
        assert!(edns.flags().dnssec_ok);
    }

    #[test]
    fn encodes_ptr_and_rcodes() {
        let p = query("2.0.0.10.in-addr.arpa.", RecordType::PTR, false);
        let (meta, ..) = parse_query(&p);
        let mut out = Vec::new();
        encode_reply(&p, &meta, Body::Ptr("web"), None, &mut out);
        let m = Message::from_vec(&out).unwrap();
        match &m.answers[0].data {
            RData::PTR(n) => assert_eq!(n.0.to_ascii(), "web."),
            other => panic!("{other:?}"),
        }
        assert!(m.edns.is_none());
        out.clear();
        encode_reply(&p, &meta, Body::Rcode(NXDOMAIN), None, &mut out);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.answers.is_empty());
    }

    #[test]
    fn badvers_uses_extended_rcode() {
        let p = query("web", RecordType::A, true);
        let (meta, ..) = parse_query(&p);
        let mut out = Vec::new();
        encode_reply(&p, &meta, Body::Rcode(BADVERS), None, &mut out);
        let m = Message::from_vec(&out).unwrap();
        // 16 is BADVERS in an OPT context (hickory names it BADSIG).
        assert_eq!(u16::from(m.metadata.response_code), BADVERS);
    }

    #[test]
    fn truncates_big_udp_answers() {
        let p = query("many", RecordType::A, false);
        let (meta, ..) = parse_query(&p);
        let addrs: Vec<_> = (0..40).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let mut out = vec![0xAA, 0xBB];
        encode_reply(&p, &meta, Body::Addrs(&addrs, 0), Some(512), &mut out);
        assert_eq!(&out[..2], &[0xAA, 0xBB], "appends after what is there");
        let m = Message::from_vec(&out[2..]).unwrap();
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
        assert_eq!(m.queries.len(), 1);
        out.clear();
        encode_reply(&p, &meta, Body::Addrs(&addrs, 0), None, &mut out);
        let m = Message::from_vec(&out).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 40);
    }
}
