//! Issue 2: the default bridge, IPAM, sandboxes, /etc files, network modes, errors,
//! rollback and crash recovery — the real reefd and reef in private namespaces, real traffic.

use reef_integration::invariants::{cmdline, ppid_of};
use reef_integration::{eventually, Host};

fn ping(h: &Host, ctr: &str, ip: &str) -> bool {
    h.in_ctr(ctr, &format!("ping -c 1 -W 2 {ip}")).code == 0
}

fn bridge_ports(h: &Host) -> usize {
    h.sh("ip -o link show master reef0")
        .ok("bridge ports")
        .lines()
        .count()
}

fn run_d(h: &Host, args: &[&str]) -> String {
    let mut a = vec!["run", "-d"];
    a.extend_from_slice(args);
    h.reef_ok(&a)
}

#[test]
fn r2_default_bridge_veth_ipam_and_traffic() {
    let mut h = Host::new("bridge");
    h.start_daemon(&[]);
    // The test namespace has no routes, so the first default pool is free.
    let br = h.sh("ip -o -4 addr show dev reef0").ok("reef0 address");
    assert!(br.contains("172.17.0.1/16"), "{br}");
    // The API socket is root-only.
    let mode = h
        .sh(&format!("stat -c '%a %U' {}", h.socket().display()))
        .ok("stat");
    assert_eq!(mode, "660 root");
    // The bridge has a MAC of its own (a port leaving must not change the gateway's MAC).
    let brlink = h.sh("ip -o link show dev reef0").ok("reef0 link");
    assert!(brlink.contains("02:42:ac:11:00:01"), "{brlink}");

    let id = run_d(&h, &["--name", "a", "sleep", "1000"]);
    assert_eq!(id.len(), 64, "run -d prints the full id: {id}");
    run_d(&h, &["--name", "b", "sleep", "1000"]);
    assert_eq!(
        h.inspect("a", "{{.NetworkSettings.IPAddress}}"),
        "172.17.0.2"
    );
    assert_eq!(
        h.inspect("b", "{{.NetworkSettings.IPAddress}}"),
        "172.17.0.3"
    );
    assert_eq!(h.inspect("a", "{{.NetworkSettings.Gateway}}"), "172.17.0.1");
    assert_eq!(h.inspect("a", "{{.NetworkSettings.IPPrefixLen}}"), "16");
    assert_eq!(
        h.inspect("a", "{{.NetworkSettings.MacAddress}}"),
        "02:42:ac:11:00:02"
    );
    assert_eq!(h.inspect("a", "{{.State.Running}}"), "true");

    // Host side: veth<10 hex> ports on reef0, carrying reef's alias.
    let ports = h.sh("ip -o link show master reef0").ok("bridge ports");
    assert_eq!(ports.lines().count(), 2, "{ports}");
    assert!(ports.lines().all(|l| l.contains(": veth")), "{ports}");

    // Container side: eth0 with the address, MAC, MTU; lo up; default route.
    let addr = h.in_ctr("a", "ip -o addr show dev eth0").ok("eth0");
    assert!(addr.contains("172.17.0.2/16"), "{addr}");
    let link = h.in_ctr("a", "ip -o link show dev eth0").ok("eth0 link");
    assert!(
        link.contains("mtu 1500") && link.contains("02:42:ac:11:00:02"),
        "{link}"
    );
    let lo = h.in_ctr("a", "ip -o link show dev lo").ok("lo");
    assert!(lo.contains("UP"), "{lo}");
    let route = h.in_ctr("a", "ip route show default").ok("route");
    assert!(route.contains("default via 172.17.0.1 dev eth0"), "{route}");
    // IPv4-only networks: no IPv6 address on eth0 (it would flood the bridge with
    // neighbour and listener packets), `::1` kept on lo; the host end has IPv6 off.
    let v6 = h.in_ctr("a", "ip -o -6 addr show").ok("ipv6 addresses");
    assert!(
        v6.contains("lo") && v6.contains("::1/128") && !v6.contains("eth0"),
        "{v6}"
    );
    let host_end = ports.lines().next().unwrap().split(':').nth(1).unwrap();
    let host_end = host_end.trim().split('@').next().unwrap();
    assert_eq!(
        h.sh(&format!(
            "cat /proc/sys/net/ipv6/conf/{host_end}/disable_ipv6"
        ))
        .ok("host end disable_ipv6"),
        "1",
        "host end {host_end}"
    );
    assert!(ping(&h, "a", "172.17.0.3"), "a cannot reach b");
    assert!(ping(&h, "b", "172.17.0.1"), "b cannot reach the gateway");
    assert_eq!(
        h.sh("ping -c 1 -W 2 172.17.0.2").code,
        0,
        "host cannot reach a"
    );

    // ps lists both; stop releases the address, which the next container gets.
    let ps = h.reef_ok(&["ps"]);
    assert!(ps.contains(" a\n") || ps.ends_with(" a"), "{ps}");
    h.reef_ok(&["stop", "-t", "1", "a"]);
    assert_eq!(h.inspect("a", "{{.State.Running}}"), "false");
    assert_eq!(h.inspect("a", "{{.NetworkSettings.IPAddress}}"), "");
    assert!(
        eventually(5, || bridge_ports(&h) == 1),
        "stopped container's veth stays"
    );
    run_d(&h, &["--name", "c", "sleep", "1000"]);
    assert_eq!(
        h.inspect("c", "{{.NetworkSettings.IPAddress}}"),
        "172.17.0.2"
    );
    // Starting again gives a new attachment.
    h.reef_ok(&["start", "a"]);
    assert_eq!(
        h.inspect("a", "{{.NetworkSettings.IPAddress}}"),
        "172.17.0.4"
    );
    assert!(ping(&h, "a", "172.17.0.2"));
    h.reef_ok(&["rm", "-f", "a", "b", "c"]);
    assert_eq!(h.reef_ok(&["ps", "-aq"]), "");
    assert!(
        eventually(5, || bridge_ports(&h) == 0),
        "veths left after rm -f"
    );
    let sandboxes = std::fs::read_dir(h.dir.join("exec/netns")).unwrap().count();
    assert_eq!(sandboxes, 0, "sandboxes left after rm -f");
}

#[test]
fn r2_etc_files_are_the_containers_own() {
    let mut h = Host::new("etc");
    h.start_daemon(&["--dns-search", "corp.example"]);
    let host_hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let id = run_d(&h, &["--name", "plain", "sleep", "1000"]);
    let short = &id[..12];
    assert_eq!(h.in_ctr("plain", "cat /etc/hostname").ok("hostname"), short);
    assert_eq!(h.in_ctr("plain", "hostname").ok("uts"), short);
    let hosts = h.in_ctr("plain", "cat /etc/hosts").ok("hosts");
    assert!(hosts.contains("127.0.0.1\tlocalhost"), "{hosts}");
    assert!(
        hosts.contains("::1\tlocalhost ip6-localhost ip6-loopback"),
        "{hosts}"
    );
    assert!(hosts.contains(&format!("172.17.0.2\t{short}")), "{hosts}");
    let resolv = h.in_ctr("plain", "cat /etc/resolv.conf").ok("resolv");
    assert!(
        resolv.contains("search corp.example"),
        "daemon --dns-search: {resolv}"
    );
    assert!(
        !resolv.contains("nameserver 127."),
        "loopback servers removed: {resolv}"
    );
    let mounts = h.in_ctr("plain", "cat /proc/self/mountinfo").ok("mounts");
    for f in ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"] {
        assert!(
            mounts.contains(&format!(" {f} ")),
            "{f} is not a mount: {mounts}"
        );
    }

    run_d(
        &h,
        &[
            "--name",
            "custom",
            "-h",
            "web01",
            "--dns",
            "10.0.0.53",
            "--dns-search",
            "a.example",
            "--dns-option",
            "ndots:2",
            "--add-host",
            "db.local:10.1.2.3",
            "sleep",
            "1000",
        ],
    );
    assert_eq!(
        h.in_ctr("custom", "cat /etc/hostname").ok("hostname"),
        "web01"
    );
    let hosts = h.in_ctr("custom", "cat /etc/hosts").ok("hosts");
    assert!(hosts.contains("10.1.2.3\tdb.local"), "{hosts}");
    assert!(hosts.contains("172.17.0.3\tweb01"), "{hosts}");
    assert_eq!(
        h.in_ctr("custom", "getent hosts db.local").ok("getent"),
        "10.1.2.3        db.local"
    );
    let resolv = h.in_ctr("custom", "cat /etc/resolv.conf").ok("resolv");
    assert!(resolv.contains("nameserver 10.0.0.53"), "{resolv}");
    assert!(resolv.contains("search a.example"), "{resolv}");
    assert!(resolv.contains("options ndots:2"), "{resolv}");
    // Writing inside the container never touches the host's files.
    h.in_ctr("custom", "echo changed > /etc/hostname")
        .ok("write");
    assert_eq!(
        std::fs::read_to_string("/etc/hostname").unwrap_or_default(),
        host_hostname
    );
    // Files are regenerated on start.
    h.reef_ok(&["restart", "-t", "1", "custom"]);
    assert_eq!(
        h.in_ctr("custom", "cat /etc/hostname").ok("hostname"),
        "web01"
    );
}

#[test]
fn r2_network_modes_none_host_container() {
    let mut h = Host::new("modes");
    h.start_daemon(&[]);
    run_d(
        &h,
        &["--name", "nonet", "--network", "none", "sleep", "1000"],
    );
    let links = h.in_ctr("nonet", "ip -o link show").ok("links");
    assert_eq!(links.lines().count(), 1, "none has only lo: {links}");
    assert!(links.contains(": lo:"), "{links}");
    assert_eq!(h.inspect("nonet", "{{.NetworkSettings.IPAddress}}"), "");

    run_d(
        &h,
        &["--name", "hostnet", "--network", "host", "sleep", "1000"],
    );
    let links = h.in_ctr("hostnet", "ip -o link show").ok("links");
    assert!(
        links.contains("reef0"),
        "host mode sees the host's interfaces: {links}"
    );

    run_d(&h, &["--name", "web", "sleep", "1000"]);
    run_d(
        &h,
        &[
            "--name",
            "side",
            "--network",
            "container:web",
            "sleep",
            "1000",
        ],
    );
    let web_ip = h.in_ctr("web", "ip -o -4 addr show dev eth0").ok("web");
    let side_ip = h.in_ctr("side", "ip -o -4 addr show dev eth0").ok("side");
    assert_eq!(web_ip, side_ip, "container: mode shares the namespace");
    assert_eq!(
        h.in_ctr("side", "cat /etc/hostname").ok("hostname"),
        h.in_ctr("web", "cat /etc/hostname").ok("hostname")
    );
    // A server in one is reachable from the other over their shared loopback.
    h.reef_ok(&[
        "exec",
        "web",
        "sh",
        "-c",
        "(echo shared | nc -N -l 127.0.0.1 7000 >/dev/null 2>&1 &)",
    ]);
    assert!(eventually(5, || {
        h.in_ctr("side", "nc -w 2 127.0.0.1 7000").stdout.trim() == "shared"
    }));

    h.reef_ok(&["stop", "-t", "1", "web"]);
    let err = h
        .reef(&["run", "-d", "--network", "container:web", "sleep", "1"])
        .fails("container: mode on a stopped container");
    assert!(err.contains("non running container"), "{err}");
    let err = h
        .reef(&["run", "-d", "--network", "container:nosuch", "sleep", "1"])
        .fails("container: mode on a missing container");
    assert!(err.contains("No such container"), "{err}");
}

#[test]
fn r2_daemon_flags_bip_mtu_fixed_cidr_dns() {
    let mut h = Host::new("flags");
    std::fs::write(
        h.dir.join("daemon.json"),
        r#"{"mtu": 1400, "dns": ["10.9.9.9"]}"#,
    )
    .unwrap();
    h.start_daemon(&[
        "--bip",
        "192.168.77.5/24",
        "--fixed-cidr",
        "192.168.77.128/25",
    ]);
    let br = h.sh("ip -o -4 addr show dev reef0").ok("reef0");
    assert!(br.contains("192.168.77.5/24"), "{br}");
    run_d(&h, &["--name", "a", "sleep", "1000"]);
    assert_eq!(
        h.inspect("a", "{{.NetworkSettings.IPAddress}}"),
        "192.168.77.128"
    );
    assert_eq!(
        h.inspect("a", "{{.NetworkSettings.Gateway}}"),
        "192.168.77.5"
    );
    let link = h.in_ctr("a", "ip -o link show dev eth0").ok("eth0");
    assert!(link.contains("mtu 1400"), "daemon.json mtu: {link}");
    let resolv = h.in_ctr("a", "cat /etc/resolv.conf").ok("resolv");
    assert!(
        resolv.contains("nameserver 10.9.9.9"),
        "daemon.json dns: {resolv}"
    );
    assert!(ping(&h, "a", "192.168.77.5"));
    // A static address outside the fixed range is refused, with nothing left behind.
    let before = h.reef_ok(&["ps", "-aq"]);
    let err = h
        .reef(&["run", "-d", "--ip", "192.168.77.20", "sleep", "1"])
        .fails("--ip outside fixed-cidr");
    assert!(err.contains("192.168.77.20"), "{err}");
    assert_eq!(h.reef_ok(&["ps", "-aq"]), before);
    // A static address inside it works; the same one again is refused.
    run_d(
        &h,
        &["--name", "s", "--ip", "192.168.77.200", "sleep", "1000"],
    );
    assert_eq!(
        h.inspect("s", "{{.NetworkSettings.IPAddress}}"),
        "192.168.77.200"
    );
    let err = h
        .reef(&["run", "-d", "--ip", "192.168.77.200", "sleep", "1"])
        .fails("--ip already taken");
    assert!(err.contains("192.168.77.200"), "{err}");
    let err = h
        .reef(&["run", "-d", "--ip", "10.0.0.1", "sleep", "1"])
        .fails("--ip outside subnet");
    assert!(err.contains("10.0.0.1"), "{err}");
    let err = h
        .reef(&["run", "-d", "--ip", "not-an-ip", "sleep", "1"])
        .fails("invalid --ip");
    assert!(err.contains("not-an-ip"), "{err}");
    assert_eq!(
        h.sh("ip -o link show master reef0")
            .ok("ports")
            .lines()
            .count(),
        2
    );
}

#[test]
fn r2_existing_bridge_with_fixed_cidr_and_default_gateway() {
    let mut h = Host::new("userbr");
    h.sh(
        "ip link add br0 type bridge && ip addr add 172.16.32.25/24 dev br0 && ip link set br0 up",
    )
    .ok("make br0");
    let err = h.daemon_refuses(&["-b", "nosuchbr"]);
    assert!(err.contains("nosuchbr"), "{err}");
    h.start_daemon(&[
        "-b",
        "br0",
        "--fixed-cidr",
        "172.16.32.64/26",
        "--default-gateway",
        "172.16.32.2",
    ]);
    run_d(&h, &["--name", "a", "sleep", "1000"]);
    assert_eq!(
        h.inspect("a", "{{.NetworkSettings.IPAddress}}"),
        "172.16.32.64"
    );
    let route = h.in_ctr("a", "ip route show default").ok("route");
    assert!(route.contains("via 172.16.32.2"), "{route}");
    assert!(
        ping(&h, "a", "172.16.32.25"),
        "container reaches the host's br0 address"
    );
    let ports = h.sh("ip -o link show master br0").ok("ports");
    assert_eq!(ports.lines().count(), 1, "{ports}");
    h.reef_ok(&["rm", "-f", "a"]);
    h.stop_daemon();
    // reef never deletes or re-addresses a bridge it did not create.
    let br = h.sh("ip -o -4 addr show dev br0").ok("br0");
    assert!(br.contains("172.16.32.25/24"), "{br}");
    assert_eq!(h.sh("ip link show reef0").code, 1, "no reef0 with -b");
}

#[test]
fn r2_bad_input_is_refused_cleanly() {
    let mut h = Host::new("errors");
    let err = h.daemon_refuses(&["--bip", "300.1.2.3/24"]);
    assert!(err.contains("300.1.2.3"), "{err}");
    let err = h.daemon_refuses(&["--bip", "10.1.0.1/24", "-b", "br0"]);
    assert!(err.contains("mutually exclusive"), "{err}");
    let err = h.daemon_refuses(&["--fixed-cidr", "10.1.0.0/33"]);
    assert!(err.contains("10.1.0.0/33"), "{err}");
    assert_eq!(
        h.sh("ip link show reef0").code,
        1,
        "a refused start leaves no bridge"
    );

    // A /30 has room for the bridge and one container.
    h.start_daemon(&["--bip", "10.44.0.1/30"]);
    run_d(&h, &["--name", "only", "sleep", "1000"]);
    let err = h.reef(&["run", "-d", "sleep", "1"]).fails("pool exhausted");
    assert!(err.to_lowercase().contains("no available"), "{err}");
    let err = h
        .reef(&["run", "-d", "--name", "only", "sleep", "1"])
        .fails("name in use");
    assert!(err.contains("already in use"), "{err}");
    let err = h
        .reef(&["run", "-d", "--name", "bad name", "sleep", "1"])
        .fails("bad name");
    assert!(err.contains("invalid container name"), "{err}");
    let err = h
        .reef(&["run", "-d", "--mac-address", "zz", "sleep", "1"])
        .fails("bad mac");
    assert!(err.contains("zz"), "{err}");
    let err = h
        .reef(&["run", "-d", "--add-host", "nocolon", "sleep", "1"])
        .fails("bad add-host");
    assert!(err.contains("nocolon"), "{err}");
    let err = h
        .reef(&["run", "-d", "--network", "nosuchnet", "sleep", "1"])
        .fails("unknown network");
    assert!(err.contains("nosuchnet"), "{err}");
    assert_eq!(
        h.reef_ok(&["ps", "-aq"]).lines().count(),
        1,
        "failed runs left containers"
    );
    assert_eq!(
        h.sh("ip -o link show master reef0")
            .ok("ports")
            .lines()
            .count(),
        1
    );

    let unreachable = h.reef_stdin(&["-H", "unix:///nonexistent/reef.sock", "ps"], None);
    let err = unreachable.fails("unreachable daemon");
    assert!(err.contains("Cannot connect to the reef daemon"), "{err}");
}

#[test]
fn r2_foreground_run_stdin_logs_exec_and_exit_codes() {
    let mut h = Host::new("fg");
    h.start_daemon(&[]);
    let run = h.reef(&["run", "--rm", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.stdout, "out\n");
    assert_eq!(run.stderr, "err\n");
    let run = h.reef(&["run", "--rm", "definitely-not-a-command"]);
    assert_eq!(run.code, 127, "missing command: {}", run.stderr);
    assert!(
        run.stderr.contains("executable file not found"),
        "{}",
        run.stderr
    );
    let run = h.reef_stdin(&["run", "--rm", "-i", "cat"], Some(b"through stdin\n"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "through stdin\n");
    let run = h.reef(&[
        "run", "--rm", "--name", "addr", "ip", "-o", "-4", "addr", "show", "eth0",
    ]);
    assert!(run.stdout.contains("172.17.0."), "{}", run.stdout);
    assert_eq!(h.reef_ok(&["ps", "-aq"]), "", "--rm removes the container");

    run_d(
        &h,
        &["--name", "talker", "sh", "-c", "echo hello; sleep 1000"],
    );
    assert!(eventually(5, || h.reef_ok(&["logs", "talker"]) == "hello"));
    assert_eq!(
        h.reef_ok(&["exec", "talker", "echo", "from-exec"]),
        "from-exec"
    );
    assert_eq!(h.reef(&["exec", "talker", "sh", "-c", "exit 5"]).code, 5);
    h.reef_ok(&["kill", "talker"]);
    assert_eq!(h.reef_ok(&["wait", "talker"]), "137");
    let err = h
        .reef(&["exec", "talker", "true"])
        .fails("exec in stopped container");
    assert!(err.contains("not running"), "{err}");
    run_d(&h, &["--name", "quick", "true"]);
    assert_eq!(h.reef_ok(&["wait", "quick"]), "0");
    let ps = h.reef_ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (0)"), "{ps}");
    let err = h.reef(&["rm", "nosuch"]).fails("rm of a missing container");
    assert!(err.contains("No such container"), "{err}");
    run_d(&h, &["--name", "busy", "sleep", "1000"]);
    let err = h.reef(&["rm", "busy"]).fails("rm of a running container");
    assert!(err.contains("running"), "{err}");
}

#[test]
fn r2_failed_setup_rolls_back_everything() {
    let mut h = Host::new("rollback");
    // Fail after the sandbox, lo and veth are made, before the veth joins the bridge.
    h.try_start_daemon(&[], &[("REEF_FAIL_AFTER_STEP", "3")])
        .unwrap_or_else(|log| panic!("reefd did not start: {log}"));
    let err = h
        .reef(&["run", "-d", "--name", "doomed", "sleep", "1000"])
        .fails("injected failure");
    assert!(err.contains("injected"), "{err}");
    assert_eq!(
        h.reef_ok(&["ps", "-aq"]),
        "",
        "failed run leaves no container"
    );
    let links = h.sh("ip -o link show").ok("links");
    assert!(!links.contains("veth"), "veth left after rollback: {links}");
    let sandboxes = std::fs::read_dir(h.dir.join("exec/netns")).unwrap().count();
    assert_eq!(sandboxes, 0, "sandbox left after rollback");
}

#[test]
fn r2_kill9_daemon_keeps_containers_and_reconciles() {
    let mut h = Host::new("crash");
    h.start_daemon(&[]);
    run_d(&h, &["--name", "a", "sleep", "1000"]);
    run_d(&h, &["--name", "b", "sleep", "1000"]);
    run_d(&h, &["--name", "gone", "sleep", "1000"]);
    let gone_pid = h.inspect("gone", "{{.State.Pid}}");
    h.kill9_daemon();
    // While reefd is down: one container dies, and a stray reef-marked veth appears.
    h.sh(&format!("kill -9 {gone_pid}")).ok("kill container");
    h.sh("ip link add vethdead000 type veth peer name vethdead001 && ip link set vethdead000 alias reef:deadbeef")
        .ok("stray veth");
    h.start_daemon(&[]);
    assert_eq!(h.inspect("a", "{{.State.Running}}"), "true");
    assert!(
        ping(&h, "a", "172.17.0.3"),
        "a lost b after the daemon restart"
    );
    assert_eq!(h.sh("ping -c 1 -W 2 172.17.0.2").code, 0);
    assert_eq!(h.inspect("gone", "{{.State.Running}}"), "false");
    assert_eq!(h.inspect("gone", "{{.State.ExitCode}}"), "137");
    let links = h.sh("ip -o link show").ok("links");
    assert!(
        !links.contains("vethdead000"),
        "orphan veth not removed: {links}"
    );
    assert!(
        eventually(5, || bridge_ports(&h) == 2),
        "bridge ports after restart"
    );
    // The re-adopted containers are still managed: stop reaps them.
    h.reef_ok(&["stop", "-t", "1", "a"]);
    assert_eq!(h.inspect("a", "{{.State.Running}}"), "false");
    run_d(&h, &["--name", "c", "sleep", "1000"]);
    assert_eq!(
        h.inspect("c", "{{.NetworkSettings.IPAddress}}"),
        "172.17.0.2"
    );
}

#[test]
fn r2_default_pool_skips_subnets_in_use_and_mac_and_tty_options() {
    let mut h = Host::new("pool");
    // The host already uses part of 172.17.0.0/16, so reef0 must take the next pool.
    h.sh("ip link add probe0 type veth peer name probe1 && ip addr add 172.17.9.1/24 dev probe0 && ip link set probe0 up")
        .ok("probe link");
    h.start_daemon(&[]);
    let br = h.sh("ip -o -4 addr show dev reef0").ok("reef0");
    assert!(br.contains("172.18.0.1/16"), "{br}");
    run_d(
        &h,
        &[
            "--name",
            "m",
            "--mac-address",
            "02:42:aa:bb:cc:dd",
            "sleep",
            "1000",
        ],
    );
    let link = h.in_ctr("m", "ip -o link show dev eth0").ok("eth0");
    assert!(link.contains("02:42:aa:bb:cc:dd"), "{link}");
    assert_eq!(
        h.inspect("m", "{{.NetworkSettings.MacAddress}}"),
        "02:42:aa:bb:cc:dd"
    );
    // -t gives the process a terminal of its own.
    let run = h.reef(&["run", "--rm", "-t", "sh", "-c", "tty"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.trim().starts_with("/dev/pts/"),
        "{:?}",
        run.stdout
    );
    // A restart of the daemon keeps the subnet it chose.
    h.stop_daemon();
    h.start_daemon(&[]);
    let br = h.sh("ip -o -4 addr show dev reef0").ok("reef0");
    assert!(br.contains("172.18.0.1/16"), "{br}");
}

/// The daemon's child processes whose command line contains `word`.
fn daemon_children(h: &Host, word: &str) -> Vec<i32> {
    let daemon = h.daemon_pid().expect("daemon running") as i32;
    h.owned_pids()
        .into_iter()
        .filter(|&p| ppid_of(p) == Some(daemon) && cmdline(p).contains(word))
        .collect()
}

#[test]
fn r2_shims_come_from_the_launcher_and_starts_survive_its_loss() {
    let mut h = Host::new("launcher");
    h.start_daemon(&[]);
    let launcher = daemon_children(&h, "--launcher");
    assert_eq!(launcher.len(), 1, "one shim launcher: {launcher:?}");
    let launcher = launcher[0];
    run_d(&h, &["--name", "a", "sleep", "1000"]);
    // a's shim is the launcher's child and shares its mount namespace (no copy of the
    // daemon's mounts per container), which lacks the sandbox directory.
    let pid: i32 = h.inspect("a", "{{.State.Pid}}").parse().unwrap();
    let shim = ppid_of(pid).expect("a's shim");
    assert_eq!(
        ppid_of(shim),
        Some(launcher),
        "a's shim {shim} is not the launcher's child"
    );
    let ns = |p: i32| std::fs::read_link(format!("/proc/{p}/ns/mnt")).unwrap();
    assert_eq!(ns(shim), ns(launcher));
    let netns_dir = h.dir.join("exec/netns").display().to_string();
    let mounts = std::fs::read_to_string(format!("/proc/{shim}/mountinfo")).unwrap();
    assert!(!mounts.contains(&netns_dir), "{mounts}");
    assert!(ping(&h, "a", "172.17.0.1"));

    // Without the launcher, starts go on (shims forked by the daemon, as before).
    let killed = std::process::Command::new("kill")
        .args(["-9", &launcher.to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill -9 {launcher}");
    for name in ["b", "c"] {
        run_d(&h, &["--name", name, "sleep", "1000"]);
        assert_eq!(h.inspect(name, "{{.State.Running}}"), "true");
    }
    assert!(ping(&h, "c", "172.17.0.2"), "c cannot reach a");
    h.reef_ok(&["rm", "-f", "a", "b", "c"]);
}

/// Issue 12: `/sys` in a container is a read-only sysfs of its own network namespace, as
/// in Docker: `/sys/class/net` lists its interfaces, with their MTU and MAC.
#[test]
fn r12_sys_shows_the_containers_own_interfaces() {
    let sys_mounts = || {
        std::fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .lines()
            .filter(|l| l.split(' ').nth(1) == Some("/sys"))
            .count()
    };
    let sys_before = sys_mounts();
    let mut h = Host::new("sysfs");
    h.start_daemon(&["--mtu", "1400"]);
    // The container's first process sees it (not only `reef exec`).
    let own = h.reef_ok(&["run", "--rm", "sh", "-c", "ls /sys/class/net"]);
    assert_eq!(own.split_whitespace().collect::<Vec<_>>(), ["eth0", "lo"]);
    run_d(&h, &["--name", "s1", "sleep", "1000"]);
    let listed = h.in_ctr("s1", "ls /sys/class/net").ok("ls");
    assert_eq!(
        listed.split_whitespace().collect::<Vec<_>>(),
        ["eth0", "lo"]
    );
    assert_eq!(
        h.in_ctr("s1", "cat /sys/class/net/eth0/mtu").ok("mtu"),
        "1400"
    );
    assert_eq!(
        h.in_ctr("s1", "cat /sys/class/net/eth0/address").ok("mac"),
        h.inspect("s1", "{{.NetworkSettings.MacAddress}}")
    );
    let mounts = h
        .in_ctr("s1", "grep ' /sys ' /proc/mounts | tail -n 1")
        .ok("mounts");
    // The topmost /sys mount is the container's own, read-only.
    assert!(mounts.starts_with("sysfs /sys sysfs ro,"), "{mounts}");
    assert_ne!(h.in_ctr("s1", "echo 1 > /sys/class/net/eth0/mtu").code, 0);
    // The container's mount stays in its own mount namespace.
    assert_eq!(sys_mounts(), sys_before, "a /sys mount leaked out");

    run_d(&h, &["--name", "s2", "--network", "none", "sleep", "1000"]);
    assert_eq!(h.in_ctr("s2", "ls /sys/class/net").ok("ls"), "lo");
    run_d(
        &h,
        &["--name", "s3", "--network", "container:s1", "sleep", "1000"],
    );
    let shared = h.in_ctr("s3", "ls /sys/class/net").ok("ls");
    assert_eq!(
        shared.split_whitespace().collect::<Vec<_>>(),
        ["eth0", "lo"]
    );
    run_d(&h, &["--name", "s4", "--network", "host", "sleep", "1000"]);
    assert!(h
        .in_ctr("s4", "ls /sys/class/net")
        .ok("ls")
        .contains("reef0"));
}

/// Issue 12: when `rm -f` (or `stop`) returns, the container has no port on the bridge any
/// more and `system check` is clean, though deleting the veths finishes in the background.
#[test]
fn r12_rm_returns_with_the_bridge_clean() {
    let mut h = Host::new("rmclean");
    h.start_daemon(&[]);
    let names: Vec<String> = (0..24).map(|i| format!("c{i}")).collect();
    for n in &names {
        run_d(&h, &["--name", n, "sleep", "100000"]);
    }
    assert_eq!(bridge_ports(&h), 24);
    // One at a time: each `rm -f` returns with exactly its own port gone...
    for (i, n) in names[..12].iter().enumerate() {
        h.reef_ok(&["rm", "-f", n]);
        assert_eq!(bridge_ports(&h), 23 - i, "a port of {n} left after rm -f");
    }
    // ...and all the rest at once.
    let mut args = vec!["rm", "-f"];
    args.extend(names[12..].iter().map(String::as_str));
    h.reef_ok(&args);
    assert_eq!(
        h.sh("ip -o link show master reef0").ok("ports"),
        "",
        "ports left on reef0 right after rm -f"
    );
    assert_eq!(h.reef_ok(&["system", "check"]), "no drift, no leftovers");
    // The same for stop, and a new container reuses the first address straight away.
    run_d(&h, &["--name", "s1", "sleep", "100000"]);
    let ip = h.inspect("s1", "{{.NetworkSettings.IPAddress}}");
    h.reef_ok(&["stop", "-t", "0", "s1"]);
    assert_eq!(bridge_ports(&h), 0, "a stopped container keeps no port");
    run_d(&h, &["--name", "s2", "sleep", "100000"]);
    assert_eq!(h.inspect("s2", "{{.NetworkSettings.IPAddress}}"), ip);
    assert_eq!(bridge_ports(&h), 1);
    // And the veths do go.
    assert!(eventually(10, || h
        .sh("ip -o link show type veth")
        .ok("veths")
        .lines()
        .count()
        == 1));
}

/// The same when reefd's own /sys is its namespace's sysfs already (as on a real host, or
/// under `ip netns exec`): a host-mode container gets that sysfs, read-only.
#[test]
fn r12_sys_when_reefd_has_its_namespaces_sysfs() {
    let mut h = Host::new("sysfs2");
    h.start_daemon_by_ip_netns_exec(&[]);
    run_d(
        &h,
        &["--name", "hostmode", "--network", "host", "sleep", "1000"],
    );
    let listed = h.in_ctr("hostmode", "ls /sys/class/net").ok("ls");
    assert!(
        listed.contains("reef0") && listed.contains("lo"),
        "{listed}"
    );
    let top = h
        .in_ctr("hostmode", "grep ' /sys ' /proc/mounts | tail -n 1")
        .ok("mounts");
    assert!(top.contains(" ro,") || top.contains(" ro "), "{top}");
    run_d(&h, &["--name", "bridged", "sleep", "1000"]);
    let own = h.in_ctr("bridged", "ls /sys/class/net").ok("ls");
    assert_eq!(own.split_whitespace().collect::<Vec<_>>(), ["eth0", "lo"]);
}
