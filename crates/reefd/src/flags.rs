//! reefd's command line, with Docker's daemon flag names. Flags produce the same
//! `FileConfig` shape daemon.json does, so the core merges the two key by key.

use clap::Parser;
use reef_core::config::FileConfig;

/// reefd: a container networking daemon that speaks Docker.
#[derive(Debug, Parser)]
#[command(name = "reefd", version, about)]
pub struct Flags {
    /// Daemon configuration file (daemon.json keys).
    #[arg(long = "config-file", default_value = "/etc/reef/daemon.json")]
    pub config_file: String,
    /// Attach containers to this existing bridge ("none" disables the default bridge).
    #[arg(short = 'b', long)]
    pub bridge: Option<String>,
    /// Address and prefix of the default bridge, e.g. 192.168.1.5/24.
    #[arg(long)]
    pub bip: Option<String>,
    /// Give containers addresses only from this sub-range of the bridge subnet.
    #[arg(long = "fixed-cidr")]
    pub fixed_cidr: Option<String>,
    /// Default gateway of containers on the default bridge.
    #[arg(long = "default-gateway")]
    pub default_gateway: Option<String>,
    /// MTU of the bridge and container interfaces.
    #[arg(long)]
    pub mtu: Option<u32>,
    /// DNS server for containers (repeatable).
    #[arg(long)]
    pub dns: Vec<String>,
    /// DNS search domain for containers (repeatable).
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// DNS option for containers (repeatable).
    #[arg(long = "dns-opt")]
    pub dns_opt: Vec<String>,
    /// Persistent state directory.
    #[arg(long = "data-root")]
    pub data_root: Option<String>,
    /// Runtime files directory.
    #[arg(long = "exec-root")]
    pub exec_root: Option<String>,
    /// API socket(s): unix:///path (repeatable).
    #[arg(short = 'H', long = "host")]
    pub host: Vec<String>,
    /// Group that may use the API socket.
    #[arg(short = 'G', long)]
    pub group: Option<String>,
    /// Debug logging.
    #[arg(short = 'D', long, num_args = 0..=1, default_missing_value = "true")]
    pub debug: Option<bool>,
    /// Allow containers on a bridge to talk to each other.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub icc: Option<bool>,
    /// Enable IPv4 forwarding.
    #[arg(long = "ip-forward", num_args = 0..=1, default_missing_value = "true")]
    pub ip_forward: Option<bool>,
    /// Let reef write firewall rules.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub iptables: Option<bool>,
    /// Masquerade traffic leaving a network's subnet.
    #[arg(long = "ip-masq", num_args = 0..=1, default_missing_value = "true")]
    pub ip_masq: Option<bool>,
    /// Default host address for published ports.
    #[arg(long)]
    pub ip: Option<String>,
    /// Serve TCP API sockets over TLS (`--tls=false` allows plain TCP, which reef otherwise refuses).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub tls: Option<bool>,
    /// TLS and require client certificates signed by --tlscacert.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub tlsverify: Option<bool>,
    /// CA that signs client certificates.
    #[arg(long)]
    pub tlscacert: Option<String>,
    /// Server certificate.
    #[arg(long)]
    pub tlscert: Option<String>,
    /// Server key.
    #[arg(long)]
    pub tlskey: Option<String>,
    /// Cluster store for overlay networks: etcd://HOST:PORT[,HOST:PORT...].
    #[arg(long = "cluster-store")]
    pub cluster_store: Option<String>,
    /// This host's address (or interface) for the overlay's tunnels.
    #[arg(long = "cluster-advertise")]
    pub cluster_advertise: Option<String>,
    /// Cluster store option KEY=VALUE (kv.cacertfile, kv.certfile, kv.keyfile,
    /// discovery.ttl; repeatable).
    #[arg(long = "cluster-store-opt")]
    pub cluster_store_opt: Vec<String>,
}

fn some_vec(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

impl Flags {
    /// The flags that were given, in daemon.json's shape.
    pub fn to_file_config(&self) -> FileConfig {
        FileConfig {
            bridge: self.bridge.clone(),
            bip: self.bip.clone(),
            fixed_cidr: self.fixed_cidr.clone(),
            default_gateway: self.default_gateway.clone(),
            mtu: self.mtu,
            dns: some_vec(&self.dns),
            dns_search: some_vec(&self.dns_search),
            dns_opts: some_vec(&self.dns_opt),
            data_root: self.data_root.clone(),
            exec_root: self.exec_root.clone(),
            hosts: some_vec(&self.host),
            debug: self.debug,
            icc: self.icc,
            ip_forward: self.ip_forward,
            iptables: self.iptables,
            ip_masq: self.ip_masq,
            ip: self.ip.clone(),
            group: self.group.clone(),
            tls: self.tls,
            tlsverify: self.tlsverify,
            tlscacert: self.tlscacert.clone(),
            tlscert: self.tlscert.clone(),
            tlskey: self.tlskey.clone(),
            cluster_store: self.cluster_store.clone(),
            cluster_advertise: self.cluster_advertise.clone(),
            cluster_store_opts: (!self.cluster_store_opt.is_empty()).then(|| {
                self.cluster_store_opt
                    .iter()
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
                        None => (kv.trim().to_string(), String::new()),
                    })
                    .collect()
            }),
        }
    }
}
