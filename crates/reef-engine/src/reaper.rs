//! Threads that delete things in the background: host links (the kernel takes tens of
//! milliseconds to delete a veth, RCU grace periods) and the directories of removed
//! containers (unlinking on a journalled filesystem can wait for the journal), which would
//! otherwise be paid by every stop, `rm` and `rm -f` while the engine lock is held.
//!
//! Nothing waits for them: a removed container's directories belong to no record any more,
//! and if reefd dies before they are gone, start-up removes them as orphans.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};

use reef_kernel::LinkReaper;

use super::Result;

/// Handle to the reaper threads.
pub(crate) struct Reaper {
    links: mpsc::Sender<String>,
    /// Links queued and not deleted yet.
    pending_links: Arc<Mutex<HashSet<String>>>,
    dirs: mpsc::Sender<PathBuf>,
    /// Directories queued and not removed yet.
    pending_dirs: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Reaper {
    /// Start the threads; the link one deletes with `delete`.
    pub(crate) fn start(mut delete: LinkReaper) -> Result<Reaper> {
        let (links, rx) = mpsc::channel::<String>();
        let pending_links: Arc<Mutex<HashSet<String>>> = Arc::default();
        let pending = Arc::clone(&pending_links);
        std::thread::Builder::new()
            .name("reef-reaper".into())
            .spawn(move || {
                for name in rx {
                    match delete(&name) {
                        Ok(()) => tracing::debug!(link = %name, "reaped"),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => tracing::warn!(link = %name, error = %e, "cannot delete link"),
                    }
                    pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&name);
                }
            })
            .map_err(super::io_err("start the reaper thread"))?;
        let pending_dirs: Arc<Mutex<HashSet<PathBuf>>> = Arc::default();
        let pending = Arc::clone(&pending_dirs);
        let (dirs, rx) = mpsc::channel::<PathBuf>();
        std::thread::Builder::new()
            .name("reef-reaper-fs".into())
            .spawn(move || {
                for dir in rx {
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove directory");
                        }
                    }
                    pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&dir);
                }
            })
            .map_err(super::io_err("start the reaper thread"))?;
        Ok(Reaper {
            links,
            pending_links,
            dirs,
            pending_dirs,
        })
    }

    /// Queue a host link for deletion; gone already is fine.
    pub(crate) fn delete_link(&self, name: String) {
        let mut pending = self.pending_links.lock().unwrap_or_else(|p| p.into_inner());
        pending.insert(name.clone());
        if let Err(mpsc::SendError(name)) = self.links.send(name) {
            pending.remove(&name);
        }
    }

    /// True while link `name` is queued for deletion (it is no leftover).
    pub(crate) fn link_pending(&self, name: &str) -> bool {
        self.pending_links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// Queue a directory for removal (with everything in it); gone already is fine.
    pub(crate) fn remove_dir(&self, dir: PathBuf) {
        self.pending_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dir.clone());
        if let Err(mpsc::SendError(dir)) = self.dirs.send(dir) {
            // The thread is gone: remove it here.
            let _ = std::fs::remove_dir_all(&dir);
            self.pending_dirs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&dir);
        }
    }

    /// True while `dir` is queued for removal (it is no leftover).
    pub(crate) fn dir_pending(&self, dir: &std::path::Path) -> bool {
        self.pending_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(dir)
    }
}
