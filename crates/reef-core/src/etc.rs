//! The contents of a container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`, and
//! validation of the flags that feed them (`--add-host`, `--dns`, `--dns-search`).
//!
//! Docker's layout and rules, so programs inside see what they would under Docker. The
//! caller reads the host's resolv.conf and writes the results; this module only renders.

use core::net::IpAddr;

use crate::model::ExtraHost;

/// Docker's fixed head of every container's /etc/hosts.
const HOSTS_HEAD: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// Nameservers a container gets when the host has none it can use (Docker's).
pub const DEFAULT_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// `/etc/hostname`: the name and a newline.
pub fn render_hostname(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// Docker's /etc/hosts: the fixed localhost/IPv6 block, then extra hosts, then link
/// entries, then the container's own line. Tab between address and names.
pub fn render_hosts(
    own: Option<(core::net::Ipv4Addr, &str)>,
    extra: &[ExtraHost],
    links: &[(core::net::Ipv4Addr, Vec<String>)],
) -> String {
    let mut out = String::from(HOSTS_HEAD);
    for h in extra {
        out.push_str(&format!("{}\t{}\n", h.addr, h.name));
    }
    for (addr, names) in links {
        // A link without names would be a line no resolver can use.
        if !names.is_empty() {
            out.push_str(&format!("{addr}\t{}\n", names.join(" ")));
        }
    }
    if let Some((addr, hostname)) = own {
        out.push_str(&format!("{addr}\t{hostname}\n"));
    }
    out
}

/// The parts of a resolv.conf reef reads and writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResolvConf {
    /// `nameserver` addresses, in order.
    pub nameservers: Vec<String>,
    /// `search` domains.
    pub search: Vec<String>,
    /// `options` entries.
    pub options: Vec<String>,
}

/// Parse a resolv.conf: comments (`#`, `;`) and blank lines skipped; the last `search` or
/// `domain` line wins (as in glibc); `options` lines accumulate; other keywords ignored.
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut rc = ResolvConf::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        match keyword {
            "nameserver" => {
                // glibc reads one address and ignores the rest of the line.
                if let Some(ns) = words.next() {
                    rc.nameservers.push(ns.to_string());
                }
            }
            "search" => rc.search = words.map(String::from).collect(),
            "domain" => rc.search = words.next().map(String::from).into_iter().collect(),
            "options" => rc.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    rc
}

/// Docker's rule: start from the host's file; `--dns` replaces nameservers, else the
/// host's minus loopback ones (127.0.0.0/8, ::1) and unparsable ones; if none remain use
/// 8.8.8.8 and 8.8.4.4. `--dns-search` replaces search (`.` means no search domain);
/// `--dns-option` replaces options.
///
/// `--dns` and `--dns-search` entries are validated trimmed ([`validate_dns`],
/// [`validate_dns_search`]) and used trimmed, and `--dns-option` entries are split into
/// words, so no whitespace in a flag (a newline least of all) can break or add lines of the
/// rendered file: it always parses back to what this returns.
pub fn container_resolv_conf(
    host: &ResolvConf,
    dns: &[String],
    search: &[String],
    options: &[String],
) -> ResolvConf {
    let nameservers = if !dns.is_empty() {
        dns.iter().map(|s| s.trim().to_string()).collect()
    } else {
        // A loopback resolver on the host is unreachable from the container's namespace.
        let usable: Vec<String> = host
            .nameservers
            .iter()
            .filter(|ns| {
                ns.parse::<IpAddr>()
                    .is_ok_and(|ip| !ip.to_canonical().is_loopback())
            })
            .cloned()
            .collect();
        if usable.is_empty() {
            DEFAULT_NAMESERVERS.iter().map(|s| s.to_string()).collect()
        } else {
            usable
        }
    };
    let search = if !search.is_empty() {
        search
            .iter()
            .map(|s| s.trim())
            .filter(|s| *s != ".")
            .map(String::from)
            .collect()
    } else {
        host.search.clone()
    };
    let options = if !options.is_empty() {
        options
            .iter()
            .flat_map(|o| o.split_whitespace())
            .map(String::from)
            .collect()
    } else {
        host.options.clone()
    };
    ResolvConf {
        nameservers,
        search,
        options,
    }
}

/// Render a resolv.conf: `nameserver X` lines, then `search a b`, then `options x y`;
/// empty parts are left out.
pub fn render_resolv_conf(rc: &ResolvConf) -> String {
    let mut out = String::new();
    for ns in &rc.nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !rc.search.is_empty() {
        out.push_str(&format!("search {}\n", rc.search.join(" ")));
    }
    if !rc.options.is_empty() {
        out.push_str(&format!("options {}\n", rc.options.join(" ")));
    }
    out
}

/// Validate `--add-host` `name:ip` (or Docker's newer `name=ip`). IPv6 works both as
/// `name:::1` (split at the first `:`) and `name:[::1]`. The address is stored normalised.
pub fn parse_extra_host(s: &str) -> Result<ExtraHost, EtcError> {
    let (name, addr) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| EtcError::ExtraHostFormat {
            value: s.to_string(),
        })?;
    let (name, addr) = (name.trim(), addr.trim());
    if name.is_empty() || addr.is_empty() {
        return Err(EtcError::ExtraHostFormat {
            value: s.to_string(),
        });
    }
    // Whitespace or '#' would split or truncate the hosts line.
    if name.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err(EtcError::ExtraHostName {
            value: s.to_string(),
            name: name.to_string(),
        });
    }
    if addr == "host-gateway" {
        return Err(EtcError::HostGatewayUnsupported {
            value: s.to_string(),
        });
    }
    let bare = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let ip: IpAddr = bare.parse().map_err(|_| EtcError::ExtraHostAddr {
        value: s.to_string(),
        addr: addr.to_string(),
    })?;
    Ok(ExtraHost {
        name: name.to_string(),
        addr: ip.to_string(),
    })
}

/// Validate `--dns` entries: each an IP address.
pub fn validate_dns(dns: &[String]) -> Result<(), EtcError> {
    match dns.iter().find(|d| d.trim().parse::<IpAddr>().is_err()) {
        Some(bad) => Err(EtcError::InvalidDns { value: bad.clone() }),
        None => Ok(()),
    }
}

/// Validate `--dns-search` entries: each a domain name (letters, digits and inner hyphens
/// in dot-separated labels of at most 63 characters, at least one letter, optional
/// trailing dot, under 255 characters), or `.`.
pub fn validate_dns_search(search: &[String]) -> Result<(), EtcError> {
    match search.iter().find(|s| !is_search_domain(s.trim())) {
        Some(bad) => Err(EtcError::InvalidDnsSearch { value: bad.clone() }),
        None => Ok(()),
    }
}

fn is_search_domain(s: &str) -> bool {
    if s == "." {
        return true;
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    // Docker requires a letter somewhere, which rules out bare IP addresses.
    if name.is_empty() || name.len() >= 255 || !name.chars().any(|c| c.is_ascii_alphabetic()) {
        return false;
    }
    name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// Errors in `--add-host`, `--dns` and `--dns-search` values. Messages are shown to users
/// as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcError {
    /// Not `name:ip`.
    #[error("invalid --add-host {value:?}: expected NAME:IP, like db:10.0.0.5 or db:[::1]")]
    ExtraHostFormat {
        /// The entry.
        value: String,
    },
    /// The name part cannot go in /etc/hosts.
    #[error("invalid --add-host {value:?}: {name:?} is not a host name (no spaces or '#')")]
    ExtraHostName {
        /// The entry.
        value: String,
        /// Its name part.
        name: String,
    },
    /// The address part is not an IP address.
    #[error("invalid --add-host {value:?}: {addr:?} is not an IP address")]
    ExtraHostAddr {
        /// The entry.
        value: String,
        /// Its address part.
        addr: String,
    },
    /// Docker's `host-gateway` placeholder, which reef does not substitute.
    #[error("invalid --add-host {value:?}: host-gateway is not supported; give the address")]
    HostGatewayUnsupported {
        /// The entry.
        value: String,
    },
    /// A `--dns` entry is not an IP address.
    #[error("invalid --dns {value:?}: expected an IP address, like 8.8.8.8")]
    InvalidDns {
        /// The entry.
        value: String,
    },
    /// A `--dns-search` entry is not a domain name.
    #[error("invalid --dns-search {value:?}: expected a domain name, like example.com, or \".\"")]
    InvalidDnsSearch {
        /// The entry.
        value: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn extra(name: &str, addr: &str) -> ExtraHost {
        ExtraHost {
            name: name.into(),
            addr: addr.into(),
        }
    }

    #[test]
    fn hostname_file() {
        assert_eq!(render_hostname("web"), "web\n");
        assert_eq!(render_hostname("0123456789ab"), "0123456789ab\n");
    }

    #[test]
    fn hosts_minimal() {
        assert_eq!(
            render_hosts(None, &[], &[]),
            "127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             ff00::0\tip6-mcastprefix\n\
             ff02::1\tip6-allnodes\n\
             ff02::2\tip6-allrouters\n"
        );
    }

    #[test]
    fn hosts_full_order() {
        let got = render_hosts(
            Some((Ipv4Addr::new(172, 17, 0, 3), "abc123def456")),
            &[extra("db", "10.0.0.5"), extra("v6", "::1")],
            &[
                (
                    Ipv4Addr::new(172, 17, 0, 2),
                    strings(&["web", "0123456789ab", "mysite"]),
                ),
                (Ipv4Addr::new(172, 17, 0, 9), vec![]),
            ],
        );
        let want = format!(
            "{HOSTS_HEAD}10.0.0.5\tdb\n::1\tv6\n172.17.0.2\tweb 0123456789ab mysite\n172.17.0.3\tabc123def456\n"
        );
        assert_eq!(got, want);
    }

    #[test]
    fn resolv_conf_parsing() {
        let cases: &[(&str, ResolvConf)] = &[
            ("", ResolvConf::default()),
            (
                "# Generated\n; also a comment\n\nnameserver 10.0.0.2\n  nameserver\t1.1.1.1 trailing\n",
                ResolvConf {
                    nameservers: strings(&["10.0.0.2", "1.1.1.1"]),
                    ..Default::default()
                },
            ),
            (
                "search a.example b.example\nsearch c.example\n",
                ResolvConf {
                    search: strings(&["c.example"]),
                    ..Default::default()
                },
            ),
            (
                "search a.example b.example\ndomain corp.example\n",
                ResolvConf {
                    search: strings(&["corp.example"]),
                    ..Default::default()
                },
            ),
            (
                "domain corp.example\nsearch x.example y.example\n",
                ResolvConf {
                    search: strings(&["x.example", "y.example"]),
                    ..Default::default()
                },
            ),
            (
                "options ndots:2\noptions timeout:1 rotate\n",
                ResolvConf {
                    options: strings(&["ndots:2", "timeout:1", "rotate"]),
                    ..Default::default()
                },
            ),
            (
                "#nameserver 9.9.9.9\nnameservers 1.2.3.4\nsortlist 10.0.0.0\nnameserver ::1\n",
                ResolvConf {
                    nameservers: strings(&["::1"]),
                    ..Default::default()
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_resolv_conf(text), want, "{text:?}");
        }
    }

    #[test]
    fn container_resolv_conf_rules() {
        let host = parse_resolv_conf(
            "nameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nsearch corp.example\noptions edns0\n",
        );
        let loopback_only = parse_resolv_conf("nameserver 127.0.0.53\nnameserver ::1\n");
        struct Case<'a> {
            host: &'a ResolvConf,
            dns: &'a [&'a str],
            search: &'a [&'a str],
            options: &'a [&'a str],
            want: (&'a [&'a str], &'a [&'a str], &'a [&'a str]),
        }
        let cases = [
            Case {
                host: &host,
                dns: &[],
                search: &[],
                options: &[],
                want: (&["10.0.0.2"], &["corp.example"], &["edns0"]),
            },
            Case {
                host: &host,
                dns: &["1.1.1.1", "9.9.9.9"],
                search: &["a.example"],
                options: &["ndots:3"],
                want: (&["1.1.1.1", "9.9.9.9"], &["a.example"], &["ndots:3"]),
            },
            Case {
                host: &loopback_only,
                dns: &[],
                search: &[],
                options: &[],
                want: (&["8.8.8.8", "8.8.4.4"], &[], &[]),
            },
            Case {
                host: &ResolvConf::default(),
                dns: &[],
                search: &["."],
                options: &[],
                want: (&["8.8.8.8", "8.8.4.4"], &[], &[]),
            },
            Case {
                host: &host,
                dns: &[],
                search: &["."],
                options: &[],
                want: (&["10.0.0.2"], &[], &["edns0"]),
            },
            Case {
                // Explicit --dns is taken as given, even a loopback address.
                host: &host,
                dns: &["127.0.0.1"],
                search: &[],
                options: &[],
                want: (&["127.0.0.1"], &["corp.example"], &["edns0"]),
            },
        ];
        for c in cases {
            let got = container_resolv_conf(
                c.host,
                &strings(c.dns),
                &strings(c.search),
                &strings(c.options),
            );
            let want = ResolvConf {
                nameservers: strings(c.want.0),
                search: strings(c.want.1),
                options: strings(c.want.2),
            };
            assert_eq!(got, want, "dns {:?} search {:?}", c.dns, c.search);
        }
    }

    #[test]
    fn loopback_filter_covers_all_of_127_and_mapped() {
        let host = parse_resolv_conf(
            "nameserver 127.1.2.3\nnameserver ::ffff:127.0.0.1\nnameserver not-an-ip\nnameserver 2001:db8::1\n",
        );
        let got = container_resolv_conf(&host, &[], &[], &[]);
        assert_eq!(got.nameservers, strings(&["2001:db8::1"]));
    }

    #[test]
    fn resolv_conf_rendering() {
        let cases: &[(ResolvConf, &str)] = &[
            (ResolvConf::default(), ""),
            (
                ResolvConf {
                    nameservers: strings(&["8.8.8.8", "8.8.4.4"]),
                    search: vec![],
                    options: vec![],
                },
                "nameserver 8.8.8.8\nnameserver 8.8.4.4\n",
            ),
            (
                ResolvConf {
                    nameservers: strings(&["10.0.0.2"]),
                    search: strings(&["a.example", "b.example"]),
                    options: strings(&["ndots:2", "rotate"]),
                },
                "nameserver 10.0.0.2\nsearch a.example b.example\noptions ndots:2 rotate\n",
            ),
        ];
        for (rc, want) in cases {
            assert_eq!(render_resolv_conf(rc), *want);
        }
    }

    #[test]
    fn resolv_conf_round_trip() {
        let rc = ResolvConf {
            nameservers: strings(&["10.0.0.2", "fd00::53"]),
            search: strings(&["a.example"]),
            options: strings(&["ndots:1"]),
        };
        assert_eq!(parse_resolv_conf(&render_resolv_conf(&rc)), rc);
    }

    #[test]
    fn extra_hosts_valid() {
        let cases: &[(&str, ExtraHost)] = &[
            ("db:10.0.0.5", extra("db", "10.0.0.5")),
            ("db=10.0.0.5", extra("db", "10.0.0.5")),
            (
                "my.host.example:192.168.1.1",
                extra("my.host.example", "192.168.1.1"),
            ),
            ("v6:::1", extra("v6", "::1")),
            ("v6:[::1]", extra("v6", "::1")),
            ("v6=[2001:db8::1]", extra("v6", "2001:db8::1")),
            ("v6:2001:db8:0:0::1", extra("v6", "2001:db8::1")),
            (" db : 10.0.0.5 ", extra("db", "10.0.0.5")),
        ];
        for (s, want) in cases {
            assert_eq!(&parse_extra_host(s).unwrap(), want, "{s:?}");
        }
    }

    #[test]
    fn extra_hosts_invalid() {
        let cases: &[(&str, EtcError)] = &[
            ("db", EtcError::ExtraHostFormat { value: "db".into() }),
            (
                ":10.0.0.5",
                EtcError::ExtraHostFormat {
                    value: ":10.0.0.5".into(),
                },
            ),
            (
                "db:",
                EtcError::ExtraHostFormat {
                    value: "db:".into(),
                },
            ),
            (
                "db:10.0.0.256",
                EtcError::ExtraHostAddr {
                    value: "db:10.0.0.256".into(),
                    addr: "10.0.0.256".into(),
                },
            ),
            (
                "db:[10.0.0.1",
                EtcError::ExtraHostAddr {
                    value: "db:[10.0.0.1".into(),
                    addr: "[10.0.0.1".into(),
                },
            ),
            (
                "db:example.com",
                EtcError::ExtraHostAddr {
                    value: "db:example.com".into(),
                    addr: "example.com".into(),
                },
            ),
            (
                "my db:10.0.0.5",
                EtcError::ExtraHostName {
                    value: "my db:10.0.0.5".into(),
                    name: "my db".into(),
                },
            ),
            (
                "host.docker.internal:host-gateway",
                EtcError::HostGatewayUnsupported {
                    value: "host.docker.internal:host-gateway".into(),
                },
            ),
        ];
        for (s, want) in cases {
            assert_eq!(&parse_extra_host(s).unwrap_err(), want, "{s:?}");
        }
        assert_eq!(
            parse_extra_host("db:nope").unwrap_err().to_string(),
            "invalid --add-host \"db:nope\": \"nope\" is not an IP address"
        );
    }

    #[test]
    fn dns_validation() {
        assert_eq!(validate_dns(&[]), Ok(()));
        assert_eq!(
            validate_dns(&strings(&["8.8.8.8", "2001:4860:4860::8888", " 1.1.1.1 "])),
            Ok(())
        );
        for bad in ["dns.google", "8.8.8", "", "1.1.1.1:53"] {
            assert_eq!(
                validate_dns(&strings(&["8.8.8.8", bad])),
                Err(EtcError::InvalidDns { value: bad.into() }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn dns_search_validation() {
        let long_label = "a".repeat(64);
        let long_name = format!("{}.example", ["abcdefghij"; 25].join("."));
        let cases: &[(&str, bool)] = &[
            (".", true),
            ("example.com", true),
            ("example.com.", true),
            ("corp", true),
            ("a-b.c-d.example", true),
            ("x1.example", true),
            (" example.com ", true),
            ("", false),
            ("..", false),
            ("a..b", false),
            ("-a.example", false),
            ("a-.example", false),
            ("a_b.example", false),
            ("exa mple.com", false),
            ("10.0.0.1", false),
            (&long_label, false),
            (&long_name, false),
        ];
        for (s, ok) in cases {
            let got = validate_dns_search(&strings(&[s]));
            if *ok {
                assert_eq!(got, Ok(()), "{s:?}");
            } else {
                assert_eq!(
                    got,
                    Err(EtcError::InvalidDnsSearch {
                        value: s.to_string()
                    }),
                    "{s:?}"
                );
            }
        }
    }
}
