//! Test harness: every test body runs on a thread with network and mount namespaces of
//! its own, so nothing it creates can touch the machine's root namespace, and whatever a
//! failing test leaves behind dies with the thread. Temp dirs (`/tmp/rk-<pid>-<n>`) are
//! still cleaned up by a drop guard, unmounting the sandboxes bound under them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Panics (never skips) when not root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "reef-kernel tests need root (CAP_NET_ADMIN and CAP_SYS_ADMIN for netns, links and \
         mounts); run them as root"
    );
}

/// Run `body` on a new thread inside fresh network and mount namespaces. The mount
/// namespace is made a slave of the original, so mounts made here never propagate out.
pub fn isolated<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    require_root();
    let handle = std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS)
            .expect("unshare(CLONE_NEWNET | CLONE_NEWNS) failed: root in a user ns without it?");
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&str>,
        )
        .expect("mount --make-rslave / in the test's private mount namespace");
        body()
    });
    match handle.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `/tmp/rk-<pid>-<n>`, removed on drop together with any netns bound in it and any mount
/// on the directory itself.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = PathBuf::from(format!("/tmp/rk-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            for e in entries.flatten() {
                let _ = reef_kernel::netns::remove_bound(&e.path());
            }
        }
        // Anything still mounted under it (prepare_netns_dir bind-mounts directories onto
        // themselves), deepest first.
        let mut mounts = mounts_under(&self.path);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for m in mounts {
            let _ = umount2(&m, MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Mount points at or below `path`, from /proc/thread-self/mountinfo.
pub fn mounts_under(path: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").expect("mountinfo");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(path))
        .collect()
}
