//! Fuzz targets for `daemon.json`: [`parse_daemon_json`] and [`resolve`] (which also runs
//! `-H` parsing, CIDR and address checks and the --dns-search rules). Issue 6, "Bad
//! input"; harness and long runs: `fuzz_support/mod.rs`.
//!
//! Properties: no text panics or hangs (arbitrary text, deep nesting, mutated valid files);
//! for a JSON object, parsing accepts exactly the objects whose keys are all known and whose
//! values have the key's type, and names the unknown keys; an accepted file always resolves
//! without panicking, the same whether it comes as the file or as the flags, and every
//! resolved configuration keeps the documented invariants.

mod fuzz_support;

use fuzz_support::{any_text, fuzz, mutate_text, mutations, soup};
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;
use reef_core::config::{
    parse_daemon_json, resolve, ConfigError, FileConfig, HostAddr, MAX_MTU, MIN_MTU,
};
use serde_json::{Map, Value};

/// What a known key holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Str,
    Strings,
    Bool,
    U32,
}

/// Every key of daemon.json, with its type and a vocabulary for its values.
const KEYS: &[(&str, Kind, &[&str])] = &[
    (
        "bridge",
        Kind::Str,
        &[
            "reef0",
            "none",
            "br-x",
            "",
            " ",
            "a/b",
            "eth0:1",
            "abcdefghijklmnop",
            "docker0",
        ],
    ),
    ("bip", Kind::Str, CIDRS),
    ("fixed-cidr", Kind::Str, CIDRS),
    ("default-gateway", Kind::Str, ADDRS),
    ("mtu", Kind::U32, &[]),
    ("dns", Kind::Strings, ADDRS),
    (
        "dns-search",
        Kind::Strings,
        &[
            "example.com",
            ".",
            "a..b",
            "-a.b",
            "corp",
            "10.0.0.1",
            " x.example ",
            "a_b",
        ],
    ),
    (
        "dns-opts",
        Kind::Strings,
        &["ndots:2", "rotate", "timeout:1", "", "a b"],
    ),
    (
        "data-root",
        Kind::Str,
        &["/var/lib/reef", "", "relative", "/tmp/x y"],
    ),
    ("exec-root", Kind::Str, &["/run/reef", "", "/"]),
    ("hosts", Kind::Strings, HOSTS),
    ("debug", Kind::Bool, &[]),
    ("icc", Kind::Bool, &[]),
    ("ip-forward", Kind::Bool, &[]),
    ("iptables", Kind::Bool, &[]),
    ("ip-masq", Kind::Bool, &[]),
    ("ip", Kind::Str, ADDRS),
    ("group", Kind::Str, &["docker", "", "0"]),
    ("tls", Kind::Bool, &[]),
    ("tlsverify", Kind::Bool, &[]),
    ("tlscacert", Kind::Str, &["/etc/reef/ca.pem", ""]),
    ("tlscert", Kind::Str, &["/etc/reef/cert.pem"]),
    ("tlskey", Kind::Str, &["/etc/reef/key.pem"]),
];

const CIDRS: &[&str] = &[
    "192.168.1.5/24",
    "10.0.0.0/8",
    "10.1.0.0/16",
    "172.17.1.0/24",
    "1.2.3.4/30",
    "1.2.3.4/31",
    "1.2.3.4/32",
    "0.0.0.0/0",
    "10.0.0.255/24",
    "x/24",
    "1.2.3.4/33",
    " 10.1.2.3/16 ",
    "10.1.2.3",
    "::1/64",
    "",
];

const ADDRS: &[&str] = &[
    "8.8.8.8",
    "0.0.0.0",
    "10.1.0.1",
    "192.168.1.1",
    "::1",
    "2001:db8::1",
    "1.2.3",
    "",
    " 1.1.1.1 ",
    "dns.google",
    "1.1.1.1:53",
];

const HOSTS: &[&str] = &[
    "unix:///run/reef/reef.sock",
    "unix://",
    "unix://relative",
    "/tmp/s.sock",
    "tcp://0.0.0.0:2375",
    "tcp://[::1]:2376",
    "tcp://[::1",
    "tcp://[x]:1",
    "tcp://:0",
    "tcp://host:99999",
    "tcp://h/",
    "tcp://h/path",
    "tcp://::1:80",
    "fd://",
    "ssh://x",
    "HTTP://x",
    "weird://x",
    "1.2.3.4:",
    "",
    "tcp://a b:1",
    "tcp://[::1]x",
];

fn known_keys() -> Vec<&'static str> {
    KEYS.iter().map(|k| k.0).collect()
}

/// Any JSON value, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any_text(12).prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any_text(6), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value for `kind`, mostly well typed, drawn from `words`.
fn value_for(kind: Kind, words: &'static [&'static str]) -> BoxedStrategy<Value> {
    let word = if words.is_empty() {
        any_text(8).boxed()
    } else {
        prop_oneof![
            4 => prop::sample::select(words).prop_map(String::from),
            1 => soup(words, 3),
            1 => any_text(12),
        ]
        .boxed()
    };
    let typed = match kind {
        Kind::Str => word.prop_map(Value::String).boxed(),
        Kind::Strings => prop::collection::vec(word.prop_map(Value::String), 0..4)
            .prop_map(Value::Array)
            .boxed(),
        Kind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Kind::U32 => prop_oneof![
            prop::sample::select(vec![
                0u64,
                1,
                67,
                68,
                1500,
                9000,
                65535,
                65536,
                u64::from(u32::MAX),
                1 << 32
            ])
            .prop_map(Value::from),
            any::<u32>().prop_map(Value::from),
            Just(Value::from(-1)),
            Just(Value::from(1.5)),
            Just(Value::from("1500")),
        ]
        .boxed(),
    };
    prop_oneof![8 => typed, 1 => Just(Value::Null), 1 => any_json()].boxed()
}

/// One key and its value: mostly known keys, sometimes near misses and arbitrary ones.
fn entry() -> impl Strategy<Value = (String, Value)> {
    let known = prop::sample::select((0..KEYS.len()).collect::<Vec<_>>())
        .prop_flat_map(|i| (Just(KEYS[i].0.to_string()), value_for(KEYS[i].1, KEYS[i].2)));
    let unknown = (
        prop_oneof![
            prop::sample::select(vec![
                "Bip",
                "dns_search",
                "bip ",
                "dns-opt",
                "",
                "log-level",
                "hosts\0"
            ])
            .prop_map(String::from),
            any_text(10),
        ],
        any_json(),
    );
    prop_oneof![9 => known, 1 => unknown]
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec(entry(), 0..8).prop_map(|v| v.into_iter().collect())
}

/// Whether `v` has the type of a key of `kind` (every key accepts null).
fn well_typed(kind: Kind, v: &Value) -> bool {
    match (kind, v) {
        (_, Value::Null) => true,
        (Kind::Str, Value::String(_)) | (Kind::Bool, Value::Bool(_)) => true,
        (Kind::Strings, Value::Array(a)) => a.iter().all(Value::is_string),
        (Kind::U32, Value::Number(n)) => n.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)),
        _ => false,
    }
}

/// An accepted file resolves without panicking, as file or as flags alike, to a
/// configuration that keeps its invariants.
fn check_resolves(file: &FileConfig) -> TestCaseResult {
    let as_file = resolve(file.clone(), FileConfig::default());
    let as_flags = resolve(FileConfig::default(), file.clone());
    prop_assert_eq!(
        &as_file,
        &as_flags,
        "the file and the flags merge differently"
    );
    prop_assert_eq!(&resolve(file.clone(), file.clone()), &as_file);
    match as_file {
        Ok(c) => {
            prop_assert!(c.iptables || !c.ip_masq, "ip-masq without iptables");
            prop_assert!(c.icc || c.iptables, "icc=false without iptables");
            prop_assert!(!c.tlsverify || c.tls);
            prop_assert!((MIN_MTU..=MAX_MTU).contains(&c.mtu));
            prop_assert!(!c.hosts.is_empty());
            for h in &c.hosts {
                match h {
                    HostAddr::Unix(p) => prop_assert!(p.is_absolute(), "{p:?}"),
                    HostAddr::Tcp(a) => prop_assert!(
                        a.rsplit_once(':')
                            .is_some_and(|(_, p)| p.parse::<u16>().is_ok_and(|p| p > 0)),
                        "{a:?}"
                    ),
                }
            }
            if let Some(bip) = c.bip {
                prop_assert!(bip.prefix_len() <= 30);
                prop_assert!(bip.addr() != bip.network() && bip.addr() != bip.broadcast());
                if let Some(f) = c.fixed_cidr {
                    prop_assert!(bip.trunc().contains(&f));
                }
                if let Some(gw) = c.default_gateway {
                    prop_assert!(bip.trunc().contains(&gw));
                }
            }
            if let Some(f) = c.fixed_cidr {
                prop_assert_eq!(f, f.trunc());
            }
            // The resolved configuration serializes (reefd logs and reports it).
            prop_assert!(serde_json::to_string(&c).is_ok());
        }
        Err(e) => prop_assert!(!e.to_string().is_empty()),
    }
    Ok(())
}

#[test]
fn fuzz_daemon_json_objects() {
    let input = (object(), any::<bool>());
    fuzz("daemon_json_objects", 3000, input, |(map, pretty)| {
        let text = if pretty {
            serde_json::to_string_pretty(&Value::Object(map.clone()))
        } else {
            serde_json::to_string(&Value::Object(map.clone()))
        }
        .expect("a Value serializes");
        let known = known_keys();
        let mut unknown: Vec<String> = map
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect();
        unknown.sort();
        let badly_typed: Vec<&String> = map
            .iter()
            .filter(|(k, v)| {
                KEYS.iter()
                    .any(|(name, kind, _)| name == k && !well_typed(*kind, v))
            })
            .map(|(k, _)| k)
            .collect();
        match parse_daemon_json(&text) {
            Ok(file) => {
                prop_assert!(unknown.is_empty(), "unknown keys {unknown:?} accepted");
                prop_assert!(
                    badly_typed.is_empty(),
                    "badly typed {badly_typed:?} accepted"
                );
                check_resolves(&file)?;
            }
            Err(ConfigError::UnknownKeys { keys }) => {
                let mut keys = keys.clone();
                keys.sort();
                prop_assert_eq!(keys, unknown);
            }
            Err(ConfigError::InvalidValue { key, .. }) => {
                prop_assert!(unknown.is_empty());
                prop_assert!(badly_typed.contains(&&key), "{key:?} is not badly typed");
            }
            Err(e) => prop_assert!(false, "unexpected error for a JSON object: {e}"),
        }
        Ok(())
    });
}

/// Text that is almost daemon.json: valid files with edits, and JSON-ish token soups.
fn json_text() -> impl Strategy<Value = String> {
    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        "\"",
        ":",
        ",",
        " ",
        "\n",
        "null",
        "true",
        "false",
        "0",
        "-1",
        "1e400",
        "\"bip\"",
        "\"hosts\"",
        "\"mtu\"",
        "\"dns\"",
        "\"192.168.1.5/24\"",
        "\\u0000",
        "\\ud800",
        "\\",
        "/*",
        "//",
    ];
    let valid = object().prop_map(|m| serde_json::to_string(&Value::Object(m)).unwrap_or_default());
    prop_oneof![
        3 => (valid, mutations(6)).prop_map(|(t, m)| mutate_text(&t, &m)),
        2 => soup(TOKENS, 30),
        1 => any_text(200),
        // Deep nesting: serde_json's recursion limit must refuse it, not the stack.
        1 => (1usize..5000, prop::sample::select(vec!["[", "{\"a\":"]))
            .prop_map(|(n, open)| format!("{{\"dns\":{}", open.repeat(n))),
    ]
}

#[test]
fn fuzz_daemon_json_text() {
    fuzz("daemon_json_text", 3000, json_text(), |text| {
        match parse_daemon_json(&text) {
            Ok(file) => check_resolves(&file)?,
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        Ok(())
    });
}
