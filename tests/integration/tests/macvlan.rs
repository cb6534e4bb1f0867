//! Issue 12: the macvlan driver. Containers appear on the segment of a host interface (here
//! the host's veth to an "outside" namespace, standing for a LAN) with MACs and addresses
//! of their own; real traffic to the LAN and between containers.

use reef_integration::{outside_sh, Host, HOST_UPLINK_IP, OUTSIDE_IP};

fn sleeper(h: &Host, name: &str, extra: &[&str]) {
    let mut a = vec!["run", "-d", "--name", name];
    a.extend_from_slice(extra);
    a.extend_from_slice(&["sleep", "100000"]);
    h.reef_ok(&a);
}

fn ping(h: &Host, ctr: &str, ip: &str) -> bool {
    h.in_ctr(ctr, &format!("ping -c 1 -W 2 {ip}")).code == 0
}

fn network_names(h: &Host) -> Vec<String> {
    h.reef_ok(&["network", "ls"])
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// A macvlan network on the host's link to the "outside" LAN (198.51.100.0/24, whose
/// router is the outside namespace), its containers' addresses from `ip_range`.
fn lan_on_uplink(h: &Host, name: &str, ip_range: &str, extra: &[&str]) {
    let mut a = vec![
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "198.51.100.0/24",
        "--gateway",
        OUTSIDE_IP,
        "--ip-range",
        ip_range,
        "-o",
        "parent=uplink0",
    ];
    a.extend_from_slice(extra);
    a.push(name);
    h.reef_ok(&a);
}

/// The host's links, to show a refused create left nothing behind.
fn host_links(h: &Host) -> String {
    h.sh("ip -o link show | cut -d: -f2 | sort").ok("links")
}

/// `network create -d macvlan` on the LAN interface; containers on it reach the LAN and
/// each other; what cannot work is refused clearly and leaves nothing.
#[test]
fn r12_macvlan_containers_live_on_the_parents_segment() {
    let mut h = Host::new("macvlan");
    let outside = h.add_outside();
    h.start_daemon(&[]);
    lan_on_uplink(&h, "lan", "198.51.100.128/25", &[]);
    let ls = h.reef_ok(&["network", "ls"]);
    let row = ls.lines().find(|l| l.contains(" lan ")).unwrap_or_default();
    assert!(row.contains("macvlan") && row.contains("local"), "{ls}");
    let v: serde_json::Value =
        serde_json::from_str(&h.reef_ok(&["network", "inspect", "lan"])).unwrap();
    assert_eq!(v[0]["Driver"], "macvlan");
    assert_eq!(v[0]["Options"]["parent"], "uplink0");
    assert_eq!(v[0]["IPAM"]["Config"][0]["Gateway"], OUTSIDE_IP);

    sleeper(&h, "m1", &["--network", "lan"]);
    sleeper(&h, "m2", &["--network", "lan", "--ip", "198.51.100.200"]);
    let link = h.in_ctr("m1", "ip -d -o link show eth0").ok("eth0");
    assert!(link.contains("macvlan mode bridge"), "{link}");
    assert!(link.contains("link/ether 02:42:c6:33:64:80"), "{link}");
    let addr = h.in_ctr("m1", "ip -o -4 addr show eth0").ok("addr");
    assert!(addr.contains("198.51.100.128/24"), "{addr}");
    let route = h.in_ctr("m1", "ip route show default").ok("route");
    assert!(
        route.contains(&format!("via {OUTSIDE_IP} dev eth0")),
        "{route}"
    );
    assert_eq!(
        h.inspect("m2", "{{.NetworkSettings.Networks.lan.IPAddress}}"),
        "198.51.100.200"
    );

    // The LAN reaches the containers and they reach it and each other...
    assert!(ping(&h, "m1", OUTSIDE_IP), "m1 -> LAN");
    assert!(ping(&h, "m1", "198.51.100.200"), "m1 -> m2");
    let from_lan = outside_sh(&outside, "ping -c 1 -W 2 198.51.100.128");
    assert_eq!(from_lan.code, 0, "LAN -> m1: {}", from_lan.stderr);
    let neigh = outside_sh(&outside, "ip neigh show 198.51.100.128").ok("neigh");
    assert!(neigh.contains("02:42:c6:33:64:80"), "{neigh}");
    // ...but not the host through its own parent: the kernel passes no frames between a
    // parent and its macvlans (Docker's documented macvlan limit).
    let from_host = h.sh("ping -c 1 -W 1 198.51.100.128");
    assert_ne!(
        from_host.code, 0,
        "host -> m1 should not pass through uplink0"
    );
    // Nothing of the containers in the host namespace, nor in its firewall.
    let links = host_links(&h);
    assert!(!links.contains("veth"), "{links}");
    let nft = h.sh("nft list ruleset").ok("nft");
    assert!(!nft.contains("198.51.100.128"), "{nft}");

    // What macvlan cannot do is refused, naming why, and leaves nothing.
    let err = h
        .reef(&[
            "run",
            "-d",
            "--name",
            "pub",
            "--network",
            "lan",
            "-p",
            "8080:80",
            "sleep",
            "9",
        ])
        .fails("publishing on macvlan");
    assert!(err.contains("macvlan network lan"), "{err}");
    assert!(h.reef(&["inspect", "pub"]).code != 0, "no container record");
    let before = host_links(&h);
    for (args, want) in [
        (
            vec!["-o", "parent=uplink0", "--subnet", "10.77.0.0/24", "lan2"],
            "network lan is already using parent interface uplink0",
        ),
        (
            vec!["-o", "parent=nope0", "--subnet", "10.77.0.0/24", "lan2"],
            "-o parent=nope0: no such interface on this host",
        ),
        (
            vec!["-o", "parent=uplink0", "-o", "macvlan_mode=l3", "lan2"],
            "invalid macvlan mode \"l3\"",
        ),
        // This kernel has no 802.1q VLANs: the error says so.
        (
            vec![
                "-o",
                "parent=uplink0.10",
                "--subnet",
                "10.77.0.0/24",
                "lan2",
            ],
            "no 802.1q VLAN support",
        ),
        // Nor dummy interfaces, the parent of a macvlan network without one.
        (
            vec!["--subnet", "10.77.0.0/24", "lan2"],
            "no dummy interface support",
        ),
    ] {
        let mut a = vec!["network", "create", "-d", "macvlan"];
        a.extend(args);
        let err = h.reef(&a).fails(&a.join(" "));
        assert!(err.contains(want), "{a:?}: {err}");
        assert!(
            !network_names(&h).contains(&"lan2".to_string()),
            "{a:?} left a record"
        );
        assert_eq!(host_links(&h), before, "{a:?} left a link");
    }

    // connect/disconnect: a bridge container gets a macvlan eth1 and loses it again.
    sleeper(&h, "b1", &[]);
    h.reef_ok(&["network", "connect", "--ip", "198.51.100.150", "lan", "b1"]);
    let eth1 = h.in_ctr("b1", "ip -d -o link show eth1").ok("eth1");
    assert!(eth1.contains("macvlan"), "{eth1}");
    assert!(ping(&h, "b1", "198.51.100.200"), "b1 -> m2 over eth1");
    h.reef_ok(&["network", "disconnect", "lan", "b1"]);
    assert_ne!(h.in_ctr("b1", "ip link show eth1").code, 0, "eth1 gone");
    assert!(ping(&h, "m1", "198.51.100.200"), "the others are untouched");

    // A daemon restart keeps the running containers wired.
    h.stop_daemon();
    h.start_daemon(&[]);
    assert!(ping(&h, "m1", OUTSIDE_IP), "after restart");

    // The network goes only when unused; its parent stays as the user made it.
    let err = h.reef(&["network", "rm", "lan"]).fails("rm in use");
    assert!(err.contains("active endpoints"), "{err}");
    h.reef_ok(&["rm", "-f", "m1", "m2", "b1"]);
    h.reef_ok(&["network", "rm", "lan"]);
    let up = h.sh("ip -o -4 addr show uplink0").ok("uplink0");
    assert!(up.contains(&format!("{HOST_UPLINK_IP}/24")), "{up}");
}

/// `macvlan_mode=private`: siblings cannot reach each other, the LAN still can.
#[test]
fn r12_macvlan_private_mode_keeps_siblings_apart() {
    let mut h = Host::new("mvpriv");
    let outside = h.add_outside();
    h.start_daemon(&[]);
    lan_on_uplink(
        &h,
        "priv",
        "198.51.100.64/26",
        &["-o", "macvlan_mode=private"],
    );
    sleeper(&h, "p1", &["--network", "priv"]);
    sleeper(&h, "p2", &["--network", "priv"]);
    let link = h.in_ctr("p1", "ip -d -o link show eth0").ok("eth0");
    assert!(link.contains("macvlan mode private"), "{link}");
    assert!(ping(&h, "p1", OUTSIDE_IP), "p1 -> LAN");
    assert!(ping(&h, "p2", OUTSIDE_IP), "p2 -> LAN");
    assert!(!ping(&h, "p1", "198.51.100.65"), "p1 -> p2 must not pass");
    let from_lan = outside_sh(&outside, "ping -c 1 -W 2 198.51.100.65");
    assert_eq!(from_lan.code, 0, "LAN -> p2: {}", from_lan.stderr);
}
