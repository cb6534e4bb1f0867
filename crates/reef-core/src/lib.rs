//! reef's pure core.
//!
//! Everything here is a plain function of its inputs: no file, socket, process, clock or
//! randomness. The daemon reads the world (config files, the host's addresses and routes,
//! random bytes, the time) and passes it in; the core decides and returns data (records,
//! rendered files, plans of kernel operations). That split keeps the decisions unit-testable
//! without root and keeps the kernel layer free of policy.
#![deny(missing_docs)]

pub mod cluster;
pub mod config;
pub mod driver;
pub mod etc;
pub mod firewall;
pub mod ipam;
pub mod links;
pub mod model;
pub mod names;
pub mod nic;
pub mod orphans;
pub mod plan;
pub mod ports;
