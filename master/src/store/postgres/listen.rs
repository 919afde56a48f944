//! Events between masters: LISTEN/NOTIFY on one channel, no polling.
//!
//! Every write transaction that changes something another master acts on sends, inside the
//! transaction (so it is delivered only if it commits), one or more notifications on
//! [`CHANNEL`] with the payload `<origin>|<kind>|<ids>`: the writing store's random origin id,
//! one of `revisions` (node ids whose desired-state revision was bumped), `nodes` (enrolled, or
//! admin state set), `data` (deployments, assignments, gateways or backups changed; no ids),
//! `reports` (instance ids) or `files` (`kind:name` of shared files, `%` and `,` escaped), and the ids separated by commas, split over several notifications
//! so that each payload stays under [`MAX_PAYLOAD`] bytes (PostgreSQL's limit is 8,000).
//!
//! One dedicated connection listens ([`run`]). It ignores its own origin's notifications; on
//! `data` or `revisions` it drops the store's caches and bumps [`super::Shared::changes`]; and
//! it forwards every event to the store's broadcast channel. If the connection is lost it
//! reconnects with the agent's backoff and, once it listens again, drops the caches and sends
//! [`StoreEvent::Resync`] (what was written meanwhile was not heard). A malformed payload is
//! logged (at most once a second) and ignored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_core::backoff::Backoff;
use tokio_postgres::{AsyncMessage, NoTls};

use super::super::{FileKind, StoreError, StoreEvent};
use super::Shared;
use super::bridge::{Notes, pg};

/// The notification channel.
pub(super) const CHANNEL: &str = "hearth";
/// Largest payload sent (bytes).
const MAX_PAYLOAD: usize = 7000;

/// The payloads telling other masters what a transaction wrote (empty: nothing to tell).
pub(super) fn payloads(origin: &str, notes: &Notes) -> Vec<String> {
    let mut out = Vec::new();
    if notes.data {
        out.push(format!("{origin}|data|"));
    }
    let ids = |v: &mut dyn Iterator<Item = String>| -> Vec<String> {
        let set: std::collections::BTreeSet<String> = v.collect();
        set.into_iter().collect()
    };
    let revisions = ids(&mut notes.revisions.iter().map(ToString::to_string));
    split(&mut out, origin, "revisions", &revisions);
    let nodes = ids(&mut notes.nodes.iter().map(ToString::to_string));
    split(&mut out, origin, "nodes", &nodes);
    let reports = ids(&mut notes.reports.iter().map(ToString::to_string));
    split(&mut out, origin, "reports", &reports);
    let files = ids(&mut notes
        .files
        .iter()
        .map(|(kind, name)| format!("{}:{}", kind.as_str(), escape(name))));
    split(&mut out, origin, "files", &files);
    out
}

/// A file name with `%` and `,` escaped (the payload separates ids with commas).
fn escape(name: &str) -> String {
    name.replace('%', "%25").replace(',', "%2C")
}

fn unescape(name: &str) -> String {
    name.replace("%2C", ",").replace("%25", "%")
}

/// `kind:name` of a `files` notification.
fn file_id(s: &str) -> Result<(FileKind, String), String> {
    let (kind, name) = s
        .split_once(':')
        .ok_or_else(|| format!("file {s:?}: no kind"))?;
    let kind = FileKind::parse(kind).ok_or_else(|| format!("file {s:?}: unknown kind"))?;
    Ok((kind, unescape(name)))
}

fn split(out: &mut Vec<String>, origin: &str, kind: &str, ids: &[String]) {
    let head = format!("{origin}|{kind}|");
    let mut current = head.clone();
    for id in ids {
        if current.len() > head.len() && current.len() + 1 + id.len() > MAX_PAYLOAD {
            out.push(std::mem::replace(&mut current, head.clone()));
        }
        if current.len() > head.len() {
            current.push(',');
        }
        current.push_str(id);
    }
    if current.len() > head.len() {
        out.push(current);
    }
}

/// The event a payload tells, `None` if it is this store's own.
pub(super) fn parse(payload: &str, own: &str) -> Result<Option<StoreEvent>, String> {
    let mut parts = payload.splitn(3, '|');
    let (Some(origin), Some(kind), Some(ids)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected origin|kind|ids".into());
    };
    if origin == own {
        return Ok(None);
    }
    let list = || ids.split(',').filter(|s| !s.is_empty());
    Ok(Some(match kind {
        "data" => StoreEvent::Data,
        "revisions" => StoreEvent::Revisions(
            list()
                .map(|s| s.parse().map_err(|e| format!("node id {s:?}: {e}")))
                .collect::<Result<_, _>>()?,
        ),
        "nodes" => StoreEvent::Nodes(
            list()
                .map(|s| s.parse().map_err(|e| format!("node id {s:?}: {e}")))
                .collect::<Result<_, _>>()?,
        ),
        "reports" => StoreEvent::Reports(
            list()
                .map(|s| s.parse().map_err(|e| format!("instance id {s:?}: {e}")))
                .collect::<Result<_, _>>()?,
        ),
        "files" => StoreEvent::Files(list().map(file_id).collect::<Result<_, _>>()?),
        other => return Err(format!("unknown kind {other:?}")),
    }))
}

/// Listens until the store's runtime stops; `ready` hears how the first LISTEN went.
pub(super) async fn run(
    config: tokio_postgres::Config,
    shared: Arc<Shared>,
    ready: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
) {
    let mut ready = Some(ready);
    let mut failures = 0u32;
    let mut last_complaint: Option<Instant> = None;
    loop {
        let first = ready.is_none();
        let outcome = listen_once(&config, &shared, &mut ready, first, &mut last_complaint).await;
        match outcome {
            Ok(()) => failures = 0,
            Err(e) => {
                if let Some(ready) = ready.take() {
                    // connect() reports it; it will not wait for a retry.
                    let _ = ready.send(Err(e));
                    return;
                }
                tracing::warn!(error = %e, "the store's listening connection failed");
            }
        }
        failures = failures.saturating_add(1);
        let wait = Backoff::RECONNECT.jittered(failures, rand::random::<f64>());
        tokio::time::sleep(wait).await;
    }
}

/// One listening connection, until it is lost. `Ok` if it listened at all.
async fn listen_once(
    config: &tokio_postgres::Config,
    shared: &Shared,
    ready: &mut Option<tokio::sync::oneshot::Sender<Result<(), StoreError>>>,
    reconnected: bool,
    last_complaint: &mut Option<Instant>,
) -> Result<(), StoreError> {
    let (client, mut conn) = config.connect(NoTls).await.map_err(pg)?;
    let (notes, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if notes.send(n).is_err() {
                        return None;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(pg)?;
    if let Some(ready) = ready.take() {
        let _ = ready.send(Ok(()));
    }
    if reconnected {
        tracing::info!("the store listens again: re-reading everything");
        shared.invalidate();
        let _ = shared.events.send(StoreEvent::Resync);
    }
    while let Some(n) = heard.recv().await {
        match parse(n.payload(), &shared.origin) {
            Ok(None) => {}
            Ok(Some(event)) => {
                if matches!(event, StoreEvent::Data | StoreEvent::Revisions(_)) {
                    shared.invalidate();
                }
                let _ = shared.events.send(event);
            }
            Err(e) => {
                if last_complaint.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    *last_complaint = Some(Instant::now());
                    tracing::warn!(error = %e, payload = %n.payload(), "ignoring a malformed store notification");
                }
            }
        }
    }
    drop(client);
    if let Ok(Some(e)) = driver.await {
        tracing::warn!(error = %e, "the store's listening connection was lost");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    use hearth_protocol::NodeId;

    fn node(seed: u8) -> NodeId {
        NodeId::from_key(hearth_protocol::SecretKey::from_seed(&[seed; 32]).public())
    }

    #[test]
    fn payloads_stay_small_and_parse_back() {
        let nodes: Vec<NodeId> = (0..=255u8).map(node).collect();
        let notes = Notes {
            revisions: nodes.clone(),
            nodes: nodes[..2].to_vec(),
            data: true,
            reports: Vec::new(),
            files: vec![
                (FileKind::Metadata, "a,b%c.json".into()),
                (FileKind::Blob, "ab".into()),
            ],
        };
        let out = payloads("o1", &notes);
        assert!(out.iter().all(|p| p.len() <= MAX_PAYLOAD));
        assert_eq!(out[0], "o1|data|");
        let mut back = Vec::new();
        for p in &out {
            assert_eq!(parse(p, "o1").unwrap(), None, "its own origin is ignored");
            match parse(p, "o2").unwrap() {
                Some(StoreEvent::Revisions(n)) => back.extend(n),
                Some(StoreEvent::Nodes(n)) => assert_eq!(n.len(), 2),
                Some(StoreEvent::Data) => {}
                Some(StoreEvent::Files(f)) => assert_eq!(
                    f,
                    vec![
                        (FileKind::Blob, "ab".to_owned()),
                        (FileKind::Metadata, "a,b%c.json".to_owned())
                    ]
                ),
                other => panic!("{other:?}"),
            }
        }
        back.sort();
        let mut want = nodes.clone();
        want.sort();
        assert_eq!(back, want);
        assert!(payloads("o1", &Notes::default()).is_empty());
    }

    #[test]
    fn malformed_payloads_are_refused() {
        for bad in [
            "",
            "o2",
            "o2|what|",
            "o2|revisions|not-a-node",
            "o2|reports|a,,B C",
            "o2|files|blob",
        ] {
            assert!(parse(bad, "o1").is_err(), "{bad:?}");
        }
    }
}
