//! The attach socket: its path, and binding/connecting even when the path is longer than a
//! unix socket address allows (then through `/proc/self/fd/<dir fd>/attach.sock`).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::ATTACH_SOCKET;

/// Longest path that fits `sockaddr_un.sun_path` with its terminating NUL.
const SUN_PATH_MAX: usize = 107;

/// Path of the attach socket of a container.
pub fn attach_socket(state_dir: &Path) -> PathBuf {
    state_dir.join(ATTACH_SOCKET)
}

/// Connect to a container's attach socket (blocking `std` stream; for tokio use
/// `set_nonblocking(true)` and `tokio::net::UnixStream::from_std`). Works for state
/// directories too long for a socket address.
///
/// Protocol: the shim sends the container's output (multiplexed frames, see
/// [`crate::frames`]; raw bytes with a tty); bytes sent go to the container's stdin when it
/// was started with `open_stdin`; shutting down the write side closes the container's stdin
/// (without a tty). The shim closes the connection once the container has exited and its
/// output is sent.
pub fn connect_attach(state_dir: &Path) -> io::Result<UnixStream> {
    with_short_path(state_dir, |p| UnixStream::connect(p))
}

/// Bind the attach socket, replacing a stale one.
pub(crate) fn bind_attach(state_dir: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(attach_socket(state_dir)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    with_short_path(state_dir, |p| UnixListener::bind(p))
}

fn with_short_path<T>(state_dir: &Path, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    let path = attach_socket(state_dir);
    if path.as_os_str().as_bytes().len() <= SUN_PATH_MAX {
        return f(&path);
    }
    let dir = File::open(state_dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}/{ATTACH_SOCKET}", dir.as_raw_fd()));
    let result = f(&short);
    drop(dir);
    result
}
