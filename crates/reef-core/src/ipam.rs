//! IP address management: picking a free subnet for a new network and a free address for a
//! new endpoint.
//!
//! Docker's rules: subnets come from its default local pools in order, skipping any that
//! overlap what the host or other networks already use; addresses are handed out lowest
//! first from the network's range (`--fixed-cidr`, `--ip-range`) or its whole subnet, never
//! the subnet's network or broadcast address nor a reserved one (gateway, bridge address).
//! The caller passes in what is already taken; nothing here remembers anything.

use core::net::Ipv4Addr;
use std::collections::BTreeSet;

use ipnet::Ipv4Net;

/// Docker's default local pools, in order: 172.17.0.0/16 .. 172.31.0.0/16, then
/// 192.168.0.0/20, 192.168.16.0/20, ... 192.168.240.0/20.
pub fn default_pools() -> Vec<Ipv4Net> {
    let b = (17..=31).map(|second| net(Ipv4Addr::new(172, second, 0, 0), 16));
    let c = (0..16).map(|i| net(Ipv4Addr::new(192, 168, i * 16, 0), 20));
    b.chain(c).collect()
}

/// First default pool that overlaps none of `in_use` (host addresses' networks, host
/// routes, other networks' subnets). [`IpamError::PoolsExhausted`] when none is free.
pub fn choose_subnet(in_use: &[Ipv4Net]) -> Result<Ipv4Net, IpamError> {
    default_pools()
        .into_iter()
        .find(|pool| !in_use.iter().any(|used| overlaps(*pool, *used)))
        .ok_or(IpamError::PoolsExhausted)
}

/// The gateway Docker picks for a subnet: its first host address (x.x.x.1 for a /16).
/// A /31 or /32 has no network address to skip, so its first address is returned.
pub fn first_host(subnet: Ipv4Net) -> Ipv4Addr {
    let network = u32::from(subnet.network());
    if subnet.prefix_len() >= 31 {
        Ipv4Addr::from(network)
    } else {
        Ipv4Addr::from(network + 1)
    }
}

/// True when two networks overlap. CIDR blocks are either disjoint or nested, so one must
/// contain the other's first address.
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Where container addresses come from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AddressSpace {
    /// The network's subnet.
    pub subnet: Ipv4Net,
    /// The sub-range addresses are handed out from; the whole subnet when `None`.
    pub range: Option<Ipv4Net>,
    /// Addresses never handed out: gateway, bridge address, ...
    pub reserved: Vec<Ipv4Addr>,
}

impl AddressSpace {
    /// Validate a space: range must lie inside subnet, reserved addresses inside subnet,
    /// subnet prefix <= 30. Subnet and range are normalised to their network addresses.
    pub fn new(
        subnet: Ipv4Net,
        range: Option<Ipv4Net>,
        reserved: Vec<Ipv4Addr>,
    ) -> Result<Self, IpamError> {
        let subnet = subnet.trunc();
        if subnet.prefix_len() > 30 {
            return Err(IpamError::SubnetTooSmall { subnet });
        }
        let range = range.map(|r| r.trunc());
        if let Some(range) = range {
            if !subnet.contains(&range) {
                return Err(IpamError::RangeOutsideSubnet { range, subnet });
            }
        }
        if let Some(&ip) = reserved.iter().find(|ip| !subnet.contains(*ip)) {
            return Err(IpamError::ReservedOutsideSubnet { ip, subnet });
        }
        Ok(AddressSpace {
            subnet,
            range,
            reserved,
        })
    }

    /// The block addresses are handed out from: the range, else the subnet.
    pub fn pool(&self) -> Ipv4Net {
        self.range.unwrap_or(self.subnet)
    }

    /// Lowest free address of the range (or the subnet), never the subnet's network or
    /// broadcast address, never a reserved one, never one in `allocated`.
    /// With `requested`: that exact address, or an error saying why not.
    /// [`IpamError::Exhausted`] when none is left.
    pub fn allocate(
        &self,
        allocated: &BTreeSet<Ipv4Addr>,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = requested {
            self.check_requested(allocated, ip)?;
            return Ok(ip);
        }
        let pool = self.pool();
        // Only the subnet's own network and broadcast addresses are excluded, not the
        // range's: Docker gives 172.16.32.64 first for --fixed-cidr 172.16.32.64/26.
        let start = u32::from(pool.network()).max(u32::from(self.subnet.network()) + 1);
        let end =
            u32::from(pool.broadcast()).min(u32::from(self.subnet.broadcast()).saturating_sub(1));
        let exhausted = IpamError::Exhausted { range: pool };
        if start > end {
            return Err(exhausted);
        }
        let mut reserved: Vec<u32> = self
            .reserved
            .iter()
            .map(|&ip| u32::from(ip))
            .filter(|ip| (start..=end).contains(ip))
            .collect();
        reserved.sort_unstable();
        // Merge-walk the two sorted taken lists; the first candidate neither holds is free.
        // Cost is linear in the addresses taken below the answer, with no per-candidate lookup.
        let mut taken_alloc = allocated
            .range(Ipv4Addr::from(start)..=Ipv4Addr::from(end))
            .map(|&ip| u32::from(ip))
            .peekable();
        let mut taken_res = reserved.into_iter().peekable();
        let mut candidate = u64::from(start);
        while candidate <= u64::from(end) {
            while taken_alloc.next_if(|&t| u64::from(t) < candidate).is_some() {}
            while taken_res.next_if(|&t| u64::from(t) < candidate).is_some() {}
            let hit = taken_alloc
                .peek()
                .is_some_and(|&t| u64::from(t) == candidate)
                || taken_res.peek().is_some_and(|&t| u64::from(t) == candidate);
            if !hit {
                // In range: candidate <= end, a u32.
                return Ok(Ipv4Addr::from(candidate as u32));
            }
            candidate += 1;
        }
        Err(exhausted)
    }

    fn check_requested(
        &self,
        allocated: &BTreeSet<Ipv4Addr>,
        ip: Ipv4Addr,
    ) -> Result<(), IpamError> {
        let subnet = self.subnet;
        if !subnet.contains(&ip) {
            return Err(IpamError::NotInSubnet { ip, subnet });
        }
        if let Some(range) = self.range {
            if !range.contains(&ip) {
                return Err(IpamError::NotInRange { ip, range });
            }
        }
        if ip == subnet.network() || ip == subnet.broadcast() {
            return Err(IpamError::NotAHostAddress { ip, subnet });
        }
        if self.reserved.contains(&ip) {
            return Err(IpamError::Reserved { ip });
        }
        if allocated.contains(&ip) {
            return Err(IpamError::InUse { ip });
        }
        Ok(())
    }
}

fn net(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
    // Only called with literal prefixes <= 32.
    Ipv4Net::new(addr, prefix).expect("prefix length is at most 32")
}

/// Errors choosing subnets and addresses. Messages are shown to users as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// Every default pool overlaps something in use.
    #[error("all default address pools (172.17.0.0/16 to 172.31.0.0/16, 192.168.0.0/20 to 192.168.240.0/20) overlap networks in use; give the network an explicit --subnet")]
    PoolsExhausted,
    /// The subnet is too small to hold a gateway and a container.
    #[error("subnet {subnet} is too small: a network needs a /30 or larger")]
    SubnetTooSmall {
        /// The subnet.
        subnet: Ipv4Net,
    },
    /// The range is not inside the subnet.
    #[error("ip range {range} is not inside subnet {subnet}")]
    RangeOutsideSubnet {
        /// The range.
        range: Ipv4Net,
        /// The subnet.
        subnet: Ipv4Net,
    },
    /// A reserved address (gateway, ...) is not inside the subnet.
    #[error("address {ip} is not inside subnet {subnet}")]
    ReservedOutsideSubnet {
        /// The address.
        ip: Ipv4Addr,
        /// The subnet.
        subnet: Ipv4Net,
    },
    /// The requested address is not in the network's subnet.
    #[error("address {ip} is not in the network's subnet {subnet}")]
    NotInSubnet {
        /// The address.
        ip: Ipv4Addr,
        /// The subnet.
        subnet: Ipv4Net,
    },
    /// The requested address is outside the range addresses are handed out from.
    #[error("address {ip} is outside the network's ip range {range}")]
    NotInRange {
        /// The address.
        ip: Ipv4Addr,
        /// The range.
        range: Ipv4Net,
    },
    /// The requested address is the subnet's network or broadcast address.
    #[error("address {ip} is the network or broadcast address of {subnet}, not a host address")]
    NotAHostAddress {
        /// The address.
        ip: Ipv4Addr,
        /// The subnet.
        subnet: Ipv4Net,
    },
    /// The requested address is reserved (gateway, bridge address).
    #[error("address {ip} is reserved for the network's gateway or bridge")]
    Reserved {
        /// The address.
        ip: Ipv4Addr,
    },
    /// The requested address is held by another endpoint.
    #[error("address {ip} is already in use")]
    InUse {
        /// The address.
        ip: Ipv4Addr,
    },
    /// No address is left.
    #[error("no available addresses left in {range}")]
    Exhausted {
        /// The range (or subnet) that is full.
        range: Ipv4Net,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn set(ips: &[&str]) -> BTreeSet<Ipv4Addr> {
        ips.iter().map(|s| ip(s)).collect()
    }

    #[test]
    fn docker_default_pools_in_order() {
        let pools = default_pools();
        assert_eq!(pools.len(), 31);
        assert_eq!(pools[0], n("172.17.0.0/16"));
        assert_eq!(pools[14], n("172.31.0.0/16"));
        assert_eq!(pools[15], n("192.168.0.0/20"));
        assert_eq!(pools[16], n("192.168.16.0/20"));
        assert_eq!(pools[30], n("192.168.240.0/20"));
        for (i, a) in pools.iter().enumerate() {
            for b in &pools[i + 1..] {
                assert!(!overlaps(*a, *b), "{a} {b}");
            }
        }
    }

    #[test]
    fn choose_subnet_skips_overlaps() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "172.17.0.0/16"),
            (&["172.17.0.1/16"], "172.18.0.0/16"),
            // A host route inside a pool disqualifies the whole pool.
            (&["172.17.5.0/24", "172.18.0.9/32"], "172.19.0.0/16"),
            // A big block covering many pools.
            (&["172.16.0.0/12"], "192.168.0.0/20"),
            (&["172.16.0.0/12", "192.168.0.0/19"], "192.168.32.0/20"),
            // Unrelated networks change nothing.
            (&["10.0.0.0/8", "192.169.0.0/16"], "172.17.0.0/16"),
        ];
        for (used, want) in cases {
            let used: Vec<Ipv4Net> = used.iter().map(|s| n(s)).collect();
            assert_eq!(choose_subnet(&used).unwrap(), n(want), "{used:?}");
        }
    }

    #[test]
    fn choose_subnet_exhausted() {
        let used = [n("172.16.0.0/12"), n("192.168.0.0/16")];
        assert_eq!(choose_subnet(&used), Err(IpamError::PoolsExhausted));
        assert_eq!(
            choose_subnet(&[n("0.0.0.0/0")]),
            Err(IpamError::PoolsExhausted)
        );
    }

    #[test]
    fn first_hosts() {
        for (subnet, want) in [
            ("172.17.0.0/16", "172.17.0.1"),
            ("172.17.5.9/16", "172.17.0.1"),
            ("192.168.16.0/20", "192.168.16.1"),
            ("10.0.0.4/30", "10.0.0.5"),
            ("10.0.0.4/31", "10.0.0.4"),
            ("10.0.0.4/32", "10.0.0.4"),
        ] {
            assert_eq!(first_host(n(subnet)), ip(want), "{subnet}");
        }
    }

    #[test]
    fn overlap_table() {
        for (a, b, want) in [
            ("10.0.0.0/8", "10.1.0.0/16", true),
            ("10.1.0.0/16", "10.0.0.0/8", true),
            ("10.0.0.0/24", "10.0.0.0/24", true),
            ("10.0.0.0/24", "10.0.1.0/24", false),
            ("10.0.0.5/24", "10.0.0.200/32", true),
            ("10.0.0.0/25", "10.0.0.128/25", false),
            ("0.0.0.0/0", "1.2.3.4/32", true),
        ] {
            assert_eq!(overlaps(n(a), n(b)), want, "{a} {b}");
        }
    }

    #[test]
    fn new_validates() {
        // (subnet, range, reserved, expected error)
        type Case<'a> = (&'a str, Option<&'a str>, &'a [&'a str], Option<IpamError>);
        let cases: &[Case] = &[
            ("172.17.0.0/16", None, &["172.17.0.1"], None),
            (
                "172.16.32.0/24",
                Some("172.16.32.64/26"),
                &["172.16.32.1"],
                None,
            ),
            ("10.0.0.0/30", None, &[], None),
            (
                "10.0.0.0/31",
                None,
                &[],
                Some(IpamError::SubnetTooSmall {
                    subnet: n("10.0.0.0/31"),
                }),
            ),
            (
                "10.0.0.0/24",
                Some("10.0.1.0/26"),
                &[],
                Some(IpamError::RangeOutsideSubnet {
                    range: n("10.0.1.0/26"),
                    subnet: n("10.0.0.0/24"),
                }),
            ),
            (
                "10.0.0.0/24",
                Some("10.0.0.0/23"),
                &[],
                Some(IpamError::RangeOutsideSubnet {
                    range: n("10.0.0.0/23"),
                    subnet: n("10.0.0.0/24"),
                }),
            ),
            (
                "10.0.0.0/24",
                None,
                &["10.0.0.1", "10.0.9.1"],
                Some(IpamError::ReservedOutsideSubnet {
                    ip: ip("10.0.9.1"),
                    subnet: n("10.0.0.0/24"),
                }),
            ),
        ];
        for (subnet, range, reserved, want) in cases {
            let got = AddressSpace::new(
                n(subnet),
                range.map(n),
                reserved.iter().map(|s| ip(s)).collect(),
            );
            match want {
                None => assert!(got.is_ok(), "{subnet}: {got:?}"),
                Some(e) => assert_eq!(got.unwrap_err(), *e, "{subnet}"),
            }
        }
    }

    #[test]
    fn new_normalises() {
        let s = AddressSpace::new(n("10.0.0.7/24"), Some(n("10.0.0.70/26")), vec![]).unwrap();
        assert_eq!(s.subnet, n("10.0.0.0/24"));
        assert_eq!(s.range, Some(n("10.0.0.64/26")));
    }

    #[test]
    fn allocate_lowest_free() {
        struct Case {
            subnet: &'static str,
            range: Option<&'static str>,
            reserved: &'static [&'static str],
            allocated: &'static [&'static str],
            want: Result<&'static str, IpamError>,
        }
        let cases = [
            Case {
                subnet: "172.17.0.0/16",
                range: None,
                reserved: &["172.17.0.1"],
                allocated: &[],
                want: Ok("172.17.0.2"),
            },
            Case {
                subnet: "172.17.0.0/16",
                range: None,
                reserved: &["172.17.0.1"],
                allocated: &["172.17.0.2", "172.17.0.3", "172.17.0.5"],
                want: Ok("172.17.0.4"),
            },
            Case {
                // Docker's documented example: the range's own first address is handed out.
                subnet: "172.16.32.0/24",
                range: Some("172.16.32.64/26"),
                reserved: &["172.16.32.1"],
                allocated: &[],
                want: Ok("172.16.32.64"),
            },
            Case {
                // A range at the start of the subnet still skips the network address.
                subnet: "10.0.0.0/24",
                range: Some("10.0.0.0/25"),
                reserved: &[],
                allocated: &[],
                want: Ok("10.0.0.1"),
            },
            Case {
                // Reserved address inside the range is skipped.
                subnet: "10.0.0.0/24",
                range: Some("10.0.0.128/25"),
                reserved: &["10.0.0.128", "10.0.0.1"],
                allocated: &["10.0.0.129"],
                want: Ok("10.0.0.130"),
            },
            Case {
                // Allocations outside the range do not matter.
                subnet: "10.0.0.0/24",
                range: Some("10.0.0.128/25"),
                reserved: &[],
                allocated: &["10.0.0.2", "10.0.0.127"],
                want: Ok("10.0.0.128"),
            },
            Case {
                // A range at the end of the subnet never yields the broadcast address.
                subnet: "10.0.0.0/24",
                range: Some("10.0.0.252/30"),
                reserved: &[],
                allocated: &["10.0.0.252", "10.0.0.253"],
                want: Ok("10.0.0.254"),
            },
            Case {
                subnet: "10.0.0.0/24",
                range: Some("10.0.0.252/30"),
                reserved: &[],
                allocated: &["10.0.0.252", "10.0.0.253", "10.0.0.254"],
                want: Err(IpamError::Exhausted {
                    range: n("10.0.0.252/30"),
                }),
            },
            Case {
                subnet: "10.0.0.0/30",
                range: None,
                reserved: &["10.0.0.1"],
                allocated: &[],
                want: Ok("10.0.0.2"),
            },
            Case {
                subnet: "10.0.0.0/30",
                range: None,
                reserved: &["10.0.0.1"],
                allocated: &["10.0.0.2"],
                want: Err(IpamError::Exhausted {
                    range: n("10.0.0.0/30"),
                }),
            },
            Case {
                // Subnet at the very top of the address space: no overflow.
                subnet: "255.255.255.252/30",
                range: None,
                reserved: &[],
                allocated: &["255.255.255.253"],
                want: Ok("255.255.255.254"),
            },
            Case {
                subnet: "0.0.0.0/30",
                range: None,
                reserved: &[],
                allocated: &[],
                want: Ok("0.0.0.1"),
            },
        ];
        for c in cases {
            let space = AddressSpace::new(
                n(c.subnet),
                c.range.map(n),
                c.reserved.iter().map(|s| ip(s)).collect(),
            )
            .unwrap();
            let got = space.allocate(&set(c.allocated), None);
            assert_eq!(
                got,
                c.want.map(ip),
                "{} {:?} {:?}",
                c.subnet,
                c.range,
                c.allocated
            );
        }
    }

    #[test]
    fn allocate_requested() {
        let space = AddressSpace::new(
            n("172.16.32.0/24"),
            Some(n("172.16.32.64/26")),
            vec![ip("172.16.32.1"), ip("172.16.32.70")],
        )
        .unwrap();
        let allocated = set(&["172.16.32.65"]);
        let cases: &[(&str, Result<&str, IpamError>)] = &[
            ("172.16.32.66", Ok("172.16.32.66")),
            ("172.16.32.64", Ok("172.16.32.64")),
            ("172.16.32.127", Ok("172.16.32.127")),
            (
                "10.0.0.1",
                Err(IpamError::NotInSubnet {
                    ip: ip("10.0.0.1"),
                    subnet: n("172.16.32.0/24"),
                }),
            ),
            (
                "172.16.32.5",
                Err(IpamError::NotInRange {
                    ip: ip("172.16.32.5"),
                    range: n("172.16.32.64/26"),
                }),
            ),
            (
                "172.16.32.70",
                Err(IpamError::Reserved {
                    ip: ip("172.16.32.70"),
                }),
            ),
            (
                "172.16.32.65",
                Err(IpamError::InUse {
                    ip: ip("172.16.32.65"),
                }),
            ),
        ];
        for (req, want) in cases {
            assert_eq!(
                space.allocate(&allocated, Some(ip(req))),
                want.clone().map(ip),
                "{req}"
            );
        }

        let whole = AddressSpace::new(n("10.0.0.0/24"), None, vec![]).unwrap();
        for req in ["10.0.0.0", "10.0.0.255"] {
            assert_eq!(
                whole.allocate(&BTreeSet::new(), Some(ip(req))),
                Err(IpamError::NotAHostAddress {
                    ip: ip(req),
                    subnet: n("10.0.0.0/24")
                })
            );
        }
    }

    #[test]
    fn fill_a_subnet_then_exhaust() {
        let space = AddressSpace::new(n("10.9.0.0/24"), None, vec![ip("10.9.0.1")]).unwrap();
        let mut allocated = BTreeSet::new();
        for i in 2..=254u8 {
            let got = space.allocate(&allocated, None).unwrap();
            assert_eq!(got, Ipv4Addr::new(10, 9, 0, i));
            allocated.insert(got);
        }
        assert_eq!(
            space.allocate(&allocated, None),
            Err(IpamError::Exhausted {
                range: n("10.9.0.0/24")
            })
        );
        // Freeing one makes exactly that one available again.
        allocated.remove(&ip("10.9.0.77"));
        assert_eq!(space.allocate(&allocated, None), Ok(ip("10.9.0.77")));
    }

    #[test]
    fn allocate_with_ten_thousand_taken() {
        let space = AddressSpace::new(n("172.17.0.0/16"), None, vec![ip("172.17.0.1")]).unwrap();
        let base = u32::from(ip("172.17.0.2"));
        let mut allocated: BTreeSet<Ipv4Addr> =
            (0..10_000).map(|i| Ipv4Addr::from(base + i)).collect();
        assert_eq!(
            space.allocate(&allocated, None),
            Ok(Ipv4Addr::from(base + 10_000))
        );
        allocated.remove(&Ipv4Addr::from(base + 5_000));
        assert_eq!(
            space.allocate(&allocated, None),
            Ok(Ipv4Addr::from(base + 5_000))
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            IpamError::InUse { ip: ip("10.0.0.2") }.to_string(),
            "address 10.0.0.2 is already in use"
        );
        assert_eq!(
            IpamError::Exhausted {
                range: n("10.0.0.0/30")
            }
            .to_string(),
            "no available addresses left in 10.0.0.0/30"
        );
    }
}
