//! reef's embedded DNS server: what Docker's resolver at 127.0.0.11 is to Docker, but
//! listening on each user network's gateway address.
//!
//! The engine describes every container attachment in a [`DnsState`] and hands it to
//! [`DnsServer::publish`] when networks change, and one container's in a [`ContainerDns`]
//! to [`DnsServer::update_container`] when that container changes; the server swaps its
//! lookup [`Table`] at once and keeps answering. A query is scoped by where it came from: the client is the
//! endpoint whose address is the query's source on the network whose gateway the query
//! arrived on, and it sees the names of every network its container is attached to.
//! Container names, short ids and aliases are answered locally (A, PTR; AAAA and other
//! types get an empty answer); unknown single-label names get NXDOMAIN; everything else
//! goes to the client's container's upstream servers over the transport it came on.
//! Clients the server does not know get nothing (UDP) or REFUSED (TCP).
//!
//! The rules live in one pure function, [`answer`], over hickory-proto messages; the
//! server itself runs the same rules on a zero-allocation wire path, which
//! [`handle_packet`] exposes over raw bytes (for the fuzz tests in `tests/fuzz_dns.rs`).

#![deny(missing_docs)]

mod answer;
mod forward;
mod server;
mod table;
mod wire;

pub use answer::{answer, Decision, Transport};
pub use server::{handle_packet, DnsServer, PacketAction};
pub use table::Table;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

/// TTL of every locally answered record, in seconds (Docker uses 600 too).
pub const LOCAL_TTL: u32 = 600;

/// How long one upstream server gets to answer a forwarded query.
pub const UPSTREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a TCP connection may stay idle before the server closes it.
pub const TCP_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How many TCP connections one listening address serves at once; more are closed at once.
pub const MAX_TCP_CONNECTIONS: usize = 256;

/// One container attachment the server knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEndpoint {
    /// The container's full id (64 hex digits).
    pub container_id: String,
    /// The network this attachment is on.
    pub network_id: String,
    /// The container's address on that network.
    pub ip: Ipv4Addr,
    /// The names this attachment answers to: the container name first (it is also the PTR
    /// answer), then its 12-hex short id and its network aliases. Matched
    /// case-insensitively; stored lower case (the table lower-cases them anyway).
    pub names: Vec<String>,
}

/// What the server knows of one container, replaced by [`DnsServer::update_container`]:
/// its attachments on networks the server knows and its upstream servers.
#[derive(Debug, Clone, Default)]
pub struct ContainerDns {
    /// Its attachments (each one's `container_id` is the container's).
    pub endpoints: Vec<DnsEndpoint>,
    /// Its upstream servers, as in [`DnsState::upstreams`].
    pub upstreams: Vec<SocketAddr>,
}

/// Everything the server knows, replaced as a whole by [`DnsServer::publish`].
#[derive(Debug, Clone, Default)]
pub struct DnsState {
    /// Every container attachment.
    pub endpoints: Vec<DnsEndpoint>,
    /// Per network id: the gateway address the server listens on for it.
    pub gateways: HashMap<String, Ipv4Addr>,
    /// Per container id: its upstream servers (its `--dns`, else the host's resolv.conf
    /// nameservers, with port 53).
    pub upstreams: HashMap<String, Vec<SocketAddr>>,
}
