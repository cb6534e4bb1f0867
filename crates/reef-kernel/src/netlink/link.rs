//! Links: reading them, and the operations every kind shares (up, delete, rename, MTU,
//! MAC, master). Creating a link is kind-specific and lives in one file per kind below.

use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute, LinkExtentMask, LinkFlags,
    LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use reef_core::names::format_mac;

use super::decode::parse_link;
use super::Netlink;
use crate::KernelError;

mod bridge;
mod dummy;
mod macvlan;
mod veth;
mod vlan;
mod vxlan;

// Message type from <linux/rtnetlink.h>.
const RTM_NEWLINK: u16 = 16;

/// A link as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// `IFLA_INFO_KIND`: `"bridge"`, `"veth"`, ...; `None` for physical devices and `lo`.
    pub kind: Option<String>,
    /// Index of the bridge (or bond) this link is a port of.
    pub master: Option<u32>,
    /// Interface alias (reef marks its veths with one).
    pub alias: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// Hardware address, when it is an Ethernet one.
    pub mac: Option<[u8; 6]>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
}

impl Netlink {
    /// All links (`ip link show`).
    pub fn links(&mut self) -> Result<Vec<LinkInfo>, KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let mut out = Vec::new();
        self.dump(
            RouteNetlinkMessage::GetLink(msg),
            &|| "ip link show".into(),
            &mut |t, p| {
                if t == RTM_NEWLINK {
                    out.push(parse_link(p)?);
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// The link called `name`, or `None` (`ip link show NAME`).
    pub fn link(&mut self, name: &str) -> Result<Option<LinkInfo>, KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let mut found = None;
        let res = self.request(
            RouteNetlinkMessage::GetLink(msg),
            0,
            &|| format!("ip link show {name}"),
            &mut |t, p| {
                if t == RTM_NEWLINK {
                    found = Some(parse_link(p)?);
                }
                Ok(())
            },
        );
        match res {
            Ok(()) => Ok(found),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `ip link set NAME addrgenmode none`: the link gets no IPv6 link-local address when
    /// it comes up; call it while the link is down.
    pub fn set_no_ipv6_addresses(&mut self, name: &str) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
                In6AddrGenMode::None,
            )])]),
        ];
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("ip link set {name} addrgenmode none")
        })
    }

    /// `ip link del NAME` (a veth's peer goes with it). `ENODEV` (see
    /// [`KernelError::is_not_found`]) if there is no such link.
    pub fn delete_link(&mut self, name: &str) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![LinkAttribute::IfName(name.into())];
        self.change(RouteNetlinkMessage::DelLink(msg), 0, &|| {
            format!("ip link del {name}")
        })
    }

    /// `ip link set NAME down && ip link set NAME name PARKED` (a link is renamed only
    /// while down). `ENODEV` if there is no such link.
    pub fn park(&mut self, name: &str, parked: &str) -> Result<(), KernelError> {
        let op = || format!("ip link set {name} down && ip link set {name} name {parked}");
        let index = self.index_of(name, &op)?;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.change_mask = LinkFlags::Up;
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("ip link set {name} down")
        })?;
        self.rename_index(index, name, parked)
    }

    /// `ip link set NAME down nomaster`: take a port off its bridge at once (a fraction of
    /// a millisecond) where deleting it would take tens. `ENODEV` if there is no such link.
    pub fn release(&mut self, name: &str) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Controller(0),
        ];
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("ip link set {name} down nomaster")
        })
    }

    /// `ip link set NAME up`.
    pub fn set_up(&mut self, name: &str) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes = vec![LinkAttribute::IfName(name.into())];
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("ip link set {name} up")
        })
    }

    /// `ip link set NAME master MASTER`.
    pub fn set_master(&mut self, name: &str, master: &str) -> Result<(), KernelError> {
        let op = || format!("ip link set {name} master {master}");
        let master_index = self.index_of(master, &op)?;
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Controller(master_index),
        ];
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &op)
    }

    /// `ip link set NAME address MAC`.
    pub fn set_mac(&mut self, name: &str, mac: [u8; 6]) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Address(mac.to_vec()),
        ];
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("ip link set {name} address {}", format_mac(mac))
        })
    }

    /// `ip link set NAME mtu MTU`.
    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![LinkAttribute::IfName(name.into()), LinkAttribute::Mtu(mtu)];
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("ip link set {name} mtu {mtu}")
        })
    }

    /// `ip link set NAME name NEW` for the link at `index` (which must be down).
    fn rename_index(&mut self, index: u32, name: &str, new: &str) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes = vec![LinkAttribute::IfName(new.into())];
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("ip link set {name} name {new}")
        })
    }

    /// The index of `name`, or an `ENODEV` error attributed to `op`.
    pub(super) fn index_of(
        &mut self,
        name: &str,
        op: &dyn Fn() -> String,
    ) -> Result<u32, KernelError> {
        match self.link(name)? {
            Some(l) => Ok(l.index),
            None => Err(KernelError::Netlink {
                op: op(),
                errno: libc::ENODEV,
                detail: Some(format!("Cannot find device \"{name}\"")),
            }),
        }
    }
}

/// A create request refused because the kernel does not know the link kind: `rtnl_newlink`
/// answers `EOPNOTSUPP` ("Unknown device type") when no driver registered the kind and
/// loading `rtnl-link-KIND` found no module. Say which support is missing, keeping the
/// errno (and the kernel's own words after it).
fn missing_kind(err: KernelError, support: &str, module: &str, name: &str) -> KernelError {
    match err {
        KernelError::Netlink {
            op,
            errno: libc::EOPNOTSUPP,
            detail,
        } if detail
            .as_deref()
            .is_none_or(|d| d.contains("Unknown device type")) =>
        {
            let mut text = format!(
                "the kernel has no {support} support (module {module}): cannot create {name}"
            );
            if let Some(d) = detail {
                text.push_str("; kernel said: ");
                text.push_str(&d);
            }
            KernelError::Netlink {
                op,
                errno: libc::EOPNOTSUPP,
                detail: Some(text),
            }
        }
        other => other,
    }
}
