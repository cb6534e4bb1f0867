//! Forwarding (`bridge fdb`) and neighbour (`ip neigh`) entries of a device: the overlay's
//! tunnel entries, all permanent.

use std::net::Ipv4Addr;

use netlink_packet_core::{parse_u32, NlasIterator, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourHeader, NeighbourMessage,
    NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use reef_core::names::{format_mac, parse_mac};

use super::Netlink;
use crate::KernelError;

// From <linux/neighbour.h> and <linux/rtnetlink.h>.
const RTM_NEWNEIGH: u16 = 28;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NUD_PERMANENT: u16 = 0x80;
const NTF_SELF: u8 = 1 << 1;

/// A forwarding entry of a device (`bridge fdb show dev DEV`, the device's own entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    /// MAC, `02:42:...`.
    pub mac: String,
    /// Remote tunnel address, for a VXLAN entry.
    pub dst: Option<Ipv4Addr>,
    /// `permanent` (never ages out).
    pub permanent: bool,
}

/// A neighbour entry of a device (`ip neigh show dev DEV`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighEntry {
    /// Address.
    pub ip: Ipv4Addr,
    /// MAC, when resolved.
    pub mac: Option<String>,
    /// `permanent`.
    pub permanent: bool,
}

fn mac_bytes(mac: &str, op: &dyn Fn() -> String) -> Result<[u8; 6], KernelError> {
    parse_mac(mac).map_err(|e| KernelError::Netlink {
        op: op(),
        errno: libc::EINVAL,
        detail: Some(e.to_string()),
    })
}

fn message(family: AddressFamily, index: u32, flags: NeighbourFlags) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header = NeighbourHeader {
        family,
        ifindex: index,
        state: NeighbourState::Permanent,
        flags,
        kind: RouteType::Unspec,
    };
    msg
}

fn ipv4(v: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from)
}

/// A neighbour message as read: device index, state, flags, address, link-layer address.
type RawNeigh = (u32, u16, u8, Option<Ipv4Addr>, Option<[u8; 6]>);

/// The device index, state, flags and attributes of a neighbour message.
fn parse(p: &[u8]) -> Option<RawNeigh> {
    // struct ndmsg: family u8, pad u8 u16, ifindex i32, state u16, flags u8, type u8.
    let head = p.get(..12)?;
    let index = parse_u32(&head[4..8]).ok()?;
    let state = u16::from_ne_bytes([head[8], head[9]]);
    let flags = head[10];
    let (mut dst, mut ll) = (None, None);
    for nla in NlasIterator::new(p.get(12..).unwrap_or_default()).filter_map(Result::ok) {
        match nla.kind() {
            NDA_DST => dst = ipv4(nla.value()),
            NDA_LLADDR => ll = <[u8; 6]>::try_from(nla.value()).ok(),
            _ => {}
        }
    }
    Some((index, state, flags, dst, ll))
}

impl Netlink {
    /// `bridge fdb replace MAC dev DEV dst DST self permanent`.
    pub fn fdb_replace(&mut self, dev: &str, mac: &str, dst: Ipv4Addr) -> Result<(), KernelError> {
        let op = || format!("bridge fdb replace {mac} dev {dev} dst {dst} self permanent");
        let index = self.index_of(dev, &op)?;
        let mut msg = message(AddressFamily::Bridge, index, NeighbourFlags::Own);
        msg.attributes = vec![
            NeighbourAttribute::LinkLayerAddress(mac_bytes(mac, &op)?.to_vec()),
            NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)),
        ];
        self.change(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            &op,
        )
    }

    /// `bridge fdb del MAC dev DEV dst DST self`; an absent entry or device is fine.
    pub fn fdb_delete(&mut self, dev: &str, mac: &str, dst: Ipv4Addr) -> Result<(), KernelError> {
        let op = || format!("bridge fdb del {mac} dev {dev} dst {dst} self");
        let index = match self.index_of(dev, &op) {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        };
        let mut msg = message(AddressFamily::Bridge, index, NeighbourFlags::Own);
        msg.attributes = vec![
            NeighbourAttribute::LinkLayerAddress(mac_bytes(mac, &op)?.to_vec()),
            NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)),
        ];
        match self.change(RouteNetlinkMessage::DelNeighbour(msg), 0, &op) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// The device's own forwarding entries (`bridge fdb show dev DEV`, `self` ones).
    pub fn fdb_entries(&mut self, dev: &str) -> Result<Vec<FdbEntry>, KernelError> {
        let op = || format!("bridge fdb show dev {dev}");
        let index = self.index_of(dev, &op)?;
        let mut out = Vec::new();
        self.dump(
            RouteNetlinkMessage::GetNeighbour(message(
                AddressFamily::Bridge,
                0,
                NeighbourFlags::empty(),
            )),
            &op,
            &mut |t, p| {
                if t == RTM_NEWNEIGH {
                    if let Some((i, state, flags, dst, Some(ll))) = parse(p) {
                        if i == index && flags & NTF_SELF != 0 {
                            out.push(FdbEntry {
                                mac: format_mac(ll),
                                dst,
                                permanent: state & NUD_PERMANENT != 0,
                            });
                        }
                    }
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// `ip neigh replace IP lladdr MAC dev DEV nud permanent`.
    pub fn neigh_replace(&mut self, dev: &str, ip: Ipv4Addr, mac: &str) -> Result<(), KernelError> {
        let op = || format!("ip neigh replace {ip} lladdr {mac} dev {dev} nud permanent");
        let index = self.index_of(dev, &op)?;
        let mut msg = message(AddressFamily::Inet, index, NeighbourFlags::empty());
        msg.attributes = vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)),
            NeighbourAttribute::LinkLayerAddress(mac_bytes(mac, &op)?.to_vec()),
        ];
        self.change(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            &op,
        )
    }

    /// `ip neigh del IP dev DEV`; an absent entry or device is fine.
    pub fn neigh_delete(&mut self, dev: &str, ip: Ipv4Addr) -> Result<(), KernelError> {
        let op = || format!("ip neigh del {ip} dev {dev}");
        let index = match self.index_of(dev, &op) {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        };
        let mut msg = message(AddressFamily::Inet, index, NeighbourFlags::empty());
        msg.attributes = vec![NeighbourAttribute::Destination(NeighbourAddress::Inet(ip))];
        match self.change(RouteNetlinkMessage::DelNeighbour(msg), 0, &op) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// The device's IPv4 neighbour entries (`ip neigh show dev DEV`).
    pub fn neigh_entries(&mut self, dev: &str) -> Result<Vec<NeighEntry>, KernelError> {
        let op = || format!("ip neigh show dev {dev}");
        let index = self.index_of(dev, &op)?;
        let mut out = Vec::new();
        self.dump(
            RouteNetlinkMessage::GetNeighbour(message(
                AddressFamily::Inet,
                0,
                NeighbourFlags::empty(),
            )),
            &op,
            &mut |t, p| {
                if t == RTM_NEWNEIGH {
                    if let Some((i, state, _, Some(ip), ll)) = parse(p) {
                        if i == index {
                            out.push(NeighEntry {
                                ip,
                                mac: ll.map(format_mac),
                                permanent: state & NUD_PERMANENT != 0,
                            });
                        }
                    }
                }
                Ok(())
            },
        )?;
        Ok(out)
    }
}
