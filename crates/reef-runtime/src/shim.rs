//! The shim: one small process per container, outliving the daemon. It reads the launch spec
//! from stdin, detaches (setsid), forks the container child (see `child`), reports to
//! `launch` on stdout, then multiplexes with plain `poll`: the child's output goes to the log
//! (Docker's multiplexed frames) and to every attach client; clients' bytes go to the child's
//! stdin. When the child exits it drains the output, writes the `exit` record, removes the
//! socket, flushes and closes the clients, and exits.
//!
//! Must run single-threaded (it forks and the child allocates): call [`shim_main`] first
//! thing in `main`, before any runtime or thread starts.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::signal::{SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

use crate::attach::{attach_socket, bind_attach};
use crate::child::{self, ChildPlan, ChildStdio};
use crate::error::{errno_text, io_error_text, StartErrorKind};
use crate::frames;
use crate::process::{pid_start_time, pidfd_open};
use crate::spec::{container_env, env_path, ExitRecord, LaunchSpec, Report};
use crate::{EXIT_FILE, SANDBOX_DIR_ARG, SHIM_PID_FILE};

/// Read size for the child's output and clients' input.
const CHUNK: usize = 32 * 1024;
/// A client whose unsent output grows past this is dropped.
const CLIENT_BUFFER_LIMIT: usize = 1 << 20;
/// Clients are not read while this much input waits for the child's stdin.
const STDIN_BUFFER_LIMIT: usize = 1 << 20;
/// Longest wait for the first attach client with `wait_for_attach`.
const ATTACH_WAIT: Duration = Duration::from_secs(30);
/// After the child exits, at most this much output is still read (a background process
/// left behind may keep writing).
const DRAIN_LIMIT: usize = 4 << 20;
/// After the child exits, how long clients get to take their remaining output.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

/// The shim's entry point. Reads a JSON [`LaunchSpec`] on stdin, answers `launch` with one
/// JSON line on stdout, then supervises the container until it exits.
pub fn shim_main() -> ExitCode {
    // The shim must see EPIPE from a gone client, not die of it. (The child restores the
    // default before exec.)
    // SAFETY: SIG_IGN installs no handler code.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigIgn) };
    if crate::launcher::is_launcher() {
        return crate::launcher::run();
    }
    let Ok(report) = take_stdout() else {
        return ExitCode::from(2);
    };
    // Before the spec: a spare shim does this while it waits, off the start's path.
    let sandboxes = SandboxDir::from_args();
    let spec = match read_spec() {
        Ok(spec) => spec,
        Err(message) => {
            send_report(&report, &Report::setup(message));
            return ExitCode::from(1);
        }
    };
    match Shim::start(spec, report.as_raw_fd(), sandboxes.as_ref()) {
        Ok((shim, started)) => {
            send_report(&report, &started);
            drop(report);
            shim.run();
            ExitCode::SUCCESS
        }
        Err(failed) => {
            send_report(&report, &failed);
            ExitCode::from(1)
        }
    }
}

/// The argument after `flag`, if any.
fn arg_after(flag: &str) -> Option<std::ffi::OsString> {
    let mut args = std::env::args_os().skip_while(|a| a != flag);
    args.next()?;
    args.next()
}

/// The daemon's sandbox directory (where network namespaces are bind-mounted), reachable
/// through a descriptor after it was unmounted from this shim's own mount namespace.
///
/// Every container gets a mount namespace of its own, a copy of its shim's, and must not
/// keep the sandbox directory (it is shared: it would receive every later container's
/// namespace mount). Copying reefd's namespace and unmounting the directory there costs
/// time in proportion to the containers already running (one mount each). The launcher
/// (see [`crate::launcher`]) does it once and hands the descriptor to every shim it forks;
/// a shim forked by reefd does it itself before its spec arrives. Either way the container
/// copies a namespace without those mounts, and opens its own network namespace through
/// the descriptor, which still reaches reefd's mounts.
pub(crate) struct SandboxDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl SandboxDir {
    /// From this process's arguments: the directory the launcher handed over (already
    /// unmounted from the mount namespace this process inherited), or the directory to
    /// detach here; `None` without either.
    pub(crate) fn from_args() -> Option<SandboxDir> {
        let path = PathBuf::from(arg_after(SANDBOX_DIR_ARG)?);
        if let Some(fd) = arg_after(crate::launcher::SANDBOX_FD_ARG) {
            let fd: RawFd = fd.to_str()?.parse().ok()?;
            // SAFETY: the launcher opened this descriptor and left it open across exec for
            // this process alone.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let _ = fcntl(&fd, FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
            return Some(SandboxDir { path, fd });
        }
        SandboxDir::detach(&path)
    }

    /// The descriptor of the directory.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Open `path`, move this process into a mount namespace of its own whose mounts are
    /// slaves of reefd's, and unmount `path` there. `None` (and nothing changed that
    /// matters: the child then does it itself) when any step fails.
    fn detach(path: &Path) -> Option<SandboxDir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()?;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).ok()?;
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
            None::<&str>,
        )
        .ok()?;
        nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).ok()?;
        Some(SandboxDir {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// The descriptor and file name to open `netns` with, when it lies in this directory.
    pub(crate) fn locate(&self, netns: &Path) -> Option<(RawFd, PathBuf)> {
        if netns.parent()? != self.path {
            return None;
        }
        Some((self.fd.as_raw_fd(), PathBuf::from(netns.file_name()?)))
    }
}

/// Move stdout (the report pipe to `launch`) to a CLOEXEC fd of its own.
fn take_stdout() -> io::Result<File> {
    let fd = fcntl(io::stdout(), FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Read the spec from stdin, then point 0, 1 and 2 at /dev/null so the shim holds nothing of
/// its parent's.
fn read_spec() -> Result<LaunchSpec, String> {
    let mut bytes = Vec::new();
    let read = io::stdin().lock().read_to_end(&mut bytes);
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    read.map_err(|e| format!("shim: reading the spec: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("shim: decoding the spec: {e}"))
}

fn send_report(report: &File, msg: &Report) {
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.push(b'\n');
    let _ = (&*report).write_all(&line);
}

/// Number of threads of this process (/proc/self/stat field 20).
fn thread_count() -> Option<u64> {
    let stat = fs::read("/proc/self/stat").ok()?;
    let close = stat.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    rest.split_ascii_whitespace().nth(17)?.parse().ok()
}

fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

fn cstrings(items: &[String], what: &str) -> Result<Vec<CString>, Report> {
    items
        .iter()
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| Report::setup(format!("{what} contains a NUL byte: {s:?}")))
        })
        .collect()
}

/// Write `contents` to `dir/name` atomically (temp file + rename).
fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, contents)?;
    fs::rename(&tmp, dir.join(name))
}

fn remove_if_exists(path: &Path) {
    let _ = fs::remove_file(path);
}

/// The child's stdio as created before the fork: both halves.
enum Stdio {
    Tty {
        master: File,
        slave: OwnedFd,
    },
    Pipes {
        /// (child's read end, shim's write end)
        stdin: Option<(OwnedFd, File)>,
        /// (shim's read end, child's write end)
        stdout: (File, OwnedFd),
        stderr: (File, OwnedFd),
    },
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(pipe2(OFlag::O_CLOEXEC)?)
}

impl Stdio {
    fn new(tty: bool, open_stdin: bool) -> io::Result<Stdio> {
        if tty {
            let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
            grantpt(&master)?;
            unlockpt(&master)?;
            let name = ptsname_r(&master)?;
            // O_NOCTTY: the shim is a session leader and must not acquire the terminal.
            let slave = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY)
                .open(&name)?;
            let size = libc::winsize {
                ws_row: 24,
                ws_col: 80,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCSWINSZ reads a winsize from the valid pointer we pass.
            Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) })?;
            set_nonblocking(&master)?;
            Ok(Stdio::Tty {
                master: File::from(OwnedFd::from(master)),
                slave: OwnedFd::from(slave),
            })
        } else {
            let stdin = if open_stdin {
                let (r, w) = pipe()?;
                set_nonblocking(&w)?;
                Some((r, File::from(w)))
            } else {
                None
            };
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            set_nonblocking(&out_r)?;
            set_nonblocking(&err_r)?;
            Ok(Stdio::Pipes {
                stdin,
                stdout: (File::from(out_r), out_w),
                stderr: (File::from(err_r), err_w),
            })
        }
    }

    fn child_side(&self) -> ChildStdio {
        match self {
            Stdio::Tty { slave, .. } => ChildStdio::Tty {
                slave: slave.as_raw_fd(),
            },
            Stdio::Pipes {
                stdin,
                stdout,
                stderr,
            } => ChildStdio::Pipes {
                stdin: stdin.as_ref().map(|(r, _)| r.as_raw_fd()),
                stdout: stdout.1.as_raw_fd(),
                stderr: stderr.1.as_raw_fd(),
            },
        }
    }

    fn shim_fds(&self) -> Vec<RawFd> {
        match self {
            Stdio::Tty { master, .. } => vec![master.as_raw_fd()],
            Stdio::Pipes {
                stdin,
                stdout,
                stderr,
            } => {
                let mut fds = vec![stdout.0.as_raw_fd(), stderr.0.as_raw_fd()];
                if let Some((_, w)) = stdin {
                    fds.push(w.as_raw_fd());
                }
                fds
            }
        }
    }

    /// Keep the shim's half (closing the child's): output sources and the stdin sink.
    fn into_shim_side(self, open_stdin: bool) -> io::Result<(Vec<Output>, Option<StdinSink>)> {
        match self {
            Stdio::Tty { master, slave } => {
                drop(slave);
                let stdin = if open_stdin {
                    Some(StdinSink::new(master.try_clone()?, false))
                } else {
                    None
                };
                Ok((vec![Output::new(master, frames::STDOUT)], stdin))
            }
            Stdio::Pipes {
                stdin,
                stdout,
                stderr,
            } => Ok((
                vec![
                    Output::new(stdout.0, frames::STDOUT),
                    Output::new(stderr.0, frames::STDERR),
                ],
                stdin.map(|(_, w)| StdinSink::new(w, true)),
            )),
        }
    }
}

struct Output {
    file: File,
    stream: u8,
    eof: bool,
}

impl Output {
    fn new(file: File, stream: u8) -> Self {
        Output {
            file,
            stream,
            eof: false,
        }
    }
}

struct StdinSink {
    file: File,
    pending: Vec<u8>,
    /// Without a tty, a client's EOF closes the child's stdin once pending bytes are written.
    close_on_client_eof: bool,
    close_when_flushed: bool,
}

impl StdinSink {
    fn new(file: File, close_on_client_eof: bool) -> Self {
        StdinSink {
            file,
            pending: Vec::new(),
            close_on_client_eof,
            close_when_flushed: false,
        }
    }
}

struct Client {
    stream: UnixStream,
    out: VecDeque<u8>,
    read_closed: bool,
    dead: bool,
}

impl Client {
    fn new(stream: UnixStream) -> Self {
        Client {
            stream,
            out: VecDeque::new(),
            read_closed: false,
            dead: false,
        }
    }

    /// Send `data` now as far as the socket takes it, buffer the rest; a client that falls
    /// more than CLIENT_BUFFER_LIMIT behind is dropped.
    fn queue(&mut self, data: &[u8]) {
        if self.dead {
            return;
        }
        let mut rest = data;
        if self.out.is_empty() {
            match (&self.stream).write(data) {
                Ok(n) => rest = &data[n..],
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
        if rest.is_empty() {
            return;
        }
        if self.out.len() + rest.len() > CLIENT_BUFFER_LIMIT {
            self.dead = true;
            return;
        }
        self.out.extend(rest);
    }

    fn flush(&mut self) {
        while !self.out.is_empty() && !self.dead {
            let (front, _) = self.out.as_slices();
            match (&self.stream).write(front) {
                Ok(0) => self.dead = true,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => self.dead = true,
            }
        }
    }

    /// Close, first reading what the client sent and we did not take, so that it sees a
    /// clean EOF rather than a reset.
    fn close(self) {
        let mut buf = [0u8; 4096];
        for _ in 0..64 {
            match (&self.stream).read(&mut buf) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Token {
    Child,
    Listener,
    Output(usize),
    Stdin,
    Client(usize),
}

struct Shim {
    child: Pid,
    pidfd: OwnedFd,
    tty: bool,
    open_stdin: bool,
    outputs: Vec<Output>,
    stdin: Option<StdinSink>,
    listener: Option<UnixListener>,
    clients: Vec<Client>,
    /// Write end of the go pipe while the child waits for the first attach client.
    go: Option<OwnedFd>,
    go_deadline: Option<Instant>,
    log: File,
    state_dir: PathBuf,
    buf: Vec<u8>,
}

impl Shim {
    /// Everything up to the report: prepare, fork, wait for the child's status.
    fn start(
        spec: LaunchSpec,
        report_fd: RawFd,
        sandboxes: Option<&SandboxDir>,
    ) -> Result<(Shim, Report), Report> {
        // Out of reefd's session and process group: survives its death and its terminal.
        let _ = nix::unistd::setsid();
        let _ = std::env::set_current_dir("/");
        match thread_count() {
            Some(1) => {}
            n => {
                return Err(Report::setup(format!(
                    "shim: must run single-threaded (threads: {n:?}); call shim_main first in main"
                )))
            }
        }

        // Validate and prepare everything before touching anything.
        if spec.argv.is_empty() {
            return Err(Report::setup("no command specified"));
        }
        let env = container_env(&spec.env, &spec.hostname, spec.tty);
        let argv = cstrings(&spec.argv, "argument")?;
        let envp = cstrings(&env, "environment variable")?;
        if spec.hostname.contains('\0') {
            return Err(Report::setup("hostname contains a NUL byte"));
        }
        let binds = spec.etc_files.as_ref().map_or_else(Vec::new, |f| {
            vec![
                (f.hosts.clone(), "/etc/hosts"),
                (f.hostname.clone(), "/etc/hostname"),
                (f.resolv_conf.clone(), "/etc/resolv.conf"),
            ]
        });

        let dir = spec.state_dir.clone();
        let state_err =
            |what: &str, e: io::Error| Report::setup(format!("{what}: {}", io_error_text(&e)));
        fs::create_dir_all(&dir)
            .map_err(|e| state_err(&format!("create state directory {}", dir.display()), e))?;
        write_atomic(
            &dir,
            SHIM_PID_FILE,
            format!("{}\n", std::process::id()).as_bytes(),
        )
        .map_err(|e| state_err("write shim.pid", e))?;
        remove_if_exists(&dir.join(EXIT_FILE));

        let cleanup = |dir: &Path| {
            remove_if_exists(&attach_socket(dir));
            remove_if_exists(&dir.join(SHIM_PID_FILE));
        };
        let prepared = (|| {
            let log = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .open(&spec.log_path)
                .map_err(|e| state_err(&format!("open log {}", spec.log_path.display()), e))?;
            let stdio = Stdio::new(spec.tty, spec.open_stdin)
                .map_err(|e| state_err("set up the container's stdio", e))?;
            let listener = bind_attach(&dir)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| state_err("listen on the attach socket", e))?;
            let status = pipe().map_err(|e| state_err("pipe", e))?;
            let go = if spec.wait_for_attach {
                Some(pipe().map_err(|e| state_err("pipe", e))?)
            } else {
                None
            };
            Ok::<_, Report>((log, stdio, listener, status, go))
        })();
        let (log, stdio, listener, (status_r, status_w), go) = match prepared {
            Ok(p) => p,
            Err(e) => {
                cleanup(&dir);
                return Err(e);
            }
        };

        let mut close = vec![
            report_fd,
            log.as_raw_fd(),
            listener.as_raw_fd(),
            status_r.as_raw_fd(),
        ];
        close.extend(stdio.shim_fds());
        if let Some((_, w)) = &go {
            close.push(w.as_raw_fd());
        }
        let plan = ChildPlan {
            netns: spec.netns.clone(),
            netns_at: spec
                .netns
                .as_deref()
                .and_then(|ns| sandboxes.and_then(|d| d.locate(ns))),
            binds,
            hostname: spec.hostname.clone(),
            stdio: stdio.child_side(),
            program: spec.argv[0].clone(),
            search_path: env_path(&env).to_string(),
            argv,
            envp,
            status: status_w.as_raw_fd(),
            go: go.as_ref().map(|(r, _)| r.as_raw_fd()),
            close,
        };

        // SAFETY: this process is single-threaded (checked above), so the child may do
        // anything, allocation included; it never returns from child::run.
        let child = match unsafe { fork() } {
            Ok(ForkResult::Child) => child::run(&plan),
            Ok(ForkResult::Parent { child }) => child,
            Err(e) => {
                cleanup(&dir);
                return Err(Report::setup(format!("fork: {}", errno_text(e))));
            }
        };
        drop(plan);
        drop(status_w);
        let go = go.map(|(r, w)| {
            drop(r);
            w
        });

        let fail = |report: Report| {
            loop {
                match waitpid(child, None) {
                    Err(Errno::EINTR) => continue,
                    Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
            cleanup(&dir);
            report
        };

        // The child's status: 'R' (waiting for go), 'E' + report, or EOF at exec.
        let mut status = Vec::new();
        let mut status_file = File::from(status_r);
        let mut buf = [0u8; 4096];
        loop {
            match status_file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    status.extend_from_slice(&buf[..n]);
                    if status == b"R" {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(state_err("read the child's status", e))),
            }
        }
        if let Some(rest) = status.strip_prefix(b"E") {
            let report = serde_json::from_slice(rest).unwrap_or_else(|_| Report::Failed {
                kind: StartErrorKind::Setup,
                message: String::from_utf8_lossy(rest).into_owned(),
            });
            return Err(fail(report));
        }

        let pidfd = match pidfd_open(child.as_raw()) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                return Err(fail(state_err("pidfd_open", e)));
            }
        };
        // The child is not reaped yet, so its /proc entry exists even if it already exited.
        let start_time = pid_start_time(child.as_raw()).unwrap_or(0);

        let (outputs, stdin) = match stdio.into_shim_side(spec.open_stdin) {
            Ok(x) => x,
            Err(e) => {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                return Err(fail(state_err("set up the container's stdio", e)));
            }
        };
        let go_deadline = go.as_ref().map(|_| Instant::now() + ATTACH_WAIT);
        let shim = Shim {
            child,
            pidfd,
            tty: spec.tty,
            open_stdin: spec.open_stdin,
            outputs,
            stdin,
            listener: Some(listener),
            clients: Vec::new(),
            go,
            go_deadline,
            log,
            state_dir: dir,
            buf: vec![0u8; CHUNK],
        };
        Ok((
            shim,
            Report::Started {
                pid: child.as_raw(),
                pid_start_time: start_time,
            },
        ))
    }

    /// Serve until the child exits, then finish up.
    fn run(mut self) {
        let exit_code = loop {
            if let Some(code) = self.poll_once() {
                break code;
            }
        };
        self.drain_outputs();
        let record = ExitRecord {
            exit_code,
            finished_unix_nanos: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        };
        if let Ok(json) = serde_json::to_vec(&record) {
            let _ = write_atomic(&self.state_dir, EXIT_FILE, &json);
        }
        self.listener = None;
        remove_if_exists(&attach_socket(&self.state_dir));
        self.go = None;
        self.stdin = None;
        self.final_flush();
    }

    /// One round of poll; returns the exit code once the child has exited.
    fn poll_once(&mut self) -> Option<i32> {
        let stdin_full = self
            .stdin
            .as_ref()
            .is_some_and(|s| s.pending.len() >= STDIN_BUFFER_LIMIT);
        let mut tokens = Vec::with_capacity(4 + self.clients.len());
        let mut fds = Vec::with_capacity(4 + self.clients.len());
        fds.push(PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN));
        tokens.push(Token::Child);
        if let Some(l) = &self.listener {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
            tokens.push(Token::Listener);
        }
        for (i, o) in self.outputs.iter().enumerate() {
            fds.push(PollFd::new(o.file.as_fd(), PollFlags::POLLIN));
            tokens.push(Token::Output(i));
        }
        if let Some(s) = self.stdin.as_ref().filter(|s| !s.pending.is_empty()) {
            fds.push(PollFd::new(s.file.as_fd(), PollFlags::POLLOUT));
            tokens.push(Token::Stdin);
        }
        for (i, c) in self.clients.iter().enumerate() {
            let mut ev = PollFlags::empty();
            if !c.read_closed && !stdin_full {
                ev |= PollFlags::POLLIN;
            }
            if !c.out.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(c.stream.as_fd(), ev));
            tokens.push(Token::Client(i));
        }
        let timeout = match (self.go.is_some(), self.go_deadline) {
            (true, Some(deadline)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                PollTimeout::try_from(left + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX)
            }
            _ => PollTimeout::NONE,
        };
        let polled = poll(&mut fds, timeout);
        let events: Vec<(Token, PollFlags)> = tokens
            .iter()
            .zip(&fds)
            .filter_map(|(t, f)| f.revents().filter(|r| !r.is_empty()).map(|r| (*t, r)))
            .collect();
        drop(fds);
        if let Err(e) = polled {
            if e != Errno::EINTR {
                // Nothing sensible to do but try again a little later.
                std::thread::sleep(Duration::from_millis(10));
            }
            return None;
        }

        let mut exited = false;
        for (token, revents) in events {
            match token {
                Token::Child => exited = true,
                Token::Listener => self.accept_clients(),
                Token::Output(i) => {
                    self.read_output(i);
                }
                Token::Stdin => self.flush_stdin(),
                Token::Client(i) => {
                    let hup = revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR);
                    if revents.intersects(PollFlags::POLLIN) || hup {
                        self.read_client(i, hup);
                    }
                    if revents.contains(PollFlags::POLLOUT) {
                        self.clients[i].flush();
                    }
                    if hup {
                        self.clients[i].dead = true;
                    }
                }
            }
        }
        self.outputs.retain(|o| !o.eof);
        self.clients.retain(|c| !c.dead);
        if self.go.is_some() && self.go_deadline.is_some_and(|d| Instant::now() >= d) {
            self.go = None;
        }
        if exited {
            Some(self.reap())
        } else {
            None
        }
    }

    fn reap(&mut self) -> i32 {
        loop {
            match waitpid(self.child, None) {
                Ok(WaitStatus::Exited(_, code)) => return code,
                Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => return 255,
            }
        }
    }

    fn accept_clients(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.clients.push(Client::new(stream));
                    // The first client releases a child waiting for attach.
                    self.go = None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Log the chunk as a frame and send it to every client (raw bytes with a tty).
    fn emit(&mut self, stream: u8, len: usize) {
        let data = &self.buf[..len];
        let frame = frames::encode(stream, data);
        let _ = self.log.write_all(&frame);
        let payload = if self.tty { data } else { &frame[..] };
        for c in &mut self.clients {
            c.queue(payload);
        }
    }

    /// Read one chunk from an output; false when nothing more is to be had now.
    fn read_output(&mut self, i: usize) -> bool {
        let out = &mut self.outputs[i];
        match (&out.file).read(&mut self.buf) {
            Ok(0) => {
                out.eof = true;
                false
            }
            Ok(n) => {
                let stream = out.stream;
                self.emit(stream, n);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            // EIO: the pty's last slave is gone.
            Err(_) => {
                out.eof = true;
                false
            }
        }
    }

    /// After the child exited: take what is buffered (bounded, in case something it left
    /// behind keeps writing).
    fn drain_outputs(&mut self) {
        let mut budget = DRAIN_LIMIT;
        for i in 0..self.outputs.len() {
            while budget > 0 && !self.outputs[i].eof {
                let before = budget;
                if !self.read_output(i) {
                    break;
                }
                budget = before.saturating_sub(CHUNK);
            }
        }
        for c in &mut self.clients {
            c.flush();
        }
    }

    fn read_client(&mut self, i: usize, until_eof: bool) {
        loop {
            let c = &mut self.clients[i];
            match (&c.stream).read(&mut self.buf) {
                Ok(0) => {
                    c.read_closed = true;
                    if let Some(s) = self.stdin.as_mut().filter(|s| s.close_on_client_eof) {
                        s.close_when_flushed = true;
                    }
                    self.flush_stdin();
                    return;
                }
                Ok(n) => {
                    if let Some(s) = self.stdin.as_mut().filter(|_| self.open_stdin) {
                        s.pending.extend_from_slice(&self.buf[..n]);
                        self.flush_stdin();
                    }
                    if !until_eof {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    c.dead = true;
                    return;
                }
            }
        }
    }

    fn flush_stdin(&mut self) {
        let Some(s) = &mut self.stdin else {
            return;
        };
        while !s.pending.is_empty() {
            match (&s.file).write(&s.pending) {
                Ok(n) => {
                    s.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // EPIPE: the child closed its stdin; drop whatever comes.
                Err(_) => {
                    self.stdin = None;
                    return;
                }
            }
        }
        if s.close_when_flushed {
            self.stdin = None;
        }
    }

    /// Give clients up to FINAL_FLUSH to take their remaining output, then close them all.
    fn final_flush(&mut self) {
        let deadline = Instant::now() + FINAL_FLUSH;
        loop {
            let (busy, done): (Vec<Client>, Vec<Client>) = std::mem::take(&mut self.clients)
                .into_iter()
                .partition(|c| !c.dead && !c.out.is_empty());
            done.into_iter().for_each(Client::close);
            self.clients = busy;
            let left = deadline.saturating_duration_since(Instant::now());
            if self.clients.is_empty() || left.is_zero() {
                break;
            }
            let mut fds: Vec<PollFd> = self
                .clients
                .iter()
                .map(|c| PollFd::new(c.stream.as_fd(), PollFlags::POLLOUT))
                .collect();
            let timeout =
                PollTimeout::try_from(left + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX);
            let polled = poll(&mut fds, timeout);
            let revents: Vec<PollFlags> = fds
                .iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect();
            drop(fds);
            if polled.is_err() {
                continue;
            }
            for (c, r) in self.clients.iter_mut().zip(revents) {
                if r.contains(PollFlags::POLLOUT) {
                    c.flush();
                }
                if r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                    c.dead = true;
                }
            }
        }
        std::mem::take(&mut self.clients)
            .into_iter()
            .for_each(Client::close);
    }
}
