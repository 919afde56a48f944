//! Deployment statuses and events: written together, the last `EVENTS_KEPT` kept per
//! deployment, removed with a `None` status or the deployment.

use hearth_master::store::{EVENTS_KEPT, EventRecord, StatusUpdate, Store};

use crate::fixtures::deployment;

fn event(n: usize) -> EventRecord {
    EventRecord {
        at_ms: n as u64,
        kind: "placed".into(),
        text: format!("event {n}"),
    }
}

fn statuses_and_events_are_written_together(store: &dyn Store) -> anyhow::Result<()> {
    store.record_deployment_status(&[])?;
    assert!(store.deployment_statuses()?.is_empty());
    assert!(store.deployment_events("kv", 10)?.is_empty());
    let status = serde_json::json!({ "v": 1, "conditions": ["short"] });
    store.record_deployment_status(&[
        StatusUpdate {
            deployment: "kv".into(),
            status: Some(status.clone()),
            events: vec![event(1), event(2)],
        },
        StatusUpdate {
            deployment: "web".into(),
            status: Some(serde_json::json!({ "v": 1 })),
            events: vec![event(3)],
        },
    ])?;
    let mut statuses = store.deployment_statuses()?;
    statuses.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        statuses,
        vec![
            ("kv".to_owned(), status),
            ("web".to_owned(), serde_json::json!({ "v": 1 }))
        ]
    );
    assert_eq!(
        store.deployment_events("kv", 10)?,
        vec![event(1), event(2)],
        "oldest first"
    );
    assert_eq!(
        store.deployment_events("kv", 1)?,
        vec![event(2)],
        "the last `limit`"
    );
    assert_eq!(store.deployment_events("kv", 0)?, vec![]);
    // A new status replaces the old one; events accumulate.
    let newer = serde_json::json!({ "v": 1, "conditions": [] });
    store.record_deployment_status(&[StatusUpdate {
        deployment: "kv".into(),
        status: Some(newer.clone()),
        events: vec![event(4)],
    }])?;
    assert!(
        store
            .deployment_statuses()?
            .contains(&("kv".to_owned(), newer))
    );
    assert_eq!(
        store.deployment_events("kv", 10)?,
        vec![event(1), event(2), event(4)]
    );
    // `None` removes the status and the events, and only that deployment's.
    store.record_deployment_status(&[StatusUpdate {
        deployment: "kv".into(),
        status: None,
        events: Vec::new(),
    }])?;
    let names: Vec<String> = store
        .deployment_statuses()?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec!["web".to_owned()]);
    assert!(store.deployment_events("kv", 10)?.is_empty());
    assert_eq!(store.deployment_events("web", 10)?, vec![event(3)]);
    Ok(())
}

fn a_deployment_keeps_its_last_events(store: &dyn Store) -> anyhow::Result<()> {
    let total = EVENTS_KEPT + 57;
    // In several writes, one of them larger than what is kept.
    let batches = [0..10, 10..(EVENTS_KEPT + 20), (EVENTS_KEPT + 20)..total];
    for batch in batches {
        store.record_deployment_status(&[
            StatusUpdate {
                deployment: "kv".into(),
                status: Some(serde_json::json!({ "v": 1 })),
                events: batch.clone().map(event).collect(),
            },
            StatusUpdate {
                deployment: "other".into(),
                status: Some(serde_json::json!({ "v": 1 })),
                events: vec![event(batch.start)],
            },
        ])?;
    }
    let kept = store.deployment_events("kv", total * 2)?;
    let expected: Vec<EventRecord> = (total - EVENTS_KEPT..total).map(event).collect();
    assert_eq!(kept.len(), EVENTS_KEPT);
    assert_eq!(kept, expected, "the newest EVENTS_KEPT, oldest first");
    assert_eq!(
        store.deployment_events("other", 100)?.len(),
        3,
        "another deployment's events are not trimmed by these"
    );
    Ok(())
}

fn a_removed_deployment_takes_its_history_along(store: &dyn Store) -> anyhow::Result<()> {
    store.put_deployment(&deployment("kv"))?;
    store.record_deployment_status(&[StatusUpdate {
        deployment: "kv".into(),
        status: Some(serde_json::json!({ "v": 1 })),
        events: vec![event(1)],
    }])?;
    assert!(store.remove_deployment("kv")?);
    assert!(store.deployment_statuses()?.is_empty());
    assert!(store.deployment_events("kv", 10)?.is_empty());
    Ok(())
}

crate::engines!(store: [
    statuses_and_events_are_written_together,
    a_deployment_keeps_its_last_events,
    a_removed_deployment_takes_its_history_along,
]);
