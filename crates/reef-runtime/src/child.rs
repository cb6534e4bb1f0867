//! The container child, between the shim's `fork` and `execve`: join the network namespace,
//! create UTS and mount namespaces, make `/` a recursive slave, mount the namespace's own
//! sysfs on `/sys`, bind-mount the `/etc` files,
//! set the hostname, set up stdio (pty or pipes), find the program, report to the shim over a
//! CLOEXEC pipe, optionally wait for the attach "go", and exec.
//!
//! Runs in a forked copy of the single-threaded shim, so allocating is fine; it never
//! returns (`_exit` on every path that does not exec).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{BorrowedFd, RawFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::{execve, sethostname, setsid};

use crate::error::{errno_text, io_error_text, StartErrorKind};
use crate::lookpath::look_path;
use crate::spec::Report;

/// The container's stdio, as fds inherited from the shim.
pub(crate) enum ChildStdio {
    /// The pty slave becomes stdin/out/err and the controlling terminal.
    Tty { slave: RawFd },
    /// Pipes; `stdin: None` keeps fd 0, which the shim already pointed at /dev/null.
    Pipes {
        stdin: Option<RawFd>,
        stdout: RawFd,
        stderr: RawFd,
    },
}

/// Everything the child does, prepared (and validated) by the shim before forking.
pub(crate) struct ChildPlan {
    pub netns: Option<PathBuf>,
    /// `netns` as (directory fd, file name), when the shim unmounted its directory (see
    /// `shim::SandboxDir`).
    pub netns_at: Option<(RawFd, PathBuf)>,
    /// (host file, target) pairs to bind-mount.
    pub binds: Vec<(PathBuf, &'static str)>,
    pub hostname: String,
    pub stdio: ChildStdio,
    /// argv[0] as given, resolved on `search_path`.
    pub program: String,
    pub search_path: String,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// Write end of the status pipe: `R` = ready and waiting for go; `E` + JSON report =
    /// failed; EOF without bytes = exec'd.
    pub status: RawFd,
    /// Read end of the go pipe (EOF = go), when waiting for the first attach client.
    pub go: Option<RawFd>,
    /// The shim's own fds, closed first thing (the report pipe above all).
    pub close: Vec<RawFd>,
}

struct Failure {
    kind: StartErrorKind,
    message: String,
}

fn setup_error(what: impl std::fmt::Display, errno: Errno) -> Failure {
    Failure {
        kind: StartErrorKind::Setup,
        message: format!("{what}: {}", errno_text(errno)),
    }
}

/// Run the child side; never returns.
pub(crate) fn run(plan: &ChildPlan) -> ! {
    for &fd in &plan.close {
        // SAFETY: these fds belong to the shim's half and are not used in this process.
        unsafe { libc::close(fd) };
    }
    let path = match setup(plan) {
        Ok(path) => path,
        Err(f) => fail(plan.status, f),
    };
    if let Some(go) = plan.go {
        write_all(plan.status, b"R");
        wait_for_go(go);
    }
    let errno = match execve(&path, &plan.argv, &plan.envp) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let failure = Failure {
        kind: StartErrorKind::from_exec_errno(errno),
        message: format!("exec {}: {}", path.to_string_lossy(), errno_text(errno)),
    };
    if plan.go.is_some() {
        // Already reported as started: say it on the container's stderr, exit 127.
        write_all(2, format!("{}\n", failure.message).as_bytes());
        exit_now(127)
    }
    fail(plan.status, failure)
}

fn setup(plan: &ChildPlan) -> Result<CString, Failure> {
    reset_signals();
    setsid().map_err(|e| setup_error("setsid", e))?;

    if let Some(ns) = &plan.netns {
        let opened = match &plan.netns_at {
            Some((dir, name)) => nix::fcntl::openat(
                // SAFETY: the shim keeps the directory fd open for this child's lifetime.
                unsafe { std::os::fd::BorrowedFd::borrow_raw(*dir) },
                name.as_path(),
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map(File::from)
            .map_err(std::io::Error::from),
            None => File::open(ns),
        };
        let file = opened.map_err(|e| Failure {
            kind: StartErrorKind::Setup,
            message: format!(
                "open network namespace {}: {}",
                ns.display(),
                io_error_text(&e)
            ),
        })?;
        setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| setup_error(format!("join network namespace {}", ns.display()), e))?;
    }

    unshare(CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWNS)
        .map_err(|e| setup_error("create UTS and mount namespaces", e))?;
    // Nothing mounted from here on may reach the host; host unmounts still propagate in.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| setup_error("make / a recursive slave mount", e))?;
    // The sandbox directory is shared so new sandboxes reach reefd's view; left in here it
    // would receive every later container's sandbox mount too (O(N^2) mounts machine-wide,
    // and each mount(2) slower as containers accumulate). This container needs none of them.
    // Usually the shim unmounted it already (`netns_at`).
    if let Some(dir) = plan
        .netns
        .as_deref()
        .filter(|_| plan.netns_at.is_none())
        .and_then(|p| p.parent())
    {
        let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
    }
    // A sysfs of the container's network namespace, read-only as Docker mounts it:
    // /sys/class/net then lists the container's interfaces (the host's, for host mode),
    // whatever the /sys reefd itself sees. (A sysfs mount shows the network devices of the
    // namespace of the process that mounts it.)
    let sysfs = mount(
        Some("sysfs"),
        "/sys",
        Some("sysfs"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    );
    match sysfs {
        Ok(()) => {}
        // /sys is this namespace's sysfs already (host mode on a host, or reefd started
        // by `ip netns exec`): the kernel refuses the same sysfs twice on one mount point.
        // Make this mount namespace's copy of it read-only instead.
        Err(Errno::EBUSY) => mount(
            None::<&str>,
            "/sys",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| setup_error("remount /sys read-only", e))?,
        Err(e) => return Err(setup_error("mount a read-only sysfs on /sys", e)),
    }
    for (src, dst) in &plan.binds {
        mount(
            Some(src.as_path()),
            *dst,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| setup_error(format!("bind-mount {} on {dst}", src.display()), e))?;
    }
    sethostname(&plan.hostname)
        .map_err(|e| setup_error(format!("set hostname {:?}", plan.hostname), e))?;

    setup_stdio(&plan.stdio).map_err(|e| setup_error("set up stdio", e))?;

    let path = look_path(&plan.program, &plan.search_path).map_err(|e| Failure {
        kind: e.kind,
        message: e.message,
    })?;
    let path = CString::new(path).map_err(|_| Failure {
        kind: StartErrorKind::Setup,
        message: "program path contains a NUL byte".into(),
    })?;

    // Whatever else this process inherited must not reach the container.
    // SAFETY: close_range only changes fd flags; no memory is passed.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Ok(path)
}

/// Default dispositions (ignored signals survive exec; Rust ignores SIGPIPE) and an empty
/// signal mask.
fn reset_signals() {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no code of ours.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: an empty set, valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

fn dup_onto(fd: RawFd, target: RawFd) -> Result<(), Errno> {
    // SAFETY: dup2 on fds this process holds; it atomically replaces `target`.
    Errno::result(unsafe { libc::dup2(fd, target) }).map(drop)
}

fn setup_stdio(stdio: &ChildStdio) -> Result<(), Errno> {
    match *stdio {
        ChildStdio::Tty { slave } => {
            // SAFETY: TIOCSCTTY takes an int argument; we are a session leader without a
            // controlling terminal (setsid above).
            Errno::result(unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) })?;
            for target in 0..3 {
                dup_onto(slave, target)?;
            }
            if slave > 2 {
                // SAFETY: our own copy, now duplicated onto 0..2.
                unsafe { libc::close(slave) };
            }
        }
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            if let Some(fd) = stdin {
                dup_onto(fd, 0)?;
            }
            dup_onto(stdout, 1)?;
            dup_onto(stderr, 2)?;
        }
    }
    Ok(())
}

fn wait_for_go(go: RawFd) {
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: reading into a local buffer of the given length.
        let n = unsafe { libc::read(go, byte.as_mut_ptr().cast(), 1) };
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        break;
    }
    // SAFETY: our own fd, not used again.
    unsafe { libc::close(go) };
}

fn write_all(fd: RawFd, mut data: &[u8]) {
    // SAFETY: `fd` is open in this process for as long as this call runs.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return,
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

fn fail(status: RawFd, f: Failure) -> ! {
    let report = Report::Failed {
        kind: f.kind,
        message: f.message,
    };
    let mut msg = b"E".to_vec();
    msg.extend(serde_json::to_vec(&report).unwrap_or_default());
    write_all(status, &msg);
    exit_now(f.kind.exit_code())
}

fn exit_now(code: i32) -> ! {
    // SAFETY: _exit skips atexit handlers and stdio flushing that belong to the shim.
    unsafe { libc::_exit(code) }
}
