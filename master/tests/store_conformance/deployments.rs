//! Deployments: versions, compare-and-set on the version (also under a race of several
//! threads and, on a shared engine, several masters), removal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_master::store::{Store, StoredDeployment};

use crate::fixtures::{deployment, deployment_with};
use crate::harness::TestDb;

fn stored(store: &dyn Store, name: &str) -> anyhow::Result<StoredDeployment> {
    store
        .deployment(name)?
        .ok_or_else(|| anyhow::anyhow!("deployment {name} missing"))
}

fn a_put_deployment_counts_versions_from_one(store: &dyn Store) -> anyhow::Result<()> {
    assert_eq!(store.deployment("kv")?, None);
    assert!(store.deployments()?.is_empty());
    let mut d = deployment("kv");
    d.version = 40;
    d.rollout = Some(serde_json::json!({ "v": 1, "step": 2 }));
    store.put_deployment(&d)?;
    let first = stored(store, "kv")?;
    assert_eq!(first.version, 1, "the given version is ignored");
    assert_eq!((&first.spec, &first.rollout), (&d.spec, &d.rollout));
    let mut again = deployment_with("kv", serde_json::json!({ "name": "kv", "replicas": 3 }));
    again.rollout = None;
    store.put_deployment(&again)?;
    let second = stored(store, "kv")?;
    assert_eq!(second.version, 2);
    assert_eq!((&second.spec, &second.rollout), (&again.spec, &None));
    store.put_deployment(&deployment("a-first"))?;
    let listed: Vec<(String, u64)> = store
        .deployments()?
        .iter()
        .map(|d| (d.name.clone(), d.version))
        .collect();
    assert_eq!(
        listed,
        vec![("a-first".into(), 1), ("kv".into(), 2)],
        "by name"
    );
    Ok(())
}

fn a_replace_is_refused_on_a_stale_version(store: &dyn Store) -> anyhow::Result<()> {
    assert!(
        !store.replace_deployment(&deployment("kv"), &deployment("kv"))?,
        "unknown deployment"
    );
    assert_eq!(store.deployment("kv")?, None, "not created by a replace");
    store.put_deployment(&deployment("kv"))?;
    let v1 = stored(store, "kv")?;
    let new = deployment_with("kv", serde_json::json!({ "name": "kv", "replicas": 2 }));
    assert!(store.replace_deployment(&v1, &new)?);
    let v2 = stored(store, "kv")?;
    assert_eq!((v2.version, &v2.spec), (2, &new.spec));
    let late = deployment_with("kv", serde_json::json!({ "name": "kv", "replicas": 9 }));
    assert!(!store.replace_deployment(&v1, &late)?, "v1 is stale");
    assert_eq!(stored(store, "kv")?, v2, "nothing written");

    // The version is compared, never the JSON: an expected record with the current version
    // but another rendering of the spec still replaces it.
    let mut same_version =
        deployment_with("kv", serde_json::json!({ "replicas": 2, "name": "kv" }));
    same_version.version = 2;
    same_version.rollout = Some(serde_json::json!({ "x": 1 }));
    let mut third = late.clone();
    third.rollout = Some(serde_json::json!({ "v": 1 }));
    assert!(store.replace_deployment(&same_version, &third)?);
    let v3 = stored(store, "kv")?;
    assert_eq!(
        (v3.version, &v3.spec, &v3.rollout),
        (3, &third.spec, &third.rollout)
    );
    // A put in between makes the reader's version stale too.
    store.put_deployment(&deployment("kv"))?;
    assert!(!store.replace_deployment(&v3, &new)?);
    assert_eq!(stored(store, "kv")?.version, 4);
    Ok(())
}

fn a_removed_deployment_is_gone_and_its_name_starts_again(store: &dyn Store) -> anyhow::Result<()> {
    assert!(!store.remove_deployment("kv")?, "unknown");
    store.put_deployment(&deployment("kv"))?;
    store.put_deployment(&deployment("kv"))?;
    let mut changes = store.changes();
    changes.mark_unchanged();
    assert!(store.remove_deployment("kv")?);
    assert!(changes.has_changed()?, "a removal wakes the watchers");
    assert!(!store.remove_deployment("kv")?);
    assert_eq!(store.deployment("kv")?, None);
    assert!(store.deployments()?.is_empty());
    let stale = StoredDeployment {
        version: 2,
        ..deployment("kv")
    };
    assert!(!store.replace_deployment(&stale, &deployment("kv"))?);
    store.put_deployment(&deployment("kv"))?;
    assert_eq!(stored(store, "kv")?.version, 1);
    Ok(())
}

fn every_write_of_deployments_wakes_the_watchers(store: &dyn Store) -> anyhow::Result<()> {
    let mut changes = store.changes();
    changes.mark_unchanged();
    store.put_deployment(&deployment("kv"))?;
    assert!(changes.has_changed()?, "put_deployment");
    changes.mark_unchanged();
    let current = stored(store, "kv")?;
    assert!(store.replace_deployment(&current, &deployment("kv"))?);
    assert!(changes.has_changed()?, "replace_deployment");
    assert_eq!(
        store.deployments()?.first().map(|d| d.version),
        Some(2),
        "the shared list is read again after a write"
    );
    Ok(())
}

/// Threads × increments: each thread reads, adds its mark, writes with compare-and-set and, when
/// refused, reads again. Every mark must be there exactly once.
fn racing_read_modify_writes_lose_no_increment(db: &TestDb) -> anyhow::Result<()> {
    const THREADS: usize = 4;
    const EACH: usize = 10;
    const MAX_ATTEMPTS: usize = 2_000;
    let first = db.open()?;
    // On a shared engine half the threads are another master.
    let second = if first.shared() {
        db.open()?
    } else {
        first.clone()
    };
    first.put_deployment(&deployment_with(
        "kv",
        serde_json::json!({ "name": "kv", "count": 0, "marks": [] }),
    ))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store: Arc<dyn Store> = if t % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            std::thread::spawn(move || -> anyhow::Result<usize> {
                let mut refused = 0;
                for i in 0..EACH {
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        anyhow::ensure!(
                            attempts <= MAX_ATTEMPTS && Instant::now() < deadline,
                            "thread {t} gave up on increment {i} after {attempts} attempts"
                        );
                        let current = stored(&*store, "kv")?;
                        let mut spec = current.spec.clone();
                        let count = spec.get("count").and_then(|c| c.as_u64()).unwrap_or(0);
                        let object = spec
                            .as_object_mut()
                            .ok_or_else(|| anyhow::anyhow!("the spec is no object"))?;
                        object.insert("count".into(), (count + 1).into());
                        if let Some(marks) = object.get_mut("marks").and_then(|m| m.as_array_mut())
                        {
                            marks.push(format!("{t}.{i}").into());
                        }
                        let new = deployment_with("kv", spec);
                        if store.replace_deployment(&current, &new)? {
                            break;
                        }
                        refused += 1;
                    }
                }
                Ok(refused)
            })
        })
        .collect();
    let mut refused = 0;
    for w in workers {
        refused += w
            .join()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
    }
    let last = stored(&*first, "kv")?;
    let total = THREADS * EACH;
    assert_eq!(
        last.spec.get("count").and_then(|c| c.as_u64()),
        Some(total as u64)
    );
    assert_eq!(last.version, 1 + total as u64, "one version per increment");
    let mut marks: Vec<String> = last
        .spec
        .get("marks")
        .and_then(|m| m.as_array())
        .map(|m| {
            m.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    marks.sort();
    let mut expected: Vec<String> = (0..THREADS)
        .flat_map(|t| (0..EACH).map(move |i| format!("{t}.{i}")))
        .collect();
    expected.sort();
    assert_eq!(
        marks, expected,
        "every increment exactly once ({refused} refusals)"
    );
    assert_eq!(stored(&*second, "kv")?, last, "both masters read the same");
    Ok(())
}

crate::engines!(
    store: [
        a_put_deployment_counts_versions_from_one,
        a_replace_is_refused_on_a_stale_version,
        a_removed_deployment_is_gone_and_its_name_starts_again,
        every_write_of_deployments_wakes_the_watchers,
    ],
    db: [racing_read_modify_writes_lose_no_increment],
);
