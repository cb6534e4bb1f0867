//! The lab's plumbing: commands run inside namespaces, namespaces and their links,
//! processes found by the namespaces they live in, mounts under a work dir, and the sweep
//! of labs left behind by dead processes.
//!
//! Everything here acts inside namespaces the lab names (`ip -n NS ...`,
//! `nsenter --net=/run/netns/NS ...`); nothing is created in the root network namespace.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{LabError, Run};

/// Where `ip netns` binds named namespaces.
pub(crate) const NETNS_DIR: &str = "/run/netns";

/// Where the lab work dirs live (`/tmp/reef-lab-<prefix>`).
pub(crate) const WORK_PARENT: &str = "/tmp";

/// The work dir's name prefix.
pub(crate) const WORK_PREFIX: &str = "reef-lab-";

/// `/run/netns/<ns>`.
pub(crate) fn ns_path(ns: &str) -> String {
    format!("{NETNS_DIR}/{ns}")
}

/// A command that runs `program` inside the network namespace `ns` (nothing else of the
/// caller's context changes: `nsenter` execs the program, so the child's pid is its own).
pub(crate) fn in_ns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", ns_path(ns))).arg(program);
    c
}

/// Run a command to completion, capturing its output; `stdin` is written to it.
pub(crate) fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Result<Run, LabError> {
    let what = describe(&cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| LabError::io(&what, e))?;
    if let Some(bytes) = stdin {
        if let Some(mut w) = child.stdin.take() {
            let _ = w.write_all(bytes);
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::io(&what, e))?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Run a command; a spawn failure becomes a `Run` with code 127 (for the infallible,
/// assertion-style helpers).
pub(crate) fn run_lossy(cmd: Command, stdin: Option<&[u8]>) -> Run {
    run(cmd, stdin).unwrap_or_else(|e| Run {
        code: 127,
        stdout: String::new(),
        stderr: e.to_string(),
    })
}

/// The command line of `cmd`, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run a command that must succeed.
pub(crate) fn must(cmd: Command) -> Result<Run, LabError> {
    let what = describe(&cmd);
    let r = run(cmd, None)?;
    if r.code == 0 {
        Ok(r)
    } else {
        Err(LabError::Command {
            cmd: what,
            code: r.code,
            stderr: r.stderr.trim().to_string(),
        })
    }
}

/// `ip ARGS`, which must succeed.
pub(crate) fn ip(args: &[&str]) -> Result<(), LabError> {
    let mut c = Command::new("ip");
    c.args(args);
    must(c).map(|_| ())
}

/// `sh -c script` inside namespace `ns`.
pub(crate) fn sh_in(ns: &str, script: &str) -> Run {
    let mut c = in_ns(ns, "sh");
    c.args(["-c", script]);
    run_lossy(c, None)
}

/// Create a named namespace with `lo` up. Refuses one that exists already.
pub(crate) fn add_ns(ns: &str) -> Result<(), LabError> {
    if Path::new(&ns_path(ns)).exists() {
        return Err(LabError::State(format!(
            "namespace {ns} exists already (a stale lab? it is swept when its process is gone)"
        )));
    }
    // The name is this lab's alone, so a failure is not someone else's namespace: it was
    // seen once, unexplained, while other tests added and deleted namespaces in parallel.
    // Retry a failed add a few times before reporting it.
    let mut tries = 0;
    loop {
        match ip(&["netns", "add", ns]) {
            Ok(()) => break,
            Err(e) if tries >= 2 => return Err(e),
            Err(_) => {
                tries += 1;
                del_ns(ns);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    ip(&["-n", ns, "link", "set", "lo", "up"])
}

/// Delete a named namespace (its mount and file). Missing is fine.
pub(crate) fn del_ns(ns: &str) {
    if Path::new(&ns_path(ns)).exists() {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Wire namespace `ns` to the switch: a veth whose end `port` is a port of `sw0` in the
/// switch namespace and whose other end `nic` (with `mac`, `cidr`, optionally a default
/// route via `gw`) is in `ns`.
pub(crate) fn plug_into_switch(
    switch_ns: &str,
    port: &str,
    ns: &str,
    nic: &str,
    mac: &str,
    cidr: &str,
    gw: Option<&str>,
) -> Result<(), LabError> {
    ip(&[
        "-n", switch_ns, "link", "add", port, "type", "veth", "peer", "name", nic, "netns", ns,
    ])?;
    ip(&["-n", switch_ns, "link", "set", port, "master", "sw0", "up"])?;
    ip(&["-n", ns, "link", "set", nic, "address", mac])?;
    ip(&["-n", ns, "addr", "add", cidr, "dev", nic])?;
    ip(&["-n", ns, "link", "set", nic, "up"])?;
    if let Some(gw) = gw {
        ip(&["-n", ns, "route", "add", "default", "via", gw])?;
    }
    Ok(())
}

/// Names of the links in namespace `ns` (without the `@peer` suffix).
pub(crate) fn link_names(ns: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show"])
        .stderr(Stdio::null())
        .output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

/// `(st_dev, st_ino)` of a namespace file (following `/proc/<pid>/ns/net` links).
pub(crate) fn ns_id(path: &str) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// True when `pid` is a live process (not a zombie's leftover entry).
pub(crate) fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // "pid (comm) S ..."; the comm may contain spaces and parentheses.
            let state = s.rsplit_once(')').map(|(_, r)| r.trim_start());
            !matches!(state.and_then(|r| r.chars().next()), Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

/// Pids of processes (other than this one) living in one of the namespaces `ids`, or
/// whose `/etc/hosts` is a bind mount from a path containing `hosts_marker` (a container
/// that outlived its sandbox's mount still carries its files from the lab's dir).
pub(crate) fn pids_in(ids: &[(u64, u64)], hosts_marker: Option<&str>) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    let Ok(proc_dir) = fs::read_dir("/proc") else {
        return pids;
    };
    for e in proc_dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me || pid <= 1 {
            continue;
        }
        let in_ours = ns_id(&format!("/proc/{pid}/ns/net")).is_some_and(|id| ids.contains(&id));
        let mounts_ours = !in_ours
            && hosts_marker.is_some_and(|marker| {
                fs::read_to_string(format!("/proc/{pid}/mountinfo")).is_ok_and(|m| {
                    m.lines().any(|l| {
                        let f: Vec<&str> = l.split(' ').collect();
                        f.len() > 4 && f[4] == "/etc/hosts" && f[3].contains(marker)
                    })
                })
            });
        if in_ours || mounts_ours {
            pids.push(pid);
        }
    }
    pids
}

/// SIGKILL every pid `find` reports, by pid, until it reports none (at most `limit`).
/// Returns the pids still there at the end.
pub(crate) fn kill_until_gone(mut find: impl FnMut() -> Vec<i32>, limit: Duration) -> Vec<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let pids = find();
        if pids.is_empty() || Instant::now() > deadline {
            return pids;
        }
        for p in &pids {
            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait for a child to exit; SIGKILL it after `grace`.
pub(crate) fn wait_or_kill(child: &mut Child, grace: Duration) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Send `sig` to a child we spawned, by its pid, unless it has exited already.
pub(crate) fn signal_child(child: &mut Child, sig: Signal) {
    if let Ok(None) = child.try_wait() {
        let _ = kill(Pid::from_raw(child.id() as i32), sig);
    }
}

/// One line of `/proc/self/mountinfo` that matters here.
pub(crate) struct Mount {
    pub(crate) point: PathBuf,
    pub(crate) fstype: String,
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Mounts of this mount namespace at or below `dir`.
pub(crate) fn mounts_under(dir: &Path) -> Vec<Mount> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = PathBuf::from(unescape(left.split(' ').nth(4)?));
            let fstype = right.split(' ').next()?.to_string();
            point.starts_with(dir).then_some(Mount { point, fstype })
        })
        .collect()
}

/// Namespace ids of the namespaces bound (nsfs mounts) at or below `dir`.
pub(crate) fn ns_mounts_under(dir: &Path) -> Vec<(u64, u64)> {
    mounts_under(dir)
        .into_iter()
        .filter(|m| m.fstype == "nsfs")
        .filter_map(|m| ns_id(&m.point.to_string_lossy()))
        .collect()
}

/// Lazily unmount every mount at or below `dir` (deepest first, every layer).
pub(crate) fn umount_under(dir: &Path) {
    for _ in 0..16 {
        let mut points: Vec<PathBuf> = mounts_under(dir).into_iter().map(|m| m.point).collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        points.dedup();
        for p in points {
            let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Remove a lab directory: unmount what is mounted under it, then delete it.
pub(crate) fn remove_dir(dir: &Path) {
    umount_under(dir);
    let _ = fs::remove_dir_all(dir);
}

/// A lab prefix `rl<pid>x<seq>` at the start of `s`: returns (pid, prefix, rest).
pub(crate) fn parse_prefix(s: &str) -> Option<(u32, &str, &str)> {
    let body = s.strip_prefix("rl")?;
    let x = body.find('x')?;
    let pid: u32 = body[..x].parse().ok()?;
    if x == 0 || !body[..x].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let after = &body[x + 1..];
    let seq_len = after.bytes().take_while(u8::is_ascii_digit).count();
    if seq_len == 0 {
        return None;
    }
    let end = 2 + x + 1 + seq_len;
    Some((pid, &s[..end], &s[end..]))
}

/// True for the namespace suffixes a lab creates: `-sw`, `-gw`, `-h<n>`, `-e<n>`.
pub(crate) fn is_lab_ns_suffix(rest: &str) -> bool {
    match rest {
        "-sw" | "-gw" => true,
        _ => ["-h", "-e"].iter().any(|k| {
            rest.strip_prefix(k)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        }),
    }
}

/// Namespaces named by lab `prefix` (`<prefix>-sw`, `-gw`, `-h<n>`, `-e<n>`).
pub(crate) fn lab_namespaces(prefix: &str) -> Vec<String> {
    let Ok(dir) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| matches!(parse_prefix(n), Some((_, p, rest)) if p == prefix && is_lab_ns_suffix(rest)))
        .collect()
}

/// Remove one lab by its prefix, whoever made it: kill (by pid) the processes in its
/// namespaces and its containers', unmount what is mounted under its work dir, delete
/// its namespaces (etcd members, hosts, gateway, switch) and its work dir.
pub(crate) fn remove_lab(prefix: &str) {
    let dir = Path::new(WORK_PARENT).join(format!("{WORK_PREFIX}{prefix}"));
    let mut names = lab_namespaces(prefix);
    let rank = |n: &str| match parse_prefix(n).map(|(_, _, r)| r) {
        Some(r) if r.starts_with("-e") => 0,
        Some(r) if r.starts_with("-h") => 1,
        Some("-gw") => 2,
        _ => 3,
    };
    names.sort_by_key(|n| rank(n));
    let marker = format!("{WORK_PREFIX}{prefix}/");
    let find = || {
        let mut ids: Vec<(u64, u64)> = names.iter().filter_map(|n| ns_id(&ns_path(n))).collect();
        ids.extend(ns_mounts_under(&dir));
        pids_in(&ids, Some(&marker))
    };
    kill_until_gone(find, Duration::from_secs(5));
    umount_under(&dir);
    for n in &names {
        del_ns(n);
    }
    let _ = fs::remove_dir_all(&dir);
}

/// Prefixes of labs whose process is gone (their pid is not alive); with `own`, also the
/// labs named with this process's pid (left by an earlier process that had the same pid,
/// valid only before this process made a lab).
pub(crate) fn stale_prefixes(own: bool) -> BTreeSet<String> {
    let me = std::process::id();
    let stale = |pid: u32| (own && pid == me) || (pid != me && !pid_alive(pid));
    let mut found = BTreeSet::new();
    if let Ok(dir) = fs::read_dir(NETNS_DIR) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some((pid, prefix, rest)) = parse_prefix(&name) {
                if is_lab_ns_suffix(rest) && stale(pid) {
                    found.insert(prefix.to_string());
                }
            }
        }
    }
    if let Ok(dir) = fs::read_dir(WORK_PARENT) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(tail) = name.strip_prefix(WORK_PREFIX) else {
                continue;
            };
            if let Some((pid, prefix, "")) = parse_prefix(tail) {
                if stale(pid) {
                    found.insert(prefix.to_string());
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_strictly() {
        assert_eq!(parse_prefix("rl123x4-h1"), Some((123, "rl123x4", "-h1")));
        assert_eq!(parse_prefix("rl123x45"), Some((123, "rl123x45", "")));
        assert_eq!(parse_prefix("rlx4-h1"), None);
        assert_eq!(parse_prefix("rl12x-h1"), None);
        assert_eq!(parse_prefix("rt123-0-foo"), None);
        assert_eq!(parse_prefix("rl+1x2"), None);
        assert!(is_lab_ns_suffix("-sw"));
        assert!(is_lab_ns_suffix("-e3"));
        assert!(is_lab_ns_suffix("-h12"));
        assert!(!is_lab_ns_suffix("-h"));
        assert!(!is_lab_ns_suffix("-hx"));
        assert!(!is_lab_ns_suffix("-other"));
        assert!(!is_lab_ns_suffix(""));
    }
}
