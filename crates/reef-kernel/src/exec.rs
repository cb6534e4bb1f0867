//! Executes the core's plans: each [`Op`] becomes netlink requests, namespace work or a
//! sysctl write, in the namespace the op names. Decides nothing.
//!
//! [`Executor::apply_plan`] runs the steps in order and, on the first failure, the undos of
//! the steps already applied, newest first, collecting undo failures rather than stopping
//! at the first (netavark's teardown habit). Undo-type ops tolerate their object being gone
//! (`DeleteLink`, `DeleteSandbox`, `DelAddr`) and `AddAddr` tolerates `EEXIST`, so a plan
//! that is re-run after a crash converges.
//!
//! Sockets: one in the host namespace for the executor's lifetime; one per sandbox, opened
//! on first use within an `apply_plan`/`apply` call and closed at its end. Closing matters:
//! a socket keeps its namespace alive, and with it every interface inside.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use reef_core::plan::{NsRef, Op, Plan};

use crate::netlink::Netlink;
use crate::netns::{self, Netns, Spares};
use crate::nft::Nft;
use crate::{sysctl, KernelError};

/// A sandbox's namespace and, once needed, its netlink socket.
struct Sandbox {
    ns: Netns,
    nl: Option<Netlink>,
}

/// Executes ops. Holds a netlink socket in the host namespace (the one reefd runs in) and
/// opens one per sandbox on first use within an [`apply_plan`](Executor::apply_plan) or
/// [`apply`](Executor::apply) call.
#[derive(Debug)]
pub struct Executor {
    host: Netlink,
    host_ns: Netns,
    sandboxes: HashMap<PathBuf, Sandbox>,
    fail_before: Option<usize>,
    nft: Option<Nft>,
    /// Namespaces (with a netlink socket inside) made ahead of time for new sandboxes.
    spares: Option<Spares<Result<Netlink, KernelError>>>,
}

impl std::fmt::Debug for Nft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nft")
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("has_socket", &self.nl.is_some())
            .finish()
    }
}

impl Executor {
    /// An executor whose host namespace is the calling thread's.
    pub fn new() -> Result<Self, KernelError> {
        let host_ns = Netns::current()?;
        // Without spares, each sandbox is created on a short-lived thread of its own.
        let spares = Spares::start(&host_ns, Netlink::open)
            .map_err(|e| tracing::warn!(error = %e, "no spare network namespaces"))
            .ok();
        Ok(Executor {
            host: Netlink::open()?,
            host_ns,
            sandboxes: HashMap::new(),
            fail_before: None,
            nft: None,
            spares,
        })
    }

    /// A new sandbox at `path`, with a netlink socket opened inside it.
    fn create_sandbox(
        &mut self,
        path: &Path,
    ) -> Result<(Netns, Result<Netlink, KernelError>), KernelError> {
        if let Some(taken) = self.spares.as_ref().and_then(|s| s.take_bound(path)) {
            return taken;
        }
        netns::create_bound_with(path, Netlink::open)
    }

    /// The nftables context of the host namespace, created on first use.
    pub fn nft(&mut self) -> Result<&mut Nft, KernelError> {
        if self.nft.is_none() {
            let nft = self.in_host_ns(Nft::new)??;
            self.nft = Some(nft);
        }
        Ok(self.nft.as_mut().expect("created above"))
    }

    /// The host namespace's netlink socket (for observing).
    pub fn host(&mut self) -> &mut Netlink {
        &mut self.host
    }

    /// Test hook for rollback: make [`apply_plan`](Executor::apply_plan) fail with
    /// [`KernelError::Injected`] instead of executing step `n` (0-based), so steps
    /// `0..n` are applied and then rolled back. It holds for every later `apply_plan` call
    /// (a plan of `n` steps or fewer is unaffected) until `None` turns it off. The daemon
    /// sets it from `REEF_FAIL_AFTER_STEP`.
    pub fn fail_after(&mut self, n: Option<usize>) {
        self.fail_before = n;
    }

    /// Apply the steps in order. On the first failure apply the undos of the applied steps
    /// newest first, continuing past undo failures, and return the original error, wrapped
    /// in [`KernelError::Undo`] with the undo errors when there were any.
    pub fn apply_plan(&mut self, plan: &Plan) -> Result<(), KernelError> {
        let res = self.apply_steps(plan);
        self.sandboxes.clear();
        res
    }

    /// Apply one op. Undo-type ops (`DeleteLink`, `DeleteSandbox`, `DelAddr`) succeed when
    /// the object is already gone; `AddAddr` succeeds when the address is there already.
    pub fn apply(&mut self, op: &Op) -> Result<(), KernelError> {
        let res = self.apply_op(op);
        self.sandboxes.clear();
        res
    }

    fn apply_steps(&mut self, plan: &Plan) -> Result<(), KernelError> {
        let fail_before = self.fail_before;
        plan.run(|step, op| match step {
            Some(i) if fail_before == Some(i) => Err(KernelError::Injected { step: i }),
            _ => self.apply_op(op),
        })
        .map_err(|f| {
            tracing::debug!(step = f.step, error = %f.cause, "step failed, rolled back");
            KernelError::from(f)
        })
    }

    fn apply_op(&mut self, op: &Op) -> Result<(), KernelError> {
        tracing::trace!(%op, "apply");
        match op {
            Op::CreateSandbox { path } => {
                let (ns, nl) = self.create_sandbox(path)?;
                // The socket is a convenience: a sandbox op usually follows at once.
                self.sandboxes
                    .insert(path.clone(), Sandbox { ns, nl: nl.ok() });
                Ok(())
            }
            Op::DeleteSandbox { path } => {
                // Drop our socket and handle first, or they keep the namespace alive.
                self.sandboxes.remove(path);
                netns::remove_bound(path)
            }
            Op::CreateBridge { name, mtu } => self.host.create_bridge(name, *mtu),
            Op::CreateVeth {
                host,
                peer,
                sandbox,
                mtu,
                peer_mac,
                alias,
                ipv6,
            } => {
                let sb = sandbox_entry(&mut self.sandboxes, sandbox)?;
                self.host
                    .create_veth(host, peer, &sb.ns, *mtu, *peer_mac, alias)
                    .map_err(|e| in_ns(e, sandbox, false))?;
                if *ipv6 {
                    return Ok(());
                }
                // Both ends are still down. The host end gets `disable_ipv6` (its own
                // namespace's sysctl); the peer `addrgenmode none` over netlink, not a sysctl:
                // a /proc/sys lookup from inside each container namespace makes every later
                // /proc/sys/net lookup on the machine walk one dentry per such namespace.
                let off = self
                    .in_host_ns(|| sysctl::disable_ipv6(host))?
                    .and_then(|()| {
                        self.with_netlink(&NsRef::Sandbox(sandbox.clone()), |nl| {
                            nl.set_no_ipv6_addresses(peer)
                        })
                    });
                if let Err(e) = off {
                    let _ = self.host.delete_link(host);
                    return Err(e);
                }
                Ok(())
            }
            Op::CreateMacvlan {
                name,
                parent,
                mode,
                sandbox,
                mac,
                mtu,
            } => {
                let sb = sandbox_entry(&mut self.sandboxes, sandbox)?;
                self.host
                    .create_macvlan(name, parent, *mode, &sb.ns, *mac, *mtu)
                    .map_err(|e| in_ns(e, sandbox, false))?;
                // IPv4-only, as the veths are (see CreateVeth); set while the link is down.
                let inside = NsRef::Sandbox(sandbox.clone());
                let off = self.with_netlink(&inside, |nl| nl.set_no_ipv6_addresses(name));
                if off.is_err() {
                    let _ = self.with_netlink(&inside, |nl| nl.delete_link(name));
                }
                off
            }
            Op::CreateVlan {
                name,
                parent,
                vlan_id,
            } => self.host.create_vlan(name, parent, *vlan_id),
            Op::CreateDummy { name } => self.host.create_dummy(name),
            Op::CreateVxlan {
                name,
                vni,
                local,
                underlay,
                port,
                mtu,
            } => self
                .host
                .create_vxlan(name, *vni, *local, underlay, *port, *mtu),
            Op::FdbReplace { dev, mac, dst } => self.host.fdb_replace(dev, mac, *dst),
            Op::FdbDelete { dev, mac, dst } => self.host.fdb_delete(dev, mac, *dst),
            Op::NeighReplace { dev, ip, mac } => self.host.neigh_replace(dev, *ip, mac),
            Op::NeighDelete { dev, ip } => self.host.neigh_delete(dev, *ip),
            Op::DeleteLink { ns, name } => {
                tolerate_absent(self.with_netlink(ns, |nl| nl.delete_link(name)))
            }
            Op::ParkLink { ns, name, parked } => {
                tolerate_absent(self.with_netlink(ns, |nl| nl.park(name, parked)))
            }
            Op::SetMaster { link, master } => self.host.set_master(link, master),
            Op::ReleaseLink { name } => tolerate_absent(self.host.release(name)),
            Op::SetHairpin { link } => self.host.set_hairpin(link, true),
            Op::SetMac { link, mac } => self.host.set_mac(link, *mac),
            Op::SetUp { ns, link } => self.with_netlink(ns, |nl| nl.set_up(link)),
            Op::SetMtu { ns, link, mtu } => self.with_netlink(ns, |nl| nl.set_mtu(link, *mtu)),
            Op::AddAddr { ns, link, addr } => {
                match self.with_netlink(ns, |nl| nl.add_addr(link, *addr)) {
                    Err(e) if e.is_exists() => Ok(()),
                    other => other,
                }
            }
            Op::DelAddr { ns, link, addr } => {
                tolerate_absent(self.with_netlink(ns, |nl| nl.del_addr(link, *addr)))
            }
            Op::AddRoute { ns, dst, via, dev } => {
                self.with_netlink(ns, |nl| nl.add_route(*dst, *via, dev))
            }
            Op::FirewallAdd(el) => self
                .nft()?
                .run(&reef_core::firewall::render_add(el))
                .map(drop),
            Op::FirewallDelete(el) => {
                let script = reef_core::firewall::render_delete(el);
                let nft = self.nft()?;
                if nft.run(&script).is_err() {
                    // One missing element fails the whole transaction; remove the rest one by
                    // one (nft 1.0.6 has no `destroy element`).
                    for line in script.lines() {
                        let _ = nft.run(&format!("{line}\n"));
                    }
                }
                Ok(())
            }
            Op::Sysctl { ns, key, value } => {
                let write = || sysctl::ensure(key, value).map(drop);
                match ns {
                    NsRef::Host => self.in_host_ns(write)?,
                    NsRef::Sandbox(path) => {
                        let sb = sandbox_entry(&mut self.sandboxes, path)?;
                        sb.ns.run(write)?.map_err(|e| in_ns(e, path, true))
                    }
                }
            }
        }
    }

    /// Run `f` in the host namespace: here when this thread is in it, else on a helper
    /// thread.
    fn in_host_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, KernelError> {
        if self.host_ns.is_current()? {
            Ok(f())
        } else {
            self.host_ns.run(f)
        }
    }

    /// Run `f` with the socket of `ns`, opening a sandbox's on first use. Errors from a
    /// sandbox say which one (`nsenter --net=PATH ip ...`).
    fn with_netlink(
        &mut self,
        ns: &NsRef,
        f: impl FnOnce(&mut Netlink) -> Result<(), KernelError>,
    ) -> Result<(), KernelError> {
        match ns {
            NsRef::Host => f(&mut self.host),
            NsRef::Sandbox(path) => {
                let sb = sandbox_entry(&mut self.sandboxes, path)?;
                if sb.nl.is_none() {
                    sb.nl = Some(Netlink::open_in(&sb.ns)?);
                }
                let nl = sb.nl.as_mut().expect("opened above");
                f(nl).map_err(|e| in_ns(e, path, true))
            }
        }
    }
}

/// The cached sandbox at `path`, opening its namespace on first use.
fn sandbox_entry<'a>(
    cache: &'a mut HashMap<PathBuf, Sandbox>,
    path: &Path,
) -> Result<&'a mut Sandbox, KernelError> {
    if !cache.contains_key(path) {
        let ns = Netns::open(path)?;
        cache.insert(path.to_path_buf(), Sandbox { ns, nl: None });
    }
    Ok(cache.get_mut(path).expect("inserted above"))
}

/// Undo-type ops: a missing object (or a missing sandbox, which takes its objects with it)
/// is what the op wanted.
fn tolerate_absent(res: Result<(), KernelError>) -> Result<(), KernelError> {
    match res {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Prefix a netlink error's op with the namespace it ran in (`nsenter --net=PATH`), or
/// for a veth, name the sandbox its peer was going to.
fn in_ns(e: KernelError, path: &Path, inside: bool) -> KernelError {
    match e {
        KernelError::Netlink { op, errno, detail } => KernelError::Netlink {
            op: if inside {
                format!("nsenter --net={} {op}", path.display())
            } else {
                op.replace("netns <fd>", &format!("netns {}", path.display()))
            },
            errno,
            detail,
        },
        other => other,
    }
}
