//! Drift: kernel objects of reef's that someone else removed or changed. A watcher thread
//! hears link deletions and other processes' nftables changes (netlink events) and repairs
//! within moments; `reef system check` reports the same findings without changing anything,
//! and `reef system gc` removes leftovers reef owns but no record accounts for.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reef_core::driver::NetworkDriver;
use reef_core::firewall;
use reef_core::model::{Container, DriverConfig, NetworkMode};
use reef_core::plan;
use reef_kernel::events::Change;

use super::{Engine, Inner, Result};

impl Engine {
    /// Start the drift watcher (a thread with its own netlink subscriptions).
    pub(crate) fn watch_drift(self: &Arc<Self>) -> Result<()> {
        let Some(mut watcher) = self.lock().exec.watcher(firewall::TABLE)? else {
            return Ok(());
        };
        let engine = Arc::clone(self);
        std::thread::Builder::new()
            .name("reef-drift".into())
            .spawn(move || loop {
                match watcher.wait() {
                    Ok(changes) if !changes.is_empty() => engine.on_drift(&changes),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "drift watcher");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            })
            .map_err(super::io_err("start the drift watcher"))?;
        Ok(())
    }

    fn on_drift(&self, changes: &[Change]) {
        let firewall_hit = changes
            .iter()
            .any(|c| matches!(c, Change::FirewallChanged | Change::Overrun));
        let links_hit = changes.iter().any(|c| match c {
            Change::LinkDeleted(name) => self.is_ours(name),
            Change::Overrun => true,
            Change::FirewallChanged => false,
        });
        if links_hit {
            let mut inner = self.lock();
            for fixed in self.repair_all(&mut inner, true) {
                tracing::warn!("drift repaired: {fixed}");
            }
        }
        if firewall_hit && self.cfg.iptables {
            match self.sync_firewall() {
                Ok(()) => tracing::warn!(
                    "drift repaired: nftables table {} restored",
                    firewall::TABLE
                ),
                Err(e) => tracing::error!(error = %e, "cannot restore the firewall"),
            }
        }
    }

    /// A bridge of a network, or a host veth of a running container.
    fn is_ours(&self, name: &str) -> bool {
        let inner = self.lock();
        inner
            .networks
            .values()
            .any(|n| n.bridge().is_some_and(|b| b.owned && b.ifname == name))
            || inner
                .containers
                .values()
                .filter(|c| c.is_running())
                .any(|c| {
                    c.endpoints
                        .iter()
                        .any(|e| e.host_ifname.as_deref() == Some(name))
                })
    }

    /// Re-create the missing bridges of networks reef owns.
    pub(crate) fn repair_bridges(&self, inner: &mut Inner) -> Vec<String> {
        self.check_bridges(inner, true)
    }

    /// Bridges and running containers' attachments; with `fix`, repaired.
    pub(crate) fn repair_all(&self, inner: &mut Inner, fix: bool) -> Vec<String> {
        let mut found = self.check_bridges(inner, fix);
        let running: Vec<Container> = inner
            .containers
            .values()
            .filter(|c| c.is_running())
            .cloned()
            .collect();
        for c in running {
            found.extend(self.repair_container(inner, &c, fix));
        }
        found
    }

    fn check_bridges(&self, inner: &mut Inner, fix: bool) -> Vec<String> {
        let mut found = Vec::new();
        let bridges: Vec<reef_core::model::BridgeNetwork> = inner
            .networks
            .values()
            .filter_map(|n| n.bridge().cloned())
            .filter(|b| b.owned)
            .collect();
        let addrs = inner.exec.addrs().unwrap_or_default();
        for br in bridges {
            let bridge_found = match inner.exec.link(&br.ifname) {
                Ok(Some(link)) => {
                    let own: Vec<ipnet::Ipv4Net> = addrs
                        .iter()
                        .filter(|a| a.index == link.index)
                        .filter_map(|a| match a.addr {
                            ipnet::IpNet::V4(v4) => Some(v4),
                            ipnet::IpNet::V6(_) => None,
                        })
                        .collect();
                    // A crash in the middle of `network create` (or someone's `ip link set
                    // down` / `ip addr flush`) leaves a bridge that is there but unusable.
                    let addressed = br.bridge_addr.is_none_or(|want| own.contains(&want));
                    if link.up && addressed {
                        continue;
                    }
                    found.push(format!(
                        "bridge {} is {}",
                        br.ifname,
                        if link.up {
                            "without its address"
                        } else {
                            "down"
                        }
                    ));
                    Some(plan::FoundBridge {
                        addrs: own,
                        mtu: link.mtu,
                    })
                }
                _ => {
                    found.push(format!("bridge {} missing", br.ifname));
                    None
                }
            };
            if !fix {
                continue;
            }
            let mut p = plan::bridge_converge(&br, bridge_found.as_ref());
            if self.cfg.iptables {
                p.extend(plan::bridge_publishing(&br.ifname));
            }
            if let Err(e) = inner.exec.apply_plan(&p) {
                tracing::error!(bridge = %br.ifname, error = %e, "cannot re-create bridge");
            }
        }
        found.extend(self.check_macvlan_parents(inner, fix));
        found.extend(self.check_overlay_tunnels(inner, fix));
        found
    }

    /// The VXLAN devices of overlays: there, a port of their bridge, up; with `fix`,
    /// re-created (after a reboot) or set right. Their entries follow the cluster view.
    fn check_overlay_tunnels(&self, inner: &mut Inner, fix: bool) -> Vec<String> {
        let mut found = Vec::new();
        let overlays: Vec<reef_core::model::OverlayNetwork> = inner
            .networks
            .values()
            .filter_map(|n| n.overlay().cloned())
            .collect();
        for ov in overlays {
            let bridge = inner.exec.link(&ov.bridge.ifname).ok().flatten();
            let exists = match inner.exec.link(&ov.vxlan) {
                Ok(Some(link))
                    if link.up
                        && bridge
                            .as_ref()
                            .is_some_and(|b| link.master == Some(b.index)) =>
                {
                    continue
                }
                Ok(Some(_)) => {
                    found.push(format!(
                        "VXLAN device {} is down or off its bridge",
                        ov.vxlan
                    ));
                    true
                }
                _ => {
                    found.push(format!("VXLAN device {} missing", ov.vxlan));
                    false
                }
            };
            if fix {
                if let Err(e) = inner.exec.apply_plan(&ov.plan_vxlan(exists)) {
                    tracing::error!(device = %ov.vxlan, error = %e, "cannot restore the VXLAN device");
                }
                if let Some(link) = self.cluster_link() {
                    link.wake();
                }
            }
        }
        found
    }

    /// The parents reef made for macvlan networks (a VLAN sub-interface, a dummy): there
    /// and up; with `fix`, re-created (after a reboot) or set up.
    fn check_macvlan_parents(&self, inner: &mut Inner, fix: bool) -> Vec<String> {
        let mut found = Vec::new();
        let parents: Vec<reef_core::model::MacvlanNetwork> = inner
            .networks
            .values()
            .filter_map(|n| match &n.driver {
                DriverConfig::Macvlan { macvlan } if macvlan.created_parent => {
                    Some(macvlan.clone())
                }
                _ => None,
            })
            .collect();
        for mv in parents {
            let exists = match inner.exec.link(&mv.parent) {
                Ok(Some(link)) if link.up => continue,
                Ok(Some(_)) => {
                    found.push(format!("macvlan parent {} is down", mv.parent));
                    true
                }
                _ => {
                    found.push(format!("macvlan parent {} missing", mv.parent));
                    false
                }
            };
            if fix {
                if let Err(e) = inner.exec.apply_plan(&mv.plan_up(exists)) {
                    tracing::error!(parent = %mv.parent, error = %e, "cannot restore the macvlan parent");
                }
            }
        }
        found
    }

    /// A running container's sandbox and veths; with `fix`, missing veths are re-created and
    /// detached ones re-enslaved.
    pub(crate) fn repair_container(
        &self,
        inner: &mut Inner,
        c: &Container,
        fix: bool,
    ) -> Vec<String> {
        let mut found = Vec::new();
        let own_sandbox = matches!(
            c.spec.network_mode.clone().unwrap_or(NetworkMode::Bridge),
            NetworkMode::Bridge | NetworkMode::None | NetworkMode::Named(_)
        );
        let Some(sandbox) = c.sandbox.as_deref().map(Path::new) else {
            return found;
        };
        if own_sandbox && !inner.exec.sandbox_exists(sandbox) {
            found.push(format!("{}: sandbox {} is gone", c.name, sandbox.display()));
            return found;
        }
        for ep in &c.endpoints {
            let Some(net) = inner.networks.get(&ep.network_id).cloned() else {
                continue;
            };
            let Some(driver) = net.driver.endpoints() else {
                continue;
            };
            let broken = match (net.bridge(), &ep.host_ifname) {
                (Some(br), Some(host_end)) => {
                    let bridge_index = inner.exec.link(&br.ifname).ok().flatten().map(|l| l.index);
                    let alias = reef_core::names::veth_alias(&ep.id);
                    match inner.exec.link(host_end) {
                        Ok(Some(link))
                            if !ep.pending
                                && link.master.is_some()
                                && link.master == bridge_index
                                && link.alias.as_deref() == Some(alias.as_str()) =>
                        {
                            None
                        }
                        Ok(Some(_)) => Some(format!(
                            "{}: veth {host_end} is not attached to {} as reef left it",
                            c.name, br.ifname
                        )),
                        _ => Some(format!("{}: veth {host_end} missing", c.name)),
                    }
                }
                // No host end to look at (macvlan): an attachment cut off by a crash is
                // rebuilt whole; its link lives and dies inside the sandbox.
                _ => ep
                    .pending
                    .then(|| format!("{}: {} was left half-made", c.name, ep.ifname)),
            };
            let Some(what) = broken else { continue };
            found.push(what);
            if !fix {
                continue;
            }
            // Half-made (a crash inside an attach) or detached: rebuild it whole.
            let rejoin = reef_core::driver::rejoin(driver, ep, sandbox.to_path_buf());
            if let Err(e) = inner.exec.apply_plan(&rejoin) {
                tracing::warn!(id = %c.short_id(), error = %e, "cannot repair {}", ep.ifname);
            }
            if self.cfg.iptables {
                if let Err(e) = inner
                    .exec
                    .apply_plan(&plan::firewall(firewall::identity(ep)))
                {
                    tracing::warn!(id = %c.short_id(), error = %e, "cannot restore anti-spoofing");
                }
            }
        }
        found
    }

    /// `reef system check`: drift and leftovers, changing nothing.
    pub fn system_check(&self) -> Result<Vec<String>> {
        let mut inner = self.lock();
        let mut found = self.repair_all(&mut inner, false);
        if self.cfg.iptables {
            let listed = inner
                .exec
                .nft(&format!("list table ip {}\n", firewall::TABLE));
            match listed {
                Err(_) => found.push(format!("nftables table ip {} missing", firewall::TABLE)),
                Ok(text) => {
                    if !text.contains("jump REEF-USER") {
                        found.push(format!(
                            "nftables table ip {} has lost its rules",
                            firewall::TABLE
                        ));
                    }
                    for c in inner.containers.values().filter(|c| c.is_running()) {
                        for p in &c.firewall.ports {
                            let elem = format!(
                                "{} . {} : {} . {}",
                                p.proto, p.host_port, p.ctr_ip, p.ctr_port
                            );
                            if !text.contains(&elem) {
                                found.push(format!(
                                    "{}: published port {}/{} missing from nftables",
                                    c.name, p.host_port, p.proto
                                ));
                            }
                        }
                    }
                }
            }
        }
        found.extend(self.remove_orphans(&mut inner, false)?);
        Ok(found)
    }

    /// `reef system gc`: remove leftovers reef owns that no record accounts for.
    pub fn system_gc(&self) -> Result<Vec<String>> {
        let mut inner = self.lock();
        self.remove_orphans(&mut inner, true)
    }
}
