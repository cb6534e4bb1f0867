//! The daemon's configuration: `daemon.json` and `reefd` flags, resolved into one
//! validated [`DaemonConfig`].
//!
//! Names and semantics are Docker's: the same kebab-case keys, the same defaults, the same
//! refusals (`-b` with `--bip`, `--icc=false` without iptables). The caller reads the file
//! and parses the flags; this module only merges (flags win key by key), applies defaults
//! and validates, so every rule here is unit-testable.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::names;

/// Default `--data-root`.
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/reef";

/// Default `--exec-root`.
pub const DEFAULT_EXEC_ROOT: &str = "/run/reef";

/// Default API socket (`-H unix:///run/reef/reef.sock`).
pub const DEFAULT_SOCKET: &str = "/run/reef/reef.sock";

/// Default `--mtu` (Docker's).
pub const DEFAULT_MTU: u32 = 1500;

/// Smallest MTU accepted: IPv4's minimum (RFC 791).
pub const MIN_MTU: u32 = 68;

/// Largest MTU accepted: the kernel's limit for most link types.
pub const MAX_MTU: u32 = 65535;

/// Port of a `tcp://` host given without one (Docker's unencrypted API port).
pub const DEFAULT_TCP_PORT: u16 = 2375;

/// daemon.json as written, Docker's kebab-case keys. Unknown keys are an error (Docker
/// refuses them too), with the key named. Flags are carried in the same struct, `None`
/// meaning "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// `-b` / `"bridge"`: an existing bridge to use, or `none`.
    pub bridge: Option<String>,
    /// `--bip` / `"bip"`: the default bridge's address with prefix, like `192.168.1.5/24`.
    pub bip: Option<String>,
    /// `--fixed-cidr` / `"fixed-cidr"`: the sub-range container addresses come from.
    pub fixed_cidr: Option<String>,
    /// `--default-gateway` / `"default-gateway"`: containers' gateway instead of the bridge.
    pub default_gateway: Option<String>,
    /// `--mtu` / `"mtu"`: MTU of the default bridge and its containers (0 = default).
    pub mtu: Option<u32>,
    /// `--dns` / `"dns"`: nameservers for containers.
    pub dns: Option<Vec<String>>,
    /// `--dns-search` / `"dns-search"`: search domains for containers.
    pub dns_search: Option<Vec<String>>,
    /// `--dns-opt` / `"dns-opts"`: resolver options for containers.
    pub dns_opts: Option<Vec<String>>,
    /// `--data-root` / `"data-root"`: where state is persisted.
    pub data_root: Option<String>,
    /// `--exec-root` / `"exec-root"`: where runtime state (sandboxes) lives.
    pub exec_root: Option<String>,
    /// `-H` / `"hosts"`: API listen addresses.
    pub hosts: Option<Vec<String>>,
    /// `-D` / `"debug"`.
    pub debug: Option<bool>,
    /// `--icc` / `"icc"`: traffic between containers on the default bridge.
    pub icc: Option<bool>,
    /// `--ip-forward` / `"ip-forward"`: turn on the host's IPv4 forwarding.
    pub ip_forward: Option<bool>,
    /// `--iptables` / `"iptables"`: manage firewall rules.
    pub iptables: Option<bool>,
    /// `--ip-masq` / `"ip-masq"`: masquerade traffic leaving the default bridge.
    pub ip_masq: Option<bool>,
    /// `--ip` / `"ip"`: default host address for published ports.
    pub ip: Option<String>,
    /// `-G` / `"group"`: group owning the API socket.
    pub group: Option<String>,
    /// `--tls` / `"tls"`.
    pub tls: Option<bool>,
    /// `--tlsverify` / `"tlsverify"`.
    pub tlsverify: Option<bool>,
    /// `--tlscacert` / `"tlscacert"`.
    pub tlscacert: Option<String>,
    /// `--tlscert` / `"tlscert"`.
    pub tlscert: Option<String>,
    /// `--tlskey` / `"tlskey"`.
    pub tlskey: Option<String>,
    /// `--cluster-store` / `"cluster-store"`: `etcd://HOST:PORT[,HOST:PORT...]`.
    pub cluster_store: Option<String>,
    /// `--cluster-advertise` / `"cluster-advertise"`: this host's address (or interface)
    /// for the overlay's tunnels.
    pub cluster_advertise: Option<String>,
    /// `--cluster-store-opt` / `"cluster-store-opts"`: `kv.cacertfile`, `kv.certfile`,
    /// `kv.keyfile`, `discovery.ttl`, `discovery.heartbeat`.
    pub cluster_store_opts: Option<std::collections::BTreeMap<String, String>>,
}

/// Which bridge the default network uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub enum BridgeChoice {
    /// reef's own bridge ([`names::DEFAULT_BRIDGE`]), created if missing.
    #[default]
    Default,
    /// `-b NAME`: an existing bridge the user manages.
    Named(String),
    /// `-b none`: no default network.
    Disabled,
}

/// An API listen address (`-H`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum HostAddr {
    /// A unix socket at this absolute path.
    Unix(PathBuf),
    /// A TCP address, `host:port` (`[v6]:port` for IPv6).
    Tcp(String),
}

/// The resolved, validated daemon configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonConfig {
    /// The default network's bridge.
    pub bridge: BridgeChoice,
    /// `--bip` with its host part kept: `192.168.1.5/24` means the bridge carries
    /// 192.168.1.5 and the subnet is 192.168.1.0/24.
    pub bip: Option<Ipv4Net>,
    /// `--fixed-cidr`, normalised to its network address.
    pub fixed_cidr: Option<Ipv4Net>,
    /// `--default-gateway`.
    pub default_gateway: Option<Ipv4Addr>,
    /// MTU of the default bridge and its containers.
    pub mtu: u32,
    /// `--dns`.
    pub dns: Vec<IpAddr>,
    /// `--dns-search`.
    pub dns_search: Vec<String>,
    /// `--dns-opt`.
    pub dns_opts: Vec<String>,
    /// `--data-root`.
    pub data_root: PathBuf,
    /// `--exec-root`.
    pub exec_root: PathBuf,
    /// `-H`; never empty.
    pub hosts: Vec<HostAddr>,
    /// `-D`.
    pub debug: bool,
    /// `--icc`.
    pub icc: bool,
    /// `--ip-forward`.
    pub ip_forward: bool,
    /// `--iptables`.
    pub iptables: bool,
    /// `--ip-masq`; always false when `iptables` is false.
    pub ip_masq: bool,
    /// `--ip`.
    pub ip: IpAddr,
    /// `-G`.
    pub group: Option<String>,
    /// `--tls`; also true when `tlsverify` is.
    pub tls: bool,
    /// `--tlsverify`.
    pub tlsverify: bool,
    /// `--tlscacert`.
    pub tlscacert: Option<PathBuf>,
    /// `--tlscert`.
    pub tlscert: Option<PathBuf>,
    /// `--tlskey`.
    pub tlskey: Option<PathBuf>,
    /// The cluster store and this host's place in it, when `--cluster-store` is given.
    pub cluster: Option<ClusterConfig>,
}

/// Default `discovery.ttl`: how long a host's endpoints outlive it, in seconds.
pub const DEFAULT_CLUSTER_TTL: u32 = 15;

/// Where the cluster store is and how this host joins it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterConfig {
    /// etcd client URLs (`http://HOST:PORT`, `https://` with TLS).
    pub endpoints: Vec<String>,
    /// `--cluster-advertise`.
    pub advertise: Advertise,
    /// `discovery.ttl` in seconds: the lease of this host's keys.
    pub ttl_secs: u32,
    /// TLS to etcd: (CA, client certificate, client key), each optional.
    pub tls: Option<ClusterTls>,
}

/// `--cluster-advertise`: an address, or an interface whose address is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Advertise {
    /// Not given: the address of the interface of the default route.
    DefaultRoute,
    /// An address of this host.
    Addr(Ipv4Addr),
    /// An interface of this host.
    Iface(String),
}

/// TLS files for the cluster store (`kv.cacertfile`, `kv.certfile`, `kv.keyfile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterTls {
    /// CA that signs etcd's certificate.
    pub ca: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
}

/// Parse `--cluster-store` and its options into where etcd is; `advertise` is
/// `--cluster-advertise`.
pub fn parse_cluster(
    store: &str,
    advertise: Option<&str>,
    opts: &std::collections::BTreeMap<String, String>,
) -> Result<ClusterConfig, ConfigError> {
    let invalid = |reason: String| ConfigError::ClusterStoreInvalid {
        value: store.to_string(),
        reason,
    };
    let rest = match store.trim().split_once("://") {
        Some(("etcd", rest)) => rest,
        Some((scheme, _)) => {
            return Err(invalid(format!(
                "the {scheme} store is not supported: reef keeps cluster state in etcd \
                 (etcd://HOST:PORT[,HOST:PORT...])"
            )))
        }
        None => return Err(invalid("expected etcd://HOST:PORT[,HOST:PORT...]".into())),
    };
    let mut tls = ClusterTls {
        ca: None,
        cert: None,
        key: None,
    };
    let mut ttl_secs = DEFAULT_CLUSTER_TTL;
    for (k, v) in opts {
        match k.as_str() {
            "kv.cacertfile" => tls.ca = Some(PathBuf::from(v)),
            "kv.certfile" => tls.cert = Some(PathBuf::from(v)),
            "kv.keyfile" => tls.key = Some(PathBuf::from(v)),
            "discovery.ttl" => {
                ttl_secs = v
                    .trim()
                    .trim_end_matches('s')
                    .parse()
                    .ok()
                    .filter(|t| (2..=3600).contains(t))
                    .ok_or_else(|| ConfigError::ClusterOptInvalid {
                        key: k.clone(),
                        reason: format!("{v:?} is not a number of seconds from 2 to 3600"),
                    })?
            }
            // The lease is renewed at a third of its TTL, whatever the heartbeat says.
            "discovery.heartbeat" => {}
            _ => {
                return Err(ConfigError::ClusterOptInvalid {
                    key: k.clone(),
                    reason: "unknown option (known: kv.cacertfile, kv.certfile, kv.keyfile, \
                             discovery.ttl, discovery.heartbeat)"
                        .into(),
                })
            }
        }
    }
    let with_tls = tls.ca.is_some() || tls.cert.is_some() || tls.key.is_some();
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(ConfigError::ClusterOptInvalid {
            key: "kv.certfile".into(),
            reason: "kv.certfile and kv.keyfile go together".into(),
        });
    }
    let scheme = if with_tls { "https" } else { "http" };
    let rest = rest.split_once('/').map_or(rest, |(hosts, _)| hosts);
    let mut endpoints = Vec::new();
    for part in rest.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(invalid("an empty address in the list".into()));
        }
        let (host, port) = match part.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| invalid(format!("{part}: {p:?} is not a port")))?,
            ),
            None => (part, 2379),
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        {
            return Err(invalid(format!(
                "{part}: {host:?} is not a host name or address"
            )));
        }
        endpoints.push(format!("{scheme}://{host}:{port}"));
    }
    let advertise = match advertise.map(str::trim).filter(|s| !s.is_empty()) {
        None => Advertise::DefaultRoute,
        Some(a) => {
            // Docker's form is ADDR:PORT or IFACE:PORT (the port of its API); the port
            // means nothing to the tunnels.
            let base = match a.rsplit_once(':') {
                Some((b, p)) if p.parse::<u16>().is_ok() => b,
                _ => a,
            };
            match base.parse::<Ipv4Addr>() {
                Ok(ip) => Advertise::Addr(ip),
                Err(_) => {
                    names::validate_ifname(base).map_err(|_| ConfigError::AdvertiseInvalid {
                        value: a.to_string(),
                    })?;
                    Advertise::Iface(base.to_string())
                }
            }
        }
    };
    Ok(ClusterConfig {
        endpoints,
        advertise,
        ttl_secs,
        tls: with_tls.then_some(tls),
    })
}

/// Errors in daemon.json or the daemon's flags. Messages are shown to users as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// daemon.json is not valid JSON.
    #[error("invalid daemon.json: {message}")]
    Json {
        /// The parser's description, with line and column.
        message: String,
    },
    /// daemon.json's top level is not an object.
    #[error("invalid daemon.json: the top level must be a JSON object like {{\"bip\": \"192.168.1.5/24\"}}")]
    NotAnObject,
    /// daemon.json has keys no option matches.
    #[error("invalid daemon.json: unknown key(s) {}: they match no configuration option", quote_all(.keys))]
    UnknownKeys {
        /// The unknown keys, sorted.
        keys: Vec<String>,
    },
    /// A daemon.json key has a value of the wrong type.
    #[error("invalid daemon.json: key \"{key}\": {message}")]
    InvalidValue {
        /// The key.
        key: String,
        /// What is wrong with its value.
        message: String,
    },
    /// `-b` and `--bip` together.
    #[error("You specified -b & --bip, mutually exclusive options. Please specify only one (-b {bridge:?}, --bip {bip:?})")]
    BridgeAndBip {
        /// The `-b` value.
        bridge: String,
        /// The `--bip` value.
        bip: String,
    },
    /// `-b` is not a valid interface name.
    #[error("invalid -b {name:?}: not a valid interface name (1 to 15 characters, no '/', ':' or spaces), or \"none\"")]
    BridgeNameInvalid {
        /// The name given.
        name: String,
    },
    /// `--bip` does not parse.
    #[error("invalid --bip {value:?}: expected an IPv4 address with a prefix length, like 192.168.1.5/24")]
    BipInvalid {
        /// The value given.
        value: String,
    },
    /// `--bip` leaves no room for containers.
    #[error(
        "invalid --bip {value:?}: a /{prefix_len} has no room for containers; use /30 or shorter"
    )]
    BipTooSmall {
        /// The value given.
        value: String,
        /// Its prefix length.
        prefix_len: u8,
    },
    /// `--bip`'s address is its subnet's network address.
    #[error("invalid --bip {value:?}: {addr} is the network address of {subnet}; give the bridge's own address, like {suggestion}/{}", .subnet.prefix_len())]
    BipIsNetworkAddress {
        /// The value given.
        value: String,
        /// The address part.
        addr: Ipv4Addr,
        /// The subnet.
        subnet: Ipv4Net,
        /// The subnet's first host address.
        suggestion: Ipv4Addr,
    },
    /// `--bip`'s address is its subnet's broadcast address.
    #[error("invalid --bip {value:?}: {addr} is the broadcast address of {subnet}; give the bridge's own address, like {suggestion}/{}", .subnet.prefix_len())]
    BipIsBroadcastAddress {
        /// The value given.
        value: String,
        /// The address part.
        addr: Ipv4Addr,
        /// The subnet.
        subnet: Ipv4Net,
        /// The subnet's first host address.
        suggestion: Ipv4Addr,
    },
    /// `--fixed-cidr` does not parse.
    #[error("invalid --fixed-cidr {value:?}: expected an IPv4 network with a prefix length, like 172.17.1.0/24")]
    FixedCidrInvalid {
        /// The value given.
        value: String,
    },
    /// `--fixed-cidr` is not inside `--bip`'s subnet.
    #[error("invalid --fixed-cidr {value:?}: {fixed_cidr} is not inside the bridge subnet {subnet} (from --bip)")]
    FixedCidrOutsideBip {
        /// The value given.
        value: String,
        /// It, normalised.
        fixed_cidr: Ipv4Net,
        /// `--bip`'s subnet.
        subnet: Ipv4Net,
    },
    /// `--default-gateway` is not an IPv4 address.
    #[error("invalid --default-gateway {value:?}: expected an IPv4 address, like 172.17.0.254")]
    DefaultGatewayInvalid {
        /// The value given.
        value: String,
    },
    /// `--default-gateway` is outside `--bip`'s subnet, so containers could not reach it.
    #[error("invalid --default-gateway {gateway}: it is not inside the bridge subnet {subnet} (from --bip)")]
    DefaultGatewayOutsideBip {
        /// The gateway.
        gateway: Ipv4Addr,
        /// `--bip`'s subnet.
        subnet: Ipv4Net,
    },
    /// `--mtu` out of range.
    #[error("invalid --mtu {mtu}: must be between {MIN_MTU} and {MAX_MTU}")]
    MtuOutOfRange {
        /// The value given.
        mtu: u32,
    },
    /// A `--dns` entry is not an IP address.
    #[error("invalid --dns {value:?}: expected an IP address, like 8.8.8.8")]
    DnsInvalid {
        /// The entry.
        value: String,
    },
    /// A `--dns-search` entry is not a domain name.
    #[error("invalid --dns-search {value:?}: expected a domain name, like example.com, or \".\"")]
    DnsSearchInvalid {
        /// The entry.
        value: String,
    },
    /// `--ip` is not an IP address.
    #[error("invalid --ip {value:?}: expected an IP address, like 0.0.0.0")]
    IpInvalid {
        /// The value given.
        value: String,
    },
    /// A `-H` value does not parse.
    #[error("invalid --cluster-store {value:?}: {reason}")]
    ClusterStoreInvalid {
        /// As given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A `--cluster-store-opt` that is unknown or malformed.
    #[error("invalid --cluster-store-opt {key}: {reason}")]
    ClusterOptInvalid {
        /// The option.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// `--cluster-advertise` that is neither an IPv4 address nor an interface name.
    #[error("invalid --cluster-advertise {value:?}: expected this host's IPv4 address or interface, like 10.0.0.5 or eth0 (optionally with :PORT)")]
    AdvertiseInvalid {
        /// As given.
        value: String,
    },
    /// `--cluster-advertise` or options without a store.
    #[error("--cluster-advertise and --cluster-store-opt need --cluster-store")]
    ClusterWithoutStore,
    /// An API listen address that cannot be parsed.
    #[error("invalid -H {value:?}: {reason}")]
    HostInvalid {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `-H` scheme reef does not serve.
    #[error(
        "invalid -H {value:?}: {scheme}:// is not supported; use unix:///path or tcp://host:port"
    )]
    HostUnsupported {
        /// The value given.
        value: String,
        /// Its scheme.
        scheme: String,
    },
    /// `--icc=false` needs the firewall rules `--iptables=false` forbids.
    #[error("You specified --iptables=false with --icc=false. ICC=false uses firewall rules to function. Please set --icc or --iptables to true")]
    IccNeedsIptables,
}

fn quote_all(keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("{k:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parse daemon.json. Empty (or all-whitespace) text is an empty configuration.
pub fn parse_daemon_json(text: &str) -> Result<FileConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ConfigError::Json {
        message: e.to_string(),
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err(ConfigError::NotAnObject);
    };
    // Probe key by key so errors can name the key: serde's own messages for a whole object
    // do not say which key held a badly typed value.
    let probe = |key: &str, v: serde_json::Value| {
        let mut one = serde_json::Map::new();
        one.insert(key.to_string(), v);
        serde_json::from_value::<FileConfig>(serde_json::Value::Object(one))
    };
    // Every known key accepts null (all fields are Options), so a null probe fails only
    // for keys that match no field.
    let unknown: Vec<String> = map
        .keys()
        .filter(|k| probe(k, serde_json::Value::Null).is_err())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(ConfigError::UnknownKeys { keys: unknown });
    }
    for (key, v) in &map {
        probe(key, v.clone()).map_err(|e| ConfigError::InvalidValue {
            key: key.clone(),
            message: e.to_string(),
        })?;
    }
    serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| ConfigError::Json {
        message: e.to_string(),
    })
}

/// The configuration with nothing given.
pub fn defaults() -> DaemonConfig {
    DaemonConfig {
        bridge: BridgeChoice::Default,
        bip: None,
        fixed_cidr: None,
        default_gateway: None,
        mtu: DEFAULT_MTU,
        dns: Vec::new(),
        dns_search: Vec::new(),
        dns_opts: Vec::new(),
        data_root: PathBuf::from(DEFAULT_DATA_ROOT),
        exec_root: PathBuf::from(DEFAULT_EXEC_ROOT),
        hosts: vec![HostAddr::Unix(PathBuf::from(DEFAULT_SOCKET))],
        debug: false,
        icc: true,
        ip_forward: true,
        iptables: true,
        ip_masq: true,
        ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        group: None,
        tls: false,
        tlsverify: false,
        tlscacert: None,
        tlscert: None,
        tlskey: None,
        cluster: None,
    }
}

/// Flags override the file key by key, then defaults apply, then validation.
///
/// Empty strings count as "not given" (Docker's flags default to empty). `-b reef0` is the
/// default bridge, as `-b docker0` is Docker's. `--mtu 0` means the default, as in Docker.
pub fn resolve(file: FileConfig, flags: FileConfig) -> Result<DaemonConfig, ConfigError> {
    let c = merge(file, flags);
    let d = defaults();

    let bridge_raw = non_empty(c.bridge);
    let bip_raw = non_empty(c.bip).map(|s| s.trim().to_string());
    // Docker checks the raw values, so even `-b none --bip ...` is refused.
    if let (Some(bridge), Some(bip)) = (&bridge_raw, &bip_raw) {
        return Err(ConfigError::BridgeAndBip {
            bridge: bridge.clone(),
            bip: bip.clone(),
        });
    }
    let bridge = match bridge_raw {
        None => BridgeChoice::Default,
        Some(b) if b == "none" => BridgeChoice::Disabled,
        Some(b) if b == names::DEFAULT_BRIDGE => BridgeChoice::Default,
        Some(b) => {
            names::validate_ifname(&b)
                .map_err(|_| ConfigError::BridgeNameInvalid { name: b.clone() })?;
            BridgeChoice::Named(b)
        }
    };

    let bip = bip_raw.as_deref().map(parse_bip).transpose()?;
    let bip_subnet = bip.map(|b| b.trunc());

    let fixed_cidr = match non_empty(c.fixed_cidr) {
        None => None,
        Some(value) => {
            let net: Ipv4Net = value
                .trim()
                .parse()
                .map_err(|_| ConfigError::FixedCidrInvalid {
                    value: value.clone(),
                })?;
            let net = net.trunc();
            if let Some(subnet) = bip_subnet {
                if !subnet.contains(&net) {
                    return Err(ConfigError::FixedCidrOutsideBip {
                        value,
                        fixed_cidr: net,
                        subnet,
                    });
                }
            }
            Some(net)
        }
    };

    let default_gateway = match non_empty(c.default_gateway) {
        None => None,
        Some(value) => {
            let gw: Ipv4Addr =
                value
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError::DefaultGatewayInvalid {
                        value: value.clone(),
                    })?;
            if let Some(subnet) = bip_subnet {
                if !subnet.contains(&gw) {
                    return Err(ConfigError::DefaultGatewayOutsideBip {
                        gateway: gw,
                        subnet,
                    });
                }
            }
            Some(gw)
        }
    };

    let mtu = match c.mtu {
        None | Some(0) => DEFAULT_MTU,
        Some(m) if (MIN_MTU..=MAX_MTU).contains(&m) => m,
        Some(m) => return Err(ConfigError::MtuOutOfRange { mtu: m }),
    };

    let dns = c
        .dns
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            s.trim()
                .parse::<IpAddr>()
                .map_err(|_| ConfigError::DnsInvalid { value: s.clone() })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let dns_search = c.dns_search.unwrap_or_default();
    for s in &dns_search {
        crate::etc::validate_dns_search(std::slice::from_ref(s))
            .map_err(|_| ConfigError::DnsSearchInvalid { value: s.clone() })?;
    }

    let hosts = c
        .hosts
        .unwrap_or_default()
        .iter()
        .map(|h| parse_host(h))
        .collect::<Result<Vec<_>, _>>()?;
    let hosts = if hosts.is_empty() { d.hosts } else { hosts };

    let ip = match non_empty(c.ip) {
        None => d.ip,
        Some(value) => value.trim().parse().map_err(|_| ConfigError::IpInvalid {
            value: value.clone(),
        })?,
    };

    let icc = c.icc.unwrap_or(d.icc);
    let iptables = c.iptables.unwrap_or(d.iptables);
    if !iptables && !icc {
        return Err(ConfigError::IccNeedsIptables);
    }
    // Docker silently drops masquerading without iptables rather than refusing.
    let ip_masq = iptables && c.ip_masq.unwrap_or(d.ip_masq);
    let tlsverify = c.tlsverify.unwrap_or(d.tlsverify);
    let cluster_opts = c.cluster_store_opts.unwrap_or_default();
    let cluster = match non_empty(c.cluster_store) {
        Some(store) => Some(parse_cluster(
            &store,
            c.cluster_advertise.as_deref(),
            &cluster_opts,
        )?),
        None if non_empty(c.cluster_advertise).is_some() || !cluster_opts.is_empty() => {
            return Err(ConfigError::ClusterWithoutStore)
        }
        None => None,
    };

    Ok(DaemonConfig {
        bridge,
        bip,
        fixed_cidr,
        default_gateway,
        mtu,
        dns,
        dns_search,
        dns_opts: c.dns_opts.unwrap_or_default(),
        data_root: non_empty(c.data_root).map_or(d.data_root, PathBuf::from),
        exec_root: non_empty(c.exec_root).map_or(d.exec_root, PathBuf::from),
        hosts,
        debug: c.debug.unwrap_or(d.debug),
        icc,
        ip_forward: c.ip_forward.unwrap_or(d.ip_forward),
        iptables,
        ip_masq,
        ip,
        group: non_empty(c.group),
        // Docker: verifying implies serving TLS.
        tls: c.tls.unwrap_or(d.tls) || tlsverify,
        tlsverify,
        tlscacert: non_empty(c.tlscacert).map(PathBuf::from),
        tlscert: non_empty(c.tlscert).map(PathBuf::from),
        tlskey: non_empty(c.tlskey).map(PathBuf::from),
        cluster,
    })
}

/// Parse one `-H` value: `unix:///path`, `/path` (a unix socket), `tcp://host:port`, or
/// `host:port` (tcp, as Docker reads a value without a scheme). `unix://` alone is the
/// default socket; a missing tcp host is 127.0.0.1 and a missing port 2375.
pub fn parse_host(s: &str) -> Result<HostAddr, ConfigError> {
    let value = s.trim();
    let invalid = |reason: &str| ConfigError::HostInvalid {
        value: s.to_string(),
        reason: reason.to_string(),
    };
    if value.is_empty() {
        return Ok(HostAddr::Unix(PathBuf::from(DEFAULT_SOCKET)));
    }
    if value.starts_with('/') {
        return Ok(HostAddr::Unix(PathBuf::from(value)));
    }
    let (scheme, rest) = value.split_once("://").unwrap_or(("tcp", value));
    match scheme.to_ascii_lowercase().as_str() {
        "unix" => {
            if rest.is_empty() {
                Ok(HostAddr::Unix(PathBuf::from(DEFAULT_SOCKET)))
            } else if rest.starts_with('/') {
                Ok(HostAddr::Unix(PathBuf::from(rest)))
            } else {
                Err(invalid(
                    "the socket path must be absolute, like unix:///run/reef/reef.sock",
                ))
            }
        }
        "tcp" => parse_tcp(rest).map(HostAddr::Tcp).map_err(invalid),
        "fd" | "npipe" | "ssh" | "http" | "https" => Err(ConfigError::HostUnsupported {
            value: s.to_string(),
            scheme: scheme.to_string(),
        }),
        _ => Err(invalid(
            "unknown scheme; use unix:///path or tcp://host:port",
        )),
    }
}

/// `host:port`, `[v6]:port`, `host`, `:port` or empty, to `host:port`.
fn parse_tcp(rest: &str) -> Result<String, &'static str> {
    // A trailing "/" is harmless; any other path is not something an API listener has.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err("a tcp address cannot have a path");
    }
    let (host, port) = if let Some(after) = rest.strip_prefix('[') {
        let (v6, tail) = after
            .split_once(']')
            .ok_or("missing ']' after an IPv6 address")?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| "not an IPv6 address between '[' and ']'")?;
        let port = match tail {
            "" => None,
            t => Some(t.strip_prefix(':').ok_or("expected ':port' after ']'")?),
        };
        (format!("[{v6}]"), port)
    } else {
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        if host.contains(':') {
            return Err("write an IPv6 address in brackets, like tcp://[::1]:2375");
        }
        let ok_host = host.parse::<Ipv4Addr>().is_ok()
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !ok_host {
            return Err("not a host name or IP address");
        }
        let host = if host.is_empty() { "127.0.0.1" } else { host };
        (host.to_string(), port)
    };
    let port = match port {
        None | Some("") => DEFAULT_TCP_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err("the port must be a number from 1 to 65535"),
        },
    };
    Ok(format!("{host}:{port}"))
}

fn parse_bip(value: &str) -> Result<Ipv4Net, ConfigError> {
    let net: Ipv4Net = value.parse().map_err(|_| ConfigError::BipInvalid {
        value: value.to_string(),
    })?;
    if net.prefix_len() > 30 {
        return Err(ConfigError::BipTooSmall {
            value: value.to_string(),
            prefix_len: net.prefix_len(),
        });
    }
    let subnet = net.trunc();
    let suggestion = crate::ipam::first_host(subnet);
    if net.addr() == net.network() {
        return Err(ConfigError::BipIsNetworkAddress {
            value: value.to_string(),
            addr: net.addr(),
            subnet,
            suggestion,
        });
    }
    if net.addr() == net.broadcast() {
        return Err(ConfigError::BipIsBroadcastAddress {
            value: value.to_string(),
            addr: net.addr(),
            subnet,
            suggestion,
        });
    }
    Ok(net)
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// Flags over file, key by key. Destructured so a new field cannot be forgotten here.
fn merge(file: FileConfig, flags: FileConfig) -> FileConfig {
    let FileConfig {
        bridge,
        bip,
        fixed_cidr,
        default_gateway,
        mtu,
        dns,
        dns_search,
        dns_opts,
        data_root,
        exec_root,
        hosts,
        debug,
        icc,
        ip_forward,
        iptables,
        ip_masq,
        ip,
        group,
        tls,
        tlsverify,
        tlscacert,
        tlscert,
        tlskey,
        cluster_store,
        cluster_advertise,
        cluster_store_opts,
    } = flags;
    FileConfig {
        bridge: bridge.or(file.bridge),
        bip: bip.or(file.bip),
        fixed_cidr: fixed_cidr.or(file.fixed_cidr),
        default_gateway: default_gateway.or(file.default_gateway),
        mtu: mtu.or(file.mtu),
        dns: dns.or(file.dns),
        dns_search: dns_search.or(file.dns_search),
        dns_opts: dns_opts.or(file.dns_opts),
        data_root: data_root.or(file.data_root),
        exec_root: exec_root.or(file.exec_root),
        hosts: hosts.or(file.hosts),
        debug: debug.or(file.debug),
        icc: icc.or(file.icc),
        ip_forward: ip_forward.or(file.ip_forward),
        iptables: iptables.or(file.iptables),
        ip_masq: ip_masq.or(file.ip_masq),
        ip: ip.or(file.ip),
        group: group.or(file.group),
        tls: tls.or(file.tls),
        tlsverify: tlsverify.or(file.tlsverify),
        tlscacert: tlscacert.or(file.tlscacert),
        tlscert: tlscert.or(file.tlscert),
        tlskey: tlskey.or(file.tlskey),
        cluster_store: cluster_store.or(file.cluster_store),
        cluster_advertise: cluster_advertise.or(file.cluster_advertise),
        cluster_store_opts: cluster_store_opts.or(file.cluster_store_opts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn flags_from(json: &str) -> FileConfig {
        parse_daemon_json(json).unwrap()
    }

    fn resolve_json(json: &str) -> Result<DaemonConfig, ConfigError> {
        resolve(flags_from(json), FileConfig::default())
    }

    #[test]
    fn empty_file_is_default() {
        for text in ["", "   \n\t", "{}", " { } "] {
            assert_eq!(
                parse_daemon_json(text).unwrap(),
                FileConfig::default(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn nothing_given_resolves_to_defaults() {
        let c = resolve(FileConfig::default(), FileConfig::default()).unwrap();
        assert_eq!(c, defaults());
        assert_eq!(c.mtu, 1500);
        assert!(c.icc && c.ip_forward && c.iptables && c.ip_masq);
        assert_eq!(c.ip, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(c.data_root, PathBuf::from("/var/lib/reef"));
        assert_eq!(c.exec_root, PathBuf::from("/run/reef"));
        assert_eq!(
            c.hosts,
            vec![HostAddr::Unix(PathBuf::from("/run/reef/reef.sock"))]
        );
        assert_eq!(c.bridge, BridgeChoice::Default);
    }

    #[test]
    fn every_docker_key_parses() {
        let text = r#"{
            "bridge": "br0", "bip": "10.1.0.1/16", "fixed-cidr": "10.1.2.0/24",
            "default-gateway": "10.1.0.254", "mtu": 1400,
            "dns": ["1.1.1.1"], "dns-search": ["example.com"], "dns-opts": ["ndots:2"],
            "data-root": "/d", "exec-root": "/e", "hosts": ["unix:///s"],
            "debug": true, "icc": false, "ip-forward": false, "iptables": true,
            "ip-masq": false, "ip": "127.0.0.1", "group": "reef",
            "tls": true, "tlsverify": true, "tlscacert": "/ca", "tlscert": "/c", "tlskey": "/k"
        }"#;
        let f = parse_daemon_json(text).unwrap();
        assert_eq!(f.bridge.as_deref(), Some("br0"));
        assert_eq!(f.fixed_cidr.as_deref(), Some("10.1.2.0/24"));
        assert_eq!(f.default_gateway.as_deref(), Some("10.1.0.254"));
        assert_eq!(f.mtu, Some(1400));
        assert_eq!(f.dns_opts, Some(vec!["ndots:2".to_string()]));
        assert_eq!(f.ip_forward, Some(false));
        assert_eq!(f.ip_masq, Some(false));
        assert_eq!(f.tlsverify, Some(true));
        assert_eq!(f.tlskey.as_deref(), Some("/k"));
    }

    #[test]
    fn daemon_json_errors_name_the_problem() {
        let cases: &[(&str, ConfigError)] = &[
            (
                r#"{"bip": "10.0.0.1/24", "bogus": 1, "also-bogus": true}"#,
                ConfigError::UnknownKeys {
                    keys: vec!["also-bogus".into(), "bogus".into()],
                },
            ),
            (
                // Docker's flag is --dns-opt but its key is dns-opts.
                r#"{"dns-opt": ["ndots:1"]}"#,
                ConfigError::UnknownKeys {
                    keys: vec!["dns-opt".into()],
                },
            ),
            (r#"["bip"]"#, ConfigError::NotAnObject),
            (r#""text""#, ConfigError::NotAnObject),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_daemon_json(text).unwrap_err(), want, "{text}");
        }
    }

    #[test]
    fn daemon_json_type_errors_name_the_key() {
        for (text, key) in [
            (r#"{"mtu": "1500"}"#, "mtu"),
            (r#"{"mtu": -1}"#, "mtu"),
            (r#"{"dns": "8.8.8.8"}"#, "dns"),
            (r#"{"icc": "yes"}"#, "icc"),
            (r#"{"bip": 10}"#, "bip"),
        ] {
            match parse_daemon_json(text) {
                Err(ConfigError::InvalidValue { key: k, message }) => {
                    assert_eq!(k, key, "{text}");
                    assert!(!message.is_empty());
                }
                other => panic!("{text}: got {other:?}"),
            }
        }
    }

    #[test]
    fn daemon_json_syntax_error() {
        let err = parse_daemon_json("{\"bip\": ").unwrap_err();
        assert!(matches!(err, ConfigError::Json { .. }), "{err:?}");
        assert!(err.to_string().starts_with("invalid daemon.json: "));
    }

    #[test]
    fn null_means_not_given() {
        assert_eq!(
            parse_daemon_json(r#"{"mtu": null}"#).unwrap(),
            FileConfig::default()
        );
    }

    #[test]
    fn flags_override_file_key_by_key() {
        let file = flags_from(r#"{"mtu": 1400, "dns": ["1.1.1.1"], "debug": true, "icc": false}"#);
        let flags = FileConfig {
            mtu: Some(9000),
            icc: Some(true),
            ..FileConfig::default()
        };
        let c = resolve(file, flags).unwrap();
        assert_eq!(c.mtu, 9000);
        assert!(c.icc);
        assert!(c.debug);
        assert_eq!(c.dns, vec!["1.1.1.1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn bridge_choices() {
        let cases: &[(&str, BridgeChoice)] = &[
            (r#"{}"#, BridgeChoice::Default),
            (r#"{"bridge": ""}"#, BridgeChoice::Default),
            (r#"{"bridge": "reef0"}"#, BridgeChoice::Default),
            (r#"{"bridge": "none"}"#, BridgeChoice::Disabled),
            (r#"{"bridge": "br0"}"#, BridgeChoice::Named("br0".into())),
        ];
        for (text, want) in cases {
            assert_eq!(&resolve_json(text).unwrap().bridge, want, "{text}");
        }
    }

    #[test]
    fn bip_keeps_host_part() {
        let c = resolve_json(r#"{"bip": "192.168.1.5/24"}"#).unwrap();
        let bip = c.bip.unwrap();
        assert_eq!(bip.addr(), Ipv4Addr::new(192, 168, 1, 5));
        assert_eq!(bip.trunc(), net("192.168.1.0/24"));
    }

    #[test]
    fn fixed_cidr_is_normalised() {
        let c = resolve_json(r#"{"bip": "10.0.0.1/16", "fixed-cidr": "10.0.5.7/24"}"#).unwrap();
        assert_eq!(c.fixed_cidr, Some(net("10.0.5.0/24")));
        // Without --bip there is nothing to check it against yet.
        let c = resolve_json(r#"{"fixed-cidr": "172.16.32.64/26"}"#).unwrap();
        assert_eq!(c.fixed_cidr, Some(net("172.16.32.64/26")));
    }

    #[test]
    fn validation_errors() {
        let cases: &[(&str, ConfigError)] = &[
            (
                r#"{"bridge": "br0", "bip": "10.0.0.1/24"}"#,
                ConfigError::BridgeAndBip {
                    bridge: "br0".into(),
                    bip: "10.0.0.1/24".into(),
                },
            ),
            (
                r#"{"bridge": "none", "bip": "10.0.0.1/24"}"#,
                ConfigError::BridgeAndBip {
                    bridge: "none".into(),
                    bip: "10.0.0.1/24".into(),
                },
            ),
            (
                r#"{"bridge": "a-very-long-bridge-name"}"#,
                ConfigError::BridgeNameInvalid {
                    name: "a-very-long-bridge-name".into(),
                },
            ),
            (
                r#"{"bridge": "br/0"}"#,
                ConfigError::BridgeNameInvalid {
                    name: "br/0".into(),
                },
            ),
            (
                r#"{"bip": "10.0.0.1"}"#,
                ConfigError::BipInvalid {
                    value: "10.0.0.1".into(),
                },
            ),
            (
                r#"{"bip": "10.0.0.1/33"}"#,
                ConfigError::BipInvalid {
                    value: "10.0.0.1/33".into(),
                },
            ),
            (
                r#"{"bip": "fd00::1/64"}"#,
                ConfigError::BipInvalid {
                    value: "fd00::1/64".into(),
                },
            ),
            (
                r#"{"bip": "10.0.0.1/31"}"#,
                ConfigError::BipTooSmall {
                    value: "10.0.0.1/31".into(),
                    prefix_len: 31,
                },
            ),
            (
                r#"{"bip": "10.0.0.0/24"}"#,
                ConfigError::BipIsNetworkAddress {
                    value: "10.0.0.0/24".into(),
                    addr: Ipv4Addr::new(10, 0, 0, 0),
                    subnet: net("10.0.0.0/24"),
                    suggestion: Ipv4Addr::new(10, 0, 0, 1),
                },
            ),
            (
                r#"{"bip": "10.0.0.255/24"}"#,
                ConfigError::BipIsBroadcastAddress {
                    value: "10.0.0.255/24".into(),
                    addr: Ipv4Addr::new(10, 0, 0, 255),
                    subnet: net("10.0.0.0/24"),
                    suggestion: Ipv4Addr::new(10, 0, 0, 1),
                },
            ),
            (
                r#"{"fixed-cidr": "10.0.0.0/33"}"#,
                ConfigError::FixedCidrInvalid {
                    value: "10.0.0.0/33".into(),
                },
            ),
            (
                r#"{"bip": "10.0.0.1/24", "fixed-cidr": "10.0.1.0/25"}"#,
                ConfigError::FixedCidrOutsideBip {
                    value: "10.0.1.0/25".into(),
                    fixed_cidr: net("10.0.1.0/25"),
                    subnet: net("10.0.0.0/24"),
                },
            ),
            (
                // Larger than the bridge subnet.
                r#"{"bip": "10.0.0.1/24", "fixed-cidr": "10.0.0.0/16"}"#,
                ConfigError::FixedCidrOutsideBip {
                    value: "10.0.0.0/16".into(),
                    fixed_cidr: net("10.0.0.0/16"),
                    subnet: net("10.0.0.0/24"),
                },
            ),
            (
                r#"{"default-gateway": "fe80::1"}"#,
                ConfigError::DefaultGatewayInvalid {
                    value: "fe80::1".into(),
                },
            ),
            (
                r#"{"bip": "10.0.0.1/24", "default-gateway": "10.0.1.1"}"#,
                ConfigError::DefaultGatewayOutsideBip {
                    gateway: Ipv4Addr::new(10, 0, 1, 1),
                    subnet: net("10.0.0.0/24"),
                },
            ),
            (r#"{"mtu": 67}"#, ConfigError::MtuOutOfRange { mtu: 67 }),
            (
                r#"{"mtu": 65536}"#,
                ConfigError::MtuOutOfRange { mtu: 65536 },
            ),
            (
                r#"{"dns": ["8.8.8.8", "dns.google"]}"#,
                ConfigError::DnsInvalid {
                    value: "dns.google".into(),
                },
            ),
            (
                r#"{"dns-search": ["ok.example", "-bad.example"]}"#,
                ConfigError::DnsSearchInvalid {
                    value: "-bad.example".into(),
                },
            ),
            (
                r#"{"ip": "localhost"}"#,
                ConfigError::IpInvalid {
                    value: "localhost".into(),
                },
            ),
            (
                r#"{"hosts": ["fd://"]}"#,
                ConfigError::HostUnsupported {
                    value: "fd://".into(),
                    scheme: "fd".into(),
                },
            ),
            (
                r#"{"iptables": false, "icc": false}"#,
                ConfigError::IccNeedsIptables,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&resolve_json(text).unwrap_err(), want, "{text}");
        }
    }

    #[test]
    fn error_messages_name_flag_and_value() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"fixed-cidr": "10.0.0.0/33"}"#,
                "invalid --fixed-cidr \"10.0.0.0/33\": ",
            ),
            (
                r#"{"bridge": "br0", "bip": "10.0.0.1/24"}"#,
                "You specified -b & --bip, mutually exclusive options. Please specify only one",
            ),
            (r#"{"mtu": 20}"#, "invalid --mtu 20: must be between 68 and 65535"),
            (
                r#"{"bip": "10.0.0.0/24"}"#,
                "invalid --bip \"10.0.0.0/24\": 10.0.0.0 is the network address of 10.0.0.0/24; give the bridge's own address, like 10.0.0.1/24",
            ),
        ];
        for (text, prefix) in cases {
            let msg = resolve_json(text).unwrap_err().to_string();
            assert!(msg.starts_with(prefix), "{text}: {msg}");
        }
        let msg = parse_daemon_json(r#"{"bogus": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("\"bogus\""), "{msg}");
    }

    #[test]
    fn mtu_values() {
        for (mtu, want) in [(0, 1500), (68, 68), (1450, 1450), (65535, 65535)] {
            let c = resolve(
                FileConfig::default(),
                FileConfig {
                    mtu: Some(mtu),
                    ..FileConfig::default()
                },
            )
            .unwrap();
            assert_eq!(c.mtu, want, "{mtu}");
        }
    }

    #[test]
    fn masquerade_needs_iptables() {
        let cases = [
            (r#"{}"#, true, true),
            (r#"{"ip-masq": false}"#, true, false),
            (r#"{"iptables": false}"#, false, false),
            (r#"{"iptables": false, "ip-masq": true}"#, false, false),
        ];
        for (text, iptables, masq) in cases {
            let c = resolve_json(text).unwrap();
            assert_eq!((c.iptables, c.ip_masq), (iptables, masq), "{text}");
        }
    }

    #[test]
    fn tlsverify_implies_tls() {
        let c = resolve_json(r#"{"tlsverify": true}"#).unwrap();
        assert!(c.tls && c.tlsverify);
        let c = resolve_json(r#"{"tls": true, "tlscert": "/c", "tlskey": ""}"#).unwrap();
        assert!(c.tls && !c.tlsverify);
        assert_eq!(c.tlscert, Some(PathBuf::from("/c")));
        assert_eq!(c.tlskey, None);
    }

    #[test]
    fn plain_values_resolve() {
        let c = resolve_json(
            r#"{"dns": [" 1.1.1.1 ", "2606:4700:4700::1111"], "dns-search": ["a.example", "."],
                "dns-opts": ["ndots:2", "timeout:1"], "data-root": "/srv/reef",
                "exec-root": "/run/r", "hosts": [], "ip": "::", "group": "wheel",
                "default-gateway": "172.17.0.254"}"#,
        )
        .unwrap();
        assert_eq!(
            c.dns,
            vec![
                "1.1.1.1".parse::<IpAddr>().unwrap(),
                "2606:4700:4700::1111".parse::<IpAddr>().unwrap()
            ]
        );
        assert_eq!(c.dns_search, vec!["a.example", "."]);
        assert_eq!(c.dns_opts, vec!["ndots:2", "timeout:1"]);
        assert_eq!(c.data_root, PathBuf::from("/srv/reef"));
        assert_eq!(c.exec_root, PathBuf::from("/run/r"));
        assert_eq!(c.hosts, defaults().hosts, "an empty list means the default");
        assert_eq!(c.ip, "::".parse::<IpAddr>().unwrap());
        assert_eq!(c.group.as_deref(), Some("wheel"));
        assert_eq!(c.default_gateway, Some(Ipv4Addr::new(172, 17, 0, 254)));
    }

    #[test]
    fn hosts() {
        let unix = |p: &str| HostAddr::Unix(PathBuf::from(p));
        let tcp = |a: &str| HostAddr::Tcp(a.to_string());
        let cases: &[(&str, HostAddr)] = &[
            ("unix:///var/run/reef.sock", unix("/var/run/reef.sock")),
            ("unix://", unix(DEFAULT_SOCKET)),
            ("/tmp/r.sock", unix("/tmp/r.sock")),
            ("", unix(DEFAULT_SOCKET)),
            ("  unix:///x  ", unix("/x")),
            ("tcp://1.2.3.4:2376", tcp("1.2.3.4:2376")),
            ("TCP://1.2.3.4:2376", tcp("1.2.3.4:2376")),
            ("tcp://1.2.3.4", tcp("1.2.3.4:2375")),
            ("tcp://:2376", tcp("127.0.0.1:2376")),
            ("tcp://", tcp("127.0.0.1:2375")),
            ("tcp://0.0.0.0:2375/", tcp("0.0.0.0:2375")),
            ("tcp://[::1]:2376", tcp("[::1]:2376")),
            ("tcp://[::]", tcp("[::]:2375")),
            ("tcp://my-host.example:80", tcp("my-host.example:80")),
            ("1.2.3.4:2376", tcp("1.2.3.4:2376")),
        ];
        for (s, want) in cases {
            assert_eq!(&parse_host(s).unwrap(), want, "{s:?}");
        }
    }

    #[test]
    fn bad_hosts() {
        for s in [
            "unix://relative.sock",
            "tcp://1.2.3.4:0",
            "tcp://1.2.3.4:99999",
            "tcp://1.2.3.4:http",
            "tcp://::1:2375",
            "tcp://[::1",
            "tcp://[nope]:1",
            "tcp://[::1]2375",
            "tcp://1.2.3.4:2375/path",
            "tcp://bad host:1",
            "gopher://x",
        ] {
            assert!(
                matches!(parse_host(s), Err(ConfigError::HostInvalid { .. })),
                "{s:?}: {:?}",
                parse_host(s)
            );
        }
        for (s, scheme) in [
            ("fd://", "fd"),
            ("npipe:////./pipe/x", "npipe"),
            ("ssh://u@h", "ssh"),
        ] {
            assert_eq!(
                parse_host(s).unwrap_err(),
                ConfigError::HostUnsupported {
                    value: s.into(),
                    scheme: scheme.into()
                }
            );
        }
    }

    #[test]
    fn serialises() {
        let json = serde_json::to_value(defaults()).unwrap();
        assert_eq!(json["mtu"], 1500);
        assert_eq!(json["bridge"], "Default");
    }

    #[test]
    fn cluster_store_flags_as_docker_names_them() {
        let c = resolve(
            FileConfig::default(),
            flags_from(
                r#"{"cluster-store": "etcd://10.0.0.1:2379,10.0.0.2", "cluster-advertise": "ens33:2376",
                    "cluster-store-opts": {"discovery.ttl": "9"}}"#,
            ),
        )
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(
            c.endpoints,
            vec!["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(c.advertise, Advertise::Iface("ens33".into()));
        assert_eq!(c.ttl_secs, 9);
        assert_eq!(c.tls, None);
        let mut opts = std::collections::BTreeMap::new();
        opts.insert("kv.cacertfile".to_string(), "/ca.pem".to_string());
        let t = parse_cluster("etcd://e1:2379", Some("10.0.0.5"), &opts).unwrap();
        assert_eq!(t.endpoints, vec!["https://e1:2379"]);
        assert_eq!(t.advertise, Advertise::Addr("10.0.0.5".parse().unwrap()));
        assert_eq!(
            parse_cluster("etcd://e1", None, &Default::default())
                .unwrap()
                .advertise,
            Advertise::DefaultRoute
        );
        for (bad, words) in [
            ("consul://x:8500", "not supported"),
            ("10.0.0.1:2379", "expected etcd://"),
            ("etcd://h:99999", "not a port"),
            ("etcd://a,,b", "empty address"),
            ("etcd://a b:1", "not a host name"),
        ] {
            let e = parse_cluster(bad, None, &Default::default()).unwrap_err();
            assert!(e.to_string().contains(words), "{bad}: {e}");
        }
        opts.insert("kv.bogus".into(), "x".into());
        assert!(parse_cluster("etcd://e1", None, &opts)
            .unwrap_err()
            .to_string()
            .contains("kv.bogus"));
        assert_eq!(
            resolve(
                FileConfig::default(),
                flags_from(r#"{"cluster-advertise": "eth0"}"#)
            )
            .unwrap_err(),
            ConfigError::ClusterWithoutStore
        );
        assert!(parse_cluster("etcd://e1", Some("not an iface!"), &Default::default()).is_err());
    }
}
