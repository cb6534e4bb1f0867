//! Issue 6 (concurrency): 100 parallel `reef run -d -p ... --network ...` plus network
//! connect/disconnect calls; every call succeeds or fails cleanly, no address or host port
//! is handed out twice, and the kernel matches the state afterwards.

use std::collections::BTreeSet;
use std::sync::Arc;

use reef_integration::{eventually, Host};

#[test]
fn r6_hundred_parallel_runs_and_connects() {
    let mut h = Host::new("parallel");
    h.start_daemon(&[]);
    h.reef_ok(&["network", "create", "--subnet", "10.81.0.0/24", "busy"]);
    h.reef_ok(&["network", "create", "--subnet", "10.82.0.0/24", "extra"]);
    let h = Arc::new(h);
    let mut threads = Vec::new();
    for i in 0..100 {
        let h = Arc::clone(&h);
        threads.push(std::thread::spawn(move || {
            let name = format!("p{i}");
            let run = h.reef(&[
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                "busy",
                "-p",
                "80",
                "sleep",
                "100000",
            ]);
            if run.code != 0 {
                return (name, false, run.stderr);
            }
            // Every third one also joins and leaves a second network, racing the others.
            if i % 3 == 0 {
                let c = h.reef(&["network", "connect", "extra", &name]);
                assert_eq!(c.code, 0, "connect {name}: {}", c.stderr);
                if i % 2 == 0 {
                    let d = h.reef(&["network", "disconnect", "extra", &name]);
                    assert_eq!(d.code, 0, "disconnect {name}: {}", d.stderr);
                }
            }
            (name, true, String::new())
        }));
    }
    let results: Vec<(String, bool, String)> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    for (name, ok, err) in &results {
        assert!(*ok, "{name} failed: {err}");
    }
    let mut args = vec!["inspect".to_string()];
    args.extend(results.iter().map(|r| r.0.clone()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let v: serde_json::Value = serde_json::from_str(&h.reef_ok(&args)).unwrap();
    let all = v.as_array().unwrap();
    assert_eq!(all.len(), 100);
    let mut busy_ips = BTreeSet::new();
    let mut extra_ips = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    for c in all {
        let nets = &c["NetworkSettings"]["Networks"];
        assert!(
            busy_ips.insert(nets["busy"]["IPAddress"].as_str().unwrap().to_string()),
            "address twice"
        );
        if let Some(ip) = nets["extra"]["IPAddress"].as_str() {
            assert!(extra_ips.insert(ip.to_string()), "extra address twice");
        }
        let port = c["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(host_ports.insert(port), "host port twice");
    }
    assert_eq!(busy_ips.len(), 100);
    assert_eq!(extra_ips.len(), 17, "every 6th container stays on extra");
    // The kernel matches: one veth per endpoint on each bridge, one DNAT element per port.
    let on = |net: &str| {
        let id = h.reef_ok(&["network", "inspect", "-f", "{{.Id}}", net]);
        h.sh(&format!("ip -o link show master br-{}", &id[..12]))
            .ok("ports")
            .lines()
            .count()
    };
    assert_eq!(on("busy"), 100);
    // Disconnected pairs are deleted in the background (the kernel takes tens of ms each).
    assert!(
        eventually(10, || on("extra") == 17),
        "{} ports on extra",
        on("extra")
    );
    let map = h.sh("nft list map ip reef dnat_any").ok("map");
    assert_eq!(map.matches(" : 10.81.0.").count(), 100, "{map}");
    assert_eq!(h.reef_ok(&["system", "check"]), "no drift, no leftovers");
}
