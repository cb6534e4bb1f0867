#!/usr/bin/env python3
"""Does an operation get slower as containers accumulate? Times it N times in a row and,
optionally, profiles the first and the last window with `perf`.

    python3 bench/growth.py [--op connect|run] [--n 1000] [--window 100] [--perf DIR]
                            [--bin-dir target/release]

Needs root, `ip`, `nsenter`, `dig` (and `perf` with --perf). Standard library only. One
reefd in a private network namespace (bench/benchlib.Sandbox; never the machine's root
namespace) with two user networks, `prepnet` and `benchnet`:

  --op connect  N containers are started on prepnet first (untimed); then each one is
                connected to benchnet (POST /networks/benchnet/connect), timed.
  --op run      N containers are created and started on benchnet (POST /containers/create
                + /start), timed.

Prints the median wall time of each tenth of the N calls, and of the first and last 10%.
With --perf DIR, `perf record -a -g` runs over the first and the last --window calls
(DIR/first.data, DIR/last.data) and the busiest commands and symbols of each window are
printed as CPU milliseconds per call, idle excluded (`perf report -n --sort comm,dso` and
`--sort comm,sym`). The last container is
checked: benchnet's DNS answers its name with its addresses. Everything is removed after, and
the cleanup verified.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True
from benchlib import (  # noqa: E402
    DEFAULT_BIN_DIR,
    Sandbox,
    UnixHTTP,
    ensure_bins,
    log,
    require_root_and_tools,
    run_guarded,
)

PREP = ("prepnet", "10.120.0.0/16")
BENCH = ("benchnet", "10.121.0.0/16", "10.121.0.1")
PERF_HZ = 2000


def perf_start(perf_dir, tag):
    if not perf_dir:
        return None
    p = subprocess.Popen(
        ["perf", "record", "-a", "-g", "-F", str(PERF_HZ), "-o", os.path.join(perf_dir, f"{tag}.data")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # perf first records every existing process (thousands here) before it samples.
    time.sleep(5)
    return p


def perf_stop(p):
    if p is not None:
        p.send_signal(signal.SIGINT)
        p.wait()


def perf_summary(path, calls, lines=12):
    """CPU ms per call (all CPUs, idle excluded) by command and object, then by symbol."""
    out = []
    for sort in ("comm,dso", "comm,sym"):
        r = subprocess.run(["perf", "report", "-i", path, "-n", "--no-children", "--sort", sort,
                            "-g", "none", "--stdio"], capture_output=True, text=True)
        rows = []
        for ln in r.stdout.splitlines():
            parts = ln.split(None, 2)
            if len(parts) < 3 or ln.startswith("#") or not parts[1].isdigit():
                continue
            if parts[2].startswith("swapper"):
                continue
            rows.append((int(parts[1]) * 1000 / PERF_HZ / calls, parts[2]))
        out.append(f"  CPU ms per call by {sort} (perf report -n --sort {sort}, idle excluded):")
        out.extend(f"    {ms:7.3f}  {what}" for ms, what in rows[:lines])
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--op", choices=("connect", "run"), default="connect")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--window", type=int, default=100, help="calls profiled at each end (default 100)")
    ap.add_argument("--perf", metavar="DIR", help="profile the first and last window into DIR")
    ap.add_argument("--bin-dir", default=str(DEFAULT_BIN_DIR))
    args = ap.parse_args()
    if args.n < 10 or args.window > args.n:
        ap.error("--n must be at least 10 and --window at most --n")
    require_root_and_tools("ip", "nsenter", "dig", *(["perf"] if args.perf else []))
    if args.perf:
        os.makedirs(args.perf, exist_ok=True)
    bins = ensure_bins(args.bin_dir)
    bench = Sandbox(bins, prefix="rgr")

    def body():
        for name, subnet in (PREP, BENCH[:2]):
            r = bench.reef("network", "create", "--subnet", subnet, name)
            if r.returncode != 0:
                raise RuntimeError(f"network create {name}: {r.stderr.strip()}")
        api = UnixHTTP(f"{bench.dir}/reef.sock")
        names = [f"g{i}" for i in range(args.n)]

        def create_start(name, net):
            st, r = api.call("POST", f"/containers/create?name={name}",
                             {"Cmd": ["sleep", "100000"], "HostConfig": {"NetworkMode": net}})
            if st != 201:
                raise RuntimeError(f"create {name}: HTTP {st}: {r!r}"[:300])
            bench.live.append(name)
            st, r = api.call("POST", f"/containers/{name}/start")
            if st not in (204, 304):
                raise RuntimeError(f"start {name}: HTTP {st}: {r!r}"[:300])

        if args.op == "connect":
            for name in names:
                create_start(name, PREP[0])
            log(f"{args.n} containers running on {PREP[0]}")
            time.sleep(2)

        times, prof = [], None
        for i, name in enumerate(names):
            if i == 0:
                prof = perf_start(args.perf, "first")
            if i == args.n - args.window:
                prof = perf_start(args.perf, "last")
            t0 = time.perf_counter()
            if args.op == "connect":
                st, r = api.call("POST", f"/networks/{BENCH[0]}/connect", {"Container": name}, retry=False)
                if st != 200:
                    raise RuntimeError(f"connect {name}: HTTP {st}: {r!r}"[:300])
            else:
                create_start(name, BENCH[0])
            times.append(time.perf_counter() - t0)
            if i == args.window - 1:
                perf_stop(prof)
                prof = None
        perf_stop(prof)

        last = names[-1]
        st, doc = api.call("GET", f"/containers/{last}/json")
        # The answer holds its address on every network the asker shares with it.
        ips = sorted(n["IPAddress"] for n in doc["NetworkSettings"]["Networks"].values())
        netns = doc["NetworkSettings"]["SandboxKey"]
        r = subprocess.run(["nsenter", f"--net={netns}", "dig", "+short", "+time=2", "+tries=1",
                            f"@{BENCH[2]}", last], capture_output=True, text=True)
        if sorted(r.stdout.split()) != ips:
            raise RuntimeError(f"DNS check: {last} should be {ips}, got {r.stdout.strip()!r}")

        ms = [t * 1000 for t in times]
        k = args.n // 10
        op = "POST /networks/benchnet/connect" if args.op == "connect" else "create + start on benchnet"
        print(f"\n{op}, N={args.n}: median {statistics.median(ms):.2f} ms; first 10% "
              f"{statistics.median(ms[:k]):.2f} ms, last 10% {statistics.median(ms[-k:]):.2f} ms "
              f"(x{statistics.median(ms[-k:]) / statistics.median(ms[:k]):.2f}); DNS check ok")
        print("per tenth: " + "  ".join(f"{j}-{j + k - 1}: {statistics.median(ms[j:j + k]):.2f}"
                                        for j in range(0, args.n - k + 1, k)))
        if args.perf:
            for tag in ("first", "last"):
                print(f"\nprofile of the {tag} {args.window} calls (all CPUs):")
                print(perf_summary(os.path.join(args.perf, f"{tag}.data"), args.window))

    _, error, debris = run_guarded(bench, body)
    sys.exit(1 if error or debris else 0)


if __name__ == "__main__":
    main()
