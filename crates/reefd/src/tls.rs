//! The API over TCP: TLS with client certificates (`--tlsverify --tlscacert --tlscert
//! --tlskey`, as Docker), or plain TCP only when the user says `--tls=false` outright.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use reef_core::config::DaemonConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

fn certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} holds no readable PEM certificate", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}

fn key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("{} holds no readable PEM key", path.display()))?
        .with_context(|| format!("{} holds no private key", path.display()))
}

/// The TLS acceptor for `-H tcp://` listeners, or `None` for plain TCP (`--tls=false`
/// given outright). Anything else is an error: reef never serves its API on plain TCP by
/// accident.
pub fn acceptor(
    cfg: &DaemonConfig,
    explicit_insecure: bool,
) -> anyhow::Result<Option<TlsAcceptor>> {
    if !cfg.tls && !cfg.tlsverify {
        if explicit_insecure {
            tracing::warn!("serving the API on plain TCP (--tls=false): anyone who can reach the port controls reef and the host's networking");
            return Ok(None);
        }
        bail!(
            "refusing to serve the API on TCP without TLS: give --tlsverify --tlscacert --tlscert --tlskey, \
             or --tls=false to accept an unauthenticated, unencrypted socket"
        );
    }
    let (Some(cert), Some(keyfile)) = (&cfg.tlscert, &cfg.tlskey) else {
        bail!("--tls needs --tlscert and --tlskey");
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = if cfg.tlsverify {
        let Some(ca) = &cfg.tlscacert else {
            bail!("--tlsverify needs --tlscacert (the CA that signs client certificates)");
        };
        let mut roots = RootCertStore::empty();
        for c in certs(ca)? {
            roots.add(c).context("invalid CA certificate")?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .context("client certificate verifier")?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(certs(cert)?, key(keyfile)?)
        .context("server certificate and key do not match")?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// Serve `app` on a TCP listener, through TLS when given.
pub async fn serve<S>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: S,
) -> std::io::Result<()>
where
    S: tower::Service<
            Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    loop {
        let (tcp, peer) = listener.accept().await?;
        let (tls, app) = (tls.clone(), app.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
            let http = hyper::server::conn::http1::Builder::new();
            let served = match tls {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(stream) => {
                        http.serve_connection(TokioIo::new(stream), svc)
                            .with_upgrades()
                            .await
                    }
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "TLS handshake refused");
                        return;
                    }
                },
                None => {
                    http.serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "API connection ended");
            }
        });
    }
}
