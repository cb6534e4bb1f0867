//! Issue 6 (security of the host): what a container must not be able to do, each tried for
//! real.

use reef_integration::Host;

fn sleeper(h: &Host, name: &str) -> String {
    h.reef_ok(&["run", "-d", "--name", name, "sleep", "100000"]);
    h.inspect(name, "{{.NetworkSettings.IPAddress}}")
}

#[test]
fn r6_a_container_cannot_send_from_another_address_or_mac() {
    let mut h = Host::new("spoof");
    h.start_daemon(&[]);
    let a = sleeper(&h, "a");
    let b = sleeper(&h, "b");
    let ping = |from: &str, args: &str| h.in_ctr(from, &format!("ping -c 1 -W 1 {args}")).code == 0;
    assert!(ping("a", "172.17.0.1"), "baseline");
    assert!(ping("a", &b), "baseline a -> b");

    // a claims b's address and sends from it: dropped at a's bridge port.
    h.in_ctr("a", &format!("ip addr add {b}/32 dev eth0"))
        .ok("extra address");
    assert!(
        !ping("a", &format!("-I {b} 172.17.0.1")),
        "spoofed source got through"
    );
    // Its own address still works, and b is still b for everyone else.
    assert!(ping("a", &format!("-I {a} 172.17.0.1")));
    assert_eq!(h.sh(&format!("ping -c 1 -W 1 {b}")).code, 0);
    let neigh = h.sh(&format!("ip neigh show {b}")).ok("neigh");
    assert!(
        !neigh.contains("02:42:ac:11:00:02"),
        "a's MAC answers for b: {neigh}"
    );
    h.in_ctr("a", &format!("ip addr del {b}/32 dev eth0"))
        .ok("drop extra address");

    // a takes another MAC: nothing it sends passes.
    h.in_ctr("a", "ip link set eth0 address 02:42:de:ad:be:ef")
        .ok("new mac");
    h.in_ctr("a", "ip neigh flush all").ok("flush");
    assert!(!ping("a", "172.17.0.1"), "spoofed MAC got through");
    h.in_ctr("a", "ip link set eth0 address 02:42:ac:11:00:02")
        .ok("own mac back");
    assert!(
        reef_integration::eventually(5, || ping("a", "172.17.0.1")),
        "own MAC should work again"
    );

    // Connected networks get the same protection; removal cleans the elements.
    h.reef_ok(&["network", "create", "--subnet", "10.71.0.0/24", "side"]);
    h.reef_ok(&["network", "connect", "side", "a"]);
    let set = h.sh("nft list set bridge reef port_ip").ok("set");
    assert!(set.contains("10.71.0.2"), "{set}");
    h.reef_ok(&["rm", "-f", "a", "b"]);
    let set = h.sh("nft list set bridge reef port_ip").ok("set");
    assert!(!set.contains(&a) && !set.contains("10.71.0.2"), "{set}");
}
