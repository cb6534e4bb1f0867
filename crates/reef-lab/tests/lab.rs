//! The lab itself, against the real kernel and the real etcd (root required: these tests
//! fail, never skip, without it). The reefd tests need the binaries built first:
//! `cargo build -p reefd -p reef --bins`.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reef_lab::{Lab, LabConfig};

/// Poll `f` until it returns true or `secs` pass.
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Namespaces whose name starts with `<prefix>-`.
fn namespaces_of(prefix: &str) -> Vec<String> {
    fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{prefix}-")))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_gone(prefix: &str, dir: &Path, pids: &[u32]) {
    assert_eq!(
        namespaces_of(prefix),
        Vec::<String>::new(),
        "namespaces left"
    );
    assert!(!dir.exists(), "{} left", dir.display());
    for p in pids {
        assert!(
            eventually(5, || !alive(*p)),
            "pid {p} is still alive after teardown"
        );
    }
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string());
            !matches!(state.as_deref().and_then(|r| r.chars().next()), Some('Z'))
        })
        .unwrap_or(false)
}

/// etcdctl from inside a host namespace, through the member's LAN address.
fn host_etcdctl(lab: &Lab, host: usize, endpoint: &str, args: &str) -> reef_lab::Run {
    lab.host(host).sh(&format!(
        "ETCDCTL_API=3 etcdctl --endpoints={endpoint} --dial-timeout=1s --command-timeout=2s {args}"
    ))
}

#[test]
fn two_hosts_one_etcd_member() {
    let lab = Lab::up(LabConfig::new(2).etcd(1).no_reefd()).unwrap();
    let (h1, h2) = (lab.host(1), lab.host(2));
    assert_eq!(h1.name(), "h1");
    assert_eq!(h1.ip().to_string(), "10.77.0.11");
    assert_eq!(h2.ip().to_string(), "10.77.0.12");
    assert_eq!(h1.nic(), "ens33");
    assert_eq!(lab.etcd_endpoints(), "http://10.77.0.101:2379");
    assert_eq!(lab.cluster_store(), "etcd://10.77.0.101:2379");

    // Host to host over ens33, both ways, and to the gateway.
    assert!(h1.ping("10.77.0.12"), "h1 -> h2");
    assert!(h2.ping("10.77.0.11"), "h2 -> h1");
    assert!(h1.ping("10.77.0.1"), "h1 -> gw");
    assert!(
        h1.sh_ok("ip -o addr show dev ens33")
            .contains("10.77.0.11/24"),
        "h1's address is on ens33"
    );
    for h in lab.hosts() {
        assert_eq!(
            h.sh_ok("ip route show default"),
            "default via 10.77.0.1 dev ens33",
            "{}'s default route",
            h.name()
        );
    }
    // The gateway has no way out of the lab (a route lookup only; nothing is sent).
    let out = lab.sh(lab.gw_ns(), "ip route get 192.0.2.1");
    assert!(!out.success(), "the gateway routes out of the lab: {out:?}");
    assert_eq!(
        lab.sh(lab.gw_ns(), "cat /proc/sys/net/ipv4/ip_forward")
            .ok("ip_forward"),
        "1"
    );

    // Put through the member, get from a host namespace over the LAN.
    lab.etcdctl(&["put", "/lab/k", "hello"]).ok("etcdctl put");
    let got = host_etcdctl(
        &lab,
        2,
        "http://10.77.0.101:2379",
        "get --print-value-only /lab/k",
    );
    assert_eq!(got.ok("get from h2"), "hello");
    assert!(h1
        .sh_ok("curl -s -m 2 http://10.77.0.101:2379/health")
        .contains("true"));
    assert_eq!(lab.etcd_leader(), Some(1));

    // Stop and start the member: its data survives.
    let pid = lab.etcd(1).pid().expect("etcd pid");
    lab.stop_etcd(1);
    assert!(!lab.etcd(1).running());
    assert!(!alive(pid), "etcd {pid} still alive after stop_etcd");
    assert!(
        !host_etcdctl(&lab, 1, "http://10.77.0.101:2379", "get /lab/k").success(),
        "etcd answers while stopped"
    );
    lab.start_etcd(1);
    assert_ne!(lab.etcd(1).pid(), Some(pid));
    let got = host_etcdctl(
        &lab,
        1,
        "http://10.77.0.101:2379",
        "get --print-value-only /lab/k",
    );
    assert_eq!(got.ok("get after restart"), "hello");

    let (prefix, dir) = (lab.prefix().to_string(), lab.dir().to_path_buf());
    let etcd_pid = lab.etcd(1).pid().unwrap();
    assert_eq!(namespaces_of(&prefix).len(), 5, "sw, gw, h1, h2, e1");
    lab.down().unwrap();
    assert_gone(&prefix, &dir, &[etcd_pid]);
}

#[test]
fn three_etcd_members_survive_losing_the_leader() {
    let lab = Lab::up(LabConfig::new(1).etcd(3).no_reefd()).unwrap();
    assert_eq!(
        lab.etcd_endpoints(),
        "http://10.77.0.101:2379,http://10.77.0.102:2379,http://10.77.0.103:2379"
    );
    let list = lab.etcdctl(&["member", "list"]).ok("member list");
    assert_eq!(list.lines().count(), 3, "{list}");
    for i in 1..=3 {
        assert!(lab.etcd_member_healthy(i), "e{i} healthy");
    }
    // Written through e1, read from the host through e3.
    lab.etcdctl_at(1, &["put", "/lab/a", "1"]).ok("put");
    let got = host_etcdctl(
        &lab,
        1,
        "http://10.77.0.103:2379",
        "get --print-value-only /lab/a",
    );
    assert_eq!(got.ok("get through e3"), "1");

    let leader = lab.etcd_leader().expect("a leader");
    let other = if leader == 1 { 2 } else { 1 };
    lab.kill9_etcd(leader);
    assert!(
        eventually(10, || lab
            .etcdctl_at(other, &["put", "/lab/after", "yes"])
            .success()),
        "no write with 2 of 3 members"
    );
    lab.start_etcd(leader);
    assert!(lab.etcd_member_healthy(leader));
    let got = lab.etcdctl_at(
        leader,
        &["get", "--consistency=s", "--print-value-only", "/lab/after"],
    );
    assert_eq!(got.ok("restarted member caught up"), "yes");

    let pids: Vec<u32> = lab.etcd_members().iter().filter_map(|m| m.pid()).collect();
    assert_eq!(pids.len(), 3);
    let (prefix, dir) = (lab.prefix().to_string(), lab.dir().to_path_buf());
    drop(lab);
    assert_gone(&prefix, &dir, &pids);
}

#[test]
fn reboot_leaves_a_fresh_host_with_its_state() {
    let lab = Lab::up(LabConfig::new(2).etcd(0).no_reefd()).unwrap();
    let (h1, h2) = (lab.host(1), lab.host(2));
    let fresh = h1.links();
    assert!(fresh.iter().any(|l| l == "ens33") && fresh.iter().any(|l| l == "lo"));
    let mac = h1.mac().to_string();
    h1.start_reefd(&[]);
    h2.start_reefd(&[]);

    h1.reef_ok(&["network", "create", "--subnet", "10.88.0.0/24", "net1"]);
    h1.reef_ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--network",
        "net1",
        "sleep",
        "100000",
    ]);
    h1.reef_ok(&["run", "-d", "--name", "b", "sleep", "100000"]);
    h2.reef_ok(&["run", "-d", "--name", "c", "sleep", "100000"]);
    let ctr_pid: u32 = h1.inspect("a", "{{.State.Pid}}").parse().unwrap();
    assert!(alive(ctr_pid));
    assert_eq!(h1.in_ctr_ok("a", "echo hi"), "hi");
    assert!(!h1.container_netns().is_empty(), "a's sandbox is bound");
    // Something reefd did not make: a VXLAN device and a veth.
    h1.sh_ok("ip link add vx-test type vxlan id 42 dstport 4789 dev ens33 && ip link add vt0 type veth peer name vt1");
    h1.spawn("sleep 100000");
    let reefd_pid = h1.reefd_pid().unwrap();
    assert!(h1.links().len() > fresh.len() + 3, "{:?}", h1.links());

    h1.reboot();

    assert!(!h1.reefd_running());
    assert!(!alive(reefd_pid), "reefd survived the reboot");
    assert!(!alive(ctr_pid), "container a survived the reboot");
    assert_eq!(h1.owned_pids(), Vec::<i32>::new(), "processes on h1");
    assert_eq!(h1.container_netns(), Vec::<std::path::PathBuf>::new());
    assert!(!h1.exec_root().exists(), "exec-root survived");
    assert!(h1.data_root().exists(), "the state dir is kept");
    assert_eq!(h1.links(), fresh, "links after the reboot");
    assert!(
        h1.sh_ok("ip -o link show ens33")
            .contains(&format!("link/ether {mac} ")),
        "ens33 keeps its MAC"
    );
    assert_eq!(
        h1.sh_ok("ip route show default"),
        "default via 10.77.0.1 dev ens33"
    );
    assert!(h1.ping("10.77.0.12"), "h1 -> h2 after the reboot");
    // The other host was not touched.
    assert!(h2.reefd_running());
    assert_eq!(h2.in_ctr_ok("c", "echo still"), "still");

    // reefd comes back on the old state dir.
    h1.start_reefd(&[]);
    let ps = h1.reef_ok(&["ps", "-a"]);
    assert!(
        ps.lines().any(|l| l.split_whitespace().last() == Some("a")),
        "container a is remembered: {ps}"
    );
    assert!(h1.reef_ok(&["network", "ls"]).contains("net1"));

    let (prefix, dir) = (lab.prefix().to_string(), lab.dir().to_path_buf());
    let pids = [h1.reefd_pid().unwrap(), h2.reefd_pid().unwrap()];
    let c_pid: u32 = h2.inspect("c", "{{.State.Pid}}").parse().unwrap();
    lab.down().unwrap();
    assert_gone(&prefix, &dir, &[pids[0], pids[1], c_pid]);
}

#[test]
fn a_panicking_test_leaves_nothing() {
    let (tx, rx) = std::sync::mpsc::channel();
    let joined = std::thread::spawn(move || {
        let lab = Lab::up(LabConfig::new(1).etcd(1)).unwrap();
        let h = lab.host(1);
        h.reef_ok(&["run", "-d", "--name", "x", "sleep", "100000"]);
        let ctr: u32 = h.inspect("x", "{{.State.Pid}}").parse().unwrap();
        tx.send((
            lab.prefix().to_string(),
            lab.dir().to_path_buf(),
            vec![h.reefd_pid().unwrap(), lab.etcd(1).pid().unwrap(), ctr],
        ))
        .unwrap();
        panic!("the test fails with the lab up");
    })
    .join();
    assert!(joined.is_err(), "the thread panicked");
    let (prefix, dir, pids) = rx.recv().unwrap();
    assert_gone(&prefix, &dir, &pids);
}

/// A namespace this test makes by hand, deleted however the test ends.
struct HandMade(Vec<String>);

impl Drop for HandMade {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn netns_add(ns: &str) {
    let out = Command::new("ip")
        .args(["netns", "add", ns])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip netns add {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn stale_labs_of_dead_processes_are_swept_and_nothing_else() {
    // A pid that was alive and is gone.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    assert!(!alive(dead));
    let stale = format!("rl{dead}x7");
    // A lab of a live process (pid 1), and a name no lab makes.
    let live = format!("rl1x{}", std::process::id());
    let _made = HandMade(vec![
        format!("{stale}-sw"),
        format!("{stale}-h1"),
        format!("{stale}-other"),
        format!("{live}-sw"),
    ]);
    for ns in &_made.0 {
        netns_add(ns);
    }
    let stale_dir = Path::new("/tmp").join(format!("reef-lab-{stale}"));
    let live_dir = Path::new("/tmp").join(format!("reef-lab-{live}"));
    fs::create_dir_all(stale_dir.join("h1/data")).unwrap();
    fs::create_dir_all(&live_dir).unwrap();
    // A process left running in the stale host.
    let mut orphan = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{stale}-h1"))
        .args(["sleep", "100000"])
        .spawn()
        .unwrap();

    // (Another test's `Lab::up` may sweep it first: what matters is what is left.)
    let swept = reef_lab::sweep_stale();

    let live_kept = Path::new(&format!("/run/netns/{live}-sw")).exists() && live_dir.exists();
    let _ = fs::remove_dir_all(&live_dir);
    assert!(!swept.contains(&live), "{live} swept");
    assert!(live_kept, "the live process's lab was touched");
    assert!(
        eventually(5, || matches!(orphan.try_wait(), Ok(Some(_)))),
        "the process in the stale lab was not killed"
    );
    let _ = orphan.kill();
    let _ = orphan.wait();
    assert!(!Path::new(&format!("/run/netns/{stale}-sw")).exists());
    assert!(!Path::new(&format!("/run/netns/{stale}-h1")).exists());
    assert!(!stale_dir.exists(), "stale dir left");
    assert!(
        Path::new(&format!("/run/netns/{stale}-other")).exists(),
        "a namespace no lab makes was deleted"
    );
}
