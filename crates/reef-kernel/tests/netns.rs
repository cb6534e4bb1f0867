//! Namespaces, sandboxes and sysctls against the real kernel, inside private namespaces.

mod common;

use std::path::Path;

use common::{isolated, mounts_under, TempDir};
use nix::sched::{unshare, CloneFlags};
use reef_kernel::{netns, sysctl, Netns};

#[test]
fn create_bound_remove_bound_leave_nothing_behind() {
    isolated(|| {
        let tmp = TempDir::new();
        let path = tmp.join("sb");
        assert!(!netns::is_bound(&path));

        let ns = netns::create_bound(&path).unwrap();
        assert!(netns::is_bound(&path));
        assert!(!ns.is_current().unwrap());
        assert!(Netns::open(&path).unwrap().same_as(&ns).unwrap());
        assert!(!ns.same_as(&Netns::current().unwrap()).unwrap());
        assert_eq!(mounts_under(&tmp.path), vec![path.clone()]);

        // Code run "in" it really is in it, and the caller stays put.
        let inside = ns.run(|| Netns::current().unwrap()).unwrap();
        assert!(inside.same_as(&ns).unwrap());
        assert!(ns.run(|| ns.is_current().unwrap()).unwrap());

        let again = netns::create_bound(&path).unwrap_err();
        assert!(again.is_exists(), "{again}");

        drop(ns);
        drop(inside);
        netns::remove_bound(&path).unwrap();
        assert!(!netns::is_bound(&path));
        assert!(!path.exists());
        assert!(mounts_under(&tmp.path).is_empty());
        netns::remove_bound(&path).unwrap();

        // A leftover plain file (crash between create and mount) is reused.
        std::fs::write(&path, b"").unwrap();
        let ns = netns::create_bound(&path).unwrap();
        assert!(netns::is_bound(&path));
        drop(ns);
        netns::remove_bound(&path).unwrap();
        assert!(!path.exists());

        // A plain file or a directory is not a bound namespace.
        std::fs::write(&path, b"").unwrap();
        assert!(!netns::is_bound(&path));
        let err = Netns::open(&path).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(!netns::is_bound(&tmp.path));
        assert!(!netns::is_bound(Path::new("/nonexistent/rk")));
        netns::remove_bound(&path).unwrap();
        assert!(!path.exists());
    });
}

#[test]
fn create_bound_in_missing_dir_fails_cleanly() {
    isolated(|| {
        let tmp = TempDir::new();
        let err = netns::create_bound(&tmp.join("no/such/dir")).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(mounts_under(&tmp.path).is_empty());
    });
}

/// Bind a sandbox at `sb` after another mount namespace was created (as when a container
/// starts before its sandbox is bound) and report whether that namespace sees it.
fn seen_by_earlier_mount_ns(sb: &Path) -> bool {
    let (tx_ready, rx_ready) = std::sync::mpsc::channel();
    let (tx_go, rx_go) = std::sync::mpsc::channel::<()>();
    let sb2 = sb.to_path_buf();
    let other = std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNS).unwrap();
        tx_ready.send(()).unwrap();
        rx_go.recv().unwrap();
        netns::is_bound(&sb2)
    });
    rx_ready.recv().unwrap();
    let ns = netns::create_bound(sb).unwrap();
    tx_go.send(()).unwrap();
    let seen = other.join().unwrap();
    drop(ns);
    netns::remove_bound(sb).unwrap();
    seen
}

#[test]
fn prepared_dir_propagates_to_other_mount_namespaces() {
    isolated(|| {
        let tmp = TempDir::new();
        // Control: the test's own mount namespace is a slave, so a plain directory does
        // not propagate.
        let plain = tmp.join("plain");
        std::fs::create_dir(&plain).unwrap();
        assert!(!seen_by_earlier_mount_ns(&plain.join("sb")));

        let dir = tmp.join("netns");
        netns::prepare_netns_dir(&dir).unwrap();
        netns::prepare_netns_dir(&dir).unwrap(); // idempotent
        assert_eq!(
            mounts_under(&dir),
            vec![dir.clone()],
            "bound onto itself exactly once"
        );
        assert!(seen_by_earlier_mount_ns(&dir.join("sb")));
    });
}

#[test]
fn sysctl_read_and_ensure_act_on_the_calling_threads_namespace() {
    isolated(|| {
        // A fresh namespace starts with forwarding off.
        assert_eq!(sysctl::read("net.ipv4.ip_forward").unwrap(), "0");
        assert_eq!(
            sysctl::ensure("net.ipv4.ip_forward", "1")
                .unwrap()
                .as_deref(),
            Some("0")
        );
        assert_eq!(sysctl::ensure("net.ipv4.ip_forward", "1").unwrap(), None);
        assert_eq!(sysctl::read("net.ipv4.ip_forward").unwrap(), "1");

        // Another namespace is untouched, and reached through Netns::run.
        let tmp = TempDir::new();
        let ns = netns::create_bound(&tmp.join("sb")).unwrap();
        let there = ns
            .run(|| sysctl::read("net.ipv4.ip_forward").unwrap())
            .unwrap();
        assert_eq!(there, "0");

        // Multi-value sysctls compare with whitespace normalised.
        let range = sysctl::read("net.ipv4.ip_local_port_range").unwrap();
        let spaced = range.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(
            sysctl::ensure("net.ipv4.ip_local_port_range", &spaced).unwrap(),
            None
        );

        let err = sysctl::read("net.ipv4.no_such_key").unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(sysctl::read("../etc/passwd").is_err());
    });
}
