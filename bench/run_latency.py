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
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BIN_DIR = REPO / "target" / "release"
INSPECT_CALLS = 50


class Interrupted(BaseException):
    """Raised from the SIGINT/SIGTERM handler so that `finally` cleans up."""


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def log(msg):
    print(msg, flush=True)


def ns_key(path):
    """(st_dev, st_ino) of a namespace file, or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def proc_stat(pid):
    """(start time in clock ticks since boot, comm, state) of a pid, or None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1 : s.rindex(")")]
    fields = s[s.rindex(")") + 2 :].split()
    return int(fields[19]), comm, fields[0]


def proc_start(pid):
    """(start time, comm) of a pid, or None when gone."""
    st = proc_stat(pid)
    return st[:2] if st else None


def all_pids():
    for e in os.listdir("/proc"):
        if e.isdigit():
            yield int(e)


def mountinfo_points():
    """Mount points of our mount namespace, octal escapes decoded."""
    pts = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split(" ")
                if len(fields) > 4:
                    pts.append(fields[4].encode().decode("unicode_escape"))
    except OSError:
        pass
    return pts


def ms(seconds):
    return round(seconds * 1000.0, 3)


def p90(xs):
    if len(xs) < 2:
        return xs[0]
    return statistics.quantiles(xs, n=10, method="inclusive")[-1]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Bench:
    def __init__(self, bins):
        self.bins = bins
        self.pid = os.getpid()
        self.ns = f"rb-{self.pid}"
        self.ns_path = f"/run/netns/{self.ns}"
        self.ns_created = False
        self.ns_keys = set()  # every namespace (dev, ino) this run owns
        self.dir = None
        self.daemon = None
        self.live = []  # names of containers possibly present
        self.procs = {}  # pid -> (starttime, comm) of processes this run started
        self.debris = []

    # ---------- commands ----------

    def sock(self):
        return f"unix://{self.dir}/reef.sock"

    def reef_cmd(self, *args):
        return ["nsenter", f"--net={self.ns_path}", str(self.bins / "reef"), "-H", self.sock(), *args]

    def reef(self, *args, timeout=120):
        return subprocess.run(
            self.reef_cmd(*args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def in_ns(self, *cmd, timeout=30):
        return subprocess.run(
            ["nsenter", f"--net={self.ns_path}", *cmd],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    # ---------- setup ----------

    def setup(self):
        self.dir = Path(tempfile.mkdtemp(prefix=f"rb-{self.pid}-", dir="/tmp"))
        r = subprocess.run(["ip", "netns", "add", self.ns], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"ip netns add {self.ns} failed: {r.stderr.strip()}")
        self.ns_created = True
        key = ns_key(self.ns_path)
        if key is None:
            raise RuntimeError(f"{self.ns_path} missing after ip netns add")
        if key == ns_key("/proc/1/ns/net") or key == ns_key("/proc/self/ns/net"):
            raise RuntimeError(f"{self.ns_path} is the root namespace; refusing to go on")
        self.ns_keys.add(key)
        r = self.in_ns("ip", "link", "set", "lo", "up")
        if r.returncode != 0:
            raise RuntimeError(f"lo up failed: {r.stderr.strip()}")
        (self.dir / "daemon.json").write_text("{}")

        logf = open(self.dir / "reefd.log", "ab")
        cmd = [
            "nsenter", f"--net={self.ns_path}", str(self.bins / "reefd"),
            "--data-root", str(self.dir / "data"),
            "--exec-root", str(self.dir / "exec"),
            "-H", self.sock(),
            "--config-file", str(self.dir / "daemon.json"),
        ]
        # Own session: a Ctrl-C on the terminal reaches us, not reefd, so the cleanup
        # removes the containers before stopping it.
        self.daemon = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True
        )
        logf.close()
        self.note_proc(self.daemon.pid)
        deadline = time.monotonic() + 30
        while True:
            if self.daemon.poll() is not None:
                raise RuntimeError(f"reefd exited with {self.daemon.returncode}:\n{self.daemon_log()}")
            r = self.reef("version", timeout=10)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"reefd did not answer `reef version` in 30 s:\n{self.daemon_log()}")
            time.sleep(0.05)
        # nsenter exec()s reefd, so the pid we started is reefd's.
        exe = os.readlink(f"/proc/{self.daemon.pid}/exe")
        if os.path.basename(exe) != "reefd":
            raise RuntimeError(f"pid {self.daemon.pid} is {exe}, not reefd")
        if ns_key(f"/proc/{self.daemon.pid}/ns/net") not in self.ns_keys:
            raise RuntimeError("reefd is not in the benchmark namespace; refusing to go on")

    def daemon_log(self, lines=40):
        try:
            text = (self.dir / "reefd.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def note_proc(self, pid):
        st = proc_start(pid)
        if st:
            self.procs[pid] = st

    # ---------- ownership ----------

    def sandbox_keys(self):
        keys = set()
        d = self.dir / "exec" / "netns" if self.dir else None
        if d and d.is_dir():
            try:
                for e in d.iterdir():
                    k = ns_key(e)
                    if k:
                        keys.add(k)
            except OSError:
                pass
        return keys

    def owned_pids(self, keys):
        """Processes in one of our namespaces, or holding an /etc/hosts mount from our dir."""
        me = os.getpid()
        marker = f"{self.dir}/" if self.dir else None
        out = []
        for pid in all_pids():
            if pid == me:
                continue
            if ns_key(f"/proc/{pid}/ns/net") in keys:
                out.append(pid)
                continue
            if marker:
                try:
                    with open(f"/proc/{pid}/mountinfo") as f:
                        for line in f:
                            fl = line.split(" ")
                            if len(fl) > 4 and fl[4] == "/etc/hosts" and fl[3].startswith(marker):
                                out.append(pid)
                                break
                except OSError:
                    pass
        return out

    def record_procs(self):
        self.ns_keys |= self.sandbox_keys()
        for pid in self.owned_pids(self.ns_keys):
            self.note_proc(pid)

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

    def cleanup(self):
        def step(what, fn):
            try:
                fn()
            except BaseException as e:  # keep going: every step must get its chance
                log(f"cleanup: {what}: {e!r}")

        if self.daemon is not None:
            step("record processes", self.record_procs)
            if self.daemon.poll() is None:
                def rm_all():
                    ids = self.reef("ps", "-aq", timeout=30).stdout.split()
                    targets = list(dict.fromkeys(self.live + ids))
                    if targets:
                        r = self.reef("rm", "-f", *targets, timeout=120)
                        if r.returncode != 0:
                            for t in targets:
                                self.reef("rm", "-f", t, timeout=30)
                    self.live = []
                step("reef rm -f", rm_all)
            step("stop reefd", self.stop_daemon)
        if self.ns_created or self.ns_keys:
            step("kill leftovers", self.kill_leftovers)
        if self.dir is not None:
            step("umount", self.unmount_all)
        if self.ns_created:
            def del_ns():
                subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=30)
            step("ip netns del", del_ns)
        if self.dir is not None:
            def rm_dir():
                if any(p == str(self.dir) or p.startswith(f"{self.dir}/") for p in mountinfo_points()):
                    log(f"cleanup: mounts remain under {self.dir}; not removing it")
                    return
                shutil.rmtree(self.dir, ignore_errors=True)
            step("rm -rf", rm_dir)

    def stop_daemon(self):
        d = self.daemon
        if d.poll() is not None:
            return
        os.kill(d.pid, signal.SIGTERM)
        try:
            d.wait(timeout=15)
        except subprocess.TimeoutExpired:
            log("cleanup: reefd ignored SIGTERM for 15 s; SIGKILL")
            os.kill(d.pid, signal.SIGKILL)
            d.wait(timeout=15)

    def kill_leftovers(self):
        for _ in range(5):
            self.ns_keys |= self.sandbox_keys()
            pids = self.owned_pids(self.ns_keys)
            if not pids:
                return
            for pid in pids:
                self.note_proc(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)

    def unmount_all(self):
        def umount(p):
            subprocess.run(["umount", "-l", str(p)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30)

        nsdir = self.dir / "exec" / "netns"
        if nsdir.is_dir():
            for e in list(nsdir.iterdir()):
                umount(e)
        for _ in range(2):  # the sandbox directory is a (possibly stacked) bind mount
            umount(nsdir)
        # Anything else still mounted under our directory, deepest first.
        rest = [p for p in mountinfo_points() if p == str(self.dir) or p.startswith(f"{self.dir}/")]
        for p in sorted(set(rest), key=len, reverse=True):
            umount(p)

    def verify(self):
        """Return a list of leftovers (empty when clean)."""
        debris = []
        r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        names = [l.split()[0] for l in r.stdout.splitlines() if l.strip()]
        if self.ns in names:
            debris.append(f"namespace {self.ns} still listed")
        others = [x for x in names if x.startswith("rb-") and x != self.ns]
        if others:
            log(f"note: other rb-* namespaces exist (not this run's): {' '.join(others)}")
        if self.dir is not None:
            mine = [p for p in mountinfo_points() if p == str(self.dir) or p.startswith(f"{self.dir}/")]
            if mine:
                debris.append(f"mounts remain: {mine}")
            if self.dir.exists():
                debris.append(f"{self.dir} still exists")
        others = [p for p in mountinfo_points() if p.startswith("/tmp/rb-")]
        if others and not any(self.dir and p.startswith(str(self.dir)) for p in others):
            log(f"note: other /tmp/rb- mounts exist (not this run's): {others}")
        # Same pid and same start time: the very process we saw (comm may differ: nsenter
        # exec()s reefd). Killed processes can linger a moment as zombies until their new
        # parent reaps them; give that a few seconds.
        def ours_still_there():
            out = []
            for pid, (t, c) in self.procs.items():
                st = proc_stat(pid)
                if st and st[0] == t:
                    out.append((pid, c, st[2]))
            return out

        deadline = time.monotonic() + 10
        left = ours_still_there()
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = ours_still_there()
        running = [(pid, c) for pid, c, state in left if state != "Z"]
        zombies = [(pid, c) for pid, c, state in left if state == "Z"]
        if running:
            debris.append(f"processes still running: {running}")
        if zombies:
            log(f"note: {len(zombies)} killed processes are still zombies awaiting their "
                f"parent's wait(): {zombies[:10]}{' ...' if len(zombies) > 10 else ''}")
        in_ns = self.owned_pids(self.ns_keys) if self.ns_keys else []
        if in_ns:
            debris.append(f"processes still in our namespaces: {in_ns}")
        return debris


def ensure_bins(bin_dir):
    bin_dir = Path(bin_dir)
    if not bin_dir.is_absolute():
        bin_dir = (Path.cwd() / bin_dir) if (Path.cwd() / bin_dir).is_dir() else (REPO / bin_dir)
    bin_dir = bin_dir.resolve()
    missing = [b for b in ("reefd", "reef") if not (bin_dir / b).is_file()]
    if missing:
        if bin_dir != DEFAULT_BIN_DIR.resolve():
            sys.exit(f"{', '.join(missing)} missing in {bin_dir} (build them, or use --bin-dir)")
        log(f"{', '.join(missing)} missing in {bin_dir}: building "
            f"(cargo build --release --bins in {REPO}) ...")
        r = subprocess.run(["cargo", "build", "--release", "--bins"], cwd=REPO)
        if r.returncode != 0:
            sys.exit("cargo build --release --bins failed")
        missing = [b for b in ("reefd", "reef") if not (bin_dir / b).is_file()]
        if missing:
            sys.exit(f"{', '.join(missing)} still missing in {bin_dir} after the build")
    return bin_dir


def machine():
    info = {"nproc": os.cpu_count(), "kernel": os.uname().release}
    try:
        info["nproc"] = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout)
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/loadavg") as f:
            info["loadavg_at_start"] = " ".join(f.read().split()[:3])
    except OSError:
        pass
    try:
        r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            info["commit"] = r.stdout.strip()
            d = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True)
            if d.stdout.strip():
                info["commit"] += "+dirty"
    except OSError:
        pass
    return info


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
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    for tool in ("ip", "nsenter", "ping", "umount"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")

    bins = ensure_bins(args.bin_dir)
    mach = machine()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")

    bench = Bench(bins)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    res = summary = None
    error = None
    try:
        bench.setup()
        log(f"reefd {bins / 'reefd'} running as pid {bench.daemon.pid} in namespace {bench.ns}, "
            f"work dir {bench.dir}")
        res = bench.measure(args.n)
        summary = summarize(res, args.n)
        print_table(summary, res, args.n, mach, date)
    except Interrupted as e:
        error = f"interrupted by {e}"
        log(error)
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if bench.daemon is not None and error is not None:
            tail = bench.daemon_log(20)
            if tail:
                log("reefd log (tail):\n" + tail)
        bench.cleanup()
        debris = bench.verify()
    if debris:
        log("cleanup: LEFTOVERS:\n  " + "\n  ".join(debris))
    else:
        log(f"cleanup: ok (namespace {bench.ns} deleted, no mounts under {bench.dir}, "
            f"{len(bench.procs)} processes started by this run all gone)")

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
