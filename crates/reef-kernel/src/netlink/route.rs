//! Routes of the main table.

use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::decode::parse_route;
use super::{family, Netlink};
use crate::KernelError;

// Message type from <linux/rtnetlink.h>.
const RTM_NEWROUTE: u16 = 24;

/// A unicast route of the main table as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// Destination (`0.0.0.0/0` or `::/0` for a default route).
    pub dst: IpNet,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
}

impl Netlink {
    /// The unicast routes of the main table, IPv4 and IPv6 (`ip route show table main`).
    pub fn routes(&mut self) -> Result<Vec<RouteInfo>, KernelError> {
        let mut out = Vec::new();
        self.dump(
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            &|| "ip route show table main".into(),
            &mut |t, p| {
                if t == RTM_NEWROUTE {
                    if let Some(r) = parse_route(p)? {
                        out.push(r);
                    }
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// `ip route add DST [via GW] dev DEV` in the main table (`proto boot`, scope link when
    /// there is no gateway). `EEXIST` if the route exists.
    pub fn add_route(
        &mut self,
        dst: IpNet,
        via: Option<IpAddr>,
        dev: &str,
    ) -> Result<(), KernelError> {
        let op = || {
            let mut s = String::from("ip route add ");
            if dst.prefix_len() == 0 {
                s.push_str("default");
            } else {
                let _ = write!(s, "{dst}");
            }
            if let Some(gw) = via {
                let _ = write!(s, " via {gw}");
            }
            let _ = write!(s, " dev {dev}");
            s
        };
        if let Some(gw) = via {
            if gw.is_ipv4() != matches!(dst, IpNet::V4(_)) {
                return Err(KernelError::Invalid {
                    op: op(),
                    reason: "gateway and destination are of different address families".into(),
                });
            }
        }
        let index = self.index_of(dev, &op)?;
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(dst.addr());
        msg.header.destination_prefix_length = dst.prefix_len();
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = if via.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        msg.header.kind = RouteType::Unicast;
        if dst.prefix_len() > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(
                    dst.network(),
                )));
        }
        if let Some(gw) = via {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        msg.attributes.push(RouteAttribute::Oif(index));
        self.change(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &op,
        )
    }
}
