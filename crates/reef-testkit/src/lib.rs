//! Test doubles for the engine, so every engine operation and rollback can be unit-tested
//! fast and without a kernel: [`MemStore`] (records in memory, shareable across a
//! simulated daemon restart), [`FakeKernel`] (keeps a model of the links, addresses,
//! sandboxes and firewall elements it was told to make, answers observations from it, and
//! fails where a test asks) and [`FixedHost`] (host facts with predictable ids).
//!
//! The real kernel is exercised by reef-kernel's and the integration tests; these doubles
//! follow its rules (EEXIST for a name taken, ENODEV for a missing parent or master,
//! absence tolerated by deletes) so the engine meets the same answers.
#![deny(missing_docs)]

mod kernel;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use reef_core::model::{Container, Network};
use reef_store::{Change, Snapshot, StateStore, StoreError};

pub use kernel::{FakeKernel, FakeLink, FakeState, KernelModel};

/// Records in memory. Clones share them, so a test can start a second engine over the
/// first one's records, as a daemon restart would.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    inner: Arc<Mutex<MemRecords>>,
}

#[derive(Debug, Default)]
struct MemRecords {
    networks: BTreeMap<String, Network>,
    containers: BTreeMap<String, Container>,
    fail_commits: bool,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Every network record.
    pub fn networks(&self) -> Vec<Network> {
        self.records().networks.values().cloned().collect()
    }

    /// Every container record.
    pub fn containers(&self) -> Vec<Container> {
        self.records().containers.values().cloned().collect()
    }

    /// Make every later commit fail (a full disk), or stop doing so.
    pub fn fail_commits(&self, fail: bool) {
        self.records().fail_commits = fail;
    }

    fn records(&self) -> std::sync::MutexGuard<'_, MemRecords> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StateStore for MemStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let r = self.records();
        Ok(Snapshot {
            networks: r.networks.values().cloned().collect(),
            containers: r.containers.values().cloned().collect(),
        })
    }

    fn commit(&self, changes: &[Change]) -> Result<(), StoreError> {
        let mut r = self.records();
        if r.fail_commits {
            return Err(StoreError::Db {
                op: "commit",
                message: "injected failure".into(),
            });
        }
        for c in changes {
            match c {
                Change::PutNetwork(n) => {
                    r.networks.insert(n.id.clone(), n.clone());
                }
                Change::DeleteNetwork(id) => {
                    r.networks.remove(id);
                }
                Change::PutContainer(c) => {
                    r.containers.insert(c.id.clone(), (**c).clone());
                }
                Change::DeleteContainer(id) => {
                    r.containers.remove(id);
                }
            }
        }
        Ok(())
    }
}

/// Host facts of a quiet machine: an empty resolv.conf but for one upstream, ids counting
/// up from 1 (as 64 hex digits), no port in use.
#[derive(Debug, Default)]
pub struct FixedHost {
    next_id: AtomicU64,
}

impl reef_engine::HostFacts for FixedHost {
    fn resolv_conf(&self) -> String {
        "nameserver 192.0.2.53\n".into()
    }

    fn hosts(&self) -> String {
        "127.0.0.1\tlocalhost\n".into()
    }

    fn hostname(&self) -> String {
        "testhost".into()
    }

    fn random_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        // Distinct in the first 12 digits too (bridge and dummy names come from those).
        format!("{n:012x}{:052x}", n)
    }

    fn port_in_use(&self, _: reef_core::ports::Proto, _: std::net::IpAddr, _: u16) -> bool {
        false
    }

    fn ephemeral_range(&self) -> (u16, u16) {
        (32768, 60999)
    }
}
