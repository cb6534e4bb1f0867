//! Plans: ordered kernel operations, each with the operation that undoes it.
//!
//! The engine asks this module what to do (`sandbox_create`, `attach`, ...), hands the plan to
//! the kernel layer to execute, and on the first failure runs the undos of what was applied,
//! newest first. `Display` prints each op as the `ip` command that would do the same, so plans
//! read like shell scripts in logs and golden tests.

use core::net::{IpAddr, Ipv4Addr};
use std::fmt;
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net};

use crate::model::{BridgeNetwork, Endpoint, MacvlanMode, MacvlanNetwork};
use crate::names;

/// Which network namespace an op runs in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NsRef {
    /// The namespace reefd runs in.
    Host,
    /// A container sandbox: a network namespace bind-mounted at this path.
    Sandbox(PathBuf),
}

/// One kernel operation. Executing an op that is already in effect is an error
/// (EEXIST) except where noted; undo ops tolerate the object being gone already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// New network namespace bind-mounted at `path`.
    CreateSandbox {
        /// Bind-mount path under the exec-root.
        path: PathBuf,
    },
    /// Unmount and remove a sandbox (its interfaces go with it). Tolerates absence.
    DeleteSandbox {
        /// Bind-mount path.
        path: PathBuf,
    },
    /// A Linux bridge in the host namespace.
    CreateBridge {
        /// Interface name.
        name: String,
        /// MTU.
        mtu: u32,
    },
    /// A veth pair: `host` in the host namespace carrying `alias`, `peer` created directly
    /// inside the sandbox at `sandbox`.
    CreateVeth {
        /// Host-side name.
        host: String,
        /// Name inside the sandbox.
        peer: String,
        /// Sandbox path.
        sandbox: PathBuf,
        /// MTU of both ends.
        mtu: u32,
        /// MAC of the sandbox end.
        peer_mac: [u8; 6],
        /// Interface alias of the host end (marks it as reef's).
        alias: String,
        /// IPv6 on the pair. Without it the host end (a bridge port) has IPv6 off and the
        /// peer gets no IPv6 address: an IPv6 link-local address on every veth floods
        /// neighbour and listener packets to every bridge port and adds host routes that
        /// every IPv6 lookup walks, so each attach cost more than the last.
        ipv6: bool,
    },
    /// A macvlan link on the host interface `parent`, created directly inside the sandbox
    /// at `sandbox` as `name`, down.
    CreateMacvlan {
        /// Name inside the sandbox.
        name: String,
        /// Host interface it hangs off.
        parent: String,
        /// How it reaches its siblings.
        mode: MacvlanMode,
        /// Sandbox path.
        sandbox: PathBuf,
        /// Its MAC.
        mac: [u8; 6],
        /// Its MTU; `None`: the parent's.
        mtu: Option<u32>,
    },
    /// An 802.1q sub-interface `name` of `parent` (host namespace), down.
    CreateVlan {
        /// Interface name (`eth0.10`).
        name: String,
        /// The interface it tags frames onto.
        parent: String,
        /// VLAN id, 1 to 4094.
        vlan_id: u16,
    },
    /// A dummy interface (host namespace), down.
    CreateDummy {
        /// Interface name.
        name: String,
    },
    /// A VXLAN device (host namespace), down: no learning, ARP answered from its
    /// neighbour table (`proxy`), so nothing floods.
    CreateVxlan {
        /// Name.
        name: String,
        /// VXLAN network identifier.
        vni: u32,
        /// This host's tunnel address.
        local: Ipv4Addr,
        /// The interface the tunnels run over.
        underlay: String,
        /// UDP port.
        port: u16,
        /// MTU.
        mtu: u32,
    },
    /// A permanent forwarding entry of a VXLAN device: frames to `mac` go to `dst`.
    FdbReplace {
        /// Device.
        dev: String,
        /// MAC (`02:42:...`).
        mac: String,
        /// Remote tunnel address.
        dst: Ipv4Addr,
    },
    /// Remove a forwarding entry. Tolerates absence.
    FdbDelete {
        /// Device.
        dev: String,
        /// MAC.
        mac: String,
        /// Remote tunnel address.
        dst: Ipv4Addr,
    },
    /// A permanent neighbour entry on a device (the VXLAN device answers ARP with it).
    NeighReplace {
        /// Device.
        dev: String,
        /// Address.
        ip: Ipv4Addr,
        /// MAC.
        mac: String,
    },
    /// Remove a neighbour entry. Tolerates absence.
    NeighDelete {
        /// Device.
        dev: String,
        /// Address.
        ip: Ipv4Addr,
    },
    /// Delete a link (its veth peer goes too). Tolerates absence.
    DeleteLink {
        /// Namespace.
        ns: NsRef,
        /// Interface name.
        name: String,
    },
    /// Set a link down and rename it to `parked`, so that its name is free at once while
    /// the link itself is deleted later (deleting a veth takes the kernel tens of
    /// milliseconds). Tolerates absence.
    ParkLink {
        /// Namespace.
        ns: NsRef,
        /// Interface name.
        name: String,
        /// The name it gets until it is deleted.
        parked: String,
    },
    /// Set a host link down and off its bridge, so that it is no port of it from now on
    /// while the link itself is deleted later. Tolerates absence.
    ReleaseLink {
        /// Interface name.
        name: String,
    },
    /// Enslave `link` to the bridge `master` (host namespace).
    SetMaster {
        /// Port.
        link: String,
        /// Bridge.
        master: String,
    },
    /// Let a bridge port hairpin (host namespace).
    SetHairpin {
        /// Port.
        link: String,
    },
    /// Bring a link up.
    SetUp {
        /// Namespace.
        ns: NsRef,
        /// Interface name.
        link: String,
    },
    /// Set a link's MAC address (host namespace).
    SetMac {
        /// Interface name.
        link: String,
        /// Address.
        mac: [u8; 6],
    },
    /// Set a link's MTU.
    SetMtu {
        /// Namespace.
        ns: NsRef,
        /// Interface name.
        link: String,
        /// MTU.
        mtu: u32,
    },
    /// Add an address. Idempotent on EEXIST.
    AddAddr {
        /// Namespace.
        ns: NsRef,
        /// Interface name.
        link: String,
        /// Address with prefix.
        addr: IpNet,
    },
    /// Remove an address. Tolerates absence.
    DelAddr {
        /// Namespace.
        ns: NsRef,
        /// Interface name.
        link: String,
        /// Address with prefix.
        addr: IpNet,
    },
    /// Add a route (`via` a gateway and/or `dev` a link).
    AddRoute {
        /// Namespace.
        ns: NsRef,
        /// Destination.
        dst: IpNet,
        /// Next hop.
        via: Option<IpAddr>,
        /// Output interface.
        dev: String,
    },
    /// Add firewall elements (one nftables transaction).
    FirewallAdd(crate::firewall::Elements),
    /// Remove firewall elements. Tolerates elements already gone.
    FirewallDelete(crate::firewall::Elements),
    /// Write a sysctl (`net.ipv4.ip_forward` form) in a namespace.
    Sysctl {
        /// Namespace.
        ns: NsRef,
        /// Dotted key.
        key: String,
        /// Value.
        value: String,
    },
}

impl Op {
    /// The namespace the op touches (sandbox ops name their sandbox).
    pub fn ns(&self) -> NsRef {
        match self {
            Op::CreateSandbox { path } | Op::DeleteSandbox { path } => NsRef::Sandbox(path.clone()),
            Op::CreateBridge { .. }
            | Op::CreateVeth { .. }
            | Op::CreateMacvlan { .. }
            | Op::CreateVlan { .. }
            | Op::CreateDummy { .. }
            | Op::CreateVxlan { .. }
            | Op::FdbReplace { .. }
            | Op::FdbDelete { .. }
            | Op::NeighReplace { .. }
            | Op::NeighDelete { .. }
            | Op::SetMaster { .. }
            | Op::ReleaseLink { .. }
            | Op::SetHairpin { .. }
            | Op::SetMac { .. }
            | Op::FirewallAdd(_)
            | Op::FirewallDelete(_) => NsRef::Host,
            Op::DeleteLink { ns, .. }
            | Op::ParkLink { ns, .. }
            | Op::SetUp { ns, .. }
            | Op::SetMtu { ns, .. }
            | Op::AddAddr { ns, .. }
            | Op::DelAddr { ns, .. }
            | Op::AddRoute { ns, .. }
            | Op::Sysctl { ns, .. } => ns.clone(),
        }
    }
}

fn netns_prefix(ns: &NsRef) -> String {
    match ns {
        NsRef::Host => String::new(),
        NsRef::Sandbox(p) => format!("nsenter --net={} ", p.display()),
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::CreateSandbox { path } => write!(f, "unshare --net={} true", path.display()),
            Op::DeleteSandbox { path } => {
                write!(f, "umount {p} && rm {p}", p = path.display())
            }
            Op::CreateBridge { name, mtu } => {
                write!(f, "ip link add {name} type bridge mtu {mtu}")
            }
            Op::CreateVeth {
                host,
                peer,
                sandbox,
                mtu,
                peer_mac,
                alias,
                ipv6: _,
            } => write!(
                f,
                "ip link add {host} mtu {mtu} alias {alias} type veth peer name {peer} \
                 address {} netns {}",
                names::format_mac(*peer_mac),
                sandbox.display()
            ),
            Op::CreateMacvlan {
                name,
                parent,
                mode,
                sandbox,
                mac,
                mtu,
            } => {
                write!(
                    f,
                    "ip link add {name} link {parent} address {}",
                    names::format_mac(*mac)
                )?;
                if let Some(mtu) = mtu {
                    write!(f, " mtu {mtu}")?;
                }
                write!(f, " netns {} type macvlan mode {mode}", sandbox.display())
            }
            Op::CreateVlan {
                name,
                parent,
                vlan_id,
            } => write!(
                f,
                "ip link add link {parent} name {name} type vlan id {vlan_id}"
            ),
            Op::CreateDummy { name } => write!(f, "ip link add {name} type dummy"),
            Op::CreateVxlan {
                name,
                vni,
                local,
                underlay,
                port,
                mtu,
            } => write!(
                f,
                "ip link add {name} type vxlan id {vni} local {local} dev {underlay} \
                 dstport {port} nolearning proxy mtu {mtu}"
            ),
            Op::FdbReplace { dev, mac, dst } => {
                write!(
                    f,
                    "bridge fdb replace {mac} dev {dev} dst {dst} self permanent"
                )
            }
            Op::FdbDelete { dev, mac, dst } => {
                write!(f, "bridge fdb del {mac} dev {dev} dst {dst} self")
            }
            Op::NeighReplace { dev, ip, mac } => {
                write!(
                    f,
                    "ip neigh replace {ip} lladdr {mac} dev {dev} nud permanent"
                )
            }
            Op::NeighDelete { dev, ip } => write!(f, "ip neigh del {ip} dev {dev}"),
            Op::DeleteLink { ns, name } => write!(f, "{}ip link del {name}", netns_prefix(ns)),
            Op::ParkLink { ns, name, parked } => write!(
                f,
                "{p}ip link set {name} down && {p}ip link set {name} name {parked}",
                p = netns_prefix(ns)
            ),
            Op::SetMaster { link, master } => write!(f, "ip link set {link} master {master}"),
            Op::ReleaseLink { name } => write!(f, "ip link set {name} down nomaster"),
            Op::SetUp { ns, link } => write!(f, "{}ip link set {link} up", netns_prefix(ns)),
            Op::SetMac { link, mac } => {
                write!(f, "ip link set {link} address {}", names::format_mac(*mac))
            }
            Op::SetHairpin { link } => {
                write!(f, "ip link set {link} type bridge_slave hairpin on")
            }
            Op::SetMtu { ns, link, mtu } => {
                write!(f, "{}ip link set {link} mtu {mtu}", netns_prefix(ns))
            }
            Op::AddAddr { ns, link, addr } => {
                write!(f, "{}ip addr add {addr} dev {link}", netns_prefix(ns))
            }
            Op::DelAddr { ns, link, addr } => {
                write!(f, "{}ip addr del {addr} dev {link}", netns_prefix(ns))
            }
            Op::AddRoute { ns, dst, via, dev } => {
                let dst = if dst.prefix_len() == 0 {
                    "default".to_string()
                } else {
                    dst.to_string()
                };
                match via {
                    Some(gw) => {
                        write!(
                            f,
                            "{}ip route add {dst} via {gw} dev {dev}",
                            netns_prefix(ns)
                        )
                    }
                    None => write!(f, "{}ip route add {dst} dev {dev}", netns_prefix(ns)),
                }
            }
            Op::Sysctl { ns, key, value } => {
                write!(f, "{}sysctl -w {key}={value}", netns_prefix(ns))
            }
            Op::FirewallAdd(el) => {
                write!(
                    f,
                    "nft -f - <<'EOF'\n{}EOF",
                    crate::firewall::render_add(el)
                )
            }
            Op::FirewallDelete(el) => {
                write!(
                    f,
                    "nft -f - <<'EOF'\n{}EOF",
                    crate::firewall::render_delete(el)
                )
            }
        }
    }
}

/// An op and the op that undoes it (`None` when nothing needs undoing, or when a later
/// step's undo already covers it, e.g. deleting a veth removes its addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What to do.
    pub op: Op,
    /// How to take it back.
    pub undo: Option<Op>,
}

/// An ordered list of steps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Steps in execution order.
    pub steps: Vec<Step>,
}

/// A plan that failed at `step`: that step's error, and the errors of the undos that
/// failed in turn.
#[derive(Debug)]
pub struct PlanFailure<E> {
    /// Index of the step that failed.
    pub step: usize,
    /// Its error.
    pub cause: E,
    /// Every undo that failed, in the order they were tried.
    pub undo_errors: Vec<E>,
}

impl Plan {
    /// Apply the steps in order through `apply` (told the step's index, or `None` for an
    /// undo). On the first failure, apply the undos of the steps applied before it, newest
    /// first, continuing past undo failures.
    pub fn run<E>(
        &self,
        mut apply: impl FnMut(Option<usize>, &Op) -> Result<(), E>,
    ) -> Result<(), PlanFailure<E>> {
        for (i, step) in self.steps.iter().enumerate() {
            let Err(cause) = apply(Some(i), &step.op) else {
                continue;
            };
            let undo_errors = self
                .rollback(i)
                .iter()
                .filter_map(|undo| apply(None, undo).err())
                .collect();
            return Err(PlanFailure {
                step: i,
                cause,
                undo_errors,
            });
        }
        Ok(())
    }

    /// Append a step and its undo.
    pub fn push(&mut self, op: Op, undo: Option<Op>) {
        self.steps.push(Step { op, undo });
    }

    /// Append another plan's steps.
    pub fn extend(&mut self, other: Plan) {
        self.steps.extend(other.steps);
    }

    /// The undo ops of the first `applied` steps, newest first.
    pub fn rollback(&self, applied: usize) -> Vec<Op> {
        self.steps[..applied]
            .iter()
            .rev()
            .filter_map(|s| s.undo.clone())
            .collect()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            writeln!(f, "{}", s.op)?;
        }
        Ok(())
    }
}

/// Bring up the bridge of a network reef owns: create it, address it, set it up.
/// `exists` says the bridge is already there (after a daemon restart), in which case only
/// missing pieces are planned: the address is idempotent, `up` is harmless.
pub fn bridge_setup(net: &BridgeNetwork, exists: bool) -> Plan {
    let mut p = Plan::default();
    if !exists {
        p.push(
            Op::CreateBridge {
                name: net.ifname.clone(),
                mtu: net.mtu,
            },
            Some(Op::DeleteLink {
                ns: NsRef::Host,
                name: net.ifname.clone(),
            }),
        );
        // Without a MAC of its own a bridge takes its lowest port's, and changes it when that
        // port goes: containers would then send to a stale gateway MAC for seconds. No
        // container has the gateway's address, so 02:42:<gateway> is unique on the bridge.
        if let Some(addr) = net.bridge_addr {
            p.push(
                Op::SetMac {
                    link: net.ifname.clone(),
                    mac: names::mac_from_ipv4(addr.addr()),
                },
                None,
            );
        }
    }
    if let Some(addr) = net.bridge_addr {
        p.push(
            Op::AddAddr {
                ns: NsRef::Host,
                link: net.ifname.clone(),
                addr: IpNet::V4(addr),
            },
            None,
        );
    }
    p.push(
        Op::SetUp {
            ns: NsRef::Host,
            link: net.ifname.clone(),
        },
        None,
    );
    p
}

/// What the host has of a bridge of reef's that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundBridge {
    /// Its IPv4 addresses.
    pub addrs: Vec<Ipv4Net>,
    /// Its MTU.
    pub mtu: u32,
}

/// Bring a bridge reef owns to what its record says, at start-up or in drift repair:
/// create it when it is missing ([`bridge_setup`]); when it is there, give it back its MAC
/// (a create cut off before setting it), drop the addresses it should not have (a `--bip`
/// change), address it, set it up and correct its MTU.
pub fn bridge_converge(net: &BridgeNetwork, found: Option<&FoundBridge>) -> Plan {
    let Some(found) = found else {
        return bridge_setup(net, false);
    };
    let mut p = Plan::default();
    if let Some(addr) = net.bridge_addr {
        p.push(
            Op::SetMac {
                link: net.ifname.clone(),
                mac: names::mac_from_ipv4(addr.addr()),
            },
            None,
        );
    }
    for old in found.addrs.iter().filter(|a| Some(**a) != net.bridge_addr) {
        p.push(
            Op::DelAddr {
                ns: NsRef::Host,
                link: net.ifname.clone(),
                addr: IpNet::V4(*old),
            },
            None,
        );
    }
    p.extend(bridge_setup(net, true));
    if found.mtu != net.mtu {
        p.push(
            Op::SetMtu {
                ns: NsRef::Host,
                link: net.ifname.clone(),
                mtu: net.mtu,
            },
            None,
        );
    }
    p
}

/// What a bridge needs for published ports: [`route_localnet`].
pub fn bridge_publishing(bridge: &str) -> Plan {
    let mut p = Plan::default();
    p.push(route_localnet(bridge), None);
    p
}

/// `net.ipv4.ip_forward=1` (`--ip-forward`).
pub fn ip_forward() -> Op {
    Op::Sysctl {
        ns: NsRef::Host,
        key: "net.ipv4.ip_forward".into(),
        value: "1".into(),
    }
}

/// `net.bridge.bridge-nf-call-iptables=1`: bridged traffic meets the forward hook (and so
/// `--icc=false`) only through br_netfilter.
pub fn bridge_nf_call() -> Op {
    Op::Sysctl {
        ns: NsRef::Host,
        key: "net.bridge.bridge-nf-call-iptables".into(),
        value: "1".into(),
    }
}

/// `route_localnet=1` on a bridge: the host's own `127.0.0.1:PORT` is DNATed to a
/// container behind it, which the kernel routes only with this set.
pub fn route_localnet(bridge: &str) -> Op {
    Op::Sysctl {
        ns: NsRef::Host,
        key: format!("net.ipv4.conf.{bridge}.route_localnet"),
        value: "1".into(),
    }
}

/// A fresh sandbox: the namespace and its loopback.
pub fn sandbox_create(path: PathBuf) -> Plan {
    let mut p = Plan::default();
    p.push(
        Op::CreateSandbox { path: path.clone() },
        Some(Op::DeleteSandbox { path: path.clone() }),
    );
    p.push(
        Op::SetUp {
            ns: NsRef::Sandbox(path),
            link: "lo".into(),
        },
        None,
    );
    p
}

/// Remove a sandbox and everything in it.
pub fn sandbox_delete(path: PathBuf) -> Plan {
    let mut p = Plan::default();
    p.push(Op::DeleteSandbox { path }, None);
    p
}

/// Attach a sandbox to a bridge network through a veth pair. The endpoint's host end
/// names the veth (an endpoint without one gets the name its id gives).
pub fn attach(net: &BridgeNetwork, ep: &Endpoint, sandbox: PathBuf) -> Plan {
    let mut p = Plan::default();
    let mac = names::parse_mac(&ep.mac).unwrap_or_else(|_| names::mac_from_ipv4(ep.ip));
    let host = ep
        .host_ifname
        .clone()
        .unwrap_or_else(|| names::veth_name(&ep.id));
    p.push(
        Op::CreateVeth {
            host: host.clone(),
            peer: ep.ifname.clone(),
            sandbox: sandbox.clone(),
            mtu: net.mtu,
            peer_mac: mac,
            alias: names::veth_alias(&ep.id),
            // reef's networks are IPv4-only, as Docker's are without --ipv6.
            ipv6: false,
        },
        Some(Op::DeleteLink {
            ns: NsRef::Host,
            name: host.clone(),
        }),
    );
    p.push(
        Op::SetMaster {
            link: host.clone(),
            master: net.ifname.clone(),
        },
        None,
    );
    p.push(Op::SetHairpin { link: host.clone() }, None);
    p.push(
        Op::SetUp {
            ns: NsRef::Host,
            link: host.clone(),
        },
        None,
    );
    p.extend(address_endpoint(ep, sandbox));
    p
}

/// Address an endpoint's interface inside its sandbox, bring it up and, when it carries
/// the default route, add that.
fn address_endpoint(ep: &Endpoint, sandbox: PathBuf) -> Plan {
    let mut p = Plan::default();
    let sb = NsRef::Sandbox(sandbox);
    let addr = Ipv4Net::new(ep.ip, ep.prefix_len).expect("prefix length comes from a subnet");
    p.push(
        Op::AddAddr {
            ns: sb.clone(),
            link: ep.ifname.clone(),
            addr: IpNet::V4(addr),
        },
        None,
    );
    p.push(
        Op::SetUp {
            ns: sb.clone(),
            link: ep.ifname.clone(),
        },
        None,
    );
    if let Some(gw) = ep.gateway {
        p.push(
            Op::AddRoute {
                ns: sb,
                dst: IpNet::V4(Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).expect("0 is valid")),
                via: Some(IpAddr::V4(gw)),
                dev: ep.ifname.clone(),
            },
            None,
        );
    }
    p
}

/// Attach a sandbox to a macvlan network: a macvlan link on the parent, made inside the
/// sandbox (deleting the sandbox deletes it; nothing of it is in the host namespace).
pub fn attach_macvlan(net: &MacvlanNetwork, ep: &Endpoint, sandbox: PathBuf) -> Plan {
    let mut p = Plan::default();
    let mac = names::parse_mac(&ep.mac).unwrap_or_else(|_| names::mac_from_ipv4(ep.ip));
    p.push(
        Op::CreateMacvlan {
            name: ep.ifname.clone(),
            parent: net.parent.clone(),
            mode: net.mode,
            sandbox: sandbox.clone(),
            mac,
            mtu: net.mtu,
        },
        Some(Op::DeleteLink {
            ns: NsRef::Sandbox(sandbox.clone()),
            name: ep.ifname.clone(),
        }),
    );
    p.extend(address_endpoint(ep, sandbox));
    p
}

/// Add a container's firewall elements, undone by removing them.
pub fn firewall(el: crate::firewall::Elements) -> Plan {
    let mut p = Plan::default();
    if !el.is_empty() {
        p.push(Op::FirewallAdd(el.clone()), Some(Op::FirewallDelete(el)));
    }
    p
}

/// Detach an endpoint: deleting the host end removes a veth pair; an endpoint without
/// one (macvlan) is deleted inside its sandbox.
pub fn detach(ep: &Endpoint, sandbox: PathBuf) -> Plan {
    let mut p = Plan::default();
    let op = match &ep.host_ifname {
        Some(host) => Op::DeleteLink {
            ns: NsRef::Host,
            name: host.clone(),
        },
        None => Op::DeleteLink {
            ns: NsRef::Sandbox(sandbox),
            name: ep.ifname.clone(),
        },
    };
    p.push(op, None);
    p
}

/// Tear a container's network down at exit or removal: its firewall elements (when
/// given), each host veth end off its bridge (so that no port of it is left on a bridge
/// once this is done), then the sandbox with everything in it. Each op tolerates its object
/// being gone; the caller applies them all and logs what fails. Deleting the host ends, the
/// slow part, is left to the caller's background deletion.
pub fn teardown(
    endpoints: &[Endpoint],
    sandbox: Option<PathBuf>,
    firewall: Option<crate::firewall::Elements>,
) -> Vec<Op> {
    let mut ops = Vec::new();
    if let Some(el) = firewall.filter(|el| !el.is_empty()) {
        ops.push(Op::FirewallDelete(el));
    }
    for host in endpoints.iter().filter_map(|e| e.host_ifname.as_ref()) {
        ops.push(Op::ReleaseLink { name: host.clone() });
    }
    if let Some(path) = sandbox {
        ops.push(Op::DeleteSandbox { path });
    }
    ops
}

/// Leaving one network while the container runs (`network disconnect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leave {
    /// Applied in order, now.
    pub ops: Vec<Op>,
    /// A host link to delete in the background once `ops` succeeded (else at once, by
    /// [`detach`]).
    pub reap: Option<String>,
}

/// Leave a network: the firewall elements that go with the endpoint are removed; a veth
/// endpoint's host end goes off the bridge and its container end
/// down and out of the way under its parked name (a reconnect must not meet it), the pair
/// deleted later; an endpoint without a host end is deleted inside its sandbox.
pub fn leave(
    ep: &Endpoint,
    sandbox: Option<PathBuf>,
    firewall: crate::firewall::Elements,
) -> Leave {
    let mut leave = leave_links(ep, sandbox);
    if !firewall.is_empty() {
        leave.ops.insert(0, Op::FirewallDelete(firewall));
    }
    leave
}

/// The links part of [`leave`].
fn leave_links(ep: &Endpoint, sandbox: Option<PathBuf>) -> Leave {
    match (&ep.host_ifname, sandbox) {
        (Some(host), sandbox) => {
            let mut ops = vec![Op::ReleaseLink { name: host.clone() }];
            if let Some(path) = sandbox {
                ops.push(Op::ParkLink {
                    ns: NsRef::Sandbox(path),
                    name: ep.ifname.clone(),
                    parked: names::parked_ifname(host),
                });
            }
            Leave {
                ops,
                reap: Some(host.clone()),
            }
        }
        (None, Some(path)) => Leave {
            ops: vec![Op::DeleteLink {
                ns: NsRef::Sandbox(path),
                name: ep.ifname.clone(),
            }],
            reap: None,
        },
        (None, None) => Leave {
            ops: vec![],
            reap: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> BridgeNetwork {
        BridgeNetwork {
            ifname: "reef0".into(),
            subnet: "172.17.0.0/16".parse().unwrap(),
            gateway: "172.17.0.1".parse().unwrap(),
            bridge_addr: Some("172.17.0.1/16".parse().unwrap()),
            ip_range: None,
            mtu: 1500,
            owned: true,
        }
    }

    fn ep() -> Endpoint {
        Endpoint {
            id: "abcdef0123456789".repeat(4),
            network_id: "n".repeat(64),
            ifname: "eth0".into(),
            host_ifname: Some("vethabcdef0".into()),
            ip: "172.17.0.2".parse().unwrap(),
            prefix_len: 16,
            gateway: Some("172.17.0.1".parse().unwrap()),
            mac: "02:42:ac:11:00:02".into(),
            aliases: vec![],
            pending: false,
        }
    }

    #[test]
    fn attach_plan_reads_like_ip_commands() {
        let plan = attach(&net(), &ep(), "/run/reef/netns/c1".into());
        let alias = format!("reef:{}", "abcdef0123456789".repeat(4));
        let expected = format!(
            "ip link add vethabcdef0 mtu 1500 alias {alias} type veth peer name eth0 address 02:42:ac:11:00:02 netns /run/reef/netns/c1\n\
             ip link set vethabcdef0 master reef0\n\
             ip link set vethabcdef0 type bridge_slave hairpin on\n\
             ip link set vethabcdef0 up\n\
             nsenter --net=/run/reef/netns/c1 ip addr add 172.17.0.2/16 dev eth0\n\
             nsenter --net=/run/reef/netns/c1 ip link set eth0 up\n\
             nsenter --net=/run/reef/netns/c1 ip route add default via 172.17.0.1 dev eth0\n"
        );
        assert_eq!(plan.to_string(), expected);
    }

    #[test]
    fn rollback_undoes_newest_first_and_only_applied_steps() {
        let mut plan = sandbox_create("/x/sb".into());
        plan.extend(attach(&net(), &ep(), "/x/sb".into()));
        // Sandbox, lo up, veth applied; master failed.
        let undo = plan.rollback(3);
        assert_eq!(
            undo,
            vec![
                Op::DeleteLink {
                    ns: NsRef::Host,
                    name: "vethabcdef0".into()
                },
                Op::DeleteSandbox {
                    path: "/x/sb".into()
                },
            ]
        );
        assert!(plan.rollback(0).is_empty());
    }

    #[test]
    fn teardown_releases_host_ends_before_the_sandbox_goes() {
        let ops = teardown(&[ep()], Some("/x/sb".into()), None);
        let text: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        assert_eq!(
            text,
            [
                "ip link set vethabcdef0 down nomaster",
                "umount /x/sb && rm /x/sb"
            ]
        );
    }

    #[test]
    fn leaving_parks_a_veth_and_deletes_a_macvlan() {
        let l = leave(&ep(), Some("/x/sb".into()), Default::default());
        assert_eq!(l.reap.as_deref(), Some("vethabcdef0"));
        let text: Vec<String> = l.ops.iter().map(|o| o.to_string()).collect();
        assert_eq!(
            text,
            [
                "ip link set vethabcdef0 down nomaster",
                "nsenter --net=/x/sb ip link set eth0 down && nsenter --net=/x/sb ip link set eth0 name xvethabcdef0"
            ]
        );
        let mv = Endpoint {
            host_ifname: None,
            ..ep()
        };
        let l = leave(&mv, Some("/x/sb".into()), Default::default());
        assert_eq!(l.reap, None);
        assert_eq!(l.ops[0].to_string(), "nsenter --net=/x/sb ip link del eth0");
    }

    #[test]
    fn a_found_bridge_is_brought_back_to_its_record() {
        let found = FoundBridge {
            addrs: vec!["172.18.0.1/16".parse().unwrap()],
            mtu: 9000,
        };
        assert_eq!(
            bridge_converge(&net(), Some(&found)).to_string(),
            "ip link set reef0 address 02:42:ac:11:00:01\n\
             ip addr del 172.18.0.1/16 dev reef0\n\
             ip addr add 172.17.0.1/16 dev reef0\n\
             ip link set reef0 up\n\
             ip link set reef0 mtu 1500\n"
        );
        assert_eq!(bridge_converge(&net(), None), bridge_setup(&net(), false));
    }

    #[test]
    fn run_undoes_the_applied_steps_newest_first() {
        let mut plan = sandbox_create("/x/sb".into());
        plan.extend(attach(&net(), &ep(), "/x/sb".into()));
        let mut seen = Vec::new();
        let failed = plan
            .run(|i, op| {
                seen.push((i, op.clone()));
                if i == Some(3) {
                    Err("master")
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert_eq!((failed.step, failed.cause), (3, "master"));
        assert!(failed.undo_errors.is_empty());
        let undos: Vec<Op> = seen
            .into_iter()
            .filter(|(i, _)| i.is_none())
            .map(|(_, op)| op)
            .collect();
        assert_eq!(undos, plan.rollback(3));
        assert!(plan.run(|_, _| Ok::<(), ()>(())).is_ok());
    }

    #[test]
    fn bridge_setup_skips_creation_when_present() {
        let fresh = bridge_setup(&net(), false).to_string();
        assert!(fresh.starts_with("ip link add reef0 type bridge mtu 1500\n"));
        let again = bridge_setup(&net(), true).to_string();
        assert_eq!(
            again,
            "ip addr add 172.17.0.1/16 dev reef0\nip link set reef0 up\n"
        );
    }
}
