//! The networks every reefd has: `bridge` (the default bridge `reef0`, or the user's `-b`
//! bridge), `host` and `none`; and the IPAM view of a bridge network.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use reef_core::config::BridgeChoice;
use reef_core::firewall::{self, Elements, NetworkRule};
use reef_core::ipam::{self, AddressSpace};
use reef_core::model::{BridgeNetwork, DriverConfig, Network, NetworkMode};
use reef_core::names;
use reef_core::plan;
use reef_store::Change;

use super::{Engine, EngineError, Inner, Result};

/// Docker's bridge driver options.
pub(crate) const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
pub(crate) const OPT_ICC: &str = "com.docker.network.bridge.enable_icc";
pub(crate) const OPT_MASQ: &str = "com.docker.network.bridge.enable_ip_masquerade";
pub(crate) use reef_core::driver::OPT_MTU;
pub(crate) const OPT_HOST_IP: &str = "com.docker.network.bridge.host_binding_ipv4";

impl Engine {
    /// Make sure `host`, `none` and (unless `-b none`) `bridge` exist, in the store and in
    /// the kernel.
    pub(crate) fn setup_default_networks(&self) -> Result<()> {
        let mut inner = self.lock();
        let mut changes = Vec::new();
        for (name, driver) in [("host", DriverConfig::Host), ("none", DriverConfig::Null)] {
            if !inner.networks.values().any(|n| n.name == name) {
                changes.push(Change::PutNetwork(self.builtin(name, driver)));
            }
        }
        let stored = inner
            .networks
            .values()
            .find(|n| n.name == names::DEFAULT_NETWORK)
            .cloned();
        match &self.cfg.bridge {
            BridgeChoice::Disabled => {
                if let Some(n) = stored {
                    changes.push(Change::DeleteNetwork(n.id));
                }
            }
            choice => {
                let br = match choice {
                    BridgeChoice::Named(name) => self.adopt_user_bridge(&mut inner, name)?,
                    _ => self.own_default_bridge(&mut inner, stored.as_ref())?,
                };
                let driver = DriverConfig::Bridge { bridge: br };
                let net = match stored {
                    Some(n) => Network { driver, ..n },
                    None => self.builtin(names::DEFAULT_NETWORK, driver),
                };
                changes.push(Change::PutNetwork(net));
            }
        }
        if self.cfg.ip_forward {
            inner.exec.apply(&plan::ip_forward())?;
        }
        inner.store.commit(&changes)?;
        for c in changes {
            match c {
                Change::PutNetwork(n) => {
                    inner.networks.insert(n.id.clone(), n);
                }
                Change::DeleteNetwork(id) => {
                    inner.networks.remove(&id);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Bring reef's nftables table in line with the state, in one transaction: the fixed
    /// skeleton plus every network's and running container's elements. `REEF-USER` and
    /// its rules survive. Also the sysctls publishing needs on each bridge.
    pub(crate) fn sync_firewall(&self) -> Result<()> {
        if !self.cfg.iptables {
            return Ok(());
        }
        let mut inner = self.lock();
        let mut all = Elements::default();
        let mut bridges = Vec::new();
        for n in inner.networks.values() {
            if let Some(br) = n.bridge() {
                all.networks.push(self.network_rule(n));
                bridges.push(br.ifname.clone());
            }
        }
        for c in inner.containers.values().filter(|c| c.is_running()) {
            all.extend(&firewall::container_elements(c));
        }
        inner.exec.nft(&firewall::render_sync(&all))?;
        for br in bridges {
            // The host's own 127.0.0.1:PORT is DNATed to a container behind this bridge.
            // A bridge that could not be restored must not keep the daemon from starting.
            if let Err(e) = inner.exec.apply(&plan::route_localnet(&br)) {
                tracing::warn!(bridge = %br, error = %e, "cannot set route_localnet");
            }
        }
        if !self.cfg.icc {
            inner.exec.apply(&plan::bridge_nf_call()).map_err(|e| {
                EngineError::Invalid(format!(
                    "--icc=false needs the br_netfilter kernel module (modprobe br_netfilter): {e}"
                ))
            })?;
        }
        Ok(())
    }

    /// A network's firewall facts. The default network follows the daemon's `--icc` and
    /// `--ip-masq`; a user network its own options (Docker's option names), default on.
    pub(crate) fn network_rule(&self, n: &Network) -> NetworkRule {
        let br = n.bridge().expect("bridge network");
        let opt = |key: &str, dflt: bool| {
            n.options
                .get(key)
                .and_then(|v| v.parse::<bool>().ok())
                .unwrap_or(dflt)
        };
        let default_net = n.name == names::DEFAULT_NETWORK;
        NetworkRule {
            bridge: br.ifname.clone(),
            subnet: br.subnet,
            masquerade: !n.internal && self.cfg.ip_masq && (default_net || opt(OPT_MASQ, true)),
            icc: if default_net {
                self.cfg.icc
            } else {
                opt(OPT_ICC, true)
            },
            internal: n.internal,
        }
    }

    fn builtin(&self, name: &str, driver: DriverConfig) -> Network {
        Network {
            id: self.host.random_id(),
            name: name.into(),
            driver,
            internal: false,
            labels: Default::default(),
            options: Default::default(),
            created: crate::clock::rfc3339(crate::clock::now_nanos()),
        }
    }

    /// `reef0`: created and addressed by reef. Its subnet is, in order of preference: `--bip`;
    /// the one it had before (stable across restarts); the address `reef0` already carries;
    /// the first default pool that collides with nothing on the host.
    fn own_default_bridge(
        &self,
        inner: &mut Inner,
        stored: Option<&Network>,
    ) -> Result<BridgeNetwork> {
        let ifname = names::DEFAULT_BRIDGE.to_string();
        let host = &mut inner.exec;
        let link = host.link(&ifname)?;
        let all_addrs = host.addrs()?;
        let existing_v4: Vec<Ipv4Net> = link
            .as_ref()
            .map(|l| {
                all_addrs
                    .iter()
                    .filter(|a| a.index == l.index)
                    .filter_map(|a| match a.addr {
                        IpNet::V4(v4) => Some(v4),
                        IpNet::V6(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let previous = stored
            .and_then(|n| n.bridge())
            .filter(|b| b.owned && b.ifname == ifname)
            .and_then(|b| b.bridge_addr);
        let bridge_addr = match (self.cfg.bip, previous, existing_v4.first()) {
            (Some(bip), _, _) => bip,
            (None, Some(prev), _) => prev,
            (None, None, Some(addr)) => *addr,
            (None, None, None) => {
                let in_use = self.subnets_in_use(inner, Some(names::DEFAULT_NETWORK))?;
                let subnet = ipam::choose_subnet(&in_use)
                    .map_err(|e| EngineError::Invalid(e.to_string()))?;
                Ipv4Net::new(ipam::first_host(subnet), subnet.prefix_len())
                    .expect("prefix comes from a subnet")
            }
        };
        let br = self.bridge_facts(ifname, bridge_addr, true)?;
        let found = link.as_ref().map(|l| plan::FoundBridge {
            addrs: existing_v4.clone(),
            mtu: l.mtu,
        });
        let plan = plan::bridge_converge(&br, found.as_ref());
        inner.exec.apply_plan(&plan)?;
        Ok(br)
    }

    /// `-b NAME`: a bridge the user made. reef reads its address and never changes it.
    fn adopt_user_bridge(&self, inner: &mut Inner, name: &str) -> Result<BridgeNetwork> {
        let host = &mut inner.exec;
        let link = host.link(name)?.ok_or_else(|| {
            EngineError::Invalid(format!(
                "bridge {name:?} not found: create it first (ip link add {name} type bridge) or leave out -b"
            ))
        })?;
        if link.kind.as_deref() != Some("bridge") {
            return Err(EngineError::Invalid(format!(
                "-b {name}: {name} is a {} interface, not a bridge",
                link.kind.as_deref().unwrap_or("plain")
            )));
        }
        let addr = host
            .addrs()?
            .into_iter()
            .filter(|a| a.index == link.index)
            .find_map(|a| match a.addr {
                IpNet::V4(v4) => Some(v4),
                IpNet::V6(_) => None,
            })
            .ok_or_else(|| {
                EngineError::Invalid(format!(
                    "bridge {name} has no IPv4 address: reef takes the containers' subnet from it"
                ))
            })?;
        self.bridge_facts(name.to_string(), addr, false)
    }

    /// The IPAM facts of a bridge with this address, checked against `--fixed-cidr` and
    /// `--default-gateway`.
    fn bridge_facts(&self, ifname: String, addr: Ipv4Net, owned: bool) -> Result<BridgeNetwork> {
        let subnet = addr.trunc();
        if let Some(fc) = self.cfg.fixed_cidr {
            if !subnet.contains(&fc) {
                return Err(EngineError::Invalid(format!(
                    "--fixed-cidr {fc} is not within the bridge subnet {subnet}"
                )));
            }
        }
        let gateway = match self.cfg.default_gateway {
            Some(gw) if !subnet.contains(&gw) => {
                return Err(EngineError::Invalid(format!(
                    "--default-gateway {gw} is not within the bridge subnet {subnet}"
                )))
            }
            Some(gw) => gw,
            None => addr.addr(),
        };
        Ok(BridgeNetwork {
            ifname,
            subnet,
            gateway,
            bridge_addr: Some(addr),
            ip_range: self.cfg.fixed_cidr,
            mtu: self.cfg.mtu,
            owned,
        })
    }

    /// The network an endpoint mode (the default bridge, a named network) puts a
    /// container on: one whose driver gives it an endpoint.
    pub(crate) fn endpoint_network_for<'a>(
        &self,
        inner: &'a Inner,
        mode: &NetworkMode,
    ) -> Result<&'a Network> {
        let key = match mode {
            NetworkMode::Bridge => names::DEFAULT_NETWORK,
            NetworkMode::Named(n) => n.as_str(),
            _ => unreachable!("only bridge-kind modes have a bridge network"),
        };
        let net = self.find_network(inner, key).ok();
        match net {
            Some(n) if n.driver.endpoints().is_some() => Ok(n),
            Some(n) => Err(EngineError::Invalid(format!(
                "network {} uses the {} driver: use --network {} instead",
                n.name,
                n.driver_name(),
                if n.driver_name() == "null" {
                    "none"
                } else {
                    &n.name
                }
            ))),
            None if key == names::DEFAULT_NETWORK => Err(EngineError::Invalid(
                "the default bridge network is disabled (-b none)".into(),
            )),
            None => Err(EngineError::NotFound(format!("network {key} not found"))),
        }
    }

    /// The addresses containers of a network may get.
    pub(crate) fn address_space(&self, net: &Network) -> Result<AddressSpace> {
        let pool = net.pool().ok_or_else(|| {
            EngineError::Invalid(format!(
                "network {} gives its containers no addresses",
                net.name
            ))
        })?;
        let mut reserved = vec![pool.gateway];
        reserved.extend(pool.reserved);
        AddressSpace::new(pool.subnet, pool.ip_range, reserved)
            .map_err(|e| EngineError::Invalid(e.to_string()))
    }

    /// Addresses held on a network by containers that are running or starting.
    pub(crate) fn allocated_on(&self, inner: &Inner, network_id: &str) -> BTreeSet<Ipv4Addr> {
        inner
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter())
            .filter(|e| e.network_id == network_id)
            .map(|e| e.ip)
            .collect()
    }
}
