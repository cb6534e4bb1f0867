//! The HTTP API: Docker Engine API paths on a unix socket.
//!
//! Routes, request decoding, `EngineError` -> status + `{"message": ...}`, and nothing else:
//! every decision is the engine's. Engine calls block (kernel work, fsync), so handlers run
//! them on the blocking pool. A `/v1.xx` version prefix is accepted and ignored, as the
//! real `docker` client sends one.

mod attach;
mod containers;
mod networks;
mod render;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use reef_api::ErrorResponse;
use tokio::sync::oneshot;

use reef_engine::{Engine, EngineError};

/// Shared by all handlers.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Attach connections made before their container started (`reef run` attaches first,
    /// then starts, so no output is lost); the start handler hands them to the shim.
    pub pending_attach: Arc<Mutex<HashMap<String, oneshot::Receiver<attach::AttachIo>>>>,
}

/// Build the router.
pub fn router(engine: Arc<Engine>) -> Router {
    let state = AppState {
        engine,
        pending_attach: Arc::default(),
    };
    Router::new()
        .route("/_ping", get(|| async { "OK" }).head(|| async { "" }))
        .route("/version", get(version))
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(containers::list))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/attach", post(attach::attach))
        .route("/containers/{id}", delete(containers::remove))
        .route("/system/check", get(system_check))
        .route("/system/gc", post(system_gc))
        .route("/host/bridge-nic", post(bridge_nic))
        .route("/host/unbridge-nic", post(unbridge_nic))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .with_state(state)
}

/// Strip Docker's `/v1.43` style prefix so one route table serves both forms.
pub fn strip_version(mut req: Request) -> Request {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(slash) = rest.find('/') {
            let ver = &rest[..slash];
            if !ver.is_empty() && ver.chars().all(|c| c.is_ascii_digit() || c == '.') {
                let new_path = rest[slash..].to_string();
                let pq = match req.uri().query() {
                    Some(q) => format!("{new_path}?{q}"),
                    None => new_path,
                };
                if let Ok(uri) = pq.parse::<Uri>() {
                    *req.uri_mut() = uri;
                }
            }
        }
    }
    req
}

/// reef's own: drift and leftovers (`reef system check`).
async fn system_check(
    axum::extract::State(st): axum::extract::State<AppState>,
) -> Result<Json<reef_api::SystemReport>, ApiError> {
    let engine = st.engine.clone();
    let items = blocking(move || engine.system_check()).await?;
    Ok(Json(reef_api::SystemReport { items }))
}

/// reef's own: remove leftovers (`reef system gc`).
async fn system_gc(
    axum::extract::State(st): axum::extract::State<AppState>,
) -> Result<Json<reef_api::SystemReport>, ApiError> {
    let engine = st.engine.clone();
    let items = blocking(move || engine.system_gc()).await?;
    Ok(Json(reef_api::SystemReport { items }))
}

fn nic_report(r: reef_engine::NicReport) -> Json<reef_api::NicReport> {
    Json(reef_api::NicReport {
        nic: r.bridged.nic,
        bridge: r.bridged.bridge,
        created_bridge: r.bridged.created_bridge,
        steps: r.steps,
    })
}

/// reef's own: move a NIC onto a bridge, undone unless the gateway answers.
async fn bridge_nic(
    axum::extract::State(st): axum::extract::State<AppState>,
    Json(req): Json<reef_api::NicRequest>,
) -> Result<Json<reef_api::NicReport>, ApiError> {
    if !(req.timeout_secs.is_finite() && req.timeout_secs > 0.0 && req.timeout_secs <= 3600.0) {
        return Err(ApiError(EngineError::Invalid(format!(
            "--timeout {}s: expected more than 0 and at most 3600 seconds",
            req.timeout_secs
        ))));
    }
    let engine = st.engine.clone();
    let timeout = std::time::Duration::from_secs_f64(req.timeout_secs);
    let r = blocking(move || engine.bridge_nic(&req.nic, &req.bridge, timeout)).await?;
    Ok(nic_report(r))
}

/// reef's own: undo `bridge-nic`.
async fn unbridge_nic(
    axum::extract::State(st): axum::extract::State<AppState>,
    Json(req): Json<reef_api::NicRequest>,
) -> Result<Json<reef_api::NicReport>, ApiError> {
    let engine = st.engine.clone();
    let r = blocking(move || engine.unbridge_nic(&req.nic)).await?;
    Ok(nic_report(r))
}

async fn version() -> Json<reef_api::Version> {
    Json(reef_api::Version {
        version: env!("CARGO_PKG_VERSION").into(),
        api_version: "1.43".into(),
        os: "linux".into(),
    })
}

/// An error as the API answers it.
pub struct ApiError(pub EngineError);

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            EngineError::NotFound(_) => StatusCode::NOT_FOUND,
            EngineError::Conflict(_) => StatusCode::CONFLICT,
            EngineError::Invalid(_) => StatusCode::BAD_REQUEST,
            EngineError::Forbidden(_) => StatusCode::FORBIDDEN,
            EngineError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::NotModified => return StatusCode::NOT_MODIFIED.into_response(),
            EngineError::Runtime(e) if e.docker_exit_code() != 125 => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %self.0, "request failed");
        }
        (
            status,
            Json(ErrorResponse {
                message: self.0.to_string(),
            }),
        )
            .into_response()
    }
}

/// Run a blocking engine call off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError),
        Err(e) => Err(ApiError(EngineError::Io {
            op: "engine task".into(),
            source: std::io::Error::other(e.to_string()),
        })),
    }
}
