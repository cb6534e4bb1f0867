//! Names users and the kernel see: bridge and veth names, MACs, short ids, container names.
//!
//! Docker's conventions wherever a user sees them (`02:42:` MACs, 12-hex short ids), reef's
//! own prefixes on kernel objects so reef can always tell its objects from anyone else's.

use core::net::Ipv4Addr;

/// The default network's bridge (Docker's `docker0`).
pub const DEFAULT_BRIDGE: &str = "reef0";

/// Name of the default network.
pub const DEFAULT_NETWORK: &str = "bridge";

/// Prefix of the interface alias reef writes on every host-side veth it creates:
/// `reef:<endpoint id>`. Reconcile finds reef's veths by it, never by name alone.
pub const VETH_ALIAS_PREFIX: &str = "reef:";

/// Linux's limit on interface names (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Host-side veth name for an endpoint: `veth` + the first 10 hex digits of its id. Ten,
/// not Docker's seven: with seven, two of 1,000 endpoints on a host share a name about
/// once in 500 (the benchmark suite met it, as `File exists` on a start); with ten, about
/// once in two million.
pub fn veth_name(endpoint_id: &str) -> String {
    format!("veth{}", &endpoint_id[..10.min(endpoint_id.len())])
}

/// The interface alias that marks a host-side veth as reef's.
pub fn veth_alias(endpoint_id: &str) -> String {
    format!("{VETH_ALIAS_PREFIX}{endpoint_id}")
}

/// The endpoint id in a reef veth alias, if the alias is reef's.
pub fn endpoint_from_alias(alias: &str) -> Option<&str> {
    alias.strip_prefix(VETH_ALIAS_PREFIX)
}

/// Bridge name of a user-defined network: `br-` + the first 12 hex digits of its id.
pub fn user_bridge_name(network_id: &str) -> String {
    format!("br-{}", &network_id[..12.min(network_id.len())])
}

/// Bridge of an overlay network on each host: `ov-` + the first 12 hex digits of its id.
pub fn overlay_bridge_name(network_id: &str) -> String {
    format!("ov-{}", &network_id[..12.min(network_id.len())])
}

/// VXLAN device of an overlay network on each host: `vx-` + 12 hex digits of its id.
pub fn vxlan_name(network_id: &str) -> String {
    format!("vx-{}", &network_id[..12.min(network_id.len())])
}

/// Interface name inside a container for its `n`th network (`eth0`, `eth1`, ...).
pub fn container_ifname(n: usize) -> String {
    format!("eth{n}")
}

/// The name a container's interface gets between `network disconnect` and its deletion:
/// `x` + its host end's name (`xveth0123456789`, 15 bytes: the most a name may have),
/// unique because the host end's is.
pub fn parked_ifname(host_ifname: &str) -> String {
    format!("x{host_ifname}")
}

/// Docker's MAC for an IPv4 address: `02:42:` followed by the four address bytes.
pub fn mac_from_ipv4(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `aa:bb:cc:dd:ee:ff` form.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse `aa:bb:cc:dd:ee:ff` (or `-` separated). Rejects multicast addresses, which a
/// unicast interface cannot carry.
pub fn parse_mac(s: &str) -> Result<[u8; 6], NameError> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let bad = || NameError::InvalidMac(s.to_string());
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (slot, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return Err(bad());
        }
        *slot = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 {
        return Err(NameError::MulticastMac(s.to_string()));
    }
    Ok(mac)
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn validate_container_name(name: &str) -> Result<(), NameError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(NameError::InvalidContainerName(name.to_string()))
    }
}

/// A valid Linux interface name: 1..=15 bytes, no `/`, whitespace or `:`.
pub fn validate_ifname(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(NameError::InvalidIfname(name.to_string()))
    }
}

/// A candidate id (64 hex) made from 32 random bytes the caller read.
pub fn id_from_bytes(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Errors in user-given names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not a MAC address.
    #[error("invalid MAC address {0:?}: expected six hex bytes like 02:42:ac:11:00:02")]
    InvalidMac(String),
    /// A multicast MAC.
    #[error("invalid MAC address {0:?}: it is a multicast address")]
    MulticastMac(String),
    /// Not a valid container name.
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidContainerName(String),
    /// Not a valid interface name.
    #[error("invalid interface name {0:?}: 1 to 15 characters, no '/', ':' or spaces")]
    InvalidIfname(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_mac_from_address() {
        assert_eq!(
            format_mac(mac_from_ipv4(Ipv4Addr::new(172, 17, 0, 3))),
            "02:42:ac:11:00:03"
        );
    }

    #[test]
    fn mac_round_trip_and_errors() {
        assert_eq!(
            parse_mac("02:42:AC:11:00:02").unwrap(),
            [2, 0x42, 0xac, 0x11, 0, 2]
        );
        assert!(matches!(
            parse_mac("02:42:ac"),
            Err(NameError::InvalidMac(_))
        ));
        assert!(matches!(
            parse_mac("zz:42:ac:11:00:02"),
            Err(NameError::InvalidMac(_))
        ));
        assert!(matches!(
            parse_mac("01:00:5e:00:00:01"),
            Err(NameError::MulticastMac(_))
        ));
    }

    #[test]
    fn names_of_kernel_objects() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(veth_name(id), "veth0123456789");
        assert_eq!(parked_ifname(&veth_name(id)), "xveth0123456789");
        assert!(parked_ifname(&veth_name(id)).len() < 16, "IFNAMSIZ");
        assert_eq!(user_bridge_name(id), "br-0123456789ab");
        assert_eq!(endpoint_from_alias(&veth_alias(id)), Some(id));
        assert_eq!(endpoint_from_alias("something else"), None);
        assert_eq!(container_ifname(1), "eth1");
    }

    #[test]
    fn container_names() {
        assert!(validate_container_name("web-1.a_b").is_ok());
        assert!(validate_container_name("").is_err());
        assert!(validate_container_name("-web").is_err());
        assert!(validate_container_name("we b").is_err());
    }

    #[test]
    fn interface_names() {
        assert!(validate_ifname("br0").is_ok());
        assert!(validate_ifname("a-very-long-name-x").is_err());
        assert!(validate_ifname("a/b").is_err());
    }
}
