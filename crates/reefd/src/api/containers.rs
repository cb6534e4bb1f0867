//! `/containers/...` handlers.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use nix::sys::signal::Signal;
use reef_api::{ContainerCreate, CreateResponse, WaitResponse};
use reef_core::etc;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use reef_core::links;
use reef_core::model::{ContainerSpec, NetworkAttachment, NetworkMode, PublishAllow};
use reef_core::ports::{self, PortSpec};
use tokio::sync::broadcast;

use super::{blocking, render, ApiError, AppState};
use reef_engine::{CreateRequest, EngineError, ExitEvent};

type Q = Query<HashMap<String, String>>;

fn flag(q: &HashMap<String, String>, key: &str) -> bool {
    matches!(q.get(key).map(String::as_str), Some("1" | "true" | "True"))
}

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError(EngineError::Invalid(m.into()))
}

/// The `--ip` of an endpoint's settings, if any.
pub(super) fn static_ip(
    ep: &reef_api::EndpointSettings,
) -> Result<Option<std::net::Ipv4Addr>, ApiError> {
    match ep
        .ipam_config
        .as_ref()
        .map(|c| c.ipv4_address.as_str())
        .filter(|s| !s.is_empty())
    {
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| invalid(format!("invalid IPv4 address {s:?} for --ip"))),
        None => Ok(None),
    }
}

/// `HostPort`: "" (ephemeral), "8080", or "8000-8009" (one free port of the range).
/// A host port and a host port range, at most one of them set.
type HostPorts = (Option<u16>, Option<(u16, u16)>);

fn parse_host_port(s: &str) -> Result<HostPorts, ApiError> {
    let bad = || invalid(format!("invalid host port {s:?}"));
    if s.is_empty() || s == "0" {
        return Ok((None, None));
    }
    match s.split_once('-') {
        None => Ok((Some(s.parse().map_err(|_| bad())?), None)),
        Some((lo, hi)) => {
            let (lo, hi): (u16, u16) = (
                lo.parse().map_err(|_| bad())?,
                hi.parse().map_err(|_| bad())?,
            );
            if lo == 0 || lo > hi {
                return Err(bad());
            }
            Ok(if lo == hi {
                (Some(lo), None)
            } else {
                (None, Some((lo, hi)))
            })
        }
    }
}

/// Docker's create body -> reef's spec, rejecting what cannot be parsed.
fn spec_from_request(req: ContainerCreate) -> Result<ContainerSpec, ApiError> {
    let hc = req.host_config;
    let mode = NetworkMode::parse(&hc.network_mode);
    let ep = match &mode {
        NetworkMode::Named(n) => req.networking_config.endpoints_config.get(n),
        _ => req
            .networking_config
            .endpoints_config
            .get("bridge")
            .or_else(|| req.networking_config.endpoints_config.values().next()),
    };
    let ip = match ep {
        Some(e) => static_ip(e)?,
        None => None,
    };
    let mac = ep
        .map(|e| e.mac_address.clone())
        .filter(|m| !m.is_empty())
        .or_else(|| Some(req.mac_address.clone()).filter(|m| !m.is_empty()));
    let extra_hosts = hc
        .extra_hosts
        .iter()
        .map(|h| etc::parse_extra_host(h).map_err(|e| invalid(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut publish = Vec::new();
    for (key, bindings) in &hc.port_bindings {
        let (ctr_port, proto) =
            ports::parse_port_filter(key).map_err(|e| invalid(e.to_string()))?;
        for b in bindings {
            let host_ip = match b.host_ip.as_str() {
                "" => None,
                ip => Some(
                    ip.trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse()
                        .map_err(|_| invalid(format!("invalid IP address: {ip:?}")))?,
                ),
            };
            let (host_port, host_range) = parse_host_port(&b.host_port)?;
            publish.push(PortSpec {
                host_ip,
                host_port,
                host_range,
                container_port: ctr_port,
                proto,
            });
        }
    }
    let mut expose = Vec::new();
    for key in req.exposed_ports.keys() {
        expose.push(ports::parse_port_filter(key).map_err(|e| invalid(e.to_string()))?);
    }
    let links = hc
        .links
        .iter()
        .map(|l| links::parse_link(l).map_err(invalid))
        .collect::<Result<Vec<_>, _>>()?;
    let mut publish_allow = Vec::new();
    for (key, sources) in &hc.reef_publish_allow {
        let (host_port, proto) = ports::parse_port_filter(key)
            .map_err(|e| invalid(format!("--publish-allow {key}: {e}")))?;
        if !publish
            .iter()
            .any(|p| p.host_port == Some(host_port) && p.proto == proto)
        {
            return Err(invalid(format!(
                "--publish-allow {key}: no -p publishes host port {host_port}/{proto}"
            )));
        }
        let sources = sources
            .iter()
            .map(|s| {
                s.parse::<Ipv4Net>()
                    .or_else(|_| s.parse::<Ipv4Addr>().map(Ipv4Net::from))
                    .map_err(|_| invalid(format!("--publish-allow {key}: invalid source {s:?}: expected an IPv4 address or CIDR")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        publish_allow.push(PublishAllow {
            host_port,
            proto,
            sources,
        });
    }
    if matches!(mode, NetworkMode::Container(_)) && !publish.is_empty() {
        return Err(invalid(
            "conflicting options: port publishing and the container type network mode",
        ));
    }
    let networks = match &mode {
        NetworkMode::Bridge | NetworkMode::Named(_) => vec![NetworkAttachment {
            network: match &mode {
                NetworkMode::Named(n) => n.clone(),
                _ => reef_core::names::DEFAULT_NETWORK.to_string(),
            },
            ip,
            aliases: ep.map(|e| e.aliases.clone()).unwrap_or_default(),
        }],
        _ => vec![],
    };
    if !networks.is_empty()
        && !networks[0].aliases.is_empty()
        && networks[0].network == reef_core::names::DEFAULT_NETWORK
    {
        return Err(invalid(
            "network-scoped aliases are only supported for user-defined networks",
        ));
    }
    Ok(ContainerSpec {
        networks,
        publish,
        expose,
        publish_all: hc.publish_all_ports,
        links,
        publish_allow,
        cmd: req.cmd,
        env: req.env,
        hostname: Some(req.hostname).filter(|h| !h.is_empty()),
        tty: req.tty,
        open_stdin: req.open_stdin,
        network_mode: Some(mode),
        ip,
        mac,
        dns: hc.dns,
        dns_search: hc.dns_search,
        dns_options: hc.dns_options,
        extra_hosts,
        auto_remove: hc.auto_remove,
    })
}

pub async fn create(
    State(st): State<AppState>,
    Query(q): Q,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: ContainerCreate = serde_json::from_slice(&body)
        .map_err(|e| invalid(format!("invalid container configuration: {e}")))?;
    let spec = spec_from_request(req)?;
    let name = q.get("name").cloned().filter(|n| !n.is_empty());
    let engine = st.engine.clone();
    let id = blocking(move || engine.create(CreateRequest { name, spec })).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreateResponse {
            id,
            warnings: vec![],
        }),
    )
        .into_response())
}

pub async fn list(
    State(st): State<AppState>,
    Query(q): Q,
) -> Json<Vec<reef_api::ContainerSummary>> {
    let all = flag(&q, "all");
    let now = reef_engine::clock::now_nanos();
    Json(
        st.engine
            .containers(all)
            .iter()
            .map(|c| render::summary(c, now))
            .collect(),
    )
}

pub async fn inspect(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<reef_api::ContainerInspect>, ApiError> {
    let (c, nets) = st.engine.container(&id).map_err(ApiError)?;
    Ok(Json(render::inspect(&c, &nets, st.engine.paths())))
}

pub async fn start(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let engine = st.engine.clone();
    let full = engine.resolve(&id).map_err(ApiError)?;
    let pending = st
        .pending_attach
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&full);
    let wait = pending.is_some();
    let key = full.clone();
    let started = blocking(move || engine.start_container(&key, wait)).await;
    match started {
        Ok(()) => {
            if let Some(rx) = pending {
                let state_dir = st.engine.state_dir(&full);
                tokio::spawn(async move {
                    if let Ok(io) = rx.await {
                        super::attach::splice(io, &state_dir).await;
                    }
                });
            }
            Ok(StatusCode::NO_CONTENT)
        }
        Err(ApiError(EngineError::NotModified)) => Ok(StatusCode::NOT_MODIFIED),
        Err(e) => Err(e),
    }
}

/// Wait for the exit of start `count` of container `id`, at most `limit`.
async fn wait_exit(
    rx: &mut broadcast::Receiver<ExitEvent>,
    id: &str,
    count: u32,
    limit: Duration,
) -> Option<i32> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ev)) if ev.id == id && ev.start_count == count => return Some(ev.exit_code),
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => return None,
        }
    }
}

/// SIGTERM, then SIGKILL after `grace`; returns once the container is reaped.
/// `Ok(false)` when it was not running.
async fn stop_and_wait(st: &AppState, key: &str, grace: Duration) -> Result<bool, ApiError> {
    let mut rx = st.engine.subscribe();
    let engine = st.engine.clone();
    let k = key.to_string();
    let (id, count) = match blocking(move || engine.signal_container(&k, Signal::SIGTERM)).await {
        Ok(v) => v,
        Err(ApiError(EngineError::NotModified)) => return Ok(false),
        Err(e) => return Err(e),
    };
    if wait_exit(&mut rx, &id, count, grace).await.is_some() {
        return Ok(true);
    }
    kill_and_wait(st, &id, &mut rx, count).await
}

async fn kill_and_wait(
    st: &AppState,
    id: &str,
    rx: &mut broadcast::Receiver<ExitEvent>,
    count: u32,
) -> Result<bool, ApiError> {
    let engine = st.engine.clone();
    let k = id.to_string();
    match blocking(move || engine.signal_container(&k, Signal::SIGKILL)).await {
        Ok(_) | Err(ApiError(EngineError::NotModified)) => {}
        Err(e) => return Err(e),
    }
    if wait_exit(rx, id, count, Duration::from_secs(30))
        .await
        .is_none()
        && st.engine.is_running(id).unwrap_or(false)
    {
        return Err(ApiError(EngineError::Conflict(format!(
            "container {id} did not exit after SIGKILL"
        ))));
    }
    Ok(true)
}

fn grace(q: &HashMap<String, String>) -> Result<Duration, ApiError> {
    match q.get("t") {
        Some(t) => t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| invalid(format!("invalid stop timeout {t:?}"))),
        None => Ok(Duration::from_secs(10)),
    }
}

pub async fn stop(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<StatusCode, ApiError> {
    let grace = grace(&q)?;
    if stop_and_wait(&st, &id, grace).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Ok(StatusCode::NOT_MODIFIED)
    }
}

pub async fn restart(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<StatusCode, ApiError> {
    let grace = grace(&q)?;
    let full = st.engine.resolve(&id).map_err(ApiError)?;
    stop_and_wait(&st, &full, grace).await?;
    let engine = st.engine.clone();
    blocking(move || engine.start_container(&full, false)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn kill(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<StatusCode, ApiError> {
    let name = q.get("signal").map(String::as_str).unwrap_or("SIGKILL");
    let sig = parse_signal(name).ok_or_else(|| invalid(format!("invalid signal: {name}")))?;
    let engine = st.engine.clone();
    match blocking(move || engine.signal_container(&id, sig)).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(ApiError(EngineError::NotModified)) => Err(ApiError(EngineError::Conflict(
            "Cannot kill container: it is not running".into(),
        ))),
        Err(e) => Err(e),
    }
}

fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().ok()
}

pub async fn wait(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Json<WaitResponse>, ApiError> {
    let mut rx = st.engine.subscribe();
    let c = match st.engine.container(&id) {
        Ok((c, _)) => c,
        Err(EngineError::NotFound(m)) => {
            return match st.engine.removed_exit_code(&id) {
                Some(code) => Ok(Json(WaitResponse {
                    status_code: i64::from(code),
                })),
                None => Err(ApiError(EngineError::NotFound(m))),
            }
        }
        Err(e) => return Err(ApiError(e)),
    };
    let next_exit = q.get("condition").map(String::as_str) == Some("next-exit");
    if !c.is_running() && !next_exit {
        return Ok(Json(WaitResponse {
            status_code: i64::from(c.exit_code.unwrap_or(0)),
        }));
    }
    // A container that is not running yet (`reef run` waits before it starts) exits in its next start.
    let count = if c.is_running() {
        c.start_count
    } else {
        c.start_count + 1
    };
    loop {
        match rx.recv().await {
            Ok(ev) if ev.id == c.id && ev.start_count == count => {
                return Ok(Json(WaitResponse {
                    status_code: i64::from(ev.exit_code),
                }))
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => {
                return Err(ApiError(EngineError::Conflict(
                    "daemon shutting down".into(),
                )))
            }
        }
    }
}

pub async fn logs(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let full = st.engine.resolve(&id).map_err(ApiError)?;
    let path = st.engine.paths().log(&full);
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(ApiError(EngineError::Io {
                op: format!("read {}", path.display()),
                source: e,
            }))
        }
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/vnd.docker.multiplexed-stream",
        )],
        Body::from(bytes),
    )
        .into_response())
}

pub async fn remove(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<StatusCode, ApiError> {
    let full = st.engine.resolve(&id).map_err(ApiError)?;
    if flag(&q, "force") && st.engine.is_running(&full).unwrap_or(false) {
        // Killed, its exit removes it: one state commit, not `Exited` and then the removal.
        let mut rx = st.engine.subscribe();
        let engine = st.engine.clone();
        let k = full.clone();
        match blocking(move || engine.kill_to_remove(&k)).await {
            Ok((cid, count)) => {
                let exited = wait_exit(&mut rx, &cid, count, Duration::from_secs(30)).await;
                // Normally its exit has consumed the mark; never leave one behind.
                st.engine.keep_on_exit(&cid);
                if exited.is_none() && st.engine.is_running(&cid).unwrap_or(false) {
                    return Err(ApiError(EngineError::Conflict(format!(
                        "container {cid} did not exit after SIGKILL"
                    ))));
                }
            }
            // It exited meanwhile: remove it as a stopped container.
            Err(ApiError(EngineError::NotModified)) => {}
            Err(e) => return Err(e),
        }
    }
    let engine = st.engine.clone();
    match blocking(move || engine.remove_container(&full)).await {
        // --rm containers remove themselves when they exit.
        Ok(()) | Err(ApiError(EngineError::NotFound(_))) => Ok(StatusCode::NO_CONTENT),
        Err(e) => Err(e),
    }
}
