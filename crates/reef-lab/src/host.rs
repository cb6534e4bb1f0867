//! One simulated host: a network namespace with `ens33` on the lab's switch, a work dir,
//! and optionally a reefd.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::etcd::tail;
use crate::{sys, LabError, Run, GATEWAY_IP, HOST_NIC, LAN_PREFIX_LEN};

/// How long reefd may take to answer `reef version` after it is started.
const REEFD_START_TIMEOUT: Duration = Duration::from_secs(30);

/// One host of a lab (`<prefix>-h<i>`, `ens33` at 10.77.0.(10+i)/24).
///
/// Every method takes `&self` (the running reefd is kept behind a mutex), so a test can
/// hold several hosts at once and drive them from scoped threads.
#[derive(Debug)]
pub struct LabHost {
    index: usize,
    name: String,
    ns: String,
    ip: Ipv4Addr,
    mac: String,
    switch_ns: String,
    dir: PathBuf,
    /// `reef-lab-<prefix>/h<i>/`: what a container's `/etc/hosts` mount source contains.
    marker: String,
    bins: PathBuf,
    base_args: Vec<String>,
    vars: Vec<(String, String)>,
    new_process_group: bool,
    daemon: Mutex<Option<Child>>,
    background: Mutex<Vec<Child>>,
}

/// What [`LabHost::new`] needs from the lab.
pub(crate) struct HostSpec {
    pub(crate) index: usize,
    pub(crate) prefix: String,
    pub(crate) work: PathBuf,
    pub(crate) switch_ns: String,
    pub(crate) bins: PathBuf,
    pub(crate) base_args: Vec<String>,
    pub(crate) cluster_store: String,
    pub(crate) etcd_endpoints: String,
    pub(crate) new_process_group: bool,
}

impl LabHost {
    pub(crate) fn new(s: HostSpec) -> LabHost {
        let name = format!("h{}", s.index);
        let ns = format!("{}-{name}", s.prefix);
        let ip = crate::host_ip(s.index);
        let vars = vec![
            ("{ip}".to_string(), ip.to_string()),
            ("{nic}".to_string(), HOST_NIC.to_string()),
            ("{name}".to_string(), name.clone()),
            ("{ns}".to_string(), ns.clone()),
            ("{cluster_store}".to_string(), s.cluster_store),
            ("{etcd_endpoints}".to_string(), s.etcd_endpoints),
        ];
        LabHost {
            index: s.index,
            mac: format!("02:77:00:00:00:{:02x}", 10 + s.index),
            marker: format!(
                "{}{}/{name}/",
                sys::WORK_PREFIX,
                s.prefix // the work dir is WORK_PARENT/WORK_PREFIX<prefix>
            ),
            dir: s.work.join(&name),
            name,
            ns,
            ip,
            switch_ns: s.switch_ns,
            bins: s.bins,
            base_args: s.base_args,
            vars,
            new_process_group: s.new_process_group,
            daemon: Mutex::new(None),
            background: Mutex::new(Vec::new()),
        }
    }

    /// Create the namespace and plug `ens33` into the switch (also after a power cycle).
    pub(crate) fn power_on(&self) -> Result<(), LabError> {
        fs::create_dir_all(&self.dir).map_err(|e| LabError::io(self.dir.display(), e))?;
        sys::add_ns(&self.ns)?;
        sys::plug_into_switch(
            &self.switch_ns,
            &self.switch_port(),
            &self.ns,
            HOST_NIC,
            &self.mac,
            &format!("{}/{LAN_PREFIX_LEN}", self.ip),
            Some(GATEWAY_IP),
        )
    }

    /// Everything a power cut takes: reefd (SIGKILL), every process in the host's and its
    /// containers' namespaces, the containers' namespaces, the runtime dir (exec-root and
    /// socket: tmpfs on a real host), and the host namespace with all its links, routes,
    /// firewall and sysctls. The data root, daemon.json and the log stay.
    pub(crate) fn power_off(&self) -> Result<(), LabError> {
        self.kill9_reefd();
        for mut c in self.background().drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let left = sys::kill_until_gone(|| self.owned_pids(), Duration::from_secs(5));
        sys::umount_under(&self.dir);
        let _ = fs::remove_dir_all(self.exec_root());
        let _ = fs::remove_file(self.socket());
        // Deleting the switch's end deletes ens33 with it, synchronously, so the port name
        // is free again when the host comes back.
        let _ = sys::ip(&["-n", &self.switch_ns, "link", "del", &self.switch_port()]);
        sys::del_ns(&self.ns);
        if left.is_empty() {
            Ok(())
        } else {
            Err(LabError::State(format!(
                "{}: processes {left:?} did not die on SIGKILL",
                self.name
            )))
        }
    }

    /// 1-based index (`h1` is 1).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Host name, `h<i>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its namespace's name (under /run/netns).
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// `/run/netns/<ns>`.
    pub fn ns_path(&self) -> String {
        sys::ns_path(&self.ns)
    }

    /// Its address on `ens33`.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The host's NIC, `ens33`.
    pub fn nic(&self) -> &str {
        HOST_NIC
    }

    /// `ens33`'s MAC (fixed: it survives [`LabHost::reboot`]).
    pub fn mac(&self) -> &str {
        &self.mac
    }

    /// The switch port `ens33` is plugged into (`p-h<i>`, in the switch namespace).
    pub fn switch_port(&self) -> String {
        format!("p-{}", self.name)
    }

    /// Work dir: `data/`, `exec/`, `reef.sock`, `daemon.json`, `reefd.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// reefd's `--data-root` (survives a reboot).
    pub fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// reefd's `--exec-root` (wiped by a reboot, as /run is).
    pub fn exec_root(&self) -> PathBuf {
        self.dir.join("exec")
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("reef.sock")
    }

    /// `unix://<socket>`, the value of `reef -H` / `REEF_HOST`.
    pub fn reef_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// reefd's `--config-file` (written as `{}` on the first start unless it exists).
    pub fn daemon_json(&self) -> PathBuf {
        self.dir.join("daemon.json")
    }

    /// Replace daemon.json (takes effect at the next reefd start).
    pub fn write_daemon_json(&self, json: &str) {
        fs::write(self.daemon_json(), json)
            .unwrap_or_else(|e| panic!("write {}: {e}", self.daemon_json().display()));
    }

    /// Path of reefd's log (appended to by every start).
    pub fn reefd_log_path(&self) -> PathBuf {
        self.dir.join("reefd.log")
    }

    /// reefd's log so far.
    pub fn reefd_log(&self) -> String {
        fs::read_to_string(self.reefd_log_path()).unwrap_or_default()
    }

    /// The lab-wide reefd arguments, placeholders expanded.
    pub fn base_reefd_args(&self) -> Vec<String> {
        self.base_args.iter().map(|a| self.expand(a)).collect()
    }

    /// Replace `{ip}`, `{nic}`, `{name}`, `{ns}`, `{cluster_store}`, `{etcd_endpoints}`.
    pub fn expand(&self, arg: &str) -> String {
        self.vars
            .iter()
            .fold(arg.to_string(), |a, (k, v)| a.replace(k, v))
    }

    fn daemon(&self) -> MutexGuard<'_, Option<Child>> {
        self.daemon.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn background(&self) -> MutexGuard<'_, Vec<Child>> {
        self.background.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start reefd (lab-wide args, then `extra`) and wait until its API answers; panics
    /// with its log when it does not.
    pub fn start_reefd(&self, extra: &[&str]) {
        self.try_start_reefd(extra)
            .unwrap_or_else(|e| panic!("reefd on {} did not start: {e}", self.name));
    }

    /// [`LabHost::start_reefd`], returning the failure (with the log's tail).
    pub fn try_start_reefd(&self, extra: &[&str]) -> Result<(), LabError> {
        self.try_start_reefd_env(extra, &[])
    }

    /// [`LabHost::try_start_reefd`] with `env` added to reefd's environment.
    pub fn try_start_reefd_env(
        &self,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<(), LabError> {
        let mut daemon = self.daemon();
        if daemon
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
        {
            return Err(LabError::State(format!(
                "reefd is running on {} already",
                self.name
            )));
        }
        *daemon = None;
        for b in ["reefd", "reef"] {
            if !self.bins.join(b).is_file() {
                return Err(LabError::MissingBinary(self.bins.join(b)));
            }
        }
        if !Path::new(&self.ns_path()).exists() {
            return Err(LabError::State(format!("{} has no namespace", self.name)));
        }
        let log_path = self.reefd_log_path();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| LabError::io(log_path.display(), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| LabError::io("dup reefd log", e))?;
        if !self.daemon_json().exists() {
            fs::write(self.daemon_json(), "{}")
                .map_err(|e| LabError::io(self.daemon_json().display(), e))?;
        }
        let mut cmd = sys::in_ns(&self.ns, self.bins.join("reefd"));
        cmd.arg("--data-root")
            .arg(self.data_root())
            .arg("--exec-root")
            .arg(self.exec_root())
            .arg("-H")
            .arg(self.reef_host())
            .arg("--config-file")
            .arg(self.daemon_json())
            .args(self.base_reefd_args())
            .args(extra.iter().map(|a| self.expand(a)))
            .env("REEF_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if self.new_process_group {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let what = sys::describe(&cmd);
        let mut child = cmd.spawn().map_err(|e| LabError::io(what, e))?;
        let deadline = Instant::now() + REEFD_START_TIMEOUT;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Err(LabError::Exited {
                    what: format!("reefd on {} ({st})", self.name),
                    log: tail(&self.reefd_log(), 60),
                });
            }
            if self.reef(&["version"]).code == 0 {
                *daemon = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::Timeout {
                    what: format!("reefd on {} answering `reef version`", self.name),
                    detail: tail(&self.reefd_log(), 60),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the reefd this lab started runs.
    pub fn reefd_running(&self) -> bool {
        self.daemon()
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Pid of the running reefd.
    pub fn reefd_pid(&self) -> Option<u32> {
        let mut d = self.daemon();
        let c = d.as_mut()?;
        matches!(c.try_wait(), Ok(None)).then(|| c.id())
    }

    /// `kill -9` reefd (by its pid) and reap it. Its containers keep running.
    pub fn kill9_reefd(&self) {
        if let Some(mut c) = self.daemon().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM reefd and wait for it (SIGKILL after 10 s).
    pub fn stop_reefd(&self) {
        if let Some(mut c) = self.daemon().take() {
            sys::signal_child(&mut c, Signal::SIGTERM);
            sys::wait_or_kill(&mut c, Duration::from_secs(10));
        }
    }

    /// A power cycle: what is left is a fresh host with its old state dir. reefd is
    /// killed with SIGKILL, every process of the host and its containers is killed, every
    /// container namespace is unmounted (so gone), the exec-root and the socket are
    /// removed (they live on tmpfs on a real host), and the host namespace itself is
    /// deleted and made again: every link but `lo` and `ens33` is gone (VXLAN devices,
    /// bridges, veths), as are routes, firewall rules, sysctls and neighbours. `ens33`
    /// comes back with the same MAC, address and default route. reefd is not started:
    /// call [`LabHost::start_reefd`]. Panics if a process would not die.
    pub fn reboot(&self) {
        self.try_reboot()
            .unwrap_or_else(|e| panic!("reboot of {} failed: {e}", self.name));
    }

    /// [`LabHost::reboot`], returning the failure.
    pub fn try_reboot(&self) -> Result<(), LabError> {
        self.power_off()?;
        self.power_on()
    }

    /// Pull `ens33`'s cable (the switch port goes down; the host sees no carrier).
    pub fn unplug(&self) {
        sys::ip(&[
            "-n",
            &self.switch_ns,
            "link",
            "set",
            &self.switch_port(),
            "down",
        ])
        .unwrap_or_else(|e| panic!("unplug {}: {e}", self.name));
    }

    /// Plug `ens33`'s cable back in.
    pub fn plug(&self) {
        sys::ip(&[
            "-n",
            &self.switch_ns,
            "link",
            "set",
            &self.switch_port(),
            "up",
        ])
        .unwrap_or_else(|e| panic!("plug {}: {e}", self.name));
    }

    /// Run the real `reef -H unix://<socket> ARGS` inside the host namespace.
    pub fn reef(&self, args: &[&str]) -> Run {
        sys::run_lossy(self.reef_cmd(args), None)
    }

    /// [`LabHost::reef`] with bytes on stdin.
    pub fn reef_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        sys::run_lossy(self.reef_cmd(args), Some(stdin))
    }

    /// [`LabHost::reef`], killed (SIGKILL, code 137) after `limit`.
    pub fn reef_timeout(&self, args: &[&str], limit: Duration) -> Run {
        let mut cmd = sys::in_ns(&self.ns, "timeout");
        cmd.args(["-s", "KILL"])
            .arg(format!("{}", limit.as_secs_f64()))
            .arg(self.bins.join("reef"))
            .arg("-H")
            .arg(self.reef_host())
            .args(args);
        sys::run_lossy(cmd, None)
    }

    fn reef_cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = sys::in_ns(&self.ns, self.bins.join("reef"));
        cmd.arg("-H").arg(self.reef_host()).args(args);
        cmd
    }

    /// `reef ARGS`, which must succeed; returns trimmed stdout (panics with stderr).
    pub fn reef_ok(&self, args: &[&str]) -> String {
        self.reef(args)
            .ok(&format!("{}: reef {}", self.name, args.join(" ")))
    }

    /// `reef ARGS`, which must fail; returns stderr.
    pub fn reef_fails(&self, args: &[&str]) -> String {
        self.reef(args)
            .fails(&format!("{}: reef {}", self.name, args.join(" ")))
    }

    /// A field of `reef inspect -f TEMPLATE NAME`.
    pub fn inspect(&self, name: &str, template: &str) -> String {
        self.reef_ok(&["inspect", "-f", template, name])
    }

    /// `sh -c SCRIPT` inside the host namespace (the caller's mount namespace: container
    /// sandboxes under the exec-root are visible).
    pub fn sh(&self, script: &str) -> Run {
        sys::sh_in(&self.ns, script)
    }

    /// [`LabHost::sh`], which must succeed; returns trimmed stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        self.sh(script)
            .ok(&format!("{}: sh -c {script:?}", self.name))
    }

    /// True when one `ping -c1 -W1 ADDR` from the host is answered.
    pub fn ping(&self, addr: &str) -> bool {
        self.sh(&format!("ping -c1 -W1 {addr}")).code == 0
    }

    /// Start `sh -c SCRIPT` in the background in the host namespace (output discarded);
    /// it is killed by a reboot and by the lab's teardown.
    pub fn spawn(&self, script: &str) {
        let mut cmd = sys::in_ns(&self.ns, "sh");
        cmd.args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn on {}: {e}", self.name));
        self.background().push(child);
    }

    /// `sh -c SCRIPT` inside a container (through `reef exec`, as tests/integration does).
    pub fn in_ctr(&self, container: &str, script: &str) -> Run {
        self.reef(&["exec", container, "sh", "-c", script])
    }

    /// [`LabHost::in_ctr`], which must succeed; returns trimmed stdout.
    pub fn in_ctr_ok(&self, container: &str, script: &str) -> String {
        self.in_ctr(container, script)
            .ok(&format!("{}: in {container}: {script:?}", self.name))
    }

    /// The links in the host namespace (names, without `@peer`).
    pub fn links(&self) -> Vec<String> {
        sys::link_names(&self.ns)
    }

    /// The container namespaces bound under this host's work dir (its exec-root).
    pub fn container_netns(&self) -> Vec<PathBuf> {
        sys::mounts_under(&self.dir)
            .into_iter()
            .filter(|m| m.fstype == "nsfs")
            .map(|m| m.point)
            .collect()
    }

    /// Pids of the processes of this host: everything in its namespace (reefd, shims,
    /// host-network containers, [`LabHost::spawn`]ed commands), in its containers'
    /// namespaces, and containers still carrying `/etc/hosts` from its dir.
    pub fn owned_pids(&self) -> Vec<i32> {
        let mut ids: Vec<(u64, u64)> = sys::ns_id(&self.ns_path()).into_iter().collect();
        ids.extend(sys::ns_mounts_under(&self.dir));
        sys::pids_in(&ids, Some(&self.marker))
    }
}
