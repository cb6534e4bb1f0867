//! A small synchronous rtnetlink client: links, addresses and routes of one network
//! namespace.
//!
//! Shaped after netavark's `netlink.rs`: a blocking `netlink_sys::Socket` and messages
//! built by hand from `netlink_packet_route` types, no tokio connection task (every call
//! here takes microseconds). A socket belongs to the namespace it was opened in, so there
//! is one [`Netlink`] per namespace; [`Netlink::open_in`] opens it on a helper thread.
//!
//! Every change request carries `NLM_F_ACK` and waits for it, so errors come back as the
//! kernel's errno (plus its extended-ack text) on the call that caused them. Dumps end with
//! `NLMSG_DONE` instead. Replies are decoded leniently: only the attributes reef reads are
//! parsed, so an attribute a newer kernel adds cannot break a dump.
//!
//! Names: where the kernel accepts `IFLA_IFNAME` with index 0 (`RTM_NEWLINK`,
//! `RTM_SETLINK`, `RTM_DELLINK`) requests name the link directly; addresses, routes and
//! `master` need an index, resolved with one `RTM_GETLINK` per call (nothing is cached, so
//! nothing goes stale).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use ipnet::IpNet;
use netlink_packet_core::{
    parse_string, parse_u32, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NlasIterator, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_ACK, NLM_F_ACK_TLVS,
    NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeader, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags, LinkHeader,
    LinkInfo as NlLinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::netns::Netns;
use crate::KernelError;

/// Receive buffer size. The kernel sizes dump datagrams from the reader's buffer, up to
/// 32 KiB (`netlink_dump`), so 64 KiB never truncates.
const RX_SIZE: usize = 64 * 1024;

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
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLMSGERR_ATTR_MSG: u16 = 1;
const RT_TABLE_MAIN: u32 = 254;
const RTN_UNICAST: u8 = 1;

/// A link as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// `IFLA_INFO_KIND`: `"bridge"`, `"veth"`, ...; `None` for physical devices and `lo`.
    pub kind: Option<String>,
    /// Index of the bridge (or bond) this link is a port of.
    pub master: Option<u32>,
    /// Interface alias (reef marks its veths with one).
    pub alias: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// Hardware address, when it is an Ethernet one.
    pub mac: Option<[u8; 6]>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
}

/// An interface address as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    /// Interface index.
    pub index: u32,
    /// Address and prefix length.
    pub addr: IpNet,
}

/// A unicast route of the main table as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// Destination (`0.0.0.0/0` or `::/0` for a default route).
    pub dst: IpNet,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
}

/// An rtnetlink socket bound to one network namespace.
pub struct Netlink {
    sock: Socket,
    seq: u32,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink")
            .field("fd", &self.sock.as_raw_fd())
            .field("seq", &self.seq)
            .finish()
    }
}

/// What a reply handler is given: the message type and its payload.
type OnMsg<'a> = &'a mut dyn FnMut(u16, &[u8]) -> Result<(), String>;

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, KernelError> {
        let op = "socket(AF_NETLINK, NETLINK_ROUTE)";
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| KernelError::io(op, e))?;
        sock.bind_auto().map_err(|e| KernelError::io(op, e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| KernelError::io(op, e))?;
        // Both are optimisations (short acks; the kernel's reason text), not requirements.
        let _ = sock.set_cap_ack(true);
        let _ = sock.set_ext_ack(true);
        Ok(Netlink {
            sock,
            seq: 0,
            rx: vec![0; RX_SIZE],
            tx: Vec::with_capacity(1024),
        })
    }

    /// A socket in `ns`, opened on a helper thread; it keeps acting on `ns` afterwards.
    pub fn open_in(ns: &Netns) -> Result<Self, KernelError> {
        ns.run(Netlink::open)?
    }

    /// All links (`ip link show`).
    pub fn links(&mut self) -> Result<Vec<LinkInfo>, KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let mut out = Vec::new();
        self.dump(
            RouteNetlinkMessage::GetLink(msg),
            &|| "ip link show".into(),
            &mut |t, p| {
                if t == RTM_NEWLINK {
                    out.push(parse_link(p)?);
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// The link called `name`, or `None` (`ip link show NAME`).
    pub fn link(&mut self, name: &str) -> Result<Option<LinkInfo>, KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let mut found = None;
        let res = self.request(
            RouteNetlinkMessage::GetLink(msg),
            0,
            &|| format!("ip link show {name}"),
            &mut |t, p| {
                if t == RTM_NEWLINK {
                    found = Some(parse_link(p)?);
                }
                Ok(())
            },
        );
        match res {
            Ok(()) => Ok(found),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// All IPv4 and IPv6 addresses (`ip addr show`).
    pub fn addrs(&mut self) -> Result<Vec<AddrInfo>, KernelError> {
        let mut out = Vec::new();
        self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            &|| "ip addr show".into(),
            &mut |t, p| {
                if t == RTM_NEWADDR {
                    if let Some(a) = parse_addr(p)? {
                        out.push(a);
                    }
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// The unicast routes of the main table, IPv4 and IPv6 (`ip route show table main`).
    pub fn routes(&mut self) -> Result<Vec<RouteInfo>, KernelError> {
        let mut out = Vec::new();
        self.dump(
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            &|| "ip route show table main".into(),
            &mut |t, p| {
                if t == RTM_NEWROUTE {
                    if let Some(r) = parse_route(p)? {
                        out.push(r);
                    }
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// `ip link add NAME type bridge mtu MTU`. `EEXIST` if the name is taken.
    pub fn create_bridge(&mut self, name: &str, mtu: u32) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(InfoKind::Bridge)]),
        ];
        self.change(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("ip link add {name} type bridge mtu {mtu}"),
        )
    }

    /// A veth pair: `host` here, carrying the interface alias `alias`, and `peer` created
    /// directly inside `peer_ns` with MAC `peer_mac`; both with `mtu`. `EEXIST` if either
    /// name is taken. If setting the alias fails the pair is deleted again, so an error
    /// leaves nothing behind.
    pub fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_ns: &Netns,
        mtu: u32,
        peer_mac: [u8; 6],
        alias: &str,
    ) -> Result<(), KernelError> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes = vec![
            LinkAttribute::IfName(peer.into()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::Address(peer_mac.to_vec()),
            LinkAttribute::NetNsFd(peer_ns.as_fd().as_raw_fd()),
        ];
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(host.into()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::LinkInfo(vec![
                NlLinkInfo::Kind(InfoKind::Veth),
                NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
            ]),
        ];
        self.change(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| {
                format!(
                    "ip link add {host} mtu {mtu} type veth peer name {peer} address {} netns <fd>",
                    fmt_mac(peer_mac)
                )
            },
        )?;
        // RTM_NEWLINK ignores IFLA_IFALIAS when it creates a link (it is only applied by
        // do_setlink; `ip link add X alias Y type veth ...` drops it too), so it takes a
        // second request. Not pipelined with the first: if the create failed, the alias
        // would land on somebody else's link of the same name.
        if let Err(e) = self.set_alias(host, alias) {
            let _ = self.delete_link(host);
            return Err(e);
        }
        Ok(())
    }

    /// `ip link set NAME alias ALIAS`.
    pub fn set_alias(&mut self, name: &str, alias: &str) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::IfAlias(alias.into()),
        ];
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("ip link set {name} alias {alias}")
        })
    }

    /// `ip link del NAME` (a veth's peer goes with it). `ENODEV` (see
    /// [`KernelError::is_not_found`]) if there is no such link.
    pub fn delete_link(&mut self, name: &str) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![LinkAttribute::IfName(name.into())];
        self.change(RouteNetlinkMessage::DelLink(msg), 0, &|| {
            format!("ip link del {name}")
        })
    }

    /// `ip link set NAME up`.
    pub fn set_up(&mut self, name: &str) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes = vec![LinkAttribute::IfName(name.into())];
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("ip link set {name} up")
        })
    }

    /// `ip link set NAME master MASTER`.
    pub fn set_master(&mut self, name: &str, master: &str) -> Result<(), KernelError> {
        let op = || format!("ip link set {name} master {master}");
        let master_index = self.index_of(master, &op)?;
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Controller(master_index),
        ];
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &op)
    }

    /// `ip link set NAME mtu MTU`.
    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![LinkAttribute::IfName(name.into()), LinkAttribute::Mtu(mtu)];
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("ip link set {name} mtu {mtu}")
        })
    }

    /// `ip addr add ADDR dev NAME` (with the broadcast address for IPv4, as
    /// `ip addr add ... brd +`). `EEXIST` if the link has it already.
    pub fn add_addr(&mut self, name: &str, addr: IpNet) -> Result<(), KernelError> {
        let op = || format!("ip addr add {addr} dev {name}");
        let index = self.index_of(name, &op)?;
        let mut msg = addr_message(index, addr);
        if let IpNet::V4(v4) = addr {
            if v4.prefix_len() < 31 {
                msg.attributes
                    .push(AddressAttribute::Broadcast(v4.broadcast()));
            }
        }
        self.change(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &op,
        )
    }

    /// `ip addr del ADDR dev NAME`. `EADDRNOTAVAIL` (see [`KernelError::is_not_found`]) if
    /// the link does not have it.
    pub fn del_addr(&mut self, name: &str, addr: IpNet) -> Result<(), KernelError> {
        let op = || format!("ip addr del {addr} dev {name}");
        let index = self.index_of(name, &op)?;
        self.change(
            RouteNetlinkMessage::DelAddress(addr_message(index, addr)),
            0,
            &op,
        )
    }

    /// `ip route add DST [via GW] dev DEV` in the main table (`proto boot`, scope link when
    /// there is no gateway). `EEXIST` if the route exists.
    pub fn add_route(
        &mut self,
        dst: IpNet,
        via: Option<IpAddr>,
        dev: &str,
    ) -> Result<(), KernelError> {
        let op = || {
            let mut s = String::from("ip route add ");
            if dst.prefix_len() == 0 {
                s.push_str("default");
            } else {
                let _ = write!(s, "{dst}");
            }
            if let Some(gw) = via {
                let _ = write!(s, " via {gw}");
            }
            let _ = write!(s, " dev {dev}");
            s
        };
        if let Some(gw) = via {
            if gw.is_ipv4() != matches!(dst, IpNet::V4(_)) {
                return Err(KernelError::Invalid {
                    op: op(),
                    reason: "gateway and destination are of different address families".into(),
                });
            }
        }
        let index = self.index_of(dev, &op)?;
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(dst.addr());
        msg.header.destination_prefix_length = dst.prefix_len();
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = if via.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        msg.header.kind = RouteType::Unicast;
        if dst.prefix_len() > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(
                    dst.network(),
                )));
        }
        if let Some(gw) = via {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        msg.attributes.push(RouteAttribute::Oif(index));
        self.change(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &op,
        )
    }

    /// The index of `name`, or an `ENODEV` error attributed to `op`.
    fn index_of(&mut self, name: &str, op: &dyn Fn() -> String) -> Result<u32, KernelError> {
        match self.link(name)? {
            Some(l) => Ok(l.index),
            None => Err(KernelError::Netlink {
                op: op(),
                errno: libc::ENODEV,
                detail: Some(format!("Cannot find device \"{name}\"")),
            }),
        }
    }

    /// A request that changes something and returns nothing but its ack.
    fn change(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &dyn Fn() -> String,
    ) -> Result<(), KernelError> {
        self.request(msg, flags, op, &mut |_, _| Ok(()))
    }

    /// Send one request with `NLM_F_ACK` and read until its ack or error; replies before
    /// the ack (a `GET` answer) go to `on_msg`.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &dyn Fn() -> String,
        on_msg: OnMsg<'_>,
    ) -> Result<(), KernelError> {
        let seq = self.send(msg, NLM_F_ACK | flags, op)?;
        self.recv(seq, op, on_msg)
    }

    /// Send a dump request and read until `NLMSG_DONE`. (No `NLM_F_ACK`: the kernel never
    /// acks a dump, `netlink_rcv_skb` skips it when the handler starts one.)
    fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        op: &dyn Fn() -> String,
        on_msg: OnMsg<'_>,
    ) -> Result<(), KernelError> {
        let seq = self.send(msg, NLM_F_DUMP, op)?;
        self.recv(seq, op, on_msg)
    }

    fn send(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &dyn Fn() -> String,
    ) -> Result<u32, KernelError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let len = packet.buffer_len();
        self.tx.clear();
        self.tx.resize(len, 0);
        packet.serialize(&mut self.tx[..]);
        let sent = self
            .sock
            .send(&self.tx, 0)
            .map_err(|e| KernelError::io(format!("{}: send", op()), e))?;
        if sent != len {
            return Err(KernelError::Decode {
                op: op(),
                reason: format!("short send ({sent} of {len} bytes)"),
            });
        }
        Ok(self.seq)
    }

    /// Read replies to `seq` until its terminating ack, error or `NLMSG_DONE`. Messages of
    /// other sequence numbers (left over from an earlier failed exchange) are skipped. A
    /// reply that fails to decode is reported only after the terminator has been read, so
    /// the socket stays in step.
    fn recv(
        &mut self,
        seq: u32,
        op: &dyn Fn() -> String,
        on_msg: OnMsg<'_>,
    ) -> Result<(), KernelError> {
        let mut failure: Option<KernelError> = None;
        loop {
            let n = self
                .sock
                .recv(&mut &mut self.rx[..], libc::MSG_TRUNC)
                .map_err(|e| KernelError::io(format!("{}: recv", op()), e))?;
            if n > self.rx.len() {
                return Err(KernelError::Decode {
                    op: op(),
                    reason: format!("reply of {n} bytes truncated to {}", self.rx.len()),
                });
            }
            let mut off = 0;
            while off < n {
                let buf = NetlinkBuffer::new_checked(&self.rx[off..n]).map_err(|e| {
                    KernelError::Decode {
                        op: op(),
                        reason: e.to_string(),
                    }
                })?;
                let len = buf.length() as usize;
                off += (len + 3) & !3;
                if buf.sequence_number() != seq {
                    continue;
                }
                let payload = buf.payload();
                match buf.message_type() {
                    NLMSG_NOOP => {}
                    NLMSG_ERROR => {
                        let code = read_i32(payload);
                        if let Some(f) = failure {
                            return Err(f);
                        }
                        if code == 0 {
                            return Ok(());
                        }
                        return Err(KernelError::Netlink {
                            op: op(),
                            errno: code.saturating_neg(),
                            detail: error_detail(buf.flags(), payload),
                        });
                    }
                    NLMSG_DONE => {
                        let code = read_i32(payload);
                        if let Some(f) = failure {
                            return Err(f);
                        }
                        if code >= 0 {
                            return Ok(());
                        }
                        let detail = if buf.flags() & NLM_F_ACK_TLVS != 0 && payload.len() > 4 {
                            ext_ack_msg(&payload[4..])
                        } else {
                            None
                        };
                        return Err(KernelError::Netlink {
                            op: op(),
                            errno: code.saturating_neg(),
                            detail,
                        });
                    }
                    NLMSG_OVERRUN => {
                        failure.get_or_insert(KernelError::Decode {
                            op: op(),
                            reason: "NLMSG_OVERRUN".into(),
                        });
                    }
                    t => {
                        if let Err(reason) = on_msg(t, payload) {
                            failure.get_or_insert(KernelError::Decode { op: op(), reason });
                        }
                    }
                }
            }
        }
    }
}

fn read_i32(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

/// The extended-ack text of an `NLMSG_ERROR` payload: after the error code comes the
/// offending request (only its header with `NETLINK_CAP_ACK`), then the TLVs.
fn error_detail(flags: u16, payload: &[u8]) -> Option<String> {
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

fn ext_ack_msg(tlvs: &[u8]) -> Option<String> {
    NlasIterator::new(tlvs)
        .filter_map(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .and_then(|nla| parse_string(nla.value()).ok())
        .filter(|s| !s.is_empty())
}

fn parse_link(p: &[u8]) -> Result<LinkInfo, String> {
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

fn parse_addr(p: &[u8]) -> Result<Option<AddrInfo>, String> {
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

fn parse_route(p: &[u8]) -> Result<Option<RouteInfo>, String> {
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

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn addr_message(index: u32, addr: IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header = AddressHeader {
        family: family(addr.addr()),
        prefix_len: addr.prefix_len(),
        index,
        ..AddressHeader::default()
    };
    msg.attributes = vec![
        AddressAttribute::Local(addr.addr()),
        AddressAttribute::Address(addr.addr()),
    ];
    msg
}

fn fmt_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

#[cfg(test)]
mod tests {
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
