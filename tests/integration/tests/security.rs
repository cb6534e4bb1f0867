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

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`.
fn make_certs(h: &Host) -> std::path::PathBuf {
    let d = h.dir.join("pki");
    std::fs::create_dir_all(&d).unwrap();
    let script = format!(
        "cd {d} && \
         openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=reef-ca -keyout ca-key.pem -out ca.pem && \
         openssl req -newkey rsa:2048 -nodes -subj /CN=reefd -keyout server-key.pem -out server.csr && \
         printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > server.ext && \
         openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile server.ext -out server.pem && \
         openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout key.pem -out client.csr && \
         printf 'extendedKeyUsage=clientAuth\\n' > client.ext && \
         openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile client.ext -out cert.pem",
        d = d.display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

#[test]
fn r6_tcp_api_needs_tls_with_client_certificates() {
    let mut h = Host::new("tls");
    // Plain TCP is refused unless asked for outright.
    let log = h.daemon_refuses(&["-H", "tcp://127.0.0.1:2375"]);
    assert!(
        log.contains("refusing to serve the API on TCP without TLS"),
        "{log}"
    );
    let pki = make_certs(&h);
    let p = |f: &str| pki.join(f).display().to_string();
    h.start_daemon(&[
        "-H",
        "tcp://127.0.0.1:2376",
        "--tlsverify",
        "--tlscacert",
        &p("ca.pem"),
        "--tlscert",
        &p("server.pem"),
        "--tlskey",
        &p("server-key.pem"),
    ]);
    let tcp = ["-H", "tcp://127.0.0.1:2376"];
    let with_cert = [
        "--tlsverify",
        "--tlscacert",
        &p("ca.pem"),
        "--tlscert",
        &p("cert.pem"),
        "--tlskey",
        &p("key.pem"),
    ];
    let args = |extra: &[&str], cmd: &[&str]| -> Vec<String> {
        tcp.iter()
            .chain(extra)
            .chain(cmd)
            .map(|s| s.to_string())
            .collect()
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        h.reef(&a)
    };
    // With a client certificate signed by the CA: works.
    let ok = run(args(
        &with_cert,
        &["run", "-d", "--name", "viatls", "sleep", "1000"],
    ));
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(
        run(args(&with_cert, &["inspect", "-f", "{{.Name}}", "viatls"]))
            .stdout
            .trim(),
        "/viatls"
    );
    // Without a client certificate, or without TLS at all: refused.
    let no_cert = run(args(&["--tlsverify", "--tlscacert", &p("ca.pem")], &["ps"]));
    assert_ne!(no_cert.code, 0, "served a client without a certificate");
    let plain = run(args(&[], &["ps"]));
    assert_ne!(plain.code, 0, "served plain HTTP on the TLS port");
    h.stop_daemon();
    // --tls=false: plain TCP, with a warning in the log.
    h.start_daemon(&["-H", "tcp://127.0.0.1:2377", "--tls=false"]);
    let plain = h.reef(&["-H", "tcp://127.0.0.1:2377", "ps", "-a"]);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert!(plain.stdout.contains("viatls"));
    assert!(h.daemon_log().contains("plain TCP"), "no warning logged");
}
