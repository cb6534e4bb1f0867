"""Shared helpers of reef's benchmark scripts (run_latency.py, ports.py). Standard library only.

The core is `Sandbox`: a private network namespace `<prefix>-<pid>` (with `lo` up), a fresh
work directory /tmp/<prefix>-<pid>-XXXX, and the real `reefd` running inside that namespace
through `nsenter --net=...` (never in the machine's root namespace; `nsenter` rather than
`ip netns exec`, so reefd shares our mount namespace and its sandbox mounts stay visible to
the cleanup). `Sandbox.cleanup()` removes everything the run made and `Sandbox.verify()`
lists whatever is left:

  * `reef rm -f` every container, SIGTERM then SIGKILL reefd;
  * `kill -9` of every process living in the namespace or in one of reefd's sandbox
    namespaces, or holding an /etc/hosts bind mount from the work directory (by pid);
  * `umount -l` of the sandbox files and their directory, and of anything else mounted
    under the work directory;
  * `ip netns del`, removal of the work directory.
"""

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BIN_DIR = REPO / "target" / "release"


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


def loadavg():
    """The three load averages as a string ("1.04 0.96 0.64"), or None."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return None


class Sandbox:
    """reefd in a private network namespace and work directory, with full cleanup."""

    def __init__(self, bins, prefix="rb", tag=None):
        self.bins = bins
        self.prefix = prefix
        self.pid = os.getpid()
        # `tag` tells apart the sandboxes one run makes one after another (bench/peers.py).
        self.ns = f"{prefix}-{self.pid}" + (f"-{tag}" if tag else "")
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

    def in_ns(self, *cmd, timeout=30, input=None):
        return subprocess.run(
            ["nsenter", f"--net={self.ns_path}", *cmd],
            stdin=subprocess.DEVNULL if input is None else None,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    # ---------- setup ----------

    def setup(self):
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.ns}-", dir="/tmp"))
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
                        r = self.reef("rm", "-f", *targets, timeout=300)
                        if r.returncode != 0:
                            for t in targets:
                                self.reef("rm", "-f", t, timeout=60)
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
        pfx = f"{self.prefix}-"
        r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        names = [l.split()[0] for l in r.stdout.splitlines() if l.strip()]
        if self.ns in names:
            debris.append(f"namespace {self.ns} still listed")
        others = [x for x in names if x.startswith(pfx) and x != self.ns]
        if others:
            log(f"note: other {pfx}* namespaces exist (not this run's): {' '.join(others)}")
        if self.dir is not None:
            mine = [p for p in mountinfo_points() if p == str(self.dir) or p.startswith(f"{self.dir}/")]
            if mine:
                debris.append(f"mounts remain: {mine}")
            if self.dir.exists():
                debris.append(f"{self.dir} still exists")
        others = [p for p in mountinfo_points() if p.startswith(f"/tmp/{pfx}")]
        if others and not any(self.dir and p.startswith(str(self.dir)) for p in others):
            log(f"note: other /tmp/{pfx} mounts exist (not this run's): {others}")
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


def require_root_and_tools(*tools):
    """Exit with a clear message unless running as root with every tool on the PATH."""
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    for tool in tools:
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")


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
    la = loadavg()
    if la is not None:
        info["loadavg_at_start"] = la
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


# ---------- helpers for bench/dns.py (and any script that measures a server process) ----------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid):
    """utime + stime of a process (all its threads, not its children) in seconds, or None."""
    both = proc_cpu_full_s(pid)
    return both[0] if both else None


def system_cpu():
    """(busy jiffies of all CPUs, total jiffies) from /proc/stat; busy excludes idle and iowait."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return sum(v) - v[3] - v[4], sum(v)


def percentile(sorted_xs, q):
    """Linear-interpolated quantile q (0..1) of an already sorted list (nan when empty)."""
    if not sorted_xs:
        return float("nan")
    k = (len(sorted_xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (k - lo)


def binary_ids(paths):
    """{path: {sha256 prefix, mtime}}: another build may replace a binary during a run."""
    import datetime
    import hashlib

    out = {}
    for p in paths:
        p = Path(p)
        try:
            h = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
            mt = datetime.datetime.fromtimestamp(p.stat().st_mtime).astimezone()
            out[str(p)] = {"sha256": h, "mtime": mt.isoformat(timespec="seconds")}
        except OSError as e:
            out[str(p)] = {"error": str(e)}
    return out


def ensure_debs(wanted):
    """Install the Debian packages whose file is missing; `wanted` is [(path, package)].
    Runs `apt-get update` first only when the first install attempt fails. Returns the
    packages installed (exits on failure)."""
    need = sorted({pkg for path, pkg in wanted if not os.path.exists(path)})
    if not need:
        return []
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"installing missing Debian packages: {' '.join(need)}")
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need]
    r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, stdin=subprocess.DEVNULL)
        r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL)
    missing = [path for path, _ in wanted if not os.path.exists(path)]
    if r.returncode != 0 or missing:
        sys.exit(f"apt-get install {' '.join(need)} failed (still missing: {', '.join(missing)})")
    return need


# ---------- helpers for bench/peers.py (namespaces entered in-process, the API, quiet machine) ----------

CLONE_NEWNET = 0x40000000
_libc = None


def setns_fd(fd, nstype=CLONE_NEWNET):
    """setns(2) of the calling thread (the process, when single-threaded)."""
    global _libc
    import ctypes

    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, nstype) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


class in_netns:
    """`with in_netns(path):` runs the body in the network namespace at `path`, then returns
    to the one we were in. Only for single-threaded processes. Sockets made inside stay in
    that namespace after we leave it (that is the point: a listener in a container)."""

    def __init__(self, path):
        self.path = path
        self.own = self.target = None

    def __enter__(self):
        self.own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.target = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            setns_fd(self.target)
        except BaseException:
            os.close(self.own)
            if self.target is not None:
                os.close(self.target)
            raise
        return self

    def __exit__(self, *exc):
        try:
            setns_fd(self.own)  # must not fail; if it does, the process stops here
        finally:
            os.close(self.own)
            os.close(self.target)
        return False


def link_up(name="lo"):
    """Set a link of the current network namespace up (SIOCGIFFLAGS/SIOCSIFFLAGS)."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH22x", name.encode(), 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, ifr))[1]
        if not flags & 1:
            fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", name.encode(), flags | 1))


def become_subreaper():
    """PR_SET_CHILD_SUBREAPER: orphans of our children (daemons that fork themselves away,
    such as aardvark-dns) become our children, so we can reap them."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap_orphans():
    """waitpid(-1, WNOHANG) until nothing is left to reap. Call only when no subprocess of
    ours is running (it would steal its exit status)."""
    n = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return n
        if pid == 0:
            return n
        n += 1


def proc_cpu_full_s(pid):
    """(utime + stime, cutime + cstime) of a process in seconds, or None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2 :].split()
    return ((int(fields[11]) + int(fields[12])) / CLK_TCK,
            (int(fields[13]) + int(fields[14])) / CLK_TCK)


def proc_ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return int(s[s.rindex(")") + 2 :].split()[1])


def wait_quiet(max_s=5.0, threshold=0.3, window=0.25):
    """Wait until the machine's busy share over `window` seconds falls below `threshold`
    (the kernel tears namespaces down asynchronously, long after `ip netns del`), at most
    `max_s`. Returns (last busy share, seconds waited)."""
    t0 = time.monotonic()
    busy = None
    while True:
        a = system_cpu()
        time.sleep(window)
        b = system_cpu()
        if a is None or b is None:
            return None, time.monotonic() - t0
        busy = (b[0] - a[0]) / max(1, b[1] - a[1])
        if busy < threshold or time.monotonic() - t0 >= max_s:
            return round(busy, 3), round(time.monotonic() - t0, 2)


class UnixHTTP:
    """A keep-alive HTTP/1.1 client of an API on a unix socket (reefd's), standard library only."""

    def __init__(self, path, timeout=120):
        import http.client
        import socket

        class Conn(http.client.HTTPConnection):
            def connect(conn):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(timeout)
                s.connect(path)
                conn.sock = s

        self._mk = lambda: Conn("localhost", timeout=timeout)
        self.conn = self._mk()

    def call(self, method, path, body=None, retry=None):
        """(status, parsed JSON or raw bytes). A request that fails before any answer is
        sent again on a fresh connection only when idempotent (GET, DELETE) or `retry`."""
        import http.client
        import json as _json

        if retry is None:
            retry = method in ("GET", "DELETE", "HEAD")
        data = None if body is None else _json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                self.conn.close()
                self.conn = self._mk()
                if attempt or not retry:
                    raise
        try:
            return r.status, _json.loads(raw) if raw else None
        except ValueError:
            return r.status, raw

    def close(self):
        self.conn.close()


def proc_sched_cpu_s(pid):
    """CPU time of all live threads of a process in seconds, ns-precise (the first field of each
    /proc/PID/task/TID/schedstat), or None when gone. Threads that exited are not counted."""
    total, seen = 0, False
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
                seen = True
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9 if seen else None


# ---------- shared by the scripts that run one Sandbox (datapath.py, scale.py) ----------


def run_guarded(bench, body):
    """Run `body()` with `bench` (a Sandbox) set up first and always cleaned up after, also on
    Ctrl-C / SIGTERM. Returns (body's result or None, error text or None, leftovers)."""
    import traceback

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    result, error = None, None
    try:
        bench.setup()
        result = body()
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
            log("reefd log (tail):\n" + bench.daemon_log(20))
        bench.cleanup()
        debris = bench.verify()
    if debris:
        log("cleanup: LEFTOVERS:\n  " + "\n  ".join(debris))
    else:
        log(f"cleanup: ok (namespace {bench.ns} deleted, no mounts under {bench.dir}, "
            f"{len(bench.procs)} processes of this run gone)")
    return result, error, debris


def tcp_token_check(listen_netns, port, connect_to, connect_netns=None, listen_port=None):
    """A listener on `listen_port` (default `port`) inside the namespace at `listen_netns`;
    a connection to (`connect_to`, `port`) from `connect_netns` (default: where we are); a
    random token sent back must arrive. Returns None when it did, else why not."""
    import socket

    token = os.urandom(8)
    lst = cli = conn = None
    try:
        with in_netns(listen_netns):
            lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("0.0.0.0", listen_port or port))
        lst.listen(4)
        lst.settimeout(3)
        if connect_netns:
            with in_netns(connect_netns):
                cli = socket.create_connection((connect_to, port), timeout=3)
        else:
            cli = socket.create_connection((connect_to, port), timeout=3)
        conn, _ = lst.accept()
        conn.sendall(token)
        cli.settimeout(3)
        got = cli.recv(64)
        return None if got == token else f"read {got!r}"
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    finally:
        for s in (conn, cli, lst):
            if s is not None:
                s.close()
