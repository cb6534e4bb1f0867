//! Errors of the runtime: starting the shim, setting the container up, signalling it.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// Which kind of failure kept a container from starting; decides Docker's exit status for
/// `docker run` (see [`StartErrorKind::exit_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartErrorKind {
    /// The program (or its interpreter) does not exist: Docker exits 127.
    NotFound,
    /// The program exists but cannot be executed (permission denied, a directory, exec
    /// format error): Docker exits 126.
    CannotExecute,
    /// Anything else: invalid spec, namespaces, mounts, hostname, terminal, state files:
    /// Docker exits 125.
    Setup,
}

impl StartErrorKind {
    /// The exit status `docker run` reports for this kind of failure.
    pub fn exit_code(self) -> i32 {
        match self {
            StartErrorKind::NotFound => 127,
            StartErrorKind::CannotExecute => 126,
            StartErrorKind::Setup => 125,
        }
    }

    /// The kind of failure an errno from `stat`/`execve` of the program means.
    pub(crate) fn from_exec_errno(errno: Errno) -> Self {
        match errno {
            Errno::ENOENT => StartErrorKind::NotFound,
            Errno::EACCES | Errno::EISDIR | Errno::ENOEXEC | Errno::EPERM => {
                StartErrorKind::CannotExecute
            }
            _ => StartErrorKind::Setup,
        }
    }
}

/// An error of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The spec cannot be launched as given (checked before anything is started).
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    /// The shim program could not be started.
    #[error("starting the shim {program}: {source}")]
    SpawnShim {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The shim died or said something unexpected before reporting.
    #[error("shim: {0}")]
    Shim(String),
    /// The container could not be started; `message` uses Docker's wording where Docker has
    /// one (e.g. `exec: "nosuchcmd": executable file not found in $PATH`).
    #[error("{message}")]
    Start {
        kind: StartErrorKind,
        message: String,
    },
    /// No process with this pid (or it is not a valid pid).
    #[error("no such process: {0}")]
    NoSuchProcess(i32),
    /// Sending a signal failed for another reason.
    #[error("sending {signal} to process {pid}: {source}")]
    Signal {
        pid: i32,
        signal: Signal,
        #[source]
        source: Errno,
    },
}

impl RuntimeError {
    /// The exit status `docker run` would report for this error (125, 126 or 127).
    pub fn docker_exit_code(&self) -> i32 {
        match self {
            RuntimeError::Start { kind, .. } => kind.exit_code(),
            _ => 125,
        }
    }
}

/// An errno as Go (and so Docker) prints it: strerror in lower case,
/// e.g. "no such file or directory".
pub(crate) fn errno_text(errno: Errno) -> String {
    let desc = errno.desc();
    let mut chars = desc.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// [`errno_text`] for an `io::Error`, falling back to its own text.
pub(crate) fn io_error_text(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => errno_text(Errno::from_raw(code)),
        None => err.to_string(),
    }
}
