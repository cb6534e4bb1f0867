//! The netlink client against the real kernel, inside private namespaces.

mod common;

use std::net::IpAddr;

use common::{isolated, TempDir};
use ipnet::IpNet;
use reef_kernel::{netns, LinkInfo, Netlink, Netns};

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
