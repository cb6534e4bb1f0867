//! Issue 3: nftables, ip-forward, masquerade, published ports (-p/-P), `reef port`,
//! ICC, links and source allow-lists — real traffic between the test's namespaces.

use reef_integration::{eventually, outside_sh, Host, HOST_UPLINK_IP, OUTSIDE_IP, OUTSIDE_IP2};

/// A TCP server in a container that answers every connection with who it saw.
fn peer_server(h: &Host, name: &str, port: u16, extra: &[&str]) {
    let script =
        format!("exec socat TCP-LISTEN:{port},fork,reuseaddr SYSTEM:'echo peer=$SOCAT_PEERADDR'");
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["sh", "-c", &script]);
    h.reef_ok(&args);
    // The listener is up once a direct connection from the host answers.
    let ip = h.inspect(name, "{{.NetworkSettings.IPAddress}}");
    assert!(
        eventually(5, || h
            .sh(&format!("nc -w 1 {ip} {port} </dev/null"))
            .stdout
            .contains("peer=")),
        "server {name} never answered on {ip}:{port}"
    );
}

fn ask(run: reef_integration::Run) -> String {
    run.stdout.trim().to_string()
}

fn nft_list(h: &Host) -> String {
    h.sh("nft list table ip reef").ok("nft list")
}

#[test]
fn r3_published_port_from_outside_host_localhost_and_hairpin() {
    let mut h = Host::new("publish");
    let out = h.add_outside();
    h.start_daemon(&[]);
    assert_eq!(h.sh("cat /proc/sys/net/ipv4/ip_forward").ok("sysctl"), "1");
    peer_server(&h, "web", 80, &["-p", "8080:80"]);
    run_client(&h, "client");

    // From another machine: DNAT keeps the real source.
    let got = ask(outside_sh(
        &out,
        &format!("nc -w 2 {HOST_UPLINK_IP} 8080 </dev/null"),
    ));
    assert_eq!(got, format!("peer={OUTSIDE_IP}"));
    // From the host to its own address and to 127.0.0.1.
    let got = ask(h.sh(&format!("nc -w 2 {HOST_UPLINK_IP} 8080 </dev/null")));
    assert!(got.starts_with("peer="), "host -> own address: {got:?}");
    let got = ask(h.sh("nc -w 2 127.0.0.1 8080 </dev/null"));
    assert!(got.starts_with("peer="), "host -> 127.0.0.1: {got:?}");
    // Hairpin: another container, and the container itself, through the host address.
    let got = ask(h.in_ctr(
        "client",
        &format!("nc -w 2 {HOST_UPLINK_IP} 8080 </dev/null"),
    ));
    assert!(got.starts_with("peer="), "container -> host:8080: {got:?}");
    let got = ask(h.in_ctr("web", &format!("nc -w 2 {HOST_UPLINK_IP} 8080 </dev/null")));
    assert!(got.starts_with("peer="), "hairpin to itself: {got:?}");

    // Outbound: the outside server sees the host's address (masquerade).
    h.spawn(
        &format!("/run/netns/{out}"),
        "exec socat TCP-LISTEN:9000,fork,reuseaddr SYSTEM:'echo peer=$SOCAT_PEERADDR'",
    );
    assert!(eventually(5, || {
        ask(h.in_ctr("client", &format!("nc -w 1 {OUTSIDE_IP} 9000 </dev/null")))
            == format!("peer={HOST_UPLINK_IP}")
    }));

    assert_eq!(h.reef_ok(&["port", "web"]), "80/tcp -> 0.0.0.0:8080");
    assert_eq!(h.reef_ok(&["port", "web", "80"]), "0.0.0.0:8080");
    let err = h.reef(&["port", "web", "81"]).fails("unpublished port");
    assert!(err.contains("No public port '81/tcp'"), "{err}");
    let ps = h.reef_ok(&["ps"]);
    assert!(ps.contains("0.0.0.0:8080->80/tcp"), "{ps}");
    assert!(
        nft_list(&h).contains("tcp . 8080 : "),
        "DNAT element missing"
    );

    // Removing the container removes its element; the port can be published again.
    h.reef_ok(&["rm", "-f", "web"]);
    assert!(
        !nft_list(&h).contains("tcp . 8080 : "),
        "DNAT element left behind"
    );
    let after = outside_sh(&out, &format!("nc -w 1 {HOST_UPLINK_IP} 8080 </dev/null"));
    assert!(
        !after.stdout.contains("peer="),
        "port still answers after rm"
    );
    peer_server(&h, "web2", 80, &["-p", "8080:80"]);
    let got = ask(outside_sh(
        &out,
        &format!("nc -w 2 {HOST_UPLINK_IP} 8080 </dev/null"),
    ));
    assert_eq!(got, format!("peer={OUTSIDE_IP}"));
}

fn run_client(h: &Host, name: &str) {
    h.reef_ok(&["run", "-d", "--name", name, "sleep", "100000"]);
}

#[test]
fn r3_publish_all_ranges_udp_and_specific_host_ip() {
    let mut h = Host::new("publishall");
    let out = h.add_outside();
    h.start_daemon(&[]);
    peer_server(&h, "auto", 90, &["--expose", "90", "-P"]);
    let line = h.reef_ok(&["port", "auto", "90/tcp"]);
    let port: u16 = line.rsplit(':').next().unwrap().parse().unwrap();
    let range = h
        .sh("cat /proc/sys/net/ipv4/ip_local_port_range")
        .ok("range");
    let mut r = range.split_whitespace().map(|p| p.parse::<u16>().unwrap());
    let (lo, hi) = (r.next().unwrap(), r.next().unwrap());
    assert!((lo..=hi).contains(&port), "-P port {port} not in {lo}-{hi}");
    let got = ask(outside_sh(
        &out,
        &format!("nc -w 2 {HOST_UPLINK_IP} {port} </dev/null"),
    ));
    assert_eq!(got, format!("peer={OUTSIDE_IP}"));

    // A range maps pairwise; a host-IP binding only answers on that address.
    h.reef_ok(&[
        "run",
        "-d",
        "--name",
        "ranged",
        "-p",
        "7000-7001:7000-7001",
        "-p",
        &format!("{HOST_UPLINK_IP}:7100:7000"),
        "-p",
        "7200:7200/udp",
        "sh",
        "-c",
        "socat TCP-LISTEN:7000,fork,reuseaddr SYSTEM:'echo seven' & \
         socat TCP-LISTEN:7001,fork,reuseaddr SYSTEM:'echo seven-one' & \
         exec socat UDP-RECVFROM:7200,fork SYSTEM:'echo udp-ok'",
    ]);
    let ports = h.reef_ok(&["port", "ranged"]);
    assert!(ports.contains("7000/tcp -> 0.0.0.0:7000"), "{ports}");
    assert!(
        ports.contains(&format!("7000/tcp -> {HOST_UPLINK_IP}:7100")),
        "{ports}"
    );
    assert!(ports.contains("7200/udp -> 0.0.0.0:7200"), "{ports}");
    assert!(eventually(5, || ask(outside_sh(
        &out,
        &format!("nc -w 1 {HOST_UPLINK_IP} 7001 </dev/null")
    )) == "seven-one"));
    assert_eq!(
        ask(outside_sh(
            &out,
            &format!("nc -w 1 {HOST_UPLINK_IP} 7100 </dev/null")
        )),
        "seven"
    );
    // 127.0.0.1 is a local address too, but 7100 is bound to the uplink address only.
    assert_eq!(ask(h.sh("nc -w 1 127.0.0.1 7100 </dev/null")), "");
    assert!(
        eventually(5, || ask(outside_sh(
            &out,
            &format!("echo hi | socat -T 1 - UDP:{HOST_UPLINK_IP}:7200")
        )) == "udp-ok"),
        "udp through the published port"
    );
}

#[test]
fn r3_port_conflicts_and_bad_specs_change_nothing() {
    let mut h = Host::new("conflicts");
    h.start_daemon(&[]);
    h.reef_ok(&[
        "run", "-d", "--name", "a", "-p", "8080:80", "sleep", "100000",
    ]);
    let before = nft_list(&h);
    let err = h
        .reef(&["run", "-d", "--name", "b", "-p", "8080:80", "sleep", "1"])
        .fails("port taken by a container");
    assert!(err.contains("port is already allocated"), "{err}");
    // A process on the host already listens on 9999.
    let host_ns = h.ns_path();
    h.spawn(&host_ns, "exec socat TCP-LISTEN:9999,reuseaddr -");
    assert!(eventually(5, || h
        .sh("ss -Hltn 'sport = :9999'")
        .stdout
        .contains("9999")));
    let err = h
        .reef(&["run", "-d", "--name", "c", "-p", "9999:80", "sleep", "1"])
        .fails("port bound on the host");
    assert!(err.contains("9999") && err.contains("in use"), "{err}");
    for bad in ["99999:80", "80/icmp", "300.1.1.1:80:80", "::1:80:80"] {
        let err = h.reef(&["run", "-d", "-p", bad, "sleep", "1"]).fails(bad);
        assert!(err.contains("invalid"), "{bad}: {err}");
    }
    let err = h
        .reef(&["run", "-d", "-p", "[::1]:8081:80/sctp", "sleep", "1"])
        .fails("sctp on an IPv6 host address");
    assert!(err.contains("IPv6"), "{err}");
    let err = h
        .reef(&[
            "run",
            "-d",
            "--network",
            "container:a",
            "-p",
            "81:81",
            "sleep",
            "1",
        ])
        .fails("publish in container: mode");
    assert!(err.contains("conflicting options"), "{err}");
    assert_eq!(
        h.reef_ok(&["ps", "-aq"]).lines().count(),
        1,
        "failed runs left containers"
    );
    assert_eq!(nft_list(&h), before, "failed runs changed the firewall");
}

#[test]
fn r3_icc_false_and_links_open_only_exposed_ports() {
    let mut h = Host::new("icc");
    h.start_daemon(&["--icc=false"]);
    h.reef_ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--expose",
        "5432",
        "-e",
        "SECRET=s3",
        "sh",
        "-c",
        "socat TCP-LISTEN:5432,fork,reuseaddr SYSTEM:'echo pg' & \
         exec socat TCP-LISTEN:6000,fork,reuseaddr SYSTEM:'echo other'",
    ]);
    let db_ip = h.inspect("db", "{{.NetworkSettings.IPAddress}}");
    assert!(eventually(5, || ask(
        h.sh(&format!("nc -w 1 {db_ip} 5432 </dev/null"))
    ) == "pg"));
    h.reef_ok(&[
        "run",
        "-d",
        "--name",
        "app",
        "--link",
        "db:dbalias",
        "sleep",
        "100000",
    ]);
    h.reef_ok(&["run", "-d", "--name", "stranger", "sleep", "100000"]);

    let hosts = h.in_ctr("app", "cat /etc/hosts").ok("hosts");
    assert!(hosts.contains(&format!("{db_ip}\tdbalias ")), "{hosts}");
    let env = h.in_ctr("app", "env").ok("env");
    assert!(
        env.contains(&format!("DBALIAS_PORT_5432_TCP=tcp://{db_ip}:5432")),
        "{env}"
    );
    assert!(env.contains("DBALIAS_ENV_SECRET=s3"), "{env}");
    assert!(env.contains("DBALIAS_NAME=/app/dbalias"), "{env}");

    // The link opens exactly the exposed port, by name.
    assert_eq!(
        ask(h.in_ctr("app", "nc -w 2 dbalias 5432 </dev/null")),
        "pg"
    );
    assert_eq!(
        ask(h.in_ctr("app", "nc -w 2 dbalias 6000 </dev/null")),
        "",
        "unexposed port reachable"
    );
    assert_ne!(
        h.in_ctr("app", &format!("ping -c 1 -W 1 {db_ip}")).code,
        0,
        "ping crossed icc=false"
    );
    // Without a link nothing gets through.
    assert_eq!(
        ask(h.in_ctr("stranger", &format!("nc -w 2 {db_ip} 5432 </dev/null"))),
        ""
    );
    // The host itself still reaches containers (icc is about container-to-container).
    assert_eq!(
        ask(h.sh(&format!("nc -w 1 {db_ip} 6000 </dev/null"))),
        "other"
    );

    h.reef_ok(&["stop", "-t", "1", "db"]);
    let err = h
        .reef(&["run", "-d", "--link", "db:x", "sleep", "1"])
        .fails("link to a stopped container");
    assert!(err.contains("non running container"), "{err}");
    let err = h
        .reef(&["run", "-d", "--link", "nosuch:x", "sleep", "1"])
        .fails("link to a missing container");
    assert!(err.contains("nosuch"), "{err}");
}

#[test]
fn r3_source_allow_list_and_the_admin_chain() {
    let mut h = Host::new("allow");
    let out = h.add_outside();
    h.start_daemon(&[]);
    peer_server(
        &h,
        "web",
        80,
        &[
            "-p",
            "8080:80",
            "--publish-allow",
            &format!("8080/tcp={OUTSIDE_IP}/32"),
        ],
    );
    peer_server(&h, "open", 81, &["-p", "8081:81"]);
    let from = |src: &str, port: u16| {
        ask(outside_sh(
            &out,
            &format!("nc -w 1 -s {src} {HOST_UPLINK_IP} {port} </dev/null"),
        ))
    };
    assert_eq!(from(OUTSIDE_IP, 8080), format!("peer={OUTSIDE_IP}"));
    assert_eq!(
        from(OUTSIDE_IP2, 8080),
        "",
        "a source outside the allow-list got in"
    );
    assert_eq!(from(OUTSIDE_IP2, 8081), format!("peer={OUTSIDE_IP2}"));

    // 004's example: the administrator blocks one source from port 80 in REEF-USER.
    h.sh(&format!(
        "nft add rule ip reef REEF-USER ip saddr {OUTSIDE_IP2} tcp dport 81 drop"
    ))
    .ok("admin rule");
    assert_eq!(from(OUTSIDE_IP2, 8081), "", "admin rule ignored");
    assert_eq!(from(OUTSIDE_IP, 8081), format!("peer={OUTSIDE_IP}"));
    // reef never touches that chain, not even when it restarts.
    h.stop_daemon();
    h.start_daemon(&[]);
    let user = h.sh("nft list chain ip reef REEF-USER").ok("user chain");
    assert!(
        user.contains(&format!("ip saddr {OUTSIDE_IP2} tcp dport 81 drop")),
        "{user}"
    );
    assert_eq!(from(OUTSIDE_IP2, 8081), "", "admin rule lost on restart");
    assert_eq!(
        from(OUTSIDE_IP, 8080),
        format!("peer={OUTSIDE_IP}"),
        "published port lost on restart"
    );

    let err = h
        .reef(&[
            "run",
            "-d",
            "--publish-allow",
            "9000/tcp=10.0.0.0/8",
            "sleep",
            "1",
        ])
        .fails("allow-list for an unpublished port");
    assert!(err.contains("no -p publishes host port 9000/tcp"), "{err}");
    let err = h
        .reef(&[
            "run",
            "-d",
            "-p",
            "9000:80",
            "--publish-allow",
            "9000=not-a-net",
            "sleep",
            "1",
        ])
        .fails("bad allow-list source");
    assert!(err.contains("not-a-net"), "{err}");
}

#[test]
fn r3_rule_count_stays_constant_with_a_thousand_ports() {
    let mut h = Host::new("scale");
    h.start_daemon(&[]);
    let rules = |h: &Host| {
        let t = nft_list(h);
        let mut counts = std::collections::BTreeMap::new();
        let mut chain = String::new();
        for line in t.lines().map(str::trim) {
            if let Some(c) = line.strip_prefix("chain ") {
                chain = c.trim_end_matches(" {").to_string();
            } else if !line.is_empty()
                && !line.starts_with("type ")
                && !line.starts_with('}')
                && !line.starts_with("set ")
                && !line.starts_with("map ")
                && !line.starts_with("elements")
                && !line.starts_with("flags")
                && !chain.is_empty()
            {
                *counts.entry(chain.clone()).or_insert(0) += 1;
            }
        }
        counts
    };
    let empty = rules(&h);
    h.reef_ok(&[
        "run",
        "-d",
        "--name",
        "many",
        "-p",
        "20000-20999:20000-20999",
        "sleep",
        "100000",
    ]);
    assert_eq!(h.reef_ok(&["port", "many"]).lines().count(), 1000);
    let t = nft_list(&h);
    assert!(t.contains("tcp . 20999 : "), "1000th port missing");
    assert_eq!(rules(&h), empty, "rules per chain grew with the ports");
    h.reef_ok(&["rm", "-f", "many"]);
    assert!(!nft_list(&h).contains("tcp . 20000 : "));
}

#[test]
fn r3_iptables_false_and_ip_forward_false_touch_nothing() {
    let mut h = Host::new("noipt");
    h.start_daemon(&["--iptables=false", "--ip-forward=false"]);
    let tables = h.sh("nft list tables").ok("tables");
    assert!(!tables.contains("reef"), "{tables}");
    assert_eq!(h.sh("cat /proc/sys/net/ipv4/ip_forward").ok("sysctl"), "0");
    h.reef_ok(&["run", "-d", "--name", "a", "sleep", "100000"]);
    let err = h
        .reef(&["run", "-d", "-p", "80", "sleep", "1"])
        .fails("publish without firewall");
    assert!(err.contains("--iptables=false"), "{err}");
    assert!(!h.sh("nft list tables").ok("tables").contains("reef"));
}

#[test]
fn r3_ipv6_host_addresses_are_relayed_by_the_daemon() {
    let mut h = Host::new("ipv6");
    h.start_daemon(&[]);
    h.reef_ok(&[
        "run",
        "-d",
        "--name",
        "six",
        "-p",
        "[::1]:8082:80",
        "-p",
        "[::1]:8083:53/udp",
        "sh",
        "-c",
        "socat UDP-RECVFROM:53,fork SYSTEM:'echo udp6-ok' & \
         exec socat TCP-LISTEN:80,fork,reuseaddr SYSTEM:'echo peer=$SOCAT_PEERADDR'",
    ]);
    let ports = h.reef_ok(&["port", "six"]);
    assert!(ports.contains("80/tcp -> [::1]:8082"), "{ports}");
    assert!(ports.contains("53/udp -> [::1]:8083"), "{ports}");
    assert!(
        eventually(5, || ask(h.sh("nc -6 -w 1 ::1 8082 </dev/null"))
            .starts_with("peer=")),
        "TCP over [::1] not relayed"
    );
    assert!(
        eventually(5, || ask(h.sh("echo hi | socat -T 1 - UDP6:[::1]:8083"))
            == "udp6-ok"),
        "UDP over [::1] not relayed"
    );
    // Only IPv6 is taken: the same port number stays free on IPv4.
    peer_server(&h, "four", 81, &["-p", "8082:81"]);
    assert!(ask(h.sh("nc -w 1 127.0.0.1 8082 </dev/null")).starts_with("peer="));
    let err = h
        .reef(&["run", "-d", "-p", "[::1]:8082:80", "sleep", "1"])
        .fails("IPv6 port taken twice");
    assert!(err.contains("already allocated"), "{err}");
    // Removing the container closes the relay.
    h.reef_ok(&["rm", "-f", "six"]);
    assert!(eventually(5, || h
        .sh("nc -6 -w 1 ::1 8082 </dev/null")
        .code
        != 0));
}

#[test]
fn r3_daemon_ip_is_the_default_host_address() {
    let mut h = Host::new("daemonip");
    let out = h.add_outside();
    h.start_daemon(&["--ip", HOST_UPLINK_IP]);
    peer_server(&h, "web", 80, &["-p", "8090:80"]);
    assert_eq!(
        h.reef_ok(&["port", "web"]),
        format!("80/tcp -> {HOST_UPLINK_IP}:8090")
    );
    let got = ask(outside_sh(
        &out,
        &format!("nc -w 2 {HOST_UPLINK_IP} 8090 </dev/null"),
    ));
    assert_eq!(got, format!("peer={OUTSIDE_IP}"));
    assert_eq!(
        ask(h.sh("nc -w 1 127.0.0.1 8090 </dev/null")),
        "",
        "bound beyond --ip"
    );
}
