//! Records -> Docker-shaped JSON answers.

use std::collections::BTreeMap;

use reef_api::{
    ContainerConfig, ContainerInspect, ContainerState, ContainerSummary, EndpointSettings,
    HostConfig, NetworkSettings, PortBinding, PortSummary, ZERO_TIME,
};
use reef_core::model::{Container, Network, NetworkMode, Status};

use reef_engine::clock;
use reef_engine::{exposed, Paths};

pub fn inspect(c: &Container, nets: &BTreeMap<String, Network>, paths: &Paths) -> ContainerInspect {
    let mut settings = NetworkSettings::default();
    if let Some(sb) = &c.sandbox {
        settings.sandbox_id = c.id.clone();
        settings.sandbox_key = sb.clone();
    }
    for ep in &c.endpoints {
        let net = nets.get(&ep.network_id);
        let name = net
            .map(|n| n.name.clone())
            .unwrap_or_else(|| ep.network_id.clone());
        let route_gw = ep.gateway.map(|g| g.to_string()).unwrap_or_default();
        // As Docker: each network's entry names that network's gateway, even when the
        // container's default route goes through another network.
        let gw = ep
            .gateway
            .or_else(|| net.and_then(|n| n.bridge()).map(|b| b.gateway))
            .map(|g| g.to_string())
            .unwrap_or_default();
        if name == reef_core::names::DEFAULT_NETWORK || settings.ip_address.is_empty() {
            settings.ip_address = ep.ip.to_string();
            settings.ip_prefix_len = ep.prefix_len;
            settings.gateway = route_gw;
            settings.mac_address = ep.mac.clone();
        }
        settings.networks.insert(
            name,
            EndpointSettings {
                ipam_config: None,
                aliases: ep.aliases.clone(),
                mac_address: ep.mac.clone(),
                network_id: ep.network_id.clone(),
                endpoint_id: ep.id.clone(),
                gateway: gw,
                ip_address: ep.ip.to_string(),
                ip_prefix_len: ep.prefix_len,
            },
        );
    }
    let mode = c.spec.network_mode.clone().unwrap_or(NetworkMode::Bridge);
    if c.endpoints.is_empty() {
        // Docker lists the mode's network even with no address on it (host, none).
        if let Some(n) = nets.values().find(|n| match &mode {
            NetworkMode::Host => n.name == "host",
            NetworkMode::None => n.name == "none",
            _ => false,
        }) {
            settings.networks.insert(
                n.name.clone(),
                EndpointSettings {
                    network_id: n.id.clone(),
                    ..Default::default()
                },
            );
        }
    }
    let files = paths.etc_files(&c.id);
    ContainerInspect {
        id: c.id.clone(),
        created: c.created.clone(),
        path: c.spec.cmd.first().cloned().unwrap_or_default(),
        args: c.spec.cmd.iter().skip(1).cloned().collect(),
        state: ContainerState {
            status: c.status.docker_word().into(),
            running: c.is_running(),
            paused: false,
            restarting: false,
            pid: c.pid.map(i64::from).unwrap_or(0),
            exit_code: c.exit_code.map(i64::from).unwrap_or(0),
            started_at: c.started_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
            finished_at: c.finished_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
        },
        name: format!("/{}", c.name),
        hosts_path: files.hosts.display().to_string(),
        hostname_path: files.hostname.display().to_string(),
        resolv_conf_path: files.resolv_conf.display().to_string(),
        config: ContainerConfig {
            hostname: c.hostname(),
            cmd: c.spec.cmd.clone(),
            env: c.spec.env.clone(),
            tty: c.spec.tty,
            open_stdin: c.spec.open_stdin,
        },
        host_config: HostConfig {
            network_mode: mode.to_string(),
            dns: c.spec.dns.clone(),
            dns_search: c.spec.dns_search.clone(),
            dns_options: c.spec.dns_options.clone(),
            extra_hosts: c
                .spec
                .extra_hosts
                .iter()
                .map(|h| format!("{}:{}", h.name, h.addr))
                .collect(),
            auto_remove: c.spec.auto_remove,
            port_bindings: port_bindings(c),
            publish_all_ports: c.spec.publish_all,
            links: c
                .spec
                .links
                .iter()
                .map(|(n, a)| format!("/{n}:/{}/{a}", c.name))
                .collect(),
            reef_publish_allow: c
                .spec
                .publish_allow
                .iter()
                .map(|a| {
                    (
                        format!("{}/{}", a.host_port, a.proto),
                        a.sources.iter().map(|s| s.to_string()).collect(),
                    )
                })
                .collect(),
        },
        network_settings: NetworkSettings {
            ports: live_ports(c),
            ..settings
        },
    }
}

/// What was asked for with `-p`, in Docker's `PortBindings` shape.
fn port_bindings(c: &Container) -> BTreeMap<String, Vec<PortBinding>> {
    let mut m: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
    for p in &c.spec.publish {
        m.entry(format!("{}/{}", p.container_port, p.proto))
            .or_default()
            .push(PortBinding {
                host_ip: p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                host_port: match (p.host_port, p.host_range) {
                    (Some(h), _) => h.to_string(),
                    (None, Some((lo, hi))) => format!("{lo}-{hi}"),
                    (None, None) => String::new(),
                },
            });
    }
    m
}

/// The ports in effect: published ones with their host side, exposed ones as null.
fn live_ports(c: &Container) -> BTreeMap<String, Option<Vec<PortBinding>>> {
    let mut m: BTreeMap<String, Option<Vec<PortBinding>>> = BTreeMap::new();
    if !c.is_running() {
        return m;
    }
    for (port, proto) in exposed(&c.spec) {
        m.insert(format!("{port}/{proto}"), None);
    }
    for b in &c.ports {
        m.entry(format!("{}/{}", b.container_port, b.proto))
            .or_insert(None)
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: b.host_ip.to_string(),
                host_port: b.host_port.to_string(),
            });
    }
    m
}

pub fn summary(c: &Container, now_nanos: u128) -> ContainerSummary {
    let ago = |t: &Option<String>| {
        t.as_deref()
            .and_then(clock::parse_rfc3339)
            .map(|t| (now_nanos.saturating_sub(t) / 1_000_000_000) as u64)
            .unwrap_or(0)
    };
    let status = match c.status {
        Status::Created => "Created".to_string(),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            c.exit_code.unwrap_or(0),
            reef_api::human_duration(ago(&c.finished_at))
        ),
        _ => format!("Up {}", reef_api::human_duration(ago(&c.started_at))),
    };
    let created = clock::parse_rfc3339(&c.created)
        .map(|n| (n / 1_000_000_000) as i64)
        .unwrap_or(0);
    let mut ports: Vec<PortSummary> = c
        .ports
        .iter()
        .map(|b| PortSummary {
            ip: b.host_ip.to_string(),
            private_port: b.container_port,
            public_port: b.host_port,
            kind: b.proto.to_string(),
        })
        .collect();
    for (port, proto) in exposed(&c.spec) {
        if !c
            .ports
            .iter()
            .any(|b| b.container_port == port && b.proto == proto)
        {
            ports.push(PortSummary {
                ip: String::new(),
                private_port: port,
                public_port: 0,
                kind: proto.to_string(),
            });
        }
    }
    ContainerSummary {
        ports,
        id: c.id.clone(),
        names: vec![format!("/{}", c.name)],
        command: c.spec.cmd.join(" "),
        created,
        state: c.status.docker_word().into(),
        status,
    }
}
