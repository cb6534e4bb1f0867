//! Bridges and their ports.

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoBridgePort, InfoKind, InfoPortData, InfoPortKind, LinkAttribute, LinkInfo as NlLinkInfo,
    LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::netlink::Netlink;
use crate::KernelError;

impl Netlink {
    /// `ip link add NAME type bridge mtu MTU`. `EEXIST` if the name is taken.
    pub fn create_bridge(&mut self, name: &str, mtu: u32) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(InfoKind::Bridge)]),
        ];
        self.change(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("ip link add {name} type bridge mtu {mtu}"),
        )
    }

    /// `ip link set NAME type bridge_slave hairpin on|off`: let a bridge port send a frame back
    /// out the port it came in on. A container reaching its own published port through the
    /// host address needs it: with br_netfilter the DNAT happens on the bridge path and the
    /// frame's new destination sits behind its ingress port. The port must be enslaved.
    pub fn set_hairpin(&mut self, name: &str, on: bool) -> Result<(), KernelError> {
        let op = || {
            format!(
                "ip link set {name} type bridge_slave hairpin {}",
                if on { "on" } else { "off" }
            )
        };
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::LinkInfo(vec![
                NlLinkInfo::PortKind(InfoPortKind::Bridge),
                NlLinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                    on,
                )])),
            ]),
        ];
        // Port settings go through NEWLINK on an existing link (as `ip` does), not SETLINK.
        self.change(RouteNetlinkMessage::NewLink(msg), 0, &op)
    }
}
