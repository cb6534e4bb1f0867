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
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_DONE, NLMSG_ERROR,
    NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeader, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridgePort, InfoData, InfoKind, InfoPortData,
    InfoPortKind, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo as NlLinkInfo,
    LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use self::decode::{error_detail, ext_ack_msg, parse_addr, parse_link, parse_route, read_i32};
use crate::netns::Netns;
use crate::KernelError;

mod decode;

/// Receive buffer size. The kernel sizes dump datagrams from the reader's buffer, up to
/// 32 KiB (`netlink_dump`), so 64 KiB never truncates.
const RX_SIZE: usize = 64 * 1024;

// Message types from <linux/rtnetlink.h>.
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;

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
        // RTM_NEWLINK ignores IFLA_IFALIAS when it creates a link (only do_setlink applies
        // it; `ip link add X alias Y type veth ...` drops it too), so it takes a second
        // request. Not pipelined with the first: if the create failed, the alias would land
        // on somebody else's link of the same name.
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(host.into()),
            LinkAttribute::IfAlias(alias.into()),
        ];
        let labelled = self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("ip link set {host} alias {alias}")
        });
        if let Err(e) = labelled {
            let _ = self.delete_link(host);
            return Err(e);
        }
        Ok(())
    }

    /// `ip link set NAME addrgenmode none`: the link gets no IPv6 link-local address when
    /// it comes up; call it while the link is down.
    pub fn set_no_ipv6_addresses(&mut self, name: &str) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
                In6AddrGenMode::None,
            )])]),
        ];
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("ip link set {name} addrgenmode none")
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

    /// `ip link set NAME down && ip link set NAME name PARKED` (a link is renamed only
    /// while down). `ENODEV` if there is no such link.
    pub fn park(&mut self, name: &str, parked: &str) -> Result<(), KernelError> {
        let op = || format!("ip link set {name} down && ip link set {name} name {parked}");
        let index = self.index_of(name, &op)?;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.change_mask = LinkFlags::Up;
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("ip link set {name} down")
        })?;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes = vec![LinkAttribute::IfName(parked.into())];
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("ip link set {name} name {parked}")
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

    /// `ip link set NAME type bridge_slave hairpin on|off`: let a bridge port send a frame back
    /// out the port it came in on. A container reaching its own published port through the
    /// host address needs it: with br_netfilter the DNAT happens on the bridge path and the
    /// frame's new destination sits behind its ingress port. The port must be enslaved.
    pub fn set_hairpin(&mut self, name: &str, on: bool) -> Result<(), KernelError> {
        let op = || {
            format!(
                "ip link set {name} type bridge_slave hairpin {}",
                if on { "on" } else { "off" }
            )
        };
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::LinkInfo(vec![
                NlLinkInfo::PortKind(InfoPortKind::Bridge),
                NlLinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                    on,
                )])),
            ]),
        ];
        // Port settings go through NEWLINK on an existing link (as `ip` does), not SETLINK.
        self.change(RouteNetlinkMessage::NewLink(msg), 0, &op)
    }

    /// `ip link set NAME address MAC`.
    pub fn set_mac(&mut self, name: &str, mac: [u8; 6]) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Address(mac.to_vec()),
        ];
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            let m: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
            format!("ip link set {name} address {}", m.join(":"))
        })
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
            if n == 0 {
                return Err(KernelError::Decode {
                    op: op(),
                    reason: "empty read from the netlink socket".into(),
                });
            }
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
