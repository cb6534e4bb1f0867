//! Interface addresses.

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressHeader, AddressMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::decode::parse_addr;
use super::{family, Netlink};
use crate::KernelError;

// Message type from <linux/rtnetlink.h>.
const RTM_NEWADDR: u16 = 20;

/// An interface address as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    /// Interface index.
    pub index: u32,
    /// Address and prefix length.
    pub addr: IpNet,
}

impl Netlink {
    /// All IPv4 and IPv6 addresses (`ip addr show`).
    pub fn addrs(&mut self) -> Result<Vec<AddrInfo>, KernelError> {
        let mut out = Vec::new();
        self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            &|| "ip addr show".into(),
            &mut |t, p| {
                if t == RTM_NEWADDR {
                    if let Some(a) = parse_addr(p)? {
                        out.push(a);
                    }
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// `ip addr add ADDR dev NAME` (with the broadcast address for IPv4, as
    /// `ip addr add ... brd +`). `EEXIST` if the link has it already.
    pub fn add_addr(&mut self, name: &str, addr: IpNet) -> Result<(), KernelError> {
        let op = || format!("ip addr add {addr} dev {name}");
        let index = self.index_of(name, &op)?;
        let mut msg = addr_message(index, addr);
        if let IpNet::V4(v4) = addr {
            if v4.prefix_len() < 31 {
                msg.attributes
                    .push(AddressAttribute::Broadcast(v4.broadcast()));
            }
        }
        self.change(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &op,
        )
    }

    /// `ip addr del ADDR dev NAME`. `EADDRNOTAVAIL` (see [`KernelError::is_not_found`]) if
    /// the link does not have it.
    pub fn del_addr(&mut self, name: &str, addr: IpNet) -> Result<(), KernelError> {
        let op = || format!("ip addr del {addr} dev {name}");
        let index = self.index_of(name, &op)?;
        self.change(
            RouteNetlinkMessage::DelAddress(addr_message(index, addr)),
            0,
            &op,
        )
    }
}

fn addr_message(index: u32, addr: IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header = AddressHeader {
        family: family(addr.addr()),
        prefix_len: addr.prefix_len(),
        index,
        ..AddressHeader::default()
    };
    msg.attributes = vec![
        AddressAttribute::Local(addr.addr()),
        AddressAttribute::Address(addr.addr()),
    ];
    msg
}
