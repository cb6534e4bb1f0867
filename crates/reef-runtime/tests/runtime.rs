//! Real containers, as root, each test inside a network namespace of its own (never the
//! machine's): launch, output, /etc files, namespaces, attach, tty, signals, cleanup.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{geteuid, Pid};
use reef_runtime::frames::{self, STDERR, STDOUT};
use reef_runtime::{
    attach_socket, connect_attach, launch, pid_start_time, process_alive, read_exit, read_shim_pid,
    signal, wait_shim, EtcFiles, ExitRecord, LaunchSpec, Launched, RuntimeError, ShimCommand,
    StartErrorKind, DEFAULT_PATH,
};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn shim() -> ShimCommand {
    ShimCommand {
        program: PathBuf::from(env!("CARGO_BIN_EXE_reef-shim")),
        args: vec![],
    }
}

/// A private network namespace (bind-mounted under /tmp/rr-<pid>-<n>/netns) plus the files
/// of a test; Drop kills what the test started, unmounts and deletes, even on panic.
struct Sandbox {
    dir: PathBuf,
    netns: PathBuf,
    netns_mounted: bool,
    /// (launched, shim start time)
    started: Mutex<Vec<(Launched, u64)>>,
}

impl Sandbox {
    fn new() -> Sandbox {
        assert!(
            geteuid().is_root(),
            "reef-runtime tests need root: they create namespaces and mounts"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!("/tmp/rr-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut sb = Sandbox {
            netns: dir.join("netns"),
            dir,
            netns_mounted: false,
            started: Mutex::new(Vec::new()),
        };
        File::create(&sb.netns).unwrap();
        let target = sb.netns.clone();
        // unshare on a helper thread only: the process's own namespace is never touched.
        thread::spawn(move || -> nix::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        })
        .join()
        .unwrap()
        .expect("creating the test's network namespace");
        sb.netns_mounted = true;
        fs::write(sb.dir.join("hosts"), "127.0.0.1\tlocalhost\n10.9.8.7\tc1\n").unwrap();
        fs::write(sb.dir.join("hostname"), "c1\n").unwrap();
        fs::write(sb.dir.join("resolv.conf"), "nameserver 10.9.8.1\n").unwrap();
        sb
    }

    fn netns_inode(&self) -> u64 {
        fs::metadata(&self.netns).unwrap().ino()
    }

    fn spec(&self, name: &str, argv: &[&str]) -> LaunchSpec {
        LaunchSpec {
            id: format!("{:064x}", COUNTER.fetch_add(1, Ordering::SeqCst)),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec!["FOO=bar".into()],
            netns: Some(self.netns.clone()),
            hostname: "c1".into(),
            etc_files: Some(EtcFiles {
                hosts: self.dir.join("hosts"),
                hostname: self.dir.join("hostname"),
                resolv_conf: self.dir.join("resolv.conf"),
            }),
            tty: false,
            open_stdin: false,
            wait_for_attach: false,
            state_dir: self.dir.join(format!("state-{name}")),
            log_path: self.dir.join(format!("{name}.log")),
        }
    }

    fn track(&self, l: Launched) -> Launched {
        // The shim is our child and not reaped yet, so this is its start time.
        let start = pid_start_time(l.shim_pid).expect("shim start time");
        self.started.lock().unwrap().push((l, start));
        l
    }

    fn launch(&self, spec: &LaunchSpec) -> Result<Launched, RuntimeError> {
        launch(spec, &shim()).map(|l| self.track(l))
    }

    /// Wait (at most 20 s) for the shim to exit; return the exit record.
    fn wait(&self, l: &Launched, spec: &LaunchSpec) -> ExitRecord {
        block_on(async {
            tokio::time::timeout(Duration::from_secs(20), wait_shim(l.shim_pid))
                .await
                .expect("shim did not exit in time")
                .unwrap()
        });
        read_exit(&spec.state_dir).expect("exit record")
    }

    /// Clean up now and check that nothing is left.
    fn finish(self) {
        let dir = self.dir.clone();
        let started: Vec<_> = self.started.lock().unwrap().clone();
        drop(self);
        assert!(!dir.exists(), "{} left behind", dir.display());
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        // Mount points are field 5 of mountinfo; match the directory with its slash so that
        // rr-P-1 does not match rr-P-12.
        let prefix = format!("{}/", dir.display());
        assert!(
            !mountinfo
                .lines()
                .any(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&prefix))),
            "mount left behind under {prefix}"
        );
        for (l, shim_start) in started {
            assert!(!process_alive(l.pid, l.pid_start_time), "container left");
            assert!(pid_start_time(l.shim_pid) != Some(shim_start), "shim left");
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let started = std::mem::take(&mut *self.started.lock().unwrap());
        for (l, _) in &started {
            if process_alive(l.pid, l.pid_start_time) {
                let _ = kill(Pid::from_raw(l.pid), Signal::SIGKILL);
            }
        }
        for (l, shim_start) in &started {
            // Only while the pid is still our (possibly zombie) shim: never a reused pid.
            if pid_start_time(l.shim_pid) == Some(*shim_start) {
                let _ = kill(Pid::from_raw(l.shim_pid), Signal::SIGKILL);
                let _ = waitpid(Pid::from_raw(l.shim_pid), None);
            }
        }
        if self.netns_mounted {
            if let Err(e) = umount2(&self.netns, MntFlags::MNT_DETACH) {
                eprintln!("umount {}: {e}", self.netns.display());
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("remove {}: {e}", self.dir.display());
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn run_to_exit(sb: &Sandbox, spec: &LaunchSpec) -> (ExitRecord, Vec<u8>, Vec<u8>) {
    let l = sb.launch(spec).unwrap();
    let rec = sb.wait(&l, spec);
    let log = fs::read(&spec.log_path).unwrap();
    let (_, used) = frames::decode(&log);
    assert_eq!(used, log.len(), "log is whole frames");
    (
        rec,
        frames::collect_stream(&log, STDOUT),
        frames::collect_stream(&log, STDERR),
    )
}

fn attach(spec: &LaunchSpec) -> UnixStream {
    let s = connect_attach(&spec.state_dir).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

fn read_to_eof(mut s: &UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("reading the attach stream");
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ns_link(pid: i32, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn output_goes_to_log_frames_and_exit_code_is_recorded() {
    let sb = Sandbox::new();
    let spec = sb.spec("a", &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let l = sb.launch(&spec).unwrap();
    assert_eq!(read_shim_pid(&spec.state_dir), Some(l.shim_pid));
    let rec = sb.wait(&l, &spec);
    assert_eq!(rec.exit_code, 3);
    assert!(rec.finished_unix_nanos > 1_600_000_000_000_000_000);
    let log = fs::read(&spec.log_path).unwrap();
    assert_eq!(frames::collect_stream(&log, STDOUT), b"out\n");
    assert_eq!(frames::collect_stream(&log, STDERR), b"err\n");
    assert!(!attach_socket(&spec.state_dir).exists());
    assert!(!process_alive(l.pid, l.pid_start_time));

    // The log is append-only: a second run adds to it; a stale exit record is replaced.
    let (rec, out, _) = run_to_exit(&sb, &spec);
    assert_eq!(rec.exit_code, 3);
    assert_eq!(out, b"out\nout\n");
    sb.finish();
}

#[test]
fn hostname_etc_files_and_env_inside_host_untouched() {
    let host_files: Vec<_> = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();
    let host_name = nix::unistd::gethostname().unwrap();
    let sb = Sandbox::new();
    let script = "hostname; cat /etc/hostname /etc/hosts /etc/resolv.conf; \
                  readlink /proc/self/ns/net; echo \"H=$HOSTNAME P=$PATH F=$FOO T=${TERM-unset}\"; pwd; \
                  echo changed > /etc/hostname";
    let mut spec = sb.spec("a", &["sh", "-c", script]);
    spec.hostname = "box-1".into();
    let (rec, out, err) = run_to_exit(&sb, &spec);
    assert_eq!(text(&err), "");
    assert_eq!(rec.exit_code, 0);
    let expected = format!(
        "box-1\nc1\n127.0.0.1\tlocalhost\n10.9.8.7\tc1\nnameserver 10.9.8.1\nnet:[{}]\n\
         H=box-1 P={DEFAULT_PATH} F=bar T=unset\n/\n",
        sb.netns_inode()
    );
    assert_eq!(text(&out), expected);
    // The files are mounted read-write: the container's write went to our file.
    assert_eq!(
        fs::read_to_string(sb.dir.join("hostname")).unwrap(),
        "changed\n"
    );
    sb.finish();

    let after: Vec<_> = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();
    assert_eq!(after, host_files, "host /etc files changed");
    assert_eq!(nix::unistd::gethostname().unwrap(), host_name);
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(" /etc/hostname "), "{mountinfo}");
}

#[test]
fn container_is_in_its_namespaces_and_sigkill_gives_137() {
    let sb = Sandbox::new();
    let spec = sb.spec("a", &["sleep", "1000"]);
    let l = sb.launch(&spec).unwrap();
    assert!(process_alive(l.pid, l.pid_start_time));
    assert!(!process_alive(l.pid, l.pid_start_time + 1));
    assert_eq!(ns_link(l.pid, "net"), format!("net:[{}]", sb.netns_inode()));
    let me = std::process::id() as i32;
    assert_ne!(ns_link(l.pid, "uts"), ns_link(me, "uts"));
    assert_ne!(ns_link(l.pid, "mnt"), ns_link(me, "mnt"));
    // The shim stays in our namespaces, in a session of its own.
    assert_eq!(ns_link(l.shim_pid, "mnt"), ns_link(me, "mnt"));
    assert_eq!(
        nix::unistd::getsid(Some(Pid::from_raw(l.shim_pid)))
            .unwrap()
            .as_raw(),
        l.shim_pid
    );
    assert_eq!(
        nix::unistd::getsid(Some(Pid::from_raw(l.pid)))
            .unwrap()
            .as_raw(),
        l.pid
    );
    // Exec'd already: /proc/PID/exe is sleep, not the shim.
    let exe = fs::read_link(format!("/proc/{}/exe", l.pid)).unwrap();
    assert!(exe.to_string_lossy().contains("sleep"), "{exe:?}");

    signal(l.pid, Signal::SIGKILL).unwrap();
    assert_eq!(sb.wait(&l, &spec).exit_code, 137);
    assert!(
        matches!(
            signal(l.pid, Signal::SIGKILL),
            Err(RuntimeError::NoSuchProcess(_))
        ) || pid_start_time(l.pid) != Some(l.pid_start_time)
    );

    let spec = sb.spec("b", &["sleep", "1000"]);
    let l = sb.launch(&spec).unwrap();
    signal(l.pid, Signal::SIGTERM).unwrap();
    assert_eq!(sb.wait(&l, &spec).exit_code, 143);
    sb.finish();
}

#[test]
fn start_errors_use_docker_wording() {
    let sb = Sandbox::new();
    let spec = sb.spec("a", &["nosuchcmd", "x"]);
    match sb.launch(&spec) {
        Err(
            e @ RuntimeError::Start {
                kind: StartErrorKind::NotFound,
                ..
            },
        ) => {
            assert_eq!(
                e.to_string(),
                r#"exec: "nosuchcmd": executable file not found in $PATH"#
            );
            assert_eq!(e.docker_exit_code(), 127);
        }
        other => panic!("{other:?}"),
    }
    // Nothing of the failed start is left in the state directory.
    assert!(!attach_socket(&spec.state_dir).exists());
    assert_eq!(read_shim_pid(&spec.state_dir), None);
    assert_eq!(read_exit(&spec.state_dir), None);

    // PATH comes from the container's env.
    let mut spec = sb.spec("b", &["sh", "-c", "true"]);
    spec.env = vec!["PATH=/nonexistent".into()];
    let e = sb.launch(&spec).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"exec: "sh": executable file not found in $PATH"#
    );

    let e = sb.launch(&sb.spec("c", &["/no/such/prog"])).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"exec: "/no/such/prog": stat /no/such/prog: no such file or directory"#
    );
    assert_eq!(e.docker_exit_code(), 127);
    let e = sb.launch(&sb.spec("d", &["/etc/hosts"])).unwrap_err();
    assert_eq!(e.to_string(), r#"exec: "/etc/hosts": permission denied"#);
    assert_eq!(e.docker_exit_code(), 126);

    // Executable bit but not a program: execve fails, reported by launch.
    let bad = sb.dir.join("bad");
    fs::write(&bad, b"\x01\x02\x03garbage").unwrap();
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o755)).unwrap();
    let e = sb
        .launch(&sb.spec("e", &[bad.to_str().unwrap()]))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("exec {}: exec format error", bad.display())
    );
    assert_eq!(e.docker_exit_code(), 126);

    let mut spec = sb.spec("f", &["true"]);
    spec.netns = Some(sb.dir.join("no-such-netns"));
    let e = sb.launch(&spec).unwrap_err();
    assert!(
        e.to_string().starts_with("open network namespace ") && e.docker_exit_code() == 125,
        "{e}"
    );
    let mut spec = sb.spec("g", &["true"]);
    spec.hostname = "x".repeat(100);
    let e = sb.launch(&spec).unwrap_err();
    assert!(e.to_string().starts_with("set hostname "), "{e}");
    let mut spec = sb.spec("h", &["true"]);
    spec.etc_files.as_mut().unwrap().hosts = sb.dir.join("missing");
    let e = sb.launch(&spec).unwrap_err();
    assert!(e.to_string().starts_with("bind-mount "), "{e}");

    let mut spec = sb.spec("i", &["true"]);
    spec.argv.clear();
    assert!(matches!(
        sb.launch(&spec),
        Err(RuntimeError::InvalidSpec(_))
    ));
    let e = launch(
        &sb.spec("j", &["true"]),
        &ShimCommand {
            program: sb.dir.join("no-shim"),
            args: vec![],
        },
    )
    .unwrap_err();
    assert!(matches!(e, RuntimeError::SpawnShim { .. }), "{e}");
    sb.finish();
}

#[test]
fn wait_for_attach_then_stdin_echo_through_cat() {
    let sb = Sandbox::new();
    let mut spec = sb.spec("a", &["cat"]);
    spec.open_stdin = true;
    spec.wait_for_attach = true;
    let l = sb.launch(&spec).unwrap();
    // Held before exec: still the shim's program.
    thread::sleep(Duration::from_millis(100));
    let exe = fs::read_link(format!("/proc/{}/exe", l.pid)).unwrap();
    assert!(exe.to_string_lossy().contains("reef-shim"), "{exe:?}");
    assert_eq!(ns_link(l.pid, "net"), format!("net:[{}]", sb.netns_inode()));

    let client = attach(&spec);
    (&client).write_all(b"hello\n").unwrap();
    (&client).write_all(b"world\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap(); // EOF -> cat's stdin closed -> cat exits
    let got = read_to_eof(&client);
    let (frames_got, used) = frames::decode(&got);
    assert_eq!(used, got.len());
    assert!(frames_got.iter().all(|(s, _)| *s == STDOUT));
    assert_eq!(frames::collect_stream(&got, STDOUT), b"hello\nworld\n");
    // EOF to clients comes after the exit record is written.
    assert_eq!(read_exit(&spec.state_dir).unwrap().exit_code, 0);
    assert_eq!(sb.wait(&l, &spec).exit_code, 0);
    let log = fs::read(&spec.log_path).unwrap();
    assert_eq!(frames::collect_stream(&log, STDOUT), b"hello\nworld\n");
    sb.finish();
}

#[test]
fn several_clients_and_late_clients_get_only_new_output() {
    let sb = Sandbox::new();
    let mut spec = sb.spec(
        "a",
        &["sh", "-c", "echo early; read x; echo got $x; echo bye >&2"],
    );
    spec.open_stdin = true;
    let l = sb.launch(&spec).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read(&spec.log_path).unwrap().ends_with(b"early\n") {
        assert!(Instant::now() < deadline, "no early output");
        thread::sleep(Duration::from_millis(5));
    }
    let a = attach(&spec);
    let b = attach(&spec);
    (&a).write_all(b"x1\n").unwrap();
    let (got_a, got_b) = (read_to_eof(&a), read_to_eof(&b));
    for got in [&got_a, &got_b] {
        assert_eq!(text(&frames::collect_stream(got, STDOUT)), "got x1\n");
        assert_eq!(text(&frames::collect_stream(got, STDERR)), "bye\n");
    }
    assert_eq!(sb.wait(&l, &spec).exit_code, 0);
    sb.finish();
}

#[test]
fn tty_mode_raw_stream_and_controlling_terminal() {
    let sb = Sandbox::new();
    let script =
        "tty; stty size; echo T=$TERM; (: </dev/tty) && echo ctty-ok; read x; echo got:$x; exit 5";
    let mut spec = sb.spec("a", &["sh", "-c", script]);
    spec.tty = true;
    spec.open_stdin = true;
    spec.wait_for_attach = true;
    let l = sb.launch(&spec).unwrap();
    let client = attach(&spec);
    (&client).write_all(b"hi\n").unwrap();
    let got = text(&read_to_eof(&client));
    for want in [
        "/dev/pts/",
        "24 80\r\n",
        "T=xterm\r\n",
        "ctty-ok\r\n",
        "got:hi\r\n",
    ] {
        assert!(got.contains(want), "{want:?} not in {got:?}");
    }
    assert!(
        !got.as_bytes().starts_with(&[1, 0, 0, 0]),
        "tty stream is raw"
    );
    assert_eq!(sb.wait(&l, &spec).exit_code, 5);
    let log = fs::read(&spec.log_path).unwrap();
    let (fr, used) = frames::decode(&log);
    assert_eq!(used, log.len());
    assert!(fr.iter().all(|(s, _)| *s == STDOUT));
    assert!(text(&frames::collect_stream(&log, STDOUT)).contains("got:hi\r\n"));
    sb.finish();
}

#[test]
fn tty_without_open_stdin_discards_client_input() {
    let sb = Sandbox::new();
    let mut spec = sb.spec(
        "a",
        &[
            "sh",
            "-c",
            "[ -t 0 ] && [ -t 1 ] && echo tty; sleep 0.3; exit 0",
        ],
    );
    spec.tty = true;
    spec.wait_for_attach = true;
    let l = sb.launch(&spec).unwrap();
    let client = attach(&spec);
    (&client).write_all(b"ignored\n").unwrap();
    let got = text(&read_to_eof(&client));
    assert_eq!(got, "tty\r\n");
    assert_eq!(sb.wait(&l, &spec).exit_code, 0);
    sb.finish();
}

#[test]
fn exec_failure_after_attach_report_is_127_on_stderr() {
    let sb = Sandbox::new();
    let bad = sb.dir.join("bad");
    fs::write(&bad, b"\x01\x02\x03garbage").unwrap();
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o755)).unwrap();
    let mut spec = sb.spec("a", &[bad.to_str().unwrap()]);
    spec.wait_for_attach = true;
    let l = sb.launch(&spec).unwrap();
    let client = attach(&spec);
    let got = read_to_eof(&client);
    assert_eq!(
        text(&frames::collect_stream(&got, STDERR)),
        format!("exec {}: exec format error\n", bad.display())
    );
    assert_eq!(sb.wait(&l, &spec).exit_code, 127);
    sb.finish();
}

#[test]
fn host_mode_uses_the_callers_network_namespace() {
    let sb = Sandbox::new();
    let mut spec = sb.spec("a", &["readlink", "/proc/self/ns/net"]);
    spec.netns = None;
    spec.etc_files = None;
    let netns = sb.netns.clone();
    let spec2 = spec.clone();
    // Launch from a thread that joined the test's namespace (never the root one).
    let l = thread::spawn(move || {
        setns(File::open(&netns).unwrap(), CloneFlags::CLONE_NEWNET).unwrap();
        launch(&spec2, &shim())
    })
    .join()
    .unwrap()
    .unwrap();
    sb.track(l);
    let rec = sb.wait(&l, &spec);
    assert_eq!(rec.exit_code, 0);
    let log = fs::read(&spec.log_path).unwrap();
    assert_eq!(
        text(&frames::collect_stream(&log, STDOUT)),
        format!("net:[{}]\n", sb.netns_inode())
    );
    sb.finish();
}

#[test]
fn slow_client_does_not_block_the_container() {
    let sb = Sandbox::new();
    let mut spec = sb.spec(
        "a",
        &["sh", "-c", "head -c 3000000 /dev/zero; echo done >&2"],
    );
    spec.wait_for_attach = true;
    let l = sb.launch(&spec).unwrap();
    let client = attach(&spec); // never reads until the end
    let rec = sb.wait(&l, &spec);
    assert_eq!(rec.exit_code, 0);
    let log = fs::read(&spec.log_path).unwrap();
    assert_eq!(frames::collect_stream(&log, STDOUT).len(), 3_000_000);
    assert_eq!(frames::collect_stream(&log, STDERR), b"done\n");
    // It was dropped: it gets at most its buffer's worth and then EOF.
    let got = read_to_eof(&client);
    assert!(got.len() < 3_000_000, "{}", got.len());
    sb.finish();
}

#[test]
fn wait_shim_for_gone_and_non_child_processes() {
    // A pid that is gone resolves at once.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    block_on(async {
        tokio::time::timeout(Duration::from_secs(5), wait_shim(pid))
            .await
            .unwrap()
            .unwrap()
    });

    // The container process is not our child: wait_shim works on it through its pidfd.
    let sb = Sandbox::new();
    let spec = sb.spec("a", &["sleep", "1000"]);
    let l = sb.launch(&spec).unwrap();
    block_on(async {
        let waiter = tokio::spawn(wait_shim(l.pid));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiter.is_finished());
        signal(l.pid, Signal::SIGKILL).unwrap();
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    });
    assert_eq!(sb.wait(&l, &spec).exit_code, 137);
    sb.finish();
}

#[test]
fn long_state_dir_paths_still_attach() {
    let sb = Sandbox::new();
    let mut spec = sb.spec("a", &["echo", "long"]);
    spec.state_dir = sb
        .dir
        .join("x".repeat(60))
        .join("containers")
        .join("a".repeat(64));
    spec.wait_for_attach = true;
    assert!(attach_socket(&spec.state_dir).as_os_str().len() > 108);
    let l = sb.launch(&spec).unwrap();
    let client = attach(&spec);
    assert_eq!(
        frames::collect_stream(&read_to_eof(&client), STDOUT),
        b"long\n"
    );
    assert_eq!(sb.wait(&l, &spec).exit_code, 0);
    sb.finish();
}

/// Prints figures; asserts nothing about time.
#[test]
fn launch_latency_figures() {
    let sb = Sandbox::new();
    let n = 20;
    let mut total = Duration::ZERO;
    let mut worst = Duration::ZERO;
    for i in 0..n {
        let spec = sb.spec(&format!("l{i}"), &["true"]);
        let t = Instant::now();
        let l = sb.launch(&spec).unwrap();
        let d = t.elapsed();
        total += d;
        worst = worst.max(d);
        assert_eq!(sb.wait(&l, &spec).exit_code, 0);
    }
    eprintln!(
        "launch (shim spawn + fork + namespaces + mounts + exec of `true`): mean {:?}, worst {:?} over {n}",
        total / n,
        worst
    );
    sb.finish();
}
