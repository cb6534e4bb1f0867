//! Network namespaces: handles, running code inside one, and sandboxes (namespaces kept
//! alive by a bind mount, as `ip netns add` does).
//!
//! The network namespace is a property of a thread, not of the process. Code here never
//! calls `setns` or `unshare` on the caller's thread: it spawns a short-lived thread, moves
//! that thread, does the work (typically opening a socket, which stays tied to the
//! namespace it was opened in) and lets the thread end. That keeps it safe to call from a
//! tokio blocking section or from any thread of the daemon. Sandboxes, one per container
//! start, come from namespaces a thread of their own creates ahead of time ([`Spares`]).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
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
    prepare_bound(path)?;
    let result = std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("reef-netns-new".into())
            .spawn_scoped(s, || bind_new(path, f))
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

/// Refuse a path that is bound already; create the file to bind onto.
fn prepare_bound(path: &Path) -> Result<(), KernelError> {
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
    Ok(())
}

/// Move the calling thread into a new network namespace, bind it at `path` and run `f`
/// there. The thread stays in that namespace: only ever call this on a thread that is
/// about to end.
fn bind_new<T>(path: &Path, f: impl FnOnce() -> T) -> Result<(Netns, T), KernelError> {
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
        KernelError::errno_io(format!("mount --bind {THREAD_NETNS} {}", path.display()), e)
    })?;
    let ns = Netns::current()?;
    Ok((ns, f()))
}

/// Network namespaces created ahead of time, one at a time, each with a `T` (a netlink
/// socket) opened inside it, so that a container start does not wait for the kernel to
/// build a namespace (a few hundred microseconds) nor for a thread to be spawned for it.
///
/// A thread of its own, started in the namespace `home`, creates the spare: `unshare`,
/// open the namespace and run `open` there, then `setns` back home. If it ever cannot go
/// back, it ends (releasing the namespace it is in) and [`Spares::take_bound`] returns
/// `None` from then on, so the caller creates its sandbox the usual way. A spare is bound
/// nowhere and held by nothing but its file descriptor: if this process dies, it vanishes
/// with it. Taking one bind-mounts it from the caller's thread (in the caller's mount
/// namespace), exactly as [`create_bound`] would have.
pub(crate) struct Spares<T> {
    shared: std::sync::Arc<SpareSlot<T>>,
}

impl<T> std::fmt::Debug for Spares<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spares")
    }
}

struct SpareSlot<T> {
    state: std::sync::Mutex<SpareState<T>>,
    changed: std::sync::Condvar,
}

struct SpareState<T> {
    ready: Option<(Netns, T)>,
    /// The thread ended (it could not go home) or is told to end.
    ended: bool,
}

impl<T: Send + 'static> Spares<T> {
    /// Start the thread; it creates the first spare at once.
    pub(crate) fn start(home: &Netns, open: fn() -> T) -> Result<Spares<T>, KernelError> {
        let home: OwnedFd = home
            .fd
            .try_clone()
            .map_err(|e| KernelError::io("dup netns fd", e))?;
        let shared = std::sync::Arc::new(SpareSlot {
            state: std::sync::Mutex::new(SpareState {
                ready: None,
                ended: false,
            }),
            changed: std::sync::Condvar::new(),
        });
        let slot = std::sync::Arc::clone(&shared);
        std::thread::Builder::new()
            .name("reef-netns".into())
            .spawn(move || {
                let end = |why: Option<String>| {
                    if let Some(why) = why {
                        tracing::warn!("spare network namespaces: {why}; creating them on demand");
                    }
                    slot.lock().ended = true;
                    slot.changed.notify_all();
                };
                if let Err(e) = setns(&home, CloneFlags::CLONE_NEWNET) {
                    return end(Some(format!("setns to the host namespace: {e}")));
                }
                loop {
                    {
                        let mut st = slot.lock();
                        while st.ready.is_some() && !st.ended {
                            st = slot.changed.wait(st).unwrap_or_else(|p| p.into_inner());
                        }
                        if st.ended {
                            return;
                        }
                    }
                    let made = unshare(CloneFlags::CLONE_NEWNET)
                        .map_err(|e| KernelError::errno_io("unshare(CLONE_NEWNET)", e))
                        .and_then(|()| Netns::current())
                        .map(|ns| (ns, open()));
                    // Home first: the spare is held by its descriptor alone.
                    if let Err(e) = setns(&home, CloneFlags::CLONE_NEWNET) {
                        return end(Some(format!("cannot return to the host namespace: {e}")));
                    }
                    match made {
                        Ok(spare) => {
                            slot.lock().ready = Some(spare);
                        }
                        Err(e) => {
                            // Starts create their own meanwhile; try again a little later.
                            tracing::warn!(error = %e, "cannot create a spare network namespace");
                            std::thread::sleep(std::time::Duration::from_secs(1));
                        }
                    }
                }
            })
            .map_err(|e| KernelError::io("spawn netns thread", e))?;
        Ok(Spares { shared })
    }

    /// [`create_bound_with`] from the spare, when one is ready (`None`: there is none yet,
    /// or the thread has ended; create the sandbox the usual way).
    pub(crate) fn take_bound(&self, path: &Path) -> Option<Result<(Netns, T), KernelError>> {
        let spare = {
            let mut st = self.shared.lock();
            let spare = st.ready.take();
            // Its replacement is made now, while the caller goes on with the start.
            self.shared.changed.notify_all();
            spare
        }?;
        Some(bind_existing(path, spare))
    }
}

impl<T> SpareSlot<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, SpareState<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T> Drop for Spares<T> {
    fn drop(&mut self) {
        self.shared.lock().ended = true;
        self.shared.changed.notify_all();
    }
}

/// Bind the namespace of `spare` at `path` from the calling thread, which stays where it is.
fn bind_existing<T>(path: &Path, spare: (Netns, T)) -> Result<(Netns, T), KernelError> {
    prepare_bound(path)?;
    let fd = format!("/proc/self/fd/{}", spare.0.fd.as_raw_fd());
    let bound = mount(
        Some(fd.as_str()),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    );
    if let Err(e) = bound {
        let _ = remove_bound(path);
        return Err(KernelError::errno_io(
            format!("mount --bind {fd} {}", path.display()),
            e,
        ));
    }
    Ok(spare)
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
