//! What must hold between the state reef reports and the kernel, the disk and the process
//! table of a test host: the invariants of issue 6's crash-safety torture, checked after
//! every `kill -9` and restart of reefd (and usable by any test).
//!
//! Each check returns the violations it found as readable sentences (empty: it holds).
//! What may change while the violation persists (a container's status) follows ` — `, so
//! the text before it identifies the violation.
//! The checks read reef's view through the real CLI (`reef ps`, `reef inspect`,
//! `reef network inspect`) and the kernel's through `ip -j`, `nft -j`, `/proc` and the
//! mount table, always inside the test's own namespaces.
//!
//! 1. [`running_containers_are_wired`]: every container reef says is running has its
//!    sandbox (a mounted netns, holding its process), a host veth per endpoint on the right
//!    bridge, its address and default route inside, its published ports (DNAT) and, when
//!    reef writes the `bridge reef` table, its anti-spoofing elements in the firewall, and
//!    answers ping from the host; every network has its bridge, address and firewall
//!    element.
//! 2. [`nothing_unaccounted`]: no veth, bridge, sandbox (entry or mount), interface inside
//!    a running sandbox, nftables element (DNAT maps, `bridges`, anti-spoofing sets),
//!    state directory or process exists that the state does not account for.
//! 3. [`no_double_allocation`]: no IPv4 address is held twice on a network (in the state
//!    or inside the sandboxes) and no host port is published twice.
//! 4. [`published_ports_answer`]: a sample of published ports answer at `127.0.0.1:PORT`.
//! 5. [`dns_answers`]: a sample of containers on user networks resolve (names and
//!    aliases) from another container of the network through the gateway's DNS server,
//!    and containers that stopped or are gone do not.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;

use serde_json::Value;

use crate::Host;

/// A small seeded random number generator (SplitMix64): reproducible from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A random element.
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            Some(&v[self.below(v.len())])
        }
    }
}

/// One endpoint of a container as `reef inspect` reports it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Network name.
    pub network: String,
    /// Network id.
    pub network_id: String,
    /// Endpoint id (the host veth is `veth` + its first 10 hex digits, alias `reef:<id>`).
    pub id: String,
    /// Address.
    pub ip: String,
    /// Prefix length.
    pub prefix: u64,
    /// Gateway of the default route when this endpoint is known to carry it (the endpoint
    /// `inspect`'s top level describes); empty otherwise.
    pub gateway: String,
    /// Network-scoped aliases.
    pub aliases: Vec<String>,
    /// MAC address of the container interface.
    pub mac: String,
}

impl Endpoint {
    /// The host-side veth name.
    pub fn veth(&self) -> String {
        format!("veth{}", &self.id[..10.min(self.id.len())])
    }
}

/// A published port in effect.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Binding {
    /// `tcp`, `udp`, `sctp`.
    pub proto: String,
    /// Container port.
    pub ctr_port: u16,
    /// Host address (`0.0.0.0` for all).
    pub host_ip: String,
    /// Host port.
    pub host_port: u16,
}

/// A container as reef reports it.
#[derive(Debug, Clone)]
pub struct Container {
    /// Full id.
    pub id: String,
    /// Name, without the leading `/`.
    pub name: String,
    /// `State.Running`.
    pub running: bool,
    /// `State.Status`.
    pub status: String,
    /// `State.Pid` (0 when not running).
    pub pid: i64,
    /// `NetworkSettings.SandboxKey` (empty when none).
    pub sandbox: String,
    /// `HostConfig.NetworkMode`.
    pub mode: String,
    /// Its endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Published ports in effect.
    pub ports: Vec<Binding>,
}

/// A network as reef reports it.
#[derive(Debug, Clone)]
pub struct Network {
    /// Full id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Driver (`bridge`, `host`, `null`).
    pub driver: String,
    /// Bridge interface of a bridge network.
    pub bridge: Option<String>,
    /// Subnet (CIDR).
    pub subnet: String,
    /// Gateway address.
    pub gateway: String,
}

/// reef's view of the host.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Every container (`ps -a`).
    pub containers: Vec<Container>,
    /// Every network.
    pub networks: Vec<Network>,
}

impl State {
    /// Running containers.
    pub fn running(&self) -> impl Iterator<Item = &Container> {
        self.containers.iter().filter(|c| c.running)
    }

    /// A network by name.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// A container by name.
    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn parse_json(what: &str, text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{what}: unparsable JSON ({e}): {text}"))
}

/// The output of a reef command that must succeed within `limit`.
fn reef_out(h: &Host, args: &[&str], limit: std::time::Duration) -> Result<String, String> {
    let r = h.reef_timeout(args, limit);
    if r.code != 0 {
        return Err(format!(
            "reef {} failed ({}): {}",
            args.join(" "),
            r.code,
            r.stderr.trim()
        ));
    }
    Ok(r.stdout)
}

/// Read reef's view through the CLI.
pub fn state(h: &Host) -> Result<State, String> {
    let limit = std::time::Duration::from_secs(20);
    let ps = reef_out(h, &["ps", "-a", "-q"], limit)?;
    let ids: Vec<&str> = ps.split_whitespace().collect();
    let mut containers = Vec::new();
    if !ids.is_empty() {
        let mut args = vec!["inspect"];
        args.extend(&ids);
        let v = parse_json("reef inspect", &reef_out(h, &args, limit)?)?;
        for c in v.as_array().into_iter().flatten() {
            containers.push(container_from(c));
        }
    }
    let ls = reef_out(h, &["network", "ls", "-q"], limit)?;
    let mut args = vec!["network", "inspect"];
    args.extend(ls.split_whitespace());
    let inspected = reef_out(h, &args, limit)?;
    let v = parse_json("reef network inspect", &inspected)?;
    let mut networks = Vec::new();
    for n in v.as_array().into_iter().flatten() {
        let id = s(&n["Id"]);
        let name = s(&n["Name"]);
        let driver = s(&n["Driver"]);
        let cfg = &n["IPAM"]["Config"][0];
        let bridge = (driver == "bridge").then(|| {
            let named = s(&n["Options"]["com.docker.network.bridge.name"]);
            if named.is_empty() {
                format!("br-{}", &id[..12.min(id.len())])
            } else {
                named
            }
        });
        networks.push(Network {
            id,
            name,
            driver,
            bridge,
            subnet: s(&cfg["Subnet"]),
            gateway: s(&cfg["Gateway"]),
        });
    }
    Ok(State {
        containers,
        networks,
    })
}

fn container_from(c: &Value) -> Container {
    let ns = &c["NetworkSettings"];
    // Each network's entry names that network's gateway, as Docker's does, whether or not
    // the default route goes through it; the top level names the default route's gateway
    // of the endpoint it describes (its IPAddress). Only that endpoint is known to carry it.
    let route_gw = s(&ns["Gateway"]);
    let route_ip = s(&ns["IPAddress"]);
    let mut endpoints = Vec::new();
    if let Some(m) = ns["Networks"].as_object() {
        for (name, e) in m {
            let id = s(&e["EndpointID"]);
            if id.is_empty() {
                continue; // host / none: listed without an endpoint
            }
            endpoints.push(Endpoint {
                network: name.clone(),
                network_id: s(&e["NetworkID"]),
                id,
                ip: s(&e["IPAddress"]),
                prefix: e["IPPrefixLen"].as_u64().unwrap_or(0),
                gateway: if s(&e["IPAddress"]) == route_ip {
                    route_gw.clone()
                } else {
                    String::new()
                },
                mac: s(&e["MacAddress"]),
                aliases: e["Aliases"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(s)
                    .collect(),
            });
        }
    }
    let mut ports = Vec::new();
    if let Some(m) = ns["Ports"].as_object() {
        for (key, list) in m {
            let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
            for b in list.as_array().into_iter().flatten() {
                ports.push(Binding {
                    proto: proto.to_string(),
                    ctr_port: port.parse().unwrap_or(0),
                    host_ip: s(&b["HostIp"]),
                    host_port: s(&b["HostPort"]).parse().unwrap_or(0),
                });
            }
        }
    }
    Container {
        id: s(&c["Id"]),
        name: s(&c["Name"]).trim_start_matches('/').to_string(),
        running: c["State"]["Running"].as_bool().unwrap_or(false),
        status: s(&c["State"]["Status"]),
        pid: c["State"]["Pid"].as_i64().unwrap_or(0),
        sandbox: s(&ns["SandboxKey"]),
        mode: s(&c["HostConfig"]["NetworkMode"]),
        endpoints,
        ports,
    }
}

/// A host link.
#[derive(Debug, Clone)]
pub struct Link {
    /// Name.
    pub name: String,
    /// `linkinfo.info_kind` (`veth`, `bridge`, ...), empty for plain devices.
    pub kind: String,
    /// Bridge it is enslaved to.
    pub master: String,
    /// Interface alias.
    pub alias: String,
    /// Administratively up.
    pub up: bool,
}

/// What one sandbox holds.
#[derive(Debug, Clone, Default)]
pub struct SandboxView {
    /// `(ifname, "ip/prefix", up)` for each IPv4 address.
    pub addrs: Vec<(String, String, bool)>,
    /// Every interface but `lo`.
    pub links: Vec<String>,
    /// Gateways of default routes.
    pub default_via: Vec<String>,
    /// Why it could not be read, if it could not.
    pub error: Option<String>,
}

/// Key of a `dnat_ip` element: host address, protocol, port.
pub type DnatIpKey = (String, String, u16);

/// nftables elements of reef's table.
#[derive(Debug, Clone, Default)]
pub struct NftView {
    /// `dnat_any`: `(proto, port) -> (ip, port)`.
    pub dnat_any: Vec<((String, u16), (String, u16))>,
    /// `dnat_ip`: `(host ip, proto, port) -> (ip, port)`.
    pub dnat_ip: Vec<(DnatIpKey, (String, u16))>,
    /// `bridges` set.
    pub bridges: Vec<String>,
    /// Anti-spoofing sets of the `bridge reef` table, when reef writes one.
    pub spoof: Option<SpoofView>,
    /// Why the table could not be read, if it could not.
    pub error: Option<String>,
}

/// reef's anti-spoofing sets (table `bridge reef`), keyed by host veth.
#[derive(Debug, Clone, Default)]
pub struct SpoofView {
    /// `ports`: the bridge ports checked.
    pub ports: Vec<String>,
    /// `port_mac`: `(port, mac)` each port may send from.
    pub port_mac: Vec<(String, String)>,
    /// `port_ip`: `(port, ipv4)` each port may send from.
    pub port_ip: Vec<(String, String)>,
}

/// The kernel's, the disk's and the process table's view of the host.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Host links.
    pub links: Vec<Link>,
    /// Host IPv4 addresses: ifname -> `ip/prefix`.
    pub host_addrs: BTreeMap<String, Vec<String>>,
    /// Entries of `exec-root/netns`.
    pub netns_entries: Vec<String>,
    /// Sandboxes read (every netns entry and every running container's SandboxKey).
    pub sandboxes: BTreeMap<String, SandboxView>,
    /// nsfs mount points under the exec-root, with how many times each is mounted.
    pub ns_mounts: BTreeMap<String, usize>,
    /// reef's nftables table.
    pub nft: NftView,
}

/// Read the kernel's view (host links, addresses, sandboxes, nftables, mounts).
pub fn observe(h: &Host, st: &State) -> Result<Observed, String> {
    let mut o = Observed::default();
    let r = h.sh("ip -j -d link show");
    if r.code != 0 {
        return Err(format!("ip link failed: {}", r.stderr));
    }
    let v = parse_json("ip -j -d link", &r.stdout)?;
    for l in v.as_array().into_iter().flatten() {
        o.links.push(Link {
            name: s(&l["ifname"]),
            kind: s(&l["linkinfo"]["info_kind"]),
            master: s(&l["master"]),
            alias: s(&l["ifalias"]),
            up: l["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP")),
        });
    }
    let r = h.sh("ip -j -4 addr show");
    let v = parse_json("ip -j -4 addr", &r.stdout)?;
    for l in v.as_array().into_iter().flatten() {
        for a in l["addr_info"].as_array().into_iter().flatten() {
            o.host_addrs
                .entry(s(&l["ifname"]))
                .or_default()
                .push(format!("{}/{}", s(&a["local"]), a["prefixlen"]));
        }
    }
    let netns_dir = h.dir.join("exec/netns");
    if let Ok(d) = fs::read_dir(&netns_dir) {
        for e in d.flatten() {
            o.netns_entries.push(e.path().display().to_string());
        }
    }
    o.netns_entries.sort();
    let exec_marker = format!("{}/", h.dir.join("exec").display());
    for line in fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
    {
        let f: Vec<&str> = line.split(' ').collect();
        let fstype = line
            .split(" - ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or("");
        if f.len() > 4 && fstype == "nsfs" && f[4].starts_with(&exec_marker) {
            *o.ns_mounts.entry(f[4].to_string()).or_default() += 1;
        }
    }
    let mut sandboxes: BTreeSet<String> = o.netns_entries.iter().cloned().collect();
    sandboxes.extend(
        st.running()
            .filter(|c| !c.sandbox.is_empty())
            .map(|c| c.sandbox.clone()),
    );
    for sb in sandboxes {
        o.sandboxes.insert(sb.clone(), read_sandbox(h, &sb));
    }
    o.nft = read_nft(h);
    Ok(o)
}

fn read_sandbox(h: &Host, sb: &str) -> SandboxView {
    let mut view = SandboxView::default();
    let r = h.sh(&format!(
        "nsenter --net='{sb}' ip -j addr show && echo @@ && nsenter --net='{sb}' ip -j -4 route show"
    ));
    if r.code != 0 {
        view.error = Some(format!("cannot enter: {}", r.stderr.trim()));
        return view;
    }
    let mut parts = r.stdout.split("@@");
    let addrs = parts.next().unwrap_or("[]").trim();
    let routes = parts.next().unwrap_or("[]").trim();
    match serde_json::from_str::<Value>(if addrs.is_empty() { "[]" } else { addrs }) {
        Ok(v) => {
            for l in v.as_array().into_iter().flatten() {
                let up = l["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "UP"));
                if l["ifname"] != "lo" {
                    view.links.push(s(&l["ifname"]));
                }
                for a in l["addr_info"].as_array().into_iter().flatten() {
                    if a["family"] != "inet" {
                        continue;
                    }
                    view.addrs.push((
                        s(&l["ifname"]),
                        format!("{}/{}", s(&a["local"]), a["prefixlen"]),
                        up,
                    ));
                }
            }
        }
        Err(e) => view.error = Some(format!("ip addr: {e}")),
    }
    if let Ok(v) = serde_json::from_str::<Value>(if routes.is_empty() { "[]" } else { routes }) {
        for r in v.as_array().into_iter().flatten() {
            if r["dst"] == "default" {
                view.default_via.push(s(&r["gateway"]));
            }
        }
    }
    view
}

fn concat(v: &Value) -> Vec<String> {
    v["concat"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| match x {
            Value::String(t) => t.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn read_nft(h: &Host) -> NftView {
    let mut view = NftView::default();
    let r = h.sh("nft -j list table ip reef");
    if r.code != 0 {
        view.error = Some(format!("nft list table ip reef: {}", r.stderr.trim()));
        return view;
    }
    let v = match serde_json::from_str::<Value>(&r.stdout) {
        Ok(v) => v,
        Err(e) => {
            view.error = Some(format!("nft json: {e}"));
            return view;
        }
    };
    for item in v["nftables"].as_array().into_iter().flatten() {
        if let Some(m) = item.get("map") {
            for el in m["elem"].as_array().into_iter().flatten() {
                let (k, val) = (concat(&el[0]), concat(&el[1]));
                let port = |x: Option<&String>| x.and_then(|p| p.parse().ok()).unwrap_or(0);
                let target = (val.first().cloned().unwrap_or_default(), port(val.get(1)));
                match s(&m["name"]).as_str() {
                    "dnat_any" => view.dnat_any.push((
                        (k.first().cloned().unwrap_or_default(), port(k.get(1))),
                        target,
                    )),
                    "dnat_ip" => view.dnat_ip.push((
                        (
                            k.first().cloned().unwrap_or_default(),
                            k.get(1).cloned().unwrap_or_default(),
                            port(k.get(2)),
                        ),
                        target,
                    )),
                    _ => {}
                }
            }
        }
        if let Some(set) = item.get("set") {
            if set["name"] == "bridges" {
                view.bridges = set["elem"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(s)
                    .collect();
            }
        }
    }
    // The anti-spoofing table exists only in reef versions that write it.
    let r = h.sh("nft -j list table bridge reef");
    if r.code == 0 {
        let mut spoof = SpoofView::default();
        let v: Value = serde_json::from_str(&r.stdout).unwrap_or_default();
        for item in v["nftables"].as_array().into_iter().flatten() {
            let Some(set) = item.get("set") else { continue };
            let elems = set["elem"].as_array().into_iter().flatten();
            let pair = |e: &Value| {
                let c = concat(e);
                (
                    c.first().cloned().unwrap_or_default(),
                    c.get(1).cloned().unwrap_or_default(),
                )
            };
            match s(&set["name"]).as_str() {
                "ports" => spoof.ports = elems.map(s).collect(),
                "port_mac" => spoof.port_mac = elems.map(pair).collect(),
                "port_ip" => spoof.port_ip = elems.map(pair).collect(),
                _ => {}
            }
        }
        view.spoof = Some(spoof);
    }
    view
}

/// Does the firewall hold this container's binding, pointing at one of its addresses?
fn nft_has(o: &Observed, c: &Container, b: &Binding) -> bool {
    let ips: BTreeSet<&str> = c.endpoints.iter().map(|e| e.ip.as_str()).collect();
    let target_ok = |t: &(String, u16)| ips.contains(t.0.as_str()) && t.1 == b.ctr_port;
    if b.host_ip == "0.0.0.0" || b.host_ip.is_empty() {
        o.nft
            .dnat_any
            .iter()
            .any(|(k, t)| k.0 == b.proto && k.1 == b.host_port && target_ok(t))
    } else {
        o.nft
            .dnat_ip
            .iter()
            .any(|(k, t)| k.0 == b.host_ip && k.1 == b.proto && k.2 == b.host_port && target_ok(t))
    }
}

fn ns_inode(path: &str) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.ino())
}

/// Invariant 1: every running container is wired as reef says, and answers ping; every
/// bridge network has its bridge.
pub fn running_containers_are_wired(h: &Host, st: &State, o: &Observed) -> Vec<String> {
    let mut v = Vec::new();
    for n in &st.networks {
        let Some(br) = &n.bridge else { continue };
        match o.links.iter().find(|l| &l.name == br) {
            None => v.push(format!(
                "network {} ({}) is in the state but its bridge {br} does not exist",
                n.name,
                &n.id[..12.min(n.id.len())]
            )),
            Some(l) => {
                if l.kind != "bridge" {
                    v.push(format!(
                        "network {}: {br} is a {:?} link, not a bridge",
                        n.name, l.kind
                    ));
                }
                if !l.up {
                    v.push(format!("network {}: bridge {br} is down", n.name));
                }
                let prefix = n.subnet.split('/').nth(1).unwrap_or("");
                let want = format!("{}/{prefix}", n.gateway);
                if !o.host_addrs.get(br).is_some_and(|a| a.contains(&want)) {
                    v.push(format!(
                        "network {}: bridge {br} does not carry the gateway address {want} (has {:?})",
                        n.name,
                        o.host_addrs.get(br)
                    ));
                }
            }
        }
        if o.nft.error.is_none() && !o.nft.bridges.contains(br) {
            v.push(format!(
                "network {}: bridge {br} is missing from the nftables set `bridges`",
                n.name
            ));
        }
    }
    if let Some(e) = &o.nft.error {
        v.push(format!("reef's nftables table cannot be read: {e}"));
    }
    let mut ping = Vec::new();
    for c in st.running() {
        let who = format!(
            "running container {} ({})",
            c.name,
            &c.id[..12.min(c.id.len())]
        );
        if c.mode == "host" || c.mode.starts_with("container:") {
            continue;
        }
        if c.sandbox.is_empty() {
            v.push(format!("{who} has no SandboxKey"));
            continue;
        }
        let mounts = o.ns_mounts.get(&c.sandbox).copied().unwrap_or(0);
        if mounts == 0 {
            v.push(format!(
                "{who}: its sandbox {} is not a mounted netns",
                c.sandbox
            ));
            continue;
        }
        let sb_ino = ns_inode(&c.sandbox);
        let proc_ino = ns_inode(&format!("/proc/{}/ns/net", c.pid));
        if c.pid <= 0 || proc_ino.is_none() {
            v.push(format!("{who}: its process {} does not exist", c.pid));
        } else if proc_ino != sb_ino {
            v.push(format!(
                "{who}: its process {} is not in its sandbox's network namespace",
                c.pid
            ));
        }
        let view = o.sandboxes.get(&c.sandbox).cloned().unwrap_or_default();
        if let Some(e) = &view.error {
            v.push(format!("{who}: sandbox {} cannot be read: {e}", c.sandbox));
            continue;
        }
        for ep in &c.endpoints {
            let Some(net) = st.networks.iter().find(|n| n.id == ep.network_id) else {
                v.push(format!("{who}: endpoint on unknown network {}", ep.network));
                continue;
            };
            let br = net.bridge.clone().unwrap_or_default();
            let veth = ep.veth();
            match o.links.iter().find(|l| l.name == veth) {
                None => v.push(format!(
                    "{who}: host veth {veth} of its endpoint on {} is missing",
                    ep.network
                )),
                Some(l) => {
                    if l.kind != "veth" {
                        v.push(format!("{who}: {veth} is a {:?} link, not a veth", l.kind));
                    }
                    if l.master != br {
                        v.push(format!(
                            "{who}: veth {veth} is on bridge {:?}, not {br} ({})",
                            l.master, ep.network
                        ));
                    }
                    if l.alias != format!("reef:{}", ep.id) {
                        v.push(format!("{who}: veth {veth} has alias {:?}", l.alias));
                    }
                    if !l.up {
                        v.push(format!("{who}: veth {veth} is down"));
                    }
                }
            }
            let want = format!("{}/{}", ep.ip, ep.prefix);
            match view.addrs.iter().find(|(_, a, _)| *a == want) {
                None => v.push(format!(
                    "{who}: no interface in its sandbox holds {want} ({}); it has {:?}",
                    ep.network, view.addrs
                )),
                Some((ifname, _, up)) => {
                    if !up {
                        v.push(format!("{who}: {ifname} ({want}) is down in its sandbox"));
                    }
                }
            }
            if !ep.gateway.is_empty() && !view.default_via.contains(&ep.gateway) {
                v.push(format!(
                    "{who}: no default route via {} in its sandbox (routes via {:?})",
                    ep.gateway, view.default_via
                ));
            }
            ping.push((who.clone(), ep.ip.clone()));
        }
        if let Some(sp) = &o.nft.spoof {
            for ep in &c.endpoints {
                let port = ep.veth();
                let mac = ep.mac.to_lowercase();
                let ok = sp.ports.contains(&port)
                    && sp
                        .port_mac
                        .iter()
                        .any(|(p, m)| *p == port && m.to_lowercase() == mac)
                    && sp.port_ip.iter().any(|(p, ip)| *p == port && *ip == ep.ip);
                if !ok {
                    v.push(format!(
                        "{who}: anti-spoofing elements for {port} ({mac}, {}) are missing from bridge reef",
                        ep.ip
                    ));
                }
            }
        }
        if o.nft.error.is_none() {
            for b in &c.ports {
                if !nft_has(o, c, b) {
                    v.push(format!(
                        "{who}: published port {}:{}->{}/{} has no DNAT element in ip reef",
                        b.host_ip, b.host_port, b.ctr_port, b.proto
                    ));
                }
            }
        }
    }
    if !ping.is_empty() {
        let ips: Vec<&str> = ping.iter().map(|(_, ip)| ip.as_str()).collect();
        let r = h.sh(&format!(
            "for ip in {}; do ping -q -c 1 -W 1 $ip >/dev/null 2>&1 || echo $ip; done",
            ips.join(" ")
        ));
        for failed in r.stdout.split_whitespace() {
            for (who, ip) in &ping {
                if ip == failed {
                    v.push(format!("{who}: {ip} does not answer ping from the host"));
                }
            }
        }
    }
    v
}

/// Pids of this host's processes with their parent: `pid -> ppid`.
fn ppids(pids: &[i32]) -> BTreeMap<i32, i32> {
    let mut m = BTreeMap::new();
    for &p in pids {
        let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            if let Some(pp) = rest.split_whitespace().nth(1).and_then(|x| x.parse().ok()) {
                m.insert(p, pp);
            }
        }
    }
    m
}

/// Where a process's `/etc/hosts` is bind-mounted from, if it is.
fn hosts_mount_source(p: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{p}/mountinfo"))
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 4 && f[4] == "/etc/hosts").then(|| f[3].to_string())
        })
}

/// The parent of process `p`, if it exists.
pub fn ppid_of(p: i32) -> Option<i32> {
    ppids(&[p]).get(&p).copied()
}

/// Process `p`'s command line, arguments joined by spaces (empty when it is gone).
pub fn cmdline(p: i32) -> String {
    fs::read(format!("/proc/{p}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Invariant 2: nothing exists that the state does not account for: veths, bridges,
/// sandboxes (entries and mounts), nftables DNAT elements and bridges, state directories,
/// processes.
pub fn nothing_unaccounted(h: &Host, st: &State, o: &Observed) -> Vec<String> {
    let mut v = Vec::new();
    let endpoints: BTreeMap<String, (&Container, &Endpoint)> = st
        .running()
        .flat_map(|c| c.endpoints.iter().map(move |e| (e.veth(), (c, e))))
        .collect();
    let bridges: BTreeSet<String> = st
        .networks
        .iter()
        .filter_map(|n| n.bridge.clone())
        .collect();
    for l in &o.links {
        if l.kind == "veth" || l.name.starts_with("veth") {
            match endpoints.get(&l.name) {
                Some((_, e)) if l.alias == format!("reef:{}", e.id) => {}
                Some((c, _)) => v.push(format!(
                    "host link {} (alias {:?}) has the name of an endpoint of {} but not its alias",
                    l.name, l.alias, c.name
                )),
                None => v.push(format!(
                    "host link {} (alias {:?}, master {:?}) belongs to no running container's endpoint",
                    l.name, l.alias, l.master
                )),
            }
        } else if l.kind == "bridge" && !bridges.contains(&l.name) {
            v.push(format!(
                "bridge {} belongs to no network in the state",
                l.name
            ));
        }
    }
    let sandboxes: BTreeSet<&str> = st
        .running()
        .filter(|c| !c.sandbox.is_empty())
        .map(|c| c.sandbox.as_str())
        .collect();
    for e in &o.netns_entries {
        if !sandboxes.contains(e.as_str()) {
            let who = st
                .containers
                .iter()
                .find(|c| e.ends_with(&c.id))
                .map(|c| format!(" (container {}, {})", c.name, c.status))
                .unwrap_or_default();
            let view = o.sandboxes.get(e).cloned().unwrap_or_default();
            v.push(format!(
                "exec-root/netns entry {e}{who} is not a running container's sandbox (mounted {} times; holds {:?})",
                o.ns_mounts.get(e).copied().unwrap_or(0),
                view.addrs
            ));
        }
    }
    for c in st.running().filter(|c| !c.sandbox.is_empty()) {
        let Some(view) = o.sandboxes.get(&c.sandbox) else {
            continue;
        };
        if view.error.is_none() && view.links.len() > c.endpoints.len() {
            let held: BTreeSet<&str> = view
                .addrs
                .iter()
                .filter(|(_, a, _)| {
                    c.endpoints
                        .iter()
                        .any(|e| a == &format!("{}/{}", e.ip, e.prefix))
                })
                .map(|(i, _, _)| i.as_str())
                .collect();
            let extra: Vec<&String> = view
                .links
                .iter()
                .filter(|l| !held.contains(l.as_str()))
                .collect();
            v.push(format!(
                "sandbox of running container {} has {} interfaces for {} endpoints; not accounted for: {extra:?}",
                c.name,
                view.links.len(),
                c.endpoints.len()
            ));
        }
    }
    for (m, n) in &o.ns_mounts {
        if !o.netns_entries.contains(m) {
            v.push(format!("netns mount {m} has no entry in exec-root/netns"));
        } else if *n > 1 {
            v.push(format!("netns {m} is mounted {n} times"));
        }
    }
    let running: Vec<&Container> = st.running().collect();
    let accounted = |key_ok: &dyn Fn(&Binding) -> bool, target: &(String, u16)| {
        running.iter().any(|c| {
            c.ports.iter().any(|b| {
                key_ok(b) && b.ctr_port == target.1 && c.endpoints.iter().any(|e| e.ip == target.0)
            })
        })
    };
    for (k, t) in &o.nft.dnat_any {
        let ok = |b: &Binding| {
            (b.host_ip == "0.0.0.0" || b.host_ip.is_empty()) && b.proto == k.0 && b.host_port == k.1
        };
        if !accounted(&ok, t) {
            v.push(format!(
                "nftables element dnat_any {{ {} . {} : {} . {} }} belongs to no running container's published port",
                k.0, k.1, t.0, t.1
            ));
        }
    }
    for (k, t) in &o.nft.dnat_ip {
        let ok = |b: &Binding| b.host_ip == k.0 && b.proto == k.1 && b.host_port == k.2;
        if !accounted(&ok, t) {
            v.push(format!(
                "nftables element dnat_ip {{ {} . {} . {} : {} . {} }} belongs to no running container's published port",
                k.0, k.1, k.2, t.0, t.1
            ));
        }
    }
    if let Some(sp) = &o.nft.spoof {
        let mut stale: BTreeSet<&str> = BTreeSet::new();
        stale.extend(sp.ports.iter().map(String::as_str));
        stale.extend(sp.port_mac.iter().map(|(p, _)| p.as_str()));
        stale.extend(sp.port_ip.iter().map(|(p, _)| p.as_str()));
        for p in stale {
            if !endpoints.contains_key(p) {
                v.push(format!(
                    "anti-spoofing elements for port {p} in bridge reef belong to no running container's endpoint"
                ));
            }
        }
    }
    for b in &o.nft.bridges {
        if !bridges.contains(b) {
            v.push(format!(
                "nftables set `bridges` holds {b}, which no network accounts for"
            ));
        }
    }
    let running_ids: BTreeSet<&str> = running.iter().map(|c| c.id.as_str()).collect();
    let known_ids: BTreeSet<&str> = st.containers.iter().map(|c| c.id.as_str()).collect();
    for (dir, keep, what) in [
        ("exec/containers", &running_ids, "running"),
        ("data/containers", &known_ids, "known"),
    ] {
        if let Ok(d) = fs::read_dir(h.dir.join(dir)) {
            for e in d.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep.contains(name.as_str()) {
                    v.push(format!(
                        "{dir}/{name} exists but no {what} container has that id"
                    ));
                }
            }
        }
    }
    // Processes: reefd, its shim launcher (a child of reefd running the shim binary with
    // `--launcher`), each running container's process and its descendants, and its shim
    // (the process's parent), and the spare shim (a child of the launcher, or of reefd
    // without one, running the shim, idle until a start hands it a spec: it has no child
    // of its own). Anything else in the test's namespaces is left over.
    let pids = h.owned_pids();
    let parents = ppids(&pids);
    let daemon = h.daemon_pid().map(|p| p as i32);
    let mut allowed: BTreeSet<i32> = daemon.into_iter().collect();
    let launcher = pids.iter().copied().find(|&p| {
        daemon.is_some_and(|d| parents.get(&p) == Some(&d)) && cmdline(p).contains("--launcher")
    });
    allowed.extend(launcher);
    for &p in &pids {
        let parent = parents.get(&p).copied();
        let spare = parent.is_some()
            && (parent == daemon || parent == launcher)
            && Some(p) != launcher
            && cmdline(p).contains("__reef-shim")
            && !parents.values().any(|pp| *pp == p);
        if spare {
            allowed.insert(p);
        }
    }
    let ctr_pids: BTreeSet<i32> = running.iter().map(|c| c.pid as i32).collect();
    for &p in &ctr_pids {
        allowed.insert(p);
        if let Some(shim) = ppid_of(p) {
            if cmdline(shim).contains("reef") {
                allowed.insert(shim);
            }
        }
    }
    for &p in &pids {
        let mut cur = p;
        for _ in 0..64 {
            if ctr_pids.contains(&cur) {
                allowed.insert(p);
                break;
            }
            match parents.get(&cur).copied().or_else(|| ppid_of(cur)) {
                Some(pp) if pp > 1 => cur = pp,
                _ => break,
            }
        }
    }
    for p in pids {
        if !allowed.contains(&p) {
            let cmd = cmdline(p);
            if cmd.is_empty() {
                continue; // exited meanwhile (or a zombie)
            }
            // A container process has its /etc/hosts bind-mounted from data/containers/<id>.
            let hosts_src = hosts_mount_source(p);
            let owner = st
                .containers
                .iter()
                .find(|c| {
                    cmd.contains(&c.id)
                        || c.pid == i64::from(p)
                        || hosts_src.as_deref().is_some_and(|s| s.contains(&c.id))
                })
                .map(|c| format!(" — of container {}, which is {}", c.name, c.status))
                .or_else(|| hosts_src.map(|s| format!(" — its /etc/hosts is {s}")))
                .unwrap_or_default();
            v.push(format!("leftover process {p} `{cmd}`{owner}"));
        }
    }
    v
}

/// Invariant 3: no IPv4 address held twice on a network, no host port published twice.
pub fn no_double_allocation(st: &State, o: &Observed) -> Vec<String> {
    let mut v = Vec::new();
    let mut by_net: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for c in st.running() {
        for e in &c.endpoints {
            by_net
                .entry((e.network.as_str(), e.ip.as_str()))
                .or_default()
                .push(c.name.as_str());
        }
    }
    for ((net, ip), who) in &by_net {
        if who.len() > 1 {
            v.push(format!("address {ip} on network {net} is held by {who:?}"));
        }
        if let Some(n) = st.network(net) {
            if n.gateway == *ip {
                v.push(format!(
                    "address {ip} of {who:?} is network {net}'s gateway"
                ));
            }
        }
    }
    // In the kernel: one address in two sandboxes.
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (sb, view) in &o.sandboxes {
        for (_, a, _) in &view.addrs {
            if !a.starts_with("127.") {
                seen.entry(a.as_str()).or_default().push(sb.as_str());
            }
        }
    }
    for (a, sbs) in seen {
        if sbs.len() > 1 {
            v.push(format!(
                "address {a} is configured in {} sandboxes: {sbs:?}",
                sbs.len()
            ));
        }
    }
    let mut ports: BTreeMap<(&str, u16), Vec<(&str, &str)>> = BTreeMap::new();
    for c in st.running() {
        for b in &c.ports {
            ports
                .entry((b.proto.as_str(), b.host_port))
                .or_default()
                .push((c.name.as_str(), b.host_ip.as_str()));
        }
    }
    for ((proto, port), who) in ports {
        for (i, a) in who.iter().enumerate() {
            for b in &who[i + 1..] {
                let wild = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
                if wild(a.1) || wild(b.1) || a.1 == b.1 {
                    v.push(format!(
                        "host port {port}/{proto} is published twice: by {} on {} and by {} on {}",
                        a.0, a.1, b.0, b.1
                    ));
                }
            }
        }
    }
    v
}

/// Invariant 4: published TCP ports answer at 127.0.0.1 from the host; the containers
/// listen on port 80 and answer `ok` (socat). At most `sample` ports are tried.
pub fn published_ports_answer(h: &Host, st: &State, rng: &mut Rng, sample: usize) -> Vec<String> {
    let mut all: Vec<(&Container, &Binding)> = st
        .running()
        .flat_map(|c| c.ports.iter().map(move |b| (c, b)))
        .filter(|(_, b)| b.proto == "tcp" && b.ctr_port == 80)
        .collect();
    let mut v = Vec::new();
    let mut tried = Vec::new();
    while tried.len() < sample && !all.is_empty() {
        tried.push(all.swap_remove(rng.below(all.len())));
    }
    if tried.is_empty() {
        return v;
    }
    let script: Vec<String> = tried
        .iter()
        .map(|(_, b)| {
            format!(
                "echo \"{p} $(timeout 4 socat -T 2 - TCP:127.0.0.1:{p},connect-timeout=2 2>&1 | tr '\\n' ' ')\"",
                p = b.host_port
            )
        })
        .collect();
    let r = h.sh(&script.join("\n"));
    for (c, b) in tried {
        let line = r
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&b.host_port.to_string()))
            .unwrap_or("");
        let answer = line.split_once(' ').map(|x| x.1.trim()).unwrap_or("");
        if answer != "ok" {
            v.push(format!(
                "published port 127.0.0.1:{} of {} (-> {}:{}) does not answer: {answer:?}",
                b.host_port,
                c.name,
                c.endpoints.first().map(|e| e.ip.as_str()).unwrap_or("?"),
                b.ctr_port
            ));
        }
    }
    v
}

/// Invariant 5: on `sample` user networks with running members, one member's name and
/// aliases resolve to its address through the gateway's DNS server, asked from another
/// member (itself when alone); names in `gone` (removed containers) and the names of
/// stopped containers do not resolve.
pub fn dns_answers(
    h: &Host,
    st: &State,
    gone: &[String],
    rng: &mut Rng,
    sample: usize,
) -> Vec<String> {
    let mut v = Vec::new();
    let mut nets: Vec<&Network> = st
        .networks
        .iter()
        .filter(|n| n.driver == "bridge" && n.name != "bridge")
        .filter(|n| {
            st.running()
                .any(|c| c.endpoints.iter().any(|e| e.network_id == n.id))
        })
        .collect();
    let mut not_running: Vec<String> = st
        .containers
        .iter()
        .filter(|c| !c.running)
        .map(|c| c.name.clone())
        .collect();
    not_running.extend(gone.iter().cloned());
    for _ in 0..sample {
        if nets.is_empty() {
            break;
        }
        let n = nets.swap_remove(rng.below(nets.len()));
        let members: Vec<(&Container, &Endpoint)> = st
            .running()
            .flat_map(|c| c.endpoints.iter().map(move |e| (c, e)))
            .filter(|(_, e)| e.network_id == n.id)
            .collect();
        let (target, tep) = members[rng.below(members.len())];
        let others: Vec<&(&Container, &Endpoint)> =
            members.iter().filter(|(c, _)| c.id != target.id).collect();
        let asker = others
            .get(rng.below(others.len().max(1)))
            .map(|(c, _)| *c)
            .unwrap_or(target);
        // The name answers the target's addresses on every network the asker is on.
        let asker_nets: BTreeSet<&str> = asker
            .endpoints
            .iter()
            .map(|e| e.network_id.as_str())
            .collect();
        let mut scoped: Vec<&str> = target
            .endpoints
            .iter()
            .filter(|e| e.network != "bridge" && asker_nets.contains(e.network_id.as_str()))
            .map(|e| e.ip.as_str())
            .collect();
        scoped.sort_unstable();
        let mut queries: Vec<(String, Option<String>)> =
            vec![(target.name.clone(), Some(tep.ip.clone()))];
        for a in &tep.aliases {
            queries.push((a.clone(), Some(tep.ip.clone())));
        }
        if let Some(g) = rng.pick(&not_running) {
            queries.push((g.clone(), None));
        }
        let script: Vec<String> = queries
            .iter()
            .map(|(q, _)| {
                format!(
                    "echo \"@@ {q} $(dig +short +time=1 +tries=2 @{gw} {q} 2>&1 | tr '\\n' ' ')\"",
                    gw = n.gateway
                )
            })
            .collect();
        let r = h.reef_timeout(
            &["exec", &asker.name, "sh", "-c", &script.join("\n")],
            std::time::Duration::from_secs(20),
        );
        if r.code != 0 {
            v.push(format!(
                "DNS on {}: reef exec {} failed ({}): {}",
                n.name,
                asker.name,
                r.code,
                r.stderr.trim()
            ));
            continue;
        }
        for (q, want) in &queries {
            let answer: Vec<&str> = r
                .stdout
                .lines()
                .find_map(|l| {
                    l.strip_prefix("@@ ")
                        .and_then(|l| l.strip_prefix(q.as_str()))
                        .filter(|rest| rest.is_empty() || rest.starts_with(' '))
                })
                .map(|rest| rest.split_whitespace().collect())
                .unwrap_or_default();
            let text = answer.join(" ");
            let mut sorted = answer.clone();
            sorted.sort_unstable();
            match want {
                Some(_) if q == &target.name && sorted != scoped => v.push(format!(
                    "DNS on {}: {} asked {} for {q} and got {text:?}, not {scoped:?}",
                    n.name, asker.name, n.gateway
                )),
                Some(ip) if !answer.contains(&ip.as_str()) => v.push(format!(
                    "DNS on {}: {} asked {} for alias {q} (of {}) and got {text:?}, without {ip}",
                    n.name, asker.name, n.gateway, target.name
                )),
                None if !answer.is_empty() => v.push(format!(
                    "DNS on {}: {} asked {} for {q}, which is not running, and got {text:?}",
                    n.name, asker.name, n.gateway
                )),
                _ => {}
            }
        }
    }
    v
}

/// How many of the sampled checks to run.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    /// Published ports tried.
    pub ports: usize,
    /// User networks whose DNS is asked.
    pub dns_networks: usize,
}

/// Every invariant; each violation prefixed with its number.
pub fn check_all(h: &Host, gone: &[String], rng: &mut Rng, sampling: Sampling) -> Vec<String> {
    let timing = std::env::var_os("REEF_INVARIANTS_TIMING").is_some();
    let mut t = std::time::Instant::now();
    let mut lap = |what: &str| {
        if timing {
            eprintln!(
                "invariants: {what} {:.1} ms",
                t.elapsed().as_secs_f64() * 1000.0
            );
        }
        t = std::time::Instant::now();
    };
    let st = match state(h) {
        Ok(s) => s,
        Err(e) => return vec![format!("[state] reef's state cannot be read: {e}")],
    };
    lap("state");
    let o = match observe(h, &st) {
        Ok(o) => o,
        Err(e) => return vec![format!("[kernel] the host cannot be observed: {e}")],
    };
    lap("observe");
    let mut v = Vec::new();
    let tag = |n: u8, list: Vec<String>| list.into_iter().map(move |x| format!("[{n}] {x}"));
    v.extend(tag(1, running_containers_are_wired(h, &st, &o)));
    lap("1 wired");
    v.extend(tag(2, nothing_unaccounted(h, &st, &o)));
    lap("2 unaccounted");
    v.extend(tag(3, no_double_allocation(&st, &o)));
    v.extend(tag(4, published_ports_answer(h, &st, rng, sampling.ports)));
    lap("4 ports");
    v.extend(tag(
        5,
        dns_answers(h, &st, gone, rng, sampling.dns_networks),
    ));
    lap("5 dns");
    v
}
