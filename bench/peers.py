#!/usr/bin/env python3
"""Attach/detach latency of a container's network: reef against netavark 2.1, netavark 1.4 and
the CNI reference plugins, in one run (issue 5, item 1).

    python3 bench/peers.py [--n 1,100,1000] [--tools reef,netavark2,netavark14,cni]
                           [--reps R] [--n-limit netavark14=100,cni=100]
                           [--bin-dir target/release] [--out FILE.json]

Needs root, `ip`, `nsenter`, `nft`, `dig`. Installs what the peers need when missing:
Debian `netavark` + `aardvark-dns` (1.4, /usr/lib/podman), `containernetworking-plugins`
(/usr/lib/cni), `iptables`; netavark 2.1 + aardvark-dns 2.1 in /opt/peers/bin with
/work/shared/peers/install-modern-netavark.sh (cargo install, ~10 min). Standard library only.

The operation, per tool: a container's network from nothing to ready (a network namespace on a
bridge network with ONE published TCP port, container port 80 on host port 20000+i; DNS
registration included where the tool has DNS) and back, for N containers attached one after
another, then detached in the same order.

  reef-cli    reefd in a private namespace (benchlib.Sandbox, fresh for every batch) with a
              user network `benchnet` 10.110.0.0/16 (so its embedded DNS registers each
              container): `reef run -d --name cI --network benchnet -p PORT:80 sleep 100000`
              / `reef rm -f cI`. Includes the CLI's process start, reef's creation of the
              namespace itself, and starting the container's process (the peers do none of
              these: their namespaces are made beforehand and they run no process).
  reef-api    the same daemon work through the HTTP API on the unix socket, no CLI: POST
              /containers/create?name=aI (the body `reef run` sends) + POST /containers/ID/start;
              DELETE /containers/ID?force=1. One keep-alive connection.
  reef-connect  the network alone, the closest match to what the peers do: each container
              is started beforehand (untimed) on a second network `prepnet`, then timed: POST
              /networks/benchnet/connect (a veth into its existing namespace, address, DNS
              registration) / POST /networks/benchnet/disconnect. No published port: Docker
              publishes ports only when a container starts, so this row's TCP check is skipped.
  netavark2   netavark 2.1 + aardvark-dns 2.1, nftables driver (/opt/peers/bin), driven as
              /work/shared/peers/README.md says: `DBUS_SYSTEM_BUS_ADDRESS= NETAVARK_FW=nftables
              netavark --config CFG --rootless=false --aardvark-binary AV setup|teardown
              /run/netns/C < opts.json`, NetworkOptions with a static IP in 10.111.0.0/16,
              one port mapping, an alias, dns_enabled (netavark starts aardvark-dns on the
              first setup and stops it on the last teardown).
  netavark14  Debian's netavark 1.4 + aardvark-dns 1.4 (iptables driver), the same
              NetworkOptions (10.112.0.0/16) as /work/shared/peers/bench_attach.py.
  cni         CNI reference plugins 1.1 bridge (+ host-local IPAM) then portmap, chained by
              hand as bench_attach.py does (ADD in order with prevResult, DEL in reverse with
              the cached result), 10.113.0.0/16. No DNS.

Each batch (tool, N, repetition) has namespaces of its own: for the peers a "host" namespace
`rpp-<pid>-<k>-h` and N container namespaces `rpp-<pid>-<k>-cI` (made before, not timed); for
reef the Sandbox namespace `rpe-<pid>-<k>`. The timed loop runs in a worker process that
lives in that host namespace (`ip netns exec HOST python3 peers.py --inner SPEC` for the
peers, as bench_attach.py, so each timed call is just the tool's fork+exec; `nsenter
--net=...` for reef, which needs our mount namespace for its sandbox mounts). Per call: wall
clock (perf_counter) and CPU: user+sys of the tool's process and its children
(RUSAGE_CHILDREN: the CLI or netavark with its nft/iptables, the CNI plugins), plus the
daemons it drives over the batch (/proc: reefd's own threads, and its shims and container
processes; aardvark-dns), reported as total CPU / operations. Before each phase the worker
waits (at most a few seconds) for the machine to go quiet: the kernel frees deleted
namespaces asynchronously, long after the previous batch.

Verification of what was timed, after the attach phase (untimed): for every 10th container and
the last, (1) a TCP listener on port 80 is made inside the container's namespace, and a
connection from the host namespace to GATEWAY:PORT must reach it and read its token; (2) for
tools with DNS, `dig @GATEWAY NAME` from the container's namespace must return exactly its
address; (3) the host namespace's nft ruleset must name exactly the N container addresses
(one DNAT target each) after the attach phase, and none after the detach phase. For reef,
no container may be left after the detach phase. Every failure is counted; exit status is
non-zero on any.

Output: a table on stdout (machine, date, load) and, with --out, JSON with every sample. A
second table gives CPU per container: the phase's mean (everything above, / N) and the median
CPU spent during each call (tool + daemon), with its first/last 10%: unlike wall time, it hardly
moves with other load on the machine, so it tells real growth with N from contention. "other
load" is the CPUs (of 2) busy with anything else during the phase. The mounts the kernel holds
(active objects of the mnt_cache slab, machine-wide) are printed before and after each attach
phase of N >= 100: reef's sandbox mounts propagate into every container's mount namespace.
Default repetitions: 20 for N=1, 1 for larger N (--reps R sets all). `--n-limit TOOL=MAX`
skips a tool's N above MAX (reef limits both reef modes).

Cleanup (also on SIGINT/SIGTERM) after every batch: stop the worker (by pid), benchlib's
Sandbox cleanup for reef (`reef rm -f`, stop reefd, kill what lives in its namespaces, umount,
`ip netns del`, rm), and for the peers: kill by pid whatever lives in the batch's namespaces
(aardvark-dns, stray plugins), reap it, `ip netns del` all of them, remove the temp dir;
then check nothing is left.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ for benchlib in the source tree
from benchlib import (  # noqa: E402  (bench/ is on sys.path: it holds this script)
    CLK_TCK,
    DEFAULT_BIN_DIR,
    Interrupted,
    Sandbox,
    UnixHTTP,
    all_pids,
    become_subreaper,
    binary_ids,
    ensure_bins,
    ensure_debs,
    in_netns,
    link_up,
    loadavg,
    log,
    machine,
    ns_key,
    on_signal,
    p90,
    proc_cpu_full_s,
    proc_ppid,
    proc_sched_cpu_s,
    proc_stat,
    reap_orphans,
    require_root_and_tools,
    system_cpu,
    wait_quiet,
)

NETAVARK2 = os.environ.get("NETAVARK2_BIN", "/opt/peers/bin/netavark")
AARDVARK2 = os.environ.get("AARDVARK2_BIN", "/opt/peers/bin/aardvark-dns")
NETAVARK14 = "/usr/lib/podman/netavark"
AARDVARK14 = "/usr/lib/podman/aardvark-dns"
CNI_PATH = "/usr/lib/cni"
INSTALL_NV2 = "/work/shared/peers/install-modern-netavark.sh"

PORT_BASE = 20000
CONTAINER_PORT = 80
NET = {  # tool -> (network name, subnet, gateway, bridge)
    "reef": ("benchnet", "10.110.0.0/16", "10.110.0.1", None),
    "netavark2": ("rpp-net", "10.111.0.0/16", "10.111.0.1", "rppbr2"),
    "netavark14": ("rpp-net", "10.112.0.0/16", "10.112.0.1", "rppbr14"),
    "cni": ("rpp-cninet", "10.113.0.0/16", "10.113.0.1", "rppbrcni"),
}
TOOLS = ("reef", "netavark2", "netavark14", "cni")
KINDS = {"reef": ("reef-cli", "reef-api", "reef-connect"), "netavark2": ("netavark2",),
         "netavark14": ("netavark14",), "cni": ("cni",)}
LABEL = {
    "reef-cli": "reef (CLI: reef run -d / rm -f)",
    "reef-api": "reef (HTTP API, no CLI)",
    "reef-connect": "reef network connect (API, no port)",
    "netavark2": "netavark 2.1 + aardvark 2.1 (nft)",
    "netavark14": "netavark 1.4 + aardvark 1.4 (ipt)",
    "cni": "CNI bridge+host-local+portmap 1.1",
}
HAS_DNS = {"reef-cli": True, "reef-api": True, "reef-connect": True, "netavark2": True, "netavark14": True,
           "cni": False}
HAS_PORT = {k: k != "reef-connect" for k in HAS_DNS}
PREP_NET = ("prepnet", "10.109.0.0/16", "10.109.0.1")
MAX_FAILS = 5  # a batch stops attaching after this many failed calls


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def host_ip(subnet_gw, i):
    """Address i+2 of a /16 whose gateway is x.y.0.1."""
    a, b = subnet_gw.split(".")[:2]
    h = i + 2
    return f"{a}.{b}.{h // 256}.{h % 256}"


def sample_indexes(n):
    """Every 10th container (1-based 10, 20, ...) and the last, as 0-based indexes."""
    return sorted({i for i in range(n) if (i + 1) % 10 == 0} | {n - 1})


# =====================================================================================
# The worker: runs inside the batch's host namespace, times the calls, verifies.
# =====================================================================================


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_tool(cmd, input=None, env=None, timeout=300):
    return subprocess.run(cmd, input=input, env=env, stdin=None if input is not None else subprocess.DEVNULL,
                          capture_output=True, timeout=timeout)


class ReefCli:
    def __init__(self, spec):
        self.spec = spec
        self.api = UnixHTTP(spec["socket"])
        self.base = [spec["reef"], "-H", f"unix://{spec['socket']}"]
        self.ids = {}
        self.pid = spec["reefd_pid"]
        self.cpu0 = 0.0
        self.daemon_cpu = 0.0

    def before(self):
        self.cpu0 = proc_sched_cpu_s(self.pid) or 0.0

    def after(self):
        """reefd's CPU (all its threads) during the call just made."""
        d = (proc_sched_cpu_s(self.pid) or 0.0) - self.cpu0
        self.daemon_cpu += d
        return d

    def attach(self, i):
        s = self.spec
        r = run_tool(self.base + ["run", "-d", "--name", s["names"][i], "--network", NET["reef"][0],
                                  "-p", f"{s['ports'][i]}:{CONTAINER_PORT}", "sleep", "100000"])
        if r.returncode != 0:
            return f"exit {r.returncode}: {r.stderr.decode(errors='replace').strip()[-300:]}"
        self.ids[i] = r.stdout.decode().strip()
        return None

    def detach(self, i):
        r = run_tool(self.base + ["rm", "-f", self.spec["names"][i]])
        if r.returncode != 0:
            return f"exit {r.returncode}: {r.stderr.decode(errors='replace').strip()[-300:]}"
        return None

    def endpoint(self, i):
        return reef_endpoint(self.api, self.spec["names"][i], self.spec["ports"][i])

    def leftovers(self):
        st, body = self.api.call("GET", "/containers/json?all=1")
        return [c.get("Id") for c in body] if st == 200 and isinstance(body, list) else [f"list: {st}"]


class ReefApi(ReefCli):
    def __init__(self, spec):
        super().__init__(spec)
        self.split = {"create_s": [], "start_s": []}

    def attach(self, i):
        s = self.spec
        body = {
            "Cmd": ["sleep", "100000"],
            "ExposedPorts": {f"{CONTAINER_PORT}/tcp": {}},
            "HostConfig": {"NetworkMode": NET["reef"][0], "PortBindings": {
                f"{CONTAINER_PORT}/tcp": [{"HostIp": "", "HostPort": str(s["ports"][i])}]}},
        }
        t0 = time.perf_counter()
        st, r = self.api.call("POST", f"/containers/create?name={s['names'][i]}", body)
        t1 = time.perf_counter()
        if st != 201 or not isinstance(r, dict) or not r.get("Id"):
            return f"create: HTTP {st}: {r!r}"[:300]
        cid = r["Id"]
        self.ids[i] = cid
        st, r = self.api.call("POST", f"/containers/{cid}/start")
        t2 = time.perf_counter()
        if st not in (204, 304):
            return f"start: HTTP {st}: {r!r}"[:300]
        self.split["create_s"].append(t1 - t0)
        self.split["start_s"].append(t2 - t1)
        return None

    def detach(self, i):
        cid = self.ids.get(i) or self.spec["names"][i]
        st, r = self.api.call("DELETE", f"/containers/{cid}?force=1")
        if st not in (200, 204):
            return f"delete: HTTP {st}: {r!r}"[:300]
        return None


class ReefConnect(ReefCli):
    """Containers already running on PREP_NET (started here, untimed); the timed operation
    is connecting them to, and disconnecting them from, the bench network."""

    def __init__(self, spec):
        super().__init__(spec)
        for name in spec["names"]:
            st, r = self.api.call("POST", f"/containers/create?name={name}",
                                  {"Cmd": ["sleep", "100000"], "HostConfig": {"NetworkMode": PREP_NET[0]}})
            if st != 201:
                raise RuntimeError(f"prepare {name}: create: HTTP {st}: {r!r}"[:300])
            st, r = self.api.call("POST", f"/containers/{name}/start")
            if st not in (204, 304):
                raise RuntimeError(f"prepare {name}: start: HTTP {st}: {r!r}"[:300])

    def network_call(self, action, i):
        """POST /networks/benchnet/{connect,disconnect} for container i: None, or the error."""
        st, r = self.api.call("POST", f"/networks/{NET['reef'][0]}/{action}",
                              {"Container": self.spec["names"][i]}, retry=False)
        return None if st == 200 else f"{action}: HTTP {st}: {r!r}"[:300]

    def attach(self, i):
        return self.network_call("connect", i)

    def detach(self, i):
        return self.network_call("disconnect", i)

    def endpoint(self, i):
        ep = super().endpoint(i)
        st, doc = self.api.call("GET", f"/containers/{ep['name']}/json")
        ep["also"] = [doc["NetworkSettings"]["Networks"][PREP_NET[0]]["IPAddress"]]
        return ep

    def leftovers(self):
        st, doc = self.api.call("GET", f"/networks/{NET['reef'][0]}")
        if st != 200 or not isinstance(doc, dict):
            return [f"network inspect: {st}"]
        return list((doc.get("Containers") or {}).keys())

    def remove_all(self):
        for name in self.spec["names"]:
            self.api.call("DELETE", f"/containers/{name}?force=1")


def reef_endpoint(api, name, port):
    st, doc = api.call("GET", f"/containers/{name}/json")
    if st != 200 or not isinstance(doc, dict):
        raise RuntimeError(f"inspect {name}: HTTP {st}")
    ns = doc["NetworkSettings"]
    ep = ns["Networks"][NET["reef"][0]]
    return {"name": name, "netns": ns["SandboxKey"], "ip": ep["IPAddress"], "gw": ep["Gateway"],
            "port": port}


class Netavark:
    def __init__(self, spec):
        self.spec = spec
        self.kind = spec["kind"]
        self.cfg = os.path.join(spec["tmp"], "netavark")
        os.makedirs(self.cfg, exist_ok=True)  # netavark 1.4 fails silently without it
        net, subnet, gw, bridge = NET[self.kind]
        self.net, self.subnet, self.gw, self.bridge = net, subnet, gw, bridge
        self.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS="")
        if self.kind == "netavark2":
            self.env["NETAVARK_FW"] = "nftables"
            self.cmd = [NETAVARK2, "--config", self.cfg, "--rootless=false", "--aardvark-binary", AARDVARK2]
        else:
            self.cmd = [NETAVARK14, "--config", self.cfg, "--aardvark-binary", AARDVARK14]
        self.net_id = sha(f"{spec['tag']}-{net}")
        self.docs = {}
        # aardvark-dns CPU, followed across calls (it starts on the first setup, stops on the last teardown)
        self.av_pid, self.av_cpu = None, 0.0
        self.daemon_cpu = 0.0

    def opts(self, i):
        s = self.spec
        return {
            "container_id": sha(f"{s['tag']}-{s['names'][i]}"),
            "container_name": s["names"][i],
            "port_mappings": [{"host_ip": "", "container_port": CONTAINER_PORT,
                               "host_port": s["ports"][i], "range": 1, "protocol": "tcp"}],
            "networks": {self.net: {"static_ips": [s["ips"][i]], "aliases": [f"a{i + 1}"],
                                    "interface_name": "eth0"}},
            "network_info": {self.net: {
                "name": self.net, "id": self.net_id, "driver": "bridge",
                "network_interface": self.bridge,
                "subnets": [{"subnet": self.subnet, "gateway": self.gw}],
                "ipv6_enabled": False, "internal": False, "dns_enabled": True,
                "ipam_options": {"driver": "host-local"}}},
        }

    def _call(self, what, i):
        data = json.dumps(self.opts(i)).encode()
        r = run_tool(self.cmd + [what, self.spec["netns"][i]], input=data, env=self.env)
        if r.returncode != 0:
            return f"{what} exit {r.returncode}: {(r.stderr or r.stdout).decode(errors='replace').strip()[-300:]}"
        return None

    def attach(self, i):
        return self._call("setup", i)

    def detach(self, i):
        return self._call("teardown", i)

    def aardvark_pid(self):
        try:
            pid = int(Path(self.cfg, "aardvark-dns", "aardvark.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        st = proc_stat(pid)
        return pid if st and "aardvark" in st[1] and st[2] != "Z" else None

    def before(self):
        pid = self.aardvark_pid()
        c = proc_sched_cpu_s(pid) if pid else None
        self.av_pid, self.av_cpu = (pid, c) if c is not None else (None, 0.0)

    def after(self):
        """Adds the daemon's CPU of the call just made (outside the timed window)."""
        pid = self.aardvark_pid()
        c = proc_sched_cpu_s(pid) if pid else None
        if c is None:
            return 0.0
        d = c - (self.av_cpu if pid == self.av_pid else 0.0)
        self.daemon_cpu += d
        return d

    def endpoint(self, i):
        s = self.spec
        return {"name": s["names"][i], "netns": s["netns"][i], "ip": s["ips"][i], "gw": self.gw,
                "port": s["ports"][i]}


class Cni:
    def __init__(self, spec):
        self.spec = spec
        net, subnet, gw, bridge = NET["cni"]
        self.gw = gw
        self.results = {}
        ipam = os.path.join(spec["tmp"], "ipam")
        os.makedirs(ipam, exist_ok=True)
        self.conflist = {
            "cniVersion": "1.0.0", "name": net,
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True,
                 "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet, "gateway": gw}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": ipam}},
                {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            ],
        }
        self.ips = {}
        self.daemon_cpu = 0.0

    def _run(self, cmd, plugin, i, prev):
        s = self.spec
        c = dict(plugin, cniVersion=self.conflist["cniVersion"], name=self.conflist["name"])
        if plugin["type"] == "portmap":
            c["runtimeConfig"] = {"portMappings": [
                {"hostPort": s["ports"][i], "containerPort": CONTAINER_PORT, "protocol": "tcp"}]}
        if prev is not None:
            c["prevResult"] = prev
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": cmd,
               "CNI_CONTAINERID": f"{s['tag']}-{s['names'][i]}", "CNI_NETNS": s["netns"][i],
               "CNI_IFNAME": "eth0", "CNI_PATH": CNI_PATH}
        r = run_tool([os.path.join(CNI_PATH, plugin["type"])], input=json.dumps(c).encode(), env=env)
        if r.returncode != 0:
            raise RuntimeError(f"{cmd} {plugin['type']}: exit {r.returncode}: "
                               f"{(r.stdout + r.stderr).decode(errors='replace').strip()[-300:]}")
        return json.loads(r.stdout) if r.stdout.strip() else None

    def attach(self, i):
        prev = None
        try:
            for p in self.conflist["plugins"]:
                prev = self._run("ADD", p, i, prev)
        except RuntimeError as e:
            return str(e)
        self.results[i] = prev
        try:
            self.ips[i] = prev["ips"][0]["address"].split("/")[0]
        except (KeyError, IndexError, TypeError):
            pass
        return None

    def detach(self, i):
        prev = self.results.pop(i, None)
        try:
            for p in reversed(self.conflist["plugins"]):
                self._run("DEL", p, i, prev)
        except RuntimeError as e:
            return str(e)
        return None

    def endpoint(self, i):
        s = self.spec
        return {"name": s["names"][i], "netns": s["netns"][i], "ip": self.ips.get(i), "gw": self.gw,
                "port": s["ports"][i]}

    def before(self):  # no daemon
        pass

    def after(self):
        return 0.0


def tcp_check(ep, attempts=3):
    """A listener on port 80 inside the container's namespace; connect to GW:PORT from here."""
    token = os.urandom(8).hex().encode()
    last = None
    for attempt in range(1, attempts + 1):
        lst = cli = conn = None
        try:
            with in_netns(ep["netns"]):
                lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lst.bind(("0.0.0.0", CONTAINER_PORT))
            lst.listen(4)
            lst.settimeout(3)
            cli = socket.create_connection((ep["gw"], ep["port"]), timeout=3)
            conn, peer = lst.accept()
            conn.sendall(token)
            cli.settimeout(3)
            got = cli.recv(64)
            if got == token:
                return True, attempt, None
            last = f"read {got!r}"
        except OSError as e:
            last = f"{type(e).__name__}: {e}"
        finally:
            for s in (conn, cli, lst):
                if s is not None:
                    s.close()
        time.sleep(0.2)
    return False, attempts, last


def dns_check(ep, attempts=2, also=()):
    """dig NAME from the container must return its address (and, for a container on more
    networks than the bench one, `also`: its addresses there, which reef and aardvark-dns
    give a client that shares those networks too)."""
    last = None
    want = sorted([ep["ip"], *also])
    for attempt in range(1, attempts + 1):
        r = subprocess.run(["nsenter", f"--net={ep['netns']}", "dig", "+short", "+time=2", "+tries=1",
                            f"@{ep['gw']}", ep["name"], "A"], capture_output=True, text=True, timeout=30)
        got = [x.strip() for x in r.stdout.splitlines() if x.strip()]
        if r.returncode == 0 and sorted(got) == want:
            return True, attempt, None
        last = f"dig exit {r.returncode}: {got or r.stderr.strip()[-200:]}"
        time.sleep(0.2)
    return False, attempts, last


ADDR_RE = re.compile(r"(?<![\d.])(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?![\d/])")


def ruleset_addresses(prefix, gw):
    """Distinct host addresses of the tool's /16 named in this namespace's nft ruleset."""
    r = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return None
    return len({a for a in ADDR_RE.findall(r.stdout) if a.startswith(prefix) and a != gw})


def reef_daemon_cpu(pid):
    """(reefd's own CPU (all its threads, ns-precise), its reaped children's CPU (cutime+cstime,
    in clock ticks), CPU of its live shims and their containers (ns-precise), the same in ticks)."""
    own = proc_sched_cpu_s(pid)
    full = proc_cpu_full_s(pid)
    kids = kids_ticks = 0.0
    shims = [p for p in all_pids() if proc_ppid(p) == pid]
    sset = set(shims)
    for p in shims + [p for p in all_pids() if proc_ppid(p) in sset]:
        c = proc_sched_cpu_s(p)
        kids += c or 0.0
        t = proc_cpu_full_s(p)
        kids_ticks += (t[0] + t[1]) if t else 0.0
    return own or 0.0, (full[1] if full else 0.0), kids, kids_ticks


def mnt_cache_objects():
    """Mounts the kernel holds, machine-wide (active objects of the mnt_cache slab), or None."""
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                if line.startswith("mnt_cache "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def busy_between(a, b):
    if a is None or b is None or b[1] == a[1]:
        return None
    return round((b[0] - a[0]) / (b[1] - a[1]), 3)


def inner(spec_path):
    spec = json.loads(Path(spec_path).read_text())
    if ns_key("/proc/self/ns/net") == ns_key("/proc/1/ns/net"):
        sys.exit("worker: in the machine's root network namespace; refusing")
    if ns_key("/proc/self/ns/net") != tuple(spec["host_ns_key"]):
        sys.exit("worker: not in the batch's host namespace; refusing")
    become_subreaper()
    kind, n = spec["kind"], spec["n"]
    quiet_max = spec["quiet_max_s"]
    log_every = max(1, n // 5) if n >= 50 else 0
    tool = {"reef-cli": ReefCli, "reef-api": ReefApi, "reef-connect": ReefConnect, "netavark2": Netavark,
            "netavark14": Netavark, "cni": Cni}[kind](spec)
    is_reef = kind.startswith("reef")
    gw = NET["reef" if is_reef else kind][2]
    prefix = ".".join(gw.split(".")[:2]) + "."  # the tool's /16
    res = {"kind": kind, "n": n, "attach_s": [], "attach_cpu_s": [], "detach_s": [], "detach_cpu_s": [],
           "attach_daemon_op_s": [], "detach_daemon_op_s": [], "others_cores": {},
           "failures": [], "samples": [], "quiet": {}, "busy": {}, "loadavg": {}}

    def fail(what, i, why):
        res["failures"].append({"what": what, "name": spec["names"][i] if i is not None else None,
                                "why": why})
        log(f"    {kind} N={n}: {what} {spec['names'][i] if i is not None else ''} FAILED: {why}")

    if not is_reef:  # podman's namespaces have lo up; ours too (not timed)
        for p in spec["netns"]:
            with in_netns(p):
                link_up("lo")

    attached = []
    res["mnt_cache_before"] = mnt_cache_objects()
    for phase in ("attach", "detach"):
        res["quiet"][phase] = wait_quiet(max_s=quiet_max)
        res["loadavg"][phase] = loadavg()
        if is_reef:
            d0 = reef_daemon_cpu(spec["reefd_pid"])
        tool.daemon_cpu = 0.0
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        kids0 = children_cpu()
        sys0 = system_cpu()
        t_phase = time.perf_counter()
        fn = getattr(tool, phase)
        order = range(n) if phase == "attach" else list(attached)
        fails = 0
        for k, i in enumerate(order):
            tool.before()
            c0 = children_cpu()
            t0 = time.perf_counter()
            err = fn(i)
            t1 = time.perf_counter()
            c1 = children_cpu()
            dd = tool.after()
            if err:
                fail(phase, i, err)
                fails += 1
                if phase == "attach" and fails >= MAX_FAILS:
                    log(f"    {kind} N={n}: {MAX_FAILS} failures, stopping the attach phase")
                    break
                if phase == "detach":
                    continue
                continue
            res[f"{phase}_s"].append(t1 - t0)
            res[f"{phase}_cpu_s"].append(c1 - c0)
            res[f"{phase}_daemon_op_s"].append(dd)
            if phase == "attach":
                attached.append(i)
            if log_every and (k + 1) % log_every == 0:
                log(f"    {kind} N={n}: {phase} {k + 1}/{n}, last {1000 * (t1 - t0):.2f} ms")
        wall = time.perf_counter() - t_phase
        res[f"{phase}_wall_total_s"] = wall
        sys1 = system_cpu()
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        ours = (children_cpu() - kids0) + tool.daemon_cpu + \
            (self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime)
        res["busy"][phase] = busy_between(sys0, sys1)
        if sys0 and sys1 and wall > 0:
            # CPUs busy with anything but the tool, its daemon and this worker (other jobs on
            # the machine, and kernel threads: softirq, namespace teardown), in cores
            res["others_cores"][phase] = round(max(0.0, (sys1[0] - sys0[0]) / CLK_TCK - ours) / wall, 3)
        if is_reef:
            if phase == "attach":
                d1 = reef_daemon_cpu(spec["reefd_pid"])
                # reefd's threads + the shims and containers it started (alive, all of their CPU)
                res["attach_daemon_cpu_s"] = (d1[0] - d0[0]) + d1[2]
                res["_d1"] = d1
            else:
                time.sleep(0.3)  # reefd reaps the shims of removed containers
                d2 = reef_daemon_cpu(spec["reefd_pid"])
                d1 = res.pop("_d1")
                # reefd's threads + what the reaped shims and containers spent after the attach
                # phase (their whole CPU, in clock ticks, minus what the attach phase counted)
                res["detach_daemon_cpu_s"] = (d2[0] - d1[0]) + max(0.0, (d2[1] - d1[1]) - d1[3])
        else:
            res[f"{phase}_daemon_cpu_s"] = tool.daemon_cpu
            if phase == "attach":
                res["aardvark_pid"] = tool.aardvark_pid() if hasattr(tool, "aardvark_pid") else None

        res[f"mnt_cache_after_{phase}"] = mnt_cache_objects()
        if phase == "attach":
            # ---------- verification (untimed) ----------
            got = ruleset_addresses(prefix, gw)
            res["ruleset_addresses_after_attach"] = got
            if got != len(attached):
                fail("ruleset", None, f"nft ruleset names {got} container addresses after attach, "
                                      f"expected {len(attached)}")
            for i in sample_indexes(n):
                if i not in attached:
                    continue
                try:
                    ep = tool.endpoint(i)
                except Exception as e:  # noqa: BLE001
                    fail("endpoint", i, repr(e))
                    continue
                one = {"i": i, "name": ep["name"], "ip": ep["ip"], "port": ep["port"]}
                if HAS_PORT[kind]:
                    ok, tries, why = tcp_check(ep)
                    one["tcp"] = {"ok": ok, "tries": tries, "why": why}
                    if not ok:
                        fail("tcp", i, f"{ep['gw']}:{ep['port']} -> {ep['ip']}:{CONTAINER_PORT}: {why}")
                if HAS_DNS[kind]:
                    ok, tries, why = dns_check(ep, also=ep.get("also", ()))
                    one["dns"] = {"ok": ok, "tries": tries, "why": why}
                    if not ok:
                        fail("dns", i, f"dig @{ep['gw']} {ep['name']} (want {ep['ip']}): {why}")
                res["samples"].append(one)
            if not is_reef:
                reap_orphans()
    got = ruleset_addresses(prefix, gw)
    res["ruleset_addresses_after_detach"] = got
    if got != 0:
        fail("ruleset", None, f"nft ruleset still names {got} container addresses after detach")
    if is_reef:
        left = tool.leftovers()
        res["left_after_detach"] = left
        if left:
            fail("leftover", None, f"{len(left)} containers left after detach")
        if kind == "reef-api":
            res["api_split"] = tool.split
        if kind == "reef-connect":
            tool.remove_all()
        tool.api.close()
    else:
        reap_orphans()
    Path(spec["out"]).write_text(json.dumps(res))


# =====================================================================================
# The orchestrator: namespaces, daemons, workers, cleanup, summary.
# =====================================================================================


class Worker:
    """The timed loop in a child process living in the batch's host namespace."""

    def __init__(self):
        self.proc = None

    def run(self, prefix_cmd, spec, path):
        Path(path).write_text(json.dumps(spec))
        cmd = prefix_cmd + [sys.executable, str(Path(__file__).resolve()), "--inner", str(path)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
        rc = self.proc.wait()
        self.proc = None
        if rc != 0:
            raise RuntimeError(f"worker exited {rc}")
        return json.loads(Path(spec["out"]).read_text())

    def stop(self):
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


class PeerBatch:
    """Host namespace + N container namespaces + temp dir of one peer batch, with cleanup."""

    def __init__(self, kind, n, tag):
        self.kind, self.n, self.tag = kind, n, tag
        self.host = f"rpp-{os.getpid()}-{tag}-h"
        self.cns = [f"rpp-{os.getpid()}-{tag}-c{i + 1}" for i in range(n)]
        self.created = []
        self.keys = set()
        self.dir = None
        self.procs = {}
        self.worker = Worker()

    def path(self, ns):
        return f"/run/netns/{ns}"

    def setup(self):
        self.dir = Path(tempfile.mkdtemp(prefix=f"rpp-{os.getpid()}-{self.tag}-", dir="/tmp"))
        names = [self.host] + self.cns
        for ns in names:
            if os.path.exists(self.path(ns)):
                raise RuntimeError(f"namespace {ns} already exists; refusing")
        batch = self.dir / "netns-add"
        batch.write_text("".join(f"netns add {ns}\n" for ns in names))
        self.created = list(names)  # `ip -b` may stop part-way: cleanup deletes what exists
        r = subprocess.run(["ip", "-b", str(batch)], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"ip -b netns add: {r.stderr.strip()[-300:]}")
        root = {ns_key("/proc/1/ns/net"), ns_key("/proc/self/ns/net")}
        for ns in names:
            k = ns_key(self.path(ns))
            if k is None or k in root:
                raise RuntimeError(f"{ns} is not a fresh namespace; refusing to go on")
            self.keys.add(k)
        r = subprocess.run(["ip", "-n", self.host, "link", "set", "lo", "up"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"lo up in {self.host}: {r.stderr.strip()}")

    def run(self, spec_extra, quiet_max):
        ip_of = NET[self.kind][2]
        spec = {
            "kind": self.kind, "n": self.n, "tag": f"{os.getpid()}-{self.tag}",
            "names": [f"c{i + 1}" for i in range(self.n)],
            "ports": [PORT_BASE + i for i in range(self.n)],
            "ips": [host_ip(ip_of, i) for i in range(self.n)],
            "netns": [self.path(ns) for ns in self.cns],
            "tmp": str(self.dir), "out": str(self.dir / "result.json"),
            "host_ns_key": list(ns_key(self.path(self.host))),
            "quiet_max_s": quiet_max, **spec_extra,
        }
        return self.worker.run(["ip", "netns", "exec", self.host], spec, self.dir / "spec.json")

    def pids_in_ns(self):
        me = os.getpid()
        return [p for p in all_pids() if p != me and ns_key(f"/proc/{p}/ns/net") in self.keys]

    def note(self, pid):
        st = proc_stat(pid)
        if st:
            self.procs[pid] = st[:2]

    def cleanup(self):
        def step(what, fn):
            try:
                fn()
            except BaseException as e:  # every step gets its chance
                log(f"cleanup ({self.kind} {self.tag}): {what}: {e!r}")

        step("stop worker", self.worker.stop)

        def kill_left():
            for _ in range(20):
                pids = self.pids_in_ns()
                if not pids:
                    break
                for p in pids:
                    self.note(p)
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
                time.sleep(0.1)
            reap_orphans()
        if self.keys:
            step("kill leftovers", kill_left)
        if self.created:
            def del_ns():
                batch = (self.dir or Path("/tmp")) / "netns-del"
                existing = [ns for ns in self.created if os.path.exists(self.path(ns))]
                if existing:
                    batch.write_text("".join(f"netns del {ns}\n" for ns in existing))
                    subprocess.run(["ip", "-force", "-b", str(batch)], capture_output=True, timeout=600)
                for ns in existing:  # one by one whatever the batch left
                    if os.path.exists(self.path(ns)):
                        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=60)
            step("ip netns del", del_ns)
        if self.dir is not None:
            step("rm -rf", lambda: shutil.rmtree(self.dir, ignore_errors=True))

    def verify(self):
        debris = []
        left = [ns for ns in self.created if os.path.exists(self.path(ns))]
        if left:
            debris.append(f"{len(left)} namespaces still present: {left[:5]}")
        if self.dir is not None and self.dir.exists():
            debris.append(f"{self.dir} still exists")
        deadline = time.monotonic() + 10
        while True:
            running = [(p, c) for p, (t, c) in self.procs.items()
                       if (st := proc_stat(p)) and st[0] == t and st[2] != "Z"]
            if not running or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if running:
            debris.append(f"processes still running: {running}")
        reap_orphans()
        return debris


class ReefBatch(Sandbox):
    """reefd in its own namespace (benchlib.Sandbox) with `benchnet`, and the worker."""

    def __init__(self, bins, kind, n, tag):
        super().__init__(bins, prefix="rpe", tag=tag)
        self.kind, self.n, self.tag = kind, n, tag
        self.worker = Worker()

    def prepare(self):
        net, subnet, gw, _ = NET["reef"]
        r = self.reef("network", "create", "--subnet", subnet, "--gateway", gw, net)
        if r.returncode != 0:
            raise RuntimeError(f"reef network create: {r.stderr.strip()}")
        if self.kind == "reef-connect":
            r = self.reef("network", "create", "--subnet", PREP_NET[1], "--gateway", PREP_NET[2], PREP_NET[0])
            if r.returncode != 0:
                raise RuntimeError(f"reef network create {PREP_NET[0]}: {r.stderr.strip()}")

    def run(self, quiet_max):
        prefix = {"reef-api": "a", "reef-connect": "n"}.get(self.kind, "c")
        spec = {
            "kind": self.kind, "n": self.n, "tag": f"{os.getpid()}-{self.tag}",
            "names": [f"{prefix}{i + 1}" for i in range(self.n)],
            "ports": [PORT_BASE + i for i in range(self.n)],
            "socket": str(self.dir / "reef.sock"), "reef": str(self.bins / "reef"),
            "reefd_pid": self.daemon.pid, "out": str(self.dir / "result.json"),
            "host_ns_key": list(ns_key(self.ns_path)), "quiet_max_s": quiet_max,
        }
        try:
            return self.worker.run(["nsenter", f"--net={self.ns_path}"], spec, self.dir / "spec.json")
        finally:
            self.record_procs()

    def cleanup(self):
        try:
            self.worker.stop()
        except BaseException as e:
            log(f"cleanup: stop worker: {e!r}")
        super().cleanup()
        # reefd's spare shim, orphaned when reefd stops, is re-parented to us (a subreaper):
        # reap it, or verify() waits for the zombie to go.
        reap_orphans()


# ---------- installation ----------


def ensure_peers(tools):
    wanted = [("/usr/bin/nsenter", "util-linux"), ("/usr/sbin/nft", "nftables"), ("/usr/bin/dig", "bind9-dnsutils")]
    if "netavark14" in tools:
        wanted += [(NETAVARK14, "netavark"), (AARDVARK14, "aardvark-dns"), ("/usr/sbin/iptables", "iptables")]
    if "cni" in tools:
        wanted += [(f"{CNI_PATH}/bridge", "containernetworking-plugins"), ("/usr/sbin/iptables", "iptables")]
    ensure_debs(wanted)
    if "netavark2" in tools and not (os.access(NETAVARK2, os.X_OK) and os.access(AARDVARK2, os.X_OK)):
        log(f"{NETAVARK2} or {AARDVARK2} missing: running {INSTALL_NV2} (cargo install, ~10 min) ...")
        r = subprocess.run(["bash", INSTALL_NV2])
        if r.returncode != 0 or not os.access(NETAVARK2, os.X_OK):
            sys.exit(f"{INSTALL_NV2} failed")
    if ("netavark2" in tools or "netavark14" in tools) and os.path.isdir("/run/systemd/system"):
        sys.exit("systemd is booted here: netavark would write /run/sysctl.d and start aardvark-dns "
                 "through systemd-run in the root namespace; refusing to run the netavark peers")


def versions(tools):
    out = {}

    def first_line(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except OSError:
            return None
        t = (r.stdout + r.stderr).strip()
        try:
            return json.loads(t).get("version")
        except (ValueError, AttributeError):
            return t.splitlines()[0] if t else None

    if "netavark2" in tools:
        out["netavark2"] = f"netavark {first_line([NETAVARK2, 'version'])}, {first_line([AARDVARK2, '--version'])}"
    if "netavark14" in tools:
        out["netavark14"] = f"netavark {first_line([NETAVARK14, 'version'])}, {first_line([AARDVARK14, '--version'])}"
    if "cni" in tools:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "containernetworking-plugins"],
                           capture_output=True, text=True)
        out["cni"] = f"containernetworking-plugins {r.stdout.strip() or '?'} (Debian)"
    return out


# ---------- summary and table ----------


def stats(xs):
    if not xs:
        return None
    return {"median": round(statistics.median(xs), 3), "p90": round(p90(xs), 3),
            "min": round(min(xs), 3), "max": round(max(xs), 3), "count": len(xs)}


def summarize(kind, n, batches):
    out = {"kind": kind, "n": n, "reps": len(batches)}
    k = max(1, n // 10)
    for ph in ("attach", "detach"):
        allv, first, last = [], [], []
        for b in batches:
            xs = [1000 * x for x in b[f"{ph}_s"]]
            allv += xs
            if n >= 10 and len(xs) >= 2 * k:
                first += xs[:k]
                last += xs[-k:]
        out[ph] = stats(allv)
        out[f"{ph}_first10"] = round(statistics.median(first), 3) if first else None
        out[f"{ph}_last10"] = round(statistics.median(last), 3) if last else None
        ops = sum(len(b[f"{ph}_s"]) for b in batches)
        tool_cpu = sum(sum(b[f"{ph}_cpu_s"]) for b in batches)
        daemon_cpu = sum(b.get(f"{ph}_daemon_cpu_s") or 0.0 for b in batches)
        out[f"{ph}_cpu_ms_per_op"] = round(1000 * (tool_cpu + daemon_cpu) / ops, 3) if ops else None
        out[f"{ph}_tool_cpu_ms_per_op"] = round(1000 * tool_cpu / ops, 3) if ops else None
        out[f"{ph}_daemon_cpu_ms_per_op"] = round(1000 * daemon_cpu / ops, 3) if ops else None
        busy = [b["busy"].get(ph) for b in batches if b["busy"].get(ph) is not None]
        out[f"{ph}_machine_busy"] = round(statistics.median(busy), 3) if busy else None
        oth = [b.get("others_cores", {}).get(ph) for b in batches]
        oth = [x for x in oth if x is not None]
        out[f"{ph}_others_cores"] = round(statistics.median(oth), 2) if oth else None
        # per-call CPU (tool process + children + daemon during the call): robust to other load
        cf, cl, call = [], [], []
        for b in batches:
            xs = [1000 * (a + d) for a, d in zip(b[f"{ph}_cpu_s"], b.get(f"{ph}_daemon_op_s") or
                                                 [0.0] * len(b[f"{ph}_cpu_s"]))]
            call += xs
            if n >= 10 and len(xs) >= 2 * k:
                cf += xs[:k]
                cl += xs[-k:]
        out[f"{ph}_op_cpu_median"] = round(statistics.median(call), 3) if call else None
        out[f"{ph}_op_cpu_first10"] = round(statistics.median(cf), 3) if cf else None
        out[f"{ph}_op_cpu_last10"] = round(statistics.median(cl), 3) if cl else None
    tcp = [s["tcp"]["ok"] for b in batches for s in b["samples"] if "tcp" in s]
    dns = [s["dns"]["ok"] for b in batches for s in b["samples"] if "dns" in s]
    out["tcp_checks"] = [sum(tcp), len(tcp)]
    out["dns_checks"] = [sum(dns), len(dns)] if HAS_DNS[kind] else None
    out["ruleset_after_attach"] = [b.get("ruleset_addresses_after_attach") for b in batches]
    out["ruleset_after_detach"] = [b.get("ruleset_addresses_after_detach") for b in batches]
    out["failures"] = [f for b in batches for f in b["failures"]]
    out["mnt_cache"] = [[b.get("mnt_cache_before"), b.get("mnt_cache_after_attach"),
                         b.get("mnt_cache_after_detach")] for b in batches]
    if kind == "reef-api":
        cr = [1000 * x for b in batches for x in b.get("api_split", {}).get("create_s", [])]
        st = [1000 * x for b in batches for x in b.get("api_split", {}).get("start_s", [])]
        out["api_create_ms"], out["api_start_ms"] = stats(cr), stats(st)
    return out


def fmt(x, w=7, d=2):
    return f"{'—':>{w}}" if x is None else f"{x:>{w}.{d}f}"


def print_table(summaries, mach, date, end_load, args, vers, ids, notes):
    log("")
    log(f"attach/detach latency, reef vs peers — {date}")
    cpu = f"  cpu: {mach['cpu']}" if "cpu" in mach else ""
    log(f"machine: nproc {mach['nproc']}, kernel {mach['kernel']}{cpu}")
    log(f"load avg at start: {mach.get('loadavg_at_start', '?')}   at end: {end_load or '?'}   "
        f"(1/5/15 min; another job may share the CPUs)")
    log("reef " + mach.get("commit", "?") + "; binaries: " + ", ".join(
        f"{Path(b).name} sha256 {v.get('sha256', '?')} built {v.get('mtime', '?')}" for b, v in ids.items()))
    for k, v in vers.items():
        log(f"{k}: {v}")
    log("per container, wall ms; first/last = median of the first/last 10% of the N calls "
        "(pooled over reps); cpu = user+sys of the tool, its children and its daemon per op")
    hdr = (f"{'tool':<34} {'N':>5} {'reps':>4} | {'attach':>7} {'p90':>7} {'first':>7} {'last':>7} | "
           f"{'detach':>7} {'p90':>7} {'first':>7} {'last':>7} | {'tcp':>7} {'dns':>7} {'rules':>5}")
    log("-" * len(hdr))
    log(hdr)
    log("-" * len(hdr))
    for s in summaries:
        a, d = s["attach"] or {}, s["detach"] or {}
        tcp = f"{s['tcp_checks'][0]}/{s['tcp_checks'][1]}"
        dns = "—" if s["dns_checks"] is None else f"{s['dns_checks'][0]}/{s['dns_checks'][1]}"
        ra, rd = s["ruleset_after_attach"], s["ruleset_after_detach"]
        ok_rules = all(x == s["n"] for x in ra) and all(x == 0 for x in rd)
        rules = "ok" if ok_rules else "FAIL"
        log(f"{LABEL[s['kind']]:<34} {s['n']:>5} {s['reps']:>4} | {fmt(a.get('median'))} {fmt(a.get('p90'))} "
            f"{fmt(s['attach_first10'])} {fmt(s['attach_last10'])} | {fmt(d.get('median'))} {fmt(d.get('p90'))} "
            f"{fmt(s['detach_first10'])} {fmt(s['detach_last10'])} | {tcp:>7} {dns:>7} {rules:>5}")
    log("-" * len(hdr))
    log("")
    log("CPU per container, ms: mean = all CPU of the phase / containers (tool process and children, "
        "daemon, and for reef the shims and container processes); per call = median of the CPU spent "
        "during each call (tool + daemon), first/last 10%; other load = CPUs busy with anything else "
        "during the phase (other jobs, kernel threads), in cores of 2")
    hdr2 = (f"{'tool':<34} {'N':>5} | {'att mean':>8} {'per call':>8} {'first':>7} {'last':>7} | "
            f"{'det mean':>8} {'per call':>8} {'first':>7} {'last':>7} | {'other load a/d':>14}")
    log("-" * len(hdr2))
    log(hdr2)
    log("-" * len(hdr2))
    for s in summaries:
        oa, od = s.get("attach_others_cores"), s.get("detach_others_cores")
        other = f"{'—' if oa is None else f'{oa:.2f}'} / {'—' if od is None else f'{od:.2f}'}"
        log(f"{LABEL[s['kind']]:<34} {s['n']:>5} | {fmt(s['attach_cpu_ms_per_op'], 8)} "
            f"{fmt(s['attach_op_cpu_median'], 8)} {fmt(s['attach_op_cpu_first10'])} {fmt(s['attach_op_cpu_last10'])} | "
            f"{fmt(s['detach_cpu_ms_per_op'], 8)} {fmt(s['detach_op_cpu_median'], 8)} "
            f"{fmt(s['detach_op_cpu_first10'])} {fmt(s['detach_op_cpu_last10'])} | {other:>14}")
    log("-" * len(hdr2))
    # ratios against netavark 2.1, and reef's growth
    by = {(s["kind"], s["n"]): s for s in summaries}
    lines = []
    for (kind, n), s in by.items():
        if not kind.startswith("reef"):
            continue
        nv = by.get(("netavark2", n))
        if nv and s["attach"] and nv["attach"] and s["detach"] and nv["detach"]:
            lines.append(f"N={n:<5} {kind}: netavark 2.1 / reef = attach x{nv['attach']['median'] / s['attach']['median']:.1f}, "
                         f"detach x{nv['detach']['median'] / s['detach']['median']:.1f}")
        if s["attach_first10"] and s["attach_last10"]:
            lines.append(f"N={n:<5} {kind}: last/first 10% = attach x{s['attach_last10'] / s['attach_first10']:.2f}, "
                         f"detach x{s['detach_last10'] / s['detach_first10']:.2f} (wall); attach "
                         f"x{s['attach_op_cpu_last10'] / s['attach_op_cpu_first10']:.2f}, detach "
                         f"x{s['detach_op_cpu_last10'] / s['detach_op_cpu_first10']:.2f} (cpu per call)")
    for s in summaries:
        if s["kind"] == "reef-api" and s.get("api_create_ms"):
            lines.append(f"N={s['n']:<5} reef-api split: create median {s['api_create_ms']['median']:.2f} ms, "
                         f"start median {s['api_start_ms']['median']:.2f} ms")
    for line in lines:
        log(line)
    log("cpu mean split (ms/op, tool process+children / daemon): " + "; ".join(
        f"{s['kind']} N={s['n']} att {fmt(s['attach_tool_cpu_ms_per_op'], 0)}/{fmt(s['attach_daemon_cpu_ms_per_op'], 0)} "
        f"det {fmt(s['detach_tool_cpu_ms_per_op'], 0)}/{fmt(s['detach_daemon_cpu_ms_per_op'], 0)}"
        for s in summaries))
    mc = [f"{s['kind']} N={s['n']}: {s['mnt_cache'][-1][0]}->{s['mnt_cache'][-1][1]}"
          for s in summaries if s["n"] >= 100 and s["mnt_cache"] and None not in s["mnt_cache"][-1][:2]]
    if mc:
        log("mounts held by the kernel (mnt_cache slab objects, machine-wide) before -> after the attach "
            "phase: " + "; ".join(mc))
    for note in notes:
        log(note)
    log("reef's cpu counts the CLI process, reefd's threads, and the shim and container process "
        "of each container; the peers' counts the tool's process and children (nft, iptables, "
        "plugins) and aardvark-dns.")
    log("reef's attach includes creating the container's namespace and starting its process "
        "(sleep), and its detach stopping that process and removing the namespace; the peers only "
        "set up / tear down the network of a namespace made beforehand (not timed), with no process. "
        "netavark gets its addresses from us (static_ips: no IPAM); reef and CNI (host-local) allocate.")
    log("checks: tcp = GATEWAY:PORT from the host namespace reaches a listener inside the container "
        "(every 10th and the last); dns = dig @GATEWAY NAME from the container returns its address; "
        "rules = the nft ruleset names the N addresses after attach and none after detach")


# ---------- main ----------


def root_snapshot():
    """What the run must not change in the machine's own network namespace (read only)."""
    import hashlib as h

    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""
    links = sorted(line.split(": ")[1].split("@")[0] for line in out(["ip", "-o", "link", "show"]).splitlines()
                   if ": " in line)
    try:
        fwd = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    except OSError:
        fwd = None
    return {"nft_sha": h.sha256(out(["nft", "list", "ruleset"]).encode()).hexdigest()[:16],
            "links": links, "ip_forward": fwd}


def parse_limits(text, ap):
    out = {}
    for part in filter(None, (x.strip() for x in (text or "").split(","))):
        try:
            tool, mx = part.split("=")
            out[tool.strip()] = int(mx)
        except ValueError:
            ap.error(f"--n-limit: {part!r} is not TOOL=MAX")
        if tool.strip() not in TOOLS:
            ap.error(f"--n-limit: unknown tool {tool!r}")
    return out


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--inner":
        return inner(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", default="1,100,1000", help="comma-separated N values (default 1,100,1000)")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, of {','.join(TOOLS)}")
    ap.add_argument("--reps", type=int, default=0, help="repetitions per N (default: 20 for N=1, else 1)")
    ap.add_argument("--n-limit", default="", help="TOOL=MAX,...: skip N above MAX for TOOL")
    ap.add_argument("--bin-dir", default=str(DEFAULT_BIN_DIR), help="reefd and reef (default target/release)")
    ap.add_argument("--out", help="write the results as JSON to this file")
    args = ap.parse_args()
    try:
        ns_list = [int(x) for x in args.n.split(",") if x.strip()]
    except ValueError:
        ap.error("--n must be comma-separated integers")
    if not ns_list or min(ns_list) < 1 or max(ns_list) > 20000:
        ap.error("--n values must lie in 1..20000")
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    bad = [t for t in tools if t not in TOOLS]
    if bad or not tools:
        ap.error(f"--tools: unknown {bad}; choose from {','.join(TOOLS)}")
    limits = parse_limits(args.n_limit, ap)
    if args.reps < 0:
        ap.error("--reps must be >= 0")
    require_root_and_tools("ip", "umount")

    bins = ensure_bins(args.bin_dir) if "reef" in tools else None
    ensure_peers(tools)
    vers = versions(tools)
    mach = machine()
    ids = binary_ids([bins / "reefd", bins / "reef"]) if bins else {}
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    become_subreaper()
    root_before = root_snapshot()

    plan = []
    for n in sorted(set(ns_list)):
        reps = args.reps or (20 if n == 1 else 1)
        for rep in range(reps):
            for t in tools:
                if n > limits.get(t, 10 ** 9):
                    continue
                for kind in KINDS[t]:
                    plan.append((n, rep, kind))
    skipped = sorted({f"{t} N={n}" for n in ns_list for t in tools if n > limits.get(t, 10 ** 9)})
    notes = [f"skipped (--n-limit): {', '.join(skipped)}"] if skipped else []

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    results = {}  # (kind, n) -> [batch results]
    errors, debris_all = [], []
    error = None
    t_start = time.monotonic()
    try:
        for k, (n, rep, kind) in enumerate(plan):
            tag = str(k)
            quiet_max = 2.0 if n == 1 else 10.0
            t0 = time.monotonic()
            batch = ReefBatch(bins, kind, n, tag) if kind.startswith("reef") else PeerBatch(kind, n, tag)
            res = None
            try:
                batch.setup()
                if kind.startswith("reef"):
                    batch.prepare()
                    res = batch.run(quiet_max)
                else:
                    res = batch.run({}, quiet_max)
            except Interrupted:
                raise
            except Exception as e:  # noqa: BLE001  a broken batch is reported, the run goes on
                errors.append({"kind": kind, "n": n, "rep": rep, "error": f"{type(e).__name__}: {e}"})
                log(f"  {kind} N={n} rep {rep}: ERROR {type(e).__name__}: {e}")
                if kind.startswith("reef") and batch.daemon is not None:
                    log("reefd log (tail):\n" + batch.daemon_log(15))
            finally:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                try:
                    batch.cleanup()
                    debris = batch.verify()
                finally:
                    signal.signal(signal.SIGINT, on_signal)
                    signal.signal(signal.SIGTERM, on_signal)
                if debris:
                    debris_all.append({"kind": kind, "n": n, "rep": rep, "debris": debris})
                    log(f"  {kind} N={n} rep {rep}: LEFTOVERS: {debris}")
            if res is not None:
                results.setdefault((kind, n), []).append(res)
                a = statistics.median(res["attach_s"]) * 1000 if res["attach_s"] else float("nan")
                d = statistics.median(res["detach_s"]) * 1000 if res["detach_s"] else float("nan")
                if n > 1 or rep in (0, (args.reps or 20) - 1):
                    log(f"  {kind:<10} N={n:<5} rep {rep}: attach median {a:8.2f} ms, detach median {d:8.2f} ms, "
                        f"{len(res['failures'])} failures; {time.monotonic() - t0:.0f} s; load {loadavg()}")
    except Interrupted as e:
        error = f"interrupted by {e}"
        log(error)
    except Exception as e:  # noqa: BLE001
        error = f"{type(e).__name__}: {e}"
        traceback.print_exc()

    end_load = loadavg()
    if ids and binary_ids([bins / "reefd", bins / "reef"]) != ids:
        notes.append("NOTE: reefd/reef changed on disk during the run (another build?): later reef "
                     "batches may have run another binary than the one listed")
    root_after = root_snapshot()
    root_changed = [k for k in ("nft_sha", "ip_forward") if root_before[k] != root_after[k]]
    ours = [x for x in set(root_before["links"]) ^ set(root_after["links"]) if x.startswith("rpp")]
    if ours:
        root_changed.append(f"links {ours}")
    other_links = sorted(set(root_before["links"]) ^ set(root_after["links"]))
    order = {kd: i for i, kd in enumerate(k for t in TOOLS for k in KINDS[t])}
    summaries = [summarize(kind, n, bs) for (kind, n), bs in
                 sorted(results.items(), key=lambda x: (x[0][1], order[x[0][0]]))]
    notes.append(f"total run time {time.monotonic() - t_start:.0f} s")
    if summaries:
        print_table(summaries, mach, date, end_load, args, vers, ids, notes)
    nfail = sum(len(s["failures"]) for s in summaries)
    bad_rules = [s for s in summaries if not (all(x == s["n"] for x in s["ruleset_after_attach"])
                                              and all(x == 0 for x in s["ruleset_after_detach"]))]
    log(f"failures: {nfail} in the batches, {len(errors)} batch errors, "
        f"{len(debris_all)} batches with leftovers" + ("" if not error else f"; {error}"))
    for s in summaries:
        for f in s["failures"][:10]:
            log(f"  {s['kind']} N={s['n']}: {f['what']} {f['name'] or ''}: {f['why']}")
    for e in errors:
        log(f"  batch error: {e}")
    log("root network namespace: " + ("unchanged (nft ruleset, ip_forward)" if not root_changed
                                       else f"CHANGED: {root_changed}")
        + ("" if not other_links else f"; note: root links changed meanwhile (not ours): {other_links[:6]}"))
    failed = bool(error or errors or debris_all or nfail or bad_rules or root_changed)
    if args.out:
        doc = {
            "date": date, "machine": mach, "binaries": ids, "versions": vers,
            "loadavg_at_end": end_load, "args": vars(args), "plan": [list(x) for x in plan],
            "commands": {
                "reef-cli": "reef run -d --name cI --network benchnet -p PORT:80 sleep 100000 / reef rm -f cI",
                "reef-api": "POST /containers/create?name=aI + POST /containers/ID/start / DELETE /containers/ID?force=1",
                "reef-connect": "(nI running on prepnet, untimed) POST /networks/benchnet/connect / .../disconnect",
                "netavark2": f"DBUS_SYSTEM_BUS_ADDRESS= NETAVARK_FW=nftables {NETAVARK2} --config CFG "
                             f"--rootless=false --aardvark-binary {AARDVARK2} setup|teardown /run/netns/C < opts.json",
                "netavark14": f"DBUS_SYSTEM_BUS_ADDRESS= {NETAVARK14} --config CFG --aardvark-binary {AARDVARK14} "
                              "setup|teardown /run/netns/C < opts.json",
                "cni": "bridge(+host-local) then portmap ADD; portmap then bridge DEL (CNI 1.0.0 conf, prevResult)",
            },
            "summaries": summaries,
            "batches": {f"{k}/{n}": bs for (k, n), bs in results.items()},
            "root_namespace": {"before": root_before, "after": root_after, "changed": root_changed},
            "batch_errors": errors, "leftovers": debris_all, "error": error, "ok": not failed,
        }
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
        log(f"wrote {args.out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
