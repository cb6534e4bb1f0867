//! One function per command: build the API request, send it, print Docker's output.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Context};
use hyper::Method;
use reef_api::{
    ContainerCreate, ContainerInspect, ContainerSummary, CreateResponse, EndpointIpamConfig,
    EndpointSettings, HostConfig, NetworkingConfig, PortBinding, WaitResponse,
};
use reef_core::ports;

use crate::args::{Cli, Command, CreateArgs, ExecArgs};
use crate::client::{enc, Client, DaemonError};
use crate::multi::{each, inspect_many};
use crate::{attach, format};

/// Run the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let tls = crate::client::TlsOptions {
        enabled: cli.tls || cli.tlsverify,
        verify: cli.tlsverify,
        ca: cli.tlscacert.clone(),
        cert: cli.tlscert.clone(),
        key: cli.tlskey.clone(),
    };
    let client = Client::new(&cli.host, &tls)?;
    match cli.command {
        Command::Run(r) => run_container(&client, r.detach, r.create).await,
        Command::Create(c) => {
            let id = create(&client, &c, false).await?;
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Start { attach, containers } => start(&client, attach, &containers).await,
        Command::Stop { time, containers } => {
            each(&containers, |c| {
                let client = &client;
                async move {
                    client
                        .call(
                            Method::POST,
                            &format!("/containers/{c}/stop?t={time}"),
                            None,
                        )
                        .await?
                        .ok()
                }
            })
            .await
        }
        Command::Restart { time, containers } => {
            each(&containers, |c| {
                let client = &client;
                async move {
                    client
                        .call(
                            Method::POST,
                            &format!("/containers/{c}/restart?t={time}"),
                            None,
                        )
                        .await?
                        .ok()
                }
            })
            .await
        }
        Command::Kill { signal, containers } => {
            each(&containers, |c| {
                let client = &client;
                let signal = enc(&signal);
                async move {
                    client
                        .call(
                            Method::POST,
                            &format!("/containers/{c}/kill?signal={signal}"),
                            None,
                        )
                        .await?
                        .ok()
                }
            })
            .await
        }
        Command::Rm { force, containers } => {
            each(&containers, |c| {
                let client = &client;
                async move {
                    client
                        .call(
                            Method::DELETE,
                            &format!("/containers/{c}?force={}", u8::from(force)),
                            None,
                        )
                        .await?
                        .ok()
                }
            })
            .await
        }
        Command::Ps { all, quiet } => ps(&client, all, quiet).await,
        Command::Inspect {
            format: fmt,
            containers,
        } => inspect_many(&client, "containers", fmt, &containers).await,
        Command::Logs { container } => {
            let container = enc(&container);
            let ans = client
                .call(
                    Method::GET,
                    &format!("/containers/{container}/logs?stdout=1&stderr=1"),
                    None,
                )
                .await?;
            ans.ok()?;
            attach::print_log(&ans.body)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Wait { containers } => {
            for c in &containers {
                let w: WaitResponse = client
                    .post_json(&format!("/containers/{c}/wait"), &serde_json::json!({}))
                    .await?;
                println!("{}", w.status_code);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Exec(e) => exec(&client, e).await,
        Command::Port { container, port } => port_cmd(&client, &container, port.as_deref()).await,
        Command::Network(n) => crate::networks::run(&client, n).await,
        Command::System(crate::args::SystemCommand::Check) => {
            let r: reef_api::SystemReport = client.get("/system/check").await?;
            if r.items.is_empty() {
                println!("no drift, no leftovers");
                return Ok(ExitCode::SUCCESS);
            }
            for i in &r.items {
                println!("{i}");
            }
            Ok(ExitCode::FAILURE)
        }
        Command::System(crate::args::SystemCommand::Gc) => {
            let r: reef_api::SystemReport = client
                .post_json("/system/gc", &serde_json::json!({}))
                .await?;
            for i in &r.items {
                println!("removed {i}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Host(h) => host_cmd(&client, h).await,
        Command::Version => {
            let v: reef_api::Version = client.get("/version").await?;
            println!("Client:\n Version:\t{}", env!("CARGO_PKG_VERSION"));
            println!(
                "Server:\n Version:\t{}\n API version:\t{}",
                v.version, v.api_version
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `-p`, `--expose` and `--publish-allow` in Docker's API shapes.
type PortsBody = (
    BTreeMap<String, Vec<PortBinding>>,
    BTreeMap<String, serde_json::Value>,
    BTreeMap<String, Vec<String>>,
);

fn ports_body(a: &CreateArgs) -> anyhow::Result<PortsBody> {
    let mut bindings: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
    let mut exposed = BTreeMap::new();
    for p in &a.publish {
        for spec in ports::parse_publish(p)? {
            let key = format!("{}/{}", spec.container_port, spec.proto);
            exposed.insert(key.clone(), serde_json::json!({}));
            bindings.entry(key).or_default().push(PortBinding {
                host_ip: spec.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                host_port: match (spec.host_port, spec.host_range) {
                    (Some(h), _) => h.to_string(),
                    (None, Some((lo, hi))) => format!("{lo}-{hi}"),
                    (None, None) => String::new(),
                },
            });
        }
    }
    for e in &a.expose {
        for (port, proto) in ports::parse_expose(e)? {
            exposed.insert(format!("{port}/{proto}"), serde_json::json!({}));
        }
    }
    let mut allow: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in &a.publish_allow {
        let (port, sources) = entry.split_once('=').with_context(|| {
            format!("invalid --publish-allow {entry:?}: expected HOSTPORT[/PROTO]=CIDR[,CIDR...]")
        })?;
        let (port, proto) = ports::parse_port_filter(port)
            .with_context(|| format!("invalid --publish-allow {entry:?}"))?;
        allow.entry(format!("{port}/{proto}")).or_default().extend(
            sources
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }
    Ok((bindings, exposed, allow))
}

fn create_body(a: &CreateArgs, attach: bool) -> anyhow::Result<ContainerCreate> {
    let (port_bindings, exposed_ports, reef_publish_allow) = ports_body(a)?;
    let mut endpoints = BTreeMap::new();
    if a.ip.is_some() || a.mac_address.is_some() || !a.network_alias.is_empty() {
        endpoints.insert(
            a.network.clone(),
            EndpointSettings {
                ipam_config: a
                    .ip
                    .clone()
                    .map(|ip| EndpointIpamConfig { ipv4_address: ip }),
                mac_address: a.mac_address.clone().unwrap_or_default(),
                aliases: a.network_alias.clone(),
                ..Default::default()
            },
        );
    }
    Ok(ContainerCreate {
        exposed_ports,
        hostname: a.hostname.clone().unwrap_or_default(),
        cmd: a.command.clone(),
        env: a.env.clone(),
        tty: a.tty,
        open_stdin: a.interactive,
        attach_stdin: attach && a.interactive,
        attach_stdout: attach,
        attach_stderr: attach,
        mac_address: String::new(),
        host_config: HostConfig {
            network_mode: a.network.clone(),
            dns: a.dns.clone(),
            dns_search: a.dns_search.clone(),
            dns_options: a.dns_option.clone(),
            extra_hosts: a.add_host.clone(),
            auto_remove: a.rm,
            port_bindings,
            publish_all_ports: a.publish_all,
            links: a.link.clone(),
            reef_publish_allow,
        },
        networking_config: NetworkingConfig {
            endpoints_config: endpoints,
        },
    })
}

async fn create(client: &Client, a: &CreateArgs, attach: bool) -> anyhow::Result<String> {
    let path = match &a.name {
        Some(n) => format!("/containers/create?name={}", enc(n)),
        None => "/containers/create".to_string(),
    };
    let r: CreateResponse = client.post_json(&path, &create_body(a, attach)?).await?;
    Ok(r.id)
}

/// Docker's exit codes for `run` failures that are the daemon's, not the command's.
fn run_failure(e: anyhow::Error) -> anyhow::Result<ExitCode> {
    eprintln!("reef: {e:#}");
    let code = match e.downcast_ref::<DaemonError>() {
        Some(d) if d.message.contains("executable file not found") => 127,
        Some(d) if d.message.contains("permission denied") => 126,
        _ => 125,
    };
    Ok(ExitCode::from(code))
}

async fn run_container(client: &Client, detach: bool, a: CreateArgs) -> anyhow::Result<ExitCode> {
    let id = match create(client, &a, !detach).await {
        Ok(id) => id,
        Err(e) => return run_failure(e),
    };
    if detach {
        if let Err(e) = start_one(client, &id).await {
            // A run that cannot start leaves nothing behind.
            let _ = client
                .call(Method::DELETE, &format!("/containers/{id}?force=1"), None)
                .await;
            return run_failure(e);
        }
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let io = client
        .upgrade(&format!(
            "/containers/{id}/attach?stream=1&stdout=1&stderr=1&stdin={}",
            u8::from(a.interactive)
        ))
        .await?;
    if let Err(e) = start_one(client, &id).await {
        let _ = client
            .call(Method::DELETE, &format!("/containers/{id}?force=1"), None)
            .await;
        return run_failure(e);
    }
    let _raw = a.tty.then(attach::RawTerminal::enter);
    attach::pump(io, a.tty, a.interactive).await?;
    drop(_raw);
    let w: WaitResponse = client
        .post_json(&format!("/containers/{id}/wait"), &serde_json::json!({}))
        .await?;
    Ok(ExitCode::from(u8::try_from(w.status_code).unwrap_or(1)))
}

async fn start_one(client: &Client, id: &str) -> anyhow::Result<()> {
    client
        .call(Method::POST, &format!("/containers/{id}/start"), None)
        .await?
        .ok()
}

async fn start(
    client: &Client,
    attach_out: bool,
    containers: &[String],
) -> anyhow::Result<ExitCode> {
    if !attach_out {
        return each(containers, |c| async move { start_one(client, &c).await }).await;
    }
    if containers.len() != 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let c = &enc(&containers[0]);
    let info: ContainerInspect = client.get(&format!("/containers/{c}/json")).await?;
    let io = client
        .upgrade(&format!(
            "/containers/{c}/attach?stream=1&stdout=1&stderr=1"
        ))
        .await?;
    start_one(client, c).await?;
    attach::pump(io, info.config.tty, false).await?;
    let w: WaitResponse = client
        .post_json(&format!("/containers/{c}/wait"), &serde_json::json!({}))
        .await?;
    Ok(ExitCode::from(u8::try_from(w.status_code).unwrap_or(1)))
}

async fn ps(client: &Client, all: bool, quiet: bool) -> anyhow::Result<ExitCode> {
    let list: Vec<ContainerSummary> = client
        .get(&format!("/containers/json?all={}", u8::from(all)))
        .await?;
    if quiet {
        for c in &list {
            println!("{}", &c.id[..12]);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            let mut cmd = c.command.clone();
            if cmd.chars().count() > 20 {
                cmd = cmd.chars().take(19).collect::<String>() + "…";
            }
            let age = (now - c.created).max(0) as u64;
            vec![
                c.id[..12].to_string(),
                format!("\"{cmd}\""),
                format!("{} ago", reef_api::human_duration(age)),
                c.status.clone(),
                ports_column(&c.ports),
                c.names
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        format::table(
            &[
                "CONTAINER ID",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NAMES"
            ],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

async fn exec(client: &Client, e: ExecArgs) -> anyhow::Result<ExitCode> {
    let info: ContainerInspect = client
        .get(&format!("/containers/{}/json", enc(&e.container)))
        .await?;
    if !info.state.running || info.state.pid == 0 {
        bail!(
            "Error response from daemon: container {} is not running",
            info.id
        );
    }
    // The process's real environment carries what the daemon added (link variables, PATH,
    // HOSTNAME); the configuration alone does not.
    let mut env: Vec<String> = std::fs::read(format!("/proc/{}/environ", info.state.pid))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_else(|_| {
            let mut env = info.config.env.clone();
            env.push(format!("HOSTNAME={}", info.config.hostname));
            env
        });
    env.extend(e.env.iter().cloned());
    crate::exec::exec_in(info.state.pid, &e.command, &env).context("reef exec")
}

/// `docker ps`'s PORTS: `0.0.0.0:8080->80/tcp, 443/tcp`.
fn ports_column(ports: &[reef_api::PortSummary]) -> String {
    let mut v: Vec<&reef_api::PortSummary> = ports.iter().collect();
    v.sort_by_key(|p| (p.private_port, p.kind.clone(), p.public_port));
    v.iter()
        .map(|p| {
            if p.public_port == 0 {
                format!("{}/{}", p.private_port, p.kind)
            } else {
                format!("{}:{}->{}/{}", p.ip, p.public_port, p.private_port, p.kind)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `reef port NAME [PORT[/PROTO]]`: Docker's `80/tcp -> 0.0.0.0:8080` lines.
async fn port_cmd(
    client: &Client,
    container: &str,
    filter: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let info: ContainerInspect = client
        .get(&format!("/containers/{}/json", enc(container)))
        .await?;
    let wanted = filter.map(ports::parse_port_filter).transpose()?;
    let mut lines = Vec::new();
    for (key, bindings) in &info.network_settings.ports {
        let (port, proto) = ports::parse_port_filter(key)?;
        if wanted.is_some_and(|w| w != (port, proto)) {
            continue;
        }
        for b in bindings.iter().flatten() {
            let ip: std::net::IpAddr = b.host_ip.parse().unwrap_or([0, 0, 0, 0].into());
            let hp: u16 = b.host_port.parse().unwrap_or(0);
            if wanted.is_some() {
                lines.push((port, proto, format!("{ip}:{hp}")));
            } else {
                lines.push((port, proto, ports::format_port_line(port, proto, ip, hp)));
            }
        }
    }
    if lines.is_empty() {
        if let Some((p, pr)) = wanted {
            bail!("Error: No public port '{p}/{pr}' published for {container}");
        }
    }
    lines.sort();
    for (_, _, l) in lines {
        println!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Seconds in `30s`, `500ms`, `2m` or a bare number of seconds.
fn parse_duration(s: &str) -> anyhow::Result<f64> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid duration {s:?}: expected e.g. 30s, 500ms or 2m"))?;
    Ok(v * mult)
}

async fn host_cmd(client: &Client, cmd: crate::args::HostCommand) -> anyhow::Result<ExitCode> {
    let (path, req) = match cmd {
        crate::args::HostCommand::BridgeNic {
            nic,
            bridge,
            timeout,
        } => (
            "/host/bridge-nic",
            reef_api::NicRequest {
                nic,
                bridge,
                timeout_secs: parse_duration(&timeout)?,
            },
        ),
        crate::args::HostCommand::UnbridgeNic { nic } => (
            "/host/unbridge-nic",
            reef_api::NicRequest {
                nic,
                ..Default::default()
            },
        ),
    };
    let r: reef_api::NicReport = client.post_json(path, &req).await?;
    for s in &r.steps {
        println!("{s}");
    }
    Ok(ExitCode::SUCCESS)
}
