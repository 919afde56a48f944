//! Assignments and desired states: generations (also across a removal), revisions, a scheduler
//! pass in one transaction, and the `changes()` watch.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hearth_master::store::{AssignmentOp, Store};
use hearth_protocol::NodeId;

use crate::fixtures::{assignment, enrol, instance, node_id};
use crate::harness::TestDb;

fn revision(store: &dyn Store, node: &NodeId) -> anyhow::Result<u64> {
    Ok(store.desired_state(node)?.revision)
}

fn generations_grow_across_moves_and_removals(store: &dyn Store) -> anyhow::Result<()> {
    let (a, b) = (enrol(store, 1)?, enrol(store, 2)?);
    assert_eq!(store.desired_state(&a)?.revision, 0, "nothing yet");
    assert!(store.desired_state(&a)?.instances.is_empty());
    assert_eq!(
        store.put_assignment(&node_id(9), &assignment("kv-0", "kv"))?,
        None,
        "unknown node"
    );
    assert!(
        store.assignments()?.is_empty(),
        "nothing stored for an unknown node"
    );

    let mut spec = assignment("kv-0", "kv");
    spec.generation = 77;
    let (stored, changed) = store
        .put_assignment(&a, &spec)?
        .ok_or_else(|| anyhow::anyhow!("node a unknown"))?;
    assert_eq!(stored.generation, 1, "the given generation is ignored");
    assert_eq!(changed, vec![a]);
    assert_eq!(stored, assignment_at("kv-0", 1));
    let state = store.desired_state(&a)?;
    assert_eq!((state.revision, state.instances), (1, vec![stored.clone()]));

    let (again, changed) = store
        .put_assignment(&a, &spec)?
        .ok_or_else(|| anyhow::anyhow!("node a unknown"))?;
    assert_eq!((again.generation, changed), (2, vec![a]));
    assert_eq!(revision(store, &a)?, 2);

    let (moved, changed) = store
        .put_assignment(&b, &spec)?
        .ok_or_else(|| anyhow::anyhow!("node b unknown"))?;
    assert_eq!(moved.generation, 3);
    assert_eq!(
        changed.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([a, b]),
        "the new node and the old one"
    );
    assert_eq!((revision(store, &a)?, revision(store, &b)?), (3, 1));
    assert!(store.desired_state(&a)?.instances.is_empty());
    assert_eq!(store.assignments()?.as_slice(), &[(b, moved.clone())]);

    assert_eq!(store.remove_assignment(&instance("kv-0"))?, Some(b));
    assert_eq!(revision(store, &b)?, 2);
    assert_eq!(store.remove_assignment(&instance("kv-0"))?, None, "gone");
    assert_eq!(revision(store, &b)?, 2, "removing nothing bumps nothing");
    assert!(store.assignments()?.is_empty());
    let (back, _) = store
        .put_assignment(&a, &spec)?
        .ok_or_else(|| anyhow::anyhow!("node a unknown"))?;
    assert_eq!(
        back.generation, 4,
        "an id used again goes on from its last generation"
    );
    Ok(())
}

/// `assignment(instance, "kv")` as stored at `generation`.
fn assignment_at(id: &str, generation: u64) -> hearth_protocol::messages::state::Assignment {
    let mut a = assignment(id, "kv");
    a.generation = generation;
    a
}

fn a_pass_skips_unknown_nodes_and_answers_the_changed_ones(
    store: &dyn Store,
) -> anyhow::Result<()> {
    let (a, b) = (enrol(store, 1)?, enrol(store, 2)?);
    assert!(store.apply_assignments(&[], None)?.is_empty());
    let place = |node, id: &str| AssignmentOp::Place {
        node,
        spec: Box::new(assignment(id, "kv")),
    };
    let touched = store.apply_assignments(
        &[
            place(node_id(9), "kv-0"),
            place(a, "kv-1"),
            place(a, "kv-2"),
        ],
        None,
    )?;
    assert_eq!(touched, BTreeSet::from([a]));
    let ids: Vec<String> = store
        .assignments()?
        .iter()
        .map(|(_, s)| s.instance.to_string())
        .collect();
    assert_eq!(
        ids,
        vec!["kv-1", "kv-2"],
        "the unknown node's placement skipped"
    );
    assert_eq!(
        revision(store, &a)?,
        2,
        "one bump per change, as one by one"
    );

    // A move and a removal in one pass: both nodes change, generations go on.
    let touched = store.apply_assignments(
        &[place(b, "kv-1"), AssignmentOp::Remove(instance("kv-2"))],
        None,
    )?;
    assert_eq!(touched, BTreeSet::from([a, b]));
    assert_eq!(
        store.assignments()?.as_slice(),
        &[(b, assignment_at("kv-1", 2))]
    );
    let touched = store.apply_assignments(
        &[AssignmentOp::Remove(instance("nope")), place(a, "kv-2")],
        None,
    )?;
    assert_eq!(touched, BTreeSet::from([a]));
    assert_eq!(
        store.desired_state(&a)?.instances,
        vec![assignment_at("kv-2", 2)],
        "a removed id placed again in a pass goes on from its last generation"
    );
    Ok(())
}

fn revisions_only_grow_and_bump_revisions_bumps_each_once(store: &dyn Store) -> anyhow::Result<()> {
    let (a, b, c) = (enrol(store, 1)?, enrol(store, 2)?, enrol(store, 3)?);
    store.bump_revisions(&[])?;
    store.bump_revisions(&[a, b])?;
    assert_eq!(
        (
            revision(store, &a)?,
            revision(store, &b)?,
            revision(store, &c)?
        ),
        (1, 1, 0)
    );
    let mut last = revision(store, &a)?;
    for step in 0..10 {
        match step % 3 {
            0 => {
                store.put_assignment(&a, &assignment("kv-0", "kv"))?;
            }
            1 => store.bump_revisions(&[a])?,
            _ => {
                store.remove_assignment(&instance("kv-0"))?;
            }
        }
        let now = revision(store, &a)?;
        assert!(now > last, "step {step}: revision {now} after {last}");
        last = now;
    }
    assert_eq!(revision(store, &b)?, 1, "other nodes untouched");
    Ok(())
}

fn every_write_of_assignments_wakes_the_watchers(store: &dyn Store) -> anyhow::Result<()> {
    let a = enrol(store, 1)?;
    let mut changes = store.changes();
    changes.mark_unchanged();
    store.put_assignment(&a, &assignment("kv-0", "kv"))?;
    woken(&mut changes, "put_assignment")?;
    store.apply_assignments(&[AssignmentOp::Remove(instance("kv-0"))], None)?;
    woken(&mut changes, "apply_assignments")?;
    store.put_assignment(&a, &assignment("kv-0", "kv"))?;
    changes.mark_unchanged();
    store.remove_assignment(&instance("kv-0"))?;
    woken(&mut changes, "remove_assignment")?;
    store.bump_revisions(&[a])?;
    woken(&mut changes, "bump_revisions")?;
    Ok(())
}

/// Checks that the watch moved since it was last seen, and marks it seen.
fn woken(changes: &mut tokio::sync::watch::Receiver<u64>, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(changes.has_changed()?, "{what} did not wake the watchers");
    changes.mark_unchanged();
    Ok(())
}

/// Readers never see half a pass: while a writer replaces one pass's five instances by the
/// next pass's five, in one call each, every read shows exactly one pass.
fn a_pass_is_seen_whole_or_not_at_all(db: &TestDb) -> anyhow::Result<()> {
    let store = db.open()?;
    let (a, b) = (enrol(&*store, 1)?, enrol(&*store, 2)?);
    let pass = |k: usize| -> Vec<String> { (0..5).map(|i| format!("p{k}-{i}")).collect() };
    let done = Arc::new(AtomicBool::new(false));
    // On a shared engine the reader is another master.
    let reader_store = if store.shared() {
        db.open()?
    } else {
        store.clone()
    };
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || -> anyhow::Result<usize> {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                let mut seen: Vec<String> = reader_store
                    .assignments()?
                    .iter()
                    .map(|(_, s)| s.instance.to_string())
                    .collect();
                seen.sort();
                let whole = seen.is_empty()
                    || seen
                        .first()
                        .and_then(|f| f.split('-').next())
                        .and_then(|p| p.strip_prefix('p'))
                        .and_then(|k| k.parse::<usize>().ok())
                        .is_some_and(|k| seen == pass(k));
                anyhow::ensure!(whole, "a read saw part of a pass: {seen:?}");
                reads += 1;
            }
            Ok(reads)
        })
    };
    for k in 0..20 {
        let mut ops: Vec<AssignmentOp> = if k == 0 {
            Vec::new()
        } else {
            pass(k - 1)
                .iter()
                .map(|id| AssignmentOp::Remove(instance(id)))
                .collect()
        };
        for (i, id) in pass(k).iter().enumerate() {
            ops.push(AssignmentOp::Place {
                node: if i % 2 == 0 { a } else { b },
                spec: Box::new(assignment(id, "kv")),
            });
        }
        store.apply_assignments(&ops, None)?;
    }
    done.store(true, Ordering::Relaxed);
    let reads = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader panicked"))??;
    assert!(reads > 0);
    let mut last: Vec<String> = store
        .assignments()?
        .iter()
        .map(|(_, s)| s.instance.to_string())
        .collect();
    last.sort();
    assert_eq!(last, pass(19));
    Ok(())
}

crate::engines!(
    store: [
        generations_grow_across_moves_and_removals,
        a_pass_skips_unknown_nodes_and_answers_the_changed_ones,
        revisions_only_grow_and_bump_revisions_bumps_each_once,
        every_write_of_assignments_wakes_the_watchers,
    ],
    db: [a_pass_is_seen_whole_or_not_at_all],
);
