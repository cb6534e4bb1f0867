//! Issue 6, crash safety: a torture test. Random (seeded) sequences of operations against a
//! real reefd — network create/rm, `run -d` on the default bridge or a user network, with
//! and without `-p` and `--network-alias`, `network connect`/`disconnect`, `stop`, `start`,
//! `rm -f` — and `kill -9` of reefd at random moments, most of them while an operation is
//! in flight. After each kill reefd is restarted and every invariant of
//! `reef_integration::invariants` is checked.
//!
//! A cycle is 0–5 operations, then one more run in a thread while the test sleeps and
//! `kill -9`s reefd (80% of cycles; the others kill between operations). Half the delays
//! are uniform in 0–5 ms; the other half uniform over the longest time that kind of
//! operation has taken so far, so the kill also lands late in slow operations (a start,
//! a bridge deletion), not only while the CLI is still connecting. Every container runs
//! `socat` on port 80 answering `ok`, so published ports can be tried for real.
//!
//! Besides the invariants, every container whose `run` or `start` returned success, and
//! that no `stop` or `rm` has been aimed at since (whatever its outcome), must still be
//! running after each restart: a crash may undo an operation in flight, never one that
//! succeeded.
//!
//! A violation is reported once, when first seen, with the operations of that cycle and
//! the one before and reefd's log since the start before the kill; the test goes on and
//! fails at the end. When reefd cannot restart at all (three tries) that host is done
//! for: it is reported and the run goes on with a fresh host, so a long run still finds
//! the other bugs.
//!
//! - `cargo test -p reef-integration --test torture`: the short form (20 kills).
//! - `scripts/torture.sh 300` (or `REEF_TORTURE_KILLS=300`): the long form.
//! - `REEF_TORTURE_SEED=N` replays a seed's choices (the operations, their arguments and
//!   the kill delays; what the daemon made of them can still differ with timing).
//! - `REEF_TORTURE_MAX_SECS=N` stops early (reporting the kills done).
//! - `REEF_TORTURE_PRECHECK=1` also checks right before each kill, which tells a bug of
//!   the operations themselves from one of crash recovery.
//! - `REEF_TORTURE_STOP_ON_VIOLATION=1` stops at the first violation (for minimising).
//! - `REEF_KEEP_TEST_DIR=1` keeps the test directory (reefd.log, state, exec-root).
//!
//! The whole operation log is written to `target/torture/torture-<seed>.log`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reef_integration::invariants::{self, Rng, Sampling, State};
use reef_integration::{bin_dir, Host, Run};

const MAX_CONTAINERS: usize = 8;
const MAX_NETWORKS: usize = 4;
const ALIASES: &[&str] = &["web", "db", "api"];
/// Fixed host ports are drawn from here, so they collide now and then (and must be refused).
const PORT_BASE: u16 = 20000;
const PORT_SPAN: usize = 24;
/// How long the invariants may take to settle after a restart (the veth reaper, exits).
const SETTLE: Duration = Duration::from_secs(3);
const CMD_LIMIT: Duration = Duration::from_secs(30);

fn env_num(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok())
}

fn env_flag(key: &str) -> bool {
    std::env::var(key).is_ok_and(|v| !v.is_empty() && v != "0")
}

#[derive(Debug, Clone)]
enum Op {
    NetCreate(String),
    Run {
        name: String,
        net: Option<String>,
        port: Option<Option<u16>>,
        alias: Option<String>,
    },
    Connect {
        net: String,
        ctr: String,
        alias: Option<String>,
    },
    Disconnect {
        net: String,
        ctr: String,
    },
    Stop(String),
    Start(String),
    Rm(String),
    NetRm(String),
}

impl Op {
    fn kind(&self) -> &'static str {
        match self {
            Op::NetCreate(_) => "network create",
            Op::Run { .. } => "run",
            Op::Connect { .. } => "network connect",
            Op::Disconnect { .. } => "network disconnect",
            Op::Stop(_) => "stop",
            Op::Start(_) => "start",
            Op::Rm(_) => "rm",
            Op::NetRm(_) => "network rm",
        }
    }

    /// The container this op leaves running when it succeeds (`run`, `start`).
    fn starts(&self) -> Option<&str> {
        match self {
            Op::Run { name, .. } => Some(name),
            Op::Start(c) => Some(c),
            _ => None,
        }
    }

    /// The container this op may stop, whether or not it reports success (`stop`, `rm`).
    fn may_stop(&self) -> Option<&str> {
        match self {
            Op::Stop(c) | Op::Rm(c) => Some(c),
            _ => None,
        }
    }

    fn args(&self) -> Vec<String> {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match self {
            Op::NetCreate(n) => v(&["network", "create", n]),
            Op::Run {
                name,
                net,
                port,
                alias,
            } => {
                let mut a = v(&["run", "-d", "--name", name]);
                if let Some(n) = net {
                    a.extend(v(&["--network", n]));
                }
                match port {
                    Some(Some(p)) => a.extend(v(&["-p", &format!("{p}:80")])),
                    Some(None) => a.extend(v(&["-p", "80"])),
                    None => {}
                }
                if let Some(al) = alias {
                    a.extend(v(&["--network-alias", al]));
                }
                a.extend(v(&[
                    "socat",
                    "TCP-LISTEN:80,fork,reuseaddr",
                    "SYSTEM:echo ok",
                ]));
                a
            }
            Op::Connect { net, ctr, alias } => {
                let mut a = v(&["network", "connect"]);
                if let Some(al) = alias {
                    a.extend(v(&["--alias", al]));
                }
                a.extend(v(&[net, ctr]));
                a
            }
            Op::Disconnect { net, ctr } => v(&["network", "disconnect", net, ctr]),
            Op::Stop(c) => v(&["stop", "-t", "1", c]),
            Op::Start(c) => v(&["start", c]),
            Op::Rm(c) => v(&["rm", "-f", c]),
            Op::NetRm(n) => v(&["network", "rm", n]),
        }
    }
}

/// What the test believes exists; refreshed from reef's state after every restart.
#[derive(Debug, Default)]
struct Model {
    /// Container name -> (running, networks it is on or will rejoin on start).
    ctrs: BTreeMap<String, (bool, Vec<String>)>,
    nets: Vec<String>,
    next_ctr: usize,
    next_net: usize,
    /// Every container name ever used (names are never reused).
    ever: Vec<String>,
}

impl Model {
    fn refresh(&mut self, st: &State) {
        let old = std::mem::take(&mut self.ctrs);
        for c in &st.containers {
            let nets = if c.running {
                c.endpoints.iter().map(|e| e.network.clone()).collect()
            } else {
                old.get(&c.name).map(|o| o.1.clone()).unwrap_or_default()
            };
            self.ctrs.insert(c.name.clone(), (c.running, nets));
        }
        self.nets = st
            .networks
            .iter()
            .filter(|n| !matches!(n.name.as_str(), "bridge" | "host" | "none"))
            .map(|n| n.name.clone())
            .collect();
    }

    fn gone(&self) -> Vec<String> {
        self.ever
            .iter()
            .filter(|n| !self.ctrs.contains_key(*n))
            .cloned()
            .collect()
    }

    fn choose(&mut self, rng: &mut Rng) -> Op {
        let names: Vec<String> = self.ctrs.keys().cloned().collect();
        let running: Vec<String> = self
            .ctrs
            .iter()
            .filter(|(_, v)| v.0)
            .map(|(k, _)| k.clone())
            .collect();
        let stopped: Vec<String> = self
            .ctrs
            .iter()
            .filter(|(_, v)| !v.0)
            .map(|(k, _)| k.clone())
            .collect();
        let on_some: Vec<String> = self
            .ctrs
            .iter()
            .filter(|(_, v)| !v.1.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        let mut w: Vec<(u32, u8)> = vec![];
        let full = names.len() >= MAX_CONTAINERS;
        w.push((
            if self.nets.len() < 2 {
                6
            } else if self.nets.len() < MAX_NETWORKS {
                2
            } else {
                0
            },
            0,
        ));
        w.push((if full { 0 } else { 12 }, 1));
        w.push((
            if names.is_empty() || self.nets.is_empty() {
                0
            } else {
                6
            },
            2,
        ));
        w.push((if on_some.is_empty() { 0 } else { 4 }, 3));
        w.push((if running.is_empty() { 0 } else { 5 }, 4));
        w.push((if stopped.is_empty() { 0 } else { 6 }, 5));
        w.push((
            if names.is_empty() {
                0
            } else if full {
                20
            } else {
                4
            },
            6,
        ));
        w.push((if self.nets.is_empty() { 0 } else { 2 }, 7));
        let total: u32 = w.iter().map(|x| x.0).sum();
        let mut r = rng.below(total as usize) as u32;
        let mut kind = 1;
        for (weight, k) in &w {
            if r < *weight {
                kind = *k;
                break;
            }
            r -= weight;
        }
        let pick = |rng: &mut Rng, v: &[String]| rng.pick(v).cloned().unwrap_or_default();
        match kind {
            0 => {
                self.next_net += 1;
                Op::NetCreate(format!("n{}", self.next_net))
            }
            1 => {
                self.next_ctr += 1;
                let name = format!("c{}", self.next_ctr);
                self.ever.push(name.clone());
                let net = if !self.nets.is_empty() && rng.chance(0.6) {
                    Some(pick(rng, &self.nets))
                } else {
                    None
                };
                let port = match rng.below(4) {
                    0 | 1 => None,
                    2 => Some(Some(PORT_BASE + rng.below(PORT_SPAN) as u16)),
                    _ => Some(None),
                };
                let alias = if net.is_some() && rng.chance(0.5) {
                    Some(ALIASES[rng.below(ALIASES.len())].to_string())
                } else {
                    None
                };
                Op::Run {
                    name,
                    net,
                    port,
                    alias,
                }
            }
            2 => {
                let ctr = pick(rng, &names);
                let on = self.ctrs.get(&ctr).map(|v| v.1.clone()).unwrap_or_default();
                let free: Vec<String> = self
                    .nets
                    .iter()
                    .filter(|n| !on.contains(n))
                    .cloned()
                    .collect();
                let net = if free.is_empty() {
                    pick(rng, &self.nets)
                } else {
                    pick(rng, &free)
                };
                let alias = rng
                    .chance(0.4)
                    .then(|| ALIASES[rng.below(ALIASES.len())].to_string());
                Op::Connect { net, ctr, alias }
            }
            3 => {
                let ctr = pick(rng, &on_some);
                let on = self.ctrs.get(&ctr).map(|v| v.1.clone()).unwrap_or_default();
                Op::Disconnect {
                    net: pick(rng, &on),
                    ctr,
                }
            }
            4 => Op::Stop(pick(rng, &running)),
            5 => Op::Start(pick(rng, &stopped)),
            6 => Op::Rm(pick(rng, &names)),
            _ => Op::NetRm(pick(rng, &self.nets)),
        }
    }

    /// The optimistic effect of an operation that succeeded.
    fn apply(&mut self, op: &Op) {
        match op {
            Op::NetCreate(n) => self.nets.push(n.clone()),
            Op::Run { name, net, .. } => {
                let on = vec![net.clone().unwrap_or_else(|| "bridge".into())];
                self.ctrs.insert(name.clone(), (true, on));
            }
            Op::Connect { net, ctr, .. } => {
                if let Some(c) = self.ctrs.get_mut(ctr) {
                    c.1.push(net.clone());
                }
            }
            Op::Disconnect { net, ctr } => {
                if let Some(c) = self.ctrs.get_mut(ctr) {
                    c.1.retain(|n| n != net);
                }
            }
            Op::Stop(c) => {
                if let Some(c) = self.ctrs.get_mut(c) {
                    c.0 = false;
                }
            }
            Op::Start(c) => {
                if let Some(c) = self.ctrs.get_mut(c) {
                    c.0 = true;
                }
            }
            Op::Rm(c) => {
                self.ctrs.remove(c);
            }
            Op::NetRm(n) => self.nets.retain(|x| x != n),
        }
    }
}

/// Refusals that are a correct answer to a random request.
const EXPECTED_ERRORS: &[&str] = &[
    "already",
    "not found",
    "No such",
    "in use",
    "not connected",
    "active endpoints",
    "not running",
    "non running",
    "pre-defined",
    "cannot be connected",
    "is not modified",
    "has no network namespace",
    "only supported for user-defined",
];

fn summary(r: &Run) -> String {
    let first = |s: &str| {
        s.trim()
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(160)
            .collect::<String>()
    };
    if r.code == 0 {
        format!("ok {}", first(&r.stdout))
    } else {
        format!("exit {}: {}", r.code, first(&r.stderr))
    }
}

/// What identifies a violation across checks (details that change follow ` — `).
fn key(v: &str) -> &str {
    v.split(" — ").next().unwrap_or(v)
}

/// reefd's log without terminal colours.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

struct Torture {
    born: Instant,
    h: Host,
    rng: Rng,
    check_rng: Rng,
    model: Model,
    log: Vec<String>,
    /// Where the current and the previous cycle begin in `log`.
    cycle_start: usize,
    prev_cycle_start: usize,
    /// Offsets into reefd.log of the last two daemon starts.
    daemon_log_at: (usize, usize),
    ops: usize,
    kills: usize,
    kills_in_flight: usize,
    /// Distinct violations, in order, each with its report.
    violations: Vec<(String, String)>,
    seen: BTreeSet<String>,
    anomalies: Vec<String>,
    /// Longest observed duration of each op kind (µs), to aim kills inside it.
    durations: BTreeMap<&'static str, u64>,
    /// Containers whose `run`/`start` succeeded, with no `stop`/`rm` aimed at them since:
    /// they must be running after every restart.
    must_run: BTreeSet<String>,
    restart_ms: Vec<u128>,
    /// Restarts that failed for good (each one ends a host).
    fatal: usize,
}

impl Torture {
    fn note(&mut self, line: String) {
        let line = format!("[{:7.2}s] {line}", self.born.elapsed().as_secs_f64());
        if env_flag("REEF_TORTURE_VERBOSE") {
            eprintln!("{line}");
        }
        self.log.push(line);
    }

    fn run_op(&mut self, op: &Op) {
        let args = op.args();
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let t = Instant::now();
        let r = self.h.reef_timeout(&a, CMD_LIMIT);
        let us = t.elapsed().as_micros() as u64;
        self.ops += 1;
        let d = self.durations.entry(op.kind()).or_insert(0);
        *d = (*d).max(us);
        let line = format!(
            "#{} reef {} -> {} ({:.1} ms)",
            self.ops,
            args.join(" "),
            summary(&r),
            us as f64 / 1000.0
        );
        self.note(line.clone());
        self.track_must_run(op, r.code == 0);
        if r.code == 0 {
            self.model.apply(op);
        } else if r.code == 137 {
            self.anomaly(format!("{line}: hung for {CMD_LIMIT:?}"));
        } else if !EXPECTED_ERRORS.iter().any(|e| r.stderr.contains(e)) {
            self.anomaly(line);
        }
    }

    fn track_must_run(&mut self, op: &Op, succeeded: bool) {
        if let Some(c) = op.may_stop() {
            self.must_run.remove(c);
        }
        if let Some(c) = op.starts() {
            if succeeded {
                self.must_run.insert(c.to_string());
            } else {
                // A failed start of a running container changes nothing; any other failure
                // (a kill in flight) leaves it as it was, which we no longer know.
                self.must_run.remove(c);
            }
        }
    }

    /// Containers whose start succeeded (see `must_run`) that are not running.
    fn lost_starts(&self, st: &State) -> Vec<String> {
        self.must_run
            .iter()
            .filter_map(|name| match st.container(name) {
                Some(c) if c.running => None,
                Some(c) => Some(format!(
                    "[0] container {name}, whose run/start succeeded, is not running — {}",
                    c.status
                )),
                None => Some(format!(
                    "[0] container {name}, whose run/start succeeded, is gone"
                )),
            })
            .collect()
    }

    fn anomaly(&mut self, line: String) {
        eprintln!("reef torture: unexpected error (no kill in flight): {line}");
        self.anomalies.push(line);
    }

    /// Run `op` and kill -9 reefd while it is in flight.
    fn run_op_and_kill(&mut self, op: &Op) {
        let args = op.args();
        let typical = self.durations.get(op.kind()).copied().unwrap_or(5_000);
        let delay_us = if self.rng.chance(0.5) {
            self.rng.below(5_001) as u64
        } else {
            self.rng.below(typical.max(5_000) as usize + 1) as u64
        };
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.h.ns_path()))
            .args(["timeout", "-s", "KILL", "30"])
            .arg(bin_dir().join("reef"))
            .arg("-H")
            .arg(format!("unix://{}", self.h.socket().display()))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let t = Instant::now();
        let worker = std::thread::spawn(move || {
            let out = cmd.output();
            (out, Instant::now())
        });
        std::thread::sleep(Duration::from_micros(delay_us));
        let kill_instant = Instant::now();
        let killed_at = kill_instant - t;
        self.h.kill9_daemon();
        let (out, finished) = worker.join().expect("command thread");
        let out = out.expect("spawn reef");
        let took = finished - t;
        self.ops += 1;
        self.kills += 1;
        let r = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let in_flight = finished > kill_instant;
        if in_flight {
            self.kills_in_flight += 1;
        }
        self.track_must_run(op, r.code == 0);
        if r.code == 0 {
            self.model.apply(op);
        }
        let line = format!(
            "#{} reef {} -> {} ({:.1} ms) || KILL -9 reefd at +{:.2} ms{} [kill {}]",
            self.ops,
            args.join(" "),
            summary(&r),
            took.as_secs_f64() * 1000.0,
            killed_at.as_secs_f64() * 1000.0,
            if in_flight {
                ", in flight"
            } else {
                ", after it returned"
            },
            self.kills
        );
        self.note(line);
    }

    fn kill_idle(&mut self) {
        self.h.kill9_daemon();
        self.kills += 1;
        let line = format!("KILL -9 reefd between operations [kill {}]", self.kills);
        self.note(line);
    }

    fn daemon_log_len(&self) -> usize {
        std::fs::metadata(self.h.dir.join("reefd.log"))
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }

    fn restart(&mut self) -> bool {
        self.daemon_log_at = (self.daemon_log_at.1, self.daemon_log_len());
        for attempt in 1..=3 {
            let t = Instant::now();
            match self.h.try_start_daemon(&[], &[]) {
                Ok(()) => {
                    let ms = t.elapsed().as_millis();
                    self.restart_ms.push(ms);
                    self.note(format!("restart reefd ({ms} ms)"));
                    return true;
                }
                Err(log) => {
                    let log = strip_ansi(&log);
                    let last = log
                        .lines()
                        .rev()
                        .find(|l| !l.contains("DEBUG") && !l.contains(" INFO "))
                        .unwrap_or("")
                        .to_string();
                    self.note(format!("restart attempt {attempt} failed: {last}"));
                    if attempt == 3 {
                        let v = format!("[restart] reefd does not start any more: {last}");
                        self.violation(v);
                        let excerpt = self.daemon_log_excerpt();
                        eprintln!(
                            "  reefd log (info and above) since the start before the last kill:\n{excerpt}\n"
                        );
                    }
                }
            }
        }
        false
    }

    /// The daemon's log since the start before the last one, without debug lines.
    fn daemon_log_excerpt(&self) -> String {
        let log = std::fs::read(self.h.dir.join("reefd.log")).unwrap_or_default();
        let from = self.daemon_log_at.0.min(log.len());
        let text = strip_ansi(&String::from_utf8_lossy(&log[from..]));
        let lines: Vec<&str> = text.lines().filter(|l| !l.contains("DEBUG")).collect();
        let skip = lines.len().saturating_sub(60);
        lines[skip..].join("\n")
    }

    fn violation(&mut self, v: String) -> bool {
        if !self.seen.insert(key(&v).to_string()) {
            return false;
        }
        let mut report = String::new();
        let _ = writeln!(
            report,
            "VIOLATION, first seen after kill {} (op #{}): {v}",
            self.kills, self.ops
        );
        let _ = writeln!(report, "  operations of this and the previous cycle:");
        for l in &self.log[self.prev_cycle_start..] {
            let _ = writeln!(report, "    {l}");
        }
        eprintln!("{report}");
        self.violations.push((v, report));
        true
    }

    /// Check the invariants until they hold or `SETTLE` passes; record what is left.
    fn check(&mut self, when: &str) -> usize {
        let deadline = Instant::now() + SETTLE;
        let sampling = Sampling {
            ports: 3,
            dns_networks: 2,
        };
        let mut attempts = 0;
        let found = loop {
            attempts += 1;
            let gone = self.model.gone();
            let mut v = invariants::check_all(&self.h, &gone, &mut self.check_rng, sampling);
            if let Ok(st) = invariants::state(&self.h) {
                v.extend(self.lost_starts(&st));
            }
            // Known (persisting) violations need no second look; new ones get until the
            // deadline to go away (the veth reaper, a container exiting).
            let all_known = v.iter().all(|x| self.seen.contains(key(x)));
            if all_known || Instant::now() > deadline {
                break v;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if let Ok(st) = invariants::state(&self.h) {
            self.model.refresh(&st);
        }
        let n = found.len();
        self.note(format!(
            "check {when}: {} ({attempts} attempt{}, {:.1} s)",
            if n == 0 {
                "all invariants hold".to_string()
            } else {
                format!("{n} violation(s)")
            },
            if attempts == 1 { "" } else { "s" },
            (deadline - SETTLE).elapsed().as_secs_f64()
        ));
        let mut new = 0;
        for v in found {
            if self.violation(v) {
                new += 1;
            }
        }
        if new > 0 {
            let excerpt = self.daemon_log_excerpt();
            eprintln!(
                "  reefd log (info and above) since the start before the last kill:\n{excerpt}\n"
            );
            if let Some(last) = self.violations.last_mut() {
                let _ = writeln!(last.1, "  reefd log:\n{excerpt}");
            }
        }
        n
    }
}

#[test]
fn torture_kill9_reefd_keeps_invariants() {
    let kills_wanted = env_num("REEF_TORTURE_KILLS").unwrap_or(20) as usize;
    let seed = env_num("REEF_TORTURE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 ^ u64::from(std::process::id()))
            .unwrap_or(1)
    });
    let max_secs = env_num("REEF_TORTURE_MAX_SECS");
    let precheck = env_flag("REEF_TORTURE_PRECHECK");
    let stop_early = env_flag("REEF_TORTURE_STOP_ON_VIOLATION");
    eprintln!(
        "reef torture: seed {seed} (REEF_TORTURE_SEED={seed} replays it), {kills_wanted} kills{}",
        max_secs
            .map(|s| format!(", at most {s} s"))
            .unwrap_or_default()
    );
    let mut h = Host::new("torture");
    h.start_daemon(&[]);
    eprintln!("reef torture: test directory {}", h.dir.display());
    let mut t = Torture {
        born: Instant::now(),
        h,
        rng: Rng::new(seed),
        check_rng: Rng::new(seed ^ 0x5eed),
        model: Model::default(),
        log: vec![],
        cycle_start: 0,
        prev_cycle_start: 0,
        daemon_log_at: (0, 0),
        ops: 0,
        kills: 0,
        kills_in_flight: 0,
        violations: vec![],
        seen: BTreeSet::new(),
        anomalies: vec![],
        durations: BTreeMap::new(),
        must_run: BTreeSet::new(),
        restart_ms: vec![],
        fatal: 0,
    };
    let started = Instant::now();
    t.check("at start");
    let mut cycle = 0;
    while t.kills < kills_wanted {
        if max_secs.is_some_and(|m| started.elapsed().as_secs() >= m) {
            eprintln!("reef torture: time limit reached");
            break;
        }
        if stop_early && !t.violations.is_empty() {
            break;
        }
        cycle += 1;
        t.prev_cycle_start = t.cycle_start;
        t.cycle_start = t.log.len();
        t.note(format!("--- cycle {cycle}"));
        let n_ops = t.rng.below(6);
        for _ in 0..n_ops {
            let op = t.model.choose(&mut t.rng);
            t.run_op(&op);
        }
        if precheck {
            t.check("before the kill");
        }
        if t.rng.chance(0.8) {
            let op = t.model.choose(&mut t.rng);
            t.run_op_and_kill(&op);
        } else {
            t.kill_idle();
        }
        if !t.restart() {
            // Nothing more can be learnt from this host: go on with a fresh one, so that a
            // long run still finds the other bugs (this one is reported and fails the test).
            t.fatal += 1;
            if stop_early || t.kills >= kills_wanted {
                break;
            }
            eprintln!("reef torture: reefd cannot restart; continuing on a fresh host");
            let fresh = Host::new("torture");
            drop(std::mem::replace(&mut t.h, fresh));
            t.h.start_daemon(&[]);
            t.daemon_log_at = (0, 0);
            let (next_ctr, next_net) = (t.model.next_ctr, t.model.next_net);
            t.model = Model {
                next_ctr,
                next_net,
                ..Model::default()
            };
            t.must_run.clear();
            t.note(format!("fresh host {}", t.h.dir.display()));
            continue;
        }
        let when = format!("after kill {}", t.kills);
        t.check(&when);
        if t.kills.is_multiple_of(25) {
            eprintln!(
                "reef torture: {} kills, {} ops, {} distinct violations, {:.0} s",
                t.kills,
                t.ops,
                t.violations.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let elapsed = started.elapsed();
    let mut report = String::new();
    let _ = writeln!(
        report,
        "reef torture: seed {seed}: {} kills of reefd survived ({} with an operation in flight; {} after which reefd could not restart), {} operations in {} cycles, {:.0} s; restart {} ms median, {} ms max; {} distinct violation(s), {} unexpected error(s)",
        t.kills - t.fatal,
        t.kills_in_flight,
        t.fatal,
        t.ops,
        cycle,
        elapsed.as_secs_f64(),
        {
            let mut r = t.restart_ms.clone();
            r.sort_unstable();
            r.get(r.len() / 2).copied().unwrap_or(0)
        },
        t.restart_ms.iter().max().copied().unwrap_or(0),
        t.violations.len(),
        t.anomalies.len()
    );
    for a in &t.anomalies {
        let _ = writeln!(report, "  unexpected error: {a}");
    }
    for (v, _) in &t.violations {
        let _ = writeln!(report, "  violation: {v}");
    }
    eprintln!("{report}");
    let dir = bin_dir().parent().map(|p| p.join("torture"));
    if let Some(dir) = dir {
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("torture-{seed}.log"));
        let mut full = report.clone();
        full.push_str("\nviolation reports:\n");
        for (_, r) in &t.violations {
            full.push_str(r);
            full.push('\n');
        }
        full.push_str("\noperation log:\n");
        for l in &t.log {
            full.push_str(l);
            full.push('\n');
        }
        if std::fs::write(&path, full).is_ok() {
            eprintln!("reef torture: full log in {}", path.display());
        }
    }
    assert!(
        t.violations.is_empty(),
        "{} invariant violation(s) (seed {seed}); see the reports above",
        t.violations.len()
    );
    assert!(
        t.kills >= kills_wanted || max_secs.is_some(),
        "stopped after {} of {kills_wanted} kills",
        t.kills
    );
}

/// The checker itself: silent on a healthy host, and each kind of debris or missing piece
/// it must catch is caught (so a green torture run means something).
#[test]
fn torture_invariants_catch_debris() {
    let mut h = Host::new("invcheck");
    h.start_daemon(&[]);
    h.reef_ok(&["network", "create", "--subnet", "10.77.0.0/24", "inv"]);
    let socat = ["socat", "TCP-LISTEN:80,fork,reuseaddr", "SYSTEM:echo ok"];
    for (name, extra) in [
        (
            "a",
            vec![
                "--network",
                "inv",
                "--network-alias",
                "web",
                "-p",
                "20999:80",
            ],
        ),
        ("b", vec!["--network", "inv"]),
        ("c", vec!["-p", "80"]),
    ] {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend(extra);
        args.extend(socat);
        h.reef_ok(&args);
    }
    h.reef_ok(&["stop", "-t", "1", "c"]);
    let sampling = Sampling {
        ports: 5,
        dns_networks: 5,
    };
    let mut rng = Rng::new(7);
    let mut clean = vec![];
    let healthy = reef_integration::eventually(5, || {
        clean = invariants::check_all(&h, &["gone".to_string()], &mut rng, sampling);
        clean.is_empty()
    });
    assert!(healthy, "violations on a healthy host: {clean:#?}");

    // Doctored observations: what a crash could leave missing or extra.
    let st = invariants::state(&h).expect("state");
    let o = invariants::observe(&h, &st).expect("observe");
    let a = st.container("a").expect("a");
    let veth = a.endpoints[0].veth();
    let mut missing = o.clone();
    missing.links.retain(|l| l.name != veth);
    missing.nft.dnat_any.clear();
    if let Some(v) = missing.sandboxes.get_mut(&a.sandbox) {
        v.addrs.clear();
    }
    let v = invariants::running_containers_are_wired(&h, &st, &missing).join("\n");
    for want in [
        format!("host veth {veth}"),
        "has no DNAT element".to_string(),
        format!("holds {}/24", a.endpoints[0].ip),
    ] {
        assert!(v.contains(&want), "{want:?} not reported:\n{v}");
    }
    let mut extra = o.clone();
    extra
        .nft
        .dnat_any
        .push((("tcp".into(), 31999), ("10.77.0.99".into(), 80)));
    let b_sandbox = st.container("b").expect("b").sandbox.clone();
    let dup = a.endpoints[0].clone();
    if let Some(v) = extra.sandboxes.get_mut(&b_sandbox) {
        v.addrs
            .push(("eth9".into(), format!("{}/24", dup.ip), true));
    }
    let v = invariants::nothing_unaccounted(&h, &st, &extra).join("\n");
    assert!(v.contains("dnat_any { tcp . 31999"), "{v}");
    let v = invariants::no_double_allocation(&st, &extra).join("\n");
    assert!(
        v.contains(&format!(
            "address {}/24 is configured in 2 sandboxes",
            dup.ip
        )),
        "{v}"
    );

    // Real debris in the host namespace, an orphaned sandbox and a stray process.
    h.sh("ip link add vethdead0 type veth peer name vethdead1 && ip link add br-0123456789ab type bridge")
        .ok("debris links");
    let orphan = h.dir.join("exec/netns/0000orphan");
    std::fs::write(&orphan, "").expect("orphan netns entry");
    let stray = format!("{}/stray.sh", h.dir.display());
    std::fs::write(&stray, "exec sleep 1000\n").expect("stray script");
    h.spawn(&h.ns_path(), &format!("sh {stray}"));
    let st = invariants::state(&h).expect("state");
    let o = invariants::observe(&h, &st).expect("observe");
    let v = invariants::nothing_unaccounted(&h, &st, &o).join("\n");
    for want in [
        "host link vethdead0",
        "host link vethdead1",
        "bridge br-0123456789ab belongs to no network",
        "0000orphan",
        "`sleep 1000`",
    ] {
        assert!(v.contains(want), "{want:?} not reported:\n{v}");
    }
    let _ = std::fs::remove_file(&orphan);
}
