//! `reef host bridge-nic` / `unbridge-nic`: a host NIC moved onto a bridge and back, as one
//! plan with its undo; the move is undone by itself when the default gateway does not
//! answer afterwards. What was done is kept in `<data-root>/bridged-nics.json`.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use reef_core::nic::{self, BridgedNic, NicFacts, NicRoute};

use super::{io_err, Engine, EngineError, Result};

/// What `bridge-nic` did: the record and the steps, as `ip` commands.
#[derive(Debug, Clone)]
pub struct NicReport {
    /// The record kept for `unbridge-nic`.
    pub bridged: BridgedNic,
    /// The steps applied.
    pub steps: Vec<String>,
}

impl Engine {
    fn nic_records_path(&self) -> std::path::PathBuf {
        self.cfg.data_root.join("bridged-nics.json")
    }

    fn nic_records(&self) -> Result<BTreeMap<String, BridgedNic>> {
        let path = self.nic_records_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| EngineError::Invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io_err(format!("read {}", path.display()))(e)),
        }
    }

    fn save_nic_records(&self, records: &BTreeMap<String, BridgedNic>) -> Result<()> {
        let path = self.nic_records_path();
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(records).expect("records serialise"),
        )
        .map_err(io_err(format!("write {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(io_err(format!("rename to {}", path.display())))
    }

    /// Put `nic` on `bridge` (created when missing), moving its addresses and routes; undo
    /// it all unless the default gateway answers within `timeout`.
    pub fn bridge_nic(&self, nic_name: &str, bridge: &str, timeout: Duration) -> Result<NicReport> {
        let mut inner = self.lock();
        let mut records = self.nic_records()?;
        if records.contains_key(nic_name) {
            return Err(EngineError::Conflict(format!(
                "{nic_name} is bridged already; `reef host unbridge-nic --nic {nic_name}` first"
            )));
        }
        let link = inner.exec.link(nic_name)?.ok_or_else(|| {
            EngineError::NotFound(format!("--nic {nic_name}: no such interface on this host"))
        })?;
        let addrs = inner
            .exec
            .addrs()?
            .into_iter()
            .filter(|a| a.index == link.index)
            .filter_map(|a| match a.addr {
                IpNet::V4(v4) => Some(v4),
                IpNet::V6(_) => None,
            })
            .collect();
        let routes = inner
            .exec
            .routes()?
            .into_iter()
            .filter(|r| r.oif == Some(link.index))
            .filter_map(|r| match (r.dst, r.gateway) {
                (IpNet::V4(dst), Some(std::net::IpAddr::V4(via))) => Some(NicRoute {
                    dst,
                    via: Some(via),
                }),
                _ => None,
            })
            .collect();
        let br = inner.exec.link(bridge)?;
        let facts = NicFacts {
            mac: link.mac,
            mtu: link.mtu,
            kind: link.kind.clone(),
            enslaved: link.master.is_some(),
            addrs,
            routes,
            bridge: br.map(|b| b.kind.as_deref() == Some("bridge")),
        };
        let bridged =
            nic::decide(nic_name, bridge, &facts).map_err(|e| EngineError::Invalid(e.0))?;
        let plan = nic::plan(&bridged);
        inner.exec.apply_plan(&plan)?;
        if let Some(gw) = nic::gateway(&bridged) {
            let answered = inner.exec.probe_gateway(gw, timeout);
            if !matches!(answered, Ok(true)) {
                for op in plan.rollback(plan.steps.len()) {
                    if let Err(e) = inner.exec.apply(&op) {
                        tracing::error!(op = %op, error = %e, "bridge-nic rollback step failed");
                    }
                }
                let why = match answered {
                    Err(e) => format!("cannot probe it: {e}"),
                    _ => format!("no answer within {}s", timeout.as_secs_f64()),
                };
                return Err(EngineError::Unavailable(format!(
                    "the default gateway {gw} stopped answering after {nic_name} moved onto \
                     {bridge} ({why}): everything was rolled back, {nic_name} is as it was"
                )));
            }
        }
        records.insert(nic_name.to_string(), bridged.clone());
        if let Err(e) = self.save_nic_records(&records) {
            for op in plan.rollback(plan.steps.len()) {
                let _ = inner.exec.apply(&op);
            }
            return Err(e);
        }
        Ok(NicReport {
            steps: plan.steps.iter().map(|s| s.op.to_string()).collect(),
            bridged,
        })
    }

    /// Undo `bridge-nic`: the NIC's addresses and routes back, off the bridge, the bridge
    /// deleted when reef made it.
    pub fn unbridge_nic(&self, nic_name: &str) -> Result<NicReport> {
        let mut inner = self.lock();
        let mut records = self.nic_records()?;
        let bridged = records.remove(nic_name).ok_or_else(|| {
            EngineError::NotFound(format!(
                "--nic {nic_name}: reef has not bridged it (`reef host bridge-nic`)"
            ))
        })?;
        let plan = nic::plan(&bridged);
        let ops = plan.rollback(plan.steps.len());
        let mut failed = Vec::new();
        for op in &ops {
            if let Err(e) = inner.exec.apply(op) {
                failed.push(format!("{op}: {e}"));
            }
        }
        if !failed.is_empty() {
            return Err(EngineError::Invalid(format!(
                "unbridge-nic {nic_name}: {}",
                failed.join("; ")
            )));
        }
        self.save_nic_records(&records)?;
        Ok(NicReport {
            steps: ops.iter().map(|o| o.to_string()).collect(),
            bridged,
        })
    }
}
