//! etcd members: one namespace each on the lab's switch, Debian's `etcd` 3.4, data under
//! the lab's work dir.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::sys;
use crate::LabError;

/// The client port.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// The peer port.
pub const ETCD_PEER_PORT: u16 = 2380;

/// One etcd member of a lab (`<prefix>-e<i>`, 10.77.0.(100+i)).
#[derive(Debug)]
pub struct EtcdMember {
    index: usize,
    name: String,
    ns: String,
    ip: Ipv4Addr,
    dir: PathBuf,
    initial_cluster: String,
    token: String,
    new_process_group: bool,
    child: Mutex<Option<Child>>,
}

impl EtcdMember {
    pub(crate) fn new(
        index: usize,
        ns: String,
        ip: Ipv4Addr,
        dir: PathBuf,
        initial_cluster: String,
        token: String,
        new_process_group: bool,
    ) -> EtcdMember {
        EtcdMember {
            index,
            name: format!("e{index}"),
            ns,
            ip,
            dir,
            initial_cluster,
            token,
            new_process_group,
            child: Mutex::new(None),
        }
    }

    /// 1-based index (`e1` is 1).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Member name, `e<i>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its namespace's name (under /run/netns).
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// Its address on the switch.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// `http://<ip>:2379`.
    pub fn client_url(&self) -> String {
        format!("http://{}:{ETCD_CLIENT_PORT}", self.ip)
    }

    /// `http://<ip>:2380`.
    pub fn peer_url(&self) -> String {
        format!("http://{}:{ETCD_PEER_PORT}", self.ip)
    }

    /// Its data dir (kept across `stop`/`start`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Path of its log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Pid of the running etcd (the process the lab spawned: `nsenter` execs etcd).
    pub fn pid(&self) -> Option<u32> {
        let mut g = self.lock();
        running(&mut g).then(|| g.as_ref().map(Child::id)).flatten()
    }

    /// True while its process runs.
    pub fn running(&self) -> bool {
        running(&mut self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Launch etcd (`state`: `new` for the first start, `existing` for a restart).
    pub(crate) fn spawn(&self, state: &str) -> Result<(), LabError> {
        let mut g = self.lock();
        if running(&mut g) {
            return Err(LabError::State(format!(
                "etcd {} is running already",
                self.name
            )));
        }
        fs::create_dir_all(&self.dir).map_err(|e| LabError::io(self.dir.display(), e))?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| LabError::io(self.log_path().display(), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| LabError::io("dup etcd log", e))?;
        let client = self.client_url();
        let peer = self.peer_url();
        let mut cmd = sys::in_ns(&self.ns, "etcd");
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--listen-client-urls")
            .arg(format!("{client},http://127.0.0.1:{ETCD_CLIENT_PORT}"))
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-state")
            .arg(state)
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        clear_etcd_env(&mut cmd);
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        if self.new_process_group {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let what = sys::describe(&cmd);
        let child = cmd.spawn().map_err(|e| LabError::io(what, e))?;
        *g = Some(child);
        Ok(())
    }

    /// Signal etcd and wait for it (SIGKILL after `grace`). Nothing when it is not running.
    pub(crate) fn stop_with(&self, sig: Signal, grace: Duration) {
        if let Some(mut c) = self.lock().take() {
            sys::signal_child(&mut c, sig);
            sys::wait_or_kill(&mut c, grace);
        }
    }

    /// The reason it is not running, with the tail of its log (for errors).
    pub(crate) fn exited(&self) -> Option<LabError> {
        let mut g = self.lock();
        let c = g.as_mut()?;
        match c.try_wait() {
            Ok(Some(st)) => Some(LabError::Exited {
                what: format!("etcd {} ({st})", self.name),
                log: tail(&self.log(), 30),
            }),
            _ => None,
        }
    }
}

fn running(g: &mut Option<Child>) -> bool {
    g.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
}

/// Drop inherited `ETCD_*` / `ETCDCTL_*` variables (they would override the flags) and set
/// `ETCDCTL_API=3`.
pub(crate) fn clear_etcd_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("ETCD_") || k.starts_with("ETCDCTL_") {
            cmd.env_remove(&*k);
        }
    }
    cmd.env("ETCDCTL_API", "3");
}

/// `etcdctl` with short timeouts, run inside namespace `ns` against `endpoints`.
pub(crate) fn etcdctl(ns: &str, endpoints: &str, args: &[&str]) -> Command {
    let mut cmd = sys::in_ns(ns, "etcdctl");
    cmd.arg(format!("--endpoints={endpoints}"))
        .args(["--dial-timeout=1s", "--command-timeout=3s"])
        .args(args);
    clear_etcd_env(&mut cmd);
    cmd
}

/// The last `n` lines of `s`.
pub(crate) fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The member data dir layout under the lab's work dir.
pub(crate) fn member_dir(work: &Path, index: usize) -> PathBuf {
    work.join("etcd").join(format!("e{index}"))
}
