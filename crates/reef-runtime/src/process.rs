//! Looking at processes from outside: start times (to recognise a process after a restart),
//! liveness, signals, and waiting for a shim to exit through a pidfd.
#![allow(unsafe_code)]

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::error::RuntimeError;

/// State (field 3) and start time (field 22) from /proc/PID/stat.
fn stat_state_and_start(pid: i32) -> Option<(u8, u64)> {
    if pid <= 0 {
        return None;
    }
    let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Parse state and start time out of a /proc/PID/stat line; the command name (field 2) is
/// in parentheses and may itself contain spaces and parentheses, so split after the last `)`.
fn parse_stat(stat: &[u8]) -> Option<(u8, u64)> {
    let close = stat.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    // Field 3 is the state; field 22 is 19 further on.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// /proc/PID/stat field 22 (start time in clock ticks since boot), to recognise our process
/// after a restart despite pid reuse.
pub fn pid_start_time(pid: i32) -> Option<u64> {
    stat_state_and_start(pid).map(|(_, start)| start)
}

/// True when `pid` exists, is not a zombie, and has the given start time.
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    matches!(stat_state_and_start(pid), Some((state, start)) if start == start_time && state != b'Z' && state != b'X')
}

/// Send a signal to the container process (never to a group: `pid` must be positive).
pub fn signal(pid: i32, sig: Signal) -> Result<(), RuntimeError> {
    if pid <= 0 {
        return Err(RuntimeError::NoSuchProcess(pid));
    }
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) => Ok(()),
        Err(Errno::ESRCH) => Err(RuntimeError::NoSuchProcess(pid)),
        Err(source) => Err(RuntimeError::Signal {
            pid,
            signal: sig,
            source,
        }),
    }
}

/// SIGKILL to the process of `pidfd` (never to a later process that reused its pid).
pub(crate) fn pidfd_kill(pidfd: &OwnedFd) {
    // SAFETY: pidfd_send_signal on a pidfd we own; no siginfo is passed.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

/// A pidfd for `pid` (CLOEXEC).
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is
    // passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd_open returned a bad fd"))?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reap `pid` if it is an exited child of ours; not our child (ECHILD) or still running is
/// fine.
fn reap(pid: i32) {
    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}

/// Resolve when the shim with this pid has exited. Works for non-children too (e.g. after
/// reefd restarted); reaps it when it is our child. Resolves at once when the pid is gone.
/// Needs a tokio runtime with I/O enabled.
pub async fn wait_shim(shim_pid: i32) -> io::Result<()> {
    if shim_pid <= 0 {
        return Ok(());
    }
    let pidfd = match pidfd_open(shim_pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            reap(shim_pid);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open and refers to this pidfd
    // for the AsyncFd's whole life.
    let fd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }?;
    let _ready = fd.readable().await?;
    reap(shim_pid);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_parens_and_spaces() {
        let line = b"1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
        assert_eq!(parse_stat(line), Some((b'S', 98765)));
        assert_eq!(parse_stat(b"1 (x) R"), None);
    }

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let start = pid_start_time(me).unwrap();
        assert!(process_alive(me, start));
        assert!(!process_alive(me, start + 1));
        assert!(!process_alive(0, start));
        assert!(!process_alive(-1, start));
    }

    #[test]
    fn signal_refuses_groups() {
        assert!(matches!(
            signal(0, Signal::SIGKILL),
            Err(RuntimeError::NoSuchProcess(0))
        ));
        assert!(matches!(
            signal(-1, Signal::SIGKILL),
            Err(RuntimeError::NoSuchProcess(-1))
        ));
    }
}
