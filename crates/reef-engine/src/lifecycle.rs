//! Starting, signalling, reaping and removing containers.
//!
//! Start order, chosen so that `kill -9` at any point can be reconciled: record the intent
//! (`Starting`, with the sandbox and endpoints it will get) -> write /etc files -> apply the
//! network plan (undone on failure) -> launch the process -> record `Running`. Exit order: the
//! shim ends -> tear the network down -> record `Exited` (addresses released) -> notify.

use std::sync::Arc;

use reef_core::etc;
use reef_core::firewall::{self, Elements};
use reef_core::model::{Container, Endpoint, NetworkAttachment, NetworkMode, PortBinding, Status};
use reef_core::names;
use reef_core::plan::{self, Plan};
use reef_runtime::{EtcFiles, LaunchSpec};
use reef_store::Change;

use super::files::{self, RenderedEtc};
use super::{Engine, EngineError, ExitEvent, Inner, Result};

/// Where a container's process will live.
struct Placement {
    netns: Option<std::path::PathBuf>,
    sandbox: Option<std::path::PathBuf>,
    endpoints: Vec<Endpoint>,
    plan: Plan,
    hostname: String,
    /// Files to bind-mount; `None` render means "reuse another container's files".
    etc_files: EtcFiles,
    render: Option<RenderedEtc>,
    /// Published ports.
    ports: Vec<PortBinding>,
    /// Firewall elements the plan adds.
    firewall: Elements,
    /// Environment added by links.
    extra_env: Vec<String>,
}

impl Engine {
    /// Start a created or exited container. With `wait_for_attach`, its process is held
    /// right before exec until an attach client connects.
    pub fn start_container(self: &Arc<Self>, key: &str, wait_for_attach: bool) -> Result<()> {
        let mut inner = self.lock();
        let before = self.find_in(&inner, key)?.clone();
        if before.is_running() {
            return Err(EngineError::NotModified);
        }
        let place = self.place(&inner, &before)?;
        let mut starting = before.clone();
        starting.status = Status::Starting;
        starting.start_count += 1;
        starting.sandbox = place.sandbox.as_ref().map(|p| p.display().to_string());
        starting.endpoints = place.endpoints.clone();
        starting.ports = place.ports.clone();
        starting.firewall = place.firewall.clone();
        starting.exit_code = None;
        self.put(&mut inner, starting.clone())?;

        let launched = self.bring_up(&mut inner, &starting, &place, wait_for_attach);
        let launched = match launched {
            Ok(l) => l,
            Err(e) => {
                self.put(&mut inner, before)?;
                return Err(e);
            }
        };
        let mut running = starting;
        running.status = Status::Running;
        running.pid = Some(launched.pid);
        running.shim_pid = Some(launched.shim_pid);
        running.pid_start_time = Some(launched.pid_start_time);
        running.started_at = Some(crate::clock::rfc3339(crate::clock::now_nanos()));
        let (id, count) = (running.id.clone(), running.start_count);
        self.put(&mut inner, running)?;
        self.publish_dns_container(&inner, &id);
        drop(inner);
        self.watch_exit(id, count, launched.shim_pid);
        Ok(())
    }

    /// Files, kernel, process; each step undone if a later one fails.
    fn bring_up(
        &self,
        inner: &mut Inner,
        c: &Container,
        place: &Placement,
        wait_for_attach: bool,
    ) -> Result<reef_runtime::Launched> {
        let dir = self.paths.container_dir(&c.id);
        std::fs::create_dir_all(&dir).map_err(super::io_err(format!("mkdir {}", dir.display())))?;
        if let Some(r) = &place.render {
            files::write_etc(&place.etc_files, r)?;
        }
        inner.exec.fail_after(self.fail_after_step);
        let applied = inner.exec.apply_plan(&place.plan);
        inner.exec.fail_after(None);
        applied?;
        let state_dir = self.paths.state_dir(&c.id);
        let spec = LaunchSpec {
            id: c.id.clone(),
            argv: c.spec.cmd.clone(),
            env: c.spec.env.iter().chain(&place.extra_env).cloned().collect(),
            netns: place.netns.clone(),
            hostname: place.hostname.clone(),
            etc_files: Some(place.etc_files.clone()),
            tty: c.spec.tty,
            open_stdin: c.spec.open_stdin,
            wait_for_attach,
            state_dir: state_dir.clone(),
            log_path: self.paths.log(&c.id),
        };
        let mut planned = c.clone();
        planned.ports = place.ports.clone();
        planned.endpoints = place.endpoints.clone();
        let relays = super::proxy::relays_of(&planned);
        let launched = self
            .proxies
            .start(&self.rt, &c.id, &relays)
            .map_err(|e| EngineError::Conflict(e.to_string()))
            .and_then(|()| {
                std::fs::create_dir_all(&state_dir)
                    .map_err(super::io_err(format!("mkdir {}", state_dir.display())))
            })
            .and_then(|()| {
                let shim = self.shim.as_ref().ok_or_else(|| {
                    EngineError::Invalid(
                        "this engine was started without a container runtime".into(),
                    )
                })?;
                Ok(shim.launch(&spec)?)
            });
        if launched.is_err() {
            self.proxies.stop(&c.id);
            self.undo_plan(inner, &place.plan);
        }
        launched
    }

    fn undo_plan(&self, inner: &mut Inner, plan: &Plan) {
        for op in plan.rollback(plan.steps.len()) {
            if let Err(e) = inner.exec.apply(&op) {
                tracing::warn!(op = %op, error = %e, "rollback step failed");
            }
        }
    }

    /// Decide the namespace, addresses, plan and files of a start.
    fn place(&self, inner: &Inner, c: &Container) -> Result<Placement> {
        let mode = c.spec.network_mode.clone().unwrap_or(NetworkMode::Bridge);
        let own_files = self.paths.etc_files(&c.id);
        let hostname = c.hostname();
        let host_resolv = etc::parse_resolv_conf(&self.host.resolv_conf());
        let pick = |spec: &Vec<String>, dflt: Vec<String>| {
            if spec.is_empty() {
                dflt
            } else {
                spec.clone()
            }
        };
        let dns = pick(
            &c.spec.dns,
            self.cfg.dns.iter().map(|d| d.to_string()).collect(),
        );
        let search = pick(&c.spec.dns_search, self.cfg.dns_search.clone());
        let options = pick(&c.spec.dns_options, self.cfg.dns_opts.clone());
        let container_resolv = || {
            etc::render_resolv_conf(&etc::container_resolv_conf(
                &host_resolv,
                &dns,
                &search,
                &options,
            ))
        };
        match mode {
            NetworkMode::Bridge | NetworkMode::Named(_) => {
                let sandbox = self.paths.sandbox(&c.id);
                let mut plan = plan::sandbox_create(sandbox.clone());
                let endpoints = self.plan_endpoints(inner, c, &sandbox, &mut plan)?;
                let first = &endpoints[0];
                let first_net = &inner.networks[&first.network_id];
                // Docker's per-network default host address for published ports.
                let default_ip = first_net
                    .options
                    .get(super::networks::OPT_HOST_IP)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(self.cfg.ip);
                let (ports, port_rules) = self.allocate_ports(inner, c, first.ip, default_ip)?;
                if let Some(why) = first_net
                    .driver
                    .endpoints()
                    .and_then(|d| d.refuses_ports(&first_net.name))
                    .filter(|_| !ports.is_empty())
                {
                    return Err(EngineError::Invalid(why));
                }
                if first_net.internal && !ports.is_empty() {
                    return Err(EngineError::Invalid(format!(
                        "cannot publish ports of a container on the internal network {}",
                        first_net.name
                    )));
                }
                let links = self.link_setup(inner, c, &first.network_id, first.ip)?;
                // With --iptables=false reef writes no rules at all (ports were refused above).
                let firewall = if self.cfg.iptables {
                    Elements {
                        networks: vec![],
                        ports: port_rules,
                        links: links.rules,
                        endpoints: endpoints
                            .iter()
                            .filter_map(firewall::endpoint_rule)
                            .collect(),
                    }
                } else {
                    Elements::default()
                };
                plan.extend(plan::firewall(firewall.clone()));
                // On a user network the embedded DNS server (on the gateway) is the
                // nameserver; the container's --dns become its upstreams.
                let embedded_dns = endpoints.iter().find_map(|e| {
                    let n = &inner.networks[&e.network_id];
                    (n.name != names::DEFAULT_NETWORK)
                        .then(|| n.driver.endpoints().and_then(|d| d.dns_address()))
                        .flatten()
                });
                let resolv_conf = match embedded_dns {
                    Some(gw) => etc::render_resolv_conf(&etc::container_resolv_conf(
                        &host_resolv,
                        &[gw.to_string()],
                        &search,
                        &options,
                    )),
                    None => container_resolv(),
                };
                Ok(Placement {
                    netns: Some(sandbox.clone()),
                    sandbox: Some(sandbox),
                    ports,
                    firewall,
                    extra_env: links.env,
                    render: Some(RenderedEtc {
                        hosts: etc::render_hosts(
                            Some((first.ip, &hostname)),
                            &c.spec.extra_hosts,
                            &links.hosts,
                        ),
                        hostname: etc::render_hostname(&hostname),
                        resolv_conf,
                    }),
                    endpoints,
                    plan,
                    hostname,
                    etc_files: own_files,
                })
            }
            NetworkMode::None => {
                let sandbox = self.paths.sandbox(&c.id);
                Ok(Placement {
                    netns: Some(sandbox.clone()),
                    plan: plan::sandbox_create(sandbox.clone()),
                    sandbox: Some(sandbox),
                    endpoints: vec![],
                    ports: vec![],
                    firewall: Elements::default(),
                    extra_env: vec![],
                    render: Some(RenderedEtc {
                        hosts: etc::render_hosts(None, &c.spec.extra_hosts, &[]),
                        hostname: etc::render_hostname(&hostname),
                        resolv_conf: container_resolv(),
                    }),
                    hostname,
                    etc_files: own_files,
                })
            }
            NetworkMode::Host => {
                // The host's own view, as Docker gives a --network host container.
                let hostname = c
                    .spec
                    .hostname
                    .clone()
                    .unwrap_or_else(|| self.host.hostname());
                let mut hosts = self.host.hosts();
                for h in &c.spec.extra_hosts {
                    hosts.push_str(&format!("{}\t{}\n", h.addr, h.name));
                }
                let overridden = !(c.spec.dns.is_empty()
                    && c.spec.dns_search.is_empty()
                    && c.spec.dns_options.is_empty());
                let resolv_conf = if overridden {
                    container_resolv()
                } else {
                    self.host.resolv_conf()
                };
                Ok(Placement {
                    netns: None,
                    sandbox: None,
                    endpoints: vec![],
                    ports: vec![],
                    firewall: Elements::default(),
                    extra_env: vec![],
                    plan: Plan::default(),
                    render: Some(RenderedEtc {
                        hosts,
                        hostname: etc::render_hostname(&hostname),
                        resolv_conf,
                    }),
                    hostname,
                    etc_files: own_files,
                })
            }
            NetworkMode::Container(target) => {
                let t = self.find_in(inner, &target)?;
                if !t.is_running() {
                    return Err(EngineError::Conflict(format!(
                        "cannot join network of a non running container: {target}"
                    )));
                }
                let netns = self.netns_of(inner, t);
                Ok(Placement {
                    netns,
                    sandbox: None,
                    endpoints: vec![],
                    ports: vec![],
                    firewall: Elements::default(),
                    extra_env: vec![],
                    plan: Plan::default(),
                    render: None,
                    hostname: t.hostname(),
                    etc_files: self.paths.etc_files(&t.id),
                })
            }
        }
    }

    /// The bridge-kind networks a container asks to be on, in order.
    pub(crate) fn attachments(c: &Container) -> Vec<NetworkAttachment> {
        if !c.spec.networks.is_empty() {
            return c.spec.networks.clone();
        }
        let network = match c.spec.network_mode.clone().unwrap_or(NetworkMode::Bridge) {
            NetworkMode::Named(n) => n,
            _ => names::DEFAULT_NETWORK.to_string(),
        };
        vec![NetworkAttachment {
            network,
            ip: c.spec.ip,
            aliases: vec![],
        }]
    }

    /// One endpoint per network the container is on (`eth0`, `eth1`, ...), with addresses,
    /// and the steps attaching them to `sandbox`. The default route goes through the first
    /// network that is not internal.
    fn plan_endpoints(
        &self,
        inner: &Inner,
        c: &Container,
        sandbox: &std::path::Path,
        plan: &mut Plan,
    ) -> Result<Vec<Endpoint>> {
        let mut endpoints: Vec<Endpoint> = Vec::new();
        for (i, att) in Self::attachments(c).iter().enumerate() {
            let mode = NetworkMode::Named(att.network.clone());
            let net = self.endpoint_network_for(inner, &mode)?;
            if endpoints.iter().any(|e| e.network_id == net.id) {
                return Err(EngineError::Conflict(format!(
                    "container {} is already attached to network {}",
                    c.name, net.name
                )));
            }
            let ep = self.new_endpoint(inner, c, net, i, att, &endpoints)?;
            let driver = net
                .driver
                .endpoints()
                .expect("an endpoint network has a driver");
            plan.extend(driver.plan_join(&ep, sandbox.to_path_buf()));
            endpoints.push(ep);
        }
        Ok(endpoints)
    }

    /// An endpoint on `net` as interface `eth<index>`; `others` are the container's other
    /// endpoints (they decide whether this one carries the default route).
    pub(crate) fn new_endpoint(
        &self,
        inner: &Inner,
        c: &Container,
        net: &reef_core::model::Network,
        index: usize,
        att: &NetworkAttachment,
        others: &[Endpoint],
    ) -> Result<Endpoint> {
        let driver = net
            .driver
            .endpoints()
            .expect("an endpoint network has a driver");
        let pool = net.pool().expect("an endpoint network has addresses");
        let ip = if net.overlay().is_some() {
            self.overlay_address(inner, net, att.ip, &c.id)?
        } else {
            self.address_space(net)?
                .allocate(&self.allocated_on(inner, &net.id), att.ip)
                .map_err(|e| EngineError::Invalid(e.to_string()))?
        };
        let mac = match (&c.spec.mac, index) {
            (Some(m), 0) => names::format_mac(
                names::parse_mac(m).map_err(|e| EngineError::Invalid(e.to_string()))?,
            ),
            _ => names::format_mac(names::mac_from_ipv4(ip)),
        };
        let has_default = others.iter().any(|e| e.gateway.is_some());
        let ep_id = self.host.random_id();
        Ok(Endpoint {
            host_ifname: driver.host_ifname(&ep_id),
            id: ep_id,
            network_id: net.id.clone(),
            ifname: names::container_ifname(index),
            ip,
            prefix_len: pool.subnet.prefix_len(),
            gateway: (!has_default && !net.internal).then_some(pool.gateway),
            mac,
            aliases: att.aliases.clone(),
            pending: false,
        })
    }

    /// The network namespace a running container's processes are in (`None`: the host's).
    fn netns_of(&self, inner: &Inner, c: &Container) -> Option<std::path::PathBuf> {
        match c.spec.network_mode.clone().unwrap_or(NetworkMode::Bridge) {
            NetworkMode::Host => None,
            NetworkMode::Container(t) => self
                .find_in(inner, &t)
                .ok()
                .and_then(|t| self.netns_of(inner, t)),
            _ => c.sandbox.as_ref().map(std::path::PathBuf::from),
        }
    }

    pub(crate) fn put(&self, inner: &mut Inner, c: Container) -> Result<()> {
        inner
            .store
            .commit(&[Change::PutContainer(Box::new(c.clone()))])?;
        inner.containers.insert(c.id.clone(), c);
        Ok(())
    }

    /// Reap a container when its shim ends.
    pub(crate) fn watch_exit(self: &Arc<Self>, id: String, start_count: u32, shim_pid: i32) {
        let engine = Arc::clone(self);
        self.rt.spawn(async move {
            if let Err(e) = reef_runtime::wait_shim(shim_pid).await {
                tracing::warn!(%id, error = %e, "cannot watch the container's shim");
            }
            let _ = tokio::task::spawn_blocking(move || engine.on_exit(&id, start_count)).await;
        });
    }

    /// The shim of start `start_count` ended: tear down, record, notify.
    pub(crate) fn on_exit(&self, id: &str, start_count: u32) {
        let mut inner = self.lock();
        let Some(c) = inner.containers.get(id).cloned() else {
            return;
        };
        if c.start_count != start_count || !c.is_running() {
            return;
        }
        let code = self.collect_exit_code(&c);
        if let Err(e) = self.finish_exit(&mut inner, c, code) {
            tracing::error!(%id, error = %e, "cannot record container exit");
        }
        self.publish_dns_container(&inner, id);
        let _ = self.exits.send(ExitEvent {
            id: id.to_string(),
            start_count,
            exit_code: code,
        });
    }

    /// The exit code the shim recorded; if the shim died without one, make sure the
    /// container process is gone too and report it as killed.
    pub(crate) fn collect_exit_code(&self, c: &Container) -> i32 {
        let state_dir = self.paths.state_dir(&c.id);
        if let Some(rec) = reef_runtime::read_exit(&state_dir) {
            return rec.exit_code;
        }
        if let (Some(pid), Some(st)) = (c.pid, c.pid_start_time) {
            if reef_runtime::process_alive(pid, st) {
                let _ = reef_runtime::signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        137
    }

    /// Tear down a container's network and record it as exited (or remove it with --rm).
    pub(crate) fn finish_exit(&self, inner: &mut Inner, mut c: Container, code: i32) -> Result<()> {
        // The state directory (with the shim's exit record) goes only once the exit is
        // recorded: a crash in between then reaps the container with its real exit code.
        self.teardown_network(inner, &c);
        c.status = Status::Exited;
        c.exit_code = Some(code);
        c.finished_at = Some(crate::clock::rfc3339(crate::clock::now_nanos()));
        c.pid = None;
        c.shim_pid = None;
        c.pid_start_time = None;
        c.sandbox = None;
        c.endpoints.clear();
        c.ports.clear();
        c.firewall = Elements::default();
        let removing = self
            .remove_on_exit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&c.id);
        if c.spec.auto_remove || removing {
            inner
                .store
                .commit(&[Change::DeleteContainer(c.id.clone())])?;
            inner.containers.remove(&c.id);
            self.remove_files_later(&c.id);
            let mut removed = self.removed_exits.lock().unwrap_or_else(|p| p.into_inner());
            if removed.len() >= 1024 {
                removed.pop_front();
            }
            removed.push_back((c.id.clone(), code));
        } else {
            let id = c.id.clone();
            self.put(inner, c)?;
            self.remove_state_dir(&id);
        }
        Ok(())
    }

    /// Remove a container's veths, sandbox and state directory. Keeps going past errors
    /// (logged): what is left is found again as an orphan by the next reconcile.
    pub(crate) fn teardown(&self, inner: &mut Inner, c: &Container) {
        self.teardown_network(inner, c);
        self.remove_state_dir(&c.id);
    }

    /// [`Engine::teardown`] but for the state directory.
    fn teardown_network(&self, inner: &mut Inner, c: &Container) {
        self.proxies.stop(&c.id);
        let firewall = self
            .cfg
            .iptables
            .then(|| reef_core::firewall::container_elements(c));
        let ops = plan::teardown(&c.endpoints, c.sandbox.as_ref().map(Into::into), firewall);
        for op in ops {
            if let Err(e) = inner.exec.apply(&op) {
                tracing::warn!(id = %c.id, op = %op, error = %e, "teardown step failed");
            }
        }
        // Removing the sandbox destroys its veth pairs in the background, unless something
        // still holds the namespace (a container: joiner). Deleting a veth blocks for tens of
        // milliseconds in the kernel, so leftovers go to the reaper thread instead of
        // holding up this request; they are down and off the bridge, and their addresses
        // were inside the sandbox, so nothing collides meanwhile.
        for host_end in c.endpoints.iter().filter_map(|e| e.host_ifname.as_ref()) {
            if matches!(inner.exec.link(host_end), Ok(Some(_))) {
                self.reaper.delete_link(host_end.clone());
            }
        }
    }

    fn remove_state_dir(&self, id: &str) {
        let state_dir = self.paths.state_dir(id);
        if let Err(e) = std::fs::remove_dir_all(&state_dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %state_dir.display(), error = %e, "cannot remove state dir");
            }
        }
    }

    /// Send a signal to a running container; returns its id and start number, to wait on.
    pub fn signal_container(
        &self,
        key: &str,
        sig: nix::sys::signal::Signal,
    ) -> Result<(String, u32)> {
        let inner = self.lock();
        let c = self.find_in(&inner, key)?;
        if !c.is_running() {
            return Err(EngineError::NotModified);
        }
        let pid = c.pid.ok_or(EngineError::NotModified)?;
        match reef_runtime::signal(pid, sig) {
            // It died already (`stop -t 0`: the SIGTERM did it before this SIGKILL) and its
            // shim is reporting the exit, which the caller waits for.
            Ok(()) | Err(reef_runtime::RuntimeError::NoSuchProcess(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok((c.id.clone(), c.start_count))
    }

    /// `rm -f` of a running container: SIGKILL it, and have its exit remove it (see
    /// `remove_on_exit`). Returns its id and start number, to wait on; `NotModified` when
    /// it is not running.
    pub fn kill_to_remove(&self, key: &str) -> Result<(String, u32)> {
        let inner = self.lock();
        let c = self.find_in(&inner, key)?;
        if !c.is_running() {
            return Err(EngineError::NotModified);
        }
        let pid = c.pid.ok_or(EngineError::NotModified)?;
        let mut marked = self
            .remove_on_exit
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        marked.insert(c.id.clone());
        if let Err(e) = reef_runtime::signal(pid, nix::sys::signal::Signal::SIGKILL) {
            marked.remove(&c.id);
            return Err(e.into());
        }
        Ok((c.id.clone(), c.start_count))
    }

    /// Drop [`Engine::kill_to_remove`]'s mark if it is still there (normally the exit has
    /// consumed it; it stays only when the container did not exit in time).
    pub fn keep_on_exit(&self, id: &str) {
        self.remove_on_exit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Remove a container record that is not running.
    pub fn remove_container(&self, key: &str) -> Result<()> {
        let mut inner = self.lock();
        let c = self.find_in(&inner, key)?.clone();
        if c.is_running() {
            return Err(EngineError::Conflict(format!(
                "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                c.id
            )));
        }
        inner
            .store
            .commit(&[Change::DeleteContainer(c.id.clone())])?;
        inner.containers.remove(&c.id);
        self.remove_files_later(&c.id);
        Ok(())
    }

    /// A removed container's directories go in the background (see `reaper`).
    fn remove_files_later(&self, id: &str) {
        for dir in self.paths.container_dirs(id) {
            self.reaper.remove_dir(dir);
        }
    }

    /// True when a container exists and runs.
    pub fn is_running(&self, key: &str) -> Result<bool> {
        let inner = self.lock();
        Ok(self.find_in(&inner, key)?.is_running())
    }
}
