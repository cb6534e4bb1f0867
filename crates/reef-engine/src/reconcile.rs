//! Start-up reconciliation: make the kernel and the disk agree with the store.
//!
//! After a crash (even `kill -9` mid-operation) the store says what each container was
//! doing. Running containers whose process still lives are re-adopted (missing veths are
//! re-created); ones whose process died meanwhile are reaped; half-done starts are undone.
//! Then anything carrying reef's mark that no record accounts for is removed: host veths with
//! a `reef:` alias, sandbox mounts, state directories.

use std::collections::BTreeSet;
use std::sync::Arc;

use reef_core::model::{Container, Network, Status};
use reef_core::orphans::{self, HostLink};

use super::{Engine, Inner, Result};

impl Engine {
    pub(crate) fn reconcile(self: &Arc<Self>) -> Result<()> {
        let mut inner = self.lock();
        // A network whose bridge is gone (a crash mid-create, someone's `ip link del`) gets
        // it back first: containers and the firewall refer to it.
        for fixed in self.repair_bridges(&mut inner) {
            tracing::warn!("repaired at start-up: {fixed}");
        }
        let containers: Vec<Container> = inner.containers.values().cloned().collect();
        let mut watch = Vec::new();
        for c in containers {
            match c.status {
                Status::Running => {
                    let alive = matches!((c.pid, c.pid_start_time), (Some(p), Some(st)) if reef_runtime::process_alive(p, st));
                    if alive {
                        for fixed in self.repair_container(&mut inner, &c, true) {
                            tracing::warn!(id = %c.short_id(), "repaired: {fixed}");
                        }
                        if c.endpoints.iter().any(|e| e.pending) {
                            let mut done = c.clone();
                            done.endpoints.iter_mut().for_each(|e| e.pending = false);
                            self.put(&mut inner, done)?;
                        }
                        if let Err(e) =
                            self.proxies
                                .start(&self.rt, &c.id, &super::proxy::relays_of(&c))
                        {
                            tracing::warn!(id = %c.short_id(), error = %e, "cannot restore IPv6 port relays");
                        }
                        if let Some(shim) = c.shim_pid {
                            watch.push((c.id.clone(), c.start_count, shim));
                        }
                        tracing::info!(id = %c.short_id(), "re-adopted running container");
                    } else {
                        let code = self.collect_exit_code(&c);
                        tracing::info!(id = %c.short_id(), code, "container exited while reefd was down");
                        self.finish_exit(&mut inner, c, code)?;
                    }
                }
                Status::Starting => {
                    tracing::info!(id = %c.short_id(), "undoing an interrupted start");
                    self.kill_orphan_shim(&c.id);
                    self.teardown(&mut inner, &c);
                    let mut back = c;
                    back.status = if back.start_count > 1 {
                        Status::Exited
                    } else {
                        Status::Created
                    };
                    back.sandbox = None;
                    back.endpoints.clear();
                    back.pid = None;
                    back.shim_pid = None;
                    self.put(&mut inner, back)?;
                }
                Status::Created | Status::Exited => {}
            }
        }
        for removed in self.remove_orphans(&mut inner, true)? {
            tracing::info!("removed {removed}");
        }
        drop(inner);
        for (id, count, shim) in watch {
            self.watch_exit(id, count, shim);
        }
        Ok(())
    }

    /// A start that was cut off may have left a shim and its child running.
    fn kill_orphan_shim(&self, id: &str) {
        let pid_file = self.paths.state_dir(id).join("shim.pid");
        let Some(shim) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            return;
        };
        let children = std::fs::read_to_string(format!("/proc/{shim}/task/{shim}/children"))
            .unwrap_or_default();
        let is_shim = std::fs::read_to_string(format!("/proc/{shim}/cmdline"))
            // The pid comes from this container's own state dir; the command line confirms it
            // is still a shim (the spec travels on stdin, so the id is not in it).
            .map(|c| c.contains(crate::SHIM_ARG))
            .unwrap_or(false);
        if !is_shim {
            return;
        }
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = reef_runtime::signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = reef_runtime::signal(shim, nix::sys::signal::Signal::SIGKILL);
    }

    /// Leftovers carrying reef's mark that no record accounts for (kernel objects and
    /// files); removed when `fix`.
    pub(crate) fn remove_orphans(&self, inner: &mut Inner, fix: bool) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let links: Vec<HostLink> = inner
            .exec
            .links()?
            .into_iter()
            .map(|l| HostLink {
                name: l.name,
                kind: l.kind,
                alias: l.alias,
            })
            .collect();
        let sandboxes: Vec<std::path::PathBuf> = std::fs::read_dir(self.paths.netns_dir())
            .map(|dir| dir.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        let networks: Vec<&Network> = inner.networks.values().collect();
        let containers: Vec<&Container> = inner.containers.values().collect();
        let leftovers = orphans::find(&networks, &containers, &links, &sandboxes, &|name| {
            self.reaper.link_pending(name)
        });
        for o in leftovers {
            found.push(o.what);
            if fix {
                if let Err(e) = inner.exec.apply(&o.op) {
                    tracing::warn!(op = %o.op, error = %e, "cannot remove a leftover");
                }
            }
        }
        let known: BTreeSet<&str> = inner.containers.keys().map(String::as_str).collect();
        let running: BTreeSet<&str> = inner
            .containers
            .values()
            .filter(|c| c.is_running())
            .map(|c| c.id.as_str())
            .collect();
        for (dir, keep) in [
            (self.paths.exec_root.join("containers"), &running),
            (self.paths.data_root.join("containers"), &known),
        ] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if !keep.contains(name.as_str()) && !self.reaper.dir_pending(&entry.path()) {
                    found.push(format!("orphaned directory {}", entry.path().display()));
                    if fix {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
        }
        Ok(found)
    }
}
