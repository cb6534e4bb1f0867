//! VXLAN devices: the overlay's tunnel end on each host. Created with learning off and the
//! ARP proxy on: every entry is programmed from the cluster store, nothing is flooded.

use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo as NlLinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::missing_kind;
use crate::netlink::Netlink;
use crate::KernelError;

impl Netlink {
    /// `ip link add NAME type vxlan id VNI local LOCAL dev UNDERLAY dstport PORT nolearning
    /// proxy mtu MTU`, down. `ENODEV` if `underlay` does not exist, `EEXIST` if `name` or
    /// another device with this VNI and port does.
    pub fn create_vxlan(
        &mut self,
        name: &str,
        vni: u32,
        local: Ipv4Addr,
        underlay: &str,
        port: u16,
        mtu: u32,
    ) -> Result<(), KernelError> {
        let op = || {
            format!(
                "ip link add {name} type vxlan id {vni} local {local} dev {underlay} \
                 dstport {port} nolearning proxy mtu {mtu}"
            )
        };
        let link = self.index_of(underlay, &op)?;
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::LinkInfo(vec![
                NlLinkInfo::Kind(InfoKind::Vxlan),
                NlLinkInfo::Data(InfoData::Vxlan(vec![
                    InfoVxlan::Id(vni),
                    InfoVxlan::Local(local),
                    InfoVxlan::Link(link),
                    // Host order here: the attribute is written big-endian.
                    InfoVxlan::Port(port),
                    InfoVxlan::Learning(false),
                    InfoVxlan::Proxy(true),
                ])),
            ]),
        ];
        self.change(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &op,
        )
        .map_err(|e| missing_kind(e, "VXLAN", "vxlan", name))
    }
}
