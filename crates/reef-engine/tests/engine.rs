//! The engine's operations and rollbacks over the testkit's in-memory store and fake
//! kernel: fast, and checked against the model of what the kernel was told to hold. Each
//! test runs in a network namespace of its own (root required), so nothing the engine
//! opens on the side (the DNS server's sockets) meets the machine's own.

use std::path::PathBuf;
use std::sync::Arc;

use reef_core::config::{resolve, FileConfig};
use reef_core::model::{ContainerSpec, DriverConfig, NetworkMode};
use reef_engine::{CreateRequest, Engine, EngineError, NetworkCreate};
use reef_testkit::{FakeKernel, FixedHost, KernelModel, MemStore};

/// One engine under test, with its store, kernel model and directories.
struct Bed {
    engine: Arc<Engine>,
    store: MemStore,
    kernel: KernelModel,
    dir: PathBuf,
    _rt: tokio::runtime::Runtime,
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn private_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .expect("engine tests need root: unshare(CLONE_NEWNET) failed");
}

fn test_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reef-engine-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An engine over `store` and a kernel whose model `setup` prepares.
fn start(tag: &str, store: MemStore, setup: impl FnOnce(&KernelModel)) -> Bed {
    private_netns();
    let dir = test_dir(tag);
    let (kernel, model) = FakeKernel::new();
    setup(&model);
    let cfg = resolve(
        FileConfig::default(),
        FileConfig {
            data_root: Some(dir.join("data").display().to_string()),
            exec_root: Some(dir.join("exec").display().to_string()),
            ..Default::default()
        },
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let engine = Engine::start(
        cfg,
        Box::new(store.clone()),
        Box::new(kernel),
        None,
        Box::new(FixedHost::default()),
        rt.handle().clone(),
    )
    .expect("engine starts over the fakes");
    Bed {
        engine,
        store,
        kernel: model,
        dir,
        _rt: rt,
    }
}

fn with_eth0(m: &KernelModel) {
    m.add_host_device("eth0", 1500);
}

fn net(name: &str, driver: &str, subnet: &str, opts: &[(&str, &str)]) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        driver: driver.into(),
        subnet: Some(subnet.parse().unwrap()),
        options: opts
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn stored_names(store: &MemStore) -> Vec<String> {
    let mut v: Vec<String> = store.networks().into_iter().map(|n| n.name).collect();
    v.sort();
    v
}

#[test]
fn start_up_makes_the_default_bridge_and_records_the_builtin_networks() {
    let bed = start("startup", MemStore::new(), |_| {});
    assert_eq!(stored_names(&bed.store), ["bridge", "host", "none"]);
    let reef0 = bed.kernel.host_link("reef0").expect("reef0");
    assert_eq!(reef0.kind.as_deref(), Some("bridge"));
    assert!(reef0.up);
    assert_eq!(
        reef0
            .addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>(),
        ["172.17.0.1/16"]
    );
    // The firewall table was written whole, once.
    assert_eq!(bed.kernel.state().nft_scripts.len(), 1);
}

#[test]
fn a_bridge_network_is_made_and_removed_whole() {
    let bed = start("bridge", MemStore::new(), |_| {});
    let id = bed
        .engine
        .create_network(net("team", "bridge", "10.31.0.0/24", &[]))
        .unwrap();
    let ifname = format!("br-{}", &id[..12]);
    let br = bed.kernel.host_link(&ifname).expect("bridge made");
    assert!(br.up && br.addrs.contains(&"10.31.0.1/24".parse().unwrap()));
    assert!(stored_names(&bed.store).contains(&"team".to_string()));
    bed.engine.remove_network("team").unwrap();
    assert!(bed.kernel.host_link(&ifname).is_none());
    assert!(!stored_names(&bed.store).contains(&"team".to_string()));
}

#[test]
fn a_network_whose_kernel_work_fails_leaves_no_record_and_no_link() {
    let bed = start("bridgefail", MemStore::new(), |_| {});
    let before = bed.kernel.host_links();
    bed.kernel.fail_next("ip link set br-", libc::EPERM);
    let err = bed
        .engine
        .create_network(net("team", "bridge", "10.31.0.0/24", &[]))
        .unwrap_err();
    assert!(matches!(err, EngineError::Kernel(_)), "{err}");
    assert_eq!(
        bed.kernel.host_links(),
        before,
        "the bridge was rolled back"
    );
    assert!(!stored_names(&bed.store).contains(&"team".to_string()));
}

#[test]
fn a_macvlan_network_uses_the_users_parent_and_never_changes_it() {
    let bed = start("macvlan", MemStore::new(), with_eth0);
    let before = bed.kernel.host_links();
    lan_on_eth0(&bed);
    let n = bed.engine.network("lan").unwrap();
    let DriverConfig::Macvlan { macvlan } = &n.driver else {
        panic!("{n:?}")
    };
    assert_eq!(
        (macvlan.parent.as_str(), macvlan.created_parent),
        ("eth0", false)
    );
    assert_eq!(
        bed.kernel.host_links(),
        before,
        "no host link for a macvlan network"
    );
    let err = bed
        .engine
        .create_network(net("lan2", "macvlan", "10.9.0.0/24", &[("parent", "eth0")]))
        .unwrap_err();
    assert!(matches!(err, EngineError::Conflict(_)), "{err}");
    bed.engine.remove_network("lan").unwrap();
    assert_eq!(bed.kernel.host_link("eth0").map(|l| l.up), Some(true));
    assert_eq!(bed.kernel.host_links(), before);
}

#[test]
fn a_vlan_parent_is_made_with_the_network_and_removed_with_it() {
    let bed = start("vlan", MemStore::new(), with_eth0);
    bed.engine
        .create_network(net(
            "v10",
            "macvlan",
            "192.168.10.0/24",
            &[("parent", "eth0.10")],
        ))
        .unwrap();
    let vlan = bed.kernel.host_link("eth0.10").expect("VLAN made");
    assert_eq!(vlan.kind.as_deref(), Some("vlan"));
    assert_eq!(vlan.parent.as_deref(), Some("eth0"));
    assert!(vlan.up);
    bed.engine.remove_network("v10").unwrap();
    assert!(bed.kernel.host_link("eth0.10").is_none());
}

#[test]
fn a_kernel_without_vlans_refuses_a_vlan_parent_and_keeps_nothing() {
    let bed = start("novlan", MemStore::new(), |m| {
        with_eth0(m);
        m.state().unsupported.insert("vlan".into());
    });
    let before = bed.kernel.host_links();
    let err = bed
        .engine
        .create_network(net(
            "v10",
            "macvlan",
            "192.168.10.0/24",
            &[("parent", "eth0.10")],
        ))
        .unwrap_err();
    assert!(err.to_string().contains("type vlan id 10"), "{err}");
    assert_eq!(bed.kernel.host_links(), before);
    assert!(!stored_names(&bed.store).contains(&"v10".to_string()));
}

#[test]
fn start_up_brings_back_a_vlan_parent_the_host_lost() {
    let store = MemStore::new();
    {
        let bed = start("vlanboot1", store.clone(), with_eth0);
        bed.engine
            .create_network(net(
                "v10",
                "macvlan",
                "192.168.10.0/24",
                &[("parent", "eth0.10")],
            ))
            .unwrap();
    }
    // A reboot: a fresh kernel with only the NIC, the same records.
    let bed = start("vlanboot2", store, with_eth0);
    let vlan = bed
        .kernel
        .host_link("eth0.10")
        .expect("re-created at start-up");
    assert!(vlan.up && vlan.kind.as_deref() == Some("vlan"));
}

/// The macvlan network most tests use: `lan`, 192.168.50.0/24 on eth0.
fn lan_on_eth0(bed: &Bed) {
    bed.engine
        .create_network(net(
            "lan",
            "macvlan",
            "192.168.50.0/24",
            &[("parent", "eth0")],
        ))
        .unwrap();
}

/// A container record of `spec` called `name`.
fn create(bed: &Bed, name: &str, spec: ContainerSpec) -> Result<String, EngineError> {
    bed.engine.create(CreateRequest {
        name: Some(name.into()),
        spec,
    })
}

/// A container that runs `true` on the default bridge.
fn plain_spec() -> ContainerSpec {
    ContainerSpec {
        cmd: vec!["true".into()],
        ..Default::default()
    }
}

fn spec_on(network: &str) -> ContainerSpec {
    ContainerSpec {
        cmd: vec!["sleep".into(), "100".into()],
        network_mode: Some(NetworkMode::Named(network.into())),
        ..Default::default()
    }
}

#[test]
fn publishing_from_a_macvlan_network_is_refused_at_create() {
    let bed = start("mvports", MemStore::new(), with_eth0);
    lan_on_eth0(&bed);
    let mut spec = spec_on("lan");
    spec.publish = reef_core::ports::parse_publish("8080:80").unwrap();
    let err = create(&bed, "web", spec).unwrap_err();
    assert!(err.to_string().contains("macvlan network lan"), "{err}");
    assert!(bed.store.containers().is_empty());
}

/// A start whose process cannot be launched undoes its network: the macvlan link made in
/// the sandbox and the sandbox go, and the record is as before.
#[test]
fn a_failed_start_on_macvlan_undoes_its_link_and_sandbox() {
    let bed = start("mvstart", MemStore::new(), with_eth0);
    lan_on_eth0(&bed);
    let id = create(&bed, "m1", spec_on("lan")).unwrap();
    let err = bed.engine.start_container(&id, false).unwrap_err();
    assert!(
        err.to_string().contains("without a container runtime"),
        "{err}"
    );
    let st = bed.kernel.state();
    let made = st
        .applied
        .iter()
        .find_map(|op| match op {
            reef_core::plan::Op::CreateMacvlan { parent, mac, .. } => Some((parent.clone(), *mac)),
            _ => None,
        })
        .expect("the join made a macvlan link");
    assert_eq!(made, ("eth0".to_string(), [0x02, 0x42, 192, 168, 50, 2]));
    assert!(
        st.sandboxes.is_empty(),
        "sandbox undone: {:?}",
        st.sandboxes.keys()
    );
    drop(st);
    let c = &bed.store.containers()[0];
    assert!(!c.is_running() && c.endpoints.is_empty() && c.sandbox.is_none());
}

/// The same on a bridge network, failing inside the attach: the veth pair goes too.
#[test]
fn a_start_failing_inside_the_attach_leaves_no_veth() {
    let bed = start("brstart", MemStore::new(), |_| {});
    let before = bed.kernel.host_links();
    let id = create(&bed, "b1", plain_spec()).unwrap();
    bed.kernel.fail_next("ip link set veth", libc::EBUSY);
    let err = bed.engine.start_container(&id, false).unwrap_err();
    assert!(err.to_string().contains("Device or resource busy"), "{err}");
    assert_eq!(bed.kernel.host_links(), before);
    assert!(bed.kernel.state().sandboxes.is_empty());
    assert!(!bed.store.containers()[0].is_running());
}

#[test]
fn connecting_a_stopped_container_checks_its_address_now() {
    let bed = start("connect", MemStore::new(), with_eth0);
    lan_on_eth0(&bed);
    let id = create(&bed, "c1", plain_spec()).unwrap();
    let err = bed
        .engine
        .connect("lan", &id, Some("10.0.0.5".parse().unwrap()), vec![])
        .unwrap_err();
    assert!(matches!(err, EngineError::Invalid(_)), "{err}");
    bed.engine
        .connect("lan", &id, Some("192.168.50.77".parse().unwrap()), vec![])
        .unwrap();
    let c = &bed.store.containers()[0];
    assert!(c
        .spec
        .networks
        .iter()
        .any(|a| a.network == "lan" && a.ip == Some("192.168.50.77".parse().unwrap())));
    // In use by a container that would rejoin it: not removable.
    assert!(matches!(
        bed.engine.remove_network("lan"),
        Err(EngineError::Forbidden(_))
    ));
}

#[test]
fn a_failed_commit_changes_nothing_in_the_kernel() {
    let bed = start("commitfail", MemStore::new(), |_| {});
    let before = bed.kernel.host_links();
    bed.store.fail_commits(true);
    let err = bed
        .engine
        .create_network(net("team", "bridge", "10.31.0.0/24", &[]))
        .unwrap_err();
    assert!(matches!(err, EngineError::Store(_)), "{err}");
    assert_eq!(bed.kernel.host_links(), before);
}

/// Networks created from many threads at once get distinct subnets and bridges, and the
/// records and the kernel agree.
#[test]
fn concurrent_network_creates_get_distinct_subnets() {
    let bed = start("concurrent", MemStore::new(), |_| {});
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let engine = Arc::clone(&bed.engine);
            std::thread::spawn(move || {
                engine.create_network(NetworkCreate {
                    name: format!("n{i}"),
                    ..Default::default()
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let nets = bed.store.networks();
    let mut subnets: Vec<_> = nets
        .iter()
        .filter_map(|n| n.pool())
        .map(|p| p.subnet)
        .collect();
    let all = subnets.len();
    subnets.sort();
    subnets.dedup();
    assert_eq!(
        (all, subnets.len()),
        (17, 17),
        "the default bridge and 16 networks"
    );
    let created = |name: &str| {
        name.strip_prefix('n')
            .is_some_and(|i| i.parse::<u32>().is_ok())
    };
    for n in nets.iter().filter(|n| created(&n.name)) {
        let br = n.bridge().unwrap();
        let link = bed
            .kernel
            .host_link(&br.ifname)
            .expect("bridge in the kernel");
        assert!(link
            .addrs
            .contains(&ipnet::IpNet::V4(br.bridge_addr.unwrap())));
    }
}
