//! macvlan links: a second MAC address on a parent device, created straight into a
//! container's namespace (Docker's `macvlan` driver).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkInfo as NlLinkInfo, LinkMessage,
    MacVlanMode,
};
use netlink_packet_route::RouteNetlinkMessage;
use reef_core::model::MacvlanMode;
use reef_core::names::format_mac;

use super::missing_kind;
use crate::netlink::Netlink;
use crate::netns::Netns;
use crate::KernelError;

/// ` mtu N` of the `ip` command an error names, when an MTU is set.
fn mtu_words(mtu: Option<u32>) -> String {
    mtu.map(|m| format!(" mtu {m}")).unwrap_or_default()
}

/// The kernel's word for a mode.
fn to_netlink(mode: MacvlanMode) -> MacVlanMode {
    match mode {
        MacvlanMode::Bridge => MacVlanMode::Bridge,
        MacvlanMode::Private => MacVlanMode::Private,
        MacvlanMode::Vepa => MacVlanMode::Vepa,
        MacvlanMode::Passthru => MacVlanMode::Passthrough,
    }
}

/// Names for the temporary-name fallback of [`Netlink::create_macvlan`].
static TMP_SERIAL: AtomicU32 = AtomicU32::new(0);

impl Netlink {
    /// `ip link add NAME link PARENT address MAC mtu MTU netns <fd> type macvlan mode MODE`:
    /// a macvlan link on `parent` (a link of this socket's namespace) created directly
    /// inside `peer_ns`, down. `ENODEV` if `parent` does not exist, `EEXIST` if `peer_ns`
    /// has a link called `name`, `EINVAL` if `mtu` exceeds the parent's or (passthru) the
    /// parent has a macvlan already. In passthru mode the kernel gives the link the
    /// parent's MAC instead of `mac`.
    ///
    /// Older kernels (this changed with the rtnetlink netns rework of about 6.14) also look
    /// `name` up in *this* namespace and answer `EEXIST` when it exists here (typically
    /// `eth0` on a host whose uplink is `eth0`).
    /// Then the link is created under a temporary name and renamed inside `peer_ns`, as
    /// netavark does; on failure nothing is left behind.
    pub fn create_macvlan(
        &mut self,
        name: &str,
        parent: &str,
        mode: MacvlanMode,
        peer_ns: &Netns,
        mac: [u8; 6],
        mtu: Option<u32>,
    ) -> Result<(), KernelError> {
        let op = || {
            format!(
                "ip link add {name} link {parent} address {}{} netns <fd> type macvlan mode {mode}",
                format_mac(mac),
                mtu_words(mtu)
            )
        };
        let parent_index = self.index_of(parent, &op)?;
        let first = self.new_macvlan(name, parent_index, mode, peer_ns, mac, mtu, &op);
        match first {
            Err(e) if e.is_exists() && self.link(name)?.is_some() => {
                self.create_macvlan_renamed(name, parent, parent_index, mode, peer_ns, mac, mtu, e)
            }
            other => other.map_err(|e| missing_kind(e, "macvlan", "macvlan", name)),
        }
    }

    /// The fallback of [`Netlink::create_macvlan`]: create as a temporary name that is
    /// free here, then rename it inside `peer_ns`. `exists` is the first attempt's error,
    /// returned when `peer_ns` turns out to have `name` too.
    #[allow(clippy::too_many_arguments)]
    fn create_macvlan_renamed(
        &mut self,
        name: &str,
        parent: &str,
        parent_index: u32,
        mode: MacvlanMode,
        peer_ns: &Netns,
        mac: [u8; 6],
        mtu: Option<u32>,
        exists: KernelError,
    ) -> Result<(), KernelError> {
        let serial = TMP_SERIAL.fetch_add(1, Ordering::Relaxed);
        // At most 4 + 6 + 1 + 4 = 15 bytes (IFNAMSIZ - 1).
        let tmp = format!(
            "rkmv{:x}.{:x}",
            std::process::id() & 0xff_ffff,
            serial & 0xffff
        );
        let tmp_op = || {
            format!(
                "ip link add {tmp} link {parent} address {}{} netns <fd> type macvlan mode {mode}",
                format_mac(mac),
                mtu_words(mtu)
            )
        };
        self.new_macvlan(&tmp, parent_index, mode, peer_ns, mac, mtu, &tmp_op)
            .map_err(|e| missing_kind(e, "macvlan", "macvlan", name))?;
        let renamed = Netlink::open_in(peer_ns).and_then(|mut inside| {
            let res = inside
                .index_of(&tmp, &|| format!("ip link set {tmp} name {name}"))
                .and_then(|index| inside.rename_index(index, &tmp, name));
            if res.is_err() {
                let _ = inside.delete_link(&tmp);
            }
            res
        });
        match renamed {
            Ok(()) => Ok(()),
            Err(e) if e.is_exists() => Err(exists),
            Err(e) => Err(e),
        }
    }

    /// The `RTM_NEWLINK` itself.
    #[allow(clippy::too_many_arguments)]
    fn new_macvlan(
        &mut self,
        name: &str,
        parent_index: u32,
        mode: MacvlanMode,
        peer_ns: &Netns,
        mac: [u8; 6],
        mtu: Option<u32>,
        op: &dyn Fn() -> String,
    ) -> Result<(), KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Link(parent_index),
            LinkAttribute::Address(mac.to_vec()),
            LinkAttribute::NetNsFd(peer_ns.as_fd().as_raw_fd()),
            LinkAttribute::LinkInfo(vec![
                NlLinkInfo::Kind(InfoKind::MacVlan),
                NlLinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(to_netlink(mode))])),
            ]),
        ];
        // Without one the kernel gives the link its parent's MTU.
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        self.change(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            op,
        )
    }
}
