//! Asking an address whether it answers: ICMP echo over a raw socket (root has
//! `CAP_NET_RAW`), in the calling thread's network namespace.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn,
};

use crate::KernelError;

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request with this id and sequence number.
fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![8, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"reef-probe");
    let c = checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// True when `reply` (an IPv4 packet as a raw socket delivers it) is an echo reply from
/// `from` to our request `id`.
fn is_reply(reply: &[u8], from: Ipv4Addr, id: u16) -> bool {
    let Some(&first) = reply.first() else {
        return false;
    };
    let ihl = usize::from(first & 0x0f) * 4;
    let (Some(src), Some(icmp)) = (reply.get(12..16), reply.get(ihl..ihl + 8)) else {
        return false;
    };
    src == from.octets() && icmp[0] == 0 && icmp[4..6] == id.to_be_bytes()
}

/// Ping `dst` every 200 ms until it answers (true) or `limit` passes (false).
pub fn answers(dst: Ipv4Addr, limit: Duration) -> Result<bool, KernelError> {
    let op = format!("ping {dst}");
    let io = |e: nix::Error| KernelError::io(op.clone(), std::io::Error::from(e));
    let sock = socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Icmp,
    )
    .map_err(io)?;
    let id = (std::process::id() & 0xffff) as u16;
    let to = SockaddrIn::from(std::net::SocketAddrV4::new(dst, 0));
    let deadline = Instant::now() + limit;
    let mut seq = 0u16;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        seq = seq.wrapping_add(1);
        // A send can fail while the route is being moved; the next round tries again.
        let _ = sendto(
            sock.as_raw_fd(),
            &echo_request(id, seq),
            &to,
            MsgFlags::empty(),
        );
        let round = Instant::now() + Duration::from_millis(200);
        loop {
            let now = Instant::now();
            if now >= round.min(deadline) {
                break;
            }
            let wait = (round.min(deadline) - now).as_millis().max(1) as u16;
            let mut fds = [PollFd::new(
                std::os::fd::AsFd::as_fd(&sock),
                PollFlags::POLLIN,
            )];
            if poll(&mut fds, PollTimeout::from(wait)).map_err(io)? == 0 {
                break;
            }
            let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).map_err(io)?;
            if is_reply(&buf[..n], dst, id) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_carry_a_valid_checksum() {
        let p = echo_request(0x1234, 7);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
        let mut reply = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        reply.extend_from_slice(&[0, 0, 0, 0, 0x12, 0x34, 0, 7]);
        assert!(is_reply(&reply, "10.0.0.1".parse().unwrap(), 0x1234));
        assert!(!is_reply(&reply, "10.0.0.9".parse().unwrap(), 0x1234));
        assert!(!is_reply(&reply, "10.0.0.1".parse().unwrap(), 0x4321));
    }
}
