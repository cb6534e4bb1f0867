//! reef's effects layer: netlink, network namespaces, sysctls.
//!
//! This crate executes what the core decided ([`reef_core::plan::Op`]s) and reads back
//! what the kernel holds; it makes no decisions of its own. It is the only crate that sees
//! netlink wire types; its public API speaks in names, `ipnet` types and plain structs.
//! Everything is synchronous: each call takes microseconds, so the daemon calls it from a
//! blocking section, and namespace switches happen only on short-lived helper threads
//! (see [`netns`]).
#![deny(missing_docs)]

mod error;
pub mod events;
pub mod exec;
mod kernel;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod probe;
pub mod sysctl;

pub use error::KernelError;
pub use exec::Executor;
pub use kernel::{Kernel, LinkReaper};
pub use netlink::{AddrInfo, FdbEntry, LinkInfo, NeighEntry, Netlink, RouteInfo};
pub use netns::Netns;

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_and_errors_cross_threads() {
        send_sync::<crate::KernelError>();
        send_sync::<crate::Netlink>();
        send_sync::<crate::Netns>();
        send_sync::<crate::Executor>();
    }
}
