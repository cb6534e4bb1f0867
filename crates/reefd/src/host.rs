//! Facts reefd reads from the host for the engine: its resolver and hosts files, its
//! hostname, and randomness for ids.

use std::io::Read;
use std::net::IpAddr;

use reef_core::ports::{self, Proto};

use crate::engine::HostFacts;

/// The real host.
pub struct RealHost;

impl HostFacts for RealHost {
    fn bound_sockets(&self, proto: Proto) -> Vec<(IpAddr, u16)> {
        let (files, only_listen): (&[&str], bool) = match proto {
            Proto::Tcp => (&["/proc/net/tcp", "/proc/net/tcp6"], true),
            Proto::Udp => (&["/proc/net/udp", "/proc/net/udp6"], false),
            // SCTP endpoints are listed elsewhere and in another format; reef's own
            // bookkeeping still prevents two containers from taking one port.
            Proto::Sctp => (&[], false),
        };
        files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|text| ports::parse_proc_net(&text, only_listen))
            .collect()
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
