//! Issue 4: user-defined networks and the embedded DNS server, with real traffic and real
//! DNS queries (dig and the libc resolver through getent).

use reef_integration::{eventually, outside_sh, Host, HOST_UPLINK_IP, OUTSIDE_IP};

fn net_ip(h: &Host, ctr: &str, net: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&h.reef_ok(&["inspect", ctr])).expect("inspect json");
    v[0]["NetworkSettings"]["Networks"][net]["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn dig(h: &Host, ctr: &str, args: &str) -> String {
    h.in_ctr(ctr, &format!("dig +short +time=2 +tries=1 {args}"))
        .stdout
        .trim()
        .to_string()
}

fn sleeper(h: &Host, name: &str, extra: &[&str]) {
    let mut a = vec!["run", "-d", "--name", name];
    a.extend_from_slice(extra);
    a.extend_from_slice(&["sleep", "100000"]);
    h.reef_ok(&a);
}

#[test]
fn r4_network_lifecycle_output_and_errors() {
    let mut h = Host::new("netcmds");
    h.start_daemon(&[]);
    let ls = h.reef_ok(&["network", "ls"]);
    let header = ls.lines().next().unwrap();
    assert!(
        header.starts_with("NETWORK ID")
            && header.contains("NAME")
            && header.contains("DRIVER")
            && header.ends_with("SCOPE"),
        "{ls}"
    );
    for n in ["bridge", "host", "none"] {
        assert!(
            ls.lines().any(|l| l.split_whitespace().nth(1) == Some(n)),
            "{n} missing: {ls}"
        );
    }
    let id = h.reef_ok(&[
        "network",
        "create",
        "--subnet",
        "10.31.0.0/24",
        "--ip-range",
        "10.31.0.128/25",
        "--gateway",
        "10.31.0.254",
        "--label",
        "team=a",
        "-o",
        "com.docker.network.bridge.name=brteam",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "team",
    ]);
    assert_eq!(id.len(), 64);
    let v: serde_json::Value =
        serde_json::from_str(&h.reef_ok(&["network", "inspect", "team"])).unwrap();
    assert_eq!(v[0]["Name"], "team");
    assert_eq!(v[0]["Driver"], "bridge");
    assert_eq!(v[0]["Scope"], "local");
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], "10.31.0.0/24");
    assert_eq!(v[0]["IPAM"]["Config"][0]["Gateway"], "10.31.0.254");
    assert_eq!(v[0]["Labels"]["team"], "a");
    let br = h.sh("ip -o -4 addr show dev brteam").ok("bridge");
    assert!(br.contains("10.31.0.254/24"), "{br}");
    sleeper(&h, "t1", &["--network", "team"]);
    assert_eq!(net_ip(&h, "t1", "team"), "10.31.0.128");
    let link = h.in_ctr("t1", "ip -o link show dev eth0").ok("eth0");
    assert!(link.contains("mtu 1400"), "{link}");
    let v: serde_json::Value =
        serde_json::from_str(&h.reef_ok(&["network", "inspect", "team"])).unwrap();
    let members = v[0]["Containers"].as_object().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(
        members.values().next().unwrap()["IPv4Address"],
        "10.31.0.128/24"
    );

    // Errors, each leaving nothing behind.
    let err = h
        .reef(&["network", "create", "team"])
        .fails("duplicate name");
    assert!(err.contains("already exists"), "{err}");
    let err = h
        .reef(&["network", "create", "--subnet", "10.31.0.0/16", "overlap"])
        .fails("overlapping subnet");
    assert!(err.contains("overlaps"), "{err}");
    let err = h
        .reef(&[
            "network",
            "create",
            "--subnet",
            "10.32.0.0/24",
            "--gateway",
            "10.99.0.1",
            "gw",
        ])
        .fails("gateway outside subnet");
    assert!(err.contains("10.99.0.1"), "{err}");
    let err = h
        .reef(&["network", "create", "--subnet", "10.33.0.0/33", "bad"])
        .fails("bad subnet");
    assert!(err.contains("10.33.0.0/33"), "{err}");
    let err = h
        .reef(&[
            "run",
            "-d",
            "--network",
            "team",
            "--ip",
            "10.31.0.128",
            "sleep",
            "1",
        ])
        .fails("static address in use");
    assert!(err.contains("10.31.0.128"), "{err}");
    let err = h.reef(&["network", "rm", "team"]).fails("rm while in use");
    assert!(err.contains("active endpoints"), "{err}");
    let err = h
        .reef(&["network", "rm", "bridge"])
        .fails("rm of a pre-defined network");
    assert!(err.contains("pre-defined"), "{err}");
    assert_eq!(h.reef_ok(&["network", "ls", "-q"]).lines().count(), 4);

    h.reef_ok(&["rm", "-f", "t1"]);
    assert_eq!(h.reef_ok(&["network", "rm", "team"]), "team");
    assert_ne!(h.sh("ip link show brteam").code, 0, "bridge left behind");
    h.reef_ok(&["network", "create", "p1"]);
    h.reef_ok(&["network", "create", "p2"]);
    let pruned = h.reef_ok(&["network", "prune", "-f"]);
    assert!(pruned.contains("p1") && pruned.contains("p2"), "{pruned}");
    assert_eq!(h.reef_ok(&["network", "ls", "-q"]).lines().count(), 3);
}

#[test]
fn r4_networks_are_isolated_and_connect_disconnect_while_running() {
    let mut h = Host::new("isolate");
    h.start_daemon(&[]);
    h.reef_ok(&["network", "create", "--subnet", "10.41.0.0/24", "front"]);
    h.reef_ok(&["network", "create", "--subnet", "10.42.0.0/24", "back"]);
    sleeper(&h, "web", &["--network", "front"]);
    sleeper(&h, "db", &["--network", "back"]);
    sleeper(&h, "plain", &[]);
    let db_ip = net_ip(&h, "db", "back");
    let web_ip = net_ip(&h, "web", "front");
    let ping = |from: &str, ip: &str| h.in_ctr(from, &format!("ping -c 1 -W 1 {ip}")).code == 0;
    assert!(!ping("web", &db_ip), "front reached back");
    assert!(!ping("db", &web_ip), "back reached front");
    assert!(!ping("plain", &web_ip), "the default bridge reached front");

    // Connect while running: eth1 appears and traffic flows; disconnect removes it.
    h.reef_ok(&["network", "connect", "--ip", "10.42.0.50", "back", "web"]);
    let addr = h.in_ctr("web", "ip -o -4 addr show dev eth1").ok("eth1");
    assert!(addr.contains("10.42.0.50/24"), "{addr}");
    assert!(ping("web", &db_ip), "connected container cannot reach back");
    assert!(ping("web", "10.41.0.1"), "gateway of front");
    // As Docker's inspect: each network names its own gateway; the top level keeps the
    // default route's.
    let gws = h
        .reef_ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Gateway}} {{.NetworkSettings.Networks.front.Gateway}} {{.NetworkSettings.Networks.back.Gateway}}",
            "web",
        ])
        .trim()
        .to_string();
    assert_eq!(gws, "10.41.0.1 10.41.0.1 10.42.0.1");
    let err = h
        .reef(&["network", "connect", "back", "web"])
        .fails("connect twice");
    assert!(err.contains("already exists"), "{err}");
    h.reef_ok(&["network", "disconnect", "back", "web"]);
    assert_ne!(h.in_ctr("web", "ip link show eth1").code, 0, "eth1 left");
    assert!(!ping("web", &db_ip));
    let err = h
        .reef(&["network", "disconnect", "back", "web"])
        .fails("not connected");
    assert!(err.contains("not connected"), "{err}");
    // The old pair is deleted in the background; reconnecting at once gets eth1 again.
    h.reef_ok(&["network", "connect", "back", "web"]);
    let addr = h
        .in_ctr("web", "ip -o -4 addr show dev eth1")
        .ok("eth1 again");
    assert!(addr.contains("10.42.0."), "{addr}");
    assert!(
        ping("web", &db_ip),
        "reconnected container cannot reach back"
    );
    h.reef_ok(&["network", "disconnect", "back", "web"]);
    // A stopped container connected to a network joins it on start.
    h.reef_ok(&["stop", "-t", "1", "db"]);
    h.reef_ok(&["network", "connect", "front", "db"]);
    h.reef_ok(&["start", "db"]);
    let links = h.in_ctr("db", "ip -o -4 addr show").ok("addrs");
    assert!(
        links.contains("10.42.0.") && links.contains("10.41.0."),
        "{links}"
    );
    assert!(ping("db", &web_ip));
}

#[test]
fn r4_internal_networks_have_no_way_out() {
    let mut h = Host::new("internal");
    let out = h.add_outside();
    h.start_daemon(&[]);
    h.reef_ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.43.0.0/24",
        "vault",
    ]);
    h.reef_ok(&["network", "create", "--subnet", "10.44.0.0/24", "open"]);
    sleeper(&h, "secret", &["--network", "vault"]);
    sleeper(&h, "peer", &["--network", "vault"]);
    sleeper(&h, "free", &["--network", "open"]);
    let route = h.in_ctr("secret", "ip route show default").ok("route");
    assert_eq!(route, "", "internal network got a default route");
    assert_eq!(
        h.in_ctr(
            "secret",
            &format!("ping -c 1 -W 1 {}", net_ip(&h, "peer", "vault"))
        )
        .code,
        0,
        "containers on one internal network must reach each other"
    );
    // Even with a route added by hand inside, nothing is forwarded out.
    let _ = h.in_ctr("secret", "ip route add default via 10.43.0.1");
    assert_ne!(
        h.in_ctr("secret", &format!("ping -c 1 -W 1 {OUTSIDE_IP}"))
            .code,
        0
    );
    assert_eq!(
        h.in_ctr("free", &format!("ping -c 1 -W 2 {OUTSIDE_IP}"))
            .code,
        0,
        "open network reaches outside"
    );
    let err = h
        .reef(&[
            "run",
            "-d",
            "--network",
            "vault",
            "-p",
            "8080:80",
            "sleep",
            "1",
        ])
        .fails("publish on internal");
    assert!(err.contains("internal"), "{err}");
    let _ = out;
    let masq = h.sh("nft list set ip reef masq_nets").ok("masq set");
    assert!(
        !masq.contains("10.43.0.0/24"),
        "internal subnet masqueraded: {masq}"
    );
    assert!(masq.contains("10.44.0.0/24"), "{masq}");
}

#[test]
fn r4_embedded_dns_names_aliases_ptr_scope_and_lifetime() {
    let mut h = Host::new("dns");
    h.start_daemon(&[]);
    h.reef_ok(&["network", "create", "--subnet", "10.51.0.0/24", "app"]);
    h.reef_ok(&["network", "create", "--subnet", "10.52.0.0/24", "other"]);
    sleeper(&h, "client", &["--network", "app"]);
    let web1 = {
        sleeper(&h, "web1", &["--network", "app", "--network-alias", "web"]);
        net_ip(&h, "web1", "app")
    };
    sleeper(&h, "web2", &["--network", "app", "--network-alias", "web"]);
    let web2 = net_ip(&h, "web2", "app");
    sleeper(&h, "hidden", &["--network", "other"]);
    let resolv = h.in_ctr("client", "cat /etc/resolv.conf").ok("resolv");
    assert!(resolv.contains("nameserver 10.51.0.1"), "{resolv}");

    // By name, right after run -d returned; by short id; through libc too.
    assert_eq!(dig(&h, "client", "@10.51.0.1 web1"), web1);
    let short = &h.inspect("web1", "{{.Id}}")[..12];
    assert_eq!(dig(&h, "client", &format!("@10.51.0.1 {short}")), web1);
    assert_eq!(
        dig(&h, "client", "@10.51.0.1 WEB1"),
        web1,
        "names are case-insensitive"
    );
    let getent = h.in_ctr("client", "getent hosts web2").ok("getent");
    assert!(getent.starts_with(&web2), "{getent}");
    // An alias shared by two containers answers both, in rotating order.
    let first: Vec<String> = (0..4)
        .map(|_| {
            dig(&h, "client", "@10.51.0.1 web")
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let both = dig(&h, "client", "@10.51.0.1 web");
    assert!(both.contains(&web1) && both.contains(&web2), "{both}");
    assert!(
        first.contains(&web1) && first.contains(&web2),
        "no rotation: {first:?}"
    );
    // PTR.
    let ptr = dig(&h, "client", &format!("@10.51.0.1 -x {web1}"));
    assert!(ptr.starts_with("web1"), "{ptr}");
    // Unknown single labels are NXDOMAIN; other networks' names are out of scope.
    let nx = h
        .in_ctr("client", "dig +time=2 +tries=1 @10.51.0.1 nosuchname")
        .ok("dig");
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    let hid = h
        .in_ctr("client", "dig +time=2 +tries=1 @10.51.0.1 hidden")
        .ok("dig");
    assert!(
        hid.contains("status: NXDOMAIN"),
        "other network's container visible: {hid}"
    );
    // TCP too.
    assert_eq!(dig(&h, "client", "+tcp @10.51.0.1 web1"), web1);

    // A container stops: its name stops resolving; connect adds names at once.
    h.reef_ok(&["stop", "-t", "1", "web1"]);
    assert_eq!(dig(&h, "client", "@10.51.0.1 web1"), "");
    assert_eq!(dig(&h, "client", "@10.51.0.1 web"), web2);
    h.reef_ok(&["network", "connect", "--alias", "db", "app", "hidden"]);
    let hidden_app = net_ip(&h, "hidden", "app");
    assert_eq!(dig(&h, "client", "@10.51.0.1 db"), hidden_app);
    assert_eq!(dig(&h, "client", "@10.51.0.1 hidden"), hidden_app);
    // The default bridge keeps the classic behaviour: no embedded DNS.
    sleeper(&h, "classic", &[]);
    let resolv = h.in_ctr("classic", "cat /etc/resolv.conf").ok("resolv");
    assert!(
        !resolv.contains("10.51.0.1") && !resolv.contains("172.17.0.1"),
        "{resolv}"
    );
}

#[test]
fn r4_dns_forwards_to_upstream_and_is_not_an_open_resolver() {
    let mut h = Host::new("dnsfwd");
    let out = h.add_outside();
    // The "outside" machine runs an authoritative answer for example.test.
    let zone = h.dir.join("hosts.upstream");
    std::fs::write(&zone, format!("{OUTSIDE_IP} up.example.test\n")).unwrap();
    h.spawn(
        &format!("/run/netns/{out}"),
        &format!(
            "exec dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
             --bind-interfaces --listen-address={OUTSIDE_IP} --addn-hosts={} --user=root \
             --pid-file={}",
            zone.display(),
            h.dir.join("dnsmasq.pid").display()
        ),
    );
    h.start_daemon(&[]);
    h.reef_ok(&["network", "create", "--subnet", "10.61.0.0/24", "fwd"]);
    sleeper(&h, "asker", &["--network", "fwd", "--dns", OUTSIDE_IP]);
    assert!(
        eventually(10, || dig(&h, "asker", "@10.61.0.1 up.example.test")
            == OUTSIDE_IP),
        "not forwarded over UDP"
    );
    assert_eq!(
        dig(&h, "asker", "+tcp @10.61.0.1 up.example.test"),
        OUTSIDE_IP,
        "not forwarded over TCP"
    );
    let resolv = h.in_ctr("asker", "cat /etc/resolv.conf").ok("resolv");
    assert!(
        resolv.contains("nameserver 10.61.0.1") && !resolv.contains(OUTSIDE_IP),
        "{resolv}"
    );
    // The outside machine asking the server gets nothing: reef only answers its containers.
    let _ = outside_sh(
        &out,
        &format!("ip route add 10.61.0.0/24 via {HOST_UPLINK_IP}"),
    );
    let open = outside_sh(&out, "dig +time=1 +tries=1 @10.61.0.1 up.example.test").stdout;
    assert!(!open.contains("ANSWER SECTION"), "open resolver: {open}");
}
