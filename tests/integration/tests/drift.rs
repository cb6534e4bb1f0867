//! Issue 6 (drift repair): someone else deletes reef's links or flushes its nftables table;
//! reefd notices through netlink events and restores them within a second. `reef system
//! check` reports drift and leftovers; `reef system gc` removes only reef's leftovers.

use reef_integration::{eventually, Host};

fn veth_of(h: &Host, ctr: &str) -> String {
    let links = h.sh("ip -o link show master reef0").ok("ports");
    // The host veth is named after the endpoint id.
    let v: serde_json::Value = serde_json::from_str(&h.reef_ok(&["inspect", ctr])).unwrap();
    let ep = v[0]["NetworkSettings"]["Networks"]["bridge"]["EndpointID"]
        .as_str()
        .unwrap()
        .to_string();
    let name = format!("veth{}", &ep[..10]);
    assert!(links.contains(&name), "{name} not in {links}");
    name
}

#[test]
fn r6_deleted_links_and_flushed_firewall_are_restored() {
    let mut h = Host::new("drift");
    h.start_daemon(&[]);
    h.reef_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "sh",
        "-c",
        "exec socat TCP-LISTEN:80,fork,reuseaddr SYSTEM:'echo ok'",
    ]);
    let ip = h.inspect("web", "{{.NetworkSettings.IPAddress}}");
    let reach = |h: &Host| h.sh("nc -w 1 127.0.0.1 8080 </dev/null").stdout.trim() == "ok";
    assert!(eventually(5, || reach(&h)), "baseline");
    assert_eq!(h.reef_ok(&["system", "check"]), "no drift, no leftovers");

    // A veth deleted by hand comes back.
    let veth = veth_of(&h, "web");
    h.sh(&format!("ip link del {veth}")).ok("delete veth");
    assert!(
        eventually(2, || h.sh(&format!("ping -c 1 -W 1 {ip}")).code == 0),
        "veth not restored"
    );
    assert!(
        h.daemon_log().contains("drift repaired"),
        "repair not logged"
    );

    // The bridge deleted by hand comes back, with its ports.
    h.sh("ip link del reef0").ok("delete bridge");
    assert!(
        eventually(2, || h.sh(&format!("ping -c 1 -W 1 {ip}")).code == 0),
        "bridge not restored"
    );

    // A bridge left down and without its address (a crash in the middle of `network
    // create` leaves it so) is completed when reefd starts.
    h.reef_ok(&["network", "create", "--subnet", "10.77.0.0/24", "half"]);
    let id = h.reef_ok(&["network", "inspect", "-f", "{{.Id}}", "half"]);
    let br = format!("br-{}", &id[..12]);
    h.stop_daemon();
    h.sh(&format!("ip addr flush dev {br} && ip link set {br} down"))
        .ok("break bridge");
    h.start_daemon(&[]);
    let addr = h
        .sh(&format!("ip -o addr show dev {br}"))
        .ok("bridge address");
    assert!(addr.contains("10.77.0.1/24"), "{addr}");
    let link = h.sh(&format!("ip -o link show dev {br}")).ok("bridge link");
    assert!(link.contains(",UP"), "{link}");
    h.reef_ok(&[
        "run",
        "-d",
        "--name",
        "h1",
        "--network",
        "half",
        "sleep",
        "1000",
    ]);
    assert_eq!(
        h.in_ctr("h1", "dig +short +time=2 +tries=1 @10.77.0.1 h1")
            .stdout
            .trim(),
        "10.77.0.2",
        "embedded DNS on the completed bridge"
    );
    h.reef_ok(&["rm", "-f", "h1"]);

    // A firewall reload that flushes reef's table, then one that deletes it.
    h.sh("nft flush table ip reef").ok("flush");
    assert!(eventually(2, || reach(&h)), "flushed table not restored");
    h.sh("nft delete table ip reef").ok("delete table");
    assert!(eventually(2, || reach(&h)), "deleted table not restored");
    assert!(eventually(2, || h.reef_ok(&["system", "check"])
        == "no drift, no leftovers"));
}

#[test]
fn r6_system_check_reports_and_gc_removes_only_reefs_leftovers() {
    let mut h = Host::new("gc");
    h.start_daemon(&[]);
    h.reef_ok(&["run", "-d", "--name", "a", "sleep", "100000"]);
    // A reef-marked veth nobody owns, and someone else's veth.
    h.sh("ip link add vethdead001 type veth peer name vethdead002 && ip link set vethdead001 alias reef:0123456789")
        .ok("orphan");
    h.sh("ip link add notreef0 type veth peer name notreef1")
        .ok("foreign");
    let check = h.reef(&["system", "check"]);
    assert_eq!(
        check.code, 1,
        "check must fail on leftovers: {}",
        check.stdout
    );
    assert!(
        check.stdout.contains("orphaned veth vethdead001"),
        "{}",
        check.stdout
    );
    assert!(!check.stdout.contains("notreef"), "{}", check.stdout);
    let gc = h.reef_ok(&["system", "gc"]);
    assert!(gc.contains("vethdead001"), "{gc}");
    let links = h.sh("ip -o link show").ok("links");
    assert!(!links.contains("vethdead001"), "{links}");
    assert!(
        links.contains("notreef0"),
        "gc removed a link reef does not own"
    );
    assert_eq!(h.reef_ok(&["system", "check"]), "no drift, no leftovers");
    assert_eq!(h.inspect("a", "{{.State.Running}}"), "true");
}
