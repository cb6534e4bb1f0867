#!/usr/bin/env python3
"""What an idle machine costs a start: the same operations back to back and after a pause.

    python3 bench/idle_cost.py [--starts 30] [--dir /tmp] [--bin-dir target/release]

Needs root, `ip` and `nsenter`. Standard library only. Three measurements, each with pauses
of 0, 20 and 200 ms between repetitions (medians):

  0. (no pauses) creating a small file in --dir and in /dev/shm (tmpfs): a start creates
     about nine files (state and runtime directories, /etc files, log, socket, pid file);
  1. fdatasync of a 4 KiB write to a file in --dir (what each durable state commit waits for);
  2. a hand-off between two threads and back (a wake-up on each side; Python's own overhead
     included, so read the growth, not the absolute figure);
  3. reef: POST /containers/create + /start of `sleep` on a user network with one published
     port, in one reefd (bench/benchlib.Sandbox, a private network namespace; never the
     machine's root namespace), --starts per pause; the first two of each series are not
     counted. Every container is removed after, and the cleanup verified.

A fresh daemon starting one container (suite N=1) pays the "after a pause" figures.
"""

import argparse
import os
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
from benchlib import (  # noqa: E402
    DEFAULT_BIN_DIR,
    Sandbox,
    UnixHTTP,
    ensure_bins,
    require_root_and_tools,
    run_guarded,
)

GAPS = (0.0, 0.02, 0.2)


def create_cost(directory, files=2000):
    """Microseconds per create+write+close of a small file in a fresh directory."""
    d = tempfile.mkdtemp(dir=directory)
    try:
        t0 = time.perf_counter()
        for i in range(files):
            fd = os.open(f"{d}/f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
            os.write(fd, b"x" * 100)
            os.close(fd)
        return (time.perf_counter() - t0) / files * 1e6
    finally:
        shutil.rmtree(d)


def fsync_latency(directory, reps=20):
    fd, path = tempfile.mkstemp(dir=directory)
    try:
        out = {}
        for gap in GAPS:
            ts = []
            for i in range(reps):
                os.pwrite(fd, os.urandom(4096), 4096 * (i % 8))
                t0 = time.perf_counter()
                os.fdatasync(fd)
                ts.append(time.perf_counter() - t0)
                time.sleep(gap)
            out[gap] = statistics.median(ts) * 1000
        return out
    finally:
        os.close(fd)
        os.unlink(path)


def handoff_latency(reps=20):
    to_worker, back = queue.Queue(), queue.Queue()

    def worker():
        while (item := to_worker.get()) is not None:
            back.put(item)

    th = threading.Thread(target=worker)
    th.start()
    out = {}
    try:
        for gap in GAPS:
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                to_worker.put(1)
                back.get()
                ts.append(time.perf_counter() - t0)
                time.sleep(gap)
            out[gap] = statistics.median(ts) * 1e6
    finally:
        to_worker.put(None)
        th.join()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--starts", type=int, default=30, help="starts per pause (default 30)")
    ap.add_argument("--dir", default="/tmp", help="where to time fdatasync (default /tmp)")
    ap.add_argument("--bin-dir", default=str(DEFAULT_BIN_DIR))
    args = ap.parse_args()
    require_root_and_tools("ip", "nsenter")
    if args.starts < 5:
        ap.error("--starts must be at least 5")

    creates = {args.dir: create_cost(args.dir), "/dev/shm": create_cost("/dev/shm")}
    fs = fsync_latency(args.dir)
    ho = handoff_latency()
    bins = ensure_bins(args.bin_dir)
    bench = Sandbox(bins, prefix="ric")
    starts = {}

    def body():
        r = bench.reef("network", "create", "--subnet", "10.124.0.0/16", "idlenet")
        if r.returncode != 0:
            raise RuntimeError(f"network create: {r.stderr.strip()}")
        api = UnixHTTP(f"{bench.dir}/reef.sock")
        port = 21000
        for gap in GAPS:
            ts = []
            for i in range(args.starts):
                name = f"i{int(gap * 1000)}-{i}"
                port += 1
                body = {"Cmd": ["sleep", "100000"], "ExposedPorts": {"80/tcp": {}},
                        "HostConfig": {"NetworkMode": "idlenet",
                                       "PortBindings": {"80/tcp": [{"HostPort": str(port)}]}}}
                t0 = time.perf_counter()
                st, doc = api.call("POST", f"/containers/create?name={name}", body)
                if st != 201:
                    raise RuntimeError(f"create {name}: HTTP {st}: {doc!r}"[:300])
                bench.live.append(name)
                st, doc = api.call("POST", f"/containers/{name}/start")
                if st not in (204, 304):
                    raise RuntimeError(f"start {name}: HTTP {st}: {doc!r}"[:300])
                ts.append(time.perf_counter() - t0)
                time.sleep(gap)
            starts[gap] = statistics.median(ts[2:]) * 1000
            for i in range(args.starts):
                api.call("DELETE", f"/containers/i{int(gap * 1000)}-{i}?force=1")
            time.sleep(1)

    _, error, debris = run_guarded(bench, body)
    print()
    for where, us in creates.items():
        print(f"create + write + close of a small file in {where}: {us:.1f} us")
    print(f"\n{'pause between repetitions':<44}" + "".join(f"{int(g * 1000):>10} ms" for g in GAPS))
    print(f"{'fdatasync of 4 KiB in ' + args.dir + ' (ms)':<44}" + "".join(f"{fs[g]:>13.3f}" for g in GAPS))
    print(f"{'thread hand-off and back (us)':<44}" + "".join(f"{ho[g]:>13.0f}" for g in GAPS))
    if len(starts) == len(GAPS):
        print(f"{'reef create + start, one -p (ms)':<44}" + "".join(f"{starts[g]:>13.2f}" for g in GAPS))
    sys.exit(1 if error or debris else 0)


if __name__ == "__main__":
    main()
