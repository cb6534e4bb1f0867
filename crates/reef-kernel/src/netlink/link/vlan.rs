//! 802.1q VLAN sub-interfaces (Docker's macvlan `parent=eth0.101` creates `eth0.101`).

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVlan, LinkAttribute, LinkInfo as NlLinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::missing_kind;
use crate::netlink::Netlink;
use crate::KernelError;

impl Netlink {
    /// `ip link add link PARENT name NAME type vlan id VLAN_ID`: an 802.1q sub-interface of
    /// `parent` in this namespace, down, with the parent's MTU. `vlan_id` must be 1..=4094
    /// (refused before reaching the kernel otherwise). `ENODEV` if `parent` does not exist,
    /// `EEXIST` if the name is taken (or the parent has that VLAN already). A kernel
    /// without 802.1q support answers `EOPNOTSUPP`, and the error says so: "the kernel has
    /// no 802.1q VLAN support (module 8021q): cannot create NAME".
    pub fn create_vlan(
        &mut self,
        name: &str,
        parent: &str,
        vlan_id: u16,
    ) -> Result<(), KernelError> {
        let op = || format!("ip link add link {parent} name {name} type vlan id {vlan_id}");
        if !(1..=4094).contains(&vlan_id) {
            return Err(KernelError::Invalid {
                op: op(),
                reason: format!("802.1q VLAN id {vlan_id} is out of range 1-4094"),
            });
        }
        let parent_index = self.index_of(parent, &op)?;
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Link(parent_index),
            LinkAttribute::LinkInfo(vec![
                NlLinkInfo::Kind(InfoKind::Vlan),
                NlLinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(vlan_id)])),
            ]),
        ];
        self.change(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &op,
        )
        .map_err(|e| missing_kind(e, "802.1q VLAN", "8021q", name))
    }
}
