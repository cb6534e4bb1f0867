//! This host in a cluster (`--cluster-store`): joining it, and following its state. Every
//! change of the cluster view wakes one sync thread, which brings this host in line:
//! global networks adopted or dropped, the tunnel entries of every overlay converged with
//! the other hosts' endpoints, the embedded DNS republished. The engine's own endpoint
//! changes are published from the same places the DNS is (`dns.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ipnet::IpNet;
use reef_cluster::{ClusterError, ClusterStore};
use reef_core::cluster::{self as core_cluster, EndpointRecord, FoundEntries, HostRecord};
use reef_core::config::{Advertise, ClusterConfig};
use reef_core::driver::overlay;
use reef_core::model::{Container, Network, Vtep};
use reef_store::Change;

use super::{io_err, Engine, EngineError, Inner, Result};

/// This host's membership of the cluster.
pub(crate) struct ClusterLink {
    pub store: ClusterStore,
    pub vtep: Vtep,
    /// Wakes the sync thread (a repaired VXLAN device needs its entries again).
    wake: std::sync::Mutex<mpsc::Sender<()>>,
}

impl ClusterLink {
    /// Have the sync thread bring this host in line soon.
    pub fn wake(&self) {
        let _ = self.wake.lock().expect("wake lock").send(());
    }
}

impl From<ClusterError> for EngineError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Unreachable { .. } => EngineError::Unavailable(e.to_string()),
            ClusterError::Conflict(m) => EngineError::Conflict(m),
            ClusterError::Refused(m) => EngineError::Forbidden(m),
            ClusterError::Config(m) => EngineError::Invalid(m),
        }
    }
}

impl Engine {
    /// Join the cluster: find this host's tunnel address, start the store's session (etcd
    /// may be down: then overlay operations fail until it is up) and the sync thread.
    pub fn join_cluster(self: &Arc<Self>, cfg: &ClusterConfig) -> Result<()> {
        let vtep = self.resolve_advertise(&cfg.advertise)?;
        let id_file = self.cfg.data_root.join("cluster-host-id");
        let host_id = match std::fs::read_to_string(&id_file) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                let id = self.host.random_id()[..16].to_string();
                std::fs::write(&id_file, &id)
                    .map_err(io_err(format!("write {}", id_file.display())))?;
                id
            }
        };
        let (tx, rx) = mpsc::channel::<()>();
        let wake = tx.clone();
        let tx = std::sync::Mutex::new(tx);
        let store = ClusterStore::start(
            cfg,
            host_id.clone(),
            self.rt.clone(),
            Box::new(move || {
                let _ = tx.lock().expect("wake lock").send(());
            }),
        )?;
        let weak: Weak<Engine> = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("cluster-sync".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    // Coalesce a burst of changes into one pass.
                    while rx.try_recv().is_ok() {}
                    let Some(engine) = weak.upgrade() else { return };
                    engine.follow_cluster();
                }
            })
            .map_err(io_err("start the cluster sync thread"))?;
        tracing::info!(host = %host_id, addr = %vtep.addr, underlay = %vtep.underlay, "joining the cluster");
        if self
            .cluster
            .set(ClusterLink {
                store: store.clone(),
                vtep,
                wake: std::sync::Mutex::new(wake),
            })
            .is_err()
        {
            return Err(EngineError::Invalid("already in a cluster".into()));
        }
        {
            let inner = self.lock();
            store.set_host(self.host_record(&inner));
            store.set_endpoints(self.overlay_endpoints(&inner, None));
        }
        // Start-up is quicker to use when the first read is in; a down etcd only delays it.
        store.wait_online(Duration::from_secs(2));
        Ok(())
    }

    /// `--cluster-advertise` as an address and the interface that has it.
    fn resolve_advertise(&self, adv: &Advertise) -> Result<Vtep> {
        let mut inner = self.lock();
        let links = inner.exec.links()?;
        let addrs = inner.exec.addrs()?;
        let v4_of = |index: u32| {
            addrs.iter().find_map(|a| match a.addr {
                IpNet::V4(v4) if a.index == index => Some(v4.addr()),
                _ => None,
            })
        };
        let name_of = |index: u32| {
            links
                .iter()
                .find(|l| l.index == index)
                .map(|l| l.name.clone())
        };
        let found = match adv {
            Advertise::Addr(ip) => addrs
                .iter()
                .find(|a| a.addr.addr() == std::net::IpAddr::V4(*ip))
                .and_then(|a| name_of(a.index))
                .map(|n| (*ip, n))
                .ok_or_else(|| {
                    EngineError::Invalid(format!(
                        "--cluster-advertise {ip}: this host has no such address"
                    ))
                })?,
            Advertise::Iface(name) => {
                let link = links.iter().find(|l| &l.name == name).ok_or_else(|| {
                    EngineError::Invalid(format!(
                        "--cluster-advertise {name}: no such interface on this host"
                    ))
                })?;
                let ip = v4_of(link.index).ok_or_else(|| {
                    EngineError::Invalid(format!(
                        "--cluster-advertise {name}: the interface has no IPv4 address"
                    ))
                })?;
                (ip, name.clone())
            }
            Advertise::DefaultRoute => {
                let routes = inner.exec.routes()?;
                let index = routes
                    .iter()
                    .find(|r| matches!(r.dst, IpNet::V4(d) if d.prefix_len() == 0))
                    .and_then(|r| r.oif)
                    .ok_or_else(|| {
                        EngineError::Invalid(
                            "--cluster-store without --cluster-advertise needs a default route \
                             to find this host's address; give --cluster-advertise ADDR|IFACE"
                                .into(),
                        )
                    })?;
                let ip = v4_of(index).ok_or_else(|| {
                    EngineError::Invalid(
                        "the interface of the default route has no IPv4 address; give \
                         --cluster-advertise ADDR|IFACE"
                            .into(),
                    )
                })?;
                (ip, name_of(index).unwrap_or_default())
            }
        };
        Ok(Vtep {
            addr: found.0,
            underlay: found.1,
        })
    }

    pub(crate) fn cluster_link(&self) -> Option<&ClusterLink> {
        self.cluster.get()
    }

    /// The cluster, for an operation on an overlay: refused without `--cluster-store`.
    pub(crate) fn need_cluster(&self) -> Result<&ClusterLink> {
        self.cluster.get().ok_or_else(|| {
            EngineError::Invalid(
                "overlay networks need --cluster-store (etcd://HOST:PORT) on every host".into(),
            )
        })
    }

    fn host_record(&self, inner: &Inner) -> HostRecord {
        let link = self.cluster.get().expect("in a cluster");
        let nets: Vec<&Network> = inner.networks.values().collect();
        HostRecord {
            id: link.store.host_id().to_string(),
            addr: link.vtep.addr,
            subnets: overlay::local_subnets(&nets),
        }
    }

    /// The records of this host's running endpoints on overlays (of one container, or of
    /// all).
    fn overlay_endpoints(&self, inner: &Inner, only: Option<&str>) -> Vec<EndpointRecord> {
        let Some(link) = self.cluster.get() else {
            return Vec::new();
        };
        inner
            .containers
            .values()
            .filter(|c| only.is_none_or(|id| c.id == id))
            .filter(|c| c.is_running())
            .flat_map(|c| {
                c.endpoints
                    .iter()
                    .filter(|e| {
                        inner
                            .networks
                            .get(&e.network_id)
                            .is_some_and(|n| n.overlay().is_some())
                    })
                    .map(move |e| endpoint_record(link, c, e))
            })
            .collect()
    }

    /// Publish what changed of a container's overlay endpoints (after it starts, stops,
    /// connects or disconnects).
    pub(crate) fn cluster_publish_container(&self, inner: &Inner, id: &str) {
        if let Some(link) = self.cluster.get() {
            link.store
                .sync_container(id, self.overlay_endpoints(inner, Some(id)));
        }
    }

    /// Publish every overlay endpoint of this host, and its host record (after networks
    /// change).
    pub(crate) fn cluster_publish_all(&self, inner: &Inner) {
        if let Some(link) = self.cluster.get() {
            link.store.set_host(self.host_record(inner));
            link.store
                .set_endpoints(self.overlay_endpoints(inner, None));
        }
    }

    /// Bring this host in line with the cluster view.
    pub(crate) fn follow_cluster(&self) {
        let Some(link) = self.cluster.get() else {
            return;
        };
        let online = link.store.online();
        let view = link.store.view();
        let me = link.store.host_id().to_string();
        let mut inner = self.lock();
        let in_use: BTreeSet<String> = inner
            .containers
            .values()
            .flat_map(|c| {
                c.endpoints
                    .iter()
                    .map(|e| e.network_id.clone())
                    .chain(c.spec.networks.iter().map(|a| a.network.clone()))
            })
            .collect();
        let authoritative = online && view.revision > 0;
        let local: Vec<&Network> = inner.networks.values().collect();
        let (_, drop) = core_cluster::network_changes(&local, &view, authoritative, &in_use);
        for id in drop {
            if let Some(net) = inner.networks.get(&id).cloned() {
                tracing::info!(network = %net.name, "overlay removed on another host");
                if let Err(e) = self.take_down_network(&mut inner, &net) {
                    tracing::error!(network = %net.name, error = %e, "cannot remove the overlay here");
                }
            }
        }
        let local: Vec<&Network> = inner.networks.values().collect();
        let (adopt, _) = core_cluster::network_changes(&local, &view, authoritative, &in_use);
        for global in adopt {
            let net = overlay::adopt(&global, &link.vtep);
            tracing::info!(network = %net.name, "overlay created on another host");
            if let Err(e) = self.bring_up_network(&mut inner, net) {
                tracing::error!(network = %global.name, error = %e, "cannot set the overlay up here");
            }
        }
        let overlays: Vec<(String, String)> = inner
            .networks
            .values()
            .filter_map(|n| Some((n.id.clone(), n.overlay()?.vxlan.clone())))
            .collect();
        for (id, vx) in overlays {
            let wanted = core_cluster::wanted_entries(&view, &id, &me);
            let found = match (inner.exec.fdb(&vx), inner.exec.neighbours(&vx)) {
                (Ok(fdb), Ok(neigh)) => FoundEntries {
                    fdb: fdb
                        .into_iter()
                        .filter_map(|e| Some((e.mac, e.dst?)))
                        .collect(),
                    neighbours: neigh.into_iter().map(|n| (n.ip, n.mac)).collect(),
                },
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(device = %vx, error = %e, "cannot read the tunnel entries");
                    continue;
                }
            };
            let plan = core_cluster::converge_entries(&vx, &wanted, &found);
            for step in &plan.steps {
                if let Err(e) = inner.exec.apply(&step.op) {
                    tracing::warn!(op = %step.op, error = %e, "tunnel entry not programmed");
                }
            }
        }
        self.publish_dns(&inner);
    }

    /// Record a network and bring its objects up (an overlay adopted from the cluster).
    fn bring_up_network(&self, inner: &mut Inner, net: Network) -> Result<()> {
        inner.store.commit(&[Change::PutNetwork(net.clone())])?;
        let plan = reef_core::driver::network_up(&net, self.firewall_rule(&net));
        if let Err(e) = inner.exec.apply_plan(&plan) {
            inner
                .store
                .commit(&[Change::DeleteNetwork(net.id.clone())])?;
            return Err(e.into());
        }
        if let Some(addr) = net.driver.endpoints().and_then(|d| d.dns_address()) {
            if let Err(e) = self.dns_listen(addr) {
                tracing::warn!(network = %net.name, error = %e, "embedded DNS cannot listen on the gateway");
            }
        }
        inner.networks.insert(net.id.clone(), net);
        Ok(())
    }

    /// An address for a new endpoint on an overlay: from this host's blocks, taking a new
    /// block when they are full (one round trip); a requested one checked cluster-wide.
    pub(crate) fn overlay_address(
        &self,
        inner: &Inner,
        net: &Network,
        requested: Option<Ipv4Addr>,
        container_id: &str,
    ) -> Result<Ipv4Addr> {
        let link = self.need_cluster()?;
        // An endpoint the other hosts cannot learn of would be unreachable: refuse at once
        // (no round trip) while the store is out of reach.
        link.store.check_online()?;
        let space = self.address_space(net)?;
        let me = link.store.host_id().to_string();
        let mut taken = self.allocated_on(inner, &net.id);
        link.store.with_view(|v| {
            taken.extend(
                v.ip_claims
                    .keys()
                    .chain(v.endpoints.keys())
                    .filter(|(n, _)| n == &net.id)
                    .map(|(_, ip)| *ip),
            );
        });
        if let Some(ip) = requested {
            let decision = link
                .store
                .with_view(|v| core_cluster::requested_address(v, &net.id, ip, &me));
            return match decision {
                core_cluster::Requested::Mine => {
                    let mine = self.allocated_on(inner, &net.id);
                    space
                        .allocate(&mine, Some(ip))
                        .map_err(|e| EngineError::Invalid(e.to_string()))
                }
                core_cluster::Requested::Claim => {
                    let mine = self.allocated_on(inner, &net.id);
                    space
                        .allocate(&mine, Some(ip))
                        .map_err(|e| EngineError::Invalid(e.to_string()))?;
                    let block = ipnet::Ipv4Net::new(ip, core_cluster::block_prefix(space.pool()))
                        .expect("a block prefix")
                        .trunc();
                    link.store.claim_ip(&net.id, ip, block, container_id)?;
                    Ok(ip)
                }
                core_cluster::Requested::Refused(m) => Err(EngineError::Conflict(m)),
            };
        }
        let mut lost: BTreeSet<ipnet::Ipv4Net> = BTreeSet::new();
        loop {
            let (mine, held) = link.store.with_view(|v| {
                let held: BTreeSet<ipnet::Ipv4Net> = v
                    .blocks
                    .keys()
                    .filter(|(n, _)| n == &net.id)
                    .map(|(_, b)| *b)
                    .collect();
                (v.blocks_of(&net.id, &me), held)
            });
            if let Some(ip) = core_cluster::allocate_in_blocks(&space, &mine, &taken) {
                return Ok(ip);
            }
            let held: BTreeSet<ipnet::Ipv4Net> = held.union(&lost).copied().collect();
            let Some(block) = core_cluster::free_block(&space, &held) else {
                return Err(EngineError::Invalid(format!(
                    "no available IPv4 addresses on network {}: every address block of {} \
                     is held by a host",
                    net.name,
                    space.pool()
                )));
            };
            match link.store.claim_block(&net.id, block) {
                Ok(claimed) => taken.extend(claimed),
                Err(ClusterError::Conflict(_)) => {
                    lost.insert(block);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The remote endpoints of overlays, for the DNS table.
    pub(crate) fn remote_dns_endpoints(&self, inner: &Inner) -> Vec<reef_dns::DnsEndpoint> {
        let Some(link) = self.cluster.get() else {
            return Vec::new();
        };
        let me = link.store.host_id();
        link.store.with_view(|v| {
            v.endpoints
                .values()
                .filter(|e| e.host != me && inner.networks.contains_key(&e.network_id))
                .map(|e| {
                    let mut names = vec![
                        e.container_name.to_lowercase(),
                        e.container_id[..12.min(e.container_id.len())].to_string(),
                    ];
                    names.extend(e.aliases.iter().map(|a| a.to_lowercase()));
                    reef_dns::DnsEndpoint {
                        container_id: e.container_id.clone(),
                        network_id: e.network_id.clone(),
                        ip: e.ip,
                        names,
                    }
                })
                .collect()
        })
    }

    /// What the cluster says about this host, for `info` and inspect.
    pub fn cluster_status(&self) -> Option<BTreeMap<&'static str, String>> {
        let link = self.cluster.get()?;
        let mut m = BTreeMap::new();
        m.insert("host", link.store.host_id().to_string());
        m.insert("advertise", link.vtep.addr.to_string());
        m.insert("underlay", link.vtep.underlay.clone());
        m.insert(
            "store",
            if link.store.online() {
                "reachable".into()
            } else {
                "unreachable".into()
            },
        );
        Some(m)
    }
}

fn endpoint_record(
    link: &ClusterLink,
    c: &Container,
    e: &reef_core::model::Endpoint,
) -> EndpointRecord {
    EndpointRecord {
        host: link.store.host_id().to_string(),
        vtep: link.vtep.addr,
        network_id: e.network_id.clone(),
        endpoint_id: e.id.clone(),
        container_id: c.id.clone(),
        container_name: c.name.clone(),
        ip: e.ip,
        mac: e.mac.clone(),
        aliases: e.aliases.clone(),
    }
}
