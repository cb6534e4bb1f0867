#!/usr/bin/env python3
"""reef's embedded DNS server against aardvark-dns (netavark) and dnsmasq, in one run.

    python3 bench/dns.py [--secs 10] [--reps 3] [--bin-dir target/release] [--out FILE.json]

Needs root, `ip`, `nsenter`, `dnsperf`, `dig`, and for the peers netavark + aardvark-dns
(Debian 12: /usr/lib/podman/, 1.4) and dnsmasq (Debian `dnsmasq-base`, no system service).
Missing Debian packages are installed with apt-get. NETAVARK_BIN / AARDVARK_BIN select
other builds of the peers. Standard library only.

Three servers, the same query (`web A`), the same client tool and the same machine, with
their runs interleaved (each repetition rotates the order) so that other load on the
machine falls on all of them alike:

  * reef: reefd in a private namespace `rd-<pid>` (benchlib.Sandbox: never in the
    machine's root namespace), `reef network create --subnet 10.97.0.0/24 benchnet`, then
    `reef run -d --name web --network benchnet sleep 100000` and the same for `client`.
    reefd answers on the gateway 10.97.0.1:53; dnsperf and dig run in the client
    container's own network namespace (`nsenter --net=<its SandboxKey>`).
  * aardvark-dns: a "host" namespace `rdp-<pid>-h` and two container namespaces
    `rdp-<pid>-c1` (client, 10.98.0.2) and `rdp-<pid>-c2` (`web`, alias `webalias`,
    10.98.0.3), set up by `netavark setup` with dns_enabled as /work/shared/peers/bench_dns.py
    does it (its NetworkOptions, `DBUS_SYSTEM_BUS_ADDRESS=` empty); netavark starts
    aardvark-dns on the gateway 10.98.0.1:53.
  * dnsmasq, the ceiling: in the same peer host namespace, as bench_dns.py runs it:
    `dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts
    --bind-interfaces --listen-address=10.98.0.1 --port=5353 --addn-hosts=HOSTS`, HOSTS
    mapping `web` (and `web.dns.podman`) to 10.98.0.3.

First, for each server, `dig +short web A` from the client namespace must return exactly
the target container's address (for aardvark, `web.dns.podman` is tried when the bare name
fails, and the name that works is used and reported); a server that fails is left out
and the run fails. Then, per server, two modes, each --reps times (median reported):

  load : `dnsperf -s GW -p PORT -d Q -l SECS -q 100 -c 1 -t 2 -v`  -> qps, p50/p99
  q1   : the same with `-q 1`                                      -> unloaded p50/p99
         (dnsperf paces itself in this mode: its qps means nothing)

p50/p99 come from dnsperf's per-response `-v` lines. During each run the server's CPU
(utime+stime of all its threads, as % of one core over the run's wall time) and its
VmRSS (sampled every 0.2 s, the maximum) are read from /proc; for reef the server is
reefd itself (the whole daemon). The machine's busy share not due to the server or
dnsperf is reported too ("others": softirq packet work, ~10% on an idle machine, plus
competing load).

Cleanup runs in a `finally` (also on SIGINT/SIGTERM): benchlib.Sandbox's cleanup for reef
(`reef rm -f`, stop reefd, kill by pid what lives in its namespaces, umount, `ip netns
del`, rm), and for the peers: stop dnsmasq (by pid), `netavark teardown` (which stops
aardvark-dns), kill by pid whatever still lives in the peer namespaces, `ip netns del`,
remove the temp dir; then both check that nothing is left. Exit status is non-zero on
any failed check, failed server, error or leftover.
"""

import argparse
import datetime
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ for benchlib in the source tree
from benchlib import (  # noqa: E402  (bench/ is on sys.path: it holds this script)
    DEFAULT_BIN_DIR,
    Interrupted,
    Sandbox,
    all_pids,
    binary_ids,
    ensure_bins,
    ensure_debs,
    loadavg,
    log,
    machine,
    ns_key,
    on_signal,
    percentile,
    proc_cpu_s,
    proc_stat,
    require_root_and_tools,
    rss_kib,
    system_cpu,
)

NETAVARK = os.environ.get("NETAVARK_BIN", "/usr/lib/podman/netavark")
AARDVARK = os.environ.get("AARDVARK_BIN", "/usr/lib/podman/aardvark-dns")
DNSMASQ = "/usr/sbin/dnsmasq"
DNSPERF = "/usr/bin/dnsperf"
DIG = "/usr/bin/dig"

REEF_NET, REEF_SUBNET = "benchnet", "10.97.0.0/24"
PEER_NET, PEER_SUBNET, PEER_GW = "benchnet", "10.98.0.0/24", "10.98.0.1"
PEER_CLIENT_IP, PEER_WEB_IP = "10.98.0.2", "10.98.0.3"
PEER_BRIDGE = "rdpbr0"
DNSMASQ_PORT = 5353
QNAME = "web"
QNAME_PODMAN = "web.dns.podman"
MODES = (("load", 100), ("q1", 1))
RSS_SAMPLE_S = 0.2


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def run(cmd, timeout=60, **kw):
    return subprocess.run(cmd, stdin=kw.pop("stdin", subprocess.DEVNULL), capture_output=True,
                          text=True, timeout=timeout, **kw)


def version_of(cmd):
    try:
        r = run(cmd, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (r.stdout + r.stderr).strip().splitlines()
    return text[0].strip() if text else None


def dnsperf_version():
    try:
        r = run([DNSPERF, "-h"], timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (r.stdout + r.stderr).splitlines():
        if "Version" in line:
            return line.strip()
    return None


# ---------- reef ----------


class ReefDns(Sandbox):
    """reefd in a private namespace (benchlib.Sandbox) with a user network, `web` and `client`."""

    def __init__(self, bins):
        super().__init__(bins, prefix="rd")

    def must(self, *args, timeout=120):
        r = self.reef(*args, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"reef {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout

    def inspect(self, name):
        doc = json.loads(self.must("inspect", name))
        return doc[0] if isinstance(doc, list) else doc

    def prepare(self):
        self.must("network", "create", "--subnet", REEF_SUBNET, REEF_NET)
        for name in ("web", "client"):
            self.live.append(name)
            self.must("run", "-d", "--name", name, "--network", REEF_NET, "sleep", "100000")
        web, client = self.inspect("web"), self.inspect("client")
        ep_web = web["NetworkSettings"]["Networks"][REEF_NET]
        ep_client = client["NetworkSettings"]["Networks"][REEF_NET]
        key = client["NetworkSettings"]["SandboxKey"]
        if not key or not os.path.exists(key):
            raise RuntimeError(f"client SandboxKey {key!r} does not exist")
        self.record_procs()
        if ns_key(key) not in self.ns_keys:
            raise RuntimeError(f"client SandboxKey {key} is not one of this run's namespaces")
        return {
            "server": "reef",
            "label": "reef (reefd embedded DNS)",
            "gateway": ep_web["Gateway"],
            "port": 53,
            "expect": ep_web["IPAddress"],
            "client_ip": ep_client["IPAddress"],
            "client_netns": key,
            "pid": self.daemon.pid,
            "names": [QNAME],
        }


# ---------- peers (netavark + aardvark-dns, dnsmasq) ----------


class Peers:
    """The peer topology: host namespace, client and web namespaces, aardvark-dns, dnsmasq."""

    def __init__(self):
        pid = os.getpid()
        self.host, self.c1, self.c2 = f"rdp-{pid}-h", f"rdp-{pid}-c1", f"rdp-{pid}-c2"
        self.created = []  # namespace names we created
        self.keys = set()  # their (dev, ino)
        self.dir = None
        self.cfg = None
        self.set_up = []  # (ns, options) given to netavark setup
        self.manual = False  # topology built by hand (netavark failed): dnsmasq only
        self.dnsmasq = None
        self.procs = {}  # pid -> (starttime, comm) of processes this run caused
        self.netavark_error = None

    # ----- plumbing -----

    def ns_path(self, n):
        return f"/run/netns/{n}"

    def add_ns(self, n):
        if os.path.exists(self.ns_path(n)):
            raise RuntimeError(f"namespace {n} already exists (another run with our pid?); refusing")
        r = run(["ip", "netns", "add", n])
        if r.returncode != 0:
            raise RuntimeError(f"ip netns add {n}: {r.stderr.strip()}")
        self.created.append(n)
        k = ns_key(self.ns_path(n))
        if k is None or k == ns_key("/proc/1/ns/net") or k == ns_key("/proc/self/ns/net"):
            raise RuntimeError(f"{n} is not a fresh namespace; refusing to go on")
        self.keys.add(k)
        r = run(["ip", "-n", n, "link", "set", "lo", "up"])
        if r.returncode != 0:
            raise RuntimeError(f"lo up in {n}: {r.stderr.strip()}")

    def note(self, pid):
        st = proc_stat(pid)
        if st:
            self.procs[pid] = st[:2]

    def pids_in_ns(self):
        me = os.getpid()
        return [p for p in all_pids() if p != me and ns_key(f"/proc/{p}/ns/net") in self.keys]

    def record_procs(self):
        for p in self.pids_in_ns():
            self.note(p)

    def opts(self, idx, name, ip, alias):
        return {
            "container_id": sha(f"{self.host}-{name}"),
            "container_name": name,
            "port_mappings": [],
            "networks": {PEER_NET: {"static_ips": [ip], "aliases": [alias], "interface_name": "eth0"}},
            "network_info": {PEER_NET: {
                "name": PEER_NET, "id": sha(f"{self.host}-{PEER_NET}"), "driver": "bridge",
                "network_interface": PEER_BRIDGE,
                "subnets": [{"subnet": PEER_SUBNET, "gateway": PEER_GW}],
                "ipv6_enabled": False, "internal": False, "dns_enabled": True,
                "ipam_options": {"driver": "host-local"}}},
        }

    def netavark(self, cmd, ns, o):
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS="")
        r = run(["ip", "netns", "exec", self.host, NETAVARK, "--config", self.cfg,
                 "--aardvark-binary", AARDVARK, cmd, self.ns_path(ns)],
                input=json.dumps(o), stdin=None, env=env, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"netavark {cmd} {ns} exited {r.returncode}: "
                               f"{(r.stderr or r.stdout).strip() or '(no output)'}")
        return r.stdout

    # ----- setup -----

    def setup(self):
        self.dir = Path(tempfile.mkdtemp(prefix=f"rdp-{os.getpid()}-", dir="/tmp"))
        self.cfg = str(self.dir / "netavark")
        os.makedirs(self.cfg)  # netavark 1.4 fails silently (rc 1, empty stderr) without it
        for n in (self.host, self.c1, self.c2):
            self.add_ns(n)
        (self.dir / "q.txt").write_text(f"{QNAME} A\n")
        (self.dir / "q-podman.txt").write_text(f"{QNAME_PODMAN} A\n")
        (self.dir / "hosts").write_text(
            f"{PEER_WEB_IP} {QNAME} {QNAME_PODMAN} webalias webalias.dns.podman\n")

    def start_aardvark(self):
        """netavark setup of client and web (dns_enabled): returns aardvark-dns's pid."""
        try:
            o1 = self.opts(1, "client", PEER_CLIENT_IP, "clientalias")
            o2 = self.opts(2, "web", PEER_WEB_IP, "webalias")
            self.set_up.append((self.c1, o1))
            status = self.netavark("setup", self.c1, o1)
            self.set_up.append((self.c2, o2))
            self.netavark("setup", self.c2, o2)
            pidfile = Path(self.cfg) / "aardvark-dns" / "aardvark.pid"
            deadline = time.monotonic() + 5
            while not pidfile.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not pidfile.exists():
                raise RuntimeError(f"netavark setup succeeded but {pidfile} never appeared "
                                   f"(setup printed {status.strip()!r})")
            pid = int(pidfile.read_text().strip())
            self.note(pid)
            if ns_key(f"/proc/{pid}/ns/net") not in self.keys:
                raise RuntimeError(f"aardvark-dns pid {pid} is not in {self.host}")
            self.record_procs()
            return pid
        except Exception as e:
            self.netavark_error = str(e)
            raise

    def manual_topology(self):
        """When netavark cannot run: the same bridge, addresses and veths by hand, for dnsmasq."""
        self.manual = True
        h = ["ip", "-n", self.host]
        steps = [h + ["link", "add", PEER_BRIDGE, "type", "bridge"],
                 h + ["addr", "add", f"{PEER_GW}/24", "dev", PEER_BRIDGE],
                 h + ["link", "set", PEER_BRIDGE, "up"]]
        for i, (ns, ip) in enumerate(((self.c1, PEER_CLIENT_IP), (self.c2, PEER_WEB_IP))):
            v = f"rdpv{i}"
            steps += [h + ["link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", ns],
                      h + ["link", "set", v, "master", PEER_BRIDGE, "up"],
                      ["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"],
                      ["ip", "-n", ns, "link", "set", "eth0", "up"]]
        for s in steps:
            r = run(s)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(s)}: {r.stderr.strip()}")

    def start_dnsmasq(self):
        logf = open(self.dir / "dnsmasq.log", "ab")
        self.dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", self.host, DNSMASQ, "--keep-in-foreground",
             "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
             f"--listen-address={PEER_GW}", f"--port={DNSMASQ_PORT}",
             f"--addn-hosts={self.dir}/hosts", f"--pid-file={self.dir}/dnsmasq.pid",
             "--user=root", "--group=root", "--log-facility=-"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True)
        logf.close()
        self.note(self.dnsmasq.pid)  # `ip netns exec` exec()s dnsmasq: same pid
        pidfile = self.dir / "dnsmasq.pid"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.dnsmasq.poll() is not None:
                raise RuntimeError(f"dnsmasq exited {self.dnsmasq.returncode}: "
                                   f"{(self.dir / 'dnsmasq.log').read_text(errors='replace')[-500:]}")
            if pidfile.exists() and pidfile.read_text().strip():
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("dnsmasq wrote no pid file in 10 s")
        pid = int(pidfile.read_text().strip())
        self.note(pid)
        if ns_key(f"/proc/{pid}/ns/net") not in self.keys:
            raise RuntimeError(f"dnsmasq pid {pid} is not in {self.host}")
        return pid

    def server(self, kind, pid):
        common = {"gateway": PEER_GW, "expect": PEER_WEB_IP, "client_ip": PEER_CLIENT_IP,
                  "client_netns": self.ns_path(self.c1), "pid": pid}
        if kind == "aardvark":
            return {"server": "aardvark", "label": "aardvark-dns (netavark)", "port": 53,
                    "names": [QNAME, QNAME_PODMAN], **common}
        return {"server": "dnsmasq", "label": "dnsmasq (hosts file)", "port": DNSMASQ_PORT,
                "names": [QNAME], **common}

    # ----- cleanup -----

    def cleanup(self):
        def step(what, fn):
            try:
                fn()
            except BaseException as e:  # every step gets its chance
                log(f"cleanup (peers): {what}: {e!r}")

        step("record processes", self.record_procs)
        if self.dnsmasq is not None:
            def stop_dnsmasq():
                if self.dnsmasq.poll() is None:
                    self.dnsmasq.terminate()
                    try:
                        self.dnsmasq.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        self.dnsmasq.kill()
                        self.dnsmasq.wait(timeout=10)
            step("stop dnsmasq", stop_dnsmasq)
        for ns, o in reversed(self.set_up):
            step(f"netavark teardown {ns}", lambda ns=ns, o=o: self.netavark("teardown", ns, o))
        self.set_up = []

        def kill_left():
            for _ in range(10):
                pids = self.pids_in_ns()
                if not pids:
                    return
                for p in pids:
                    self.note(p)
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
                time.sleep(0.1)
        if self.keys:
            step("kill leftovers", kill_left)
        for n in reversed(self.created):
            step(f"ip netns del {n}", lambda n=n: run(["ip", "netns", "del", n], timeout=30))
        if self.dir is not None:
            step("rm -rf", lambda: shutil.rmtree(self.dir, ignore_errors=True))

    def verify(self):
        debris = []
        r = run(["ip", "netns", "list"])
        names = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
        for n in self.created:
            if n in names:
                debris.append(f"namespace {n} still listed")
        if self.dir is not None and self.dir.exists():
            debris.append(f"{self.dir} still exists")

        def ours():
            out = []
            for pid, (t, c) in self.procs.items():
                st = proc_stat(pid)
                if st and st[0] == t:
                    out.append((pid, c, st[2]))
            return out

        deadline = time.monotonic() + 10
        left = ours()
        while any(s != "Z" for _, _, s in left) and time.monotonic() < deadline:
            time.sleep(0.1)
            left = ours()
        running = [(p, c) for p, c, s in left if s != "Z"]
        zombies = [(p, c) for p, c, s in left if s == "Z"]
        if running:
            debris.append(f"processes still running: {running}")
        if zombies:
            log(f"note: {len(zombies)} peer processes are zombies awaiting their parent's wait(): {zombies}")
        return debris


def become_subreaper():
    """PR_SET_CHILD_SUBREAPER: daemons our tools start (aardvark-dns forks itself away from
    netavark) become our children when orphaned, so we can reap them instead of leaving
    zombies for a PID 1 that may not wait() for them."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap(pids, secs=3.0):
    """waitpid() those of `pids` that are our (dead) children, for up to `secs`."""
    pending = set(pids)
    deadline = time.monotonic() + secs
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pending.discard(pid)  # not our child (or already reaped)
                continue
            if done:
                pending.discard(pid)
        if pending:
            time.sleep(0.05)


# ---------- measurement ----------


def dig_check(srv):
    """dig from the client namespace; sets srv['qname'] to the first name answered right."""
    tried = []
    for name in srv["names"]:
        cmd = ["nsenter", f"--net={srv['client_netns']}", DIG, "+short", "+time=2", "+tries=1",
               "-p", str(srv["port"]), f"@{srv['gateway']}", name, "A"]
        r = run(cmd, timeout=20)
        got = [line.strip() for line in r.stdout.splitlines() if line.strip()]
        tried.append({"name": name, "exit": r.returncode, "answer": got,
                      "stderr": r.stderr.strip()[-200:]})
        if r.returncode == 0 and got == [srv["expect"]]:
            srv["qname"] = name
            srv["dig"] = tried
            return True
    srv["dig"] = tried
    return False


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.max = None
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            v = rss_kib(self.pid)
            if v is not None and (self.max is None or v > self.max):
                self.max = v
            self.stop.wait(RSS_SAMPLE_S)


def dnsperf_once(srv, qfile, secs, q):
    cmd = ["nsenter", f"--net={srv['client_netns']}", DNSPERF, "-s", srv["gateway"],
           "-p", str(srv["port"]), "-d", str(qfile), "-l", str(secs), "-q", str(q),
           "-c", "1", "-t", "2", "-v"]
    pid = srv["pid"]
    sampler = RssSampler(pid)
    sampler.start()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0, sys0, t0 = proc_cpu_s(pid), system_cpu(), time.perf_counter()
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=secs + 60)
    finally:
        sampler.stop.set()
        sampler.join()
    wall = time.perf_counter() - t0
    cpu1, sys1 = proc_cpu_s(pid), system_cpu()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    lat, rcodes = [], {}
    qps = avg = lost = sent = completed = None
    for line in r.stdout.splitlines():
        if line.startswith("> "):
            f = line.split()
            rcodes[f[1]] = rcodes.get(f[1], 0) + 1
            if f[1] != "T" and len(f) >= 5:
                lat.append(float(f[-1]) * 1e6)
        elif "Queries per second:" in line:
            qps = float(line.split()[-1])
        elif "Average Latency (s):" in line:
            avg = float(line.split()[3]) * 1e6
        elif "Queries sent:" in line:
            sent = int(line.split()[2])
        elif "Queries completed:" in line:
            completed = int(line.split()[2])
        elif "Queries lost:" in line:
            lost = int(line.split()[2])
    if r.returncode != 0 or qps is None or cpu0 is None or cpu1 is None:
        raise RuntimeError(f"dnsperf against {srv['server']} failed (exit {r.returncode}; server "
                           f"alive: {cpu1 is not None}): {r.stdout[-1000:]} {r.stderr[-1000:]}")
    lat.sort()
    client_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    server_cpu = cpu1 - cpu0
    busy = others = None
    if sys0 and sys1 and sys1[1] > sys0[1]:
        ncpu = os.cpu_count() or 1
        span_s = (sys1[1] - sys0[1]) / os.sysconf("SC_CLK_TCK") / ncpu  # wall seconds per CPU
        busy_s = (sys1[0] - sys0[0]) / os.sysconf("SC_CLK_TCK")
        busy = 100.0 * busy_s / (span_s * ncpu)
        others = max(0.0, 100.0 * (busy_s - server_cpu - client_cpu) / (span_s * ncpu))
    return {
        "qps": qps, "avg_us": avg, "p50_us": percentile(lat, 0.5), "p99_us": percentile(lat, 0.99),
        "responses": len(lat), "sent": sent, "completed": completed, "lost": lost, "rcodes": rcodes,
        "wall_s": round(wall, 3), "server_cpu_s": round(server_cpu, 3),
        "server_cpu_pct": round(100.0 * server_cpu / wall, 1),
        "server_rss_max_kib": sampler.max, "client_cpu_s": round(client_cpu, 3),
        "machine_busy_pct": None if busy is None else round(busy, 1),
        "others_busy_pct": None if others is None else round(others, 1),
        "loadavg": loadavg(),
    }


def median_of(runs, key):
    xs = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(xs) if xs else None


def summarize(runs):
    keys = ("qps", "avg_us", "p50_us", "p99_us", "server_cpu_pct", "server_rss_max_kib",
            "client_cpu_s", "machine_busy_pct", "others_busy_pct")
    out = {k: median_of(runs, k) for k in keys}
    out["lost_total"] = sum(r["lost"] or 0 for r in runs)
    out["responses_total"] = sum(r["responses"] for r in runs)
    rc = {}
    for r in runs:
        for k, v in r["rcodes"].items():
            rc[k] = rc.get(k, 0) + v
    out["rcodes_total"] = rc
    return out


def wrong_rcodes(results):
    """{"server mode": {rcode: count}} of responses other than NOERROR (T = timeout excluded)."""
    bad = {}
    for server, modes in results.items():
        for mode, d in modes.items():
            rc = (d.get("median") or {}).get("rcodes_total", {})
            other = {k: v for k, v in rc.items() if k not in ("NOERROR", "T")}
            if other:
                bad[f"{server} {mode}"] = other
    return bad


# ---------- report ----------


def fmt_int(x):
    return "—" if x is None else f"{x:,.0f}"


def fmt_pair(a, b):
    if a is None or b is None:
        return "—"
    return f"{a:.0f} / {b:.0f}"


def label(srv, versions):
    if srv["server"] == "reef":
        return "reef (reefd)"
    if srv["server"] == "aardvark":
        v = (versions.get("aardvark") or "aardvark-dns").split()
        return f"aardvark-dns {v[-1] if len(v) > 1 else '?'} (netavark)"
    v = (versions.get("dnsmasq") or "dnsmasq").split()
    return f"dnsmasq {v[-1] if len(v) > 1 else '?'} (hosts file)"


def print_table(servers, results, errors, mach, date, end_load, args, versions, ids):
    log("")
    log(f"reef embedded DNS benchmark — {date}")
    cpu = f"  cpu: {mach['cpu']}" if "cpu" in mach else ""
    log(f"machine: nproc {mach['nproc']}, kernel {mach['kernel']}{cpu}")
    log(f"load avg at start: {mach.get('loadavg_at_start', '?')}   at end: {end_load or '?'}   "
        f"(1/5/15 min; another job may share the CPUs)")
    rb = ids.get("reefd", {})
    log(f"reef {mach.get('commit', '?')}, reefd sha256 {rb.get('sha256', '?')} built {rb.get('mtime', '?')}; "
        f"dnsperf {(versions.get('dnsperf') or '?').split()[-1]}")
    log(f"dnsperf -l {args.secs} -q 100|1 -c 1 -t 2 -v from the client container's network namespace; "
        f"median of {args.reps} runs per cell, servers interleaved; latencies in µs")
    hdr = (f"{'server':<30} {'address':<16} {'query':<7} {'qps @100':>9}  {'p50/p99 @100':>13}  "
           f"{'p50/p99 @1':>11}  {'server CPU':>10}  {'RSS':>9}  {'lost':>4}  {'others':>6}")
    log("-" * len(hdr))
    log(hdr)
    log("-" * len(hdr))
    q1_samples = []
    for srv in servers:
        name = label(srv, versions)
        where = f"{srv['gateway']}:{srv['port']}"
        if srv["server"] in errors and srv["server"] not in results:
            log(f"{name:<30} {where:<16} FAILED: {errors[srv['server']]}")
            continue
        ld = results.get(srv["server"], {}).get("load", {}).get("median") or {}
        q1 = results.get(srv["server"], {}).get("q1", {}).get("median") or {}
        q1_samples.append(f"{srv['server']} {q1.get('responses_total', 0)}")
        rss = ld.get("server_rss_max_kib")
        lost = (ld.get("lost_total") or 0) + (q1.get("lost_total") or 0)
        cpu_txt = "—" if ld.get("server_cpu_pct") is None else f"{ld['server_cpu_pct']:.0f}%"
        oth = "—" if ld.get("others_busy_pct") is None else f"{ld['others_busy_pct']:.0f}%"
        log(f"{name:<30} {where:<16} {srv.get('qname', '?') + ' A':<7} {fmt_int(ld.get('qps')):>9}  "
            f"{fmt_pair(ld.get('p50_us'), ld.get('p99_us')):>13}  "
            f"{fmt_pair(q1.get('p50_us'), q1.get('p99_us')):>11}  {cpu_txt:>10}  "
            f"{('—' if rss is None else f'{rss / 1024:.1f} MiB'):>9}  {lost:>4}  {oth:>6}")
    log("-" * len(hdr))
    log("server CPU = utime+stime of the server process (all threads) during the load run, % of one core; "
        "RSS = its largest VmRSS then (reef: the whole reefd daemon)")
    log(f"lost = queries dnsperf timed out (2 s), all runs; others = share of all {mach['nproc']} CPUs "
        "busy with anything but the server and dnsperf processes during the load run: the kernel's "
        "packet work in softirq (~10% here when idle) plus competing load")
    if q1_samples:
        log(f"@1: dnsperf paces itself (its qps means nothing); responses timed over the {args.reps} runs: "
            + ", ".join(q1_samples))
    bad = wrong_rcodes(results)
    if bad:
        log(f"responses other than NOERROR: {bad}")


# ---------- main ----------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--secs", type=int, default=10, help="dnsperf -l per run (default 10)")
    ap.add_argument("--reps", type=int, default=3, help="runs per server and mode (default 3)")
    ap.add_argument("--bin-dir", default=str(DEFAULT_BIN_DIR),
                    help="directory holding reefd and reef (default target/release)")
    ap.add_argument("--out", help="write the results as JSON to this file")
    args = ap.parse_args()
    if args.secs < 1 or args.reps < 1:
        ap.error("--secs and --reps must be at least 1")
    require_root_and_tools("ip", "nsenter", "umount")
    wanted = [(DNSPERF, "dnsperf"), (DIG, "bind9-dnsutils"), (DNSMASQ, "dnsmasq-base"),
              ("/usr/sbin/iptables", "iptables")]
    if "NETAVARK_BIN" not in os.environ:
        wanted.append((NETAVARK, "netavark"))
    if "AARDVARK_BIN" not in os.environ:
        wanted.append((AARDVARK, "aardvark-dns"))
    installed = ensure_debs(wanted)

    bins = ensure_bins(args.bin_dir)
    mach = machine()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    ids = {Path(k).name: v for k, v in binary_ids([bins / "reefd", bins / "reef"]).items()}
    versions = {
        "dnsperf": dnsperf_version(),
        "aardvark": version_of([AARDVARK, "--version"]),
        "netavark": version_of([NETAVARK, "--version"]),
        "dnsmasq": " ".join((version_of([DNSMASQ, "--version"]) or "dnsmasq ?").split()[:3]),
    }

    reef = ReefDns(bins)
    peers = Peers()
    become_subreaper()
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    servers, errors, results = [], {}, {}
    error = None
    end_load = None
    try:
        # reef
        reef.setup()
        log(f"reefd {bins / 'reefd'} running as pid {reef.daemon.pid} in namespace {reef.ns}, "
            f"work dir {reef.dir}")
        servers.append(reef.prepare())
        # peers
        peers.setup()
        try:
            apid = peers.start_aardvark()
            servers.append(peers.server("aardvark", apid))
            log(f"aardvark-dns pid {apid} in {peers.host} (started by netavark setup)")
        except Exception as e:
            errors["aardvark"] = str(e)
            servers.append({**peers.server("aardvark", None), "error": str(e)})
            log(f"aardvark-dns: FAILED: {e}")
            # tear netavark's half-done work down, then build the topology by hand for dnsmasq
            for ns, o in reversed(peers.set_up):
                try:
                    peers.netavark("teardown", ns, o)
                except Exception as e2:
                    log(f"  netavark teardown {ns}: {e2}")
            peers.set_up = []
            for pid in peers.pids_in_ns():  # an aardvark-dns that outlived the teardown
                peers.note(pid)
                os.kill(pid, signal.SIGKILL)
        try:
            if "aardvark" in errors:
                peers.manual_topology()
                log("peer topology built by hand (ip link/addr) so that dnsmasq can still be measured")
            dpid = peers.start_dnsmasq()
            servers.append(peers.server("dnsmasq", dpid))
            log(f"dnsmasq pid {dpid} in {peers.host}")
        except Exception as e:
            errors["dnsmasq"] = str(e)
            servers.append({**peers.server("dnsmasq", None), "error": str(e)})
            log(f"dnsmasq: FAILED: {e}")
        peers.record_procs()

        for srv in servers:
            srv["label"] = label(srv, versions)
        # correctness first
        for srv in servers:
            if srv["server"] in errors:
                continue
            ok = dig_check(srv)
            parts = []
            for t in srv["dig"]:
                ans = " ".join(t["answer"]) or "(nothing)"
                ex = "" if t["exit"] == 0 else f" (exit {t['exit']}: {t['stderr']})"
                parts.append(f"dig @{srv['gateway']} -p {srv['port']} {t['name']} A -> {ans}{ex}")
            log(f"check {srv['label']}: {'; '.join(parts)}; expected {srv['expect']}: "
                f"{'ok' if ok else 'WRONG'}")
            if not ok:
                errors[srv["server"]] = (f"wrong answer: dig {', '.join(t['name'] for t in srv['dig'])} "
                                         f"gave {[t['answer'] for t in srv['dig']]}, expected {srv['expect']}")
        live = [s for s in servers if s["server"] not in errors]
        for srv in live:
            q = (reef.dir if srv["server"] == "reef" else peers.dir) / f"q-{srv['server']}.txt"
            q.write_text(f"{srv['qname']} A\n")
            srv["qfile"] = q

        # measurements, interleaved
        for mode, qn in MODES:
            for rep in range(args.reps):
                k = rep % len(live) if live else 0
                for srv in live[k:] + live[:k]:
                    if srv["server"] in errors:
                        continue
                    try:
                        res = dnsperf_once(srv, srv["qfile"], args.secs, qn)
                    except RuntimeError as e:
                        errors[srv["server"]] = str(e)
                        log(f"  {srv['server']} {mode}: FAILED: {e}")
                        continue
                    results.setdefault(srv["server"], {}).setdefault(mode, {"runs": []})["runs"].append(res)
                    log(f"  {mode:4s} rep {rep + 1}/{args.reps} {srv['server']:9s} qps {res['qps']:9.0f}  "
                        f"p50 {res['p50_us']:7.0f} µs  p99 {res['p99_us']:7.0f} µs  "
                        f"server cpu {res['server_cpu_pct']:5.1f}%  rss "
                        f"{(res['server_rss_max_kib'] or 0) / 1024:.1f} MiB  lost {res['lost']}  "
                        f"others {res['others_busy_pct']}%  load {res['loadavg']}")
                    time.sleep(0.5)
        for s, modes in results.items():
            for mode, d in modes.items():
                d["median"] = summarize(d["runs"])
        for key, rc in wrong_rcodes(results).items():
            errors.setdefault(key.split()[0], f"answers other than NOERROR in {key}: {rc}")
        reef.record_procs()
        peers.record_procs()
        end_load = loadavg()
        ids_end = {Path(k).name: v for k, v in binary_ids([bins / "reefd", bins / "reef"]).items()}
        if ids_end != ids:
            log(f"note: the binaries changed on disk during the run (another build?): {ids_end}; "
                f"reefd kept running the one it started with")
        print_table(servers, results, errors, mach, date, end_load, args, versions, ids)
    except Interrupted as e:
        error = f"interrupted by {e}"
        log(error)
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if reef.daemon is not None and (error is not None or "reef" in errors):
            tail = reef.daemon_log(20)
            if tail:
                log("reefd log (tail):\n" + tail)
        peers.cleanup()
        reef.cleanup()
        reap(list(reef.procs) + list(peers.procs))
        debris = reef.verify() + peers.verify()
    if debris:
        log("cleanup: LEFTOVERS:\n  " + "\n  ".join(debris))
    else:
        log(f"cleanup: ok (namespaces {reef.ns}, {', '.join(peers.created)} deleted, no mounts under "
            f"{reef.dir}, {len(reef.procs) + len(peers.procs)} processes of this run all gone)")
    if errors:
        log("failures:\n  " + "\n  ".join(f"{k}: {v}" for k, v in errors.items()))

    failed = bool(error or debris or errors)
    if args.out:
        doc = {
            "date": date,
            "machine": mach,
            "loadavg_at_end": end_load,
            "binaries": ids,
            "versions": versions,
            "packages_installed": installed,
            "secs": args.secs,
            "reps": args.reps,
            "dnsperf": f"dnsperf -s GW -p PORT -d QFILE -l {args.secs} -q 100|1 -c 1 -t 2 -v",
            "servers": [{k: (str(v) if isinstance(v, Path) else v) for k, v in s.items()}
                        for s in servers],
            "results": results,
            "errors": errors,
            "cleanup": {"ok": not debris, "leftovers": debris},
            "error": error,
            "ok": not failed,
        }
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
