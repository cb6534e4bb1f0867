//! The daemon side of starting a container: run the shim with the spec on its stdin and wait
//! for its one-line report (started, with the container's pid, or the error).
//!
//! Starting the shim (a `fork`+`exec` of a program that then loads its libraries) is the
//! largest single cost of a container start, and none of it depends on the container: the
//! shim does nothing until it has read its whole spec. [`SpareShim`] therefore keeps one
//! shim started ahead of time, idle on its stdin, hands it the next spec, and starts the
//! next spare on a thread of its own, off the start's path.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::RuntimeError;
use crate::spec::{LaunchSpec, Launched, Report, ShimCommand};

/// Start the shim and return once the container's process exists with its namespaces
/// joined, hostname set, files mounted and program found (and, unless `wait_for_attach`,
/// exec'd) — or the error from any of those steps, in Docker's wording.
///
/// Blocking. The shim is a child of the caller (reap it with [`crate::wait_shim`]); it runs
/// in the network namespace of the calling thread, which is also the container's when
/// `spec.netns` is `None`.
pub fn launch(spec: &LaunchSpec, shim: &ShimCommand) -> Result<Launched, RuntimeError> {
    let json = encode(spec)?;
    launch_on(spec, &json, spawn(shim)?)
}

fn encode(spec: &LaunchSpec) -> Result<Vec<u8>, RuntimeError> {
    if spec.argv.is_empty() {
        return Err(RuntimeError::InvalidSpec("no command specified".into()));
    }
    serde_json::to_vec(spec)
        .map_err(|e| RuntimeError::InvalidSpec(format!("encoding the spec: {e}")))
}

/// A shim process waiting for its spec on stdin.
fn spawn(shim: &ShimCommand) -> Result<Child, RuntimeError> {
    Command::new(&shim.program)
        .args(&shim.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| RuntimeError::SpawnShim {
            program: shim.program.clone(),
            source,
        })
}

/// One shim kept started ahead of time (see the module documentation).
///
/// The spare is a child of this process, idle in `read(2)` on its stdin: it has touched
/// nothing yet, and when this process dies its stdin reaches EOF and it exits without
/// doing anything. It is started by a thread of its own, which stays in the network
/// namespace this `SpareShim` was created in: a spare therefore runs in that namespace,
/// which is the container's when `spec.netns` is `None`. Create it from a thread in the
/// daemon's own namespace.
pub struct SpareShim {
    cmd: ShimCommand,
    slot: Mutex<Option<Child>>,
    wanted: Condvar,
}

impl SpareShim {
    /// Start keeping a spare shim of `cmd`; the first one is started at once, in the
    /// background.
    pub fn start(cmd: ShimCommand) -> std::io::Result<Arc<SpareShim>> {
        let spare = Arc::new(SpareShim {
            cmd,
            slot: Mutex::new(None),
            wanted: Condvar::new(),
        });
        let keeper = Arc::clone(&spare);
        std::thread::Builder::new()
            .name("reef-spare-shim".into())
            .spawn(move || keeper.keep())?;
        Ok(spare)
    }

    /// [`launch`], on the spare shim when one is ready (on a fresh one otherwise).
    pub fn launch(&self, spec: &LaunchSpec) -> Result<Launched, RuntimeError> {
        let json = encode(spec)?;
        let launched = match self.take() {
            Some(child) => launch_on(spec, &json, child),
            None => spawn(&self.cmd).and_then(|child| launch_on(spec, &json, child)),
        };
        // The next spare starts now, while the caller records the start (its own CPU work
        // runs in the new process), rather than competing with this launch.
        self.wanted.notify_one();
        launched
    }

    /// The spare, if there is one and it is still waiting.
    fn take(&self) -> Option<Child> {
        let mut child = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        match child.try_wait() {
            // Still waiting for its spec.
            Ok(None) => Some(child),
            // It died idle (someone killed it): it had done nothing, and is reaped now.
            _ => None,
        }
    }

    /// The keeper thread: whenever the slot is empty, start a spare into it.
    fn keep(&self) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while slot.is_some() {
                slot = self.wanted.wait(slot).unwrap_or_else(|p| p.into_inner());
            }
            drop(slot);
            let spawned = spawn(&self.cmd);
            if let Err(e) = &spawned {
                // Starts spawn a shim of their own meanwhile; try again a little later.
                tracing::warn!(error = %e, "cannot start a spare shim");
                std::thread::sleep(Duration::from_secs(1));
            }
            slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            *slot = spawned.ok();
        }
    }
}

/// Hand `json` (the encoded `spec`) to `child`, a shim that has read no spec yet, and wait
/// for its report.
fn launch_on(spec: &LaunchSpec, json: &[u8], mut child: Child) -> Result<Launched, RuntimeError> {
    // The shim reads the whole spec before doing anything, so writing all of it first
    // cannot deadlock against its report.
    let write_result = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(json))
        .unwrap_or(Ok(()));
    let mut line = Vec::new();
    let read_result = match child.stdout.take() {
        Some(stdout) => BufReader::new(stdout).read_until(b'\n', &mut line),
        None => Ok(0),
    };

    match serde_json::from_slice::<Report>(&line) {
        Ok(Report::Started {
            pid,
            pid_start_time,
        }) => {
            let shim_pid = child.id() as i32;
            tracing::debug!(id = %spec.id, shim_pid, pid, "container started");
            // The shim lives on; dropping `child` neither kills nor reaps it.
            Ok(Launched {
                shim_pid,
                pid,
                pid_start_time,
            })
        }
        Ok(Report::Failed { kind, message }) => {
            // The shim exits right after reporting a failure.
            let _ = child.wait();
            Err(RuntimeError::Start { kind, message })
        }
        Err(_) => {
            let _ = child.kill();
            let status = child.wait();
            let mut msg = match status {
                Ok(s) => format!("exited ({s}) without reporting"),
                Err(e) => format!("exited without reporting ({e})"),
            };
            if let Err(e) = write_result {
                msg.push_str(&format!("; writing the spec: {e}"));
            }
            if let Err(e) = read_result {
                msg.push_str(&format!("; reading its report: {e}"));
            }
            if !line.is_empty() {
                msg.push_str(&format!(
                    "; it said: {:?}",
                    String::from_utf8_lossy(&line).trim_end()
                ));
            }
            Err(RuntimeError::Shim(msg))
        }
    }
}
