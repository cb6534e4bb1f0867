#!/usr/bin/env python3
"""TCP throughput through reef's data path, as ratios to a plain veth between two namespaces.

    python3 bench/datapath.py [--secs 5] [--reps 3] [--bin-dir target/release] [--out FILE.json]

Needs root, `ip`, `nsenter` and `iperf3` (installed from Debian when missing). Standard
library only.

Three paths, measured interleaved (baseline, bridge, published, baseline, ...) so that a
noisy neighbour hits them alike; each cell is the median of --reps runs of
`iperf3 -c ... -t SECS -O 1` (one TCP stream, the first second omitted):

  * **veth** (the baseline): two namespaces of this run, `<ns>-va` and `<ns>-vb`, joined by
    one veth pair (10.250.0.1/30 - 10.250.0.2/30), iperf3 server in one, client in the other;
  * **bridge**: container to container on reef's default bridge: the server is a reef
    container (`reef run -d --name srv -p 5201:5201 iperf3 -s`), the client runs in a second
    container's network namespace (`reef run -d --name cli sleep ...`, entered with nsenter);
  * **published**: from an "outside" namespace `<ns>-out` wired to reefd's host namespace by
    a veth (198.51.100.2 -> 198.51.100.1, TEST-NET-2) to the host's published port 5201,
    DNAT'd by reef's nftables to the server container.

reefd runs in a private namespace of its own (bench/benchlib.Sandbox, never the machine's
root namespace); every namespace, process and mount this run makes is removed at the end,
and the run fails loudly if anything is left.
"""

import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
from benchlib import (  # noqa: E402
    DEFAULT_BIN_DIR,
    Sandbox,
    ensure_bins,
    ensure_debs,
    log,
    machine,
    require_root_and_tools,
    run_guarded,
)

PORT = 5201
VETH_A, VETH_B = "10.250.0.1", "10.250.0.2"
UPLINK_HOST, UPLINK_OUT = "198.51.100.1", "198.51.100.2"
PATHS = ("veth", "bridge", "published")


class DataPath(Sandbox):
    def __init__(self, bins):
        super().__init__(bins, prefix="rdt")
        self.extra_ns = []  # namespaces of this run besides reefd's
        self.servers = []  # Popen of iperf3 servers we started outside reef

    def add_ns(self, suffix):
        name = f"{self.ns}-{suffix}"
        r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"ip netns add {name}: {r.stderr.strip()}")
        self.extra_ns.append(name)
        self.must_ip(name, "link", "set", "lo", "up")
        return name

    @staticmethod
    def must(cmd, what=None):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"{what or ' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def must_ip(self, ns, *args):
        return self.must(["ip", "-n", ns, *args])

    def must_reef(self, *args):
        r = self.reef(*args)
        if r.returncode != 0:
            raise RuntimeError(f"reef {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        return r.stdout.strip()

    def prepare(self):
        # Baseline: one veth pair between two namespaces.
        va, vb = self.add_ns("va"), self.add_ns("vb")
        self.must(["ip", "link", "add", "dpa", "netns", va, "type", "veth", "peer", "name", "dpb", "netns", vb])
        self.must_ip(va, "addr", "add", f"{VETH_A}/30", "dev", "dpa")
        self.must_ip(vb, "addr", "add", f"{VETH_B}/30", "dev", "dpb")
        self.must_ip(va, "link", "set", "dpa", "up")
        self.must_ip(vb, "link", "set", "dpb", "up")
        srv = subprocess.Popen(["ip", "netns", "exec", vb, "iperf3", "-s", "-p", str(PORT)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
        self.servers.append(srv)
        self.note_proc(srv.pid)
        self.va = va

        # Outside: a namespace routed to reefd's host namespace.
        out = self.add_ns("out")
        self.must(["ip", "link", "add", "dpu", "netns", self.ns, "type", "veth", "peer", "name", "eth0",
                   "netns", out])
        self.must_ip(self.ns, "addr", "add", f"{UPLINK_HOST}/24", "dev", "dpu")
        self.must_ip(self.ns, "link", "set", "dpu", "up")
        self.must_ip(out, "addr", "add", f"{UPLINK_OUT}/24", "dev", "eth0")
        self.must_ip(out, "link", "set", "eth0", "up")
        self.out = out

        # reef: the server container with its published port, and a client container.
        self.must_reef("run", "-d", "--name", "srv", "-p", f"{PORT}:{PORT}", "iperf3", "-s", "-p", str(PORT))
        self.live.append("srv")
        self.must_reef("run", "-d", "--name", "cli", "sleep", "100000")
        self.live.append("cli")
        srv_doc = json.loads(self.must_reef("inspect", "srv"))
        cli_doc = json.loads(self.must_reef("inspect", "cli"))
        srv_doc = srv_doc[0] if isinstance(srv_doc, list) else srv_doc
        cli_doc = cli_doc[0] if isinstance(cli_doc, list) else cli_doc
        self.srv_ip = srv_doc["NetworkSettings"]["IPAddress"]
        self.cli_netns = cli_doc["NetworkSettings"]["SandboxKey"]
        self.record_procs()

    def client(self, path, secs):
        if path == "veth":
            ns_arg, target = f"--net=/run/netns/{self.va}", VETH_B
        elif path == "bridge":
            ns_arg, target = f"--net={self.cli_netns}", self.srv_ip
        else:
            ns_arg, target = f"--net=/run/netns/{self.out}", UPLINK_HOST
        cmd = ["nsenter", ns_arg, "iperf3", "-c", target, "-p", str(PORT), "-t", str(secs), "-O", "1", "-J"]
        last = None
        for _ in range(5):  # the server may still be starting, or busy finishing the last test
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60)
            try:
                doc = json.loads(r.stdout)
            except ValueError:
                doc = {}
            if r.returncode == 0 and "error" not in doc:
                return doc["end"]["sum_received"]["bits_per_second"] / 1e9
            last = doc.get("error") or r.stderr.strip() or f"exit {r.returncode}"
            time.sleep(0.5)
        raise RuntimeError(f"iperf3 over {path} to {target}:{PORT} failed: {last}")

    def cleanup(self):
        for srv in self.servers:
            if srv.poll() is None:
                os.killpg(srv.pid, signal.SIGKILL)
                srv.wait(timeout=10)
        for name in self.extra_ns:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        super().cleanup()

    def verify(self):
        debris = super().verify()
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        listed = {line.split()[0] for line in names.splitlines() if line.strip()}
        debris += [f"namespace {n} still listed" for n in self.extra_ns if n in listed]
        return debris


def summarize(samples):
    med = {p: round(statistics.median(v), 2) for p, v in samples.items()}
    base = med["veth"]
    return {
        "gbit_s": med,
        "ratio_to_veth": {p: round(med[p] / base, 3) for p in PATHS},
        "samples_gbit_s": {p: [round(x, 2) for x in v] for p, v in samples.items()},
    }


def print_table(s, mach, date, args):
    print()
    print(f"## Data path (TCP, iperf3 one stream) — `python3 bench/datapath.py --secs {args.secs} --reps {args.reps}`")
    print()
    print(f"{date}, commit {mach.get('commit', '?')}, {mach.get('nproc')} CPUs, load at start "
          f"{mach.get('loadavg_at_start', '?')}. Median of {args.reps} interleaved runs of {args.secs} s.")
    print()
    print("| path | Gbit/s | ratio to the plain veth | runs (Gbit/s) |")
    print("| --- | --- | --- | --- |")
    names = {"veth": "namespace to namespace, one veth pair (baseline)",
             "bridge": "container to container on reef's bridge",
             "published": "outside namespace to a published port (DNAT)"}
    for p in PATHS:
        runs = ", ".join(f"{x:.1f}" for x in s["samples_gbit_s"][p])
        print(f"| {names[p]} | {s['gbit_s'][p]:.2f} | {s['ratio_to_veth'][p] * 100:.1f}% | {runs} |")
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--secs", type=int, default=5, help="iperf3 -t per run (default 5)")
    ap.add_argument("--reps", type=int, default=3, help="runs per path (default 3)")
    ap.add_argument("--bin-dir", default=str(DEFAULT_BIN_DIR), help="reefd and reef (default target/release)")
    ap.add_argument("--out", help="write the results as JSON to this file")
    args = ap.parse_args()
    if args.secs < 2 or args.reps < 1:
        ap.error("--secs must be at least 2 and --reps at least 1")
    require_root_and_tools("ip", "nsenter")
    ensure_debs([("/usr/bin/iperf3", "iperf3")])
    bins = ensure_bins(args.bin_dir)
    mach = machine()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")

    bench = DataPath(bins)
    samples = {p: [] for p in PATHS}

    def body():
        bench.prepare()
        log(f"reefd pid {bench.daemon.pid} in {bench.ns}; server container {bench.srv_ip}")
        for rep in range(args.reps):
            for p in PATHS:
                g = bench.client(p, args.secs)
                samples[p].append(g)
                log(f"run {rep + 1}/{args.reps} {p:9} {g:6.2f} Gbit/s")
        summary = summarize(samples)
        print_table(summary, mach, date, args)
        return summary

    summary, error, debris = run_guarded(bench, body)
    failed = bool(error or debris)
    if args.out:
        doc = {"date": date, "machine": mach, "secs": args.secs, "reps": args.reps,
               **(summary or {}), "error": error, "cleanup": {"ok": not debris, "leftovers": debris},
               "ok": not failed}
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
