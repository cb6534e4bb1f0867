//! Recognising reef's leftovers: kernel objects carrying reef's marks that no record
//! accounts for (a crash between a record's change and the kernel work, or an operation
//! cut off), and the op that removes each.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::model::{Container, Network};
use crate::names;
use crate::plan::{NsRef, Op};

/// A host link as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLink {
    /// Interface name.
    pub name: String,
    /// Link kind (`bridge`, `veth`, ...).
    pub kind: Option<String>,
    /// Interface alias (reef marks its veths `reef:<endpoint>`).
    pub alias: Option<String>,
}

/// A leftover and how to remove it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// What it is, for `reef system check` (`orphaned veth veth0123456789`).
    pub what: String,
    /// The op that removes it (tolerating its being gone already).
    pub op: Op,
}

/// The leftovers among `links` and `sandboxes`: veths marked with an endpoint no
/// container has (unless `pending` says they are queued for deletion already), bridges
/// named as reef names them (`br-<12 hex>`) that no network has, and sandbox mounts no
/// container has.
pub fn find(
    networks: &[&Network],
    containers: &[&Container],
    links: &[HostLink],
    sandboxes: &[PathBuf],
    pending: &dyn Fn(&str) -> bool,
) -> Vec<Orphan> {
    let live_endpoints: BTreeSet<&str> = containers
        .iter()
        .flat_map(|c| c.endpoints.iter().map(|e| e.id.as_str()))
        .collect();
    let bridges: BTreeSet<&str> = networks
        .iter()
        .filter_map(|n| n.bridge().map(|b| b.ifname.as_str()))
        .collect();
    let live_sandboxes: BTreeSet<PathBuf> = containers
        .iter()
        .filter_map(|c| c.sandbox.as_ref().map(PathBuf::from))
        .collect();
    let delete = |name: &str| Op::DeleteLink {
        ns: NsRef::Host,
        name: name.to_string(),
    };
    let mut out = Vec::new();
    for link in links {
        let endpoint = link.alias.as_deref().and_then(names::endpoint_from_alias);
        if endpoint.is_some_and(|ep| !live_endpoints.contains(ep)) && !pending(&link.name) {
            out.push(Orphan {
                what: format!("orphaned veth {}", link.name),
                op: delete(&link.name),
            });
        }
    }
    // A `network rm` cut off after its record was deleted.
    for link in links {
        let reef_named = link
            .name
            .strip_prefix("br-")
            .is_some_and(|h| h.len() == 12 && h.chars().all(|c| c.is_ascii_hexdigit()));
        if link.kind.as_deref() == Some("bridge")
            && reef_named
            && !bridges.contains(link.name.as_str())
        {
            out.push(Orphan {
                what: format!("orphaned bridge {}", link.name),
                op: delete(&link.name),
            });
        }
    }
    for path in sandboxes.iter().filter(|p| !live_sandboxes.contains(*p)) {
        out.push(Orphan {
            what: format!("orphaned sandbox {}", path.display()),
            op: Op::DeleteSandbox { path: path.clone() },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, kind: &str, alias: Option<&str>) -> HostLink {
        HostLink {
            name: name.into(),
            kind: Some(kind.into()),
            alias: alias.map(Into::into),
        }
    }

    #[test]
    fn only_reefs_unaccounted_objects_are_leftovers() {
        let ep = "e".repeat(64);
        let links = [
            link("veth1", "veth", Some(&format!("reef:{ep}"))),
            link("veth2", "veth", Some(&format!("reef:{ep}"))),
            link("vethuser", "veth", None),
            link("br-0123456789ab", "bridge", None),
            link("br-lan", "bridge", None),
            link("br-0123456789ab0", "bridge", None),
        ];
        let found = find(&[], &[], &links, &["/run/reef/netns/x".into()], &|name| {
            name == "veth2"
        });
        let what: Vec<&str> = found.iter().map(|o| o.what.as_str()).collect();
        assert_eq!(
            what,
            [
                "orphaned veth veth1",
                "orphaned bridge br-0123456789ab",
                "orphaned sandbox /run/reef/netns/x"
            ]
        );
        assert_eq!(found[0].op.to_string(), "ip link del veth1");
    }
}
