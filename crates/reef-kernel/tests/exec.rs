//! The executor running the core's real plans, inside private namespaces.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{isolated, mounts_under, TempDir};
use ipnet::IpNet;
use reef_core::model::{BridgeNetwork, Endpoint};
use reef_core::names;
use reef_core::plan::{self, NsRef, Op, Plan};
use reef_kernel::{netns, Executor, KernelError, Netlink, Netns};

fn network(bridge: &str) -> BridgeNetwork {
    BridgeNetwork {
        ifname: bridge.into(),
        subnet: "10.98.0.0/24".parse().unwrap(),
        gateway: "10.98.0.1".parse().unwrap(),
        bridge_addr: Some("10.98.0.1/24".parse().unwrap()),
        ip_range: None,
        mtu: 1450,
        owned: true,
    }
}

fn endpoint(n: u8) -> Endpoint {
    let id = format!("{n:02x}").repeat(32);
    let ip = std::net::Ipv4Addr::new(10, 98, 0, 10 + n);
    Endpoint {
        host_ifname: Some(names::veth_name(&id)),
        id,
        network_id: "ab".repeat(32),
        ifname: "eth0".into(),
        ip,
        prefix_len: 24,
        gateway: Some("10.98.0.1".parse().unwrap()),
        mac: names::format_mac(names::mac_from_ipv4(ip)),
        aliases: vec![],
        pending: false,
    }
}

fn start_plan(net: &BridgeNetwork, ep: &Endpoint, sandbox: &Path) -> Plan {
    let mut p = plan::sandbox_create(sandbox.to_path_buf());
    p.extend(plan::attach(net, ep, sandbox.to_path_buf()));
    p
}

/// Every link in the host namespace except `lo`.
fn host_links(ex: &mut Executor) -> Vec<String> {
    ex.host()
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .filter(|n| n != "lo")
        .collect()
}

fn ping_from(sandbox: &Path, target: &str) -> Option<bool> {
    let ping = ["/usr/bin/ping", "/bin/ping"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    // Spawned from this thread, the child starts in the test's namespaces, where the
    // sandbox's bind mount is visible to nsenter.
    let status = Command::new("nsenter")
        .arg(format!("--net={}", sandbox.display()))
        .args([ping, "-c", "1", "-W", "2", target])
        .output()
        .expect("run nsenter");
    if !status.status.success() {
        eprintln!(
            "ping {target} from {}: {}{}",
            sandbox.display(),
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&status.stderr)
        );
    }
    Some(status.status.success())
}

#[test]
fn sandbox_create_and_attach_for_real() {
    isolated(|| {
        let tmp = TempDir::new();
        let mut ex = Executor::new().unwrap();
        let net = network("rk-br1");
        ex.apply_plan(&plan::bridge_setup(&net, false)).unwrap();

        let (ep1, ep2) = (endpoint(1), endpoint(2));
        let (sb1, sb2) = (tmp.join("c1"), tmp.join("c2"));
        let t = Instant::now();
        ex.apply_plan(&start_plan(&net, &ep1, &sb1)).unwrap();
        let first = t.elapsed();
        let t = Instant::now();
        ex.apply_plan(&start_plan(&net, &ep2, &sb2)).unwrap();
        eprintln!(
            "sandbox_create + attach: {first:?} (first), {:?} (second)",
            t.elapsed()
        );

        // Host side: the veth carries the endpoint's alias, is a port of the bridge, is up.
        let br = ex.host().link("rk-br1").unwrap().unwrap();
        assert!(br.up);
        assert_eq!(br.mtu, 1450);
        let veth = ex
            .host()
            .link(ep1.host_ifname.as_deref().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(veth.kind.as_deref(), Some("veth"));
        assert_eq!(
            veth.alias.as_deref().and_then(names::endpoint_from_alias),
            Some(ep1.id.as_str())
        );
        assert_eq!(veth.master, Some(br.index));
        assert!(veth.up);
        assert_eq!(veth.mtu, 1450);
        assert!(ex
            .host()
            .addrs()
            .unwrap()
            .iter()
            .any(|a| a.index == br.index && a.addr == "10.98.0.1/24".parse::<IpNet>().unwrap()));

        // Sandbox side, through a socket of our own.
        let mut snl = Netlink::open_in(&Netns::open(&sb1).unwrap()).unwrap();
        let eth0 = snl.link("eth0").unwrap().unwrap();
        assert!(eth0.up);
        assert_eq!(eth0.mac, Some(names::mac_from_ipv4(ep1.ip)));
        assert_eq!(eth0.mtu, 1450);
        assert!(snl.link("lo").unwrap().unwrap().up);
        assert!(snl
            .addrs()
            .unwrap()
            .iter()
            .any(|a| a.index == eth0.index && a.addr == "10.98.0.11/24".parse::<IpNet>().unwrap()));
        let routes = snl.routes().unwrap();
        assert!(
            routes.iter().any(|r| r.dst.prefix_len() == 0
                && r.gateway == Some("10.98.0.1".parse().unwrap())
                && r.oif == Some(eth0.index)),
            "{routes:?}"
        );
        drop(snl);

        // Real traffic: sandbox -> gateway, sandbox -> sandbox across the bridge.
        match ping_from(&sb1, "10.98.0.1") {
            Some(ok) => {
                assert!(ok, "ping gateway from c1");
                assert_eq!(ping_from(&sb1, "10.98.0.12"), Some(true), "ping c2 from c1");
            }
            None => eprintln!("ping not installed: traffic check not run"),
        }

        // Tear down: detach removes both ends, sandbox_delete the namespace.
        ex.apply_plan(&plan::detach(&ep1, PathBuf::new())).unwrap();
        ex.apply_plan(&plan::sandbox_delete(sb1.clone())).unwrap();
        assert!(ex
            .host()
            .link(ep1.host_ifname.as_deref().unwrap())
            .unwrap()
            .is_none());
        assert!(!netns::is_bound(&sb1) && !sb1.exists());
        // Deleting the sandbox alone takes its veth pair with it.
        ex.apply_plan(&plan::sandbox_delete(sb2.clone())).unwrap();
        wait_until_gone(&mut ex, ep2.host_ifname.as_deref().unwrap());
        assert!(!sb2.exists());
        assert_eq!(host_links(&mut ex), vec!["rk-br1".to_string()]);
        assert!(mounts_under(&tmp.path).is_empty());
    });
}

/// Links in a deleted namespace are destroyed by the kernel's asynchronous netns cleanup.
fn wait_until_gone(ex: &mut Executor, name: &str) {
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while ex.host().link(name).unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "{name} still there 5 s after its netns went"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn injected_failure_at_every_step_rolls_back_completely() {
    isolated(|| {
        let tmp = TempDir::new();
        let mut ex = Executor::new().unwrap();
        let net = network("rk-br2");
        ex.apply_plan(&plan::bridge_setup(&net, false)).unwrap();
        let ep = endpoint(3);
        let sb = tmp.join("c3");
        let p = start_plan(&net, &ep, &sb);
        for n in 0..p.steps.len() {
            ex.fail_after(Some(n));
            let err = ex.apply_plan(&p).unwrap_err();
            assert!(
                matches!(err, KernelError::Injected { step } if step == n),
                "step {n}: {err}"
            );
            // Nothing of the attempt is left: the veth went with its undo, the sandbox
            // with its own.
            assert!(
                ex.host()
                    .link(ep.host_ifname.as_deref().unwrap())
                    .unwrap()
                    .is_none(),
                "step {n}"
            );
            assert!(!netns::is_bound(&sb) && !sb.exists(), "step {n}");
            assert_eq!(host_links(&mut ex), vec!["rk-br2".to_string()], "step {n}");
        }
        // Past the end: nothing is injected.
        ex.fail_after(Some(p.steps.len()));
        ex.apply_plan(&p).unwrap();
        ex.fail_after(None);
        assert!(ex
            .host()
            .link(ep.host_ifname.as_deref().unwrap())
            .unwrap()
            .is_some());
        assert!(mounts_under(&tmp.path) == vec![sb.clone()]);
        ex.apply_plan(&plan::detach(&ep, PathBuf::new())).unwrap();
        ex.apply_plan(&plan::sandbox_delete(sb)).unwrap();
    });
}

#[test]
fn real_failure_rolls_back_and_keeps_the_errno() {
    isolated(|| {
        let tmp = TempDir::new();
        let mut ex = Executor::new().unwrap();
        // No bridge: SetMaster fails after the sandbox and the veth exist.
        let net = network("rk-missing");
        let ep = endpoint(4);
        let sb = tmp.join("c4");
        let err = ex.apply_plan(&start_plan(&net, &ep, &sb)).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(err.errno(), Some(libc::ENODEV));
        assert!(
            err.to_string().starts_with(&format!(
                "ip link set {} master rk-missing",
                ep.host_ifname.as_deref().unwrap()
            )),
            "{err}"
        );
        assert!(host_links(&mut ex).is_empty());
        assert!(!sb.exists());

        // An existing veth name: CreateVeth fails with EEXIST; only the sandbox is undone,
        // and the foreign link is left alone.
        ex.host()
            .create_bridge(ep.host_ifname.as_deref().unwrap(), 1500)
            .unwrap();
        let err = ex
            .apply_plan(&start_plan(&network("rk-x"), &ep, &sb))
            .unwrap_err();
        assert!(err.is_exists(), "{err}");
        assert!(
            err.to_string().contains(&format!("netns {}", sb.display())),
            "{err}"
        );
        assert_eq!(host_links(&mut ex), vec![ep.host_ifname.clone().unwrap()]);
        assert!(!sb.exists());
    });
}

#[test]
fn undo_ops_tolerate_absence_and_add_addr_tolerates_presence() {
    isolated(|| {
        let tmp = TempDir::new();
        let mut ex = Executor::new().unwrap();
        let sb = tmp.join("c5");
        let gone = tmp.join("never");
        let stale = tmp.join("stale");
        std::fs::write(&stale, b"").unwrap();
        ex.apply(&Op::CreateSandbox { path: sb.clone() }).unwrap();
        let err = ex
            .apply(&Op::CreateSandbox { path: sb.clone() })
            .unwrap_err();
        assert!(err.is_exists(), "{err}");

        for op in [
            Op::DeleteLink {
                ns: NsRef::Host,
                name: "rk-none".into(),
            },
            Op::DeleteLink {
                ns: NsRef::Sandbox(sb.clone()),
                name: "rk-none".into(),
            },
            Op::DeleteLink {
                ns: NsRef::Sandbox(gone.clone()),
                name: "eth0".into(),
            },
            Op::DelAddr {
                ns: NsRef::Sandbox(sb.clone()),
                link: "lo".into(),
                addr: "10.9.9.9/32".parse().unwrap(),
            },
            Op::DeleteSandbox { path: gone.clone() },
            // A sandbox file left unmounted holds no namespace, so nothing to delete.
            Op::DeleteLink {
                ns: NsRef::Sandbox(stale.clone()),
                name: "eth0".into(),
            },
            Op::DeleteSandbox {
                path: stale.clone(),
            },
        ] {
            ex.apply(&op).unwrap_or_else(|e| panic!("{op}: {e}"));
        }

        assert!(!stale.exists());

        let add = Op::AddAddr {
            ns: NsRef::Sandbox(sb.clone()),
            link: "lo".into(),
            addr: "10.9.9.9/32".parse().unwrap(),
        };
        ex.apply(&add).unwrap();
        ex.apply(&add).unwrap();

        // Errors from inside a sandbox name it.
        let err = ex
            .apply(&Op::SetUp {
                ns: NsRef::Sandbox(sb.clone()),
                link: "eth7".into(),
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "nsenter --net={} ip link set eth7 up: No such device (os error 19)",
                sb.display()
            )
        );

        // Sysctls go to the namespace the op names.
        let fwd = |ns: NsRef| Op::Sysctl {
            ns,
            key: "net.ipv4.ip_forward".into(),
            value: "1".into(),
        };
        ex.apply(&fwd(NsRef::Sandbox(sb.clone()))).unwrap();
        let sbns = Netns::open(&sb).unwrap();
        let read = || reef_kernel::sysctl::read("net.ipv4.ip_forward").unwrap();
        assert_eq!(sbns.run(read).unwrap(), "1");
        assert_eq!(read(), "0");
        ex.apply(&fwd(NsRef::Host)).unwrap();
        assert_eq!(read(), "1");
        drop(sbns);

        // The host sysctl reaches the executor's namespace from any thread.
        let ex_ns = Netns::current().unwrap();
        let other = TempDir::new();
        let elsewhere = netns::create_bound(&other.join("x")).unwrap();
        let off = Op::Sysctl {
            ns: NsRef::Host,
            key: "net.ipv4.ip_forward".into(),
            value: "0".into(),
        };
        let in_elsewhere = elsewhere.run(|| {
            ex.apply(&off).unwrap();
            reef_kernel::sysctl::read("net.ipv4.ip_forward").unwrap()
        });
        assert_eq!(in_elsewhere.unwrap(), "0");
        assert_eq!(ex_ns.run(read).unwrap(), "0");

        ex.apply(&Op::DeleteSandbox { path: sb.clone() }).unwrap();
        assert!(!sb.exists());
    });
}
