//! Coordination of several masters: the lease and its fence, the masters' registry, heard
//! times and shared instance reports. Two holders on one store are two masters as far as the
//! lease is concerned (on SQLite too: the behaviour is the same).

use std::collections::BTreeSet;
use std::time::Duration;

use hearth_master::store::coord::SCHEDULER_LEASE;
use hearth_master::store::{AssignmentOp, Fence, MasterRecord, SharedReport, Store, StoreError};
use hearth_protocol::NodeId;
use hearth_protocol::messages::state::{Health, InstanceReport, InstanceState, InstanceStatus};

use crate::fixtures::{assignment, enrol, instance, wait_for};

/// Short enough to wait out, long enough not to expire between two calls on a loaded machine.
const TTL_MS: u64 = 1_000;

fn take(store: &dyn Store, holder: &str, ttl_ms: u64) -> anyhow::Result<Option<Fence>> {
    Ok(store.take_lease(SCHEDULER_LEASE, holder, ttl_ms)?)
}

/// Waits until `holder` gets the lease (the other's has run out), at most 10 s.
fn take_after_expiry(store: &dyn Store, holder: &str) -> anyhow::Result<Fence> {
    wait_for(Duration::from_secs(10), "the lease to expire", || {
        take(store, holder, 60_000)
    })
}

fn a_lease_is_renewed_refused_taken_over_and_released(store: &dyn Store) -> anyhow::Result<()> {
    let a = take(store, "a", 60_000)?.ok_or_else(|| anyhow::anyhow!("a free lease refused"))?;
    assert_eq!((a.name.as_str(), a.holder.as_str()), (SCHEDULER_LEASE, "a"));
    let renewed = take(store, "a", TTL_MS)?;
    assert_eq!(renewed, Some(a.clone()), "renewing keeps the epoch");
    // Another holder is refused while it runs…
    assert_eq!(take(store, "b", 60_000)?, None);
    // …and takes it once it ran out, one epoch later.
    let b = take_after_expiry(store, "b")?;
    assert_eq!((b.holder.as_str(), b.epoch), ("b", a.epoch + 1));
    assert_eq!(take(store, "a", 60_000)?, None, "a lost it");
    // A release under a stale fence does nothing.
    store.release_lease(&a)?;
    assert_eq!(take(store, "c", 60_000)?, None, "b still holds it");
    // B's release lets another take it at once.
    store.release_lease(&b)?;
    let c = take(store, "c", 60_000)?.ok_or_else(|| anyhow::anyhow!("released lease refused"))?;
    assert_eq!(c.epoch, b.epoch + 1);
    // Other leases are independent.
    let other = store
        .take_lease("other", "a", 60_000)?
        .ok_or_else(|| anyhow::anyhow!("another lease refused"))?;
    assert_eq!(other.name, "other");
    assert_eq!(take(store, "a", 60_000)?, None);
    Ok(())
}

fn a_pass_under_a_lost_lease_is_fenced_and_writes_nothing(store: &dyn Store) -> anyhow::Result<()> {
    let node = enrol(store, 1)?;
    let place = |id: &str| AssignmentOp::Place {
        node,
        spec: Box::new(assignment(id, "kv")),
    };
    let a = take(store, "a", TTL_MS)?.ok_or_else(|| anyhow::anyhow!("a free lease refused"))?;
    let touched = store.apply_assignments(&[place("kv-0")], Some(&a))?;
    assert_eq!(touched, BTreeSet::from([node]), "the holder writes");
    let revision = store.desired_state(&node)?.revision;
    let b = take_after_expiry(store, "b")?;

    let mut changes = store.changes();
    changes.mark_unchanged();
    let stale = store.apply_assignments(
        &[place("kv-1"), AssignmentOp::Remove(instance("kv-0"))],
        Some(&a),
    );
    match stale {
        Err(StoreError::Fenced(epoch)) => assert_eq!(epoch, a.epoch),
        other => anyhow::bail!("a stale fence gave {other:?}, not Fenced"),
    }
    let ids: Vec<String> = store
        .assignments()?
        .iter()
        .map(|(_, s)| s.instance.to_string())
        .collect();
    assert_eq!(ids, vec!["kv-0"], "nothing written");
    assert_eq!(
        store.desired_state(&node)?.revision,
        revision,
        "nothing bumped"
    );

    let touched = store.apply_assignments(&[place("kv-1")], Some(&b))?;
    assert_eq!(touched, BTreeSet::from([node]), "the new holder writes");
    let forged = Fence {
        holder: "a".into(),
        ..b.clone()
    };
    assert!(
        matches!(
            store.apply_assignments(&[place("kv-2")], Some(&forged)),
            Err(StoreError::Fenced(_))
        ),
        "the holder is checked with the epoch"
    );
    store.apply_assignments(&[place("kv-3")], None)?;
    assert_eq!(store.assignments()?.len(), 3, "an unfenced pass writes");
    Ok(())
}

fn masters_are_registered_and_refreshed_by_name(store: &dyn Store) -> anyhow::Result<()> {
    assert!(store.masters()?.is_empty());
    let m = |name: &str, port: u16, api: Option<&str>, seen_ms| -> anyhow::Result<MasterRecord> {
        Ok(MasterRecord {
            name: name.into(),
            quic_addr: format!("127.0.0.1:{port}").parse()?,
            api_addr: api.map(str::parse).transpose()?,
            seen_ms,
        })
    };
    store.register_master(&m("m2", 7443, Some("127.0.0.1:7080"), 10)?)?;
    store.register_master(&m("m1", 7444, None, 11)?)?;
    let refreshed = m("m2", 7445, None, 20)?;
    store.register_master(&refreshed)?;
    assert_eq!(
        store.masters()?,
        vec![m("m1", 7444, None, 11)?, refreshed],
        "by name"
    );
    Ok(())
}

fn heard_times_give_the_latest_per_node_across_masters(store: &dyn Store) -> anyhow::Result<()> {
    let (a, b, c) = (enrol(store, 1)?, enrol(store, 2)?, enrol(store, 3)?);
    assert!(store.heard_since(0)?.is_empty());
    store.publish_heard("m1", &[])?;
    store.publish_heard("m1", &[(a, 100), (b, 200)])?;
    store.publish_heard("m2", &[(a, 300), (c, 50)])?;
    let sorted = |mut v: Vec<(NodeId, String, u64)>| {
        v.sort();
        v
    };
    let expect = |v: Vec<(NodeId, &str, u64)>| {
        sorted(
            v.into_iter()
                .map(|(n, m, t)| (n, m.to_owned(), t))
                .collect(),
        )
    };
    assert_eq!(
        sorted(store.heard_since(0)?),
        expect(vec![(a, "m2", 300), (b, "m1", 200), (c, "m2", 50)])
    );
    assert_eq!(
        sorted(store.heard_since(150)?),
        expect(vec![(a, "m2", 300), (b, "m1", 200)]),
        "only what was heard after"
    );
    // An older time published late does not go back.
    store.publish_heard("m2", &[(a, 10)])?;
    store.publish_heard("m1", &[(a, 400)])?;
    assert_eq!(
        sorted(store.heard_since(250)?),
        expect(vec![(a, "m1", 400)])
    );
    assert!(store.heard_since(400)?.is_empty(), "after, not at");
    Ok(())
}

fn report(node: NodeId, master: &str, id: &str, generation: u64, at_ms: u64) -> SharedReport {
    SharedReport {
        node,
        master: master.into(),
        status: InstanceStatus {
            report: InstanceReport {
                instance: instance(id),
                generation,
                state: InstanceState::Running,
                health: Health::Healthy,
            },
            endpoints: Vec::new(),
            published: [("password".to_owned(), "x".to_owned())].into(),
            message: Some("ok".into()),
        },
        at_ms,
    }
}

fn the_last_report_of_each_instance_is_shared(store: &dyn Store) -> anyhow::Result<()> {
    let (a, b) = (enrol(store, 1)?, enrol(store, 2)?);
    assert!(store.reports(None)?.is_empty());
    store.publish_reports("m1", &[])?;
    store.publish_reports(
        "m1",
        &[
            report(a, "m1", "kv-0", 1, 10),
            report(a, "m1", "kv-1", 1, 10),
        ],
    )?;
    store.publish_reports("m2", &[report(b, "m2", "kv-0", 2, 20)])?;
    let mut all = store.reports(None)?;
    all.sort_by(|x, y| x.instance().cmp(y.instance()));
    assert_eq!(
        all,
        vec![
            report(b, "m2", "kv-0", 2, 20),
            report(a, "m1", "kv-1", 1, 10)
        ]
    );
    let some = store.reports(Some(&[instance("kv-1"), instance("nope")]))?;
    assert_eq!(some, vec![report(a, "m1", "kv-1", 1, 10)]);
    assert!(store.reports(Some(&[]))?.is_empty());
    Ok(())
}

crate::engines!(store: [
    a_lease_is_renewed_refused_taken_over_and_released,
    a_pass_under_a_lost_lease_is_fenced_and_writes_nothing,
    masters_are_registered_and_refreshed_by_name,
    heard_times_give_the_latest_per_node_across_masters,
    the_last_report_of_each_instance_is_shared,
]);
