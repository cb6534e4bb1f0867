//! dummy links: a device with nothing behind it, the parent of an internal macvlan network
//! (as Docker's `dm-<id>`).

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo as NlLinkInfo, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::missing_kind;
use crate::netlink::Netlink;
use crate::KernelError;

impl Netlink {
    /// `ip link add NAME type dummy`, down. A kernel without the dummy driver answers
    /// `EOPNOTSUPP`, and the error says so.
    pub fn create_dummy(&mut self, name: &str) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(InfoKind::Dummy)]),
        ];
        self.change(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("ip link add {name} type dummy"),
        )
        .map_err(|e| missing_kind(e, "dummy interface", "dummy", name))
    }
}
