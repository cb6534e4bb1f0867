//! User-defined networks (`reef network create|rm|prune|connect|disconnect`): each is a
//! bridge reef owns, with its own subnet, isolated from the others by the firewall.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};
use reef_core::driver::{macvlan, overlay};
use reef_core::model::{
    BridgeNetwork, Container, DriverConfig, Endpoint, Network, NetworkAttachment,
};
use reef_core::names;
use reef_core::plan;
use reef_store::Change;

use super::networks::{OPT_BRIDGE_NAME, OPT_HOST_IP, OPT_ICC, OPT_MASQ, OPT_MTU};
use super::{Engine, EngineError, Inner, Result};

pub use reef_core::driver::NetworkCreate;

fn invalid(m: impl Into<String>) -> EngineError {
    EngineError::Invalid(m.into())
}

fn parse_bool_opt(options: &BTreeMap<String, String>, key: &str) -> Result<()> {
    match options.get(key) {
        Some(v) if v.parse::<bool>().is_err() => Err(invalid(format!(
            "invalid -o {key}={v}: expected true or false"
        ))),
        _ => Ok(()),
    }
}

impl Engine {
    /// A network by id, name, or unique id prefix.
    pub(crate) fn find_network<'a>(&self, inner: &'a Inner, key: &str) -> Result<&'a Network> {
        if let Some(n) = inner.networks.get(key) {
            return Ok(n);
        }
        if let Some(n) = inner.networks.values().find(|n| n.name == key) {
            return Ok(n);
        }
        let mut m = inner.networks.values().filter(|n| n.id.starts_with(key));
        match (m.next(), m.next()) {
            (Some(n), None) if !key.is_empty() => Ok(n),
            _ => Err(EngineError::NotFound(format!("network {key} not found"))),
        }
    }

    /// A copy of a network by name, id or id prefix.
    pub fn network(&self, key: &str) -> Result<Network> {
        let inner = self.lock();
        Ok(self.find_network(&inner, key)?.clone())
    }

    /// All networks and all containers (for listing and inspecting).
    pub fn networks(&self) -> (Vec<Network>, Vec<Container>) {
        let inner = self.lock();
        (
            inner.networks.values().cloned().collect(),
            inner.containers.values().cloned().collect(),
        )
    }

    /// Subnets that are taken: the host's addresses and routes, and every network's but
    /// `except`'s.
    pub(crate) fn subnets_in_use(
        &self,
        inner: &mut Inner,
        except: Option<&str>,
    ) -> Result<Vec<Ipv4Net>> {
        let host = &mut inner.exec;
        let mut in_use: Vec<Ipv4Net> = host
            .addrs()?
            .iter()
            .filter_map(|a| match a.addr {
                IpNet::V4(v4) => Some(v4.trunc()),
                IpNet::V6(_) => None,
            })
            .collect();
        in_use.extend(host.routes()?.iter().filter_map(|r| match r.dst {
            IpNet::V4(v4) if v4.prefix_len() > 0 => Some(v4),
            _ => None,
        }));
        in_use.extend(
            inner
                .networks
                .values()
                .filter(|n| Some(n.name.as_str()) != except)
                .filter_map(|n| n.bridge().map(|b| b.subnet)),
        );
        Ok(in_use)
    }

    /// Create a network; returns its id.
    pub fn create_network(&self, req: NetworkCreate) -> Result<String> {
        let mut inner = self.lock();
        if req.name.is_empty() {
            return Err(invalid("a network needs a name"));
        }
        names::validate_container_name(&req.name)
            .map_err(|_| invalid(format!("invalid network name {:?}", req.name)))?;
        if inner.networks.values().any(|n| n.name == req.name) {
            return Err(EngineError::Conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let id = self.host.random_id();
        if req.driver == "overlay" {
            let net = self.create_overlay(&mut inner, req, &id)?;
            return self.finish_create(&mut inner, net);
        }
        let driver = match req.driver.as_str() {
            "" | "bridge" => DriverConfig::Bridge {
                bridge: self.decide_bridge(&mut inner, &req, &id)?,
            },
            "macvlan" => {
                let mut facts = macvlan::HostFacts {
                    subnets_in_use: self.subnets_in_use(&mut inner, None)?,
                    ..Default::default()
                };
                for name in macvlan::links_to_look_up(&req) {
                    if let Some(link) = inner.exec.link(&name)? {
                        facts.link_mtus.insert(name, link.mtu);
                    }
                }
                let others: Vec<&Network> = inner.networks.values().collect();
                DriverConfig::Macvlan {
                    macvlan: macvlan::decide(&req, &id, &others, &facts)?,
                }
            }
            d => {
                return Err(invalid(format!(
                    "network driver {d:?} is not supported: reef has the bridge, macvlan and \
                     overlay drivers"
                )))
            }
        };
        let internal = match driver {
            DriverConfig::Macvlan { .. } => macvlan::is_internal(&req),
            _ => req.internal,
        };
        let net = Network {
            id: id.clone(),
            name: req.name,
            driver,
            internal,
            labels: req.labels,
            options: req.options,
            created: crate::clock::rfc3339(crate::clock::now_nanos()),
        };
        self.finish_create(&mut inner, net)
    }

    /// Record a new network and bring its objects up; for an overlay (already in the
    /// cluster store) a failure here removes it from the store again.
    fn finish_create(&self, inner: &mut Inner, net: Network) -> Result<String> {
        let id = net.id.clone();
        // Record first: a crash after this leaves a network whose objects start-up
        // re-creates, never an object no record accounts for.
        let recorded = inner.store.commit(&[Change::PutNetwork(net.clone())]);
        let applied = recorded.map_err(EngineError::from).and_then(|()| {
            let plan = reef_core::driver::network_up(&net, self.firewall_rule(&net));
            inner.exec.apply_plan(&plan).map_err(|e| {
                let _ = inner.store.commit(&[Change::DeleteNetwork(id.clone())]);
                EngineError::from(e)
            })
        });
        if let Err(e) = applied {
            if let (Some(ov), Some(link)) = (net.overlay(), self.cluster_link()) {
                if let Err(undo) = link.store.remove_network(&net, ov.vni) {
                    tracing::error!(network = %net.name, error = %undo, "cannot withdraw the overlay from the cluster store");
                }
            }
            return Err(e);
        }
        inner.networks.insert(id.clone(), net.clone());
        if let Some(addr) = net.driver.endpoints().and_then(|d| d.dns_address()) {
            if let Err(e) = self.dns_listen(addr) {
                tracing::warn!(network = %id, error = %e, "embedded DNS cannot listen on the gateway");
            }
        }
        self.publish_dns(inner);
        Ok(id)
    }

    /// Decide an overlay and create it in the cluster store, deciding again when another
    /// host created or removed a network meanwhile.
    fn create_overlay(&self, inner: &mut Inner, req: NetworkCreate, id: &str) -> Result<Network> {
        let link = self.need_cluster()?;
        let underlay_mtu = inner
            .exec
            .link(&link.vtep.underlay)?
            .map_or(reef_core::config::DEFAULT_MTU, |l| l.mtu);
        let host = overlay::OverlayHost {
            vtep: link.vtep.clone(),
            underlay_mtu,
            subnets_in_use: self.subnets_in_use(inner, None)?,
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let view = link.store.view();
            if view.networks.contains_key(&req.name) {
                return Err(EngineError::Conflict(format!(
                    "network with name {} already exists",
                    req.name
                )));
            }
            let local: Vec<&Network> = inner.networks.values().collect();
            let ov = overlay::decide(&req, id, &local, &view, &host)?;
            let vni = ov.vni;
            let net = Network {
                id: id.to_string(),
                name: req.name.clone(),
                driver: DriverConfig::Overlay { overlay: ov },
                internal: req.internal,
                labels: req.labels.clone(),
                options: req.options.clone(),
                created: crate::clock::rfc3339(crate::clock::now_nanos()),
            };
            let global = reef_core::cluster::global_record(&net);
            match link.store.create_network(&global, vni, view.netver) {
                Ok(()) => return Ok(net),
                Err(reef_cluster::ClusterError::Conflict(_)) if attempts < 5 => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The bridge of a new bridge network, from its options.
    fn decide_bridge(
        &self,
        inner: &mut Inner,
        req: &NetworkCreate,
        id: &str,
    ) -> Result<BridgeNetwork> {
        parse_bool_opt(&req.options, OPT_ICC)?;
        parse_bool_opt(&req.options, OPT_MASQ)?;
        let mtu = match req.options.get(OPT_MTU) {
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|m| (68..=65535).contains(m))
                .ok_or_else(|| {
                    invalid(format!("invalid -o {OPT_MTU}={v}: expected 68 to 65535"))
                })?,
            None => self.cfg.mtu,
        };
        if let Some(v) = req.options.get(OPT_HOST_IP) {
            v.parse::<Ipv4Addr>().map_err(|_| {
                invalid(format!(
                    "invalid -o {OPT_HOST_IP}={v}: expected an IPv4 address"
                ))
            })?;
        }
        let in_use = self.subnets_in_use(inner, None)?;
        let others: Vec<&Network> = inner.networks.values().collect();
        let (subnet, gateway) = reef_core::driver::choose_addresses(req, &others, &in_use)?;
        let ifname = match req.options.get(OPT_BRIDGE_NAME) {
            Some(n) => {
                names::validate_ifname(n).map_err(|e| invalid(e.to_string()))?;
                let taken = inner
                    .networks
                    .values()
                    .any(|o| o.bridge().is_some_and(|b| &b.ifname == n))
                    || matches!(inner.exec.link(n), Ok(Some(_)));
                if taken {
                    return Err(EngineError::Conflict(format!(
                        "bridge name {n} is already in use on this host"
                    )));
                }
                n.clone()
            }
            None => names::user_bridge_name(id),
        };
        Ok(BridgeNetwork {
            ifname,
            subnet,
            gateway,
            bridge_addr: Some(
                Ipv4Net::new(gateway, subnet.prefix_len()).expect("prefix from subnet"),
            ),
            ip_range: req.ip_range.map(|r| r.trunc()),
            mtu,
            owned: true,
        })
    }

    /// The firewall rule of a bridge network, when reef writes a firewall.
    pub(crate) fn firewall_rule(&self, net: &Network) -> Option<reef_core::firewall::NetworkRule> {
        (self.cfg.iptables && net.bridge().is_some()).then(|| self.network_rule(net))
    }

    /// Remove a network nobody uses.
    pub fn remove_network(&self, key: &str) -> Result<()> {
        let mut inner = self.lock();
        let net = self.find_network(&inner, key)?.clone();
        self.remove_network_locked(&mut inner, &net)
    }

    fn remove_network_locked(&self, inner: &mut Inner, net: &Network) -> Result<()> {
        if matches!(net.name.as_str(), "bridge" | "host" | "none") {
            return Err(EngineError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                net.name
            )));
        }
        // Running containers on it, and stopped ones that would rejoin it on start.
        let users: Vec<&str> = inner
            .containers
            .values()
            .filter(|c| {
                c.endpoints.iter().any(|e| e.network_id == net.id)
                    || c.spec
                        .networks
                        .iter()
                        .any(|a| a.network == net.name || a.network == net.id)
            })
            .map(|c| c.name.as_str())
            .collect();
        if !users.is_empty() {
            return Err(EngineError::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints ({})",
                net.name,
                net.id,
                users.join(", ")
            )));
        }
        // An overlay goes from the cluster first: refused there while any host has a
        // container on it; the other hosts remove theirs when they see it go.
        if let Some(ov) = net.overlay() {
            self.need_cluster()?.store.remove_network(net, ov.vni)?;
        }
        self.take_down_network(inner, net)
    }

    /// Forget a network and remove its objects (nothing here may use it).
    pub(crate) fn take_down_network(&self, inner: &mut Inner, net: &Network) -> Result<()> {
        // Record first; the kernel work after it is what `reef system gc` and the next
        // start-up finish if it is cut off (an unrecorded bridge of reef's is removed then).
        inner
            .store
            .commit(&[Change::DeleteNetwork(net.id.clone())])?;
        inner.networks.remove(&net.id);
        let Some(driver) = net.driver.endpoints() else {
            return Ok(());
        };
        if let Some(addr) = driver.dns_address() {
            self.dns_unlisten(addr);
        }
        let ops = reef_core::driver::network_down(net, self.firewall_rule(net));
        for op in ops {
            if let Err(e) = inner.exec.apply(&op) {
                tracing::warn!(op = %op, error = %e, "network removal step failed");
            }
        }
        self.publish_dns(inner);
        Ok(())
    }

    /// Remove every user network no container uses; returns their names.
    pub fn prune_networks(&self) -> Result<Vec<String>> {
        let mut inner = self.lock();
        let candidates: Vec<Network> = inner
            .networks
            .values()
            .filter(|n| !matches!(n.name.as_str(), "bridge" | "host" | "none"))
            .cloned()
            .collect();
        let mut removed = Vec::new();
        for n in candidates {
            if self.remove_network_locked(&mut inner, &n).is_ok() {
                removed.push(n.name);
            }
        }
        Ok(removed)
    }

    /// Attach a container to a network; a running container gets the interface at once.
    pub fn connect(
        self: &Arc<Self>,
        net_key: &str,
        ctr_key: &str,
        ip: Option<Ipv4Addr>,
        aliases: Vec<String>,
    ) -> Result<()> {
        let mut inner = self.lock();
        let net = self.find_network(&inner, net_key)?.clone();
        let mut c = self.find_in(&inner, ctr_key)?.clone();
        let Some(driver) = net.driver.endpoints() else {
            return Err(invalid(format!(
                "container cannot be connected to the {} network",
                net.name
            )));
        };
        let mode = c
            .spec
            .network_mode
            .clone()
            .unwrap_or(reef_core::model::NetworkMode::Bridge);
        if !matches!(
            mode,
            reef_core::model::NetworkMode::Bridge | reef_core::model::NetworkMode::Named(_)
        ) {
            return Err(invalid(format!(
                "container sharing network namespace with another container or host cannot be connected to any other network (--network {mode})"
            )));
        }
        if net.name == names::DEFAULT_NETWORK && !aliases.is_empty() {
            return Err(invalid(
                "network-scoped aliases are only supported for user-defined networks",
            ));
        }
        let mut atts = Self::attachments(&c);
        if atts
            .iter()
            .any(|a| a.network == net.name || a.network == net.id)
            || c.endpoints.iter().any(|e| e.network_id == net.id)
        {
            return Err(EngineError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                c.name, net.name
            )));
        }
        let att = NetworkAttachment {
            network: net.name.clone(),
            ip,
            aliases,
        };
        if c.is_running() {
            let sandbox = c
                .sandbox
                .clone()
                .map(std::path::PathBuf::from)
                .ok_or_else(|| {
                    invalid(format!(
                        "container {} has no network namespace of its own",
                        c.name
                    ))
                })?;
            let index = (0..)
                .find(|i| {
                    !c.endpoints
                        .iter()
                        .any(|e| e.ifname == names::container_ifname(*i))
                })
                .expect("an index is free");
            let ep = self.new_endpoint(&inner, &c, &net, index, &att, &c.endpoints)?;
            // Record the endpoint first: after a crash, start-up repair finds it and finishes
            // the attachment (clearing a half-made interface) instead of leaving debris.
            let before = c.clone();
            let mut pending = c.clone();
            pending.endpoints.push(Endpoint {
                pending: true,
                ..ep.clone()
            });
            self.put(&mut inner, pending)?;
            let mut steps = driver.plan_join(&ep, sandbox);
            let identity = reef_core::firewall::Elements {
                endpoints: reef_core::firewall::endpoint_rule(&ep)
                    .into_iter()
                    .collect(),
                ..Default::default()
            };
            if self.cfg.iptables {
                steps.extend(plan::firewall(identity.clone()));
            }
            if let Err(e) = inner.exec.apply_plan(&steps) {
                self.put(&mut inner, before)?;
                return Err(e.into());
            }
            if self.cfg.iptables {
                c.firewall.extend(&identity);
            }
            c.endpoints.push(ep);
        } else if let Some(ip) = ip {
            // A stopped container gets its address at start; check the request now.
            self.address_space(&net)?
                .allocate(&self.allocated_on(&inner, &net.id), Some(ip))
                .map_err(|e| invalid(e.to_string()))?;
        }
        atts.push(att);
        c.spec.networks = atts;
        let id = c.id.clone();
        self.put(&mut inner, c)?;
        self.publish_dns_container(&inner, &id);
        Ok(())
    }

    /// Detach a container from a network.
    pub fn disconnect(&self, net_key: &str, ctr_key: &str, force: bool) -> Result<()> {
        let mut inner = self.lock();
        let net = self.find_network(&inner, net_key)?.clone();
        let mut c = match self.find_in(&inner, ctr_key) {
            Ok(c) => c.clone(),
            // -f: the container is gone already; nothing of it is left to detach.
            Err(EngineError::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let atts = Self::attachments(&c);
        let attached = atts
            .iter()
            .any(|a| a.network == net.name || a.network == net.id)
            || c.endpoints.iter().any(|e| e.network_id == net.id);
        if !attached {
            return Err(EngineError::Forbidden(format!(
                "container {} is not connected to network {}",
                c.name, net.name
            )));
        }
        // The record goes first: if reefd dies before the kernel work below, start-up
        // removes the veth pair and sync_firewall the elements, as orphans; the other way
        // round, a crash would leave a recorded endpoint whose interface is parked.
        let mut teardown = None;
        if let Some(pos) = c.endpoints.iter().position(|e| e.network_id == net.id) {
            let ep = c.endpoints.remove(pos);
            let gone = reef_core::firewall::take_on_leave(&mut c.firewall, &ep, pos == 0);
            if pos == 0 {
                c.ports.clear();
                self.proxies.stop(&c.id);
            }
            teardown = Some((ep, gone));
        }
        c.spec.networks = atts
            .into_iter()
            .filter(|a| a.network != net.name && a.network != net.id)
            .collect();
        if c.spec.networks.is_empty() {
            c.spec.network_mode = Some(reef_core::model::NetworkMode::None);
        }
        let id = c.id.clone();
        let sandbox = c.sandbox.clone();
        self.put(&mut inner, c)?;
        if let Some((ep, gone)) = teardown {
            self.leave_network(&mut inner, &id, &ep, sandbox, gone);
        }
        self.publish_dns_container(&inner, &id);
        Ok(())
    }

    /// Leave a network in the kernel (see [`plan::leave`]): what fails is logged, and a
    /// veth pair that could not be set aside is deleted at once instead of later.
    fn leave_network(
        &self,
        inner: &mut Inner,
        id: &str,
        ep: &Endpoint,
        sandbox: Option<String>,
        firewall: reef_core::firewall::Elements,
    ) {
        let leave = plan::leave(ep, sandbox.clone().map(Into::into), firewall);
        let mut all_applied = true;
        for op in &leave.ops {
            if let Err(e) = inner.exec.apply(op) {
                tracing::warn!(%id, op = %op, error = %e, "disconnect step failed");
                all_applied = false;
            }
        }
        let Some(host_end) = leave.reap else { return };
        if all_applied {
            self.reaper.delete_link(host_end);
        } else if let Err(e) = inner
            .exec
            .apply_plan(&plan::detach(ep, sandbox.unwrap_or_default().into()))
        {
            tracing::warn!(%id, error = %e, "disconnect: the veth pair stays until start-up removes it");
        }
    }
}
