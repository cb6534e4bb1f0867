#!/usr/bin/env python3
"""reef's whole benchmark suite, side by side with the peers, in one run.

    python3 bench/suite.py [--quick] [--only PART,...] [--out bench/results/suite.json]

Needs root. Builds the release binaries when missing, installs the peers it needs (Debian
packages; netavark 2.1 through shared/peers/install-modern-netavark.sh), then runs, one
after another, each in network namespaces of its own (never the machine's root namespace):

  attach    bench/peers.py --n 1,100,1000   reef (CLI and API) vs netavark 2.1, netavark 1.4,
                                            CNI bridge+portmap: attach and detach per container
  ports     bench/ports.py                  publishing one more port with 0..10,000 published;
                                            a container with 100 ports
  dns       bench/dns.py                    dnsperf: reef vs aardvark-dns (2.1 when installed,
                                            else Debian's 1.4) vs dnsmasq
  datapath  bench/datapath.py               iperf3: bridge and published port vs a plain veth
  scale     bench/scale.py                  reefd RSS idle / 1,000 containers / 10,000 ports;
                                            50 concurrent `reef run -d -p`

Each part prints its own table (the Markdown that BENCHMARKS.md keeps) and verifies what it
timed (published ports and DNS answer). At the end this script prints the issue-5 targets
with the measured figure and met / NOT MET for each, and writes every part's JSON plus the
target table to --out. `--quick` runs every part with small sizes (a smoke test of the
suite, a few minutes; its figures are not the benchmark). Exit status: non-zero when a part
failed (a check, a leftover), not when a target is missed.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
from benchlib import REPO, ensure_bins, log, machine  # noqa: E402

BENCH = Path(__file__).resolve().parent

PARTS = {
    "attach": (["peers.py", "--n", "1,100,1000"], ["peers.py", "--n", "1,20", "--reps", "3"]),
    "ports": (["ports.py"], ["ports.py", "--reps", "5", "--levels", "0,100,1000"]),
    "dns": (["dns.py"], ["dns.py", "--secs", "3", "--reps", "1"]),
    "datapath": (["datapath.py"], ["datapath.py", "--secs", "2", "--reps", "1"]),
    "scale": (["scale.py"], ["scale.py", "--containers", "200", "--ports", "1000"]),
}


# The DNS peer is the newest aardvark-dns there is here: 2.1 (installed for the attach part
# by shared/peers/install-modern-netavark.sh) when present, else Debian's 1.4.
MODERN_NETAVARK = ("/opt/peers/bin/netavark", "/opt/peers/bin/aardvark-dns")


def part_env(name):
    env = dict(os.environ)
    if name == "dns" and all(os.access(p, os.X_OK) for p in MODERN_NETAVARK):
        env.setdefault("NETAVARK_BIN", MODERN_NETAVARK[0])
        env.setdefault("AARDVARK_BIN", MODERN_NETAVARK[1])
    return env


def run_part(name, argv, out):
    cmd = [sys.executable, str(BENCH / argv[0]), *argv[1:], "--out", str(out)]
    env = part_env(name)
    shown = " ".join(f"{k}={env[k]}" for k in ("NETAVARK_BIN", "AARDVARK_BIN") if k in env and name == "dns")
    log(f"\n===== {name}: {(shown + ' ') if shown else ''}{' '.join(['python3', 'bench/' + argv[0], *argv[1:]])}")
    t0 = time.monotonic()
    rc = subprocess.run(cmd, cwd=REPO, env=env).returncode
    took = time.monotonic() - t0
    doc = None
    try:
        doc = json.loads(out.read_text())
    except (OSError, ValueError):
        pass
    log(f"===== {name}: exit {rc} in {took:.0f} s")
    return {"command": " ".join(["python3", "bench/" + argv[0], *argv[1:]]), "exit": rc,
            "seconds": round(took), "result": doc}


# ---------- targets ----------


def target(what, measured, goal, met):
    return {"target": what, "measured": measured, "goal": goal, "met": met}


def attach_targets(doc):
    """Per N: attach and detach medians against netavark 2.1's; flatness at the largest N."""
    out = []
    sums = doc.get("summaries") or []
    if not sums:
        return out
    by = {(s["kind"], s["n"]): s for s in sums}
    ns = sorted({s["n"] for s in sums})
    for n in ns:
        nv = by.get(("netavark2", n))
        for kind in ("reef-api", "reef-cli"):
            s = by.get((kind, n))
            if not s:
                continue
            for ph in ("attach", "detach"):
                m = s[ph]["median"]
                if nv:
                    ref = nv[ph]["median"]
                    out.append(target(f"{ph} ({kind}, N={n}) ≤ 1/20 of netavark 2.1 and < 3 ms",
                                      f"{m:.2f} ms (netavark 2.1 {ref:.2f} ms, ×{ref / m:.1f})",
                                      f"≤ {min(ref / 20, 3):.2f} ms", m <= ref / 20 and m < 3))
                else:
                    out.append(target(f"{ph} ({kind}, N={n}) < 3 ms", f"{m:.2f} ms", "< 3 ms", m < 3))
    for kind in ("reef-api", "reef-cli"):
        s = by.get((kind, ns[-1]))
        f, l = (s.get("attach_first10"), s.get("attach_last10")) if s else (None, None)
        if f and l:
            out.append(target(f"attach flat ({kind}, N={ns[-1]}): last 10% ≤ 1.2× first 10%",
                              f"{f:.2f} → {l:.2f} ms (×{l / f:.2f})", "≤ ×1.2", l <= 1.2 * f))
    return out


def ports_targets(doc):
    levels = ((doc.get("results") or {}).get("levels")) or []
    if len(levels) < 2:
        return []
    first, last = levels[0], levels[-1]
    a, b = first["run_with_p_ms"]["median"], last["run_with_p_ms"]["median"]
    return [target(f"publishing a port with {last['P']:,} published as fast as with {first['P']}",
                   f"{b:.2f} ms vs {a:.2f} ms (×{b / a:.2f}); port share {last['port_share_ms']} vs "
                   f"{first['port_share_ms']} ms", "≤ ×1.1", b <= 1.1 * a)]


def dns_targets(doc):
    res = doc.get("results") or {}

    def med(server):
        return ((res.get(server) or {}).get("load") or {}).get("median") or {}

    reef, peers = med("reef"), {s: med(s) for s in res if s != "reef"}
    out = []
    if reef.get("qps") and (peers.get("dnsmasq") or {}).get("qps"):
        d = peers["dnsmasq"]
        measured = f"{reef['qps']:,.0f} vs {d['qps']:,.0f} (×{reef['qps'] / d['qps']:.2f})"
        if reef.get("server_cpu_pct") and d.get("server_cpu_pct"):
            # Queries per second of server CPU: what each could answer with a core to itself,
            # when the client (dnsperf, on the other core) is what limits the qps.
            rc, dc = (100 * x["qps"] / x["server_cpu_pct"] for x in (reef, d))
            measured += f"; per CPU-second {rc:,.0f} vs {dc:,.0f} (×{rc / dc:.2f})"
        out.append(target("DNS qps ≥ 2× dnsmasq", measured, "≥ ×2", reef["qps"] >= 2 * d["qps"]))
    p99s = {s: p["p99_us"] for s, p in peers.items() if p.get("p99_us")}
    if reef.get("p99_us") and p99s:
        best = min(p99s.values())
        out.append(target("DNS p99 at 100 in flight below every peer's",
                          f"{reef['p99_us']:,.0f} µs vs " + ", ".join(f"{s} {v:,.0f}" for s, v in p99s.items()),
                          f"< {best:,.0f} µs", reef["p99_us"] < best))
    return out


def datapath_targets(doc):
    r = doc.get("ratio_to_veth") or {}
    out = []
    if "bridge" in r:
        out.append(target("bridge ≥ 95% of a plain veth", f"{r['bridge'] * 100:.1f}%", "≥ 95%", r["bridge"] >= 0.95))
    if "published" in r:
        out.append(target("published port ≥ 90% of a plain veth", f"{r['published'] * 100:.1f}%", "≥ 90%",
                          r["published"] >= 0.90))
    return out


def scale_targets(doc):
    out = []
    if doc.get("rss_idle_mib") is not None:
        out.append(target("reefd RSS idle ≤ 20 MiB", f"{doc['rss_idle_mib']} MiB", "≤ 20 MiB",
                          doc["rss_idle_mib"] <= 20))
    many = doc.get("many") or {}
    if many.get("rss_mib") is not None:
        out.append(target(f"reefd RSS with {many['n']:,} containers ≤ 60 MiB", f"{many['rss_mib']} MiB", "≤ 60 MiB",
                          many["rss_mib"] <= 60))
    c = doc.get("concurrency") or {}
    if c:
        ok = not (c["failures"] or c["duplicate_ips"] or c["duplicate_host_ports"] or c["tcp_check_failures"])
        out.append(target(f"{c['n']} concurrent `reef run -d -p`: all succeed, no duplicates, ports answer",
                          f"total {c['total_ms']} ms, p99 {c['per_call_ms']['p99']} ms, "
                          f"{len(c['failures'])} failures", "correct", ok))
    return out


CHECKS = {"attach": attach_targets, "ports": ports_targets, "dns": dns_targets,
          "datapath": datapath_targets, "scale": scale_targets}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test of the suite")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "suite.json"),
                    help="JSON file of the whole run (default bench/results/suite.json)")
    args = ap.parse_args()
    parts = [p for p in args.only.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {unknown}; choose from {','.join(PARTS)}")
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    ensure_bins(REPO / "target" / "release")
    mach = machine()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    t0 = time.monotonic()

    runs, targets = {}, []
    with tempfile.TemporaryDirectory(prefix="reef-suite-") as tmp:
        for p in parts:
            full, quick = PARTS[p]
            runs[p] = run_part(p, quick if args.quick else full, Path(tmp) / f"{p}.json")
            if runs[p]["result"]:
                targets += CHECKS[p](runs[p]["result"])

    print()
    print(f"## Issue-5 targets — `python3 bench/suite.py{' --quick' if args.quick else ''}`")
    print()
    print(f"{date}, commit {mach.get('commit', '?')}, {mach.get('nproc')} CPUs ({mach.get('cpu', '?')}), "
          f"kernel {mach.get('kernel')}, {time.monotonic() - t0:.0f} s.")
    print()
    print("| target | measured | goal | met |")
    print("| --- | --- | --- | --- |")
    for t in targets:
        print(f"| {t['target']} | {t['measured']} | {t['goal']} | {'yes' if t['met'] else '**NOT MET**'} |")
    print()
    failed = [p for p, r in runs.items() if r["exit"] != 0]
    print("parts: " + ", ".join(f"{p} {'ok' if r['exit'] == 0 else 'FAILED'} ({r['seconds']} s)"
                                for p, r in runs.items()))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"date": date, "machine": mach, "quick": args.quick, "seconds": round(time.monotonic() - t0),
           "targets": targets, "parts": runs, "ok": not failed}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    log(f"wrote {out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
