//! Facts reefd reads from the host for the engine: its resolver and hosts files, its
//! hostname, and randomness for ids.

use std::io::Read;

use crate::engine::HostFacts;

/// The real host.
pub struct RealHost;

impl HostFacts for RealHost {
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
