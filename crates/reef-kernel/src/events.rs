//! Kernel change notifications that can mean drift: links deleted (rtnetlink
//! `RTNLGRP_LINK`) and reef's nftables table changed by someone else (nfnetlink
//! `NFNLGRP_NFTABLES`). Reports facts only; the engine decides what to repair.
//!
//! nftables announces every committed transaction as its objects' messages followed by a
//! `NFT_MSG_NEWGEN` carrying the id of the committing *thread* (the kernel's
//! `task_pid_nr(current)`, not the process id), so transactions of this process (reefd's
//! own, made from any of its threads) are told apart from a firewall reload or an
//! administrator's `nft` command by asking whether that id is one of our threads.

use std::os::fd::{AsFd, AsRawFd};

use netlink_sys::{protocols::NETLINK_NETFILTER, protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::KernelError;

const RTNLGRP_LINK: u32 = 1;
const RTM_DELLINK: u16 = 17;
const IFLA_IFNAME: u16 = 3;
const NFNLGRP_NFTABLES: u32 = 7;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_NEWGEN: u16 = 15;
const NFTA_GEN_PROC_PID: u16 = 2;

/// A change that may need repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A link of this name was deleted.
    LinkDeleted(String),
    /// Another process deleted something in nftables table `ip`/`bridge` `reef`.
    FirewallChanged,
    /// Events were lost (the socket overran): anything may have changed.
    Overrun,
}

/// Subscriptions in the calling thread's network namespace.
pub struct Watcher {
    route: Socket,
    nft: Socket,
    table: String,
    own_pid: u32,
    /// The transaction being read touched the watched table with a deletion.
    pending_nft: bool,
    buf: Vec<u8>,
}

fn subscribe(protocol: isize, group: u32) -> Result<Socket, KernelError> {
    let io = |op: &str| {
        let op = op.to_string();
        move |source| KernelError::Io { op, source }
    };
    let mut s = Socket::new(protocol).map_err(io("netlink socket for events"))?;
    s.bind(&SocketAddr::new(0, 0))
        .map_err(io("bind netlink event socket"))?;
    s.add_membership(group).map_err(io("join netlink group"))?;
    Ok(s)
}

/// Netlink attributes (type, payload) of `data`.
fn attrs(mut data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([data[0], data[1]]));
        let kind = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            break;
        }
        out.push((kind, &data[4..len]));
        let step = (len + 3) & !3;
        data = &data[step.min(data.len())..];
    }
    out
}

fn c_string(b: &[u8]) -> String {
    String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or_default()).into_owned()
}

impl Watcher {
    /// Watch links and the nftables table named `table` (reef's).
    pub fn open(table: &str) -> Result<Watcher, KernelError> {
        Ok(Watcher {
            route: subscribe(NETLINK_ROUTE, RTNLGRP_LINK)?,
            nft: subscribe(NETLINK_NETFILTER, NFNLGRP_NFTABLES)?,
            table: table.to_string(),
            own_pid: std::process::id(),
            pending_nft: false,
            buf: vec![0; 1 << 16],
        })
    }

    /// Block until something arrives; return what it means (possibly nothing).
    pub fn wait(&mut self) -> Result<Vec<Change>, KernelError> {
        let mut fds = [
            PollFd::new(self.route.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.nft.as_fd(), PollFlags::POLLIN),
        ];
        poll(&mut fds, PollTimeout::NONE).map_err(|e| KernelError::Io {
            op: "poll netlink events".into(),
            source: e.into(),
        })?;
        let route_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        let nft_ready = fds[1].revents().is_some_and(|r| !r.is_empty());
        let mut changes = Vec::new();
        if route_ready {
            let Some(n) = recv(&self.route, &mut self.buf)? else {
                return Ok(vec![Change::Overrun]);
            };
            for (kind, payload) in messages(&self.buf[..n]) {
                // ifinfomsg is 16 bytes; attributes follow.
                if kind == RTM_DELLINK && payload.len() > 16 {
                    if let Some((_, name)) = attrs(&payload[16..])
                        .into_iter()
                        .find(|(t, _)| *t == IFLA_IFNAME)
                    {
                        changes.push(Change::LinkDeleted(c_string(name)));
                    }
                }
            }
        }
        if nft_ready {
            let Some(n) = recv(&self.nft, &mut self.buf)? else {
                self.pending_nft = false;
                return Ok(vec![Change::Overrun]);
            };
            let msgs: Vec<(u16, Vec<u8>)> = messages(&self.buf[..n])
                .into_iter()
                .map(|(k, p)| (k, p.to_vec()))
                .collect();
            for (kind, payload) in msgs {
                if kind >> 8 != NFNL_SUBSYS_NFTABLES || payload.len() < 4 {
                    continue;
                }
                // nfgenmsg is 4 bytes; every object message names its table in attribute 1.
                let a = attrs(&payload[4..]);
                match kind & 0xff {
                    NFT_MSG_DELTABLE | NFT_MSG_DELCHAIN | NFT_MSG_DELRULE | NFT_MSG_DELSET
                    | NFT_MSG_DELSETELEM
                        if a.iter().any(|(t, v)| *t == 1 && c_string(v) == self.table) =>
                    {
                        self.pending_nft = true;
                    }
                    NFT_MSG_NEWGEN => {
                        let pid = a
                            .iter()
                            .find(|(t, _)| *t == NFTA_GEN_PROC_PID)
                            .and_then(|(_, v)| v.get(..4))
                            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                        if self.pending_nft && !pid.is_some_and(|p| is_own_thread(self.own_pid, p))
                        {
                            changes.push(Change::FirewallChanged);
                        }
                        self.pending_nft = false;
                    }
                    _ => {}
                }
            }
        }
        Ok(changes)
    }
}

/// True when `tid` is this process (`own_pid`) or one of its threads. Comparing with the
/// process id alone took every transaction made from a worker thread (all of reefd's
/// firewall work) for someone else's, and the repair, itself run from a thread, then
/// re-triggered itself for ever.
fn is_own_thread(own_pid: u32, tid: u32) -> bool {
    tid == own_pid || std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

/// `None` when the socket overran (ENOBUFS): events were lost.
fn recv(s: &Socket, buf: &mut [u8]) -> Result<Option<usize>, KernelError> {
    let n = nix::sys::socket::recv(s.as_raw_fd(), buf, nix::sys::socket::MsgFlags::empty());
    match n {
        Ok(n) => Ok(Some(n)),
        Err(nix::errno::Errno::ENOBUFS) => Ok(None),
        Err(e) => Err(KernelError::Io {
            op: "read netlink events".into(),
            source: e.into(),
        }),
    }
}

/// (type, payload) of each netlink message in a datagram.
fn messages(mut data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let hdr = std::mem::size_of::<u32>() * 4;
    while data.len() >= hdr {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if len < hdr || len > data.len() {
            break;
        }
        out.push((kind, &data[hdr..len]));
        let step = (len + 3) & !3;
        data = &data[step.min(data.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_of_any_of_our_threads_are_ours() {
        let own = std::process::id();
        assert!(is_own_thread(own, own));
        // A live worker thread, as the kernel reports it (its thread id, not our pid).
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
            let _ = done_rx.recv();
        });
        let live = rx.recv().unwrap();
        assert_ne!(live, own);
        assert!(is_own_thread(own, live));
        done_tx.send(()).unwrap();
        t.join().unwrap();
        // Not a thread of ours: the parent (the test runner's shell or cargo).
        assert!(!is_own_thread(own, std::os::unix::process::parent_id()));
    }

    #[test]
    fn attributes_and_messages_parse_and_stop_at_garbage() {
        // One attribute: type 3, "eth0\0" (len 9, padded to 12).
        let mut a = vec![9, 0, 3, 0];
        a.extend_from_slice(b"eth0\0\0\0\0");
        assert_eq!(attrs(&a), vec![(3, &b"eth0\0"[..])]);
        assert!(attrs(&[200, 0, 1, 0]).is_empty());
        let mut m = vec![0u8; 16];
        m[0] = 20;
        m[4] = 17;
        m.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(messages(&m), vec![(17, &[1u8, 2, 3, 4][..])]);
        assert!(messages(&[1, 0, 0]).is_empty());
    }
}
