//! The HTTP API's request and response bodies, shaped and named as Docker Engine API's.
//!
//! Shared by reefd (which serves them) and reef (which sends and prints them), so the two
//! can never disagree on a field. Only the fields reef implements are here; Docker clients
//! ignore what is missing and reef ignores what it does not know.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Default API socket.
pub const DEFAULT_SOCKET: &str = "/run/reef/reef.sock";

/// Error body of every non-2xx answer (Docker's shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong, for a person.
    pub message: String,
}

/// `POST /containers/create?name=NAME` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerCreate {
    /// `-h`.
    pub hostname: String,
    /// Command and arguments.
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub open_stdin: bool,
    /// Attach flags, as Docker's client sends them for a foreground run.
    pub attach_stdin: bool,
    /// See `attach_stdin`.
    pub attach_stdout: bool,
    /// See `attach_stdin`.
    pub attach_stderr: bool,
    /// `--mac-address` (Docker's legacy top-level field).
    pub mac_address: String,
    /// `--expose` and the container side of `-p`: `"80/tcp": {}`.
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    /// Host-side settings.
    pub host_config: HostConfig,
    /// Per-network settings.
    pub networking_config: NetworkingConfig,
}

/// Docker's `HostConfig` (the networking part).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    /// `bridge`, `none`, `host`, `container:NAME` or a network name.
    pub network_mode: String,
    /// `--dns`.
    pub dns: Vec<String>,
    /// `--dns-search`.
    pub dns_search: Vec<String>,
    /// `--dns-option`.
    pub dns_options: Vec<String>,
    /// `--add-host name:ip`.
    pub extra_hosts: Vec<String>,
    /// `--rm`.
    pub auto_remove: bool,
    /// `-p`: `"80/tcp": [{"HostIp": "", "HostPort": "8080"}]`; an empty HostPort is an
    /// ephemeral port, `"8000-8009"` one free port of that range.
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    /// `-P`.
    pub publish_all_ports: bool,
    /// `--link NAME:ALIAS`.
    pub links: Vec<String>,
    /// reef's own: `--publish-allow`: `"8080/tcp": ["10.0.0.0/8"]`, the only sources that may
    /// reach that published host port.
    pub reef_publish_allow: BTreeMap<String, Vec<String>>,
}

/// One host binding of a port (Docker's `PortBinding`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    /// Host address; empty means the daemon's default (`--ip`, 0.0.0.0).
    pub host_ip: String,
    /// Host port, a range, or empty.
    pub host_port: String,
}

/// One row of a container summary's ports (Docker's `Port`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortSummary {
    /// Host address.
    #[serde(rename = "IP", default)]
    pub ip: String,
    /// Container port.
    #[serde(rename = "PrivatePort")]
    pub private_port: u16,
    /// Host port.
    #[serde(rename = "PublicPort", default)]
    pub public_port: u16,
    /// `tcp`, `udp`, `sctp`.
    #[serde(rename = "Type")]
    pub kind: String,
}

/// Docker's `NetworkingConfig`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkingConfig {
    /// Network name -> settings.
    pub endpoints_config: BTreeMap<String, EndpointSettings>,
}

/// Per-network settings of a container (Docker's `EndpointSettings`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointSettings {
    /// Static address request.
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpamConfig>,
    /// `--mac-address`.
    pub mac_address: String,
    /// `--network-alias` / `network connect --alias`.
    pub aliases: Vec<String>,
    /// Network id (responses).
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// Endpoint id (responses).
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// Gateway (responses).
    pub gateway: String,
    /// Address (responses).
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    /// Prefix length (responses).
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
}

/// Static address of an endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EndpointIpamConfig {
    /// `--ip`.
    #[serde(rename = "IPv4Address", default)]
    pub ipv4_address: String,
}

/// `POST /containers/create` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateResponse {
    /// The new container's id.
    pub id: String,
    /// Warnings for the user.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// `POST /containers/{id}/wait` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitResponse {
    /// Exit code.
    pub status_code: i64,
}

/// `GET /containers/{id}/json` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInspect {
    /// Full id.
    pub id: String,
    /// RFC 3339.
    pub created: String,
    /// Program.
    pub path: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Lifecycle state.
    pub state: ContainerState,
    /// `/name`, as Docker prints it.
    pub name: String,
    /// Where the rendered /etc/hosts lives on the host.
    pub hosts_path: String,
    /// Where the rendered /etc/hostname lives on the host.
    pub hostname_path: String,
    /// Where the rendered /etc/resolv.conf lives on the host.
    pub resolv_conf_path: String,
    /// What was asked for.
    pub config: ContainerConfig,
    /// Host-side settings.
    pub host_config: HostConfig,
    /// Network state.
    pub network_settings: NetworkSettings,
}

/// `State` of an inspected container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    /// `created`, `running`, `exited`.
    pub status: String,
    /// True while the process runs.
    pub running: bool,
    /// Always false (reef does not pause).
    pub paused: bool,
    /// Always false.
    pub restarting: bool,
    /// Process id while running, else 0.
    pub pid: i64,
    /// Last exit code.
    pub exit_code: i64,
    /// RFC 3339 or Docker's zero time.
    pub started_at: String,
    /// RFC 3339 or Docker's zero time.
    pub finished_at: String,
}

/// `Config` of an inspected container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// Host name.
    pub hostname: String,
    /// Command.
    pub cmd: Vec<String>,
    /// Environment.
    pub env: Vec<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub open_stdin: bool,
}

/// `NetworkSettings` of an inspected container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    /// Sandbox id (the container id while it has a sandbox).
    #[serde(rename = "SandboxID")]
    pub sandbox_id: String,
    /// Path of the network namespace.
    pub sandbox_key: String,
    /// Address on the default network.
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    /// Its prefix length.
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    /// Gateway on the default network.
    pub gateway: String,
    /// MAC on the default network.
    pub mac_address: String,
    /// Every network the container is on.
    pub networks: BTreeMap<String, EndpointSettings>,
    /// Published ports: `"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]`; exposed
    /// but unpublished ports map to null.
    pub ports: BTreeMap<String, Option<Vec<PortBinding>>>,
}

/// One row of `GET /containers/json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    /// Full id.
    pub id: String,
    /// `/name`.
    pub names: Vec<String>,
    /// Command line.
    pub command: String,
    /// Unix seconds.
    pub created: i64,
    /// `created`, `running`, `exited`.
    pub state: String,
    /// `Up 3 seconds`, `Exited (0) 2 seconds ago`.
    pub status: String,
    /// Published and exposed ports.
    #[serde(default)]
    pub ports: Vec<PortSummary>,
}

/// `GET /version` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    /// reef's version.
    pub version: String,
    /// Docker Engine API version whose shapes are served.
    pub api_version: String,
    /// `linux`.
    pub os: String,
}

/// Docker's zero time, printed for times that never happened.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Docker's multiplexed stream: a frame header is 8 bytes, stream kind first, length last.
pub mod stream {
    /// stdin frame kind.
    pub const STDIN: u8 = 0;
    /// stdout frame kind.
    pub const STDOUT: u8 = 1;
    /// stderr frame kind.
    pub const STDERR: u8 = 2;

    /// Split complete frames off the front of `buf`; returns (kind, payload) pairs and
    /// leaves an incomplete tail in `buf`.
    pub fn drain_frames(buf: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while buf.len() - at >= 8 {
            let len =
                u32::from_be_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]) as usize;
            if buf.len() - at - 8 < len {
                break;
            }
            out.push((buf[at], buf[at + 8..at + 8 + len].to_vec()));
            at += 8 + len;
        }
        buf.drain(..at);
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn frames_split_across_reads() {
            let mut buf = vec![1, 0, 0, 0, 0, 0, 0, 3, b'a', b'b'];
            assert!(drain_frames(&mut buf).is_empty());
            buf.extend_from_slice(&[b'c', 2, 0, 0, 0, 0, 0, 0, 1]);
            assert_eq!(drain_frames(&mut buf), vec![(1, b"abc".to_vec())]);
            buf.push(b'!');
            assert_eq!(drain_frames(&mut buf), vec![(2, b"!".to_vec())]);
            assert!(buf.is_empty());
        }
    }
}

/// `POST /networks/create` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkCreate {
    /// Name.
    pub name: String,
    /// `bridge`.
    pub driver: String,
    /// `--internal`.
    pub internal: bool,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `-o`.
    pub options: BTreeMap<String, String>,
    /// Addressing.
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    /// Accepted for compatibility; duplicates are always refused.
    pub check_duplicate: bool,
    /// `--attachable` (kept on overlays; every local reef network is attachable).
    pub attachable: bool,
    /// IPv6 is not supported; `true` is refused.
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
}

/// Docker's `IPAM`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ipam {
    /// `default`.
    pub driver: String,
    /// Subnets (reef uses at most one).
    pub config: Vec<IpamConfig>,
    /// Options.
    pub options: Option<BTreeMap<String, String>>,
}

/// One IPAM pool.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamConfig {
    /// `--subnet`.
    pub subnet: String,
    /// `--ip-range`.
    #[serde(rename = "IPRange", skip_serializing_if = "String::is_empty")]
    pub ip_range: String,
    /// `--gateway`.
    pub gateway: String,
}

/// `POST /networks/create` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCreateResponse {
    /// Id.
    pub id: String,
    /// Warnings.
    #[serde(default)]
    pub warning: String,
}

/// Docker's `NetworkResource` (`GET /networks`, `GET /networks/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkResource {
    /// Name.
    pub name: String,
    /// Id.
    pub id: String,
    /// RFC 3339.
    pub created: String,
    /// `local`.
    pub scope: String,
    /// `bridge`, `host`, `null`.
    pub driver: String,
    /// Always false.
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    /// Addressing.
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    /// `--internal`.
    pub internal: bool,
    /// Always true for user networks.
    pub attachable: bool,
    /// Always false.
    pub ingress: bool,
    /// Containers on it, by id.
    pub containers: BTreeMap<String, NetworkContainer>,
    /// Options.
    pub options: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A container as a network lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkContainer {
    /// Container name.
    pub name: String,
    /// Endpoint id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// MAC.
    pub mac_address: String,
    /// `172.18.0.2/16`.
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    /// Empty.
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

/// `POST /networks/{id}/connect` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkConnect {
    /// Container name or id.
    pub container: String,
    /// `--ip`, `--alias`.
    pub endpoint_config: Option<EndpointSettings>,
}

/// `POST /networks/{id}/disconnect` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkDisconnect {
    /// Container name or id.
    pub container: String,
    /// `-f`.
    pub force: bool,
}

/// `POST /networks/prune` answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkPruneResponse {
    /// Names of the removed networks.
    pub networks_deleted: Vec<String>,
}

/// `GET /system/check` and `POST /system/gc` answer (reef's own endpoints).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SystemReport {
    /// One line per finding (check) or per removed object (gc).
    pub items: Vec<String>,
}

/// `POST /host/bridge-nic` and `POST /host/unbridge-nic` (reef's own).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NicRequest {
    /// The NIC.
    pub nic: String,
    /// The bridge (bridge-nic).
    pub bridge: String,
    /// Seconds the default gateway has to answer after the move (bridge-nic).
    pub timeout_secs: f64,
}

/// What `bridge-nic` / `unbridge-nic` did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NicReport {
    /// The NIC.
    pub nic: String,
    /// The bridge.
    pub bridge: String,
    /// Whether reef created (or, undoing, deleted) the bridge.
    pub created_bridge: bool,
    /// The steps, as `ip` commands.
    pub steps: Vec<String>,
}

/// `docker ps`'s words for a duration: "Less than a second", "3 seconds", "About a minute", ...
pub fn human_duration(secs: u64) -> String {
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{secs} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", secs / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

#[cfg(test)]
mod duration_tests {
    use super::human_duration;

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(7300), "2 hours");
    }
}
