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
    /// The driver and its facts. Stored flat, as `"driver": "bridge", "bridge": {...}`,
    /// which is also the shape of records written before there were other drivers.
    #[serde(flatten)]
    pub driver: DriverConfig,
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

impl Network {
    /// Docker's driver name: `bridge`, `host`, `null`, `macvlan`.
    pub fn driver_name(&self) -> &'static str {
        self.driver.name()
    }

    /// The bridge-driver facts, for a bridge network.
    pub fn bridge(&self) -> Option<&BridgeNetwork> {
        match &self.driver {
            DriverConfig::Bridge { bridge } => Some(bridge),
            DriverConfig::Overlay { overlay } => Some(&overlay.bridge),
            _ => None,
        }
    }

    /// The overlay facts, for an overlay network.
    pub fn overlay(&self) -> Option<&OverlayNetwork> {
        match &self.driver {
            DriverConfig::Overlay { overlay } => Some(overlay),
            _ => None,
        }
    }

    /// Docker's `Scope`: `global` for a network every host of the cluster shares.
    pub fn scope(&self) -> &'static str {
        match self.driver {
            DriverConfig::Overlay { .. } => "global",
            _ => "local",
        }
    }

    /// The address pool containers of this network take addresses from; `None` for
    /// `host` and `null`, whose containers have no endpoint of their own.
    pub fn pool(&self) -> Option<Pool> {
        match &self.driver {
            DriverConfig::Bridge { bridge }
            | DriverConfig::Overlay {
                overlay: OverlayNetwork { bridge, .. },
            } => Some(Pool {
                subnet: bridge.subnet,
                gateway: bridge.gateway,
                ip_range: bridge.ip_range,
                reserved: bridge.bridge_addr.map(|a| a.addr()).into_iter().collect(),
            }),
            DriverConfig::Macvlan { macvlan } => Some(Pool {
                subnet: macvlan.subnet,
                gateway: macvlan.gateway,
                ip_range: macvlan.ip_range,
                reserved: vec![],
            }),
            DriverConfig::Host | DriverConfig::Null => None,
        }
    }
}

/// The IPAM facts of a network: where its containers' addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// The subnet containers live in.
    pub subnet: Ipv4Net,
    /// Their default gateway (never given to a container).
    pub gateway: Ipv4Addr,
    /// The sub-range addresses come from, when narrower than the subnet.
    pub ip_range: Option<Ipv4Net>,
    /// Other addresses no container gets.
    pub reserved: Vec<Ipv4Addr>,
}

/// A network's driver and the facts only that driver has (Docker's `Driver` and what
/// its driver keeps). Serialised with the driver's name as the `driver` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "driver", rename_all = "lowercase")]
pub enum DriverConfig {
    /// A Linux bridge with a veth pair per container.
    Bridge {
        /// The bridge and its addresses.
        bridge: BridgeNetwork,
    },
    /// The host's own namespace (`--network host`).
    Host,
    /// A namespace with only `lo` (`--network none`).
    Null,
    /// A macvlan link per container on a parent interface: containers appear on the
    /// parent's segment with their own MAC.
    Macvlan {
        /// The parent and the segment's addresses.
        macvlan: MacvlanNetwork,
    },
    /// A network of every host of a cluster: on each host a bridge with a VXLAN port,
    /// the tunnel entries for other hosts' endpoints programmed from the cluster store.
    Overlay {
        /// The bridge, the VNI, and this host's tunnel end.
        overlay: OverlayNetwork,
    },
}

impl DriverConfig {
    /// Docker's driver name.
    pub fn name(&self) -> &'static str {
        match self {
            DriverConfig::Bridge { .. } => "bridge",
            DriverConfig::Host => "host",
            DriverConfig::Null => "null",
            DriverConfig::Macvlan { .. } => "macvlan",
            DriverConfig::Overlay { .. } => "overlay",
        }
    }
}

/// The facts of a macvlan network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacvlanNetwork {
    /// The host interface containers' links hang off (`eth0`, `eth0.10`, or reef's own
    /// `dm-<12 hex>` dummy for an internal network).
    pub parent: String,
    /// How the containers' links reach each other.
    pub mode: MacvlanMode,
    /// The segment's subnet.
    pub subnet: Ipv4Net,
    /// The segment's router (outside the host: macvlan has none of its own).
    pub gateway: Ipv4Addr,
    /// The sub-range container addresses come from (`--ip-range`).
    pub ip_range: Option<Ipv4Net>,
    /// MTU of the containers' links; `None`: the parent's.
    pub mtu: Option<u32>,
    /// True when reef created the parent (a VLAN sub-interface or a dummy) and so removes
    /// it with the network.
    pub created_parent: bool,
}

/// The facts of an overlay network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayNetwork {
    /// The bridge each host has for it (`ov-<12 hex>`), its subnet and gateway. Every
    /// host's bridge carries the gateway address: containers route out through their own
    /// host, and the VXLAN device answers ARP only for endpoints, so the gateways never
    /// meet.
    pub bridge: BridgeNetwork,
    /// The VXLAN device on the bridge (`vx-<12 hex>`).
    pub vxlan: String,
    /// The VXLAN network identifier.
    pub vni: u32,
    /// The UDP port of the tunnels.
    pub port: u16,
    /// Docker's `--attachable` (kept and shown; every reef container may attach).
    #[serde(default)]
    pub attachable: bool,
    /// This host's tunnel end; `None` in the record the cluster shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<Vtep>,
}

/// One host's end of the overlay's tunnels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vtep {
    /// The host's address the tunnels run between (`--cluster-advertise`).
    pub addr: Ipv4Addr,
    /// The interface carrying it.
    pub underlay: String,
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
    /// Host-side veth name (`veth<10 hex>`); `None` for drivers with no host end (macvlan).
    #[serde(default)]
    pub host_ifname: Option<String>,
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

/// How a macvlan link talks to its siblings on the same parent (`IFLA_MACVLAN_MODE`). The
/// names are Docker's `macvlan_mode` option words (and `ip link ... type macvlan mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MacvlanMode {
    /// `bridge` (Docker's default): siblings reach each other directly, inside the parent.
    #[default]
    Bridge,
    /// `private`: siblings cannot reach each other at all, not even through a reflecting
    /// switch.
    Private,
    /// `vepa`: sibling traffic goes out the parent and needs a hairpinning switch to come
    /// back.
    Vepa,
    /// `passthru`: the one macvlan of the parent takes over the parent (and its MAC).
    Passthru,
}

impl MacvlanMode {
    /// Every mode, in Docker's order.
    pub const ALL: [MacvlanMode; 4] = [
        MacvlanMode::Bridge,
        MacvlanMode::Private,
        MacvlanMode::Vepa,
        MacvlanMode::Passthru,
    ];

    /// The word Docker and `ip` use: `bridge`, `private`, `vepa`, `passthru`.
    pub fn as_str(self) -> &'static str {
        match self {
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Private => "private",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Passthru => "passthru",
        }
    }
}

impl std::fmt::Display for MacvlanMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not a macvlan mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseMacvlanModeError(pub String);

impl std::fmt::Display for ParseMacvlanModeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid macvlan mode {:?}: expected bridge, private, vepa or passthru",
            self.0
        )
    }
}

impl std::error::Error for ParseMacvlanModeError {}

impl std::str::FromStr for MacvlanMode {
    type Err = ParseMacvlanModeError;

    /// Exactly Docker's words (lower case, as its driver compares them).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MacvlanMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ParseMacvlanModeError(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_docker_words() {
        for m in MacvlanMode::ALL {
            assert_eq!(m.to_string().parse::<MacvlanMode>(), Ok(m));
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{m}\""));
        }
        assert_eq!(MacvlanMode::default(), MacvlanMode::Bridge);
        assert_eq!("passthru".parse(), Ok(MacvlanMode::Passthru));
        let err = "Bridge".parse::<MacvlanMode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid macvlan mode \"Bridge\": expected bridge, private, vepa or passthru"
        );
        assert!("passthrough".parse::<MacvlanMode>().is_err());
        assert!("".parse::<MacvlanMode>().is_err());
    }

    /// Records written before the driver seam (`"bridge": null` for host and null) load.
    #[test]
    fn networks_stored_before_drivers_load() {
        let bridge = r#"{"id":"a","name":"bridge","driver":"bridge","bridge":{"ifname":"reef0",
            "subnet":"172.17.0.0/16","gateway":"172.17.0.1","bridge_addr":"172.17.0.1/16",
            "ip_range":null,"mtu":1500,"owned":true},"internal":false,"labels":{},
            "options":{},"created":"2026-01-01T00:00:00Z"}"#;
        let n: Network = serde_json::from_str(bridge).unwrap();
        assert_eq!(n.driver_name(), "bridge");
        assert_eq!(n.bridge().unwrap().ifname, "reef0");
        assert_eq!(
            n.pool().unwrap().reserved,
            vec![Ipv4Addr::new(172, 17, 0, 1)]
        );
        let again: Network = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
        assert_eq!(again, n);
        for driver in ["host", "null"] {
            let old = format!(
                r#"{{"id":"b","name":"x","driver":"{driver}","bridge":null,"created":"t"}}"#
            );
            let n: Network = serde_json::from_str(&old).unwrap();
            assert_eq!(n.driver_name(), driver);
            assert!(n.bridge().is_none() && n.pool().is_none());
        }
    }

    #[test]
    fn macvlan_networks_round_trip() {
        let n = Network {
            id: "c".into(),
            name: "lan".into(),
            driver: DriverConfig::Macvlan {
                macvlan: MacvlanNetwork {
                    parent: "eth0".into(),
                    mode: MacvlanMode::Private,
                    subnet: "192.168.1.0/24".parse().unwrap(),
                    gateway: "192.168.1.1".parse().unwrap(),
                    ip_range: None,
                    mtu: None,
                    created_parent: false,
                },
            },
            internal: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            created: "t".into(),
        };
        let json = serde_json::to_string(&n).unwrap();
        assert!(json.contains(r#""driver":"macvlan""#), "{json}");
        assert_eq!(serde_json::from_str::<Network>(&json).unwrap(), n);
    }

    /// Endpoints stored with a veth name keep it.
    #[test]
    fn endpoints_keep_their_veth_name() {
        let ep = r#"{"id":"e","network_id":"n","ifname":"eth0","host_ifname":"veth0123456789",
            "ip":"172.17.0.2","prefix_len":16,"gateway":null,"mac":"02:42:ac:11:00:02"}"#;
        let ep: Endpoint = serde_json::from_str(ep).unwrap();
        assert_eq!(ep.host_ifname.as_deref(), Some("veth0123456789"));
    }
}
