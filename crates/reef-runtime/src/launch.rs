//! The daemon side of starting a container: run the shim with the spec on its stdin and wait
//! for its one-line report (started, with the container's pid, or the error).
//!
//! Starting the shim (a `fork`+`exec` of a program that then loads its libraries) is the
//! largest single cost of a container start, and none of it depends on the container: the
//! shim does nothing until it has read its whole spec. [`SpareShim`] therefore keeps one
//! shim started ahead of time, idle on its stdin, hands it the next spec, and starts the
//! next spare on a thread of its own, off the start's path.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::RuntimeError;
use crate::launcher::Launcher;
use crate::process::{pidfd_kill, pidfd_open};
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
    launch_on(spec, &json, ShimProc::Child(spawn(shim)?))
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

/// A shim process that has read no spec yet: a child of this process, or one the
/// launcher forked (see [`crate::launcher`]).
enum ShimProc {
    Child(Child),
    Launched {
        pid: i32,
        pidfd: OwnedFd,
        stdin: Option<File>,
        stdout: Option<File>,
    },
}

impl ShimProc {
    fn pid(&self) -> i32 {
        match self {
            ShimProc::Child(c) => c.id() as i32,
            ShimProc::Launched { pid, .. } => *pid,
        }
    }

    fn take_stdin(&mut self) -> Option<File> {
        match self {
            ShimProc::Child(c) => c.stdin.take().map(|s| File::from(OwnedFd::from(s))),
            ShimProc::Launched { stdin, .. } => stdin.take(),
        }
    }

    fn take_stdout(&mut self) -> Option<File> {
        match self {
            ShimProc::Child(c) => c.stdout.take().map(|s| File::from(OwnedFd::from(s))),
            ShimProc::Launched { stdout, .. } => stdout.take(),
        }
    }

    /// Still alive (waiting for its spec).
    fn alive(&mut self) -> bool {
        match self {
            ShimProc::Child(c) => matches!(c.try_wait(), Ok(None)),
            ShimProc::Launched { pidfd, .. } => !exited(pidfd, 0),
        }
    }

    fn kill(&mut self) {
        match self {
            ShimProc::Child(c) => {
                let _ = c.kill();
            }
            ShimProc::Launched { pidfd, .. } => pidfd_kill(pidfd),
        }
    }

    /// Wait for it to exit (and reap it when it is our child): how it ended, if known.
    fn wait(&mut self) -> Option<std::process::ExitStatus> {
        match self {
            ShimProc::Child(c) => c.wait().ok(),
            ShimProc::Launched { pidfd, .. } => {
                exited(pidfd, -1);
                None
            }
        }
    }
}

/// Whether the process of `pidfd` has exited, waiting at most `timeout_ms` (-1: forever).
fn exited(pidfd: &OwnedFd, timeout_ms: i32) -> bool {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(timeout_ms).unwrap_or(PollTimeout::NONE);
    matches!(poll(&mut fds, timeout), Ok(n) if n > 0)
}

/// One shim kept started ahead of time (see the module documentation).
///
/// The spare is idle in `read(2)` on its stdin: it has touched nothing yet, and when this
/// process dies its stdin reaches EOF and it exits without doing anything. Spares come
/// from the launcher (see [`crate::launcher`]) when it runs, otherwise they are children
/// of this process. Both the launcher and the spares are started by a thread of their own,
/// which stays in the network namespace this `SpareShim` was created in: a shim therefore
/// runs in that namespace, which is the container's when `spec.netns` is `None`. Create it
/// from a thread in the daemon's own namespace.
pub struct SpareShim {
    cmd: ShimCommand,
    slot: Mutex<Option<ShimProc>>,
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
            Some(shim) => launch_on(spec, &json, shim),
            None => spawn(&self.cmd).and_then(|c| launch_on(spec, &json, ShimProc::Child(c))),
        };
        // The next spare starts now, while the caller records the start (its own CPU work
        // runs in the new process), rather than competing with this launch.
        self.wanted.notify_one();
        launched
    }

    /// The spare, if there is one and it is still waiting.
    fn take(&self) -> Option<ShimProc> {
        let mut shim = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        if shim.alive() {
            return Some(shim);
        }
        // It died idle (someone killed it): it had done nothing; reap it.
        shim.wait();
        None
    }

    /// The keeper thread: whenever the slot is empty, start a spare into it, through the
    /// launcher while it works.
    fn keep(&self) {
        let mut launcher = match Launcher::start(&self.cmd) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "no shim launcher; shims copy the daemon's mounts");
                None
            }
        };
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while slot.is_some() {
                slot = self.wanted.wait(slot).unwrap_or_else(|p| p.into_inner());
            }
            drop(slot);
            let from_launcher = launcher.as_ref().map(|l| l.shim());
            let spawned = match from_launcher {
                Some(Ok((pid, stdin, stdout))) => pidfd_open(pid)
                    .map(|pidfd| ShimProc::Launched {
                        pid,
                        pidfd,
                        stdin: Some(File::from(stdin)),
                        stdout: Some(File::from(stdout)),
                    })
                    .map_err(|source| RuntimeError::SpawnShim {
                        program: self.cmd.program.clone(),
                        source,
                    }),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the shim launcher failed; shims copy the daemon's mounts from now on");
                    launcher = None;
                    spawn(&self.cmd).map(ShimProc::Child)
                }
                None => spawn(&self.cmd).map(ShimProc::Child),
            };
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
fn launch_on(
    spec: &LaunchSpec,
    json: &[u8],
    mut child: ShimProc,
) -> Result<Launched, RuntimeError> {
    // The shim reads the whole spec before doing anything, so writing all of it first
    // cannot deadlock against its report.
    let write_result = child
        .take_stdin()
        .map(|mut stdin| stdin.write_all(json))
        .unwrap_or(Ok(()));
    let mut line = Vec::new();
    let read_result = match child.take_stdout() {
        Some(stdout) => BufReader::new(stdout).read_until(b'\n', &mut line),
        None => Ok(0),
    };

    match serde_json::from_slice::<Report>(&line) {
        Ok(Report::Started {
            pid,
            pid_start_time,
        }) => {
            let shim_pid = child.pid();
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
            child.wait();
            Err(RuntimeError::Start { kind, message })
        }
        Err(_) => {
            child.kill();
            let mut msg = match child.wait() {
                Some(s) => format!("exited ({s}) without reporting"),
                None => "exited without reporting".to_string(),
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
