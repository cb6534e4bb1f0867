#!/usr/bin/env python3
"""What a published port costs in reef, and whether that cost grows with the ports already published.

    python3 bench/ports.py [--reps 20] [--levels 0,100,1000,10000] [--bin-dir target/release]
                           [--out FILE.json]

Needs root, `ip`, `nsenter`, `nft`, `nc` and `socat`. Standard library only.

reefd runs in a private network namespace `rp-<pid>` with a fresh work directory
/tmp/rp-<pid>-XXXX (see benchlib.Sandbox; never in the machine's root namespace). Then:

  1. Warm-up: 3 untimed `reef run -d` + `reef rm -f`.
  2. One container with 1 and with 100 published ports, on an empty table: R rounds of
     `reef run -d -p 8000:80 sleep 100000`, `reef run -d -p 8000-8099:8000-8099 sleep 100000`
     and `reef run -d sleep 100000`, each removed (untimed) before the next.
  3. For each level P (ascending): first fill the table to P published ports with
     containers that each publish a range (`-p A-B:A-B sleep 100000`, at most 1000 ports per
     container, host ports 20000 upwards; their start-up is timed too). Then R rounds of:
       * `reef run -d --name pP-i -p PORT:80 sleep 100000` on a host port never used
         before (40000 upwards), then `reef rm -f` (timed separately, not part of run);
       * `reef run -d --name nP-i sleep 100000` (the same without -p), then `reef rm -f`;
     the two alternate which goes first. The last -p container of each level runs
     `sh -c "exec socat TCP-LISTEN:80,fork,reuseaddr SYSTEM:'echo ok'"` instead of sleep:
     from the namespace, `nc -w 2 127.0.0.1 PORT` must read `ok` (retried for up to 5 s
     while socat starts), and after its `reef rm -f` the same port must no longer answer.
     At each level: rules in `nft list table ip reef` (lines inside chain blocks other
     than a base chain's `type ... hook ...` line; must not change with P), elements of the
     `dnat_any` map (must be P before and after the rounds), reefd's VmRSS, load average,
     and two in-namespace diagnostics of the port's share (see DIAG below): the time to read
     /proc/net/tcp + tcp6 (reefd's host-socket conflict check) and to add and delete one
     `dnat_any` element through libnftables in-process (reefd's firewall step).
All times are wall clock around the CLI process (CLI start-up + API round trip + daemon work).
Prints a table and writes every sample as JSON to --out.

Cleanup (also on SIGINT/SIGTERM) is benchlib.Sandbox's: `reef rm -f` everything, stop
reefd, kill by pid what still lives in our namespaces, `umount -l` our sandbox mounts,
`ip netns del`, remove the work directory, then check nothing is left. Exit status is
non-zero on any failed run or removal, failed port check, rule count that changes with P,
wrong element count, or leftover.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ for benchlib in the source tree
from benchlib import (  # noqa: E402  (bench/ is on sys.path: it holds this script)
    DEFAULT_BIN_DIR,
    Sandbox,
    ensure_bins,
    loadavg,
    log,
    machine,
    ms,
    p90,
    require_root_and_tools,
    rss_kib,
    run_guarded,
)

FILL_BASE = 20000  # filler containers publish FILL_BASE .. FILL_BASE+P-1
FILL_CHUNK = 1000  # ports per filler container at most
NEW_BASE = 40000  # each timed -p run takes the next unused host port from here
ONE_VS_100 = ("8000:80", "8000-8099:8000-8099")
WARMUP = 3
SOCAT = "exec socat TCP-LISTEN:80,fork,reuseaddr SYSTEM:'echo ok'"
RUN_TIMEOUT = 600  # a filler publishes 1000 ports in one call
DIAG_KEY = "tcp . 65000"  # a map key no run uses: the diagnostic adds and deletes it

# Run inside the namespace (python3 -c) at each level, to split the port's share: what
# reefd does per published port besides the common container work. (1) Reading
# /proc/net/tcp and /proc/net/tcp6, as an earlier reefd did to find host sockets on the port
# (a kernel walk of the machine-wide TCP hash tables, whatever the namespace holds; reefd
# now probes with bind(), and this figure shows why); (2) it adds the map element
# through libnftables in-process (here through ctypes, the same library and call, on a copy
# of the map with as many elements in a table of its own).
DIAG = r"""
import ctypes, json, sys, time
REPS = 30
def med(xs):
    xs = sorted(xs)
    return round(xs[len(xs) // 2] * 1000, 4)
out = {}
ts = []
for _ in range(REPS):
    t0 = time.perf_counter()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(f) as fh:
            fh.read()
    ts.append(time.perf_counter() - t0)
out["proc_net_tcp_read_ms"] = med(ts)
try:
    lib = ctypes.CDLL("libnftables.so.1")
except OSError as e:
    out["nft_error"] = str(e)
else:
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    ctx = lib.nft_ctx_new(0)
    lib.nft_ctx_buffer_output(ctx)
    lib.nft_ctx_buffer_error(ctx)
    # A copy of reef's map in a table of our own, holding as many elements as reef's does:
    # reefd repairs changes that other processes make to its own table (drift repair).
    P = int(sys.argv[1])
    setup = ["add table ip reefdiag",
             "add map ip reefdiag dnat_any { type inet_proto . inet_service : ipv4_addr . inet_service; }"]
    for lo in range(0, P, 1000):
        setup.append("add element ip reefdiag dnat_any { " + ", ".join(
            f"tcp . {1 + i} : 172.31.0.2 . {1 + i}" for i in range(lo, min(P, lo + 1000))) + " }")
    if lib.nft_run_cmd_from_buffer(ctx, ("\n".join(setup) + "\n").encode()) != 0:
        out["nft_error"] = "creating table ip reefdiag failed"
        REPS = 0
    add = b"add element ip reefdiag dnat_any { KEY : 172.31.255.254 . 80 }\n"
    dele = b"delete element ip reefdiag dnat_any { KEY }\n"
    ta, td = [], []
    for _ in range(REPS):
        t0 = time.perf_counter()
        if lib.nft_run_cmd_from_buffer(ctx, add) != 0:
            out["nft_error"] = "add element failed"
            break
        t1 = time.perf_counter()
        if lib.nft_run_cmd_from_buffer(ctx, dele) != 0:
            out["nft_error"] = "delete element failed (the element may be left over)"
            break
        ta.append(t1 - t0)
        td.append(time.perf_counter() - t1)
    if ta:
        out["nft_add_element_ms"] = med(ta)
        out["nft_delete_element_ms"] = med(td)
    lib.nft_run_cmd_from_buffer(ctx, b"delete table ip reefdiag\n")
    lib.nft_ctx_free(ctx)
print(json.dumps(out))
""".replace("KEY", DIAG_KEY)


def bin_ids(bins):
    """sha256 prefix and mtime of reefd and reef: another build may replace them meanwhile."""
    out = {}
    for b in ("reefd", "reef"):
        p = bins / b
        try:
            h = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
            mt = datetime.datetime.fromtimestamp(p.stat().st_mtime).astimezone()
            out[b] = {"sha256": h, "mtime": mt.isoformat(timespec="seconds")}
        except OSError as e:
            out[b] = {"error": str(e)}
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_jiffies(daemon_pid):
    """(busy jiffies of all CPUs, total jiffies, jiffies used by this benchmark) from
    /proc/stat; "busy" excludes idle and iowait, "ours" is this process, its reaped children
    (nsenter, reef, nft, nc) and reefd with its reaped children (the shims)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        with open(f"/proc/{daemon_pid}/stat") as f:
            st = f.read()
        d = [int(x) for x in st[st.rindex(")") + 2 :].split()[11:15]]
    except (OSError, ValueError):
        return None
    t = os.times()
    ours = (t.user + t.system + t.children_user + t.children_system) * CLK_TCK + sum(d)
    total = sum(v)
    return total - v[3] - v[4], total, ours


def busy_pct(a, b):
    """(% of all CPUs busy, % busy with other work than this benchmark) between two
    cpu_jiffies() readings."""
    if not a or not b or b[1] <= a[1]:
        return None
    span = b[1] - a[1]
    busy = 100.0 * (b[0] - a[0]) / span
    others = max(0.0, busy - 100.0 * (b[2] - a[2]) / span)
    return {"busy": round(busy, 1), "others": round(others, 1)}


def stats(xs_s):
    """Median/p90/min/max in ms of samples in seconds (None when empty)."""
    xs = [ms(x) for x in xs_s]
    if not xs:
        return None
    return {"median": round(statistics.median(xs), 3), "p90": round(p90(xs), 3),
            "min": min(xs), "max": max(xs), "count": len(xs)}


def count_rules(text):
    """Rules in `nft list table` output: lines inside a chain block, except the base
    chain's `type ... hook ...; policy ...;` line."""
    n = 0
    in_chain = False
    for raw in text.splitlines():
        line = raw.strip()
        if not in_chain:
            if re.match(r"chain \S+ \{$", line):
                in_chain = True
            continue
        if line == "}":
            in_chain = False
        elif not line or line.startswith("#") or (line.startswith("type ") and " hook " in line):
            continue
        else:
            n += 1
    return n


class PortsBench(Sandbox):
    def __init__(self, bins, reps):
        super().__init__(bins, prefix="rp")
        self.reps = reps
        self.next_port = NEW_BASE
        self.filled = 0
        self.fillers = []
        self.failures = []  # every failed run/rm/check, with what and why

    # ---------- primitives ----------

    def timed_run(self, name, *args):
        """`reef run -d --name NAME ARGS...`: (seconds, ok)."""
        self.live.append(name)
        t0 = time.perf_counter()
        r = self.reef("run", "-d", "--name", name, *args, timeout=RUN_TIMEOUT)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            self.fail("run", name, f"exit {r.returncode}: {r.stderr.strip()}")
            return dt, False
        return dt, True

    def timed_rm(self, name):
        t0 = time.perf_counter()
        r = self.reef("rm", "-f", name, timeout=RUN_TIMEOUT)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            self.fail("rm", name, f"exit {r.returncode}: {r.stderr.strip()}")
            return dt, False
        self.live.remove(name)
        return dt, True

    def fail(self, what, name, why):
        self.failures.append({"what": what, "name": name, "why": why})
        log(f"  {what} {name} FAILED: {why}")

    def nft_state(self):
        """(rules in `nft list table ip reef`, elements of map dnat_any)."""
        r = self.in_ns("nft", "list", "table", "ip", "reef", timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"nft list table ip reef failed: {r.stderr.strip()}")
        rules = count_rules(r.stdout)
        j = self.in_ns("nft", "-j", "list", "map", "ip", "reef", "dnat_any", timeout=120)
        if j.returncode != 0:
            raise RuntimeError(f"nft -j list map ip reef dnat_any failed: {j.stderr.strip()}")
        elems = 0
        for obj in json.loads(j.stdout).get("nftables", []):
            if "map" in obj:
                elems += len(obj["map"].get("elem", []))
        return rules, elems

    def ask(self, port):
        r = self.in_ns("nc", "-w", "2", "127.0.0.1", str(port), timeout=10)
        return r.stdout.strip()

    def check_port(self, name, port):
        """The port answers `ok` (socat may take a moment to listen): (ok, seconds, tries, reply)."""
        t0 = time.monotonic()
        tries = 0
        got = ""
        while True:
            tries += 1
            got = self.ask(port)
            if got == "ok":
                return True, time.monotonic() - t0, tries, got
            if time.monotonic() - t0 > 5:
                return False, time.monotonic() - t0, tries, got
            time.sleep(0.1)

    def diagnose(self, p):
        """DIAG inside the namespace: {proc_net_tcp_read_ms, nft_add_element_ms, ...}, with a
        map of P elements."""
        r = self.in_ns(sys.executable, "-c", DIAG, str(p), timeout=120)
        try:
            out = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            out = {"error": f"exit {r.returncode}: {r.stderr.strip()[-300:]}"}
        if "nft_error" in out or "error" in out:
            self.fail("diagnostic", "in namespace", out.get("nft_error") or out.get("error"))
        return out

    def ps_count(self):
        r = self.reef("ps", "-aq", timeout=60)
        return len(r.stdout.split())

    # ---------- phases ----------

    def warmup(self):
        for i in range(WARMUP):
            name = f"warm{i}"
            _, ok = self.timed_run(name, "sleep", "100000")
            if ok:
                self.timed_rm(name)

    def one_vs_hundred(self):
        res = {"one_port": [], "hundred_ports": [], "no_port": [], "rm_one": [], "rm_hundred": []}
        cpu0 = cpu_jiffies(self.daemon.pid)
        one, hundred = ONE_VS_100
        for i in range(self.reps):
            for key, rmkey, args in (("one_port", "rm_one", ["-p", one]),
                                     ("hundred_ports", "rm_hundred", ["-p", hundred]),
                                     ("no_port", None, [])):
                name = f"{key}-{i}"
                dt, ok = self.timed_run(name, *args, "sleep", "100000")
                if ok:
                    res[key].append(dt)
                    rdt, rok = self.timed_rm(name)
                    if rok and rmkey:
                        res[rmkey].append(rdt)
        return res, busy_pct(cpu0, cpu_jiffies(self.daemon.pid))

    def fill_to(self, level):
        out = []
        while self.filled < level:
            n = min(FILL_CHUNK, level - self.filled)
            lo = FILL_BASE + self.filled
            hi = lo + n - 1
            name = f"fill{len(self.fillers)}"
            spec = f"{lo}-{hi}:{lo}-{hi}"
            dt, ok = self.timed_run(name, "-p", spec, "sleep", "100000")
            if not ok:
                raise RuntimeError(f"filler {name} -p {spec} failed; cannot reach P={level}")
            self.fillers.append(name)
            self.filled += n
            out.append({"name": name, "ports": n, "spec": spec, "run_s": dt})
            log(f"  filled {name} -p {spec} ({n} ports) in {ms(dt):.1f} ms; P now {self.filled}")
        return out

    def level(self, p):
        res = {"P": p, "fill": self.fill_to(p)}
        res["loadavg"] = loadavg()
        res["nft_rules_before"], res["dnat_elements_before"] = self.nft_state()
        cpu0 = cpu_jiffies(self.daemon.pid)
        with_p, without, rm_with, rm_without = [], [], [], []
        verify = None
        for i in range(self.reps):
            last = i == self.reps - 1
            port = self.next_port
            self.next_port += 1
            cmd = ["sh", "-c", SOCAT] if last else ["sleep", "100000"]

            def one_with_p():
                nonlocal verify
                name = f"p{p}-{i}"
                dt, ok = self.timed_run(name, "-p", f"{port}:80", *cmd)
                if not ok:
                    if last:
                        verify = {"port": port, "ok": False, "why": "run failed"}
                    return
                with_p.append(dt)
                if last:
                    good, secs, tries, got = self.check_port(name, port)
                    verify = {"name": name, "port": port, "ok": good, "seconds": round(secs, 3),
                              "tries": tries, "got": got}
                    if not good:
                        self.fail("port check", name, f"127.0.0.1:{port} answered {got!r}, not 'ok'")
                rdt, rok = self.timed_rm(name)
                if rok:
                    rm_with.append(rdt)
                    if last:
                        got = self.ask(port)
                        verify["after_rm_ok"] = got == ""
                        if got:
                            self.fail("port check after rm", name,
                                      f"127.0.0.1:{port} still answers {got!r} after rm -f")

            def one_without():
                name = f"n{p}-{i}"
                dt, ok = self.timed_run(name, "sleep", "100000")
                if ok:
                    without.append(dt)
                    rdt, rok = self.timed_rm(name)
                    if rok:
                        rm_without.append(rdt)

            order = (one_with_p, one_without) if i % 2 == 0 else (one_without, one_with_p)
            for f in order:
                f()
        res["cpu_busy_pct"] = busy_pct(cpu0, cpu_jiffies(self.daemon.pid))
        res.update(run_with_p_s=with_p, run_without_p_s=without, rm_with_p_s=rm_with,
                   rm_without_p_s=rm_without, verify=verify)
        res["nft_rules_after"], res["dnat_elements_after"] = self.nft_state()
        res["reefd_vmrss_kib"] = rss_kib(self.daemon.pid)
        res["containers_present"] = self.ps_count()
        res["diag"] = self.diagnose(p)
        for key in ("dnat_elements_before", "dnat_elements_after"):
            if res[key] != p:
                self.fail("nft elements", f"P={p}", f"{key} = {res[key]}, expected {p}")
        if res["containers_present"] != len(self.fillers):
            self.fail("leftover containers", f"P={p}",
                      f"{res['containers_present']} containers present, expected {len(self.fillers)} fillers")
        w, wo = stats(with_p), stats(without)
        log(f"  P={p:<6d} run -d -p median {w['median'] if w else '—'} ms, "
            f"without -p {wo['median'] if wo else '—'} ms; port "
            f"{'ok' if verify and verify.get('ok') else 'FAILED'}; rules {res['nft_rules_after']}, "
            f"dnat elements {res['dnat_elements_after']}; load {res['loadavg']}")
        return res


def summarize(levels, ovh):
    out = {"levels": [], "one_vs_hundred": None}
    for lv in levels:
        w, wo = stats(lv["run_with_p_s"]), stats(lv["run_without_p_s"])
        fill_ports = sum(f["ports"] for f in lv["fill"])
        out["levels"].append({
            "P": lv["P"],
            "run_with_p_ms": w,
            "run_without_p_ms": wo,
            "port_share_ms": round(w["median"] - wo["median"], 3) if w and wo else None,
            "rm_with_p_ms": stats(lv["rm_with_p_s"]),
            "rm_without_p_ms": stats(lv["rm_without_p_s"]),
            "nft_rules": [lv["nft_rules_before"], lv["nft_rules_after"]],
            "dnat_elements": [lv["dnat_elements_before"], lv["dnat_elements_after"]],
            "reefd_vmrss_kib": lv["reefd_vmrss_kib"],
            "loadavg": lv["loadavg"],
            "cpu_busy_pct": lv["cpu_busy_pct"],
            "verify": lv["verify"],
            "diag": lv["diag"],
            "fill": [{**{k: v for k, v in x.items() if k != "run_s"}, "run_ms": ms(x["run_s"])}
                     for x in lv["fill"]],
            "fill_ports": fill_ports,
            "samples_ms": {k: [ms(x) for x in lv[k + "_s"]] for k in
                           ("run_with_p", "run_without_p", "rm_with_p", "rm_without_p")},
        })
    if ovh is not None:
        one, hun, no = stats(ovh["one_port"]), stats(ovh["hundred_ports"]), stats(ovh["no_port"])
        out["one_vs_hundred"] = {
            "one_port_ms": one, "hundred_ports_ms": hun, "no_port_ms": no,
            "rm_one_ms": stats(ovh["rm_one"]), "rm_hundred_ms": stats(ovh["rm_hundred"]),
            "per_extra_port_ms": round((hun["median"] - one["median"]) / 99, 4) if one and hun else None,
            "samples_ms": {k: [ms(x) for x in v] for k, v in ovh.items()},
        }
    return out


def pct(b):
    return "—" if not b else f"{b['busy']:.0f}% / {b['others']:.0f}%"


def print_table(s, mach, date, reps, end_load, ids):
    def f(x):
        return "—" if x is None else f"{x:.2f}"

    log("")
    log(f"reef published-ports benchmark — {date}")
    cpu = f"  cpu: {mach['cpu']}" if "cpu" in mach else ""
    log(f"machine: nproc {mach['nproc']}, kernel {mach['kernel']}{cpu}")
    log(f"load avg at start: {mach.get('loadavg_at_start', '?')}   at end: {end_load or '?'}   "
        f"(1/5/15 min; another job may share the CPUs)")
    log("binaries: " + ", ".join(f"{b} sha256 {v.get('sha256', '?')} built {v.get('mtime', '?')}"
                                 for b, v in ids.items()))
    log(f"reef {mach.get('commit', '?')}; R={reps} per cell; wall clock per CLI call in ms; "
        f"each run -d removed with rm -f (not timed) before the next")
    log("")
    log("1. one more published port with P already published "
        "(`reef run -d -p NEW:80 sleep 100000`, a new host port each time)")
    hdr = (f"{'P':>6}  {'-p median':>9} {'-p p90':>8}  {'no-p med':>8} {'no-p p90':>8}  "
           f"{'port share':>10}  {'rm -p med':>9}  {'nft rules':>9}  {'dnat elems':>10}  "
           f"{'reefd RSS':>9}  {'port check':>10}  {'load1':>5}  {'cpu busy/others':>15}")
    log("-" * len(hdr))
    log(hdr)
    log("-" * len(hdr))
    for lv in s["levels"]:
        w, wo, rm = lv["run_with_p_ms"] or {}, lv["run_without_p_ms"] or {}, lv["rm_with_p_ms"] or {}
        rules = lv["nft_rules"]
        rules_txt = str(rules[0]) if rules[0] == rules[1] else f"{rules[0]}/{rules[1]}"
        el = lv["dnat_elements"]
        el_txt = str(el[0]) if el[0] == el[1] else f"{el[0]}/{el[1]}"
        v = lv["verify"] or {}
        vtxt = "ok" if v.get("ok") and v.get("after_rm_ok") else "FAILED"
        rss = lv["reefd_vmrss_kib"]
        log(f"{lv['P']:>6}  {f(w.get('median')):>9} {f(w.get('p90')):>8}  "
            f"{f(wo.get('median')):>8} {f(wo.get('p90')):>8}  {f(lv['port_share_ms']):>10}  "
            f"{f(rm.get('median')):>9}  {rules_txt:>9}  {el_txt:>10}  "
            f"{('—' if rss is None else f'{rss / 1024:.1f} MiB'):>9}  {vtxt:>10}  "
            f"{(lv['loadavg'] or '?').split()[0]:>5}  "
            f"{pct(lv['cpu_busy_pct']):>15}")
    log("-" * len(hdr))
    log("port share = median with -p minus median without -p (interleaved runs); "
        "port check = 127.0.0.1:NEW answers through the last -p container, and not after its rm;")
    log(f"cpu busy/others = share of all {mach['nproc']} CPUs busy during the level's rounds / "
        f"busy with anything but this benchmark, reefd and their children (another job competing)")
    first, last = (s["levels"][0], s["levels"][-1]) if s["levels"] else (None, None)
    if first and last and first is not last and first["run_with_p_ms"] and last["run_with_p_ms"]:
        a, b = first["run_with_p_ms"]["median"], last["run_with_p_ms"]["median"]
        a0, b0 = first["run_without_p_ms"]["median"], last["run_without_p_ms"]["median"]
        log(f"growth P={first['P']} -> P={last['P']}: run -d -p median {a:.2f} -> {b:.2f} ms "
            f"({b - a:+.2f} ms, x{b / a:.2f}); without -p {a0:.2f} -> {b0:.2f} ms ({b0 - a0:+.2f} ms)")
    log("")
    log("where the port share goes, measured inside the namespace after each level's runs "
        "(median of 30):")
    log(f"{'P':>6}  {'read /proc/net/tcp+tcp6':>23}  {'libnftables add element':>23}  "
        f"{'libnftables delete element':>26}")
    def f3(x):
        return "—" if x is None else f"{x:.3f}"

    for lv in s["levels"]:
        d = lv["diag"] or {}
        log(f"{lv['P']:>6}  {f3(d.get('proc_net_tcp_read_ms')):>23}  {f3(d.get('nft_add_element_ms')):>23}  "
            f"{f3(d.get('nft_delete_element_ms')):>26}")
    log("(ms; the /proc/net/tcp column is what reading the host's listeners would cost: reefd used to, "
        "and now probes each host port with bind() instead, in microseconds. It adds the container's "
        "dnat_any elements in one in-process libnftables transaction; `rm` deletes them in another)")
    fills = [x for lv in s["levels"] for x in lv["fill"]]
    if fills:
        log("filling (run -d of one container publishing a range, ms): "
            + ", ".join(f"{x['ports']} ports {x['run_ms']:.1f}" for x in fills))
    o = s["one_vs_hundred"]
    if o:
        log("")
        log("2. one container with 1 and with 100 published ports (empty table, R runs each, interleaved; "
            f"cpu busy/others {pct(o.get('cpu_busy_pct'))})")
        rows = [("reef run -d -p 8000:80", o["one_port_ms"]),
                ("reef run -d -p 8000-8099:8000-8099", o["hundred_ports_ms"]),
                ("reef run -d (no -p)", o["no_port_ms"]),
                ("reef rm -f  of the 1-port container", o["rm_one_ms"]),
                ("reef rm -f  of the 100-port container", o["rm_hundred_ms"])]
        width = max(len(a) for a, _ in rows)
        log("-" * (width + 24))
        log(f"{'':<{width}}  {'median':>9} {'p90':>9}")
        for a, st in rows:
            st = st or {}
            log(f"{a:<{width}}  {f(st.get('median')):>9} {f(st.get('p90')):>9}")
        log("-" * (width + 24))
        log(f"each extra port (100-port minus 1-port median, / 99): {f(o['per_extra_port_ms'])} ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=20, help="runs per measured cell (default 20)")
    ap.add_argument("--levels", default="0,100,1000,10000",
                    help="comma-separated numbers of ports published beforehand (default 0,100,1000,10000)")
    ap.add_argument("--bin-dir", default=str(DEFAULT_BIN_DIR),
                    help="directory holding reefd and reef (default target/release)")
    ap.add_argument("--out", help="write the results as JSON to this file")
    args = ap.parse_args()
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    try:
        levels = sorted({int(x) for x in args.levels.split(",") if x.strip()})
    except ValueError:
        ap.error(f"--levels must be comma-separated integers, not {args.levels!r}")
    if not levels or levels[0] < 0 or levels[-1] > NEW_BASE - FILL_BASE:
        ap.error(f"--levels must lie in 0..{NEW_BASE - FILL_BASE}")
    if NEW_BASE + args.reps * len(levels) > 65535:
        ap.error("too many reps x levels: not enough fresh host ports")
    require_root_and_tools("ip", "nsenter", "umount", "nft", "nc", "socat")

    bins = ensure_bins(args.bin_dir)
    mach = machine()
    ids = bin_ids(bins)
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")

    bench = PortsBench(bins, args.reps)
    st = {"summary": None, "levels": [], "end_load": None}

    def body():
        log(f"reefd {bins / 'reefd'} running as pid {bench.daemon.pid} in namespace {bench.ns}, "
            f"work dir {bench.dir}; load avg {loadavg()}")
        bench.warmup()
        ovh, ovh_busy = bench.one_vs_hundred()
        log(f"  1 vs 100 ports done; load {loadavg()}")
        for p in levels:
            st["levels"].append(bench.level(p))
        bench.record_procs()
        st["end_load"] = loadavg()
        summary = st["summary"] = summarize(st["levels"], ovh)
        summary["one_vs_hundred"]["cpu_busy_pct"] = ovh_busy
        rules = {x for lv in st["levels"] for x in (lv["nft_rules_before"], lv["nft_rules_after"])}
        if len(rules) > 1:
            bench.fail("nft rules", "all levels", f"rule count changes with P: {sorted(rules)}")
        ids_end = bin_ids(bins)
        if ids_end != ids:
            log(f"note: the binaries changed on disk during the run (another build?): {ids_end}; "
                f"reefd kept running the one it started with")
        print_table(summary, mach, date, args.reps, st["end_load"], ids)

    _, error, debris = run_guarded(bench, body)
    summary, end_load = st["summary"], st["end_load"]
    log(f"failures: {len(bench.failures)}" + (
        "" if not bench.failures else "\n  " + "\n  ".join(
            f"{x['what']} {x['name']}: {x['why']}" for x in bench.failures)))

    failed = bool(error or debris or bench.failures)
    if args.out and summary is not None:
        doc = {
            "date": date,
            "machine": mach,
            "binaries": ids,
            "loadavg_at_end": end_load,
            "reps": args.reps,
            "levels": levels,
            "commands": {
                "fill": f"reef run -d --name fillK -p A-B:A-B sleep 100000 (at most {FILL_CHUNK} ports each, "
                        f"host ports from {FILL_BASE})",
                "with_p": f"reef run -d --name pP-i -p PORT:80 sleep 100000 (PORT from {NEW_BASE}, never reused; "
                          f"the last of each level runs sh -c \"{SOCAT}\")",
                "without_p": "reef run -d --name nP-i sleep 100000",
                "one_vs_hundred": [f"reef run -d -p {x} sleep 100000" for x in ONE_VS_100],
                "removal": "reef rm -f NAME after every run (timed separately)",
            },
            "results": summary,
            "failures": bench.failures,
            "cleanup": {"ok": not debris, "leftovers": debris},
            "error": error,
            "ok": not failed,
        }
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
