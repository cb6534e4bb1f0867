//! The records reef keeps: networks, containers and their endpoints.
//!
//! These are the persisted shapes (serialised as JSON in the store), so fields are only ever
//! added with `#[serde(default)]`. They carry no kernel wire types.

use core::net::Ipv4Addr;
use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// A container network (Docker's "network" object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// 64 lowercase hex characters.
    pub id: String,
    /// Unique name (`bridge`, `host`, `none`, or a user's).
    pub name: String,
    /// `bridge`, `host` or `null` (Docker's driver names).
    pub driver: String,
    /// The bridge-driver details; `None` for `host` and `null`.
    pub bridge: Option<BridgeNetwork>,
    /// Docker's `internal`: no route out, no masquerade.
    #[serde(default)]
    pub internal: bool,
    /// User labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Driver options as given (`com.docker.network.bridge.name`, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// RFC 3339 creation time.
    pub created: String,
}

/// The layer-2 and IPAM facts of a bridge network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeNetwork {
    /// Linux bridge interface name (`reef0`, `br-<12 hex>`, or the user's `-b` bridge).
    pub ifname: String,
    /// The subnet containers live in.
    pub subnet: Ipv4Net,
    /// The gateway containers route through (normally the bridge's own address).
    pub gateway: Ipv4Addr,
    /// The address the bridge itself carries, if reef put one there or found one.
    pub bridge_addr: Option<Ipv4Net>,
    /// The sub-range container addresses come from (`--fixed-cidr`, `--ip-range`).
    pub ip_range: Option<Ipv4Net>,
    /// MTU of the bridge and of every container interface on it.
    pub mtu: u32,
    /// True when reef created the bridge (and so may delete it); false for `-b BRIDGE`.
    pub owned: bool,
}

/// How a container's network namespace is provided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// The default network (`bridge`).
    Bridge,
    /// Its own namespace with only `lo`.
    None,
    /// The host's namespace.
    Host,
    /// Another container's namespace (name or id as the user gave it).
    Container(String),
    /// A user-defined network by name or id.
    Named(String),
}

impl NetworkMode {
    /// Parse Docker's `--network` value.
    pub fn parse(s: &str) -> NetworkMode {
        match s {
            "" | "default" | "bridge" => NetworkMode::Bridge,
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            _ => match s.strip_prefix("container:") {
                Some(target) => NetworkMode::Container(target.to_string()),
                None => NetworkMode::Named(s.to_string()),
            },
        }
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkMode::Bridge => f.write_str("bridge"),
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::Container(c) => write!(f, "container:{c}"),
            NetworkMode::Named(n) => f.write_str(n),
        }
    }
}

/// A hostname/address pair for `/etc/hosts` (`--add-host name:ip`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraHost {
    /// Host name.
    pub name: String,
    /// Address (IPv4 or IPv6, as text).
    pub addr: String,
}

/// What the user asked for when creating a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ContainerSpec {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// `KEY=VALUE` environment entries.
    #[serde(default)]
    pub env: Vec<String>,
    /// `-h`; default is the 12-hex short id.
    pub hostname: Option<String>,
    /// `-t`.
    #[serde(default)]
    pub tty: bool,
    /// `-i`.
    #[serde(default)]
    pub open_stdin: bool,
    /// `--network`; `None` means the default bridge.
    pub network_mode: Option<NetworkMode>,
    /// `--ip`.
    pub ip: Option<Ipv4Addr>,
    /// `--mac-address`.
    pub mac: Option<String>,
    /// `--dns`.
    #[serde(default)]
    pub dns: Vec<String>,
    /// `--dns-search`.
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// `--dns-option`.
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// `--add-host`.
    #[serde(default)]
    pub extra_hosts: Vec<ExtraHost>,
    /// `--rm`.
    #[serde(default)]
    pub auto_remove: bool,
    /// `-p`: ports to publish.
    #[serde(default)]
    pub publish: Vec<crate::ports::PortSpec>,
    /// `--expose` and the container side of `-p`.
    #[serde(default)]
    pub expose: Vec<(u16, crate::ports::Proto)>,
    /// `-P`: publish every exposed port on an ephemeral host port.
    #[serde(default)]
    pub publish_all: bool,
    /// `--link NAME:ALIAS` as (name, alias).
    #[serde(default)]
    pub links: Vec<(String, String)>,
    /// `--publish-allow HOSTPORT/PROTO=CIDR,...`: per host port, the only sources allowed.
    #[serde(default)]
    pub publish_allow: Vec<PublishAllow>,
    /// The bridge-kind networks it is on, in order (`eth0`, `eth1`, ...): the `--network`
    /// one first, then those `network connect` added. Empty in records written before
    /// user networks existed: then the `--network` mode alone says which.
    #[serde(default)]
    pub networks: Vec<NetworkAttachment>,
}

/// A container's membership of one network, as asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    /// Network name or id as the user gave it.
    pub network: String,
    /// `--ip`.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// `--network-alias` / `--alias`.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A source allow-list of one published host port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishAllow {
    /// Host port.
    pub host_port: u16,
    /// Protocol.
    pub proto: crate::ports::Proto,
    /// Allowed source networks.
    pub sources: Vec<ipnet::Ipv4Net>,
}

/// A port published while the container runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    /// Host address (0.0.0.0 for all IPv4 addresses). An IPv6 address is relayed by reefd
    /// itself: the kernel cannot NAT IPv6 to a container's IPv4 address.
    pub host_ip: core::net::IpAddr,
    /// Host port.
    pub host_port: u16,
    /// Container port.
    pub container_port: u16,
    /// Protocol.
    pub proto: crate::ports::Proto,
}

/// A container's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Created, never started.
    Created,
    /// Network being set up or process being started; reconcile finishes or undoes this.
    Starting,
    /// Its process runs.
    Running,
    /// Its process ended (or was stopped).
    Exited,
}

impl Status {
    /// Docker's `State.Status` word.
    pub fn docker_word(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Starting => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

/// A container's network attachment on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// 64 hex; the host veth name and interface alias derive from it.
    pub id: String,
    /// The network's id.
    pub network_id: String,
    /// Interface name inside the container (`eth0`, ...).
    pub ifname: String,
    /// Host-side veth name (`veth<10 hex>`).
    pub host_ifname: String,
    /// The container's address.
    pub ip: Ipv4Addr,
    /// Prefix length of the network.
    pub prefix_len: u8,
    /// Default gateway, if this endpoint provides the default route.
    pub gateway: Option<Ipv4Addr>,
    /// MAC address, `02:42:...` form.
    pub mac: String,
    /// DNS aliases on this network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Recorded before its attachment and cleared after: still set after a crash means the
    /// attachment may be half-made, and start-up rebuilds it.
    #[serde(default)]
    pub pending: bool,
}

/// A container: its request, its state and its network attachments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// 64 lowercase hex characters.
    pub id: String,
    /// Unique name, without Docker's leading `/`.
    pub name: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// What was asked for.
    pub spec: ContainerSpec,
    /// Lifecycle state.
    pub status: Status,
    /// Pid of the container's first process while running.
    pub pid: Option<i32>,
    /// Pid of the shim that supervises it while running.
    pub shim_pid: Option<i32>,
    /// `/proc/<pid>/stat` start time of `pid`, to tell a reused pid from ours.
    #[serde(default)]
    pub pid_start_time: Option<u64>,
    /// Exit code of the last run.
    pub exit_code: Option<i32>,
    /// RFC 3339 time of the last start.
    pub started_at: Option<String>,
    /// RFC 3339 time of the last exit.
    pub finished_at: Option<String>,
    /// The sandbox (network namespace bind mount) while running, for own-namespace modes.
    pub sandbox: Option<String>,
    /// Attachments while running.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// How many times it was started (for `RestartCount`-like bookkeeping and log separation).
    #[serde(default)]
    pub start_count: u32,
    /// Published ports while running.
    #[serde(default)]
    pub ports: Vec<PortBinding>,
    /// Firewall elements added for it while running (removed exactly at exit).
    #[serde(default)]
    pub firewall: crate::firewall::Elements,
}

impl Container {
    /// Docker's 12-hex short id.
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }

    /// The hostname the container sees.
    pub fn hostname(&self) -> String {
        self.spec
            .hostname
            .clone()
            .unwrap_or_else(|| self.short_id().to_string())
    }

    /// True while reef considers its process alive.
    pub fn is_running(&self) -> bool {
        matches!(self.status, Status::Running | Status::Starting)
    }
}
