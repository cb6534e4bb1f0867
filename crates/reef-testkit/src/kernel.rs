//! A kernel that keeps a model instead of touching one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;
use reef_core::plan::{NsRef, Op, Plan};
use reef_kernel::events::Watcher;
use reef_kernel::{AddrInfo, Kernel, KernelError, LinkInfo, LinkReaper, RouteInfo};

/// One link of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeLink {
    /// Interface index (unique across namespaces).
    pub index: u32,
    /// `bridge`, `veth`, `macvlan`, `vlan`, `dummy`; `None` for a device the test added.
    pub kind: Option<String>,
    /// The bridge it is a port of, by name.
    pub master: Option<String>,
    /// Its parent (macvlan, vlan), by name in the host namespace.
    pub parent: Option<String>,
    /// The other end of a veth: namespace and name.
    pub peer: Option<(NsRef, String)>,
    /// Interface alias.
    pub alias: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// MAC address.
    pub mac: Option<[u8; 6]>,
    /// Administratively up.
    pub up: bool,
    /// Addresses.
    pub addrs: BTreeSet<IpNet>,
}

/// Everything the fake kernel holds.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Host links by name.
    pub host: BTreeMap<String, FakeLink>,
    /// Sandboxes by path, each with its links by name.
    pub sandboxes: BTreeMap<PathBuf, BTreeMap<String, FakeLink>>,
    /// Routes added, as their `ip route` text (with the namespace).
    pub routes: Vec<String>,
    /// Sysctls written, by namespace-qualified key.
    pub sysctls: BTreeMap<String, String>,
    /// Every nft script run, in order.
    pub nft_scripts: Vec<String>,
    /// Every op applied successfully, in order (undos included).
    pub applied: Vec<Op>,
    /// Link kinds this kernel lacks (answered with EOPNOTSUPP, as here for `vlan`).
    pub unsupported: BTreeSet<String>,
    /// Fail the op that matches, once, with this errno.
    pub fail_op: Option<(String, i32)>,
    /// Forwarding entries by device: (MAC, remote address).
    pub fdb: BTreeMap<String, BTreeSet<(String, std::net::Ipv4Addr)>>,
    /// Neighbour entries by device: address -> MAC.
    pub neighbours: BTreeMap<String, BTreeMap<std::net::Ipv4Addr, String>>,
    /// Addresses that answer `probe_gateway`.
    pub answering: BTreeSet<std::net::Ipv4Addr>,
    /// The test hook [`Kernel::fail_after`] sets.
    fail_before_step: Option<usize>,
    next_index: u32,
}

/// A test's handle on the model behind a [`FakeKernel`].
#[derive(Debug, Clone, Default)]
pub struct KernelModel(Arc<Mutex<FakeState>>);

impl KernelModel {
    /// The model, to read or change.
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add a device of the host's own (a NIC), up, with an MTU.
    pub fn add_host_device(&self, name: &str, mtu: u32) {
        let mut st = self.state();
        let index = st.new_index();
        st.host.insert(
            name.into(),
            FakeLink {
                index,
                kind: None,
                master: None,
                parent: None,
                peer: None,
                alias: None,
                mtu,
                mac: Some([2, 0, 0, 0, 0, index as u8]),
                up: true,
                addrs: BTreeSet::new(),
            },
        );
    }

    /// Names of the host links.
    pub fn host_links(&self) -> Vec<String> {
        self.state().host.keys().cloned().collect()
    }

    /// A host link.
    pub fn host_link(&self, name: &str) -> Option<FakeLink> {
        self.state().host.get(name).cloned()
    }

    /// Fail the next op whose `ip`-syntax text starts with `prefix`, with `errno`.
    pub fn fail_next(&self, prefix: &str, errno: i32) {
        self.state().fail_op = Some((prefix.into(), errno));
    }
}

/// The [`Kernel`] of an engine under test.
#[derive(Debug, Clone, Default)]
pub struct FakeKernel {
    model: KernelModel,
}

impl FakeKernel {
    /// A kernel with only `lo`, and a handle on its model.
    pub fn new() -> (FakeKernel, KernelModel) {
        let k = FakeKernel::default();
        k.model.add_host_device("lo", 65536);
        let model = k.model.clone();
        (k, model)
    }
}

fn refused(op: &Op, errno: i32) -> KernelError {
    KernelError::Netlink {
        op: op.to_string(),
        errno,
        detail: None,
    }
}

impl FakeState {
    fn new_index(&mut self) -> u32 {
        self.next_index += 1;
        self.next_index
    }

    fn ns_links(
        &mut self,
        ns: &NsRef,
        op: &Op,
    ) -> Result<&mut BTreeMap<String, FakeLink>, KernelError> {
        match ns {
            NsRef::Host => Ok(&mut self.host),
            NsRef::Sandbox(p) => self
                .sandboxes
                .get_mut(p)
                .ok_or_else(|| refused(op, libc::ENOENT)),
        }
    }

    fn new_link(&mut self, kind: &str, mtu: u32) -> FakeLink {
        FakeLink {
            index: self.new_index(),
            kind: Some(kind.into()),
            master: None,
            parent: None,
            peer: None,
            alias: None,
            mtu,
            mac: None,
            up: false,
            addrs: BTreeSet::new(),
        }
    }

    fn supported(&self, kind: &str, op: &Op) -> Result<(), KernelError> {
        if self.unsupported.contains(kind) {
            return Err(refused(op, libc::EOPNOTSUPP));
        }
        Ok(())
    }

    /// Put a new link in a namespace: EEXIST if the name is taken there.
    fn insert(
        &mut self,
        ns: &NsRef,
        name: &str,
        link: FakeLink,
        op: &Op,
    ) -> Result<(), KernelError> {
        let links = self.ns_links(ns, op)?;
        if links.contains_key(name) {
            return Err(refused(op, libc::EEXIST));
        }
        links.insert(name.into(), link);
        Ok(())
    }

    fn with_link(
        &mut self,
        ns: &NsRef,
        name: &str,
        op: &Op,
        f: impl FnOnce(&mut FakeLink),
    ) -> Result<(), KernelError> {
        let link = self
            .ns_links(ns, op)?
            .get_mut(name)
            .ok_or_else(|| refused(op, libc::ENODEV))?;
        f(link);
        Ok(())
    }

    fn delete(&mut self, ns: &NsRef, name: &str) {
        let removed = match ns {
            NsRef::Host => self.host.remove(name),
            NsRef::Sandbox(p) => self.sandboxes.get_mut(p).and_then(|l| l.remove(name)),
        };
        let Some(link) = removed else { return };
        if let Some((peer_ns, peer)) = link.peer {
            self.delete(&peer_ns, &peer);
        }
        // A parent takes its macvlans and VLANs with it, in every namespace.
        if matches!(ns, NsRef::Host) {
            let children = |links: &BTreeMap<String, FakeLink>| -> Vec<String> {
                links
                    .iter()
                    .filter(|(_, l)| l.parent.as_deref() == Some(name))
                    .map(|(n, _)| n.clone())
                    .collect()
            };
            for child in children(&self.host) {
                self.delete(&NsRef::Host, &child);
            }
            let paths: Vec<PathBuf> = self.sandboxes.keys().cloned().collect();
            for p in paths {
                for child in children(&self.sandboxes[&p]) {
                    self.delete(&NsRef::Sandbox(p.clone()), &child);
                }
            }
        }
    }

    fn apply_op(&mut self, op: &Op) -> Result<(), KernelError> {
        if let Some((prefix, errno)) = self.fail_op.clone() {
            if op.to_string().starts_with(&prefix) {
                self.fail_op = None;
                return Err(refused(op, errno));
            }
        }
        match op {
            Op::CreateSandbox { path } => {
                if self.sandboxes.contains_key(path) {
                    return Err(refused(op, libc::EEXIST));
                }
                let mut lo = self.new_link("loopback", 65536);
                lo.kind = None;
                self.sandboxes
                    .insert(path.clone(), BTreeMap::from([("lo".to_string(), lo)]));
            }
            Op::DeleteSandbox { path } => {
                // Its links go with it, and so do the host ends of its veths.
                if let Some(links) = self.sandboxes.remove(path) {
                    for l in links.into_values() {
                        if let Some((peer_ns, peer)) = l.peer {
                            self.delete(&peer_ns, &peer);
                        }
                    }
                }
            }
            Op::CreateBridge { name, mtu } => {
                let link = self.new_link("bridge", *mtu);
                self.insert(&NsRef::Host, name, link, op)?;
            }
            Op::CreateVeth {
                host,
                peer,
                sandbox,
                mtu,
                peer_mac,
                alias,
                ipv6: _,
            } => {
                let sb = NsRef::Sandbox(sandbox.clone());
                if !self.sandboxes.contains_key(sandbox) {
                    return Err(refused(op, libc::ENOENT));
                }
                if self.host.contains_key(host) || self.sandboxes[sandbox].contains_key(peer) {
                    return Err(refused(op, libc::EEXIST));
                }
                let mut h = self.new_link("veth", *mtu);
                h.alias = Some(alias.clone());
                h.peer = Some((sb.clone(), peer.clone()));
                let mut p = self.new_link("veth", *mtu);
                p.mac = Some(*peer_mac);
                p.peer = Some((NsRef::Host, host.clone()));
                self.insert(&NsRef::Host, host, h, op)?;
                self.insert(&sb, peer, p, op)?;
            }
            Op::CreateMacvlan {
                name,
                parent,
                mode: _,
                sandbox,
                mac,
                mtu,
            } => {
                self.supported("macvlan", op)?;
                let parent_mtu = self
                    .host
                    .get(parent)
                    .map(|l| l.mtu)
                    .ok_or_else(|| refused(op, libc::ENODEV))?;
                if mtu.is_some_and(|m| m > parent_mtu) {
                    return Err(refused(op, libc::EINVAL));
                }
                let mut l = self.new_link("macvlan", mtu.unwrap_or(parent_mtu));
                l.mac = Some(*mac);
                l.parent = Some(parent.clone());
                self.insert(&NsRef::Sandbox(sandbox.clone()), name, l, op)?;
            }
            Op::CreateVlan {
                name,
                parent,
                vlan_id: _,
            } => {
                self.supported("vlan", op)?;
                let parent_mtu = self
                    .host
                    .get(parent)
                    .map(|l| l.mtu)
                    .ok_or_else(|| refused(op, libc::ENODEV))?;
                let mut l = self.new_link("vlan", parent_mtu);
                l.parent = Some(parent.clone());
                self.insert(&NsRef::Host, name, l, op)?;
            }
            Op::CreateDummy { name } => {
                self.supported("dummy", op)?;
                let link = self.new_link("dummy", 1500);
                self.insert(&NsRef::Host, name, link, op)?;
            }
            Op::CreateVxlan {
                name,
                mtu,
                underlay,
                ..
            } => {
                self.supported("vxlan", op)?;
                if !self.host.contains_key(underlay) {
                    return Err(refused(op, libc::ENODEV));
                }
                let link = self.new_link("vxlan", *mtu);
                self.insert(&NsRef::Host, name, link, op)?;
            }
            Op::FdbReplace { dev, mac, dst } => {
                if !self.host.contains_key(dev) {
                    return Err(refused(op, libc::ENODEV));
                }
                let set = self.fdb.entry(dev.clone()).or_default();
                set.retain(|(m, _)| m != mac);
                set.insert((mac.clone(), *dst));
            }
            Op::FdbDelete { dev, mac, dst } => {
                if let Some(set) = self.fdb.get_mut(dev) {
                    set.remove(&(mac.clone(), *dst));
                }
            }
            Op::NeighReplace { dev, ip, mac } => {
                if !self.host.contains_key(dev) {
                    return Err(refused(op, libc::ENODEV));
                }
                self.neighbours
                    .entry(dev.clone())
                    .or_default()
                    .insert(*ip, mac.clone());
            }
            Op::NeighDelete { dev, ip } => {
                if let Some(m) = self.neighbours.get_mut(dev) {
                    m.remove(ip);
                }
            }
            Op::DeleteLink { ns, name } => {
                if matches!(ns, NsRef::Host) {
                    self.fdb.remove(name);
                    self.neighbours.remove(name);
                }
                self.delete(ns, name)
            }
            Op::ParkLink { ns, name, parked } => {
                if let Ok(links) = self.ns_links(ns, op) {
                    if let Some(mut l) = links.remove(name) {
                        l.up = false;
                        links.insert(parked.clone(), l);
                    }
                }
            }
            Op::SetMaster { link, master } => {
                if self.host.get(master).and_then(|m| m.kind.as_deref()) != Some("bridge") {
                    return Err(refused(op, libc::ENODEV));
                }
                let master = master.clone();
                self.with_link(&NsRef::Host, link, op, |l| l.master = Some(master))?;
            }
            Op::ReleaseLink { name } => {
                if let Some(l) = self.host.get_mut(name) {
                    l.up = false;
                    l.master = None;
                }
            }
            Op::SetHairpin { link } => self.with_link(&NsRef::Host, link, op, |_| {})?,
            Op::SetUp { ns, link } => self.with_link(ns, link, op, |l| l.up = true)?,
            Op::SetMac { link, mac } => {
                let mac = *mac;
                self.with_link(&NsRef::Host, link, op, |l| l.mac = Some(mac))?
            }
            Op::SetMtu { ns, link, mtu } => {
                let mtu = *mtu;
                self.with_link(ns, link, op, |l| l.mtu = mtu)?
            }
            Op::AddAddr { ns, link, addr } => {
                let addr = *addr;
                self.with_link(ns, link, op, |l| {
                    l.addrs.insert(addr);
                })?
            }
            Op::DelAddr { ns, link, addr } => {
                let addr = *addr;
                let _ = self.with_link(ns, link, op, |l| {
                    l.addrs.remove(&addr);
                });
            }
            Op::AddRoute { ns, dev, .. } => {
                self.with_link(ns, dev, op, |_| {})?;
                self.routes.push(op.to_string());
            }
            Op::FirewallAdd(_) | Op::FirewallDelete(_) => {}
            Op::Sysctl { ns, key, value } => {
                let key = match ns {
                    NsRef::Host => key.clone(),
                    NsRef::Sandbox(p) => format!("{}:{key}", p.display()),
                };
                self.sysctls.insert(key, value.clone());
            }
        }
        self.applied.push(op.clone());
        Ok(())
    }

    fn link_info(name: &str, l: &FakeLink, all: &BTreeMap<String, FakeLink>) -> LinkInfo {
        LinkInfo {
            index: l.index,
            name: name.into(),
            kind: l.kind.clone(),
            master: l.master.as_ref().and_then(|m| all.get(m)).map(|m| m.index),
            alias: l.alias.clone(),
            mtu: l.mtu,
            mac: l.mac,
            up: l.up,
        }
    }
}

impl Kernel for FakeKernel {
    fn apply_plan(&mut self, plan: &Plan) -> Result<(), KernelError> {
        let mut st = self.model.state();
        let fail_before = st.fail_before_step;
        plan.run(|step, op| match step {
            Some(i) if fail_before == Some(i) => Err(KernelError::Injected { step: i }),
            _ => st.apply_op(op),
        })
        .map_err(KernelError::from)
    }

    fn apply(&mut self, op: &Op) -> Result<(), KernelError> {
        self.model.state().apply_op(op)
    }

    fn link(&mut self, name: &str) -> Result<Option<LinkInfo>, KernelError> {
        let st = self.model.state();
        Ok(st
            .host
            .get(name)
            .map(|l| FakeState::link_info(name, l, &st.host)))
    }

    fn links(&mut self) -> Result<Vec<LinkInfo>, KernelError> {
        let st = self.model.state();
        Ok(st
            .host
            .iter()
            .map(|(n, l)| FakeState::link_info(n, l, &st.host))
            .collect())
    }

    fn addrs(&mut self) -> Result<Vec<AddrInfo>, KernelError> {
        let st = self.model.state();
        Ok(st
            .host
            .values()
            .flat_map(|l| {
                l.addrs.iter().map(|a| AddrInfo {
                    index: l.index,
                    addr: *a,
                })
            })
            .collect())
    }

    fn routes(&mut self) -> Result<Vec<RouteInfo>, KernelError> {
        // The connected routes of the host's addresses, as the kernel adds them.
        let st = self.model.state();
        Ok(st
            .host
            .values()
            .filter(|l| l.up)
            .flat_map(|l| {
                l.addrs.iter().map(|a| RouteInfo {
                    dst: a.trunc(),
                    gateway: None,
                    oif: Some(l.index),
                })
            })
            .collect())
    }

    fn fdb(&mut self, dev: &str) -> Result<Vec<reef_kernel::FdbEntry>, KernelError> {
        let st = self.model.state();
        if !st.host.contains_key(dev) {
            return Err(KernelError::Netlink {
                op: format!("bridge fdb show dev {dev}"),
                errno: libc::ENODEV,
                detail: None,
            });
        }
        Ok(st
            .fdb
            .get(dev)
            .into_iter()
            .flatten()
            .map(|(mac, dst)| reef_kernel::FdbEntry {
                mac: mac.clone(),
                dst: Some(*dst),
                permanent: true,
            })
            .collect())
    }

    fn neighbours(&mut self, dev: &str) -> Result<Vec<reef_kernel::NeighEntry>, KernelError> {
        let st = self.model.state();
        if !st.host.contains_key(dev) {
            return Err(KernelError::Netlink {
                op: format!("ip neigh show dev {dev}"),
                errno: libc::ENODEV,
                detail: None,
            });
        }
        Ok(st
            .neighbours
            .get(dev)
            .into_iter()
            .flatten()
            .map(|(ip, mac)| reef_kernel::NeighEntry {
                ip: *ip,
                mac: Some(mac.clone()),
                permanent: true,
            })
            .collect())
    }

    fn probe_gateway(
        &mut self,
        addr: std::net::Ipv4Addr,
        _limit: std::time::Duration,
    ) -> Result<bool, KernelError> {
        Ok(self.model.state().answering.contains(&addr))
    }

    fn nft(&mut self, script: &str) -> Result<String, KernelError> {
        self.model.state().nft_scripts.push(script.into());
        Ok(String::new())
    }

    fn prepare_sandbox_dir(&mut self, dir: &Path) -> Result<(), KernelError> {
        std::fs::create_dir_all(dir).map_err(|source| KernelError::Io {
            op: format!("mkdir -p {}", dir.display()),
            source,
        })
    }

    fn sandbox_exists(&mut self, path: &Path) -> bool {
        self.model.state().sandboxes.contains_key(path)
    }

    fn link_reaper(&mut self) -> Result<LinkReaper, KernelError> {
        let model = self.model.clone();
        Ok(Box::new(move |name: &str| {
            model.state().delete(&NsRef::Host, name);
            Ok(())
        }))
    }

    fn watcher(&mut self, _table: &str) -> Result<Option<Watcher>, KernelError> {
        Ok(None)
    }

    fn fail_after(&mut self, n: Option<usize>) {
        self.model.state().fail_before_step = n;
    }
}
