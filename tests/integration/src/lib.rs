//! Test kit for end-to-end tests: a private "host" network namespace per test, the real
//! `reefd` running inside it, the real `reef` talking to it, and a cleanup that removes
//! everything the test made even when the test panics.
//!
//! Nothing here touches the machine's root network namespace: reefd and every command run
//! under `nsenter --net=<the test's namespace>` (not `ip netns exec`, which would give reefd
//! a private mount namespace and hide its sandbox mounts from the test).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod invariants;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Directory holding the built `reefd` and `reef` (the test binary's `../`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..")
        .to_path_buf();
    for b in ["reefd", "reef"] {
        assert!(
            dir.join(b).exists(),
            "{} is missing: build the binaries first (cargo build --workspace --bins)",
            dir.join(b).display()
        );
    }
    dir
}

/// Fail loudly when the test cannot do real work here.
pub fn require_root_and_tools() {
    assert!(
        nix_geteuid() == 0,
        "the integration tests need root (network namespaces, netlink): run them as root"
    );
    for tool in ["ip", "nsenter", "ping"] {
        let found = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .any(|d| Path::new(d).join(tool).exists());
        assert!(
            found,
            "{tool} is not installed: run scripts/setup.sh (it installs what the tests use)"
        );
    }
}

fn nix_geteuid() -> u32 {
    // SAFETY-free: reading our own uid through /proc avoids a libc call.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|u| u.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

/// A command's outcome, with helpers for assertions.
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
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

/// One simulated host: a network namespace, a work directory, a reefd.
pub struct Host {
    /// Namespace name under /run/netns.
    pub ns: String,
    /// Work directory (data-root, exec-root, socket, logs).
    pub dir: PathBuf,
    daemon: Option<Child>,
    bins: PathBuf,
    extra_ns: Vec<String>,
    background: Vec<Child>,
    /// Start reefd with `ip netns exec` (which also gives it a /sys of its namespace)
    /// instead of `nsenter --net`.
    ip_netns_exec: bool,
}

/// The address the test host gets on its link to the "outside" namespace (TEST-NET-2:
/// nothing real answers there; the link exists only between the test's namespaces).
pub const HOST_UPLINK_IP: &str = "198.51.100.1";
/// The outside peer's address.
pub const OUTSIDE_IP: &str = "198.51.100.2";
/// A second address of the outside peer (for allow-list tests).
pub const OUTSIDE_IP2: &str = "198.51.100.3";

impl Host {
    /// A fresh host namespace with `lo` up. `tag` names the test in the namespace name.
    pub fn new(tag: &str) -> Host {
        require_root_and_tools();
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let short: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(8)
            .collect();
        let ns = format!("rt{}-{n}-{short}", std::process::id());
        let dir = PathBuf::from(format!("/tmp/reef-it-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir test dir");
        let st = Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .expect("ip netns add");
        assert!(st.success(), "ip netns add {ns} failed");
        let host = Host {
            ns,
            dir,
            daemon: None,
            bins: bin_dir(),
            extra_ns: Vec::new(),
            background: Vec::new(),
            ip_netns_exec: false,
        };
        host.sh("ip link set lo up").ok("lo up");
        host
    }

    /// An "outside" machine: a namespace wired to this host by a veth, with
    /// `HOST_UPLINK_IP` on the host side and `OUTSIDE_IP`/`OUTSIDE_IP2` outside. Returns the
    /// outside namespace's name (deleted with the host).
    pub fn add_outside(&mut self) -> String {
        let out = format!("{}-o", self.ns);
        let st = Command::new("ip")
            .args(["netns", "add", &out])
            .status()
            .expect("ip netns add");
        assert!(st.success(), "ip netns add {out}");
        self.extra_ns.push(out.clone());
        self.sh(&format!(
            "ip link add uplink0 type veth peer name eth0 netns {out} && \
             ip addr add {HOST_UPLINK_IP}/24 dev uplink0 && ip link set uplink0 up"
        ))
        .ok("uplink");
        outside_sh(
            &out,
            &format!(
                "ip link set lo up && ip addr add {OUTSIDE_IP}/24 dev eth0 && \
             ip addr add {OUTSIDE_IP2}/24 dev eth0 && ip link set eth0 up"
            ),
        )
        .ok("outside addresses");
        out
    }

    /// Start a background command (e.g. a server) in one of the test's namespaces; it is
    /// killed and reaped with the host.
    pub fn spawn(&mut self, ns_path: &str, script: &str) {
        let child = Command::new("nsenter")
            .arg(format!("--net={ns_path}"))
            .args(["sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn background command");
        self.background.push(child);
    }

    /// Path of the namespace file.
    pub fn ns_path(&self) -> String {
        format!("/run/netns/{}", self.ns)
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("reef.sock")
    }

    /// Start reefd with these extra flags and wait until its API answers.
    pub fn start_daemon(&mut self, args: &[&str]) {
        self.try_start_daemon(args, &[])
            .unwrap_or_else(|log| panic!("reefd did not start:\n{log}"));
    }

    /// Start reefd; on failure return its log. `env` is added to its environment.
    pub fn try_start_daemon(&mut self, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
        assert!(self.daemon.is_none(), "daemon already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("reefd.log"))
            .expect("open daemon log");
        let mut cmd = if self.ip_netns_exec {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &self.ns]);
            c
        } else {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", self.ns_path()));
            c
        };
        cmd.arg(self.bins.join("reefd"))
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .arg("--config-file")
            .arg(self.dir.join("daemon.json"))
            .args(args)
            .env("REEF_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if !self.dir.join("daemon.json").exists() {
            fs::write(self.dir.join("daemon.json"), "{}").expect("write daemon.json");
        }
        let mut child = cmd.spawn().expect("spawn reefd");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Err(self.daemon_log());
            }
            if self.reef(&["version"]).code == 0 {
                self.daemon = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out\n{}", self.daemon_log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start reefd as `ip netns exec NS reefd ...` would run it: in a mount namespace of
    /// its own whose /sys is the host namespace's sysfs.
    pub fn start_daemon_by_ip_netns_exec(&mut self, args: &[&str]) {
        self.ip_netns_exec = true;
        self.start_daemon(args);
    }

    /// Start reefd expecting it to refuse; returns its log.
    pub fn daemon_refuses(&mut self, args: &[&str]) -> String {
        match self.try_start_daemon(args, &[]) {
            Ok(()) => panic!("reefd started with {args:?} but should have refused"),
            Err(log) => log,
        }
    }

    /// reefd's log so far.
    pub fn daemon_log(&self) -> String {
        fs::read_to_string(self.dir.join("reefd.log")).unwrap_or_default()
    }

    /// `kill -9` reefd.
    pub fn kill9_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Pid of the running reefd (it is the process the kit spawned: `nsenter` execs it).
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// Run `reef` like [`Host::reef`], killed (SIGKILL, exit code 137) after `limit`, so a
    /// wedged daemon fails the command instead of hanging the test.
    pub fn reef_timeout(&self, args: &[&str], limit: Duration) -> Run {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ns_path()))
            .args(["timeout", "-s", "KILL"])
            .arg(format!("{}", limit.as_secs_f64()))
            .arg(self.bins.join("reef"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .args(args);
        run_with_stdin(cmd, None)
    }

    /// SIGTERM reefd and wait for it.
    pub fn stop_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Run the real `reef` against this host's daemon.
    pub fn reef(&self, args: &[&str]) -> Run {
        self.reef_stdin(args, None)
    }

    /// Run `reef` with bytes on stdin.
    pub fn reef_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Run {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ns_path()))
            .arg(self.bins.join("reef"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .args(args);
        run_with_stdin(cmd, stdin)
    }

    /// `reef ARGS`, which must succeed; returns trimmed stdout.
    pub fn reef_ok(&self, args: &[&str]) -> String {
        self.reef(args).ok(&format!("reef {}", args.join(" ")))
    }

    /// A shell command inside the host namespace.
    pub fn sh(&self, script: &str) -> Run {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ns_path()))
            .args(["sh", "-c", script]);
        run_with_stdin(cmd, None)
    }

    /// A shell command inside a container (through `reef exec`).
    pub fn in_ctr(&self, ctr: &str, script: &str) -> Run {
        self.reef(&["exec", ctr, "sh", "-c", script])
    }

    /// A field of `reef inspect`.
    pub fn inspect(&self, ctr: &str, tmpl: &str) -> String {
        self.reef_ok(&["inspect", "-f", tmpl, ctr])
    }

    /// Inode of this host's network namespace.
    fn ns_inode(&self) -> Option<u64> {
        fs::metadata(self.ns_path()).ok().map(|m| m.ino())
    }

    /// Every network namespace inode this test owns: the host and each sandbox.
    fn owned_ns_inodes(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.ns_inode().into_iter().collect();
        if let Ok(dir) = fs::read_dir(self.dir.join("exec/netns")) {
            for e in dir.flatten() {
                if let Ok(m) = fs::metadata(e.path()) {
                    if m.dev()
                        != fs::metadata(self.dir.join("exec/netns"))
                            .map(|d| d.dev())
                            .unwrap_or(0)
                    {
                        v.push(m.ino());
                    }
                }
            }
        }
        v
    }

    /// Pids of processes living in this test's namespaces (reefd, shims, containers).
    pub fn owned_pids(&self) -> Vec<i32> {
        let inodes = self.owned_ns_inodes();
        let dir_marker = format!("{}/", self.dir.display());
        let me = std::process::id() as i32;
        let mut pids = Vec::new();
        if let Ok(proc_dir) = fs::read_dir("/proc") {
            for e in proc_dir.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                if pid == me {
                    continue;
                }
                let in_our_ns = fs::metadata(format!("/proc/{pid}/ns/net"))
                    .is_ok_and(|m| inodes.contains(&m.ino()));
                // A container can outlive its sandbox mount (it joined another container's
                // namespace, which was then removed); its /etc mounts still name our dir.
                // Only an /etc/hosts mount whose source is our dir counts: the sandbox
                // directory itself is visible in every process's mount table.
                let mounts_our_files = fs::read_to_string(format!("/proc/{pid}/mountinfo"))
                    .is_ok_and(|m| {
                        m.lines().any(|l| {
                            let f: Vec<&str> = l.split(' ').collect();
                            f.len() > 4 && f[4] == "/etc/hosts" && f[3].starts_with(&dir_marker)
                        })
                    });
                if in_our_ns || mounts_our_files {
                    pids.push(pid);
                }
            }
        }
        pids
    }
}

fn pids_in_netns(ino: u64) -> Vec<i32> {
    let me = std::process::id() as i32;
    fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
                .filter(|p| *p != me)
                .filter(|p| fs::metadata(format!("/proc/{p}/ns/net")).is_ok_and(|m| m.ino() == ino))
                .collect()
        })
        .unwrap_or_default()
}

/// A shell command in another of the test's namespaces (e.g. the outside peer).
pub fn outside_sh(ns: &str, script: &str) -> Run {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{ns}"))
        .args(["sh", "-c", script]);
    run_with_stdin(cmd, None)
}

fn run_with_stdin(mut cmd: Command, stdin: Option<&[u8]>) -> Run {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn command");
    if let Some(bytes) = stdin {
        use std::io::Write;
        let mut w = child.stdin.take().expect("stdin");
        let _ = w.write_all(bytes);
    }
    Run::from(child.wait_with_output().expect("wait command"))
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill9_daemon();
        for mut c in self.background.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Everything in our namespaces was started by this test (reefd, shims, containers).
        for _ in 0..3 {
            let pids = self.owned_pids();
            if pids.is_empty() {
                break;
            }
            for p in pids {
                let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let netns_dir = self.dir.join("exec/netns");
        if let Ok(dir) = fs::read_dir(&netns_dir) {
            for e in dir.flatten() {
                let _ = Command::new("umount").arg("-l").arg(e.path()).status();
            }
        }
        // The sandbox directory is itself a bind mount (shared propagation).
        for _ in 0..2 {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&netns_dir)
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        for ns in &self.extra_ns {
            // Servers a test started outside live in that namespace only.
            if let Ok(m) = fs::metadata(format!("/run/netns/{ns}")) {
                for p in pids_in_netns(m.ino()) {
                    let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if std::env::var_os("REEF_KEEP_TEST_DIR").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Poll `f` until it returns true or `secs` pass.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    f()
}
