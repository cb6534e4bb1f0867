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
//!
//! Layout: this file holds the socket and the request/ack machinery; each concern adds its
//! own `impl Netlink` block: `link` (reading links, and the operations every kind shares)
//! with one file per link kind under it (`link/bridge.rs`, `veth`, `macvlan`, `vlan`),
//! `addr` and `route`. Replies are parsed in `decode`.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_DONE, NLMSG_ERROR,
    NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use self::decode::{error_detail, ext_ack_msg, read_i32};
use crate::netns::Netns;
use crate::KernelError;

mod addr;
mod decode;
mod link;
mod neigh;
mod route;

pub use self::addr::AddrInfo;
pub use self::link::LinkInfo;
pub use self::neigh::{FdbEntry, NeighEntry};
pub use self::route::RouteInfo;

/// Receive buffer size. The kernel sizes dump datagrams from the reader's buffer, up to
/// 32 KiB (`netlink_dump`), so 64 KiB never truncates.
const RX_SIZE: usize = 64 * 1024;

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
