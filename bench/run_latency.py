#!/usr/bin/env python3
"""Container start/teardown latency of reef, measured the way a user sees it.

    python3 bench/run_latency.py [--n 100] [--bin-dir target/release] [--out FILE.json]

Needs root, `ip`, `nsenter` and `ping`. Standard library only.

What it does:
  * creates a private network namespace `rb-<pid>` (with `lo` up) and a fresh work
    directory /tmp/rb-<pid>-XXXX, and runs `reefd` inside that namespace with
    `nsenter --net=...` (never in the machine's root namespace; `nsenter` rather than
    `ip netns exec`, so reefd shares our mount namespace and its sandbox mounts stay
    visible to the cleanup);
  * times `reef run -d --name bN sleep 100000` for N = 1..n, one after another (wall
    clock around the CLI process: CLI start-up + API round trip + the daemon's work);
    every 10th container is checked for a non-empty IP and answers one ping from the
    namespace;
  * times `reef inspect` over 50 calls (the CLI + API overhead floor, to subtract);
  * times `reef rm -f bN` for each container;
  * reads reefd's VmRSS idle and with n containers;
  * prints a table and writes the same numbers as JSON to --out.

Cleanup runs in a `finally` (also on SIGINT/SIGTERM): `reef rm -f` every container,
SIGTERM then SIGKILL reefd, `kill -9` of every process living in the namespace or in one
of reefd's sandbox namespaces, `umount -l` of the sandbox files and their directory,
`ip netns del`, removal of the work directory; then it checks that nothing is left.
Exit status is non-zero on any failed run, network check, removal or leftover.
"""

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ for benchlib in the source tree
from benchlib import (  # noqa: E402  (bench/ is on sys.path: it holds this script)
    DEFAULT_BIN_DIR,
    Sandbox,
    ensure_bins,
    log,
    machine,
    ms,
    p90,
    require_root_and_tools,
    rss_kib,
    run_guarded,
)

INSPECT_CALLS = 50


class Bench(Sandbox):
    """reefd in a private namespace (see benchlib.Sandbox), plus the latency measurement."""

    def __init__(self, bins):
        super().__init__(bins, prefix="rb")

    # ---------- measurement ----------

    def measure(self, n):
        res = {"n": n}
        res["rss_idle_kib"] = rss_kib(self.daemon.pid)

        run_s, run_fail, net_checks, net_fail = [], [], 0, []
        for i in range(1, n + 1):
            name = f"b{i}"
            self.live.append(name)
            t0 = time.perf_counter()
            r = self.reef("run", "-d", "--name", name, "sleep", "100000")
            dt = time.perf_counter() - t0
            if r.returncode != 0:
                run_fail.append({"name": name, "code": r.returncode, "stderr": r.stderr.strip()})
                log(f"  run {name} FAILED ({r.returncode}): {r.stderr.strip()}")
                continue
            run_s.append(dt)
            if i % 10 == 0:
                net_checks += 1
                ok, why = self.check_net(name)
                if not ok:
                    net_fail.append({"name": name, "why": why})
                log(f"  {i:4d}/{n} started; last run -d {ms(dt):8.2f} ms; "
                    f"{name} network {'ok' if ok else 'FAILED: ' + why}")
        res["run_s"] = run_s
        res["run_failures"] = run_fail
        res["net_checks"] = net_checks
        res["net_failures"] = net_fail

        self.record_procs()
        res["rss_loaded_kib"] = rss_kib(self.daemon.pid)
        res["sleep_procs"] = sum(1 for _, c in self.procs.values() if c == "sleep")

        # CLI + API floor: an inspect does a round trip but no kernel work.
        target = next((c for c in self.live if c not in {f["name"] for f in run_fail}), None)
        insp = []
        if target:
            for _ in range(INSPECT_CALLS):
                t0 = time.perf_counter()
                r = self.reef("inspect", target)
                dt = time.perf_counter() - t0
                if r.returncode == 0:
                    insp.append(dt)
        res["inspect_s"] = insp

        rm_s, rm_fail = [], []
        for name in list(self.live):
            t0 = time.perf_counter()
            r = self.reef("rm", "-f", name)
            dt = time.perf_counter() - t0
            if r.returncode == 0:
                rm_s.append(dt)
                self.live.remove(name)
            elif name not in {f["name"] for f in run_fail}:
                rm_fail.append({"name": name, "code": r.returncode, "stderr": r.stderr.strip()})
                log(f"  rm -f {name} FAILED ({r.returncode}): {r.stderr.strip()}")
        res["rm_s"] = rm_s
        res["rm_failures"] = rm_fail
        left = self.reef("ps", "-aq", timeout=30).stdout.split()
        res["left_after_rm"] = left
        return res

    def check_net(self, name):
        r = self.reef("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name, timeout=30)
        ip = r.stdout.strip()
        if r.returncode != 0 or not ip:
            return False, f"no IP (inspect exit {r.returncode}: {r.stderr.strip()})"
        p = self.in_ns("ping", "-c1", "-W1", ip, timeout=10)
        if p.returncode != 0:
            return False, f"ping {ip} failed"
        return True, ip

    # ---------- cleanup ----------

def summarize(res, n):
    run = [ms(x) for x in res["run_s"]]
    rm = [ms(x) for x in res["rm_s"]]
    insp = [ms(x) for x in res["inspect_s"]]
    k = max(1, n // 10)

    def stats(xs):
        if not xs:
            return None
        return {"median": round(statistics.median(xs), 3), "p90": round(p90(xs), 3),
                "min": min(xs), "max": max(xs), "count": len(xs)}

    out = {
        "run_d_ms": stats(run),
        "rm_f_ms": stats(rm),
        "inspect_floor_ms": stats(insp),
        "growth": None,
        "reefd_vmrss_kib": {"idle": res["rss_idle_kib"], f"with_{n}_containers": res["rss_loaded_kib"]},
    }
    if len(run) >= 2 * k:
        out["growth"] = {
            "window": k,
            "first_median_ms": round(statistics.median(run[:k]), 3),
            "last_median_ms": round(statistics.median(run[-k:]), 3),
        }
    out["samples_ms"] = {"run_d": run, "rm_f": rm, "inspect": insp}
    return out


def print_table(s, res, n, mach, date):
    def f(x):
        return "—" if x is None else f"{x:9.2f} ms"

    def mib(k):
        return "—" if k is None else f"{k / 1024:9.1f} MiB"

    r, rm, ins, g = s["run_d_ms"] or {}, s["rm_f_ms"] or {}, s["inspect_floor_ms"] or {}, s["growth"] or {}
    k = g.get("window", max(1, n // 10))
    rows = [
        ("reef run -d   median", f(r.get("median"))),
        ("              p90", f(r.get("p90"))),
        ("              min", f(r.get("min"))),
        ("              max", f(r.get("max"))),
        (f"              median of first {k} (b1..b{k})", f(g.get("first_median_ms"))),
        (f"              median of last {k} (b{n - k + 1}..b{n})", f(g.get("last_median_ms"))),
        ("reef rm -f    median", f(rm.get("median"))),
        (f"reef inspect  median of {INSPECT_CALLS} (CLI+API floor)", f(ins.get("median"))),
        ("run -d median minus inspect floor",
         f(round(r["median"] - ins["median"], 3)) if r and ins else "—"),
        ("reefd VmRSS   idle (0 containers)", mib(res["rss_idle_kib"])),
        (f"              with {n - len(res['run_failures'])} containers", mib(res["rss_loaded_kib"])),
    ]
    width = max(len(a) for a, _ in rows)
    cpu = f"  cpu: {mach['cpu']}" if "cpu" in mach else ""
    log("")
    log(f"reef latency benchmark — {date}")
    load = f"  load avg at start: {mach['loadavg_at_start']}" if "loadavg_at_start" in mach else ""
    log(f"machine: nproc {mach['nproc']}, kernel {mach['kernel']}{cpu}{load}")
    log(f"reef {mach.get('commit', '?')}; {n} containers `reef run -d --name bN sleep 100000`, "
        f"one after another, default bridge; wall clock per CLI call")
    log("-" * (width + 16))
    for a, b in rows:
        log(f"{a:<{width}}  {b:>13}")
    log("-" * (width + 16))
    nf = len(res["net_failures"])
    log(f"network checks (IP + ping, every 10th): {res['net_checks'] - nf}/{res['net_checks']} ok"
        + ("" if not nf else "  FAILED: " + ", ".join(x["name"] for x in res["net_failures"])))
    log(f"run -d failures: {len(res['run_failures'])}   rm -f failures: {len(res['rm_failures'])}   "
        f"containers left after rm: {len(res['left_after_rm'])}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100, help="containers to start (default 100)")
    ap.add_argument("--bin-dir", default=str(DEFAULT_BIN_DIR),
                    help="directory holding reefd and reef (default target/release)")
    ap.add_argument("--out", help="write the results as JSON to this file")
    args = ap.parse_args()
    if args.n < 1:
        ap.error("--n must be at least 1")
    require_root_and_tools("ip", "nsenter", "ping", "umount")

    bins = ensure_bins(args.bin_dir)
    mach = machine()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")

    bench = Bench(bins)
    st = {}

    def body():
        log(f"reefd {bins / 'reefd'} running as pid {bench.daemon.pid} in namespace {bench.ns}, "
            f"work dir {bench.dir}")
        st["res"] = bench.measure(args.n)
        st["summary"] = summarize(st["res"], args.n)
        print_table(st["summary"], st["res"], args.n, mach, date)

    _, error, debris = run_guarded(bench, body)
    res, summary = st.get("res"), st.get("summary")
    failed = bool(error or debris)
    if res is not None:
        failed |= bool(res["run_failures"] or res["net_failures"] or res["rm_failures"]
                       or res["left_after_rm"])
    if args.out and summary is not None:
        doc = {
            "date": date,
            "machine": mach,
            "n": args.n,
            "command": f"reef run -d --name bN sleep 100000 (N=1..{args.n}), then reef rm -f bN",
            **{k: v for k, v in summary.items() if k != "samples_ms"},
            "inspect_calls": INSPECT_CALLS,
            "network_checks": {"checked": res["net_checks"], "failures": res["net_failures"]},
            "run_failures": res["run_failures"],
            "rm_failures": res["rm_failures"],
            "containers_left_after_rm": res["left_after_rm"],
            "cleanup": {"ok": not debris, "leftovers": debris},
            "ok": not failed,
            "samples_ms": summary["samples_ms"],
        }
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
