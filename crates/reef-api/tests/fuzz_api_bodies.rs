//! Fuzz targets for the API's request bodies: what reefd decodes from a client's bytes
//! (`ContainerCreate`, `NetworkCreate`, `NetworkConnect`, `NetworkDisconnect`, with serde
//! as reefd does), then the public reef-core parsers reefd's conversion runs on the decoded
//! fields. Issue 6, "Bad input"; harness and long runs in
//! `crates/reef-core/tests/fuzz_support/mod.rs` (shared, included below).
//!
//! reefd's conversion itself (`spec_from_request` and its helpers `parse_host_port`,
//! `static_ip` in `crates/reefd/src/api/containers.rs`, and the network handlers' checks)
//! is private to reefd and not called here; what it calls on each field is: the network
//! mode ([`NetworkMode::parse`]), `--add-host` ([`parse_extra_host`]), port keys of
//! `PortBindings`, `ExposedPorts` and `ReefPublishAllow` ([`parse_port_filter`]), links
//! ([`parse_link`]); the rest is std's address and ipnet's CIDR parsing, not reef's code.
//!
//! Properties: no bytes panic or hang the decoders; a decoded body re-encodes to JSON that
//! decodes to the same body; every field parser reefd applies takes any decoded value
//! without panicking and keeps its invariants.

#[path = "../../reef-core/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use std::net::IpAddr;

use fuzz_support::{any_bytes, any_text, fuzz, mutate, mutations, soup};
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;
use reef_api::{ContainerCreate, NetworkConnect, NetworkCreate, NetworkDisconnect};
use reef_core::etc::parse_extra_host;
use reef_core::links::parse_link;
use reef_core::model::NetworkMode;
use reef_core::ports::parse_port_filter;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

const PORT_KEYS: &[&str] = &[
    "80/tcp",
    "53/udp",
    "9/sctp",
    "80",
    "0/tcp",
    "80/icmp",
    "8080:80",
    "99999",
    "",
    "80-81/tcp",
];
const ADDRS: &[&str] = &[
    "",
    "0.0.0.0",
    "127.0.0.1",
    "::1",
    "[::1]",
    "[[::1]]",
    "10.20.0.50",
    "300.1.1.1",
    "x",
];
const HOST_PORTS: &[&str] = &[
    "",
    "0",
    "8080",
    "8000-8009",
    "9-8",
    "0-5",
    "65536",
    "-",
    "1-1",
    "+80",
];
const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "192.0.2.7",
    "10.0.0.1/33",
    "::/0",
    "",
    "x",
    "172.20.0.0/16",
];
const NAMES: &[&str] = &[
    "",
    "bridge",
    "default",
    "none",
    "host",
    "container:",
    "container:web",
    "app",
    "web",
    "db:alias",
    "/web:w",
    ":",
];
const HOSTS: &[&str] = &[
    "db:10.0.0.5",
    "db=10.0.0.5",
    "v6:::1",
    "v6:[::1]",
    "x:host-gateway",
    "a b:1.2.3.4",
    ":",
    "db:",
];

fn word(words: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        6 => prop::sample::select(words).prop_map(String::from),
        1 => soup(words, 3),
        1 => any_text(10),
    ]
    .boxed()
}

fn s(words: &'static [&'static str]) -> BoxedStrategy<Value> {
    word(words).prop_map(Value::String).boxed()
}

fn strings(words: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop::collection::vec(word(words), 0..4)
        .prop_map(|v| json!(v))
        .boxed()
}

fn map_of(keys: &'static [&'static str], value: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop::collection::btree_map(word(keys), value, 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
        .boxed()
}

/// A small arbitrary JSON value, for fields given the wrong type.
fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any_text(8).prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(any_text(5), inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A JSON object with these fields: each present or not, mostly well typed, rarely of
/// another type (one such field refuses the whole body), plus sometimes an unknown key
/// (which serde ignores).
fn object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let entries: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .into_iter()
        .map(|(name, value)| {
            prop_oneof![
                20 => value.prop_map(move |v| Some((name.to_string(), v))),
                15 => Just(None),
                1 => any_json().prop_map(move |v| Some((name.to_string(), v))),
            ]
            .boxed()
        })
        .collect();
    let extra = prop::option::weighted(0.1, (any_text(8), any_json()));
    (entries, extra)
        .prop_map(|(entries, extra)| {
            let mut m: Map<String, Value> = entries.into_iter().flatten().collect();
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            Value::Object(m)
        })
        .boxed()
}

fn bool_() -> BoxedStrategy<Value> {
    any::<bool>().prop_map(Value::Bool).boxed()
}

fn endpoint_settings() -> BoxedStrategy<Value> {
    object(vec![
        ("IPAMConfig", object(vec![("IPv4Address", s(ADDRS))])),
        ("MacAddress", s(&["02:42:ac:11:00:02", "", "zz"])),
        ("Aliases", strings(NAMES)),
        ("NetworkID", s(NAMES)),
        (
            "IPPrefixLen",
            prop_oneof![
                (0u8..=32).prop_map(Value::from),
                any::<i64>().prop_map(Value::from)
            ]
            .boxed(),
        ),
    ])
}

fn container_create() -> BoxedStrategy<Value> {
    let binding = object(vec![("HostIp", s(ADDRS)), ("HostPort", s(HOST_PORTS))]);
    let host_config = object(vec![
        ("NetworkMode", s(NAMES)),
        ("Dns", strings(ADDRS)),
        ("DnsSearch", strings(&["example.com", ".", "a..b"])),
        ("DnsOptions", strings(&["ndots:2", "a b"])),
        ("ExtraHosts", strings(HOSTS)),
        ("AutoRemove", bool_()),
        (
            "PortBindings",
            map_of(
                PORT_KEYS,
                prop::collection::vec(binding, 0..3)
                    .prop_map(Value::Array)
                    .boxed(),
            ),
        ),
        ("PublishAllPorts", bool_()),
        ("Links", strings(NAMES)),
        ("ReefPublishAllow", map_of(PORT_KEYS, strings(CIDRS))),
    ]);
    object(vec![
        ("Hostname", s(&["web", "", "a b"])),
        ("Cmd", strings(&["sleep", "1000", ""])),
        ("Env", strings(&["A=1", "=", "B"])),
        ("Tty", bool_()),
        ("OpenStdin", bool_()),
        ("AttachStdin", bool_()),
        ("AttachStdout", bool_()),
        ("AttachStderr", bool_()),
        ("MacAddress", s(&["02:42:ac:11:00:02", ""])),
        ("ExposedPorts", map_of(PORT_KEYS, Just(json!({})).boxed())),
        ("HostConfig", host_config),
        (
            "NetworkingConfig",
            object(vec![(
                "EndpointsConfig",
                map_of(NAMES, endpoint_settings()),
            )]),
        ),
    ])
}

fn network_create() -> BoxedStrategy<Value> {
    let pool = object(vec![
        ("Subnet", s(CIDRS)),
        ("IPRange", s(CIDRS)),
        ("Gateway", s(ADDRS)),
    ]);
    object(vec![
        ("Name", s(NAMES)),
        ("Driver", s(&["bridge", "", "overlay"])),
        ("Internal", bool_()),
        ("Labels", map_of(NAMES, s(NAMES))),
        (
            "Options",
            map_of(
                &["com.docker.network.bridge.host_binding_ipv4", "x"],
                s(ADDRS),
            ),
        ),
        (
            "IPAM",
            object(vec![
                ("Driver", s(&["default"])),
                (
                    "Config",
                    prop::collection::vec(pool, 0..3)
                        .prop_map(Value::Array)
                        .boxed(),
                ),
            ]),
        ),
        ("CheckDuplicate", bool_()),
        ("Attachable", bool_()),
        ("EnableIPv6", bool_()),
    ])
}

fn network_connect() -> BoxedStrategy<Value> {
    object(vec![
        ("Container", s(NAMES)),
        (
            "EndpointConfig",
            prop_oneof![endpoint_settings(), Just(Value::Null)].boxed(),
        ),
        ("Force", bool_()),
    ])
}

/// Body bytes: well-shaped JSON as it is, or with byte edits, or arbitrary bytes.
fn body(shape: BoxedStrategy<Value>) -> impl Strategy<Value = Vec<u8>> {
    let json = shape.prop_map(|v| serde_json::to_vec(&v).unwrap_or_default());
    prop_oneof![
        3 => json.clone(),
        3 => (json, mutations(6)).prop_map(|(b, m)| mutate(b, &m)),
        1 => any_bytes(300),
    ]
}

/// Decodes `bytes` as reefd does; if accepted, the body re-encodes to JSON that decodes to
/// the same body (compared through its JSON, as the types have no `PartialEq`).
fn decode<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<Option<T>, TestCaseError> {
    let Ok(body) = serde_json::from_slice::<T>(bytes) else {
        return Ok(None);
    };
    let once = serde_json::to_value(&body)
        .map_err(|e| TestCaseError::fail(format!("re-encoding: {e}")))?;
    let again: T = serde_json::from_value(once.clone())
        .map_err(|e| TestCaseError::fail(format!("{e}: {once}")))?;
    prop_assert_eq!(serde_json::to_value(&again).ok(), Some(once));
    Ok(Some(body))
}

/// The field parsers reefd's `spec_from_request` runs, on every decoded field.
fn check_container_fields(req: &ContainerCreate) -> TestCaseResult {
    let hc = &req.host_config;
    let mode = NetworkMode::parse(&hc.network_mode);
    // The mode's display (what inspect shows) parses back to the same mode.
    prop_assert_eq!(NetworkMode::parse(&mode.to_string()), mode.clone());
    if let NetworkMode::Named(n) = &mode {
        prop_assert!(!n.is_empty());
    }
    for h in &hc.extra_hosts {
        if let Ok(e) = parse_extra_host(h) {
            prop_assert!(e.addr.parse::<IpAddr>().is_ok());
        }
    }
    let port_keys = hc
        .port_bindings
        .keys()
        .chain(req.exposed_ports.keys())
        .chain(hc.reef_publish_allow.keys());
    for key in port_keys {
        if let Ok((port, _)) = parse_port_filter(key) {
            prop_assert!(port > 0);
        }
    }
    for l in &hc.links {
        if let Ok((name, alias)) = parse_link(l) {
            prop_assert!(!name.is_empty() && !alias.is_empty());
        }
    }
    Ok(())
}

#[test]
fn fuzz_api_container_create() {
    fuzz(
        "api_container_create",
        2400,
        body(container_create()),
        |bytes| {
            if let Some(req) = decode::<ContainerCreate>(&bytes)? {
                check_container_fields(&req)?;
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_api_network_create() {
    fuzz(
        "api_network_create",
        1800,
        body(network_create()),
        |bytes| {
            // The handler then only parses CIDRs and an address (ipnet's and std's parsers).
            decode::<NetworkCreate>(&bytes)?;
            Ok(())
        },
    );
}

#[test]
fn fuzz_api_network_connect() {
    fuzz(
        "api_network_connect",
        1800,
        body(network_connect()),
        |bytes| {
            // The handlers then only parse the `--ip` address (std's parser).
            decode::<NetworkConnect>(&bytes)?;
            decode::<NetworkDisconnect>(&bytes)?;
            Ok(())
        },
    );
}
