//! reefd: the daemon. `daemon` wires configuration, store, kernel executor and engine
//! (the `reef-engine` crate, which owns every operation) together and serves the API;
//! `api` is the HTTP surface.

pub mod api;
pub mod daemon;
pub mod flags;
pub mod host;
pub mod tls;

pub use reef_engine::SHIM_ARG;
