//! The cluster store: the state the hosts of an overlay share, kept in etcd.
//!
//! One [`ClusterStore`] per reefd. It holds a lease whose keys are this host's (its host
//! record, address blocks, `--ip` claims, endpoints) and renews it at a third of its TTL;
//! when the host dies the keys vanish from the store with the lease. A supervisor task
//! keeps a session with etcd: grant a lease, (re)publish everything this host holds, read
//! the whole state under `/reef/v1/` at one revision, then watch from the next, so no
//! event is missed. Each change to the mirrored [`ClusterView`] calls the engine's
//! callback. When etcd cannot be reached the session ends, the store is marked offline
//! (operations that need the cluster fail at once) and a new session is tried; the view
//! keeps its last state meanwhile, so running containers keep their tunnels.
//!
//! The key layout and every decision on the view are in `reef_core::cluster`; this crate
//! does the I/O only.

mod session;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use ipnet::Ipv4Net;
use reef_core::cluster::{
    address_range, network_prefix, BlockRecord, ClusterView, EndpointRecord, HostRecord, IpClaim,
    Key,
};
use reef_core::config::ClusterConfig;
use reef_core::model::Network;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// How long one request to etcd may take before the store counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a cluster operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// etcd cannot be reached (or did not answer in time).
    #[error("the cluster store is unreachable ({endpoints}): {reason}")]
    Unreachable {
        /// The configured endpoints.
        endpoints: String,
        /// The last error.
        reason: String,
    },
    /// Another host changed the same keys first; the caller decides again.
    #[error("{0}")]
    Conflict(String),
    /// The store refuses for a reason the user must act on.
    #[error("{0}")]
    Refused(String),
    /// The configuration cannot be used (TLS files, URLs).
    #[error("{0}")]
    Config(String),
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, ClusterError>;

/// What this host holds in the store, republished with every new lease.
#[derive(Debug, Default)]
struct Held {
    host: Option<HostRecord>,
    blocks: BTreeSet<(String, Ipv4Net)>,
    claims: BTreeMap<(String, Ipv4Addr), IpClaim>,
    endpoints: BTreeMap<(String, Ipv4Addr), EndpointRecord>,
    /// Set once the engine has said which endpoints it runs: until then a session must not
    /// delete this host's endpoints it finds in the store.
    endpoints_known: bool,
}

/// A change to publish, in the order the engine made them.
#[derive(Debug)]
enum Publish {
    /// Put a key of this host's, with its lease.
    Put(String, Vec<u8>),
    /// Delete a key.
    Delete(String),
    /// Republish everything held and drop this host's stale endpoints.
    Resync,
}

struct Shared {
    endpoints_text: String,
    client: Client,
    host_id: String,
    ttl_secs: u32,
    view: RwLock<ClusterView>,
    online: AtomicBool,
    last_error: Mutex<String>,
    lease: AtomicI64,
    held: Mutex<Held>,
    tx: mpsc::UnboundedSender<Publish>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Publish>>,
    on_change: Box<dyn Fn() + Send + Sync>,
}

/// This host's client of the cluster store.
#[derive(Clone)]
pub struct ClusterStore {
    shared: Arc<Shared>,
    rt: Handle,
}

impl std::fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStore")
            .field("endpoints", &self.shared.endpoints_text)
            .field("host", &self.shared.host_id)
            .finish()
    }
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        ClusterError::Config(format!(
            "--cluster-store-opt {what}={}: {e}",
            path.display()
        ))
    })
}

impl ClusterStore {
    /// Set up the client and start the session in the background; etcd need not be up
    /// (operations fail with [`ClusterError::Unreachable`] until it is). `on_change` is
    /// called after every change to the view, from the runtime.
    pub fn start(
        cfg: &ClusterConfig,
        host_id: String,
        rt: Handle,
        on_change: Box<dyn Fn() + Send + Sync>,
    ) -> Result<ClusterStore> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            // etcd refuses HTTP/2 pings more often than every 5 s (it closes the
            // connection); the lease renewal finds a dead etcd sooner (session.rs).
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        if let Some(tls) = &cfg.tls {
            let mut t = etcd_client::TlsOptions::new();
            if let Some(ca) = &tls.ca {
                t = t.ca_certificate(etcd_client::Certificate::from_pem(read_pem(
                    ca,
                    "kv.cacertfile",
                )?));
            }
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                t = t.identity(etcd_client::Identity::from_pem(
                    read_pem(cert, "kv.certfile")?,
                    read_pem(key, "kv.keyfile")?,
                ));
            }
            opts = opts.with_tls(t);
        }
        let endpoints = cfg.endpoints.clone();
        let client = rt
            .block_on(Client::connect(endpoints.clone(), Some(opts)))
            .map_err(|e| ClusterError::Config(format!("--cluster-store: {e}")))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            endpoints_text: endpoints.join(","),
            client,
            host_id,
            ttl_secs: cfg.ttl_secs,
            view: RwLock::new(ClusterView::default()),
            online: AtomicBool::new(false),
            last_error: Mutex::new("not connected yet".into()),
            lease: AtomicI64::new(0),
            held: Mutex::new(Held::default()),
            tx,
            rx: tokio::sync::Mutex::new(rx),
            on_change,
        });
        rt.spawn(session::supervise(shared.clone()));
        Ok(ClusterStore { shared, rt })
    }

    /// This host's id in the store.
    pub fn host_id(&self) -> &str {
        &self.shared.host_id
    }

    /// Whether a session with etcd is up.
    pub fn online(&self) -> bool {
        self.shared.online.load(Ordering::SeqCst)
    }

    /// Read the view.
    pub fn with_view<T>(&self, f: impl FnOnce(&ClusterView) -> T) -> T {
        f(&self.shared.view.read().expect("cluster view lock"))
    }

    /// A copy of the view.
    pub fn view(&self) -> ClusterView {
        self.with_view(Clone::clone)
    }

    /// Wait until a session is up (or `limit` passes); true if it is.
    pub fn wait_online(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while !self.online() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// [`ClusterError::Unreachable`] when no session is up.
    pub fn check_online(&self) -> Result<()> {
        if self.online() {
            Ok(())
        } else {
            Err(self.unreachable())
        }
    }

    fn unreachable(&self) -> ClusterError {
        ClusterError::Unreachable {
            endpoints: self.shared.endpoints_text.clone(),
            reason: self.shared.last_error.lock().expect("error lock").clone(),
        }
    }

    /// Run one request against etcd, failing at once when offline and after
    /// [`REQUEST_TIMEOUT`] when etcd does not answer.
    fn call<T, F>(&self, f: impl FnOnce(Client) -> F) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        if !self.online() {
            return Err(self.unreachable());
        }
        let client = self.shared.client.clone();
        let out = self
            .rt
            .block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, f(client)).await });
        match out {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                *self.shared.last_error.lock().expect("error lock") = e.to_string();
                Err(self.unreachable())
            }
            Err(_) => {
                *self.shared.last_error.lock().expect("error lock") =
                    format!("no answer within {REQUEST_TIMEOUT:?}");
                Err(self.unreachable())
            }
        }
    }

    /// Apply what this host wrote to its own view at once, so that the decision that
    /// follows sees it without waiting for the watch.
    fn apply_local(&self, key: &str, value: Option<&[u8]>) {
        let mut v = self.shared.view.write().expect("cluster view lock");
        let _ = v.apply(key, value);
    }

    /// Create a global network: its record and VNI, refused if the name or VNI was taken,
    /// or another network was created or removed since the view was read (then the view
    /// is refreshed and [`ClusterError::Conflict`] returned, for the caller to decide
    /// again).
    pub fn create_network(&self, net: &Network, vni: u32, seen_netver: i64) -> Result<()> {
        let key = Key::Network(net.name.clone()).text();
        let vni_key = Key::Vni(vni).text();
        let netver = Key::NetVer.text();
        let value = serde_json::to_vec(net).expect("a network serialises");
        let txn = Txn::new()
            .when(vec![
                Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                Compare::create_revision(vni_key.clone(), CompareOp::Equal, 0),
                Compare::mod_revision(netver.clone(), CompareOp::Equal, seen_netver),
            ])
            .and_then(vec![
                TxnOp::put(key.clone(), value.clone(), None),
                TxnOp::put(vni_key.clone(), net.id.clone(), None),
                TxnOp::put(netver, "", None),
            ]);
        let resp = self.call(|mut c| async move { c.txn(txn).await })?;
        if !resp.succeeded() {
            self.refresh_networks()?;
            return Err(ClusterError::Conflict(format!(
                "network {} changed on another host meanwhile",
                net.name
            )));
        }
        self.apply_local(&key, Some(&value));
        self.apply_local(&vni_key, Some(net.id.as_bytes()));
        self.set_netver(resp.header().map_or(0, |h| h.revision()));
        Ok(())
    }

    fn set_netver(&self, rev: i64) {
        self.shared.view.write().expect("cluster view lock").netver = rev;
    }

    /// Re-read the networks, VNIs and `netver` (after a lost race).
    fn refresh_networks(&self) -> Result<()> {
        let (nets, vnis, ver) = self.call(|mut c| async move {
            let n = c
                .get(
                    format!("{}networks/", reef_core::cluster::ROOT),
                    Some(GetOptions::new().with_prefix()),
                )
                .await?;
            let v = c
                .get(
                    format!("{}vnis/", reef_core::cluster::ROOT),
                    Some(GetOptions::new().with_prefix()),
                )
                .await?;
            let ver = c.get(Key::NetVer.text(), None).await?;
            Ok((n, v, ver))
        })?;
        let mut view = self.shared.view.write().expect("cluster view lock");
        view.networks.clear();
        view.vnis.clear();
        for kv in nets.kvs().iter().chain(vnis.kvs()) {
            let _ = view.apply(&String::from_utf8_lossy(kv.key()), Some(kv.value()));
        }
        view.netver = ver.kvs().first().map_or(0, |kv| kv.mod_revision());
        Ok(())
    }

    /// Remove a global network, refused while any host has an endpoint on it. Its blocks
    /// and claims go with it.
    pub fn remove_network(&self, net: &Network, vni: u32) -> Result<()> {
        let key = Key::Network(net.name.clone()).text();
        let eps = network_prefix("endpoints", &net.id);
        let eps_end = prefix_end(&eps);
        let txn = Txn::new()
            .when(vec![
                Compare::create_revision(key.clone(), CompareOp::Greater, 0),
                Compare::create_revision(eps.clone(), CompareOp::Less, 1).with_range(eps_end),
            ])
            .and_then(vec![
                TxnOp::delete(key.clone(), None),
                TxnOp::delete(Key::Vni(vni).text(), None),
                TxnOp::delete(
                    network_prefix("blocks", &net.id),
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                ),
                TxnOp::delete(
                    network_prefix("ips", &net.id),
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                ),
                TxnOp::put(Key::NetVer.text(), "", None),
            ]);
        let resp = self.call(|mut c| async move { c.txn(txn).await })?;
        if resp.succeeded() {
            self.apply_local(&key, None);
            self.apply_local(&Key::Vni(vni).text(), None);
            let mut held = self.shared.held.lock().expect("held lock");
            held.blocks.retain(|(n, _)| n != &net.id);
            held.claims.retain(|(n, _), _| n != &net.id);
            return Ok(());
        }
        let (exists, hosts) = self.call(|mut c| {
            let key = key.clone();
            let eps = eps.clone();
            async move {
                let n = c.get(key, None).await?;
                let e = c.get(eps, Some(GetOptions::new().with_prefix())).await?;
                Ok((n, e))
            }
        })?;
        if exists.kvs().is_empty() {
            return Ok(());
        }
        let mut on: BTreeSet<String> = BTreeSet::new();
        for kv in hosts.kvs() {
            if let Ok(e) = serde_json::from_slice::<EndpointRecord>(kv.value()) {
                on.insert(format!("{} on host {}", e.container_name, e.host));
            }
        }
        Err(ClusterError::Refused(format!(
            "error while removing network: network {} id {} has active endpoints ({})",
            net.name,
            net.id,
            on.into_iter().collect::<Vec<_>>().join(", ")
        )))
    }

    /// Take an address block for this host. Returns the addresses others claimed inside it
    /// with `--ip` before it was taken (to be skipped); [`ClusterError::Conflict`] when
    /// another host took it first.
    pub fn claim_block(&self, network_id: &str, block: Ipv4Net) -> Result<BTreeSet<Ipv4Addr>> {
        let key = Key::Block(network_id.into(), block).text();
        let value = serde_json::to_vec(&BlockRecord {
            host: self.shared.host_id.clone(),
        })
        .expect("a block serialises");
        let lease = self.shared.lease.load(Ordering::SeqCst);
        let (start, end) = address_range("ips", network_id, block);
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![
                TxnOp::put(
                    key.clone(),
                    value.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                ),
                TxnOp::get(start, Some(GetOptions::new().with_range(end))),
            ]);
        let resp = self.call(|mut c| async move { c.txn(txn).await })?;
        if !resp.succeeded() {
            return Err(ClusterError::Conflict(format!(
                "address block {block} was taken by another host"
            )));
        }
        self.apply_local(&key, Some(&value));
        self.shared
            .held
            .lock()
            .expect("held lock")
            .blocks
            .insert((network_id.into(), block));
        let mut claimed = BTreeSet::new();
        for r in resp.op_responses() {
            if let etcd_client::TxnOpResponse::Get(g) = r {
                for kv in g.kvs() {
                    if let Some(Key::IpClaim(_, ip)) =
                        Key::parse(&String::from_utf8_lossy(kv.key()))
                    {
                        claimed.insert(ip);
                    }
                }
            }
        }
        Ok(claimed)
    }

    /// Claim a requested address outside this host's blocks. `block` is the block it
    /// would lie in, which must stay free of any host (or be this host's).
    pub fn claim_ip(
        &self,
        network_id: &str,
        ip: Ipv4Addr,
        block: Ipv4Net,
        container_id: &str,
    ) -> Result<()> {
        let key = Key::IpClaim(network_id.into(), ip).text();
        let claim = IpClaim {
            host: self.shared.host_id.clone(),
            container_id: container_id.into(),
        };
        let value = serde_json::to_vec(&claim).expect("a claim serialises");
        let lease = self.shared.lease.load(Ordering::SeqCst);
        let txn = Txn::new()
            .when(vec![
                Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                Compare::create_revision(
                    Key::Endpoint(network_id.into(), ip).text(),
                    CompareOp::Equal,
                    0,
                ),
                Compare::create_revision(
                    Key::Block(network_id.into(), block).text(),
                    CompareOp::Equal,
                    0,
                ),
            ])
            .and_then(vec![TxnOp::put(
                key.clone(),
                value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let resp = self.call(|mut c| async move { c.txn(txn).await })?;
        if !resp.succeeded() {
            return Err(ClusterError::Refused(format!(
                "Address already in use: {ip} was taken on another host"
            )));
        }
        self.apply_local(&key, Some(&value));
        self.shared
            .held
            .lock()
            .expect("held lock")
            .claims
            .insert((network_id.into(), ip), claim);
        Ok(())
    }

    fn queue(&self, p: Publish) {
        // The receiver lives as long as the store's runtime; a send can only fail at exit.
        let _ = self.shared.tx.send(p);
    }

    /// Give up a `--ip` claim (its container left the network).
    pub fn release_ip(&self, network_id: &str, ip: Ipv4Addr) {
        let removed = self
            .shared
            .held
            .lock()
            .expect("held lock")
            .claims
            .remove(&(network_id.into(), ip));
        if removed.is_some() {
            let key = Key::IpClaim(network_id.into(), ip).text();
            self.apply_local(&key, None);
            self.queue(Publish::Delete(key));
        }
    }

    /// Publish an endpoint of this host (after its container started). It is sent in the
    /// background, in order with the other changes: a start does not wait for etcd.
    pub fn publish_endpoint(&self, rec: EndpointRecord) {
        let key = Key::Endpoint(rec.network_id.clone(), rec.ip).text();
        let value = serde_json::to_vec(&rec).expect("an endpoint serialises");
        self.shared
            .held
            .lock()
            .expect("held lock")
            .endpoints
            .insert((rec.network_id.clone(), rec.ip), rec);
        self.apply_local(&key, Some(&value));
        self.queue(Publish::Put(key, value));
    }

    /// Withdraw an endpoint of this host (its container stopped or left the network).
    pub fn withdraw_endpoint(&self, network_id: &str, ip: Ipv4Addr) {
        let removed = self
            .shared
            .held
            .lock()
            .expect("held lock")
            .endpoints
            .remove(&(network_id.into(), ip));
        if removed.is_some() {
            let key = Key::Endpoint(network_id.into(), ip).text();
            self.apply_local(&key, None);
            self.queue(Publish::Delete(key));
        }
    }

    /// Say which endpoints this host runs, all of them: what differs from what is held is
    /// published or withdrawn. The first call (at start-up, after reconcile) also lets the
    /// session delete this host's endpoints the store has but the host no longer runs.
    pub fn set_endpoints(&self, recs: Vec<EndpointRecord>) {
        let now: BTreeMap<(String, Ipv4Addr), EndpointRecord> = recs
            .into_iter()
            .map(|r| ((r.network_id.clone(), r.ip), r))
            .collect();
        let first = {
            let mut held = self.shared.held.lock().expect("held lock");
            let first = !held.endpoints_known;
            held.endpoints_known = true;
            first
        };
        self.converge_endpoints(now, |_| true);
        if first {
            self.queue(Publish::Resync);
        }
    }

    /// Say which endpoints one container has now (none when it stopped): what differs is
    /// published or withdrawn, and its `--ip` claims no endpoint uses are given up.
    pub fn sync_container(&self, container_id: &str, recs: Vec<EndpointRecord>) {
        let now: BTreeMap<(String, Ipv4Addr), EndpointRecord> = recs
            .into_iter()
            .map(|r| ((r.network_id.clone(), r.ip), r))
            .collect();
        let stale_claims: Vec<(String, Ipv4Addr)> = {
            let held = self.shared.held.lock().expect("held lock");
            held.claims
                .iter()
                .filter(|(k, c)| c.container_id == container_id && !now.contains_key(*k))
                .map(|(k, _)| k.clone())
                .collect()
        };
        self.converge_endpoints(now, |e| e.container_id == container_id);
        for (n, ip) in stale_claims {
            self.release_ip(&n, ip);
        }
    }

    /// Bring the held endpoints that `scope` selects to `now`.
    fn converge_endpoints(
        &self,
        now: BTreeMap<(String, Ipv4Addr), EndpointRecord>,
        scope: impl Fn(&EndpointRecord) -> bool,
    ) {
        let (gone, changed): (Vec<(String, Ipv4Addr)>, Vec<EndpointRecord>) = {
            let held = self.shared.held.lock().expect("held lock");
            let gone = held
                .endpoints
                .iter()
                .filter(|(k, e)| scope(e) && !now.contains_key(*k))
                .map(|(k, _)| k.clone())
                .collect();
            let changed = now
                .iter()
                .filter(|(k, e)| held.endpoints.get(*k) != Some(*e))
                .map(|(_, e)| e.clone())
                .collect();
            (gone, changed)
        };
        for (n, ip) in gone {
            self.withdraw_endpoint(&n, ip);
        }
        for e in changed {
            self.publish_endpoint(e);
        }
    }

    /// Register (or update) this host's record: its tunnel address and local subnets.
    /// Nothing is sent when it is unchanged.
    pub fn set_host(&self, rec: HostRecord) {
        {
            let mut held = self.shared.held.lock().expect("held lock");
            if held.host.as_ref() == Some(&rec) {
                return;
            }
            held.host = Some(rec.clone());
        }
        let key = Key::Host(rec.id.clone()).text();
        let value = serde_json::to_vec(&rec).expect("a host serialises");
        self.apply_local(&key, Some(&value));
        self.queue(Publish::Put(key, value));
    }
}

/// The end of the key range of everything under `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    // Prefixes here end in '/', never in 0xff.
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}
