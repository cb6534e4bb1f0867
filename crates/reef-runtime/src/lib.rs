//! reef's container processes.
//!
//! A container is a process tree in its own network, UTS and mount namespaces on the host's
//! filesystem. Each one is supervised by a small *shim* process (one per container) that
//! survives the daemon: it forks the container child, collects its output into a log in
//! Docker's multiplexed stream format, serves attach clients on a unix socket and records the
//! exit code. This crate owns both sides of that arrangement:
//!
//! - the daemon side: [`launch`] (start a shim and wait until the container's process exists
//!   with its namespaces, hostname and `/etc` files set up), [`wait_shim`], [`read_exit`],
//!   [`signal`], [`pid_start_time`] / [`process_alive`] (recognise a process after a restart);
//! - the shim side: [`shim_main`], which the `reef-shim` binary (and `reefd`, when re-executed
//!   as the shim) calls first thing in `main`.
//!
//! Files in a container's state directory: `shim.pid`, `attach.sock`, `exit` (see
//! [`SHIM_PID_FILE`], [`ATTACH_SOCKET`], [`EXIT_FILE`]).

mod attach;
mod child;
mod error;
pub mod frames;
mod launch;
mod launcher;
mod lookpath;
mod process;
mod shim;
mod spec;

pub use attach::{attach_socket, connect_attach};
pub use error::{RuntimeError, StartErrorKind};
pub use launch::{launch, SpareShim};
pub use process::{pid_start_time, process_alive, signal, wait_shim};
pub use shim::shim_main;

/// Shim argument naming the daemon's sandbox directory (followed by its path): the shim
/// unmounts it from a mount namespace of its own before its spec arrives.
pub const SANDBOX_DIR_ARG: &str = "--sandbox-dir";
pub use spec::{
    read_exit, read_shim_pid, EtcFiles, ExitRecord, LaunchSpec, Launched, ShimCommand, DEFAULT_PATH,
};

/// Name of the attach socket in a container's state directory.
pub const ATTACH_SOCKET: &str = "attach.sock";
/// Name of the file holding the shim's pid in a container's state directory.
pub const SHIM_PID_FILE: &str = "shim.pid";
/// Name of the exit record (JSON [`ExitRecord`]) in a container's state directory.
pub const EXIT_FILE: &str = "exit";
