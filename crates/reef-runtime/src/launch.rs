//! The daemon side of starting a container: run the shim with the spec on its stdin and wait
//! for its one-line report (started, with the container's pid, or the error).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

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
    if spec.argv.is_empty() {
        return Err(RuntimeError::InvalidSpec("no command specified".into()));
    }
    let json = serde_json::to_vec(spec)
        .map_err(|e| RuntimeError::InvalidSpec(format!("encoding the spec: {e}")))?;

    let mut child = Command::new(&shim.program)
        .args(&shim.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| RuntimeError::SpawnShim {
            program: shim.program.clone(),
            source,
        })?;

    // The shim reads the whole spec before doing anything, so writing all of it first
    // cannot deadlock against its report.
    let write_result = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(&json))
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
