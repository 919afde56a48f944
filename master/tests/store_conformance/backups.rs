//! Backups: a key made once per deployment, holders and the revisions they bump, the operator's
//! requests, the snapshots kept; all of it removed with the deployment.

use std::collections::BTreeSet;

use hearth_master::store::{
    BackupAsk, BackupRecord, EventRecord, RestoreRequest, SnapshotRecord, Store,
};
use hearth_protocol::Hex;

use crate::fixtures::{deployment, enrol, instance};

fn a_backup_key_is_made_once_and_goes_with_its_deployment(store: &dyn Store) -> anyhow::Result<()> {
    assert_eq!(
        store.backup_key("notes", &"11".repeat(32), 1)?,
        None,
        "no deployment"
    );
    assert_eq!(
        store.backup("notes")?,
        BackupRecord::default(),
        "no key left behind"
    );
    store.put_deployment(&deployment("notes"))?;
    let first = store.backup_key("notes", &"11".repeat(32), 1)?;
    assert_eq!(first, Some("11".repeat(32)));
    assert_eq!(
        store.backup_key("notes", &"22".repeat(32), 2)?,
        first,
        "kept"
    );
    store.put_deployment(&deployment("notes"))?;
    assert_eq!(store.backup("notes")?.key, first, "an update keeps the key");
    assert!(store.remove_deployment("notes")?);
    assert_eq!(store.backup("notes")?, BackupRecord::default());
    store.put_deployment(&deployment("notes"))?;
    assert_eq!(
        store.backup_key("notes", &"33".repeat(32), 3)?,
        Some("33".repeat(32)),
        "a new deployment of the same name gets a new key"
    );
    Ok(())
}

fn holders_are_set_with_their_nodes_bumped_and_kept_in_order(
    store: &dyn Store,
) -> anyhow::Result<()> {
    let (a, b, c, r) = (
        enrol(store, 1)?,
        enrol(store, 2)?,
        enrol(store, 3)?,
        enrol(store, 4)?,
    );
    assert!(
        store
            .set_backup_holders("notes", &[a], &[r], 10)?
            .is_empty(),
        "unknown deployment"
    );
    assert!(store.backup_holders()?.is_empty());
    store.put_deployment(&deployment("notes"))?;
    let bumped = store.set_backup_holders("notes", &[b, a], &[r], 10)?;
    assert_eq!(bumped, BTreeSet::from([a, b, r]));
    assert_eq!(store.desired_state(&r)?.revision, 1);
    assert_eq!(
        store.backup("notes")?.holders,
        vec![b, a],
        "in the order chosen"
    );
    assert!(
        store
            .set_backup_holders("notes", &[a, b], &[r], 20)?
            .is_empty(),
        "the same set"
    );
    assert_eq!(store.desired_state(&r)?.revision, 1, "nothing bumped");
    // One replaced: the one staying keeps its place, the old and new ones are bumped.
    let bumped = store.set_backup_holders("notes", &[a, c], &[r], 30)?;
    assert_eq!(bumped, BTreeSet::from([a, b, c, r]));
    assert_eq!(store.backup("notes")?.holders, vec![a, c]);
    assert_eq!(store.held_by(&c)?, vec!["notes".to_owned()]);
    assert!(store.held_by(&b)?.is_empty());
    assert_eq!(store.backup_holders()?.get("notes"), Some(&vec![a, c]));
    let before = store.desired_state(&c)?.revision;
    assert!(store.remove_deployment("notes")?);
    assert_eq!(
        store.desired_state(&c)?.revision,
        before + 1,
        "a holder learns it is gone"
    );
    assert!(store.backup_holders()?.is_empty());
    assert!(store.held_by(&c)?.is_empty());
    Ok(())
}

fn snapshots_are_kept_newest_first_with_the_one_to_restore(
    store: &dyn Store,
) -> anyhow::Result<()> {
    let (node, holder) = (enrol(store, 1)?, enrol(store, 2)?);
    let snap = |n: u8| SnapshotRecord {
        deployment: "notes".into(),
        snapshot: Hex([n; 32]),
        instance: instance("notes-0"),
        node,
        taken_ms: u64::from(n) * 1000,
        bytes: 10,
        stored_bytes: 12,
        sent_bytes: 5,
        held_by: vec![holder, node],
        received_ms: u64::from(n) * 1000 + 1,
    };
    let event = EventRecord {
        at_ms: 1,
        kind: "snapshot".into(),
        text: "taken".into(),
    };
    assert!(
        !store.put_snapshot(&snap(1), 3, &event)?,
        "unknown deployment"
    );
    assert!(store.snapshots("notes")?.is_empty());
    store.put_deployment(&deployment("notes"))?;
    assert_eq!(store.ask_backup("gone", &BackupAsk::Now, &[])?, None);
    for n in 1..=3 {
        assert!(store.put_snapshot(&snap(n), 3, &event)?);
    }
    let before = store.desired_state(&node)?.revision;
    assert_eq!(
        store.ask_backup("notes", &BackupAsk::Restore(Hex([1; 32]), 5), &[node])?,
        Some(1)
    );
    assert_eq!(
        store.ask_backup("notes", &BackupAsk::Now, &[node])?,
        Some(1),
        "its own count"
    );
    assert_eq!(
        store.ask_backup("notes", &BackupAsk::Now, &[node])?,
        Some(2)
    );
    assert_eq!(
        store.desired_state(&node)?.revision,
        before + 3,
        "each ask bumps"
    );
    for n in 4..=6 {
        assert!(store.put_snapshot(&snap(n), 3, &event)?);
    }
    // A report sent again replaces its record.
    let mut resent = snap(6);
    resent.sent_bytes = 99;
    assert!(store.put_snapshot(&resent, 3, &event)?);
    let ids: Vec<u8> = store
        .snapshots("notes")?
        .iter()
        .map(|s| s.snapshot.0[0])
        .collect();
    assert_eq!(
        ids,
        vec![6, 5, 4, 1],
        "the newest 3, and the one a restore names"
    );
    assert_eq!(store.snapshots("notes")?.first(), Some(&resent));
    assert_eq!(store.snapshots("notes")?.get(1), Some(&snap(5)));
    let record = store.backup("notes")?;
    assert_eq!(record.now_seq, 2);
    assert_eq!(
        record.restore,
        Some(RestoreRequest {
            seq: 1,
            snapshot: Hex([1; 32]),
            at_ms: 5,
        })
    );
    assert_eq!(
        store.deployment_events("notes", 100)?.len(),
        7,
        "one event per report"
    );
    assert!(store.remove_deployment("notes")?);
    assert!(store.snapshots("notes")?.is_empty());
    assert_eq!(store.backup("notes")?, BackupRecord::default());
    Ok(())
}

crate::engines!(store: [
    a_backup_key_is_made_once_and_goes_with_its_deployment,
    holders_are_set_with_their_nodes_bumped_and_kept_in_order,
    snapshots_are_kept_newest_first_with_the_one_to_restore,
]);
