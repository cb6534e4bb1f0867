//! A small HTTP/1.1 client for reefd's API over its unix socket: JSON requests, raw
//! bodies, and connection upgrades for attach.

use std::path::PathBuf;
use std::sync::Arc;

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

/// How to reach the daemon.
enum Transport {
    Unix(PathBuf),
    Tcp {
        addr: String,
        tls: Option<(
            tokio_rustls::TlsConnector,
            rustls::pki_types::ServerName<'static>,
        )>,
    },
}

/// TLS settings from the command line.
pub struct TlsOptions {
    /// `--tls` or `--tlsverify`.
    pub enabled: bool,
    /// `--tlsverify`.
    pub verify: bool,
    /// `--tlscacert`.
    pub ca: Option<PathBuf>,
    /// `--tlscert`.
    pub cert: Option<PathBuf>,
    /// `--tlskey`.
    pub key: Option<PathBuf>,
}

/// Talks to one daemon.
pub struct Client {
    transport: Transport,
    host: String,
}

/// Accepts any server certificate: `--tls` without `--tlsverify`, as Docker's client does.
#[derive(Debug)]
struct NoServerVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoServerVerification {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn pem_certs(
    path: &std::path::Path,
) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(rustls_pemfile::certs(&mut pem.as_slice()).collect::<Result<Vec<_>, _>>()?)
}

fn tls_connector(host: &str, t: &TlsOptions) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if t.verify {
        let ca =
            t.ca.as_ref()
                .with_context(|| format!("-H {host} --tlsverify needs --tlscacert"))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in pem_certs(ca)? {
            roots.add(c)?;
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoServerVerification(provider)))
    };
    let config = match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => {
            let pem =
                std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?;
            let key = rustls_pemfile::private_key(&mut pem.as_slice())?
                .with_context(|| format!("{} holds no private key", key.display()))?;
            builder.with_client_auth_cert(pem_certs(cert)?, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn handshake<T>(
    io: TokioIo<T>,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .context("HTTP handshake with the daemon")?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

impl Client {
    /// From `-H`: `unix:///path`, `/path`, or `tcp://host:port` (TLS when asked).
    pub fn new(host: &str, tls: &TlsOptions) -> anyhow::Result<Client> {
        let transport = if let Some(p) = host.strip_prefix("unix://") {
            Transport::Unix(PathBuf::from(p))
        } else if host.starts_with('/') {
            Transport::Unix(PathBuf::from(host))
        } else if let Some(addr) = host.strip_prefix("tcp://") {
            let tls = if tls.enabled {
                let name = addr
                    .rsplit_once(':')
                    .map(|(h, _)| h)
                    .unwrap_or(addr)
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let server = rustls::pki_types::ServerName::try_from(name)
                    .with_context(|| format!("-H {host}: not a host name or address"))?;
                Some((tls_connector(host, tls)?, server))
            } else {
                None
            };
            Transport::Tcp {
                addr: addr.to_string(),
                tls,
            }
        } else {
            bail!("-H {host}: expected unix:///path or tcp://host:port");
        };
        Ok(Client {
            transport,
            host: host.to_string(),
        })
    }

    async fn connect(
        &self,
    ) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
        let unreachable = || {
            format!(
                "Cannot connect to the reef daemon at {}. Is reefd running?",
                self.host
            )
        };
        match &self.transport {
            Transport::Unix(path) => {
                let stream = UnixStream::connect(path).await.with_context(unreachable)?;
                handshake(TokioIo::new(stream)).await
            }
            Transport::Tcp { addr, tls: None } => {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .with_context(unreachable)?;
                handshake(TokioIo::new(stream)).await
            }
            Transport::Tcp {
                addr,
                tls: Some((connector, name)),
            } => {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .with_context(unreachable)?;
                let tls = connector
                    .connect(name.clone(), stream)
                    .await
                    .with_context(|| {
                        format!("TLS handshake with the reef daemon at {}", self.host)
                    })?;
                handshake(TokioIo::new(tls)).await
            }
        }
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
