//! What the daemon hands the runtime (the launch spec) and what it gets back (the launched
//! process, the exit record), plus the one-line report the shim sends `launch`.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::StartErrorKind;
use crate::{EXIT_FILE, SHIM_PID_FILE};

/// The PATH a container gets when its environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How to start the shim program: reefd re-executes itself with a hidden first argument;
/// tests use the `reef-shim` binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// Everything needed to start one container process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// Container id (64 hex).
    pub id: String,
    /// Command and arguments; the command is resolved on the PATH of `env`.
    pub argv: Vec<String>,
    /// `KEY=VALUE`; PATH and HOSTNAME (and TERM=xterm with a tty) are added when absent.
    pub env: Vec<String>,
    /// Network namespace to join (a bind-mount path or `/proc/PID/ns/net`); `None` keeps the
    /// network namespace of the thread calling [`crate::launch`] (host mode).
    pub netns: Option<PathBuf>,
    /// Hostname, set in a new UTS namespace.
    pub hostname: String,
    /// Files bind-mounted over `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` in the
    /// container's new mount namespace.
    pub etc_files: Option<EtcFiles>,
    /// Give the container a pseudo-terminal (24x80) as stdin/out/err and controlling terminal.
    pub tty: bool,
    /// Bytes from attach clients go to the container's stdin; otherwise stdin is /dev/null
    /// (with a tty: the terminal, but client input is discarded).
    pub open_stdin: bool,
    /// Hold the container right before `execve` until the first attach client connects
    /// (at most 30 s).
    pub wait_for_attach: bool,
    /// `exec-root/containers/<id>`: created if missing; holds `attach.sock`, `shim.pid`, `exit`.
    pub state_dir: PathBuf,
    /// Append-only log of the output, in Docker's multiplexed stream format.
    pub log_path: PathBuf,
}

/// Host files bind-mounted over the container's `/etc` files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcFiles {
    pub hosts: PathBuf,
    pub hostname: PathBuf,
    pub resolv_conf: PathBuf,
}

/// A started container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launched {
    /// The shim supervising it (a child of the caller until reaped by [`crate::wait_shim`]).
    pub shim_pid: i32,
    /// The container's process.
    pub pid: i32,
    /// Its start time (/proc/PID/stat field 22), to recognise it after a restart.
    pub pid_start_time: u64,
}

/// How a container ended, written by the shim to `state_dir/exit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit status, or 128 + signal number when killed by a signal (Docker's rule).
    pub exit_code: i32,
    pub finished_unix_nanos: u128,
}

/// The exit record the shim wrote, if any (and if readable).
pub fn read_exit(state_dir: &Path) -> Option<ExitRecord> {
    let bytes = fs::read(state_dir.join(EXIT_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The pid the shim wrote to `state_dir/shim.pid`, if any.
pub fn read_shim_pid(state_dir: &Path) -> Option<i32> {
    fs::read_to_string(state_dir.join(SHIM_PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
}

/// The shim's answer to `launch`: one JSON line on its stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Report {
    Started {
        pid: i32,
        pid_start_time: u64,
    },
    Failed {
        kind: StartErrorKind,
        message: String,
    },
}

impl Report {
    pub(crate) fn setup(message: impl Into<String>) -> Self {
        Report::Failed {
            kind: StartErrorKind::Setup,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_record_round_trips_with_u128() {
        let rec = ExitRecord {
            exit_code: 137,
            finished_unix_nanos: 1_700_000_000_123_456_789,
        };
        let json = serde_json::to_string(&rec).unwrap();
        assert_eq!(
            json,
            r#"{"exit_code":137,"finished_unix_nanos":1700000000123456789}"#
        );
        assert_eq!(serde_json::from_str::<ExitRecord>(&json).unwrap(), rec);
    }

    #[test]
    fn report_is_one_line() {
        let r = Report::Failed {
            kind: StartErrorKind::NotFound,
            message: "a\nb".into(),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains('\n'));
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
    }
}

/// The container's environment, as Docker builds it: PATH (default), HOSTNAME and, with a
/// tty, TERM=xterm first, each replaced in place by the spec's value for the same key; the
/// spec's other entries follow in order. An entry without `=` removes that key.
pub(crate) fn container_env(env: &[String], hostname: &str, tty: bool) -> Vec<String> {
    let mut out = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if tty {
        out.push("TERM=xterm".to_string());
    }
    for entry in env {
        let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
        let pos = out
            .iter()
            .position(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key);
        match (entry.contains('='), pos) {
            (true, Some(i)) => out[i] = entry.clone(),
            (true, None) => out.push(entry.clone()),
            (false, Some(i)) => {
                out.remove(i);
            }
            (false, None) => {}
        }
    }
    out
}

/// The value of PATH in a `KEY=VALUE` list ("" when absent).
pub(crate) fn env_path(env: &[String]) -> &str {
    env.iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("")
}

#[cfg(test)]
mod env_tests {
    use super::*;

    #[test]
    fn docker_defaults_and_overrides() {
        let env = container_env(&["A=1".into(), "HOSTNAME=x".into()], "c1", true);
        assert_eq!(
            env,
            vec![
                format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=x".into(),
                "TERM=xterm".into(),
                "A=1".into()
            ]
        );
        let env = container_env(&["PATH=/bin".into(), "TERM".into()], "c1", true);
        assert_eq!(env, vec!["PATH=/bin".to_string(), "HOSTNAME=c1".into()]);
        assert_eq!(env_path(&env), "/bin");
        assert_eq!(container_env(&[], "h", false).len(), 2);
    }
}
