//! The kernel as the engine sees it: apply plans, observe links, addresses, routes and the
//! firewall. [`Executor`] is the real one; a test can put a fake behind the same trait.

use std::path::Path;

use reef_core::plan::{Op, Plan};

use crate::events::Watcher;
use crate::{
    netns, AddrInfo, Executor, FdbEntry, KernelError, LinkInfo, NeighEntry, Netlink, RouteInfo,
};

/// Deletes host links from a thread of its own (see the engine's reaper).
pub type LinkReaper = Box<dyn FnMut(&str) -> Result<(), KernelError> + Send>;

/// What the engine does to and reads from the kernel.
pub trait Kernel: Send {
    /// Apply a plan's steps in order; on failure undo the applied ones, newest first.
    fn apply_plan(&mut self, plan: &Plan) -> Result<(), KernelError>;
    /// Apply one op.
    fn apply(&mut self, op: &Op) -> Result<(), KernelError>;
    /// A host link by name.
    fn link(&mut self, name: &str) -> Result<Option<LinkInfo>, KernelError>;
    /// Every host link.
    fn links(&mut self) -> Result<Vec<LinkInfo>, KernelError>;
    /// Every host address.
    fn addrs(&mut self) -> Result<Vec<AddrInfo>, KernelError>;
    /// The host's main routing table.
    fn routes(&mut self) -> Result<Vec<RouteInfo>, KernelError>;
    /// A host device's own forwarding entries (`bridge fdb show dev DEV`).
    fn fdb(&mut self, dev: &str) -> Result<Vec<FdbEntry>, KernelError>;
    /// A host device's IPv4 neighbour entries.
    fn neighbours(&mut self, dev: &str) -> Result<Vec<NeighEntry>, KernelError>;
    /// Ping `addr` from the host namespace until it answers (true) or `limit` passes.
    fn probe_gateway(
        &mut self,
        addr: std::net::Ipv4Addr,
        limit: std::time::Duration,
    ) -> Result<bool, KernelError>;
    /// Run an nftables script in the host namespace; returns its output.
    fn nft(&mut self, script: &str) -> Result<String, KernelError>;
    /// Make the directory sandboxes are bind-mounted in.
    fn prepare_sandbox_dir(&mut self, dir: &Path) -> Result<(), KernelError>;
    /// True when a sandbox is mounted at `path`.
    fn sandbox_exists(&mut self, path: &Path) -> bool;
    /// A deleter of host links for a background thread.
    fn link_reaper(&mut self) -> Result<LinkReaper, KernelError>;
    /// A watcher of changes to reef's links and firewall table; `None` when this kernel
    /// reports none.
    fn watcher(&mut self, table: &str) -> Result<Option<Watcher>, KernelError>;
    /// Test hook: fail every later plan before its step `n` (see
    /// [`Executor::fail_after`]).
    fn fail_after(&mut self, n: Option<usize>);
}

impl Kernel for Executor {
    fn apply_plan(&mut self, plan: &Plan) -> Result<(), KernelError> {
        Executor::apply_plan(self, plan)
    }

    fn apply(&mut self, op: &Op) -> Result<(), KernelError> {
        Executor::apply(self, op)
    }

    fn link(&mut self, name: &str) -> Result<Option<LinkInfo>, KernelError> {
        self.host().link(name)
    }

    fn links(&mut self) -> Result<Vec<LinkInfo>, KernelError> {
        self.host().links()
    }

    fn addrs(&mut self) -> Result<Vec<AddrInfo>, KernelError> {
        self.host().addrs()
    }

    fn routes(&mut self) -> Result<Vec<RouteInfo>, KernelError> {
        self.host().routes()
    }

    fn fdb(&mut self, dev: &str) -> Result<Vec<FdbEntry>, KernelError> {
        self.host().fdb_entries(dev)
    }

    fn neighbours(&mut self, dev: &str) -> Result<Vec<NeighEntry>, KernelError> {
        self.host().neigh_entries(dev)
    }

    fn probe_gateway(
        &mut self,
        addr: std::net::Ipv4Addr,
        limit: std::time::Duration,
    ) -> Result<bool, KernelError> {
        // The executor's thread is in the host namespace.
        crate::probe::answers(addr, limit)
    }

    fn nft(&mut self, script: &str) -> Result<String, KernelError> {
        Executor::nft(self)?.run(script)
    }

    fn prepare_sandbox_dir(&mut self, dir: &Path) -> Result<(), KernelError> {
        netns::prepare_netns_dir(dir)
    }

    fn sandbox_exists(&mut self, path: &Path) -> bool {
        netns::is_bound(path)
    }

    fn link_reaper(&mut self) -> Result<LinkReaper, KernelError> {
        // Its own socket in the calling thread's (the host's) namespace.
        let mut nl = Netlink::open()?;
        Ok(Box::new(move |name: &str| nl.delete_link(name)))
    }

    fn watcher(&mut self, table: &str) -> Result<Option<Watcher>, KernelError> {
        Watcher::open(table).map(Some)
    }

    fn fail_after(&mut self, n: Option<usize>) {
        Executor::fail_after(self, n)
    }
}
