//! Decoding rtnetlink replies, leniently: only the attributes reef reads are looked at,
//! each with a plain parser, so an attribute a newer kernel adds (or one whose layout
//! `netlink-packet-route` does not know) cannot make a whole dump fail.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_core::{parse_string, parse_u32, NlasIterator, NLM_F_ACK_TLVS, NLM_F_CAPPED};
use netlink_packet_route::address::AddressHeader;
use netlink_packet_route::link::{LinkFlags, LinkHeader};
use netlink_packet_route::route::RouteHeader;
use netlink_packet_route::AddressFamily;

use super::{AddrInfo, LinkInfo, RouteInfo};

// Attribute numbers from <linux/if_link.h>, <linux/if_addr.h>, <linux/rtnetlink.h>.
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_IFALIAS: u16 = 20;
const IFLA_INFO_KIND: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;
const NLMSGERR_ATTR_MSG: u16 = 1;
const RT_TABLE_MAIN: u32 = 254;
const RTN_UNICAST: u8 = 1;

pub(super) fn read_i32(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

/// The extended-ack text of an `NLMSG_ERROR` payload: after the error code comes the
/// offending request (only its header with `NETLINK_CAP_ACK`), then the TLVs.
pub(super) fn error_detail(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let rest = payload.get(4..)?;
    let request_len = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        (parse_u32(rest.get(..4)?).ok()? as usize + 3) & !3
    };
    ext_ack_msg(rest.get(request_len..)?)
}

pub(super) fn ext_ack_msg(tlvs: &[u8]) -> Option<String> {
    NlasIterator::new(tlvs)
        .filter_map(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .and_then(|nla| parse_string(nla.value()).ok())
        .filter(|s| !s.is_empty())
}

pub(super) fn parse_link(p: &[u8]) -> Result<LinkInfo, String> {
    let h = LinkHeader::parse(p).map_err(|e| e.to_string())?;
    let mut link = LinkInfo {
        index: h.index,
        name: String::new(),
        kind: None,
        master: None,
        alias: None,
        mtu: 0,
        mac: None,
        up: h.flags.contains(LinkFlags::Up),
    };
    for nla in NlasIterator::new(p.get(16..).unwrap_or_default()) {
        let nla = nla.map_err(|e| e.to_string())?;
        let v = nla.value();
        match nla.kind() {
            IFLA_IFNAME => link.name = parse_string(v).map_err(|e| e.to_string())?,
            IFLA_MTU => link.mtu = parse_u32(v).map_err(|e| e.to_string())?,
            IFLA_MASTER => link.master = Some(parse_u32(v).map_err(|e| e.to_string())?),
            IFLA_IFALIAS => {
                link.alias =
                    Some(parse_string(v).map_err(|e| e.to_string())?).filter(|a| !a.is_empty())
            }
            IFLA_ADDRESS => link.mac = <[u8; 6]>::try_from(v).ok(),
            IFLA_LINKINFO => {
                for info in NlasIterator::new(v).filter_map(Result::ok) {
                    if info.kind() == IFLA_INFO_KIND {
                        link.kind = parse_string(info.value()).ok();
                    }
                }
            }
            _ => {}
        }
    }
    Ok(link)
}

pub(super) fn parse_addr(p: &[u8]) -> Result<Option<AddrInfo>, String> {
    let h = AddressHeader::parse(p).map_err(|e| e.to_string())?;
    let (mut local, mut address) = (None, None);
    for nla in NlasIterator::new(p.get(8..).unwrap_or_default()) {
        let nla = nla.map_err(|e| e.to_string())?;
        match nla.kind() {
            IFA_LOCAL => local = ip_from(nla.value()),
            IFA_ADDRESS => address = ip_from(nla.value()),
            _ => {}
        }
    }
    let Some(ip) = local.or(address) else {
        return Ok(None);
    };
    let addr = IpNet::new(ip, h.prefix_len).map_err(|e| e.to_string())?;
    Ok(Some(AddrInfo {
        index: h.index,
        addr,
    }))
}

pub(super) fn parse_route(p: &[u8]) -> Result<Option<RouteInfo>, String> {
    let h = RouteHeader::parse(p).map_err(|e| e.to_string())?;
    let unspecified: IpAddr = match h.address_family {
        AddressFamily::Inet => Ipv4Addr::UNSPECIFIED.into(),
        AddressFamily::Inet6 => Ipv6Addr::UNSPECIFIED.into(),
        _ => return Ok(None),
    };
    if u8::from(h.kind) != RTN_UNICAST {
        return Ok(None);
    }
    let mut table = u32::from(h.table);
    let (mut dst, mut gateway, mut oif) = (None, None, None);
    for nla in NlasIterator::new(p.get(12..).unwrap_or_default()) {
        let nla = nla.map_err(|e| e.to_string())?;
        let v = nla.value();
        match nla.kind() {
            RTA_DST => dst = ip_from(v),
            RTA_GATEWAY => gateway = ip_from(v),
            RTA_OIF => oif = parse_u32(v).ok(),
            RTA_TABLE => table = parse_u32(v).map_err(|e| e.to_string())?,
            _ => {}
        }
    }
    if table != RT_TABLE_MAIN {
        return Ok(None);
    }
    let dst = IpNet::new(dst.unwrap_or(unspecified), h.destination_prefix_length)
        .map_err(|e| e.to_string())?;
    Ok(Some(RouteInfo { dst, gateway, oif }))
}

fn ip_from(v: &[u8]) -> Option<IpAddr> {
    match v.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(v).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(v).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};

    use super::*;

    #[test]
    fn error_detail_reads_capped_ack_tlvs() {
        // code -17, capped request header (16 bytes), then NLMSGERR_ATTR_MSG "boom".
        let mut p = (-17i32).to_ne_bytes().to_vec();
        p.extend_from_slice(&[0; 16]);
        p.extend_from_slice(&9u16.to_ne_bytes());
        p.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        p.extend_from_slice(b"boom\0\0\0\0");
        assert_eq!(
            error_detail(NLM_F_CAPPED | NLM_F_ACK_TLVS, &p).as_deref(),
            Some("boom")
        );
        assert_eq!(error_detail(NLM_F_CAPPED, &p), None);
    }

    #[test]
    fn parse_route_skips_other_tables_and_defaults_dst() {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(IpAddr::from([
                10, 0, 0, 1,
            ]))));
        msg.attributes.push(RouteAttribute::Oif(7));
        let mut buf = vec![0; netlink_packet_core::Emitable::buffer_len(&msg)];
        netlink_packet_core::Emitable::emit(&msg, &mut buf);
        let r = parse_route(&buf).unwrap().unwrap();
        assert_eq!(r.dst, "0.0.0.0/0".parse::<IpNet>().unwrap());
        assert_eq!(r.gateway, Some(IpAddr::from([10, 0, 0, 1])));
        assert_eq!(r.oif, Some(7));

        msg.attributes.push(RouteAttribute::Table(255));
        let mut buf = vec![0; netlink_packet_core::Emitable::buffer_len(&msg)];
        netlink_packet_core::Emitable::emit(&msg, &mut buf);
        assert_eq!(parse_route(&buf).unwrap(), None);
    }
}
