//! Published and exposed ports: Docker's `-p/--publish` and `--expose` grammar, the
//! `reef port NAME 80/tcp` filter, the `docker port` output line, and the small pure helpers
//! the daemon needs to pick host ports.
//!
//! The grammar follows Docker (`[ip:][hostPort:]containerPort[/proto]`, ranges with `-`,
//! IPv6 host addresses in brackets) with two deliberate refusals: an unbracketed IPv6 host
//! address (`::1:8080:80`, which is ambiguous) and container port 0. Finding out whether a
//! host port is in use is the daemon's job, not this module's; what the daemon takes from here
//! is [`parse_port_range`], for the text of `net.ipv4.ip_local_port_range`, and
//! [`first_free`], which picks the first port of a range that its caller says is not taken.

use core::net::{IpAddr, SocketAddr};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A transport protocol a port can be published for.
///
/// Shown and serialized in lower case (`tcp`, `udp`, `sctp`), as Docker does; parsed case
/// insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP, the default when a spec names no protocol.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Proto {
    /// The lower-case name: `"tcp"`, `"udp"` or `"sctp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = PortError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Ok(Proto::Sctp),
            _ => Err(PortError::InvalidProto(s.to_string())),
        }
    }
}

/// One published port as requested: the host side may be unspecified (ephemeral).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// Host address to bind; `None` means every address (Docker's default).
    pub host_ip: Option<IpAddr>,
    /// Host port; `None` means pick one: an ephemeral port, or, when `host_range` is set, the
    /// first free port of that range. A host port of `0` in a spec is read as `None`.
    pub host_port: Option<u16>,
    /// For the `8000-8009:80` form only: bind the container port to one free host port in
    /// this inclusive range (`host_port` is then `None`).
    pub host_range: Option<(u16, u16)>,
    /// Port inside the container (never 0).
    pub container_port: u16,
    /// Protocol.
    pub proto: Proto,
}

/// Why a port spec, port range or filter was refused. Each error names the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The whole value was empty.
    #[error("no port specified: empty string")]
    Empty,
    /// A spec with no container port, like `8080:`.
    #[error("no container port specified: {0:?}")]
    MissingContainerPort(String),
    /// A port or port range that is not a number in 0-65535 (or `a-b` of those), or that is
    /// not allowed where it stands.
    #[error("invalid port specification: {0:?}")]
    InvalidPort(String),
    /// A spec whose shape is wrong (misplaced brackets, too few parts after an address).
    #[error("invalid port specification: {0:?}: expected [ip:][hostPort:]containerPort[/proto]")]
    Malformed(String),
    /// A protocol other than tcp, udp or sctp.
    #[error("invalid proto: {0:?}")]
    InvalidProto(String),
    /// A host address that is not an IP address.
    #[error("invalid IP address: {0:?}")]
    InvalidIp(String),
    /// An IPv6 host address written without brackets (the whole spec is named).
    #[error("invalid port specification: {0:?}: an IPv6 host address must be in brackets, like \"[::1]:8080:80\"")]
    UnbracketedIpv6(String),
    /// Container port 0 (or a container range starting at 0).
    #[error("invalid container port: {0:?}: port 0 cannot be published or exposed")]
    ZeroContainerPort(String),
    /// A range whose start is greater than its end, like `89-80`.
    #[error("invalid port range: {0:?}: start is greater than end")]
    ReversedRange(String),
    /// A host range and a container range of different lengths.
    #[error("invalid ranges specified for container and host ports: {container:?} and {host:?}")]
    RangeMismatch {
        /// The host side as written.
        host: String,
        /// The container side as written.
        container: String,
    },
    /// `net.ipv4.ip_local_port_range` text that is not two ports `lo hi` with 1 <= lo <= hi.
    #[error("invalid local port range: {0:?}")]
    InvalidPortRange(String),
}

/// A port number: ASCII digits only (no sign, no spaces), at most 65535.
fn parse_port(s: &str) -> Result<u16, PortError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortError::InvalidPort(s.to_string()));
    }
    s.parse::<u16>()
        .map_err(|_| PortError::InvalidPort(s.to_string()))
}

/// `"80"` or `"80-89"` as an inclusive range.
fn parse_range(s: &str) -> Result<(u16, u16), PortError> {
    match s.split_once('-') {
        None => {
            let p = parse_port(s)?;
            Ok((p, p))
        }
        Some((a, b)) => {
            let lo = parse_port(a).map_err(|_| PortError::InvalidPort(s.to_string()))?;
            let hi = parse_port(b).map_err(|_| PortError::InvalidPort(s.to_string()))?;
            if lo > hi {
                return Err(PortError::ReversedRange(s.to_string()));
            }
            Ok((lo, hi))
        }
    }
}

/// Split `"80/udp"` into `("80", Udp)`. No protocol, or an empty one (`"80/"`, which Docker
/// accepts), means TCP.
fn split_proto(s: &str) -> Result<(&str, Proto), PortError> {
    match s.split_once('/') {
        None => Ok((s, Proto::Tcp)),
        Some((p, "")) => Ok((p, Proto::Tcp)),
        Some((p, proto)) => Ok((p, proto.parse()?)),
    }
}

/// Parse one `-p` value into one [`PortSpec`] per container port (ranges expand).
///
/// Forms: `80`, `8080:80`, `:80`, `0.0.0.0:8080:80`, `192.0.2.1::80`, `[::1]:8080:80`,
/// `[::1]::80`, `8080:80/udp`, `80/sctp`; ranges `8000-8009:80-89` (paired in order),
/// `80-89` (an ephemeral host port each), `127.0.0.1:8000-8001:80-81`, and `8000-8009:80`
/// (container port 80 on one free host port of 8000-8009: `host_range` is set, `host_port`
/// is `None`). Host port `0` means ephemeral. The protocol is case insensitive.
///
/// Refused: the empty string, a missing container port, ports outside 0-65535, container
/// port 0, reversed ranges, a host range whose length differs from a container range,
/// a host range starting at 0, unknown protocols, bad IP addresses, and IPv6 host addresses
/// without brackets (`::1:8080:80`).
pub fn parse_publish(s: &str) -> Result<Vec<PortSpec>, PortError> {
    if s.is_empty() {
        return Err(PortError::Empty);
    }

    // Split into (host ip, host port, container[/proto]).
    let (ip_str, host_str, cont_str): (Option<&str>, Option<&str>, &str) =
        if let Some(rest) = s.strip_prefix('[') {
            let Some((ip, after)) = rest.split_once(']') else {
                return Err(PortError::Malformed(s.to_string()));
            };
            let Some(after) = after.strip_prefix(':') else {
                return Err(PortError::Malformed(s.to_string()));
            };
            let Some((host, cont)) = after.split_once(':') else {
                return Err(PortError::Malformed(s.to_string()));
            };
            if cont.contains(':') {
                return Err(PortError::Malformed(s.to_string()));
            }
            if ip.is_empty() {
                return Err(PortError::InvalidIp(ip.to_string()));
            }
            (Some(ip), Some(host), cont)
        } else {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [c] => (None, None, *c),
                [h, c] => (None, Some(*h), *c),
                [ip, h, c] => ((!ip.is_empty()).then_some(*ip), Some(*h), *c),
                _ => return Err(PortError::UnbracketedIpv6(s.to_string())),
            }
        };

    let host_ip = match ip_str {
        None => None,
        Some(ip) => Some(
            ip.parse::<IpAddr>()
                .map_err(|_| PortError::InvalidIp(ip.to_string()))?,
        ),
    };

    let (cont_ports, proto) = split_proto(cont_str)?;
    if cont_ports.is_empty() {
        return Err(PortError::MissingContainerPort(s.to_string()));
    }
    let (clo, chi) = parse_range(cont_ports)?;
    if clo == 0 {
        return Err(PortError::ZeroContainerPort(cont_ports.to_string()));
    }

    let host = match host_str {
        None | Some("") => None,
        Some(h) => {
            let (hlo, hhi) = parse_range(h)?;
            if h.contains('-') && hlo == 0 {
                return Err(PortError::InvalidPort(h.to_string()));
            }
            Some((h, hlo, hhi))
        }
    };

    let spec =
        |host_port: Option<u16>, host_range: Option<(u16, u16)>, container_port: u16| PortSpec {
            host_ip,
            host_port,
            host_range,
            container_port,
            proto,
        };

    match host {
        None => Ok((clo..=chi).map(|c| spec(None, None, c)).collect()),
        // A single host port, or a one-port host range: pair directly; 0 is ephemeral.
        Some((_, hlo, hhi)) if clo == chi && hlo == hhi => {
            Ok(vec![spec((hlo != 0).then_some(hlo), None, clo)])
        }
        // One container port into a host range: one free port of the range.
        Some((_, hlo, hhi)) if clo == chi => Ok(vec![spec(None, Some((hlo, hhi)), clo)]),
        Some((_, hlo, hhi)) if hhi - hlo == chi - clo => Ok((clo..=chi)
            .map(|c| spec(Some(hlo + (c - clo)), None, c))
            .collect()),
        Some((h, _, _)) => Err(PortError::RangeMismatch {
            host: h.to_string(),
            container: cont_ports.to_string(),
        }),
    }
}

/// Parse one `--expose` value (`80`, `80/udp`, `8000-8010`, `8000-8010/tcp`) into its
/// `(port, proto)` list, one entry per port.
pub fn parse_expose(s: &str) -> Result<Vec<(u16, Proto)>, PortError> {
    if s.is_empty() {
        return Err(PortError::Empty);
    }
    let (ports, proto) = split_proto(s)?;
    if ports.is_empty() {
        return Err(PortError::InvalidPort(s.to_string()));
    }
    let (lo, hi) = parse_range(ports)?;
    if lo == 0 {
        return Err(PortError::ZeroContainerPort(ports.to_string()));
    }
    Ok((lo..=hi).map(|p| (p, proto)).collect())
}

/// Parse the text of `net.ipv4.ip_local_port_range` (`"32768\t60999\n"`) into `(lo, hi)`.
/// Refuses anything but two ports with 1 <= lo <= hi.
pub fn parse_port_range(text: &str) -> Result<(u16, u16), PortError> {
    let bad = || PortError::InvalidPortRange(text.trim().to_string());
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [lo, hi] = fields.as_slice() else {
        return Err(bad());
    };
    let lo = parse_port(lo).map_err(|_| bad())?;
    let hi = parse_port(hi).map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// The first port in the inclusive range `[lo, hi]` for which `taken(port)` is false, or
/// `None` if all are taken (or the range is empty, `lo > hi`).
pub fn first_free(lo: u16, hi: u16, taken: impl Fn(u16) -> bool) -> Option<u16> {
    (lo..=hi).find(|&p| !taken(p))
}

/// One line of `docker port` output: `80/tcp -> 0.0.0.0:8080`, with an IPv6 host address in
/// brackets: `80/tcp -> [::1]:8080`.
pub fn format_port_line(
    container_port: u16,
    proto: Proto,
    host_ip: IpAddr,
    host_port: u16,
) -> String {
    format!(
        "{container_port}/{proto} -> {}",
        SocketAddr::new(host_ip, host_port)
    )
}

/// Parse the port filter of `reef port NAME 80/tcp`: `"80"` (TCP) or `"80/udp"`. One port,
/// not 0, no range.
pub fn parse_port_filter(s: &str) -> Result<(u16, Proto), PortError> {
    if s.is_empty() {
        return Err(PortError::Empty);
    }
    let (port, proto) = split_proto(s)?;
    let p = parse_port(port)?;
    if p == 0 {
        return Err(PortError::ZeroContainerPort(port.to_string()));
    }
    Ok((p, proto))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ps(
        host_ip: Option<&str>,
        host_port: Option<u16>,
        host_range: Option<(u16, u16)>,
        container_port: u16,
        proto: Proto,
    ) -> PortSpec {
        PortSpec {
            host_ip: host_ip.map(ip),
            host_port,
            host_range,
            container_port,
            proto,
        }
    }

    use Proto::{Sctp, Tcp, Udp};

    #[test]
    fn proto_display_and_parse() {
        for (p, s) in [(Tcp, "tcp"), (Udp, "udp"), (Sctp, "sctp")] {
            assert_eq!(p.to_string(), s);
            assert_eq!(p.as_str(), s);
            assert_eq!(s.parse::<Proto>().unwrap(), p);
            assert_eq!(s.to_uppercase().parse::<Proto>().unwrap(), p);
        }
        assert_eq!("Udp".parse::<Proto>().unwrap(), Udp);
        for bad in ["icmp", "", "tcp ", "tcp6"] {
            assert_eq!(
                bad.parse::<Proto>(),
                Err(PortError::InvalidProto(bad.to_string()))
            );
        }
    }

    #[test]
    fn proto_serde_is_lowercase() {
        assert_eq!(serde_json::to_string(&Udp).unwrap(), "\"udp\"");
        assert_eq!(serde_json::from_str::<Proto>("\"sctp\"").unwrap(), Sctp);
    }

    #[test]
    fn port_spec_serde_round_trip() {
        let spec = ps(Some("::1"), None, Some((8000, 8009)), 80, Udp);
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<PortSpec>(&json).unwrap(), spec);
    }

    #[test]
    fn publish_single_forms() {
        let cases: Vec<(&str, PortSpec)> = vec![
            ("80", ps(None, None, None, 80, Tcp)),
            ("8080:80", ps(None, Some(8080), None, 80, Tcp)),
            (":80", ps(None, None, None, 80, Tcp)),
            ("0:80", ps(None, None, None, 80, Tcp)),
            ("::80", ps(None, None, None, 80, Tcp)),
            (
                "0.0.0.0:8080:80",
                ps(Some("0.0.0.0"), Some(8080), None, 80, Tcp),
            ),
            (
                "127.0.0.1:8080:80",
                ps(Some("127.0.0.1"), Some(8080), None, 80, Tcp),
            ),
            ("192.0.2.1::80", ps(Some("192.0.2.1"), None, None, 80, Tcp)),
            ("192.0.2.1:0:80", ps(Some("192.0.2.1"), None, None, 80, Tcp)),
            ("[::1]:8080:80", ps(Some("::1"), Some(8080), None, 80, Tcp)),
            ("[::]:8080:80", ps(Some("::"), Some(8080), None, 80, Tcp)),
            ("[::1]::80", ps(Some("::1"), None, None, 80, Tcp)),
            (
                "[2001:db8::1]:443:443/udp",
                ps(Some("2001:db8::1"), Some(443), None, 443, Udp),
            ),
            (
                "[127.0.0.1]:8080:80",
                ps(Some("127.0.0.1"), Some(8080), None, 80, Tcp),
            ),
            ("8080:80/udp", ps(None, Some(8080), None, 80, Udp)),
            ("8080:80/UDP", ps(None, Some(8080), None, 80, Udp)),
            ("80/sctp", ps(None, None, None, 80, Sctp)),
            ("80/tcp", ps(None, None, None, 80, Tcp)),
            ("80/", ps(None, None, None, 80, Tcp)),
            ("65535:65535", ps(None, Some(65535), None, 65535, Tcp)),
            ("1:1", ps(None, Some(1), None, 1, Tcp)),
            ("08080:080", ps(None, Some(8080), None, 80, Tcp)),
            ("8000-8000:80", ps(None, Some(8000), None, 80, Tcp)),
            ("80-80", ps(None, None, None, 80, Tcp)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_publish(input), Ok(vec![want]), "input {input:?}");
        }
    }

    #[test]
    fn publish_range_forms() {
        let cases: Vec<(&str, Vec<PortSpec>)> = vec![
            (
                "8000-8002:80-82",
                vec![
                    ps(None, Some(8000), None, 80, Tcp),
                    ps(None, Some(8001), None, 81, Tcp),
                    ps(None, Some(8002), None, 82, Tcp),
                ],
            ),
            (
                "8000-8009:80",
                vec![ps(None, None, Some((8000, 8009)), 80, Tcp)],
            ),
            (
                "127.0.0.1:8000-8009:80/udp",
                vec![ps(Some("127.0.0.1"), None, Some((8000, 8009)), 80, Udp)],
            ),
            (
                "80-82",
                vec![
                    ps(None, None, None, 80, Tcp),
                    ps(None, None, None, 81, Tcp),
                    ps(None, None, None, 82, Tcp),
                ],
            ),
            (
                "127.0.0.1:8000-8001:80-81",
                vec![
                    ps(Some("127.0.0.1"), Some(8000), None, 80, Tcp),
                    ps(Some("127.0.0.1"), Some(8001), None, 81, Tcp),
                ],
            ),
            (
                "[::1]:8000-8001:80-81/sctp",
                vec![
                    ps(Some("::1"), Some(8000), None, 80, Sctp),
                    ps(Some("::1"), Some(8001), None, 81, Sctp),
                ],
            ),
            (
                "10.0.0.1::80-81/udp",
                vec![
                    ps(Some("10.0.0.1"), None, None, 80, Udp),
                    ps(Some("10.0.0.1"), None, None, 81, Udp),
                ],
            ),
            (
                ":7000-7001",
                vec![
                    ps(None, None, None, 7000, Tcp),
                    ps(None, None, None, 7001, Tcp),
                ],
            ),
            (
                "65534-65535:65534-65535",
                vec![
                    ps(None, Some(65534), None, 65534, Tcp),
                    ps(None, Some(65535), None, 65535, Tcp),
                ],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_publish(input), Ok(want), "input {input:?}");
        }
    }

    #[test]
    fn publish_full_range_expands() {
        let all = parse_publish("1-65535").unwrap();
        assert_eq!(all.len(), 65535);
        assert_eq!(all[0].container_port, 1);
        assert_eq!(all[65534].container_port, 65535);
    }

    #[test]
    fn publish_errors() {
        let s = |x: &str| x.to_string();
        let cases: Vec<(&str, PortError)> = vec![
            ("", PortError::Empty),
            ("99999", PortError::InvalidPort(s("99999"))),
            ("65536", PortError::InvalidPort(s("65536"))),
            ("8080:99999", PortError::InvalidPort(s("99999"))),
            ("99999:80", PortError::InvalidPort(s("99999"))),
            ("http", PortError::InvalidPort(s("http"))),
            ("+80", PortError::InvalidPort(s("+80"))),
            ("-80", PortError::InvalidPort(s("-80"))),
            ("80-", PortError::InvalidPort(s("80-"))),
            ("80-90-100", PortError::InvalidPort(s("80-90-100"))),
            (" 80", PortError::InvalidPort(s(" 80"))),
            ("80-99999", PortError::InvalidPort(s("80-99999"))),
            ("8080:", PortError::MissingContainerPort(s("8080:"))),
            ("8080:/udp", PortError::MissingContainerPort(s("8080:/udp"))),
            ("/tcp", PortError::MissingContainerPort(s("/tcp"))),
            (
                "1.2.3.4:8080:",
                PortError::MissingContainerPort(s("1.2.3.4:8080:")),
            ),
            ("80/icmp", PortError::InvalidProto(s("icmp"))),
            ("8080:80/tcp/udp", PortError::InvalidProto(s("tcp/udp"))),
            ("300.1.1.1:8080:80", PortError::InvalidIp(s("300.1.1.1"))),
            ("localhost:8080:80", PortError::InvalidIp(s("localhost"))),
            ("[::g]:8080:80", PortError::InvalidIp(s("::g"))),
            ("[]:8080:80", PortError::InvalidIp(s(""))),
            (
                "[fe80::1%eth0]:8080:80",
                PortError::InvalidIp(s("fe80::1%eth0")),
            ),
            ("::1:8080:80", PortError::UnbracketedIpv6(s("::1:8080:80"))),
            (
                "2001:db8::1:8080:80",
                PortError::UnbracketedIpv6(s("2001:db8::1:8080:80")),
            ),
            (":::80", PortError::UnbracketedIpv6(s(":::80"))),
            ("1:2:3:4", PortError::UnbracketedIpv6(s("1:2:3:4"))),
            ("[::1]:80", PortError::Malformed(s("[::1]:80"))),
            ("[::1]8080:80", PortError::Malformed(s("[::1]8080:80"))),
            ("[::1:8080:80", PortError::Malformed(s("[::1:8080:80"))),
            ("[::1]:1:2:3", PortError::Malformed(s("[::1]:1:2:3"))),
            ("0", PortError::ZeroContainerPort(s("0"))),
            ("8080:0", PortError::ZeroContainerPort(s("0"))),
            ("0-5", PortError::ZeroContainerPort(s("0-5"))),
            ("89-80", PortError::ReversedRange(s("89-80"))),
            ("8009-8000:80", PortError::ReversedRange(s("8009-8000"))),
            ("0-9:80", PortError::InvalidPort(s("0-9"))),
            (
                "8000-8004:80-89",
                PortError::RangeMismatch {
                    host: s("8000-8004"),
                    container: s("80-89"),
                },
            ),
            (
                "8080:80-81",
                PortError::RangeMismatch {
                    host: s("8080"),
                    container: s("80-81"),
                },
            ),
            (
                "0:80-81",
                PortError::RangeMismatch {
                    host: s("0"),
                    container: s("80-81"),
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_publish(input), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn error_messages_name_the_value() {
        let msg = |s: &str| parse_publish(s).unwrap_err().to_string();
        assert_eq!(msg("99999"), r#"invalid port specification: "99999""#);
        assert_eq!(msg("80/icmp"), r#"invalid proto: "icmp""#);
        assert_eq!(msg("300.1.1.1:80:80"), r#"invalid IP address: "300.1.1.1""#);
        assert_eq!(msg(""), "no port specified: empty string");
        assert!(msg("::1:8080:80").contains("\"::1:8080:80\""));
        assert!(msg("::1:8080:80").contains("brackets"));
        assert!(msg("0").contains("\"0\""));
        assert!(msg("89-80").contains("\"89-80\""));
        let mm = msg("8000-8004:80-89");
        assert!(
            mm.contains("\"80-89\"") && mm.contains("\"8000-8004\""),
            "{mm}"
        );
        assert!(msg("8080:").contains("\"8080:\""));
        assert!(msg("[::1]:80").contains("\"[::1]:80\""));
        assert_eq!(
            parse_port_range("x").unwrap_err().to_string(),
            r#"invalid local port range: "x""#
        );
    }

    #[test]
    fn expose_forms() {
        let cases: Vec<(&str, Vec<(u16, Proto)>)> = vec![
            ("80", vec![(80, Tcp)]),
            ("80/udp", vec![(80, Udp)]),
            ("80/SCTP", vec![(80, Sctp)]),
            ("80/", vec![(80, Tcp)]),
            ("8000-8002", vec![(8000, Tcp), (8001, Tcp), (8002, Tcp)]),
            ("8000-8001/tcp", vec![(8000, Tcp), (8001, Tcp)]),
            ("8000-8001/udp", vec![(8000, Udp), (8001, Udp)]),
            ("53-53/udp", vec![(53, Udp)]),
            ("65535", vec![(65535, Tcp)]),
        ];
        for (input, want) in cases {
            assert_eq!(parse_expose(input), Ok(want), "input {input:?}");
        }
    }

    #[test]
    fn expose_errors() {
        let s = |x: &str| x.to_string();
        let cases: Vec<(&str, PortError)> = vec![
            ("", PortError::Empty),
            ("/udp", PortError::InvalidPort(s("/udp"))),
            ("99999", PortError::InvalidPort(s("99999"))),
            ("8080:80", PortError::InvalidPort(s("8080:80"))),
            ("abc", PortError::InvalidPort(s("abc"))),
            ("80-", PortError::InvalidPort(s("80-"))),
            ("80/icmp", PortError::InvalidProto(s("icmp"))),
            ("0", PortError::ZeroContainerPort(s("0"))),
            ("0-10/udp", PortError::ZeroContainerPort(s("0-10"))),
            ("8010-8000", PortError::ReversedRange(s("8010-8000"))),
        ];
        for (input, want) in cases {
            assert_eq!(parse_expose(input), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn port_range_text() {
        let ok: Vec<(&str, (u16, u16))> = vec![
            ("32768\t60999\n", (32768, 60999)),
            ("32768 60999", (32768, 60999)),
            ("  1024   65535  \n", (1024, 65535)),
            ("5000\t5000\n", (5000, 5000)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_port_range(text), Ok(want), "{text:?}");
        }
        let bad: Vec<(&str, &str)> = vec![
            ("", ""),
            ("\n", ""),
            ("32768", "32768"),
            ("32768\t60999\t1\n", "32768\t60999\t1"),
            ("60999\t32768\n", "60999\t32768"),
            ("0\t100\n", "0\t100"),
            ("32768\t70000\n", "32768\t70000"),
            ("a b", "a b"),
            ("-1 5", "-1 5"),
        ];
        for (text, named) in bad {
            assert_eq!(
                parse_port_range(text),
                Err(PortError::InvalidPortRange(named.to_string())),
                "{text:?}"
            );
        }
    }

    #[test]
    fn first_free_table() {
        let taken = [8000u16, 8001, 8003];
        let cases: Vec<(u16, u16, Option<u16>)> = vec![
            (8000, 8009, Some(8002)),
            (8000, 8001, None),
            (8003, 8003, None),
            (8003, 8004, Some(8004)),
            (7999, 8009, Some(7999)),
            (8005, 8001, None),
        ];
        for (lo, hi, want) in cases {
            assert_eq!(
                first_free(lo, hi, |p| taken.contains(&p)),
                want,
                "{lo}-{hi}"
            );
        }
        assert_eq!(first_free(65535, 65535, |_| false), Some(65535));
        assert_eq!(first_free(1, 65535, |_| true), None);
        assert_eq!(first_free(0, 0, |_| false), Some(0));
    }

    #[test]
    fn port_lines() {
        let cases: Vec<(u16, Proto, &str, u16, &str)> = vec![
            (80, Tcp, "0.0.0.0", 8080, "80/tcp -> 0.0.0.0:8080"),
            (53, Udp, "127.0.0.1", 5353, "53/udp -> 127.0.0.1:5353"),
            (80, Tcp, "::1", 8080, "80/tcp -> [::1]:8080"),
            (80, Tcp, "::", 32768, "80/tcp -> [::]:32768"),
            (9, Sctp, "2001:db8::1", 9, "9/sctp -> [2001:db8::1]:9"),
        ];
        for (cp, proto, host, hp, want) in cases {
            assert_eq!(format_port_line(cp, proto, ip(host), hp), want);
        }
    }

    #[test]
    fn port_filter() {
        let s = |x: &str| x.to_string();
        let ok: Vec<(&str, (u16, Proto))> = vec![
            ("80", (80, Tcp)),
            ("80/tcp", (80, Tcp)),
            ("80/udp", (80, Udp)),
            ("80/SCTP", (80, Sctp)),
            ("65535", (65535, Tcp)),
        ];
        for (input, want) in ok {
            assert_eq!(parse_port_filter(input), Ok(want), "{input:?}");
        }
        let bad: Vec<(&str, PortError)> = vec![
            ("", PortError::Empty),
            ("/tcp", PortError::InvalidPort(s(""))),
            ("99999", PortError::InvalidPort(s("99999"))),
            ("80-81", PortError::InvalidPort(s("80-81"))),
            ("8080:80", PortError::InvalidPort(s("8080:80"))),
            ("http", PortError::InvalidPort(s("http"))),
            ("80/icmp", PortError::InvalidProto(s("icmp"))),
            ("0", PortError::ZeroContainerPort(s("0"))),
            ("0/udp", PortError::ZeroContainerPort(s("0"))),
        ];
        for (input, want) in bad {
            assert_eq!(parse_port_filter(input), Err(want), "{input:?}");
        }
    }
}
