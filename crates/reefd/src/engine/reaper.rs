//! A thread that deletes host links in the background. The kernel takes tens of
//! milliseconds to delete a veth (RCU grace periods), which would otherwise be paid by
//! every stop and `rm -f` while the engine lock is held.

use std::sync::mpsc;

use reef_kernel::Netlink;

use super::Result;

/// Handle to the reaper thread.
pub(crate) struct Reaper {
    tx: mpsc::Sender<String>,
}

impl Reaper {
    /// Start the thread with its own netlink socket in the calling thread's (the host's)
    /// namespace.
    pub(crate) fn start() -> Result<Reaper> {
        let mut nl = Netlink::open()?;
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("reef-reaper".into())
            .spawn(move || {
                for name in rx {
                    match nl.delete_link(&name) {
                        Ok(()) => tracing::debug!(link = %name, "reaped"),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => tracing::warn!(link = %name, error = %e, "cannot delete link"),
                    }
                }
            })
            .map_err(super::io_err("start the reaper thread"))?;
        Ok(Reaper { tx })
    }

    /// Queue a host link for deletion; gone already is fine.
    pub(crate) fn delete_link(&self, name: String) {
        let _ = self.tx.send(name);
    }
}
