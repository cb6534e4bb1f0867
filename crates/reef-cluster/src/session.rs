//! The session with etcd: lease, (re)publish, full read, watch; started again whenever it
//! ends.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, DeleteOptions, EventType, GetOptions, PutOptions, WatchOptions};
use reef_core::cluster::{ClusterView, EndpointRecord, Key, ROOT};

use crate::{Publish, Shared};

/// Run sessions for as long as the runtime lives.
pub(crate) async fn supervise(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = std::time::Instant::now();
        let err = session(&shared).await;
        let was_online = shared.online.swap(false, Ordering::SeqCst);
        *shared.last_error.lock().expect("error lock") = err.clone();
        if was_online {
            tracing::warn!(error = %err, "cluster store session ended; the last known state stays in force");
            (shared.on_change)();
        } else {
            tracing::debug!(error = %err, "cluster store not reachable");
        }
        if started.elapsed() > Duration::from_secs(5) {
            backoff = Duration::from_millis(100);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

fn text(e: etcd_client::Error) -> String {
    e.to_string()
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(crate::REQUEST_TIMEOUT, f).await {
        Ok(r) => r.map_err(text),
        Err(_) => Err(format!("no answer within {:?}", crate::REQUEST_TIMEOUT)),
    }
}

/// Everything held, put again with `lease`, and this host's endpoints the store has but
/// the host no longer runs deleted (a restart or reboot replaces, never duplicates).
async fn republish(shared: &Shared, c: &mut Client, lease: i64) -> Result<(), String> {
    let (puts, known) = {
        let held = shared.held.lock().expect("held lock");
        let mut puts: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(h) = &held.host {
            puts.push((
                Key::Host(h.id.clone()).text(),
                serde_json::to_vec(h).expect("host"),
            ));
        }
        for (n, b) in &held.blocks {
            let v = serde_json::to_vec(&reef_core::cluster::BlockRecord {
                host: shared.host_id.clone(),
            })
            .expect("block");
            puts.push((Key::Block(n.clone(), *b).text(), v));
        }
        for ((n, ip), claim) in &held.claims {
            puts.push((
                Key::IpClaim(n.clone(), *ip).text(),
                serde_json::to_vec(claim).expect("claim"),
            ));
        }
        for ((n, ip), e) in &held.endpoints {
            puts.push((
                Key::Endpoint(n.clone(), *ip).text(),
                serde_json::to_vec(e).expect("endpoint"),
            ));
        }
        let known = held.endpoints_known.then(|| held.endpoints.clone());
        (puts, known)
    };
    for (k, v) in puts {
        timed(c.put(k, v, Some(PutOptions::new().with_lease(lease)))).await?;
    }
    if let Some(known) = known {
        let stored = timed(c.get(
            format!("{ROOT}endpoints/"),
            Some(GetOptions::new().with_prefix()),
        ))
        .await?;
        for kv in stored.kvs() {
            let Ok(e) = serde_json::from_slice::<EndpointRecord>(kv.value()) else {
                continue;
            };
            if e.host == shared.host_id && !known.contains_key(&(e.network_id.clone(), e.ip)) {
                tracing::info!(container = %e.container_name, ip = %e.ip, "withdrawing a stale endpoint of this host");
                timed(c.delete(kv.key().to_vec(), None)).await?;
            }
        }
    }
    Ok(())
}

async fn session(shared: &Arc<Shared>) -> String {
    match run(shared).await {
        Ok(()) => "session closed".into(),
        Err(e) => e,
    }
}

async fn run(shared: &Arc<Shared>) -> Result<(), String> {
    let mut c = shared.client.clone();
    let lease = timed(c.lease_grant(i64::from(shared.ttl_secs), None))
        .await?
        .id();
    shared.lease.store(lease, Ordering::SeqCst);
    let (mut keeper, mut alive) = timed(c.lease_keep_alive(lease)).await?;
    republish(shared, &mut c, lease).await?;
    let all = timed(c.get(ROOT, Some(GetOptions::new().with_prefix()))).await?;
    let revision = all.header().map_or(0, |h| h.revision());
    let mut view = ClusterView {
        revision,
        ..Default::default()
    };
    for kv in all.kvs() {
        let key = String::from_utf8_lossy(kv.key());
        if key == Key::NetVer.text() {
            view.netver = kv.mod_revision();
        }
        if let Err(e) = view.apply(&key, Some(kv.value())) {
            tracing::warn!(error = %e, "ignoring a record of the cluster store");
        }
    }
    *shared.view.write().expect("cluster view lock") = view;
    let mut watch = timed(
        c.watch(
            ROOT,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        ),
    )
    .await?;
    shared.online.store(true, Ordering::SeqCst);
    tracing::info!(revision, lease, "cluster store session up");
    (shared.on_change)();

    let mut rx = shared.rx.lock().await;
    // Renewed often (cheap), so that a lost etcd is noticed within about two seconds
    // whatever the TTL: no answer to two renewals in a row ends the session.
    let renew =
        Duration::from_secs(u64::from(shared.ttl_secs.max(3)) / 3).min(Duration::from_secs(1));
    let mut tick = tokio::time::interval(renew);
    tick.tick().await;
    let mut last_ack = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if last_ack.elapsed() > renew * 2 + Duration::from_millis(500) {
                    return Err(format!(
                        "etcd did not answer the lease renewals for {:?}",
                        last_ack.elapsed()
                    ));
                }
                timed(keeper.keep_alive()).await?;
            }
            m = alive.message() => {
                match m.map_err(text)? {
                    Some(r) if r.ttl() > 0 => last_ack = tokio::time::Instant::now(),
                    Some(_) => return Err("the lease expired".into()),
                    None => return Err("the lease stream closed".into()),
                }
            }
            w = watch.message() => {
                let Some(resp) = w.map_err(text)? else {
                    return Err("the watch closed".into());
                };
                if resp.canceled() {
                    return Err(format!("the watch was cancelled: {}", resp.cancel_reason()));
                }
                let mut changed = false;
                {
                    let mut view = shared.view.write().expect("cluster view lock");
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        let key = String::from_utf8_lossy(kv.key());
                        let value = match ev.event_type() {
                            EventType::Put => Some(kv.value()),
                            EventType::Delete => None,
                        };
                        if key == Key::NetVer.text() {
                            view.netver = kv.mod_revision();
                        }
                        if let Err(e) = view.apply(&key, value) {
                            tracing::warn!(error = %e, "ignoring a record of the cluster store");
                        }
                        view.revision = view.revision.max(kv.mod_revision());
                        changed = true;
                    }
                }
                if changed {
                    (shared.on_change)();
                }
            }
            p = rx.recv() => {
                match p {
                    Some(Publish::Put(k, v)) => {
                        timed(c.put(k, v, Some(PutOptions::new().with_lease(lease)))).await?;
                    }
                    Some(Publish::Delete(k)) => {
                        timed(c.delete(k, None::<DeleteOptions>)).await?;
                    }
                    Some(Publish::Resync) => republish(shared, &mut c, lease).await?,
                    None => return Ok(()),
                }
            }
        }
    }
}
