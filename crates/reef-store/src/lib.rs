//! reef's persistent state: network and container records in an embedded database (redb).
//!
//! Every change an operation makes is one atomic, durable transaction (`commit`), so a
//! `kill -9` at any moment leaves either the state before the operation or after it. The
//! records carry the intent of half-done work themselves (a container in `Starting` names the
//! sandbox and endpoints it is being given), which is what start-up reconciliation reads.
//! This crate knows nothing of the kernel.
#![deny(missing_docs)]

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use reef_core::model::{Container, Network};

const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");
const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");

/// One change to the state.
// Changes live for one commit; boxing the network would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Change {
    /// Insert or replace a network.
    PutNetwork(Network),
    /// Delete a network by id.
    DeleteNetwork(String),
    /// Insert or replace a container.
    PutContainer(Box<Container>),
    /// Delete a container by id.
    DeleteContainer(String),
}

/// Everything stored.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// All networks.
    pub networks: Vec<Network>,
    /// All containers.
    pub containers: Vec<Container>,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened (or is held by another reefd).
    #[error("cannot open state database {path}: {source}")]
    Open {
        /// Database file.
        path: String,
        /// Cause.
        source: Box<redb::DatabaseError>,
    },
    /// A read or write failed.
    #[error("state database {op}: {message}")]
    Db {
        /// What was being done.
        op: &'static str,
        /// The database's message.
        message: String,
    },
    /// A record could not be decoded.
    #[error("state database holds a {kind} record {key:?} that cannot be read: {source}")]
    Corrupt {
        /// `network` or `container`.
        kind: &'static str,
        /// Its key.
        key: String,
        /// Decode error.
        source: serde_json::Error,
    },
}

fn db_err(op: &'static str) -> impl Fn(&dyn std::fmt::Display) -> StoreError {
    move |e| StoreError::Db {
        op,
        message: e.to_string(),
    }
}

/// Where the engine keeps its records: load them all at start, commit changes
/// atomically. [`Store`] (redb, on this host's disk) is the real one; the shape leaves room
/// for a store shared by several hosts (cluster-scope networks in etcd).
pub trait StateStore: Send {
    /// Every record.
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// Apply all of `changes` or none.
    fn commit(&self, changes: &[Change]) -> Result<(), StoreError>;
}

impl StateStore for Store {
    fn load(&self) -> Result<Snapshot, StoreError> {
        Store::load(self)
    }

    fn commit(&self, changes: &[Change]) -> Result<(), StoreError> {
        Store::commit(self, changes)
    }
}

/// The embedded database.
pub struct Store {
    db: Database,
}

impl Store {
    /// Open (or create) the database at `path`. redb holds an exclusive file lock, so a second
    /// reefd on the same data-root fails here instead of corrupting state.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            source: Box::new(e),
        })?;
        let txn = db.begin_write().map_err(|e| db_err("begin")(&e))?;
        txn.open_table(NETWORKS)
            .map_err(|e| db_err("open networks")(&e))?;
        txn.open_table(CONTAINERS)
            .map_err(|e| db_err("open containers")(&e))?;
        txn.commit().map_err(|e| db_err("commit")(&e))?;
        Ok(Store { db })
    }

    /// Read every record.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read().map_err(|e| db_err("begin read")(&e))?;
        let mut snap = Snapshot::default();
        let nets = txn
            .open_table(NETWORKS)
            .map_err(|e| db_err("open networks")(&e))?;
        for row in nets.iter().map_err(|e| db_err("read networks")(&e))? {
            let (k, v) = row.map_err(|e| db_err("read networks")(&e))?;
            let net = serde_json::from_slice(v.value()).map_err(|source| StoreError::Corrupt {
                kind: "network",
                key: k.value().to_string(),
                source,
            })?;
            snap.networks.push(net);
        }
        let ctrs = txn
            .open_table(CONTAINERS)
            .map_err(|e| db_err("open containers")(&e))?;
        for row in ctrs.iter().map_err(|e| db_err("read containers")(&e))? {
            let (k, v) = row.map_err(|e| db_err("read containers")(&e))?;
            let c = serde_json::from_slice(v.value()).map_err(|source| StoreError::Corrupt {
                kind: "container",
                key: k.value().to_string(),
                source,
            })?;
            snap.containers.push(c);
        }
        Ok(snap)
    }

    /// Apply all changes in one durable transaction.
    pub fn commit(&self, changes: &[Change]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| db_err("begin")(&e))?;
        {
            let mut nets = txn
                .open_table(NETWORKS)
                .map_err(|e| db_err("open networks")(&e))?;
            let mut ctrs = txn
                .open_table(CONTAINERS)
                .map_err(|e| db_err("open containers")(&e))?;
            for change in changes {
                match change {
                    Change::PutNetwork(n) => {
                        let v = serde_json::to_vec(n).expect("records serialise");
                        nets.insert(n.id.as_str(), v.as_slice())
                            .map_err(|e| db_err("write network")(&e))?;
                    }
                    Change::DeleteNetwork(id) => {
                        nets.remove(id.as_str())
                            .map_err(|e| db_err("delete network")(&e))?;
                    }
                    Change::PutContainer(c) => {
                        let v = serde_json::to_vec(c).expect("records serialise");
                        ctrs.insert(c.id.as_str(), v.as_slice())
                            .map_err(|e| db_err("write container")(&e))?;
                    }
                    Change::DeleteContainer(id) => {
                        ctrs.remove(id.as_str())
                            .map_err(|e| db_err("delete container")(&e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| db_err("commit")(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reef_core::model::{ContainerSpec, Status};

    fn container(id: &str) -> Container {
        Container {
            id: id.into(),
            name: format!("n{id}"),
            created: "2026-01-01T00:00:00Z".into(),
            spec: ContainerSpec::default(),
            status: Status::Created,
            pid: None,
            shim_pid: None,
            pid_start_time: None,
            exit_code: None,
            started_at: None,
            finished_at: None,
            sandbox: None,
            endpoints: vec![],
            start_count: 0,
            ports: vec![],
            firewall: Default::default(),
        }
    }

    #[test]
    fn commits_survive_reopen_and_deletes_stick() {
        let dir = std::env::temp_dir().join(format!("reef-store-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        {
            let s = Store::open(&path).unwrap();
            s.commit(&[
                Change::PutContainer(Box::new(container("a"))),
                Change::PutContainer(Box::new(container("b"))),
            ])
            .unwrap();
            s.commit(&[Change::DeleteContainer("a".into())]).unwrap();
        }
        let s = Store::open(&path).unwrap();
        let snap = s.load().unwrap();
        assert_eq!(snap.containers.len(), 1);
        assert_eq!(snap.containers[0].id, "b");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
