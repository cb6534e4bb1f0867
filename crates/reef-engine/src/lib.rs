//! The engine: one entry point per operation (create, start, stop, remove, ...).
//!
//! Each operation takes the single-writer lock, reads the in-memory copy of the state, asks
//! the core for decisions (IPAM, plans, rendered files), records its intent in the store,
//! applies the plan through the kernel executor (rolling back on failure), and records the
//! result. Nothing here parses flags or formats output; the API layer does that.

pub mod clock;
mod cluster;
mod dns;
mod files;
mod lifecycle;
mod networks;
mod nic;
mod proxy;
mod publish;
mod reaper;
mod reconcile;
mod repair;
mod user_networks;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use reef_core::config::DaemonConfig;
use reef_core::model::{Container, ContainerSpec, Network, NetworkMode, Status};
use reef_core::{etc, names};
use reef_kernel::Kernel;
use reef_runtime::{ShimCommand, SpareShim};
use reef_store::{Change, StateStore};
use tokio::sync::broadcast;

pub use files::Paths;
pub use nic::NicReport;
pub use publish::exposed;
pub use user_networks::NetworkCreate;

/// First argument that makes the reefd binary act as a container shim (reconcile knows
/// reef's shims by it).
pub const SHIM_ARG: &str = "__reef-shim";

/// Why an operation failed; the API maps each kind to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No such container or network.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (name in use, container running, ...).
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// Not allowed in this state (removing a network in use): Docker's 403.
    #[error("{0}")]
    Forbidden(String),
    /// A service the operation needs cannot be reached (the cluster store): 503.
    #[error("{0}")]
    Unavailable(String),
    /// Nothing to do (e.g. stopping a stopped container): Docker's 304.
    #[error("not modified")]
    NotModified,
    /// The kernel refused.
    #[error("{0}")]
    Kernel(#[from] reef_kernel::KernelError),
    /// The state database failed.
    #[error("{0}")]
    Store(#[from] reef_store::StoreError),
    /// The container process could not be started.
    #[error("{0}")]
    Runtime(#[from] reef_runtime::RuntimeError),
    /// A file operation failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// Cause.
        source: std::io::Error,
    },
}

impl From<reef_core::driver::CreateError> for EngineError {
    fn from(e: reef_core::driver::CreateError) -> Self {
        match e {
            reef_core::driver::CreateError::Invalid(m) => EngineError::Invalid(m),
            reef_core::driver::CreateError::Conflict(m) => EngineError::Conflict(m),
        }
    }
}

/// Result of engine operations.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

pub(crate) fn io_err(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> EngineError {
    let op = op.into();
    move |source| EngineError::Io { op, source }
}

/// Sent when a container's process has exited and its network is torn down.
#[derive(Debug, Clone)]
pub struct ExitEvent {
    /// Container id.
    pub id: String,
    /// Which start of the container this exit ends.
    pub start_count: u32,
    /// Exit code.
    pub exit_code: i32,
}

/// The state the lock guards.
pub(crate) struct Inner {
    pub store: Box<dyn StateStore>,
    pub exec: Box<dyn Kernel>,
    pub networks: BTreeMap<String, Network>,
    pub containers: BTreeMap<String, Container>,
}

/// Host facts a container's files are made from; read by the daemon, passed in.
pub trait HostFacts: Send + Sync {
    /// The host's /etc/resolv.conf text.
    fn resolv_conf(&self) -> String;
    /// The host's /etc/hosts text.
    fn hosts(&self) -> String;
    /// The host's hostname.
    fn hostname(&self) -> String;
    /// 32 random bytes for an id.
    fn random_id(&self) -> String;
    /// True when a process on the host holds `ip:port` (TCP: listens there).
    fn port_in_use(&self, proto: reef_core::ports::Proto, ip: std::net::IpAddr, port: u16) -> bool;
    /// `net.ipv4.ip_local_port_range`.
    fn ephemeral_range(&self) -> (u16, u16);
}

/// The engine.
pub struct Engine {
    pub(crate) cfg: DaemonConfig,
    pub(crate) paths: Paths,
    pub(crate) inner: Mutex<Inner>,
    pub(crate) exits: broadcast::Sender<ExitEvent>,
    /// Starts container processes: one shim is kept started ahead of time. `None` for an
    /// engine that manages networks only (a test's).
    pub(crate) shim: Option<Arc<SpareShim>>,
    pub(crate) host: Box<dyn HostFacts>,
    pub(crate) rt: tokio::runtime::Handle,
    /// Test hook: make the next plans fail after this many steps (REEF_FAIL_AFTER_STEP).
    pub(crate) fail_after_step: Option<usize>,
    /// Exit codes of `--rm` containers that removed themselves, newest last, so a client
    /// that waits right after the exit still learns the code.
    pub(crate) removed_exits: Mutex<std::collections::VecDeque<(String, i32)>>,
    /// Running containers that `rm -f` killed: their exit removes them (one commit, as
    /// `--rm` does) instead of recording `Exited` first. Memory only: after a crash such a
    /// container is reaped as `Exited`, as if the removal had not begun.
    pub(crate) remove_on_exit: Mutex<std::collections::HashSet<String>>,
    /// Deletes leftover host veths and removed containers' directories off the request path.
    pub(crate) reaper: reaper::Reaper,
    /// The embedded DNS server of user networks.
    pub(crate) dns: Arc<reef_dns::DnsServer>,
    /// Relays of published ports on IPv6 host addresses.
    pub(crate) proxies: proxy::Proxies,
    /// This host's place in a cluster (`--cluster-store`), once joined.
    pub(crate) cluster: OnceLock<cluster::ClusterLink>,
}

/// What `create` needs besides the spec.
pub struct CreateRequest {
    /// `--name`, or a generated one.
    pub name: Option<String>,
    /// The container's settings.
    pub spec: ContainerSpec,
}

impl Engine {
    /// Open the engine over an already-opened store and executor, set up the default
    /// networks and reconcile the kernel with the state.
    pub fn start(
        cfg: DaemonConfig,
        store: Box<dyn StateStore>,
        exec: Box<dyn Kernel>,
        shim: Option<ShimCommand>,
        host: Box<dyn HostFacts>,
        rt: tokio::runtime::Handle,
    ) -> Result<Arc<Engine>> {
        let mut exec = exec;
        let paths = Paths::new(&cfg);
        paths.prepare(exec.as_mut())?;
        let reaper = reaper::Reaper::start(exec.link_reaper()?)?;
        let snap = store.load()?;
        let inner = Inner {
            store,
            exec,
            networks: snap
                .networks
                .into_iter()
                .map(|n| (n.id.clone(), n))
                .collect(),
            containers: snap
                .containers
                .into_iter()
                .map(|c| (c.id.clone(), c))
                .collect(),
        };
        let fail_after_step = std::env::var("REEF_FAIL_AFTER_STEP")
            .ok()
            .and_then(|v| v.parse().ok());
        let engine = Arc::new(Engine {
            cfg,
            paths,
            inner: Mutex::new(inner),
            exits: broadcast::channel(1024).0,
            // Engine::start runs on a thread of the daemon's own network namespace, which the
            // spare shims' thread inherits (host-mode containers run in it).
            shim: shim
                .map(SpareShim::start)
                .transpose()
                .map_err(io_err("start the spare shim thread"))?,
            host,
            rt,
            fail_after_step,
            removed_exits: Mutex::default(),
            remove_on_exit: Mutex::default(),
            reaper,
            dns: reef_dns::DnsServer::new(),
            proxies: proxy::Proxies::default(),
            cluster: OnceLock::new(),
        });
        engine.setup_default_networks()?;
        engine.reconcile()?;
        engine.sync_firewall()?;
        engine.dns_listen_all();
        engine.watch_drift()?;
        Ok(engine)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock must not wedge the daemon: the state in memory is
        // re-derived from the store on restart anyway.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Exit notifications.
    pub fn subscribe(&self) -> broadcast::Receiver<ExitEvent> {
        self.exits.subscribe()
    }

    /// The daemon's configuration.
    pub fn config(&self) -> &DaemonConfig {
        &self.cfg
    }

    /// Create a container record (no kernel work yet).
    pub fn create(&self, req: CreateRequest) -> Result<String> {
        let mut inner = self.lock();
        let name = match req.name {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(&n).to_string();
                names::validate_container_name(&n)
                    .map_err(|e| EngineError::Invalid(e.to_string()))?;
                n
            }
            None => self.generate_name(&inner),
        };
        if let Some(other) = inner.containers.values().find(|c| c.name == name) {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{}\". \
                 You have to remove (or rename) that container to be able to reuse that name.",
                other.id
            )));
        }
        self.validate_spec(&inner, &req.spec)?;
        let id = self.host.random_id();
        let c = Container {
            id: id.clone(),
            name,
            created: crate::clock::rfc3339(crate::clock::now_nanos()),
            spec: req.spec,
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
        };
        inner
            .store
            .commit(&[Change::PutContainer(Box::new(c.clone()))])?;
        inner.containers.insert(id.clone(), c);
        Ok(id)
    }

    fn generate_name(&self, inner: &Inner) -> String {
        // Docker picks adjective_scientist; reef uses a short random word that is unique here.
        loop {
            let n = format!("reef_{}", &self.host.random_id()[..8]);
            if !inner.containers.values().any(|c| c.name == n) {
                return n;
            }
        }
    }

    /// Checks every field of a spec before anything is recorded, so bad input leaves no state.
    fn validate_spec(&self, inner: &Inner, spec: &ContainerSpec) -> Result<()> {
        let invalid = |m: String| Err(EngineError::Invalid(m));
        if spec.cmd.is_empty() || spec.cmd[0].is_empty() {
            return invalid("No command specified".into());
        }
        etc::validate_dns(&spec.dns).map_err(|e| EngineError::Invalid(e.to_string()))?;
        etc::validate_dns_search(&spec.dns_search)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        if let Some(mac) = &spec.mac {
            names::parse_mac(mac).map_err(|e| EngineError::Invalid(e.to_string()))?;
        }
        if let Some(h) = &spec.hostname {
            if h.is_empty() || h.len() > 63 || h.chars().any(|c| c.is_whitespace() || c == '/') {
                return invalid(format!("invalid hostname {h:?}"));
            }
        }
        let mode = spec.network_mode.clone().unwrap_or(NetworkMode::Bridge);
        match &mode {
            NetworkMode::Container(target) => {
                let conflicts = [
                    (spec.hostname.is_some(), "hostname"),
                    (!spec.dns.is_empty(), "dns"),
                    (!spec.dns_search.is_empty(), "dns-search"),
                    (!spec.dns_options.is_empty(), "dns-option"),
                    (!spec.extra_hosts.is_empty(), "add-host"),
                    (spec.mac.is_some(), "mac-address"),
                    (spec.ip.is_some(), "ip"),
                ];
                if let Some((_, what)) = conflicts.iter().find(|(set, _)| *set) {
                    return invalid(format!(
                        "conflicting options: {what} and the network mode container:{target}"
                    ));
                }
                let t = self.find_in(inner, target)?;
                if !t.is_running() {
                    return Err(EngineError::Conflict(format!(
                        "cannot join network of a non running container: {target}"
                    )));
                }
            }
            NetworkMode::Host | NetworkMode::None => {
                if spec.ip.is_some() || spec.mac.is_some() {
                    return invalid(format!(
                        "conflicting options: ip and mac-address need a bridge network, not --network {mode}"
                    ));
                }
            }
            NetworkMode::Bridge | NetworkMode::Named(_) => {
                let net = self.endpoint_network_for(inner, &mode)?;
                let publishes = !spec.publish.is_empty() || spec.publish_all;
                if let Some(why) = net
                    .driver
                    .endpoints()
                    .and_then(|d| d.refuses_ports(&net.name))
                    .filter(|_| publishes)
                {
                    return invalid(why);
                }
                if let Some(ip) = spec.ip {
                    let space = self.address_space(net)?;
                    space
                        .allocate(&self.allocated_on(inner, &net.id), Some(ip))
                        .map_err(|e| EngineError::Invalid(e.to_string()))?;
                }
            }
        }
        Ok(())
    }

    /// Find a container by full id, name, or unique id prefix.
    pub(crate) fn find_in<'a>(&self, inner: &'a Inner, key: &str) -> Result<&'a Container> {
        let key = key.strip_prefix('/').unwrap_or(key);
        if let Some(c) = inner.containers.get(key) {
            return Ok(c);
        }
        if let Some(c) = inner.containers.values().find(|c| c.name == key) {
            return Ok(c);
        }
        let mut by_prefix = inner
            .containers
            .values()
            .filter(|c| !key.is_empty() && c.id.starts_with(key));
        match (by_prefix.next(), by_prefix.next()) {
            (Some(c), None) => Ok(c),
            (Some(_), Some(_)) => Err(EngineError::NotFound(format!(
                "multiple containers match id prefix {key}"
            ))),
            _ => Err(EngineError::NotFound(format!("No such container: {key}"))),
        }
    }

    /// Resolve a container reference to its id.
    pub fn resolve(&self, key: &str) -> Result<String> {
        let inner = self.lock();
        Ok(self.find_in(&inner, key)?.id.clone())
    }

    /// A copy of a container and the networks it refers to.
    pub fn container(&self, key: &str) -> Result<(Container, BTreeMap<String, Network>)> {
        let inner = self.lock();
        let c = self.find_in(&inner, key)?.clone();
        Ok((c, inner.networks.clone()))
    }

    /// All containers (running only unless `all`).
    pub fn containers(&self, all: bool) -> Vec<Container> {
        let inner = self.lock();
        inner
            .containers
            .values()
            .filter(|c| all || c.is_running())
            .cloned()
            .collect()
    }

    /// The exit code of a `--rm` container that has removed itself.
    pub fn removed_exit_code(&self, id: &str) -> Option<i32> {
        let removed = self.removed_exits.lock().unwrap_or_else(|p| p.into_inner());
        removed.iter().rev().find(|(i, _)| i == id).map(|(_, c)| *c)
    }

    /// Where a container's files live.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Path of a container's runtime state directory (attach socket, exit record).
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.paths.state_dir(id)
    }
}
