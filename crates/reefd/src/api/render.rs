//! Records -> Docker-shaped JSON answers.

use std::collections::BTreeMap;

use reef_api::{
    ContainerConfig, ContainerInspect, ContainerState, ContainerSummary, EndpointSettings,
    HostConfig, NetworkSettings, ZERO_TIME,
};
use reef_core::model::{Container, Network, NetworkMode, Status};

use crate::clock;
use crate::engine::Paths;

pub fn inspect(c: &Container, nets: &BTreeMap<String, Network>, paths: &Paths) -> ContainerInspect {
    let mut settings = NetworkSettings::default();
    if let Some(sb) = &c.sandbox {
        settings.sandbox_id = c.id.clone();
        settings.sandbox_key = sb.clone();
    }
    for ep in &c.endpoints {
        let name = nets
            .get(&ep.network_id)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| ep.network_id.clone());
        let gw = ep.gateway.map(|g| g.to_string()).unwrap_or_default();
        if name == reef_core::names::DEFAULT_NETWORK || settings.ip_address.is_empty() {
            settings.ip_address = ep.ip.to_string();
            settings.ip_prefix_len = ep.prefix_len;
            settings.gateway = gw.clone();
            settings.mac_address = ep.mac.clone();
        }
        settings.networks.insert(
            name,
            EndpointSettings {
                ipam_config: None,
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
        },
        network_settings: settings,
    }
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
            clock::human_duration(ago(&c.finished_at))
        ),
        _ => format!("Up {}", clock::human_duration(ago(&c.started_at))),
    };
    let created = clock::parse_rfc3339(&c.created)
        .map(|n| (n / 1_000_000_000) as i64)
        .unwrap_or(0);
    ContainerSummary {
        id: c.id.clone(),
        names: vec![format!("/{}", c.name)],
        command: c.spec.cmd.join(" "),
        created,
        state: c.status.docker_word().into(),
        status,
    }
}
