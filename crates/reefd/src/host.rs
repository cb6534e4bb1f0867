//! Facts reefd reads from the host for the engine: its resolver and hosts files, its
//! hostname, and randomness for ids.

use std::io::Read;
use std::net::{IpAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{
    bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn,
    SockaddrIn6,
};
use reef_core::ports::{self, Proto};

use reef_engine::HostFacts;

/// The real host.
pub struct RealHost;

impl HostFacts for RealHost {
    fn port_in_use(&self, proto: Proto, ip: IpAddr, port: u16) -> bool {
        // Binding is the kernel's own answer and costs microseconds; reading /proc/net/tcp
        // walks the whole machine's connection table (over a millisecond). SO_REUSEADDR
        // lets the probe ignore TIME_WAIT leftovers while still colliding with a listener.
        let (kind, protocol) = match proto {
            Proto::Tcp => (SockType::Stream, SockProtocol::Tcp),
            Proto::Udp => (SockType::Datagram, SockProtocol::Udp),
            // A listening SCTP socket refuses the bind the same way.
            Proto::Sctp => (SockType::SeqPacket, SockProtocol::Sctp),
        };
        let family = if ip.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let Ok(fd) = socket(family, kind, SockFlag::SOCK_CLOEXEC, protocol) else {
            return false;
        };
        let _ = setsockopt(&fd, sockopt::ReuseAddr, &true);
        let res = match ip {
            IpAddr::V4(v4) => bind(
                fd.as_raw_fd(),
                &SockaddrIn::from(SocketAddrV4::new(v4, port)),
            ),
            IpAddr::V6(v6) => {
                let _ = setsockopt(&fd, sockopt::Ipv6V6Only, &true);
                bind(
                    fd.as_raw_fd(),
                    &SockaddrIn6::from(SocketAddrV6::new(v6, port, 0, 0)),
                )
            }
        };
        matches!(res, Err(Errno::EADDRINUSE))
    }

    fn ephemeral_range(&self) -> (u16, u16) {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|t| ports::parse_port_range(&t).ok())
            .unwrap_or((32768, 60999))
    }

    fn resolv_conf(&self) -> String {
        std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
    }

    fn hosts(&self) -> String {
        std::fs::read_to_string("/etc/hosts")
            .unwrap_or_else(|_| "127.0.0.1\tlocalhost\n".to_string())
    }

    fn hostname(&self) -> String {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
    }

    fn random_id(&self) -> String {
        let mut bytes = [0u8; 32];
        // /dev/urandom never blocks after boot and cannot run short for 32 bytes.
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .expect("/dev/urandom is readable");
        reef_core::names::id_from_bytes(&bytes)
    }
}
