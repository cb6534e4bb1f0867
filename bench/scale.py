#!/usr/bin/env python3
"""reefd's footprint and its behaviour under concurrent starts.

    python3 bench/scale.py [--concurrent 50] [--containers 1000] [--ports 10000]
                           [--bin-dir target/release] [--out FILE.json]

Needs root, `ip` and `nsenter`. Standard library only. In one reefd (a private network
namespace of its own, bench/benchlib.Sandbox; never the machine's root namespace):

  1. **Idle footprint**: reefd's VmRSS right after start-up (default bridge up, no container).
  2. **Concurrency**: a user network `scalenet`, then --concurrent `reef run -d --network
     scalenet -p PORT:80 sleep ...` CLI processes released at the same instant; total wall
     time (first release to last exit) and each call's wall time (median, p99, max). Then
     checks: every call succeeded, no IP address and no host port was handed out twice, and
     every container answers a TCP connection through its published port (a listener in its
     namespace, a connection to gateway:PORT from the host namespace). Then the same number
     of concurrent `reef rm -f`, timed the same way.
  3. **1,000 containers**: --containers containers started one after another on the default
     bridge (API create + start); VmRSS with them all running; every 100th answers a ping
     from the host namespace. Then they are removed.
  4. **10,000 published ports**: --ports / 100 containers each publishing a range of 100
     ports (`-p A-B:A-B`); VmRSS with all of them published; one port per container is
     checked with a real TCP connection.

Every container this run makes is removed and the cleanup verified; the run fails loudly on
any failed call, duplicate, failed check or leftover.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True
from benchlib import (  # noqa: E402
    DEFAULT_BIN_DIR,
    Sandbox,
    UnixHTTP,
    ensure_bins,
    log,
    machine,
    percentile,
    require_root_and_tools,
    rss_kib,
    run_guarded,
    tcp_token_check,
)

NET, SUBNET, GW = "scalenet", "10.123.0.0/16", "10.123.0.1"
CONC_PORT_BASE = 20000
RANGE_BASE = 30000
CONTAINER_PORT = 80


def mib(kib):
    return None if kib is None else round(kib / 1024.0, 1)


def stats_ms(xs):
    s = sorted(xs)
    return {"median": round(statistics.median(s) * 1000, 2), "p99": round(percentile(s, 0.99) * 1000, 2),
            "max": round(s[-1] * 1000, 2), "min": round(s[0] * 1000, 2), "count": len(s)}


class Scale(Sandbox):
    def __init__(self, bins):
        super().__init__(bins, prefix="rsc")
        self.api = None

    def must_reef(self, *args):
        r = self.reef(*args)
        if r.returncode != 0:
            raise RuntimeError(f"reef {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        return r.stdout.strip()

    def rss(self):
        time.sleep(0.5)  # let the reaper and the DNS publisher settle
        return mib(rss_kib(self.daemon.pid))

    def inspect(self, name):
        st, doc = self.api.call("GET", f"/containers/{name}/json")
        if st != 200 or not isinstance(doc, dict):
            raise RuntimeError(f"inspect {name}: HTTP {st}: {doc!r}"[:300])
        return doc

    def tcp_check(self, name, host_port, net, container_port=CONTAINER_PORT):
        """Listener on container_port in the container's namespace; connect to the gateway's
        host_port from reefd's namespace; a token must come back."""
        ns = self.inspect(name)["NetworkSettings"]
        gw = ns["Networks"][net]["Gateway"]
        why = tcp_token_check(ns["SandboxKey"], host_port, gw, connect_netns=self.ns_path,
                              listen_port=container_port)
        if why:
            log(f"tcp check {name} {gw}:{host_port}: {why}")
        return why is None

    # ---------- 2. concurrency ----------

    def concurrent(self, n):
        self.must_reef("network", "create", "--subnet", SUBNET, "--gateway", GW, NET)
        names = [f"c{i}" for i in range(n)]
        ports = [CONC_PORT_BASE + i for i in range(n)]
        self.live += names

        def runner(i):
            return self.reef_cmd("run", "-d", "--name", names[i], "--network", NET,
                                 "-p", f"{ports[i]}:{CONTAINER_PORT}", "sleep", "100000")

        runs = self.burst([runner(i) for i in range(n)])
        failures = [(names[i], r[2]) for i, r in enumerate(runs["results"]) if r[0] != 0]
        ips, host_ports = [], []
        for i in range(n):
            if runs["results"][i][0] != 0:
                continue
            doc = self.inspect(names[i])
            ips.append(doc["NetworkSettings"]["Networks"][NET]["IPAddress"])
            for binds in (doc["NetworkSettings"].get("Ports") or {}).values():
                host_ports += [b["HostPort"] for b in binds or []]
        dup_ips = sorted({x for x in ips if ips.count(x) > 1})
        dup_ports = sorted({x for x in host_ports if host_ports.count(x) > 1})
        checks_failed = [names[i] for i in range(n)
                         if runs["results"][i][0] == 0 and not self.tcp_check(names[i], ports[i], NET)]
        rms = self.burst([self.reef_cmd("rm", "-f", nm) for nm in names])
        rm_failures = [(names[i], r[2]) for i, r in enumerate(rms["results"]) if r[0] != 0]
        left = self.reef("ps", "-aq").stdout.split()
        self.live = [x for x in self.live if x not in names]
        return {
            "n": n, "total_ms": round(runs["total_s"] * 1000, 1), "per_call_ms": stats_ms(runs["walls"]),
            "failures": failures, "duplicate_ips": dup_ips, "duplicate_host_ports": dup_ports,
            "tcp_checks": n - len(failures), "tcp_check_failures": checks_failed,
            "rm_total_ms": round(rms["total_s"] * 1000, 1), "rm_per_call_ms": stats_ms(rms["walls"]),
            "rm_failures": rm_failures, "left_after_rm": left,
        }

    def burst(self, cmds):
        """Start every command, then release them all at once (they block on a pipe until
        then); wall time of each from the release to its exit."""
        gate_r, gate_w = os.pipe()
        procs = []
        for cmd in cmds:
            # `read` fails (EOF) only when every write end is closed; `&&` so that a shell
            # that could not wait on the gate does not run early.
            procs.append(subprocess.Popen(["sh", "-c", f'read _ <&{gate_r}; [ $? -eq 1 ] && exec "$@"', "sh", *cmd],
                                          pass_fds=(gate_r,), stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        os.close(gate_r)
        ends = [None] * len(procs)
        results = [None] * len(procs)

        def wait(i, p):
            out, err = p.communicate(timeout=300)
            ends[i] = time.perf_counter()
            results[i] = (p.returncode, out.decode().strip(), err.decode().strip()[-300:])

        threads = [threading.Thread(target=wait, args=(i, p)) for i, p in enumerate(procs)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # every shell is waiting on the gate
        t0 = time.perf_counter()
        os.close(gate_w)
        for t in threads:
            t.join()
        walls = [e - t0 for e in ends]
        return {"total_s": max(ends) - t0, "walls": walls, "results": results}

    # ---------- 3. many containers ----------

    def many(self, n):
        names = [f"m{i}" for i in range(n)]
        t0 = time.perf_counter()
        for nm in names:
            st, r = self.api.call("POST", f"/containers/create?name={nm}", {"Cmd": ["sleep", "100000"]})
            if st != 201:
                raise RuntimeError(f"create {nm}: HTTP {st}: {r!r}"[:300])
            self.live.append(nm)
            st, r = self.api.call("POST", f"/containers/{nm}/start")
            if st not in (204, 304):
                raise RuntimeError(f"start {nm}: HTTP {st}: {r!r}"[:300])
        took = time.perf_counter() - t0
        rss = self.rss()
        sample = names[::100]
        ips = [self.inspect(nm)["NetworkSettings"]["IPAddress"] for nm in sample]
        bad = [nm for nm, ip in zip(sample, ips)
               if not ip or self.in_ns("ping", "-c1", "-W2", ip).returncode != 0]
        if bad:
            raise RuntimeError(f"containers without an address or not answering ping: {bad}")
        self.remove(names)
        return {"n": n, "rss_mib": rss, "start_all_s": round(took, 2), "pinged": len(sample)}

    # ---------- 4. many ports ----------

    def ports(self, total):
        per = 100
        k = total // per
        names = [f"p{i}" for i in range(k)]
        for i, nm in enumerate(names):
            a = RANGE_BASE + i * per
            spec = f"{a}-{a + per - 1}:{a}-{a + per - 1}"
            self.must_reef("run", "-d", "--name", nm, "-p", spec, "sleep", "100000")
            self.live.append(nm)
        rss = self.rss()
        # One port of each range, a different offset each time.
        failed = [nm for i, nm in enumerate(names)
                  if not self.tcp_check(nm, RANGE_BASE + i * per + i % per, "bridge",
                                        container_port=RANGE_BASE + i * per + i % per)]
        if failed:
            raise RuntimeError(f"published port checks failed for {failed}")
        self.remove(names)
        return {"ports": k * per, "containers": k, "rss_mib": rss, "tcp_checks": k}

    def remove(self, names):
        for nm in names:
            st, r = self.api.call("DELETE", f"/containers/{nm}?force=1")
            if st not in (200, 204):
                raise RuntimeError(f"rm {nm}: HTTP {st}: {r!r}"[:300])
        gone = set(names)
        self.live = [x for x in self.live if x not in gone]


def print_table(res, mach, date, args):
    c = res["concurrency"]
    print()
    print(f"## Footprint and concurrency — `python3 bench/scale.py --concurrent {args.concurrent} "
          f"--containers {args.containers} --ports {args.ports}`")
    print()
    print(f"{date}, commit {mach.get('commit', '?')}, {mach.get('nproc')} CPUs, load at start "
          f"{mach.get('loadavg_at_start', '?')}.")
    print()
    print("| reefd RSS | MiB |")
    print("| --- | --- |")
    print(f"| idle (default bridge, no container) | {res['rss_idle_mib']} |")
    print(f"| after {c['n']} concurrent runs and removals (nothing running) | {res['rss_after_concurrency_mib']} |")
    print(f"| {res['many']['n']:,} containers running | {res['many']['rss_mib']} |")
    print(f"| {res['ports']['ports']:,} published ports ({res['ports']['containers']} containers × 100) "
          f"| {res['ports']['rss_mib']} |")
    print()
    pc, rc = c["per_call_ms"], c["rm_per_call_ms"]
    print(f"| {c['n']} at once | total | per call median | p99 | max | failures | duplicate IPs / ports | TCP checks |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| `reef run -d --network {NET} -p` | {c['total_ms']} ms | {pc['median']} ms | {pc['p99']} ms | "
          f"{pc['max']} ms | {len(c['failures'])} | {len(c['duplicate_ips'])} / {len(c['duplicate_host_ports'])} | "
          f"{c['tcp_checks'] - len(c['tcp_check_failures'])}/{c['tcp_checks']} |")
    print(f"| `reef rm -f` | {c['rm_total_ms']} ms | {rc['median']} ms | {rc['p99']} ms | {rc['max']} ms | "
          f"{len(c['rm_failures'])} | | |")
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrent", type=int, default=50, help="concurrent runs (default 50)")
    ap.add_argument("--containers", type=int, default=1000, help="containers for the footprint (default 1000)")
    ap.add_argument("--ports", type=int, default=10000, help="published ports, a multiple of 100 (default 10000)")
    ap.add_argument("--bin-dir", default=str(DEFAULT_BIN_DIR), help="reefd and reef (default target/release)")
    ap.add_argument("--out", help="write the results as JSON to this file")
    args = ap.parse_args()
    if args.concurrent < 1 or args.containers < 1 or args.ports < 100 or args.ports % 100:
        ap.error("--concurrent and --containers must be positive, --ports a positive multiple of 100")
    if args.ports // 100 > 350:
        ap.error("--ports above 35,000 would run into the ephemeral port range")
    require_root_and_tools("ip", "nsenter")
    bins = ensure_bins(args.bin_dir)
    mach = machine()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")

    bench = Scale(bins)
    res = {}

    def body():
        bench.api = UnixHTTP(str(bench.dir / "reef.sock"))
        try:
            res["rss_idle_mib"] = bench.rss()
            log(f"reefd pid {bench.daemon.pid} in {bench.ns}: idle RSS {res['rss_idle_mib']} MiB")
            res["concurrency"] = bench.concurrent(args.concurrent)
            c = res["concurrency"]
            log(f"{args.concurrent} concurrent runs: total {c['total_ms']} ms, p99 {c['per_call_ms']['p99']} ms, "
                f"failures {len(c['failures'])}")
            bench.record_procs()
            res["rss_after_concurrency_mib"] = bench.rss()
            res["many"] = bench.many(args.containers)
            log(f"{args.containers} containers: RSS {res['many']['rss_mib']} MiB")
            res["ports"] = bench.ports(args.ports)
            log(f"{args.ports} ports: RSS {res['ports']['rss_mib']} MiB")
            print_table(res, mach, date, args)
        finally:
            bench.api.close()

    _, error, debris = run_guarded(bench, body)
    c = res.get("concurrency") or {}
    failed = bool(error or debris or c.get("failures") or c.get("duplicate_ips") or c.get("duplicate_host_ports")
                  or c.get("tcp_check_failures") or c.get("rm_failures") or c.get("left_after_rm"))
    if args.out:
        doc = {"date": date, "machine": mach, "args": vars(args), **res, "error": error,
               "cleanup": {"ok": not debris, "leftovers": debris}, "ok": not failed}
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
