//! Fuzz targets for the container's /etc files: the host's `/etc/resolv.conf`
//! ([`parse_resolv_conf`]), the container's one ([`container_resolv_conf`],
//! [`render_resolv_conf`]), and `--add-host` ([`parse_extra_host`], [`render_hosts`]).
//! Issue 6, "Bad input"; harness and long runs: `fuzz_support/mod.rs`.
//!
//! Properties: no text panics or hangs; what the parser returns are whole words (never
//! empty, never with whitespace); a container always gets nameservers, and never the host's
//! loopback ones; a rendered resolv.conf parses back to the same nameservers, search
//! domains and options; an accepted `--add-host` is a name and a normalised address that
//! round-trip and make exactly one two-word /etc/hosts line.

mod fuzz_support;

use std::net::IpAddr;

use fuzz_support::{any_text, fuzz, mutate_text, mutations, soup};
use proptest::prelude::*;
use reef_core::etc::{
    container_resolv_conf, parse_extra_host, parse_resolv_conf, render_hosts, render_resolv_conf,
    validate_dns, validate_dns_search, ResolvConf, DEFAULT_NAMESERVERS,
};

const RESOLV_TOKENS: &[&str] = &[
    "nameserver",
    "nameserver ",
    "search ",
    "domain ",
    "options ",
    "sortlist ",
    "#",
    ";",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "\u{a0}",
    "\u{2028}",
    "10.0.0.2",
    "127.0.0.53",
    "::1",
    "::ffff:127.0.0.1",
    "2001:db8::1",
    "fe80::1%eth0",
    "8.8.8.8",
    "not-an-ip",
    "corp.example",
    "a.example",
    "ndots:2",
    "rotate",
    "edns0",
];

fn resolv_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => soup(RESOLV_TOKENS, 40),
        1 => any_text(300),
        1 => (soup(RESOLV_TOKENS, 20), mutations(6)).prop_map(|(t, m)| mutate_text(&t, &m)),
    ]
}

fn is_word(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_whitespace)
}

#[test]
fn fuzz_resolv_conf_parse() {
    fuzz("resolv_conf_parse", 3000, resolv_text(), |text| {
        let rc = parse_resolv_conf(&text);
        for w in rc.nameservers.iter().chain(&rc.search).chain(&rc.options) {
            prop_assert!(is_word(w), "{w:?} is not one word");
        }
        // Parsing is idempotent through rendering: what reef reads, it writes back as is.
        prop_assert_eq!(parse_resolv_conf(&render_resolv_conf(&rc)), rc);
        Ok(())
    });
}

/// A word: no whitespace, not empty (what a resolv.conf field can hold).
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "10.0.0.2",
            "fd00::53",
            "a.example",
            "ndots:1",
            "#x",
            ";y",
            "nameserver"
        ])
        .prop_map(String::from),
        prop::collection::vec(
            any::<char>().prop_filter("no whitespace", |c| !c.is_whitespace()),
            1..12
        )
        .prop_map(String::from_iter),
    ]
}

#[test]
fn fuzz_resolv_conf_round_trip() {
    let rc = (
        prop::collection::vec(word(), 0..4),
        prop::collection::vec(word(), 0..4),
        prop::collection::vec(word(), 0..4),
    )
        .prop_map(|(nameservers, search, options)| ResolvConf {
            nameservers,
            search,
            options,
        });
    fuzz("resolv_conf_round_trip", 3000, rc, |rc| {
        prop_assert_eq!(parse_resolv_conf(&render_resolv_conf(&rc)), rc);
        Ok(())
    });
}

/// What the user may pass as `--dns`: IP addresses (as `validate_dns` accepts them), or junk.
fn dns_flag() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<IpAddr>().prop_map(|ip| ip.to_string()),
        1 => any::<IpAddr>().prop_map(|ip| format!(" {ip}\t")),
        1 => soup(RESOLV_TOKENS, 3),
    ]
}

fn search_flag() -> impl Strategy<Value = String> {
    const WORDS: &[&str] = &[
        "example", "com", "corp", ".", "..", "-", "a1", "x", "1", "_", " ",
    ];
    prop_oneof![4 => soup(WORDS, 6), 1 => any_text(10)]
}

#[test]
fn fuzz_resolv_conf_container() {
    let input = (
        resolv_text(),
        prop::collection::vec(dns_flag(), 0..3),
        prop::collection::vec(search_flag(), 0..3),
        // --dns-option is not validated: any text, newlines included.
        prop::collection::vec(prop_oneof![word(), soup(RESOLV_TOKENS, 4)], 0..3),
    );
    fuzz(
        "resolv_conf_container",
        3000,
        input,
        |(host_text, dns, search, options)| {
            let host = parse_resolv_conf(&host_text);
            let rc = container_resolv_conf(&host, &dns, &search, &options);
            prop_assert!(
                !rc.nameservers.is_empty(),
                "a container without nameservers"
            );
            if dns.is_empty() {
                let defaults: Vec<String> =
                    DEFAULT_NAMESERVERS.iter().map(|s| s.to_string()).collect();
                if rc.nameservers != defaults {
                    for ns in &rc.nameservers {
                        let ip: IpAddr = ns
                            .parse()
                            .map_err(|_| TestCaseError::fail(format!("{ns:?} passed on")))?;
                        prop_assert!(!ip.to_canonical().is_loopback(), "loopback {ip} passed on");
                        prop_assert!(host.nameservers.contains(ns));
                    }
                }
            } else {
                let trimmed: Vec<&str> = dns.iter().map(|s| s.trim()).collect();
                prop_assert_eq!(&rc.nameservers, &trimmed);
            }
            // `--dns-search .` (however padded: the flag is validated trimmed) means no search
            // (the host's own `search .` is copied as it is).
            if !search.is_empty() {
                prop_assert!(
                    !rc.search.iter().any(|s| s.trim() == "."),
                    "{:?}",
                    rc.search
                );
            }
            // What the daemon accepts (validated flags) renders to a file that parses back to
            // the same servers, search domains and options.
            if validate_dns(&dns).is_ok() && validate_dns_search(&search).is_ok() {
                prop_assert_eq!(parse_resolv_conf(&render_resolv_conf(&rc)), rc);
            }
            Ok(())
        },
    );
}

fn extra_host_text() -> impl Strategy<Value = String> {
    const TOKENS: &[&str] = &[
        "db",
        "my.host",
        ":",
        ":",
        "=",
        "[",
        "]",
        "::1",
        "10.0.0.5",
        "2001:db8::1",
        "::ffff:1.2.3.4",
        "host-gateway",
        " ",
        "\t",
        "#",
        "%eth0",
        "010.0.0.1",
        "\n",
        "\u{a0}",
    ];
    prop_oneof![3 => soup(TOKENS, 8), 1 => any_text(30)]
}

#[test]
fn fuzz_resolv_conf_extra_host() {
    fuzz("resolv_conf_extra_host", 3000, extra_host_text(), |s| {
        let Ok(h) = parse_extra_host(&s) else {
            return Ok(());
        };
        prop_assert!(
            is_word(&h.name) && !h.name.contains('#'),
            "name {:?}",
            h.name
        );
        let ip: IpAddr = h
            .addr
            .parse()
            .map_err(|_| TestCaseError::fail("address not an IP"))?;
        prop_assert_eq!(ip.to_string(), h.addr.clone(), "address not normalised");
        // NAME=ADDR parses back to the same entry.
        let again = parse_extra_host(&format!("{}={}", h.name, h.addr));
        prop_assert_eq!(again.as_ref(), Ok(&h));
        // It becomes exactly one /etc/hosts line of two words, after the fixed head.
        let head = render_hosts(None, &[], &[]);
        let hosts = render_hosts(None, std::slice::from_ref(&h), &[]);
        let tail = hosts.strip_prefix(&head).expect("the fixed head first");
        let lines: Vec<&str> = tail.lines().collect();
        prop_assert_eq!(lines.len(), 1, "{:?}", tail);
        let words: Vec<&str> = lines[0].split_whitespace().collect();
        prop_assert_eq!(words, vec![h.addr.as_str(), h.name.as_str()]);
        Ok(())
    });
}

// Regressions found by `fuzz_resolv_conf_container` (fixed in `container_resolv_conf`).

fn rendered_and_parsed(dns: &[&str], search: &[&str], options: &[&str]) -> ResolvConf {
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let host = parse_resolv_conf("nameserver 10.9.9.9\nsearch host.example\n");
    let rc = container_resolv_conf(&host, &v(dns), &v(search), &v(options));
    parse_resolv_conf(&render_resolv_conf(&rc))
}

/// `--dns "\n10.0.0.2"` passes `validate_dns` (trimmed) but was written untrimmed:
/// `nameserver \n10.0.0.2`, a file with no nameserver at all.
#[test]
fn r6_dns_flag_with_a_newline_keeps_its_nameserver() {
    assert!(validate_dns(&["\n10.0.0.2".to_string()]).is_ok());
    let back = rendered_and_parsed(&["\n10.0.0.2", " 1.1.1.1\t"], &[], &[]);
    assert_eq!(back.nameservers, ["10.0.0.2", "1.1.1.1"]);
}

/// `--dns-search "\nexample.com"` likewise emptied the search line; `" . "` (valid, as
/// `.`) became a search domain `.` instead of meaning "no search domain".
#[test]
fn r6_padded_dns_search_is_used_trimmed() {
    assert!(validate_dns_search(&["\nexample.com".to_string(), " . ".to_string()]).is_ok());
    assert_eq!(
        rendered_and_parsed(&[], &["\nexample.com"], &[]).search,
        ["example.com"]
    );
    assert!(rendered_and_parsed(&[], &[" . "], &[]).search.is_empty());
}

/// `--dns-option "ndots:1\nnameserver 6.6.6.6"` added a nameserver line to the file.
#[test]
fn r6_dns_option_with_a_newline_adds_no_line() {
    let back = rendered_and_parsed(&["10.0.0.2"], &[], &["ndots:1\nnameserver 6.6.6.6", "a b"]);
    assert_eq!(back.nameservers, ["10.0.0.2"]);
    assert_eq!(back.options, ["ndots:1", "nameserver", "6.6.6.6", "a", "b"]);
}
