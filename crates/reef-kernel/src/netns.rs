//! Network namespaces: handles, running code inside one, and sandboxes (namespaces kept
//! alive by a bind mount, as `ip netns add` does).
//!
//! The network namespace is a property of a thread, not of the process. Code here never
//! calls `setns` or `unshare` on the caller's thread: it spawns a short-lived thread, moves
//! that thread, does the work (typically opening a socket, which stays tied to the
//! namespace it was opened in) and lets the thread end. That keeps it safe to call from a
//! tokio blocking section or from any thread of the daemon.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::KernelError;

/// The calling thread's network namespace (`/proc/self` would name the main thread's).
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// An open network namespace. Holding it keeps the namespace alive.
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
}

impl Netns {
    /// The calling thread's network namespace.
    pub fn current() -> Result<Netns, KernelError> {
        Netns::open(Path::new(THREAD_NETNS))
    }

    /// Open a namespace file (`/proc/<pid>/ns/net` or a bind mount of one). A path that
    /// exists but holds no namespace (a sandbox file left unmounted) fails with `ENOENT`
    /// like a missing one: either way there is no namespace there.
    pub fn open(path: &Path) -> Result<Netns, KernelError> {
        let op = || format!("open netns {}", path.display());
        let file = File::open(path).map_err(|e| KernelError::io(op(), e))?;
        let fs = nix::sys::statfs::fstatfs(&file).map_err(|e| KernelError::errno_io(op(), e))?;
        if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
            return Err(KernelError::io(
                format!("{} (not a namespace mount)", op()),
                io::Error::from_raw_os_error(libc::ENOENT),
            ));
        }
        Ok(Netns { fd: file.into() })
    }

    /// The namespace file descriptor.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Run `f` on a new thread that has joined this namespace; the caller's thread never
    /// changes namespace. The thread ends when `f` returns, so anything `f` opens (a socket)
    /// stays bound to this namespace while nothing else is left in it. A panic in `f` is
    /// resumed on the caller's thread.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, KernelError> {
        let fd = self.fd.as_fd();
        std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .name("reef-netns".into())
                .spawn_scoped(s, move || -> Result<T, KernelError> {
                    setns(fd, CloneFlags::CLONE_NEWNET)
                        .map_err(|e| KernelError::errno_io("setns(CLONE_NEWNET)", e))?;
                    Ok(f())
                })
                .map_err(|e| KernelError::io("spawn netns thread", e))?;
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// True when both handles name the same namespace.
    pub fn same_as(&self, other: &Netns) -> Result<bool, KernelError> {
        Ok(fd_identity(self.as_fd())? == fd_identity(other.as_fd())?)
    }

    /// True when the calling thread is in this namespace.
    pub fn is_current(&self) -> Result<bool, KernelError> {
        let meta = fs::metadata(THREAD_NETNS)
            .map_err(|e| KernelError::io(format!("stat {THREAD_NETNS}"), e))?;
        Ok(fd_identity(self.as_fd())? == (meta.dev(), meta.ino()))
    }
}

fn fd_identity(fd: BorrowedFd<'_>) -> Result<(u64, u64), KernelError> {
    let st = nix::sys::stat::fstat(fd).map_err(|e| KernelError::errno_io("fstat netns", e))?;
    Ok((st.st_dev, st.st_ino))
}

/// Make `dir` a mount point with shared propagation, as `ip netns add` does for
/// `/run/netns`: bind it onto itself if it is not a mount point yet, then mark it shared.
/// Netns bind mounts made under it then also appear in mount namespaces created later
/// (containers started after their sandbox). Creates the directory; idempotent.
pub fn prepare_netns_dir(dir: &Path) -> Result<(), KernelError> {
    fs::create_dir_all(dir)
        .map_err(|e| KernelError::io(format!("mkdir -p {}", dir.display()), e))?;
    let make_shared = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match make_shared() {
        Ok(()) => return Ok(()),
        // Not a mount point (iproute2's netns.c handles it the same way).
        Err(Errno::EINVAL) => {}
        Err(e) => {
            return Err(KernelError::errno_io(
                format!("mount --make-rshared {}", dir.display()),
                e,
            ))
        }
    }
    mount(
        Some(dir),
        dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        KernelError::errno_io(
            format!("mount --rbind {} {}", dir.display(), dir.display()),
            e,
        )
    })?;
    make_shared()
        .map_err(|e| KernelError::errno_io(format!("mount --make-rshared {}", dir.display()), e))
}

/// A new network namespace bind-mounted at `path` (the file is created). Fails with
/// `EEXIST` when a namespace is bound there already; a leftover plain file (from a crash
/// between create and mount) is reused.
pub fn create_bound(path: &Path) -> Result<Netns, KernelError> {
    Ok(create_bound_with(path, || ())?.0)
}

/// [`create_bound`], also running `f` on the thread that lives in the new namespace (so
/// a socket can be opened there without another thread).
pub(crate) fn create_bound_with<T: Send>(
    path: &Path,
    f: impl FnOnce() -> T + Send,
) -> Result<(Netns, T), KernelError> {
    let op = || format!("create netns {}", path.display());
    if is_bound(path) {
        return Err(KernelError::io(
            op(),
            io::Error::from_raw_os_error(libc::EEXIST),
        ));
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o444)
        .open(path)
        .map_err(|e| KernelError::io(op(), e))?;
    let result = std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("reef-netns-new".into())
            .spawn_scoped(s, || -> Result<(Netns, T), KernelError> {
                unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(|e| KernelError::errno_io("unshare(CLONE_NEWNET)", e))?;
                mount(
                    Some(THREAD_NETNS),
                    path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| {
                    KernelError::errno_io(
                        format!("mount --bind {THREAD_NETNS} {}", path.display()),
                        e,
                    )
                })?;
                let ns = Netns::current()?;
                Ok((ns, f()))
            })
            .map_err(|e| KernelError::io("spawn netns thread", e))?;
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    if result.is_err() {
        // Best effort: leave neither a mount nor the file behind.
        let _ = remove_bound(path);
    }
    result
}

/// Unmount a sandbox and remove its file. `Ok(())` when it is gone already.
pub fn remove_bound(path: &Path) -> Result<(), KernelError> {
    // Unmount every layer (a crash-and-retry can stack two binds on one file), and only
    // namespace mounts: a path that is some other mount point is not ours to unmount.
    for _ in 0..16 {
        if !is_bound(path) {
            break;
        }
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
            Err(e) => {
                return Err(KernelError::errno_io(
                    format!("umount {}", path.display()),
                    e,
                ))
            }
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(KernelError::io(format!("rm {}", path.display()), e)),
    }
}

/// True when `path` is currently a namespace bind mount (its filesystem is nsfs).
pub fn is_bound(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}
