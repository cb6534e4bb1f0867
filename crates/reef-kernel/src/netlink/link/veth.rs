//! veth pairs.

use std::os::fd::AsRawFd;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo as NlLinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use reef_core::names::format_mac;

use crate::netlink::Netlink;
use crate::netns::Netns;
use crate::KernelError;

impl Netlink {
    /// A veth pair: `host` here, carrying the interface alias `alias`, and `peer` created
    /// directly inside `peer_ns` with MAC `peer_mac`; both with `mtu`. `EEXIST` if either
    /// name is taken. If setting the alias fails the pair is deleted again, so an error
    /// leaves nothing behind.
    pub fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_ns: &Netns,
        mtu: u32,
        peer_mac: [u8; 6],
        alias: &str,
    ) -> Result<(), KernelError> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes = vec![
            LinkAttribute::IfName(peer.into()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::Address(peer_mac.to_vec()),
            LinkAttribute::NetNsFd(peer_ns.as_fd().as_raw_fd()),
        ];
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(host.into()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::LinkInfo(vec![
                NlLinkInfo::Kind(InfoKind::Veth),
                NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
            ]),
        ];
        self.change(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| {
                format!(
                    "ip link add {host} mtu {mtu} type veth peer name {peer} address {} netns <fd>",
                    format_mac(peer_mac)
                )
            },
        )?;
        // RTM_NEWLINK ignores IFLA_IFALIAS when it creates a link (only do_setlink applies
        // it; `ip link add X alias Y type veth ...` drops it too), so it takes a second
        // request. Not pipelined with the first: if the create failed, the alias would land
        // on somebody else's link of the same name.
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(host.into()),
            LinkAttribute::IfAlias(alias.into()),
        ];
        let labelled = self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("ip link set {host} alias {alias}")
        });
        if let Err(e) = labelled {
            let _ = self.delete_link(host);
            return Err(e);
        }
        Ok(())
    }
}
