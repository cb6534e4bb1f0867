//! The shim launcher: one long-lived process that forks the shims, so that none of them
//! copies reefd's mount namespace.
//!
//! Every container needs a mount namespace of its own, made by copying its shim's. A shim
//! forked from reefd sits in reefd's mount namespace, which holds one mount per running
//! container (its network namespace, bound in the sandbox directory), so each start copied
//! and then unmounted N mounts: about 0.9 ms of CPU per start with 1,000 containers. The
//! launcher leaves reefd's namespace once (a namespace of its own, slave to reefd's, the
//! sandbox directory unmounted) and forks+execs every shim from there; the shims inherit
//! that namespace without copying it, and reach the sandbox directory through a descriptor
//! opened before it was unmounted.
//!
//! Protocol, on a `SOCK_SEQPACKET` socket that is the launcher's stdin: reefd sends one byte
//! with two descriptors (`SCM_RIGHTS`): the shim's stdin and stdout; the launcher answers
//! with the shim's pid as 4 little-endian bytes (negative: an errno). At EOF (reefd is
//! gone) the launcher exits; its shims live on (they are reparented, as they are when
//! reefd dies). The kernel reaps the shims (`SIGCHLD` ignored), so reefd watches them with
//! pidfds, as it does after a restart.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::{Child, Command, ExitCode, Stdio};

use nix::sys::signal::{SigHandler, Signal};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::unistd::{dup2_stdin, dup2_stdout, execv, fork, ForkResult};

use crate::shim::SandboxDir;
use crate::spec::ShimCommand;

/// Argument that makes the shim binary run as the launcher.
pub(crate) const LAUNCHER_ARG: &str = "--launcher";
/// Argument (followed by a descriptor number) with which the launcher hands each shim the
/// sandbox directory it opened.
pub(crate) const SANDBOX_FD_ARG: &str = "--sandbox-fd";

/// Whether this process was started as the launcher.
pub(crate) fn is_launcher() -> bool {
    std::env::args_os().any(|a| a == LAUNCHER_ARG)
}

/// The launcher's main loop; returns at EOF on stdin.
pub(crate) fn run() -> ExitCode {
    // SAFETY: SIG_IGN installs no handler code.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGCHLD, SigHandler::SigIgn) };
    let sandbox = SandboxDir::from_args();
    let mut argv: Vec<CString> = std::env::args_os()
        .filter(|a| a != LAUNCHER_ARG)
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    if let Some(dir) = &sandbox {
        argv.push(CString::new(SANDBOX_FD_ARG).expect("no NUL"));
        argv.push(CString::new(dir.raw_fd().to_string()).expect("digits"));
    }
    // The binary by its path (so shims show under its name), unless it was replaced or
    // removed since: then the one this process runs.
    let exe = std::fs::read_link("/proc/self/exe")
        .ok()
        .filter(|p| p.exists())
        .and_then(|p| CString::new(p.into_os_string().into_vec()).ok())
        .unwrap_or_else(|| CString::from(c"/proc/self/exe"));
    // SAFETY: fd 0 is the socket reefd gave us; nothing else in this process owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(0) };
    loop {
        let fds = match receive(sock.as_fd()) {
            Ok(Some(fds)) => fds,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            // The socket is unusable: reefd sees EOF and forks its shims itself.
            Err(_) => return ExitCode::FAILURE,
        };
        let Ok([stdin, stdout]) = <[OwnedFd; 2]>::try_from(fds) else {
            let _ = reply(sock.as_fd(), -libc::EINVAL);
            continue;
        };
        // SAFETY: single-threaded (a fresh exec of the shim binary that started no
        // thread), so the child may run any code before exec.
        let answer = match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // SAFETY: SIG_DFL installs no handler code; the shim waits for its child.
                let _ = unsafe { nix::sys::signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) };
                if dup2_stdin(&stdin).is_ok() && dup2_stdout(&stdout).is_ok() {
                    if let Some(dir) = &sandbox {
                        clear_cloexec(dir.raw_fd());
                    }
                    let _ = execv(&exe, &argv);
                }
                // SAFETY: _exit ends the child without running the parent's destructors.
                unsafe { libc::_exit(127) }
            }
            Ok(ForkResult::Parent { child }) => child.as_raw(),
            Err(e) => -(e as i32),
        };
        drop((stdin, stdout));
        if reply(sock.as_fd(), answer).is_err() {
            return ExitCode::SUCCESS;
        }
    }
}

fn clear_cloexec(fd: RawFd) {
    // SAFETY: F_SETFD on a descriptor this process holds; no memory is passed.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
}

/// One request: `Some(descriptors)`, or `None` at EOF.
fn receive(sock: BorrowedFd<'_>) -> io::Result<Option<Vec<OwnedFd>>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(got) = cmsg {
            // SAFETY: the kernel just installed these descriptors in this process.
            fds.extend(
                got.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if msg.bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    Ok(Some(fds))
}

fn reply(sock: BorrowedFd<'_>, value: i32) -> io::Result<()> {
    let bytes = value.to_le_bytes();
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&bytes)],
        &[],
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// reefd's handle on the launcher.
pub(crate) struct Launcher {
    /// `None` only while dropping.
    sock: Option<OwnedFd>,
    process: Child,
}

impl Launcher {
    /// Start the launcher for `cmd` (in the calling thread's network namespace, which its
    /// shims inherit).
    pub(crate) fn start(cmd: &ShimCommand) -> io::Result<Launcher> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let process = Command::new(&cmd.program)
            .args(&cmd.args)
            .arg(LAUNCHER_ARG)
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Launcher {
            sock: Some(ours),
            process,
        })
    }

    /// A new shim waiting for its spec: its pid, and our ends of its stdin and stdout.
    pub(crate) fn shim(&self) -> io::Result<(i32, OwnedFd, OwnedFd)> {
        let sock = self.sock.as_ref().expect("open until dropped");
        let (stdin_r, stdin_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (stdout_r, stdout_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let fds = [stdin_r.as_raw_fd(), stdout_w.as_raw_fd()];
        sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&[1])],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        drop((stdin_r, stdout_w));
        let mut answer = [0u8; 4];
        let got = nix::sys::socket::recv(sock.as_raw_fd(), &mut answer, MsgFlags::empty())?;
        if got != 4 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the shim launcher is gone",
            ));
        }
        match i32::from_le_bytes(answer) {
            pid if pid > 0 => Ok((pid, stdin_w, stdout_r)),
            errno => Err(io::Error::from_raw_os_error(-errno)),
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        // Closing our end is its EOF: it exits; reap it.
        drop(self.sock.take());
        let _ = self.process.wait();
    }
}
