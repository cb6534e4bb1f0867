//! `/networks/...` handlers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use reef_api::{
    Ipam, IpamConfig, NetworkConnect, NetworkContainer, NetworkCreateResponse, NetworkDisconnect,
    NetworkPruneResponse, NetworkResource,
};
use reef_core::model::{Container, Network};

use super::{blocking, ApiError, AppState};
use reef_engine::{EngineError, NetworkCreate};

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError(EngineError::Invalid(m.into()))
}

fn resource(n: &Network, containers: &[Container]) -> NetworkResource {
    let config = n
        .pool()
        .map(|p| {
            vec![IpamConfig {
                subnet: p.subnet.to_string(),
                ip_range: p.ip_range.map(|r| r.to_string()).unwrap_or_default(),
                gateway: p.gateway.to_string(),
            }]
        })
        .unwrap_or_default();
    let members = containers
        .iter()
        .flat_map(|c| {
            c.endpoints
                .iter()
                .filter(|e| e.network_id == n.id)
                .map(move |e| {
                    (
                        c.id.clone(),
                        NetworkContainer {
                            name: c.name.clone(),
                            endpoint_id: e.id.clone(),
                            mac_address: e.mac.clone(),
                            ipv4_address: format!("{}/{}", e.ip, e.prefix_len),
                            ipv6_address: String::new(),
                        },
                    )
                })
        })
        .collect();
    let mut options = n.options.clone();
    if n.name == reef_core::names::DEFAULT_NETWORK {
        if let Some(b) = n.bridge() {
            options.insert("com.docker.network.bridge.name".into(), b.ifname.clone());
            options.insert(
                "com.docker.network.bridge.default_bridge".into(),
                "true".into(),
            );
        }
    }
    NetworkResource {
        name: n.name.clone(),
        id: n.id.clone(),
        created: n.created.clone(),
        scope: n.scope().into(),
        driver: n.driver_name().into(),
        enable_ipv6: false,
        ipam: Ipam {
            driver: "default".into(),
            config,
            options: None,
        },
        internal: n.internal,
        attachable: match n.overlay() {
            Some(ov) => ov.attachable,
            None => !matches!(n.name.as_str(), "bridge" | "host" | "none"),
        },
        ingress: false,
        containers: members,
        options,
        labels: n.labels.clone(),
    }
}

pub async fn list(State(st): State<AppState>) -> Json<Vec<NetworkResource>> {
    let (nets, ctrs) = st.engine.networks();
    let mut out: Vec<NetworkResource> = nets.iter().map(|n| resource(n, &ctrs)).collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Json(out)
}

pub async fn inspect(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NetworkResource>, ApiError> {
    let n = st.engine.network(&id).map_err(ApiError)?;
    let (_, ctrs) = st.engine.networks();
    Ok(Json(resource(&n, &ctrs)))
}

fn parse_net(s: &str, what: &str) -> Result<Option<ipnet::Ipv4Net>, ApiError> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        invalid(format!(
            "invalid {what} {s:?}: expected an IPv4 CIDR like 172.20.0.0/16"
        ))
    })
}

pub async fn create(
    State(st): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: reef_api::NetworkCreate = serde_json::from_slice(&body)
        .map_err(|e| invalid(format!("invalid network configuration: {e}")))?;
    if req.enable_ipv6 {
        return Err(invalid("IPv6 networks are not supported by reef"));
    }
    if req.ipam.config.len() > 1 {
        return Err(invalid("reef networks have one subnet: give --subnet once"));
    }
    let pool = req.ipam.config.first().cloned().unwrap_or_default();
    let subnet = parse_net(&pool.subnet, "--subnet")?;
    let ip_range = parse_net(&pool.ip_range, "--ip-range")?;
    let gateway =
        match pool.gateway.as_str() {
            "" => None,
            g => Some(g.parse().map_err(|_| {
                invalid(format!("invalid --gateway {g:?}: expected an IPv4 address"))
            })?),
        };
    if (gateway.is_some() || ip_range.is_some()) && subnet.is_none() {
        return Err(invalid("--gateway and --ip-range need --subnet"));
    }
    let engine = st.engine.clone();
    let id = blocking(move || {
        engine.create_network(NetworkCreate {
            name: req.name,
            driver: req.driver,
            subnet,
            ip_range,
            gateway,
            internal: req.internal,
            labels: req.labels,
            options: req.options,
            attachable: req.attachable,
        })
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(NetworkCreateResponse {
            id,
            warning: String::new(),
        }),
    )
        .into_response())
}

pub async fn remove(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let engine = st.engine.clone();
    blocking(move || engine.remove_network(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn prune(State(st): State<AppState>) -> Result<Json<NetworkPruneResponse>, ApiError> {
    let engine = st.engine.clone();
    let networks_deleted = blocking(move || engine.prune_networks()).await?;
    Ok(Json(NetworkPruneResponse { networks_deleted }))
}

pub async fn connect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let req: NetworkConnect = serde_json::from_slice(&body)
        .map_err(|e| invalid(format!("invalid connect request: {e}")))?;
    let cfg = req.endpoint_config.unwrap_or_default();
    let ip = super::containers::static_ip(&cfg)?;
    let engine = st.engine.clone();
    blocking(move || engine.connect(&id, &req.container, ip, cfg.aliases)).await?;
    Ok(StatusCode::OK)
}

pub async fn disconnect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let req: NetworkDisconnect = serde_json::from_slice(&body)
        .map_err(|e| invalid(format!("invalid disconnect request: {e}")))?;
    let engine = st.engine.clone();
    blocking(move || engine.disconnect(&id, &req.container, req.force)).await?;
    Ok(StatusCode::OK)
}
