//! A small HTTP/1.1 client for reefd's API over its unix socket: JSON requests, raw
//! bodies, and connection upgrades for attach.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

/// Percent-encode one path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Talks to one daemon.
pub struct Client {
    socket: PathBuf,
    host: String,
}

/// An answer: status and body bytes.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON, or the daemon's error message.
    pub fn json<T: DeserializeOwned>(self) -> anyhow::Result<T> {
        self.ok()?;
        serde_json::from_slice(&self.body).context("the daemon sent an answer reef cannot read")
    }

    /// Error unless 2xx or 304.
    pub fn ok(&self) -> anyhow::Result<()> {
        if self.status.is_success() || self.status == StatusCode::NOT_MODIFIED {
            return Ok(());
        }
        Err(anyhow!(DaemonError {
            message: error_message(&self.body),
        }))
    }
}

/// An error the daemon answered with.
#[derive(Debug)]
pub struct DaemonError {
    pub message: String,
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error response from daemon: {}", self.message)
    }
}

impl std::error::Error for DaemonError {}

fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<reef_api::ErrorResponse>(body)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_string())
}

impl Client {
    /// From `-H`: `unix:///path` or `/path`.
    pub fn new(host: &str) -> anyhow::Result<Client> {
        let path = if let Some(p) = host.strip_prefix("unix://") {
            p
        } else if host.starts_with('/') {
            host
        } else {
            bail!("-H {host}: reef connects to unix sockets only (unix:///path)");
        };
        Ok(Client {
            socket: PathBuf::from(path),
            host: host.to_string(),
        })
    }

    async fn connect(
        &self,
    ) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
        let stream = UnixStream::connect(&self.socket).await.with_context(|| {
            format!(
                "Cannot connect to the reef daemon at {}. Is reefd running?",
                self.host
            )
        })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake with the daemon")?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }

    fn build(
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "reef");
        if body.is_some() {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        Ok(b.body(Full::new(Bytes::from(body.unwrap_or_default())))?)
    }

    /// Send one request and read the whole answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Answer> {
        let mut sender = self.connect().await?;
        let resp = sender
            .send_request(Self::build(method, path, body)?)
            .await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body })
    }

    /// GET and decode JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(Method::GET, path, None).await?.json()
    }

    /// POST a JSON body and decode a JSON answer.
    pub async fn post_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.call(Method::POST, path, Some(serde_json::to_vec(body)?))
            .await?
            .json()
    }

    /// A request upgraded to a raw stream (attach).
    pub async fn upgrade(&self, path: &str) -> anyhow::Result<TokioIo<hyper::upgrade::Upgraded>> {
        let mut sender = self.connect().await?;
        let mut req = Self::build(Method::POST, path, None)?;
        req.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("Upgrade"),
        );
        req.headers_mut()
            .insert(header::UPGRADE, header::HeaderValue::from_static("tcp"));
        let resp = sender.send_request(req).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let body = resp.into_body().collect().await?.to_bytes();
            return Err(anyhow!(DaemonError {
                message: error_message(&body),
            }));
        }
        Ok(TokioIo::new(hyper::upgrade::on(resp).await?))
    }
}
