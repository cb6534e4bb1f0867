//! reefd: the daemon. `daemon` wires configuration, store, kernel executor and engine
//! together and serves the API; `engine` owns every operation; `api` is the HTTP surface.

pub mod api;
pub mod clock;
pub mod daemon;
pub mod engine;
pub mod flags;
pub mod host;
pub mod tls;

/// First argument that makes the reefd binary act as a container shim.
pub const SHIM_ARG: &str = "__reef-shim";
