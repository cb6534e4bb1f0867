//! The netlink client against the real kernel, inside private namespaces.

mod common;

use std::net::{IpAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{isolated, TempDir};
use ipnet::IpNet;
use reef_core::model::MacvlanMode;
use reef_kernel::{netns, KernelError, LinkInfo, Netlink, Netns};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn must_link(nl: &mut Netlink, name: &str) -> LinkInfo {
    nl.link(name)
        .unwrap()
        .unwrap_or_else(|| panic!("link {name} missing"))
}

#[test]
fn bridge_veth_master_addresses_routes_and_delete() {
    isolated(|| {
        let tmp = TempDir::new();
        let mut nl = Netlink::open().unwrap();

        nl.create_bridge("rk-br0", 1400).unwrap();
        let br = must_link(&mut nl, "rk-br0");
        assert_eq!(br.kind.as_deref(), Some("bridge"));
        assert_eq!(br.mtu, 1400);
        assert!(!br.up);

        let sb_path = tmp.join("sb1");
        let sb = netns::create_bound(&sb_path).unwrap();
        let mac = [0x02, 0x42, 10, 99, 0, 2];
        nl.create_veth("rk-veth0", "eth0", &sb, 1400, mac, "reef:ep1")
            .unwrap();

        let host = must_link(&mut nl, "rk-veth0");
        assert_eq!(host.kind.as_deref(), Some("veth"));
        assert_eq!(host.alias.as_deref(), Some("reef:ep1"));
        assert_eq!(host.mtu, 1400);
        assert!(
            nl.link("eth0").unwrap().is_none(),
            "peer must not be in the host ns"
        );
        // The dump agrees with the single lookup.
        let dumped = nl.links().unwrap();
        assert!(dumped.iter().any(|l| l == &host), "{dumped:?}");
        assert!(dumped.iter().any(|l| l.name == "lo" && l.kind.is_none()));

        let mut snl = Netlink::open_in(&sb).unwrap();
        let eth0 = must_link(&mut snl, "eth0");
        assert_eq!(eth0.mac, Some(mac));
        assert_eq!(eth0.mtu, 1400);
        assert_eq!(eth0.kind.as_deref(), Some("veth"));
        assert_eq!(eth0.alias, None);

        nl.set_master("rk-veth0", "rk-br0").unwrap();
        nl.set_up("rk-veth0").unwrap();
        nl.set_up("rk-br0").unwrap();
        let host = must_link(&mut nl, "rk-veth0");
        assert_eq!(host.master, Some(br.index));
        assert!(host.up);
        assert!(must_link(&mut nl, "rk-br0").up);

        nl.add_addr("rk-br0", net("10.99.0.1/24")).unwrap();
        let again = nl.add_addr("rk-br0", net("10.99.0.1/24")).unwrap_err();
        assert!(again.is_exists(), "{again}");
        assert!(nl
            .addrs()
            .unwrap()
            .iter()
            .any(|a| a.index == br.index && a.addr == net("10.99.0.1/24")));

        snl.set_up("lo").unwrap();
        snl.set_up("eth0").unwrap();
        snl.add_addr("eth0", net("10.99.0.2/24")).unwrap();
        snl.add_addr("eth0", net("fd00:99::2/64")).unwrap();
        snl.add_route(net("0.0.0.0/0"), Some(ip("10.99.0.1")), "eth0")
            .unwrap();
        snl.add_route(net("fd00:98::/64"), None, "eth0").unwrap();
        let dup = snl
            .add_route(net("0.0.0.0/0"), Some(ip("10.99.0.1")), "eth0")
            .unwrap_err();
        assert!(dup.is_exists(), "{dup}");
        assert_eq!(
            dup.to_string(),
            "ip route add default via 10.99.0.1 dev eth0: File exists (os error 17)"
        );

        let addrs = snl.addrs().unwrap();
        for want in ["10.99.0.2/24", "fd00:99::2/64", "127.0.0.1/8", "::1/128"] {
            assert!(
                addrs.iter().any(|a| a.addr == net(want)),
                "{want} in {addrs:?}"
            );
        }
        let routes = snl.routes().unwrap();
        let has = |dst: &str, gw: Option<&str>| {
            routes
                .iter()
                .any(|r| r.dst == net(dst) && r.gateway == gw.map(ip) && r.oif == Some(eth0.index))
        };
        assert!(has("0.0.0.0/0", Some("10.99.0.1")), "{routes:?}");
        assert!(has("10.99.0.0/24", None), "{routes:?}");
        assert!(has("fd00:98::/64", None), "{routes:?}");
        // Local-table routes (127.0.0.1, the addresses themselves) are not listed.
        assert!(
            routes.iter().all(|r| r.dst.addr() != ip("10.99.0.2")),
            "{routes:?}"
        );

        // The kernel's extended-ack text comes along with the errno.
        let unreachable = snl
            .add_route(net("10.50.0.0/16"), Some(ip("10.77.0.1")), "eth0")
            .unwrap_err();
        match &unreachable {
            reef_kernel::KernelError::Netlink { errno, detail, .. } => {
                assert_eq!(*errno, libc::ENETUNREACH, "{unreachable}");
                assert!(detail.is_some(), "no extended ack in {unreachable}");
            }
            other => panic!("{other}"),
        }
        eprintln!("{unreachable}");

        let mixed = snl
            .add_route(net("10.1.0.0/16"), Some(ip("fd00:99::1")), "eth0")
            .unwrap_err();
        assert!(mixed.to_string().contains("different address families"));

        nl.set_mtu("rk-veth0", 1300).unwrap();
        assert_eq!(must_link(&mut nl, "rk-veth0").mtu, 1300);

        snl.del_addr("eth0", net("10.99.0.2/24")).unwrap();
        assert!(!snl
            .addrs()
            .unwrap()
            .iter()
            .any(|a| a.addr == net("10.99.0.2/24")));
        let gone = snl.del_addr("eth0", net("10.99.0.2/24")).unwrap_err();
        assert!(gone.is_not_found(), "{gone}");

        let nomaster = nl.set_master("rk-veth0", "rk-nobr").unwrap_err();
        assert!(nomaster.is_not_found(), "{nomaster}");
        assert!(nomaster
            .to_string()
            .contains("Cannot find device \"rk-nobr\""));
        let noaddr = nl.add_addr("rk-nodev", net("10.1.1.1/24")).unwrap_err();
        assert!(noaddr.is_not_found(), "{noaddr}");

        let dup = nl.create_bridge("rk-br0", 1400).unwrap_err();
        assert!(dup.is_exists());
        assert_eq!(
            dup.to_string(),
            "ip link add rk-br0 type bridge mtu 1400: File exists (os error 17)"
        );
        let dup = nl
            .create_veth("rk-veth0", "eth9", &sb, 1500, mac, "reef:x")
            .unwrap_err();
        assert!(dup.is_exists(), "{dup}");
        assert_eq!(
            must_link(&mut nl, "rk-veth0").alias.as_deref(),
            Some("reef:ep1"),
            "a failed create must not touch the existing link"
        );

        nl.delete_link("rk-veth0").unwrap();
        assert!(nl.link("rk-veth0").unwrap().is_none());
        assert!(snl.link("eth0").unwrap().is_none(), "the peer goes with it");
        let gone = nl.delete_link("rk-veth0").unwrap_err();
        assert!(gone.is_not_found());
        assert_eq!(
            gone.to_string(),
            "ip link del rk-veth0: No such device (os error 19)"
        );
        nl.delete_link("rk-br0").unwrap();
        assert!(nl.link("rk-nothing").unwrap().is_none());

        drop(snl);
        drop(sb);
        netns::remove_bound(&sb_path).unwrap();
    });
}

#[test]
fn veth_alias_failure_leaves_no_link() {
    isolated(|| {
        let tmp = TempDir::new();
        let sb = netns::create_bound(&tmp.join("sb")).unwrap();
        let mut nl = Netlink::open().unwrap();
        // IFALIASZ is 256: a longer alias is refused by the kernel after the pair exists.
        let long = "x".repeat(300);
        let err = nl
            .create_veth("rk-veth1", "eth0", &sb, 1500, [2, 0, 0, 0, 0, 1], &long)
            .unwrap_err();
        assert!(
            err.to_string().starts_with("ip link set rk-veth1 alias"),
            "{err}"
        );
        assert!(nl.link("rk-veth1").unwrap().is_none());
        let mut snl = Netlink::open_in(&sb).unwrap();
        assert!(snl.link("eth0").unwrap().is_none());
    });
}

#[test]
fn sockets_stay_in_their_namespace() {
    isolated(|| {
        let tmp = TempDir::new();
        let sb = netns::create_bound(&tmp.join("sb")).unwrap();
        let mut inside = Netlink::open_in(&sb).unwrap();
        inside.create_bridge("rk-only-in", 1500).unwrap();
        let mut here = Netlink::open().unwrap();
        assert!(here.link("rk-only-in").unwrap().is_none());
        assert!(inside.link("rk-only-in").unwrap().is_some());
        // The calling thread did not move.
        assert!(!sb.is_current().unwrap());
        assert!(Netns::current().unwrap().is_current().unwrap());
    });
}

/// Run a command inside the namespace bound at `sandbox`. Spawned from the test thread, the
/// child starts in the test's namespaces, where the bind mount is visible to nsenter.
fn in_ns(sandbox: &Path, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net={}", sandbox.display()))
        .args(args)
        .output()
        .expect("run nsenter")
}

/// `ip -d link show NAME` inside `sandbox`.
fn ip_details(sandbox: &Path, name: &str) -> String {
    let out = in_ns(sandbox, &["ip", "-d", "link", "show", name]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn macvlan_into_namespaces_modes_and_traffic() {
    isolated(|| {
        let tmp = TempDir::new();
        let mut nl = Netlink::open().unwrap();
        // The "host uplink": a veth called eth0, its far end also here. The container-side
        // macvlan is called eth0 too, as Docker names it.
        let here = Netns::current().unwrap();
        let uplink_mac = [0x02, 0x11, 0, 0, 0, 1];
        nl.create_veth("eth0", "rk-uplink", &here, 1500, uplink_mac, "reef:test")
            .unwrap();
        nl.set_up("rk-uplink").unwrap();
        nl.set_up("eth0").unwrap();
        let parent = must_link(&mut nl, "eth0");

        let (p1, p2, p3) = (tmp.join("c1"), tmp.join("c2"), tmp.join("c3"));
        let (sb1, sb2, sb3) = (
            netns::create_bound(&p1).unwrap(),
            netns::create_bound(&p2).unwrap(),
            netns::create_bound(&p3).unwrap(),
        );
        let (mac1, mac2) = ([0x02, 0x42, 10, 97, 0, 2], [0x02, 0x42, 10, 97, 0, 3]);
        nl.create_macvlan("eth0", "eth0", MacvlanMode::Bridge, &sb1, mac1, Some(1400))
            .unwrap();
        nl.create_macvlan("mv1", "eth0", MacvlanMode::Bridge, &sb2, mac2, Some(1400))
            .unwrap();

        // Nothing landed here; the parent is untouched.
        assert_eq!(must_link(&mut nl, "eth0"), parent);
        assert!(nl.link("mv1").unwrap().is_none());

        let mut c1 = Netlink::open_in(&sb1).unwrap();
        let mut c2 = Netlink::open_in(&sb2).unwrap();
        let l1 = must_link(&mut c1, "eth0");
        assert_eq!(l1.kind.as_deref(), Some("macvlan"));
        assert_eq!(l1.mac, Some(mac1));
        assert_eq!(l1.mtu, 1400);
        assert!(!l1.up);
        let l2 = must_link(&mut c2, "mv1");
        assert_eq!(l2.kind.as_deref(), Some("macvlan"));
        assert_eq!(l2.mac, Some(mac2));
        assert_eq!(l2.mtu, 1400);
        assert!(ip_details(&p1, "eth0").contains("macvlan mode bridge"));

        for (c, dev, addr) in [
            (&mut c1, "eth0", "10.97.0.2/24"),
            (&mut c2, "mv1", "10.97.0.3/24"),
        ] {
            c.set_up("lo").unwrap();
            c.set_up(dev).unwrap();
            c.add_addr(dev, net(addr)).unwrap();
            assert!(must_link(c, dev).up);
        }

        // ICMP (and ARP) between the two bridge-mode siblings...
        let ping = in_ns(&p1, &["ping", "-c", "1", "-W", "2", "10.97.0.3"]);
        assert!(ping.status.success(), "ping c1 -> c2: {ping:?}");
        // ...and a UDP exchange both ways, from sockets opened inside each namespace.
        let s1 = sb1.run(|| UdpSocket::bind("10.97.0.2:0")).unwrap().unwrap();
        let s2 = sb2.run(|| UdpSocket::bind("10.97.0.3:0")).unwrap().unwrap();
        for s in [&s1, &s2] {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        }
        s1.send_to(b"hello c2", s2.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = s2.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"hello c2"[..], s1.local_addr().unwrap())
        );
        s2.send_to(b"hello c1", from).unwrap();
        let (n, _) = s1.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello c1");

        // The other modes reach the kernel as asked.
        nl.create_macvlan(
            "mv-priv",
            "eth0",
            MacvlanMode::Private,
            &sb3,
            [2, 0, 0, 0, 3, 1],
            None,
        )
        .unwrap();
        nl.create_macvlan(
            "mv-vepa",
            "eth0",
            MacvlanMode::Vepa,
            &sb3,
            [2, 0, 0, 0, 3, 2],
            Some(1500),
        )
        .unwrap();
        assert!(ip_details(&p3, "mv-priv").contains("macvlan mode private"));
        // No MTU given: the parent's.
        let mut c3_early = Netlink::open_in(&sb3).unwrap();
        assert_eq!(must_link(&mut c3_early, "mv-priv").mtu, parent.mtu);
        assert!(ip_details(&p3, "mv-vepa").contains("macvlan mode vepa"));
        // passthru wants the parent to itself, and takes over the parent's MAC.
        let busy = nl
            .create_macvlan(
                "mv-pt",
                "eth0",
                MacvlanMode::Passthru,
                &sb3,
                [2, 0, 0, 0, 3, 3],
                Some(1500),
            )
            .unwrap_err();
        assert_eq!(busy.errno(), Some(libc::EINVAL), "{busy}");
        nl.create_veth(
            "rk-pt0",
            "rk-pt1",
            &here,
            1500,
            [2, 0x11, 0, 0, 0, 2],
            "reef:test",
        )
        .unwrap();
        nl.create_macvlan(
            "mv-pt",
            "rk-pt0",
            MacvlanMode::Passthru,
            &sb3,
            [2, 0, 0, 0, 3, 3],
            Some(1500),
        )
        .unwrap();
        assert!(ip_details(&p3, "mv-pt").contains("macvlan mode passthru"));
        let mut c3 = Netlink::open_in(&sb3).unwrap();
        assert_eq!(
            must_link(&mut c3, "mv-pt").mac,
            must_link(&mut nl, "rk-pt0").mac
        );

        // A name taken in the target namespace: EEXIST, and nothing left behind (the
        // parent's own name being taken here sends this through the temporary-name path).
        let before: Vec<String> = c1.links().unwrap().into_iter().map(|l| l.name).collect();
        let dup = nl
            .create_macvlan(
                "eth0",
                "eth0",
                MacvlanMode::Bridge,
                &sb1,
                [2, 0, 0, 0, 1, 9],
                Some(1400),
            )
            .unwrap_err();
        assert!(dup.is_exists(), "{dup}");
        assert!(
            dup.to_string().starts_with(
                "ip link add eth0 link eth0 address 02:00:00:00:01:09 mtu 1400 netns <fd> \
                 type macvlan mode bridge: File exists"
            ),
            "{dup}"
        );
        let after: Vec<String> = c1.links().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(before, after);
        assert_eq!(must_link(&mut c1, "eth0").mac, Some(mac1));

        // An MTU above the parent's is refused, and leaves nothing.
        let big = nl
            .create_macvlan(
                "mv-big",
                "eth0",
                MacvlanMode::Bridge,
                &sb2,
                [2, 0, 0, 0, 2, 9],
                Some(9000),
            )
            .unwrap_err();
        assert_eq!(big.errno(), Some(libc::EINVAL), "{big}");
        assert!(c2.link("mv-big").unwrap().is_none());

        // Deleting the parent takes its macvlans with it, in every namespace.
        nl.delete_link("eth0").unwrap();
        assert!(c1.link("eth0").unwrap().is_none());
        assert!(c2.link("mv1").unwrap().is_none());
        assert!(c3.link("mv-priv").unwrap().is_none());
        assert!(
            c3.link("mv-pt").unwrap().is_some(),
            "another parent's macvlan stays"
        );
    });
}

#[test]
fn macvlan_without_parent_fails_cleanly() {
    isolated(|| {
        let tmp = TempDir::new();
        let sb = netns::create_bound(&tmp.join("c")).unwrap();
        let mut nl = Netlink::open().unwrap();
        let err = nl
            .create_macvlan(
                "eth0",
                "rk-nodev",
                MacvlanMode::Bridge,
                &sb,
                [2, 0, 0, 0, 0, 5],
                Some(1500),
            )
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(err.errno(), Some(libc::ENODEV));
        assert_eq!(
            err.to_string(),
            "ip link add eth0 link rk-nodev address 02:00:00:00:00:05 mtu 1500 netns <fd> \
             type macvlan mode bridge: No such device (os error 19) \
             (Cannot find device \"rk-nodev\")"
        );
        let mut inside = Netlink::open_in(&sb).unwrap();
        let names: Vec<String> = inside
            .links()
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(names, ["lo"]);
    });
}

/// This machine's kernel is built without 802.1q (`CONFIG_VLAN_8021Q` unset, no modules),
/// so creating a VLAN must fail, and say why.
#[test]
fn vlan_without_8021q_says_so() {
    isolated(|| {
        let mut nl = Netlink::open().unwrap();
        let here = Netns::current().unwrap();
        nl.create_veth(
            "eth0",
            "rk-uplink",
            &here,
            1500,
            [2, 0x11, 0, 0, 0, 1],
            "reef:test",
        )
        .unwrap();

        let err = nl.create_vlan("eth0.101", "eth0", 101).unwrap_err();
        eprintln!("{err}");
        assert_eq!(err.errno(), Some(libc::EOPNOTSUPP), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with("ip link add link eth0 name eth0.101 type vlan id 101: "),
            "{text}"
        );
        assert!(
            text.contains(
                "the kernel has no 802.1q VLAN support (module 8021q): cannot create eth0.101"
            ),
            "{text}"
        );
        assert!(nl.link("eth0.101").unwrap().is_none());

        // A missing parent is reported as such, before the kernel is asked.
        let err = nl.create_vlan("rk-nodev.5", "rk-nodev", 5).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(
            err.to_string().contains("Cannot find device \"rk-nodev\""),
            "{err}"
        );

        for bad in [0, 4095] {
            let err = nl.create_vlan("eth0.x", "eth0", bad).unwrap_err();
            assert!(matches!(err, KernelError::Invalid { .. }), "{err}");
            assert!(err.to_string().contains("out of range 1-4094"), "{err}");
        }
    });
}

#[test]
fn dummy_links_or_a_clear_error() {
    isolated(|| {
        let mut nl = Netlink::open().unwrap();
        match nl.create_dummy("dm-rktest") {
            Ok(()) => {
                let l = must_link(&mut nl, "dm-rktest");
                assert_eq!(l.kind.as_deref(), Some("dummy"));
                nl.delete_link("dm-rktest").unwrap();
            }
            // This machine's kernel has no dummy driver: the error must say so.
            Err(e) => {
                assert_eq!(e.errno(), Some(libc::EOPNOTSUPP), "{e}");
                assert!(
                    e.to_string()
                        .contains("the kernel has no dummy interface support (module dummy): cannot create dm-rktest"),
                    "{e}"
                );
                assert!(nl.link("dm-rktest").unwrap().is_none());
            }
        }
    });
}
