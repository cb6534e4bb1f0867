//! reef-lab: the multi-host test bed.
//!
//! A lab is a small LAN made of network namespaces, nothing of it in the machine's root
//! network namespace:
//!
//! ```text
//!                         <prefix>-sw: bridge sw0 (the L2 switch)
//!        ┌──────────────┬──────────────┼──────────────┬──────────────┐
//!      p-gw           p-h1   ...     p-hN           p-e1   ...     p-eM
//!   <prefix>-gw    <prefix>-h1    <prefix>-hN    <prefix>-e1    <prefix>-eM
//!   eth0 10.77.0.1  ens33 .11      ens33 .(10+N)  eth0 .101      eth0 .(100+M)
//!   (ip_forward,    default via    default via    etcd 3.4       etcd 3.4
//!    no way out)    10.77.0.1      10.77.0.1      :2379 / :2380
//!                   reefd          reefd
//! ```
//!
//! * The gateway exists so that hosts have a default route; it has no route out of the
//!   lab (only 10.77.0.0/24 is connected to it).
//! * Hosts are numbered from **1** (`h1..hN`), as are etcd members (`e1..eM`):
//!   [`Lab::host`]`(1)` is `h1` at 10.77.0.11, [`Lab::etcd`]`(1)` is `e1` at 10.77.0.101.
//! * `<prefix>` is `rl<pid>x<seq>` (unique per lab); the work dir is
//!   `/tmp/reef-lab-<prefix>`, with `h<i>/{data,exec,reef.sock,daemon.json,reefd.log}` and
//!   `etcd/e<i>/{data,etcd.log}`.
//! * reefd runs as `nsenter --net=/run/netns/<prefix>-h<i> <bin>/reefd --data-root D
//!   --exec-root E -H unix://<dir>/reef.sock --config-file <dir>/daemon.json ARGS`, with
//!   `REEF_LOG=debug`, logging to `reefd.log` (as tests/integration's `Host` runs it).
//!   The lab-wide [`LabConfig::reefd_args`] come first, then the per-start extra ones; in
//!   both, `{ip}`, `{nic}`, `{name}`, `{ns}`, `{cluster_store}` (`etcd://10.77.0.101:2379,...`)
//!   and `{etcd_endpoints}` (`http://10.77.0.101:2379,...`) are replaced by the host's
//!   values ([`LabConfig::with_cluster`] adds `--cluster-store={cluster_store}
//!   --cluster-advertise={ip}`).
//! * etcd members run Debian's `etcd` with `--heartbeat-interval 50 --election-timeout
//!   500`, `--initial-cluster-token <prefix>`, inherited `ETCD_*` variables removed;
//!   [`Lab::up`] returns once `etcdctl endpoint health` passes for every member.
//!
//! Teardown ([`Lab::down`], or `Drop`, also when a test panics) kills by pid only what the
//! lab started and what lives in its namespaces (reefd, etcd, container processes),
//! unmounts the container namespaces under the work dir, deletes the lab's namespaces in
//! reverse order and removes the work dir (`REEF_LAB_KEEP=1` keeps it; the next lab's
//! sweep removes it once this process is gone). [`Lab::up`] first sweeps labs whose
//! process is dead (a test killed by Ctrl-C): namespaces `rl<pid>x<seq>-{sw,gw,h<n>,e<n>}`
//! and dirs `/tmp/reef-lab-rl<pid>x<seq>` whose `<pid>` is not alive; nothing else.
//!
//! ```no_run
//! use reef_lab::{Lab, LabConfig};
//!
//! let lab = Lab::up(LabConfig::new(2).with_cluster()).unwrap();
//! let (h1, h2) = (lab.host(1), lab.host(2));
//! assert!(h1.ping(&h2.ip().to_string()));
//! h1.reef_ok(&["network", "create", "-d", "overlay", "ov"]);
//! h1.reboot();
//! h1.start_reefd(&[]);
//! lab.stop_etcd(1);
//! lab.start_etcd(1);
//! // dropped: everything is gone
//! ```
//!
//! The binary: `cargo run -p reef-lab -- up 3 [--etcd M] [--no-reefd] [--cluster]
//! [--reefd-arg=ARG]...` prints how to reach each host and tears the lab down on
//! SIGINT/SIGTERM; `reef-lab sweep` removes labs left by dead processes.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

mod etcd;
mod host;
mod sys;

pub use etcd::{EtcdMember, ETCD_CLIENT_PORT, ETCD_PEER_PORT};
pub use host::LabHost;

/// The lab LAN, 10.77.0.0/24.
pub const LAN: &str = "10.77.0.0/24";
/// The LAN's prefix length.
pub const LAN_PREFIX_LEN: u8 = 24;
/// The gateway's address (every host's default route).
pub const GATEWAY_IP: &str = "10.77.0.1";
/// Each host's NIC.
pub const HOST_NIC: &str = "ens33";
/// Most hosts a lab can have (10.77.0.11 .. 10.77.0.99).
pub const MAX_HOSTS: usize = 89;
/// Most etcd members a lab can have (10.77.0.101 .. 10.77.0.109).
pub const MAX_ETCD_MEMBERS: usize = 9;

const ETCD_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

static SEQ: AtomicUsize = AtomicUsize::new(0);
static FIRST_SWEEP: Once = Once::new();

/// Address of host `i` (1-based): 10.77.0.(10+i).
pub fn host_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, (10 + i) as u8)
}

/// Address of etcd member `i` (1-based): 10.77.0.(100+i).
pub fn etcd_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, (100 + i) as u8)
}

/// What can go wrong bringing a lab up or driving it.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Namespaces need root.
    #[error("reef-lab needs root (network namespaces, mounts): run it as root")]
    NotRoot,
    /// A tool the lab runs is not installed.
    #[error("{0} is not installed (scripts/setup.sh installs what the lab uses)")]
    MissingTool(String),
    /// reefd or reef is not built.
    #[error("{} is missing: build the binaries first (cargo build -p reefd -p reef --bins), or set REEF_BIN_DIR", .0.display())]
    MissingBinary(PathBuf),
    /// The configuration asks for something the lab cannot do.
    #[error("invalid lab configuration: {0}")]
    Config(String),
    /// A command failed.
    #[error("`{cmd}` failed with {code}: {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its exit code (-1 when killed by a signal).
        code: i32,
        /// Its standard error.
        stderr: String,
    },
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Something did not happen in time.
    #[error("timed out waiting for {what}\n{detail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The last error, or the log's tail.
        detail: String,
    },
    /// A process the lab started exited while it was awaited.
    #[error("{what} exited; its log ends with:\n{log}")]
    Exited {
        /// Which process, and how it ended.
        what: String,
        /// The tail of its log.
        log: String,
    },
    /// The lab is not in a state where this can be done.
    #[error("{0}")]
    State(String),
    /// [`Lab::down`] found things left behind.
    #[error("teardown left behind: {}", .0.join(", "))]
    Leftovers(Vec<String>),
}

impl LabError {
    pub(crate) fn io(what: impl std::fmt::Display, source: std::io::Error) -> LabError {
        LabError::Io {
            what: what.to_string(),
            source,
        }
    }
}

/// A command's outcome, with helpers for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Exit code (-1 when killed by a signal, 127 when it could not be spawned).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// True when it exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panic unless it exited 0; returns trimmed stdout.
    pub fn ok(&self, what: &str) -> String {
        assert_eq!(
            self.code, 0,
            "{what} failed with {}:\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self.stdout.trim().to_string()
    }

    /// Panic unless it failed; returns stderr.
    pub fn fails(&self, what: &str) -> String {
        assert_ne!(
            self.code, 0,
            "{what} should have failed but succeeded:\nstdout: {}",
            self.stdout
        );
        self.stderr.clone()
    }
}

/// What a lab is made of.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Number of hosts (`h1..hN`), at most [`MAX_HOSTS`].
    pub hosts: usize,
    /// Number of etcd members (0, 1 or 3 usually), at most [`MAX_ETCD_MEMBERS`].
    pub etcd_members: usize,
    /// Start reefd on every host in [`Lab::up`] (else call [`LabHost::start_reefd`]).
    pub start_reefd: bool,
    /// Arguments every reefd of the lab gets (placeholders: see the crate docs).
    pub reefd_args: Vec<String>,
    /// Directory holding the built `reefd` and `reef` (see [`bin_dir`]).
    pub bin_dir: PathBuf,
    /// Start reefd and etcd in process groups of their own, so that a terminal's Ctrl-C
    /// reaches only the lab's process, which then tears down in order (the binary does
    /// this). Off by default: a test killed by Ctrl-C takes its daemons with it.
    pub new_process_groups: bool,
}

impl Default for LabConfig {
    /// 2 hosts, 1 etcd member, reefd started without extra arguments.
    fn default() -> LabConfig {
        LabConfig {
            hosts: 2,
            etcd_members: 1,
            start_reefd: true,
            reefd_args: Vec::new(),
            bin_dir: bin_dir(),
            new_process_groups: false,
        }
    }
}

impl LabConfig {
    /// `hosts` hosts, 1 etcd member, reefd started.
    pub fn new(hosts: usize) -> LabConfig {
        LabConfig {
            hosts,
            ..LabConfig::default()
        }
    }

    /// Set the number of etcd members.
    pub fn etcd(mut self, members: usize) -> LabConfig {
        self.etcd_members = members;
        self
    }

    /// Do not start reefd in [`Lab::up`].
    pub fn no_reefd(mut self) -> LabConfig {
        self.start_reefd = false;
        self
    }

    /// Add a lab-wide reefd argument.
    pub fn reefd_arg(mut self, arg: impl Into<String>) -> LabConfig {
        self.reefd_args.push(arg.into());
        self
    }

    /// Point every reefd at the lab's etcd: `--cluster-store={cluster_store}
    /// --cluster-advertise={ip}`.
    pub fn with_cluster(self) -> LabConfig {
        self.reefd_arg("--cluster-store={cluster_store}")
            .reefd_arg("--cluster-advertise={ip}")
    }

    fn validate(&self) -> Result<(), LabError> {
        if self.hosts > MAX_HOSTS {
            return Err(LabError::Config(format!(
                "{} hosts: at most {MAX_HOSTS}",
                self.hosts
            )));
        }
        if self.etcd_members > MAX_ETCD_MEMBERS {
            return Err(LabError::Config(format!(
                "{} etcd members: at most {MAX_ETCD_MEMBERS}",
                self.etcd_members
            )));
        }
        let uses_etcd = self
            .reefd_args
            .iter()
            .any(|a| a.contains("{cluster_store}") || a.contains("{etcd_endpoints}"));
        if uses_etcd && self.etcd_members == 0 {
            return Err(LabError::Config(
                "reefd arguments name the cluster store but the lab has no etcd member".into(),
            ));
        }
        Ok(())
    }
}

/// The directory holding the built `reefd` and `reef`: `$REEF_BIN_DIR` if set, else the
/// directory of the running executable or its parent (a test binary lives in
/// `target/<profile>/deps`, the binaries in `target/<profile>`), whichever holds `reefd`.
/// The binaries' presence is checked when reefd is started.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("REEF_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let here = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let up = here.parent().map(Path::to_path_buf);
    if here.join("reefd").is_file() {
        return here;
    }
    match up {
        Some(up) if up.join("reefd").is_file() || here.ends_with("deps") => up,
        _ => here,
    }
}

/// Remove labs left by processes that are gone; returns their prefixes. [`Lab::up`] does
/// this itself.
pub fn sweep_stale() -> Vec<String> {
    sweep(false)
}

fn sweep(own: bool) -> Vec<String> {
    let stale = sys::stale_prefixes(own);
    for p in &stale {
        sys::remove_lab(p);
    }
    stale.into_iter().collect()
}

fn require_root_and_tools(cfg: &LabConfig) -> Result<(), LabError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(LabError::NotRoot);
    }
    let mut tools = vec!["ip", "nsenter"];
    if cfg.etcd_members > 0 {
        tools.extend(["etcd", "etcdctl"]);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    for t in tools {
        if !path.split(':').any(|d| Path::new(d).join(t).is_file()) {
            return Err(LabError::MissingTool(t.to_string()));
        }
    }
    if cfg.start_reefd && cfg.hosts > 0 {
        for b in ["reefd", "reef"] {
            if !cfg.bin_dir.join(b).is_file() {
                return Err(LabError::MissingBinary(cfg.bin_dir.join(b)));
            }
        }
    }
    Ok(())
}

/// A running lab. Dropping it tears it down.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    dir: PathBuf,
    switch_ns: String,
    gw_ns: String,
    hosts: Vec<LabHost>,
    etcd: Vec<EtcdMember>,
    /// Namespaces made by this lab that are not hosts (switch, gateway, etcd), in order.
    created: Vec<String>,
    bins: PathBuf,
    torn_down: bool,
}

impl Lab {
    /// Sweep stale labs, build the topology, start etcd (waiting until it is healthy) and,
    /// if asked, reefd on every host (waiting until each answers). On error everything
    /// made so far is removed.
    pub fn up(cfg: LabConfig) -> Result<Lab, LabError> {
        cfg.validate()?;
        require_root_and_tools(&cfg)?;
        FIRST_SWEEP.call_once(|| {
            sweep(true);
        });
        sweep(false);

        let prefix = format!(
            "rl{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let dir = Path::new(sys::WORK_PARENT).join(format!("{}{prefix}", sys::WORK_PREFIX));
        if dir.exists() {
            return Err(LabError::State(format!("{} exists already", dir.display())));
        }
        fs::create_dir_all(&dir).map_err(|e| LabError::io(dir.display(), e))?;
        let etcd_endpoints = (1..=cfg.etcd_members)
            .map(|i| format!("http://{}:{ETCD_CLIENT_PORT}", etcd_ip(i)))
            .collect::<Vec<_>>()
            .join(",");
        let cluster_store = format!(
            "etcd://{}",
            (1..=cfg.etcd_members)
                .map(|i| format!("{}:{ETCD_CLIENT_PORT}", etcd_ip(i)))
                .collect::<Vec<_>>()
                .join(",")
        );
        let initial_cluster = (1..=cfg.etcd_members)
            .map(|i| format!("e{i}=http://{}:{ETCD_PEER_PORT}", etcd_ip(i)))
            .collect::<Vec<_>>()
            .join(",");
        let switch_ns = format!("{prefix}-sw");
        let gw_ns = format!("{prefix}-gw");
        let hosts = (1..=cfg.hosts)
            .map(|index| {
                LabHost::new(host::HostSpec {
                    index,
                    prefix: prefix.clone(),
                    work: dir.clone(),
                    switch_ns: switch_ns.clone(),
                    bins: cfg.bin_dir.clone(),
                    base_args: cfg.reefd_args.clone(),
                    cluster_store: cluster_store.clone(),
                    etcd_endpoints: etcd_endpoints.clone(),
                    new_process_group: cfg.new_process_groups,
                })
            })
            .collect();
        let etcd = (1..=cfg.etcd_members)
            .map(|i| {
                EtcdMember::new(
                    i,
                    format!("{prefix}-e{i}"),
                    etcd_ip(i),
                    etcd::member_dir(&dir, i),
                    initial_cluster.clone(),
                    prefix.clone(),
                    cfg.new_process_groups,
                )
            })
            .collect();
        // From here on, dropping `lab` removes whatever was made.
        let mut lab = Lab {
            prefix,
            dir,
            switch_ns,
            gw_ns,
            hosts,
            etcd,
            created: Vec::new(),
            bins: cfg.bin_dir.clone(),
            torn_down: false,
        };
        lab.build()?;
        if cfg.start_reefd {
            lab.start_all_reefd()?;
        }
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), LabError> {
        let sw = self.switch_ns.clone();
        self.add_ns(&sw)?;
        sys::ip(&["-n", &sw, "link", "add", "sw0", "type", "bridge"])?;
        sys::ip(&[
            "-n",
            &sw,
            "link",
            "set",
            "sw0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        sys::ip(&["-n", &sw, "link", "set", "sw0", "up"])?;

        let gw = self.gw_ns.clone();
        self.add_ns(&gw)?;
        sys::plug_into_switch(
            &sw,
            "p-gw",
            &gw,
            "eth0",
            "02:77:00:00:00:01",
            &format!("{GATEWAY_IP}/{LAN_PREFIX_LEN}"),
            None,
        )?;
        let r = sys::sh_in(&gw, "echo 1 > /proc/sys/net/ipv4/ip_forward");
        if !r.success() {
            return Err(LabError::Command {
                cmd: format!("ip_forward in {gw}"),
                code: r.code,
                stderr: r.stderr,
            });
        }

        for h in &self.hosts {
            h.power_on()?;
        }

        for i in 0..self.etcd.len() {
            let ns = self.etcd[i].ns().to_string();
            self.add_ns(&ns)?;
            let m = &self.etcd[i];
            sys::plug_into_switch(
                &sw,
                &format!("p-{}", m.name()),
                &ns,
                "eth0",
                &format!("02:77:00:00:01:{:02x}", m.index()),
                &format!("{}/{LAN_PREFIX_LEN}", m.ip()),
                None,
            )?;
        }
        for m in &self.etcd {
            m.spawn("new")?;
        }
        if !self.etcd.is_empty() {
            self.wait_etcd_healthy(ETCD_HEALTH_TIMEOUT)?;
        }
        Ok(())
    }

    fn add_ns(&mut self, ns: &str) -> Result<(), LabError> {
        sys::add_ns(ns)?;
        self.created.push(ns.to_string());
        Ok(())
    }

    fn start_all_reefd(&self) -> Result<(), LabError> {
        std::thread::scope(|s| {
            let started: Vec<_> = self
                .hosts
                .iter()
                .map(|h| s.spawn(move || h.try_start_reefd(&[])))
                .collect();
            started
                .into_iter()
                .map(|j| j.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect::<Result<Vec<()>, LabError>>()
        })
        .map(|_| ())
    }

    /// The lab's prefix, `rl<pid>x<seq>` (every namespace's name starts with it).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The work dir, `/tmp/reef-lab-<prefix>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `reefd` and `reef` are taken from.
    pub fn bin_dir(&self) -> &Path {
        &self.bins
    }

    /// The hosts, `h1` first.
    pub fn hosts(&self) -> &[LabHost] {
        &self.hosts
    }

    /// Host `i`, **1-based** (`host(1)` is `h1`). Panics when there is no such host.
    pub fn host(&self, i: usize) -> &LabHost {
        assert!(
            (1..=self.hosts.len()).contains(&i),
            "the lab has hosts 1..={}, not {i}",
            self.hosts.len()
        );
        &self.hosts[i - 1]
    }

    /// The switch namespace (bridge `sw0`, ports `p-gw`, `p-h<i>`, `p-e<i>`).
    pub fn switch_ns(&self) -> &str {
        &self.switch_ns
    }

    /// The gateway namespace (`eth0` at 10.77.0.1).
    pub fn gw_ns(&self) -> &str {
        &self.gw_ns
    }

    /// Every namespace of the lab: switch, gateway, hosts, etcd members.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v = vec![self.switch_ns.clone(), self.gw_ns.clone()];
        v.extend(self.hosts.iter().map(|h| h.ns().to_string()));
        v.extend(self.etcd.iter().map(|m| m.ns().to_string()));
        v
    }

    /// `sh -c SCRIPT` inside one of the lab's namespaces (panics for any other).
    pub fn sh(&self, ns: &str, script: &str) -> Run {
        assert!(
            self.namespaces().iter().any(|n| n == ns),
            "{ns} is not a namespace of lab {}",
            self.prefix
        );
        sys::sh_in(ns, script)
    }

    /// The etcd members, `e1` first.
    pub fn etcd_members(&self) -> &[EtcdMember] {
        &self.etcd
    }

    /// etcd member `i`, **1-based**. Panics when there is no such member.
    pub fn etcd(&self, i: usize) -> &EtcdMember {
        assert!(
            (1..=self.etcd.len()).contains(&i),
            "the lab has etcd members 1..={}, not {i}",
            self.etcd.len()
        );
        &self.etcd[i - 1]
    }

    /// `http://10.77.0.101:2379,...` (empty without members).
    pub fn etcd_endpoints(&self) -> String {
        self.etcd
            .iter()
            .map(EtcdMember::client_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// reefd's `--cluster-store` value: `etcd://10.77.0.101:2379,...`.
    pub fn cluster_store(&self) -> String {
        format!(
            "etcd://{}",
            self.etcd
                .iter()
                .map(|m| format!("{}:{ETCD_CLIENT_PORT}", m.ip()))
                .collect::<Vec<_>>()
                .join(",")
        )
    }

    /// `etcdctl ARGS` (API 3) against every member, run from the gateway namespace.
    pub fn etcdctl(&self, args: &[&str]) -> Run {
        sys::run_lossy(
            etcd::etcdctl(&self.gw_ns, &self.etcd_endpoints(), args),
            None,
        )
    }

    /// `etcdctl ARGS` against member `i` only.
    pub fn etcdctl_at(&self, i: usize, args: &[&str]) -> Run {
        let url = self.etcd(i).client_url();
        sys::run_lossy(etcd::etcdctl(&self.gw_ns, &url, args), None)
    }

    /// True when member `i` answers `etcdctl endpoint health` (it is part of a quorum).
    pub fn etcd_member_healthy(&self, i: usize) -> bool {
        self.etcdctl_at(i, &["endpoint", "health"]).success()
    }

    /// Wait until every running member is healthy (fails early when one exits).
    pub fn wait_etcd_healthy(&self, timeout: Duration) -> Result<(), LabError> {
        let running: Vec<usize> = self
            .etcd
            .iter()
            .filter(|m| m.running())
            .map(EtcdMember::index)
            .collect();
        let endpoints = running
            .iter()
            .map(|i| self.etcd(*i).client_url())
            .collect::<Vec<_>>()
            .join(",");
        if endpoints.is_empty() {
            return Err(LabError::State("no etcd member is running".into()));
        }
        self.poll(timeout, "etcd cluster health", || {
            for i in &running {
                if let Some(e) = self.etcd(*i).exited() {
                    return Err(e);
                }
            }
            let r = sys::run_lossy(
                etcd::etcdctl(&self.gw_ns, &endpoints, &["endpoint", "health"]),
                None,
            );
            if r.success() {
                Ok(())
            } else {
                Err(last_error(r))
            }
        })
    }

    /// Call `f` every 50 ms until it is `Ok`. `Err(State(msg))` means not yet (the last
    /// message is reported on timeout); any other error ends the wait.
    fn poll(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut() -> Result<(), LabError>,
    ) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match f() {
                Ok(()) => return Ok(()),
                Err(LabError::State(msg)) => msg,
                Err(e) => return Err(e),
            };
            if Instant::now() > deadline {
                return Err(LabError::Timeout {
                    what: what.to_string(),
                    detail: last,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The member that is the leader now, if any answers.
    pub fn etcd_leader(&self) -> Option<usize> {
        self.etcd.iter().filter(|m| m.running()).find_map(|m| {
            let r = self.etcdctl_at(m.index(), &["endpoint", "status", "-w", "json"]);
            let v: serde_json::Value = serde_json::from_str(&r.stdout).ok()?;
            let s = v.get(0)?.get("Status")?;
            let me = s.get("header")?.get("member_id")?.as_u64()?;
            (s.get("leader")?.as_u64()? == me).then(|| m.index())
        })
    }

    /// SIGTERM member `i` and wait for it (SIGKILL after 10 s). Its data dir stays.
    pub fn stop_etcd(&self, i: usize) {
        self.etcd(i)
            .stop_with(Signal::SIGTERM, Duration::from_secs(10));
    }

    /// `kill -9` member `i` (a crash) and reap it.
    pub fn kill9_etcd(&self, i: usize) {
        self.etcd(i)
            .stop_with(Signal::SIGKILL, Duration::from_secs(5));
    }

    /// Restart member `i` with its data dir (`--initial-cluster-state existing`); panics
    /// on failure. See [`Lab::try_start_etcd`].
    pub fn start_etcd(&self, i: usize) {
        self.try_start_etcd(i)
            .unwrap_or_else(|e| panic!("etcd e{i} did not start: {e}"));
    }

    /// Restart member `i` and wait until it answers; when the running members make a
    /// quorum, also until it is healthy (caught up with the leader).
    pub fn try_start_etcd(&self, i: usize) -> Result<(), LabError> {
        let m = self.etcd(i);
        m.spawn("existing")?;
        let what = format!("etcd {} answering", m.name());
        self.poll(ETCD_HEALTH_TIMEOUT, &what, || {
            if let Some(e) = m.exited() {
                return Err(e);
            }
            let r = self.etcdctl_at(i, &["endpoint", "status"]);
            if r.success() {
                Ok(())
            } else {
                Err(last_error(r))
            }
        })?;
        let running = self.etcd.iter().filter(|m| m.running()).count();
        if running * 2 > self.etcd.len() {
            let what = format!("etcd {} healthy", m.name());
            self.poll(ETCD_HEALTH_TIMEOUT, &what, || {
                if let Some(e) = m.exited() {
                    return Err(e);
                }
                let r = self.etcdctl_at(i, &["endpoint", "health"]);
                if r.success() {
                    Ok(())
                } else {
                    Err(last_error(r))
                }
            })?;
        }
        Ok(())
    }

    /// How to use the lab by hand: each host's namespace, address and CLI command, the
    /// etcd endpoints.
    pub fn describe(&self) -> String {
        let reef = self.bins.join("reef");
        let mut s = format!(
            "reef-lab {} (work dir {})\n  switch: {} (bridge sw0)   gateway: {} ({GATEWAY_IP})\n",
            self.prefix,
            self.dir.display(),
            self.switch_ns,
            self.gw_ns
        );
        for h in &self.hosts {
            let state = match h.reefd_pid() {
                Some(pid) => format!("reefd pid {pid}, log {}", h.reefd_log_path().display()),
                None => "reefd not running".to_string(),
            };
            s.push_str(&format!(
                "\n  {}: namespace {}, {} {}/{LAN_PREFIX_LEN}, {state}\n    \
                 ip netns exec {} {} -H {} ps\n    \
                 nsenter --net={} env REEF_HOST={} PATH={}:$PATH bash\n",
                h.name(),
                h.ns(),
                h.nic(),
                h.ip(),
                h.ns(),
                reef.display(),
                h.reef_host(),
                h.ns_path(),
                h.reef_host(),
                self.bins.display(),
            ));
        }
        if self.etcd.is_empty() {
            s.push_str("\n  etcd: none\n");
        } else {
            s.push_str(&format!(
                "\n  etcd endpoints: {}\n  cluster store:  {}\n",
                self.etcd_endpoints(),
                self.cluster_store()
            ));
            for m in &self.etcd {
                s.push_str(&format!(
                    "    {}: namespace {}, pid {}, log {}\n",
                    m.name(),
                    m.ns(),
                    m.pid().map_or("-".to_string(), |p| p.to_string()),
                    m.log_path().display()
                ));
            }
            s.push_str(&format!(
                "    ETCDCTL_API=3 ip netns exec {} etcdctl --endpoints={} get --prefix ''\n",
                self.gw_ns,
                self.etcd_endpoints()
            ));
        }
        s
    }

    /// Tear the lab down and check that nothing of it is left.
    pub fn down(mut self) -> Result<(), LabError> {
        self.teardown();
        let mut left: Vec<String> = sys::lab_namespaces(&self.prefix)
            .into_iter()
            .map(|n| format!("namespace {n}"))
            .collect();
        if self.dir.exists() && std::env::var_os("REEF_LAB_KEEP").is_none() {
            left.push(format!("dir {}", self.dir.display()));
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(LabError::Leftovers(left))
        }
    }

    fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        if std::thread::panicking() {
            for h in &self.hosts {
                let log = h.reefd_log();
                if !log.is_empty() {
                    eprintln!(
                        "---- reef-lab {}: {} reefd.log (last 40 lines) ----\n{}",
                        self.prefix,
                        h.name(),
                        etcd::tail(&log, 40)
                    );
                }
            }
        }
        // Hosts first (reefd would otherwise churn on etcd's loss), newest first.
        for h in self.hosts.iter().rev() {
            let _ = h.power_off();
        }
        for m in self.etcd.iter().rev() {
            m.stop_with(Signal::SIGKILL, Duration::from_secs(5));
        }
        // Anything else living in the lab's namespaces was started in them by the lab or
        // its user (the gateway and the switch run nothing of their own).
        let ids: Vec<(u64, u64)> = self
            .created
            .iter()
            .filter_map(|n| sys::ns_id(&sys::ns_path(n)))
            .collect();
        sys::kill_until_gone(|| sys::pids_in(&ids, None), Duration::from_secs(5));
        for ns in self.created.iter().rev() {
            sys::del_ns(ns);
        }
        if std::env::var_os("REEF_LAB_KEEP").is_some() {
            sys::umount_under(&self.dir);
            eprintln!("reef-lab {}: kept {}", self.prefix, self.dir.display());
        } else {
            sys::remove_dir(&self.dir);
        }
    }
}

fn last_error(r: Run) -> LabError {
    LabError::State(format!("{}{}", r.stdout.trim(), r.stderr.trim()))
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}
