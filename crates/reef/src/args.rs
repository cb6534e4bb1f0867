//! The command line, with Docker's command and flag names.

use clap::{Args, Parser, Subcommand};

/// reef: run containers on reef networks, the way `docker` does.
#[derive(Debug, Parser)]
#[command(name = "reef", version, about)]
pub struct Cli {
    /// Daemon socket to connect to.
    #[arg(
        short = 'H',
        long = "host",
        env = "REEF_HOST",
        default_value = "unix:///run/reef/reef.sock",
        global = true,
        overrides_with = "host"
    )]
    pub host: String,
    /// Use TLS for tcp:// hosts.
    #[arg(long, global = true)]
    pub tls: bool,
    /// Use TLS and verify the daemon's certificate against --tlscacert.
    #[arg(long, global = true)]
    pub tlsverify: bool,
    /// CA of the daemon's certificate.
    #[arg(long, global = true)]
    pub tlscacert: Option<std::path::PathBuf>,
    /// Client certificate.
    #[arg(long, global = true)]
    pub tlscert: Option<std::path::PathBuf>,
    /// Client key.
    #[arg(long, global = true)]
    pub tlskey: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and start a container.
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// Create a container without starting it.
    #[command(disable_help_flag = true)]
    Create(CreateArgs),
    /// Start stopped containers.
    Start {
        /// Attach to the container's output and wait for it.
        #[arg(short = 'a', long)]
        attach: bool,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop running containers (SIGTERM, then SIGKILL after the timeout).
    Stop {
        /// Seconds to wait before killing.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Restart containers.
    Restart {
        /// Seconds to wait before killing.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to running containers.
    Kill {
        /// Signal name or number.
        #[arg(short = 's', long = "signal", default_value = "KILL")]
        signal: String,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill a running container first.
        #[arg(short = 'f', long)]
        force: bool,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers.
    Ps {
        /// Show all containers, not only running ones.
        #[arg(short = 'a', long)]
        all: bool,
        /// Only print ids.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Show containers' details as JSON.
    Inspect {
        /// Go-template-like format, e.g. '{{.State.Pid}}' or '{{json .NetworkSettings}}'.
        #[arg(short = 'f', long)]
        format: Option<String>,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Print a container's output.
    Logs {
        /// Container.
        container: String,
    },
    /// Block until containers stop, then print their exit codes.
    Wait {
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Check reef's kernel objects for drift, or remove leftovers.
    #[command(subcommand)]
    System(SystemCommand),
    /// Change the host's own network safely (bridge a NIC).
    #[command(subcommand)]
    Host(HostCommand),
    /// List a container's published ports, or the host side of one.
    Port {
        /// Container.
        container: String,
        /// PORT[/PROTO].
        port: Option<String>,
    },
    /// Show reef and daemon versions.
    Version,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub create: CreateArgs,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Container name.
    #[arg(long)]
    pub name: Option<String>,
    /// Network mode: bridge, none, host, container:NAME, or a network name.
    #[arg(long, visible_alias = "net", default_value = "bridge")]
    pub network: String,
    /// IPv4 address on the network.
    #[arg(long)]
    pub ip: Option<String>,
    /// MAC address.
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Container host name.
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// DNS server.
    #[arg(long)]
    pub dns: Vec<String>,
    /// DNS search domain.
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// DNS option.
    #[arg(long = "dns-option", visible_alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Extra /etc/hosts entry, name:ip.
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Environment variable KEY=VALUE.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Publish a port: [IP:][HOSTPORT:]CONTAINERPORT[/PROTO], ranges allowed.
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish every exposed port on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or range: PORT[-PORT][/PROTO].
    #[arg(long)]
    pub expose: Vec<String>,
    /// Link to another container: NAME[:ALIAS].
    #[arg(long)]
    pub link: Vec<String>,
    /// Only these sources may reach a published host port: HOSTPORT[/PROTO]=CIDR[,CIDR...].
    #[arg(long = "publish-allow")]
    pub publish_allow: Vec<String>,
    /// DNS alias of the container on its (user-defined) network.
    #[arg(long = "network-alias", visible_alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// Print help (`-h` is --hostname, as in Docker).
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a terminal (the command uses reef's own terminal).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Environment variable KEY=VALUE.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Container.
    pub container: String,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network.
    Create {
        /// Driver: bridge, macvlan or overlay (overlay needs reefd --cluster-store).
        #[arg(short = 'd', long, default_value = "bridge")]
        driver: String,
        /// Subnet in CIDR form.
        #[arg(long)]
        subnet: Option<String>,
        /// Allocate container addresses from this sub-range.
        #[arg(long = "ip-range")]
        ip_range: Option<String>,
        /// Gateway address.
        #[arg(long)]
        gateway: Option<String>,
        /// No route out, no masquerade, no published ports.
        #[arg(long)]
        internal: bool,
        /// Let standalone containers attach (Docker's flag for overlays; kept and shown).
        #[arg(long)]
        attachable: bool,
        /// Label KEY=VALUE.
        #[arg(long)]
        label: Vec<String>,
        /// Driver option KEY=VALUE (bridge: com.docker.network.bridge.name, ...enable_icc,
        /// ...; macvlan: parent=IFACE[.VLAN], macvlan_mode=bridge|private|vepa|passthru).
        #[arg(short = 'o', long = "opt")]
        opt: Vec<String>,
        /// Name.
        name: String,
    },
    /// List networks.
    #[command(visible_alias = "list")]
    Ls {
        /// Only print ids.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Show networks' details as JSON.
    Inspect {
        /// Go-template-like format.
        #[arg(short = 'f', long)]
        format: Option<String>,
        /// Networks.
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks.
    #[command(visible_alias = "remove")]
    Rm {
        /// Networks.
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove every unused user network.
    Prune {
        /// Do not ask (reef never asks; accepted for compatibility).
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Connect a container to a network.
    Connect {
        /// IPv4 address.
        #[arg(long)]
        ip: Option<String>,
        /// DNS alias on this network.
        #[arg(long)]
        alias: Vec<String>,
        /// Network.
        network: String,
        /// Container.
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect {
        /// Also when the container is gone.
        #[arg(short = 'f', long)]
        force: bool,
        /// Network.
        network: String,
        /// Container.
        container: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Put a NIC on a bridge (created when missing), moving its addresses and routes; all
    /// undone by itself unless the default gateway answers within --timeout.
    BridgeNic {
        /// The NIC, e.g. ens33.
        #[arg(long)]
        nic: String,
        /// The bridge, e.g. br0.
        #[arg(long)]
        bridge: String,
        /// How long the gateway has to answer (e.g. 30s, 500ms, 2m).
        #[arg(long, default_value = "30s")]
        timeout: String,
    },
    /// Undo bridge-nic: the NIC's addresses and routes back, the bridge removed if reef made it.
    UnbridgeNic {
        /// The NIC.
        #[arg(long)]
        nic: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Report drift (missing bridges, veths, firewall state) and leftovers; exit 1 if any.
    Check,
    /// Remove leftovers reef owns that no container or network accounts for.
    Gc,
}
