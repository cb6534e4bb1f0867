//! `POST /containers/{id}/attach`: the HTTP connection is upgraded to a raw byte stream and
//! spliced to the container shim's attach socket. For a container that has not started yet
//! the upgraded stream waits until `start` (Docker's attach-then-start order for `run`).

use std::path::Path as FsPath;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::{ApiError, AppState};
use reef_engine::EngineError;

/// The client's side of an attach, after the upgrade.
pub type AttachIo = TokioIo<hyper::upgrade::Upgraded>;

pub async fn attach(
    State(st): State<AppState>,
    Path(id): Path<String>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let (c, _) = st.engine.container(&id).map_err(ApiError)?;
    let on_upgrade = req
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| {
            ApiError(EngineError::Invalid(
                "attach needs a connection upgrade (Connection: Upgrade, Upgrade: tcp)".into(),
            ))
        })?;
    if c.is_running() {
        let state_dir = st.engine.state_dir(&c.id);
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                splice(TokioIo::new(up), &state_dir).await;
            }
        });
    } else {
        let (tx, rx) = oneshot::channel();
        st.pending_attach
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(c.id.clone(), rx);
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                let _ = tx.send(TokioIo::new(up));
            }
        });
    }
    let content_type = if c.spec.tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::empty())
        .map_err(|e| {
            ApiError(EngineError::Io {
                op: "attach response".into(),
                source: std::io::Error::other(e),
            })
        })
}

/// Copy bytes both ways between the client and the shim until both sides are done.
pub async fn splice(mut io: AttachIo, state_dir: &FsPath) {
    // connect_attach copes with state dirs too long for a socket address; a local connect
    // does not block.
    let shim = reef_runtime::connect_attach(state_dir).and_then(|s| {
        s.set_nonblocking(true)?;
        tokio::net::UnixStream::from_std(s)
    });
    match shim {
        Ok(mut shim) => {
            let _ = tokio::io::copy_bidirectional(&mut io, &mut shim).await;
        }
        Err(e) => {
            tracing::warn!(dir = %state_dir.display(), error = %e, "cannot reach the container's attach socket")
        }
    }
}
