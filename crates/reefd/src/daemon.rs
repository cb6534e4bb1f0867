//! Daemon start-up and serving: configuration (daemon.json + flags), logging, the store,
//! the kernel executor, the engine, and the API listeners. Stopping reefd leaves containers
//! running; the next reefd re-adopts them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use reef_core::config::{self, DaemonConfig, HostAddr};
use reef_runtime::ShimCommand;
use tokio::net::UnixListener;
use tower::Layer;

use crate::flags::Flags;
use reef_engine::Engine;

const DEFAULT_CONFIG_FILE: &str = "/etc/reef/daemon.json";

/// Read daemon.json (a missing file is fine only at the default path) and merge the flags.
/// Also says whether plain TCP was asked for outright (`tls: false`).
pub fn load_config(flags: &Flags) -> anyhow::Result<(DaemonConfig, bool)> {
    let text = match std::fs::read_to_string(&flags.config_file) {
        Ok(t) => t,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && flags.config_file == DEFAULT_CONFIG_FILE =>
        {
            String::new()
        }
        Err(e) => return Err(e).context(format!("cannot read {}", flags.config_file)),
    };
    let file = config::parse_daemon_json(&text)
        .with_context(|| format!("invalid configuration file {}", flags.config_file))?;
    let insecure = flags.tls == Some(false) || (flags.tls.is_none() && file.tls == Some(false));
    Ok((config::resolve(file, flags.to_file_config())?, insecure))
}

fn init_logging(debug: bool) {
    let filter = if debug { "debug" } else { "info" };
    let mut env = tracing_subscriber::EnvFilter::try_from_env("REEF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    // The etcd client's transport logs every HTTP/2 frame at debug: not reef's story.
    for quiet in ["h2=info", "tower=info", "hyper=info", "tonic=info"] {
        if let Ok(d) = quiet.parse() {
            env = env.add_directive(d);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Bind a unix API socket: stale socket files are replaced, the mode is 0660 and the group
/// is `--group` when given (root-only otherwise).
fn bind_unix(path: &Path, group: Option<&str>) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "{} is in use by another daemon: stop it or pass another -H",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("remove stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", path.display()))?;
    if let Some(g) = group {
        let gid = nix::unistd::Group::from_name(g)
            .ok()
            .flatten()
            .with_context(|| format!("--group {g}: no such group"))?
            .gid;
        nix::unistd::chown(path, None, Some(gid))
            .with_context(|| format!("chown {} to group {g}", path.display()))?;
    }
    Ok(listener)
}

/// Run the daemon until SIGTERM or SIGINT.
pub async fn run(flags: Flags) -> anyhow::Result<()> {
    let (cfg, insecure_tcp) = load_config(&flags)?;
    init_logging(cfg.debug);
    let mut sockets: Vec<PathBuf> = Vec::new();
    let mut tcp: Vec<String> = Vec::new();
    for h in &cfg.hosts {
        match h {
            HostAddr::Unix(p) => sockets.push(p.clone()),
            HostAddr::Tcp(addr) => tcp.push(addr.clone()),
        }
    }
    // Checked before anything changes: a TCP socket without TLS is refused at once.
    let tls = if tcp.is_empty() {
        None
    } else {
        crate::tls::acceptor(&cfg, insecure_tcp)?
    };
    std::fs::create_dir_all(&cfg.data_root)
        .with_context(|| format!("mkdir {}", cfg.data_root.display()))?;
    let store = reef_store::Store::open(&cfg.data_root.join("reef.db"))?;
    let exec = reef_kernel::exec::Executor::new().context("cannot open netlink")?;
    let shim = ShimCommand {
        program: std::env::current_exe().context("cannot find reefd's own executable")?,
        args: vec![
            crate::SHIM_ARG.to_string(),
            reef_runtime::SANDBOX_DIR_ARG.to_string(),
            reef_engine::Paths::new(&cfg)
                .netns_dir()
                .to_string_lossy()
                .into_owned(),
        ],
    };
    let group = cfg.group.clone();
    let cfg_tls = cfg.tls || cfg.tlsverify;
    let rt = tokio::runtime::Handle::current();
    let engine = tokio::task::spawn_blocking(move || {
        let cluster = cfg.cluster.clone();
        let engine = Engine::start(
            cfg,
            Box::new(store),
            Box::new(exec),
            Some(shim),
            Box::new(crate::host::RealHost),
            rt,
        )?;
        if let Some(cluster) = cluster {
            engine.join_cluster(&cluster)?;
        }
        anyhow::Ok(engine)
    })
    .await
    .context("engine start-up panicked")??;

    let app = crate::api::router(engine);
    let app = tower::util::MapRequestLayer::new(crate::api::strip_version).layer(app);
    let mut servers = tokio::task::JoinSet::new();
    for path in &sockets {
        let listener = bind_unix(path, group.as_deref())?;
        let svc = axum::ServiceExt::<axum::extract::Request>::into_make_service(app.clone());
        servers.spawn(async move { axum::serve(listener, svc).await });
        tracing::info!(socket = %path.display(), "API listening");
    }
    for addr in &tcp {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on tcp://{addr}"))?;
        let (tls, svc) = (tls.clone(), app.clone());
        servers.spawn(async move { crate::tls::serve(listener, tls, svc).await });
        tracing::info!(%addr, tls = cfg_tls, "API listening on TCP");
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping (containers keep running)"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping (containers keep running)"),
        Some(res) = servers.join_next() => {
            res.context("API server panicked")?.context("API server failed")?;
        }
    }
    for path in &sockets {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
