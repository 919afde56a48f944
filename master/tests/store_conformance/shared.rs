//! Two masters on one shared database (PostgreSQL): what one writes reaches the other's
//! `subscribe()` as the right event, and the other's reads (cached lists included) see it. An
//! engine that is not shared (SQLite) says so and never sends an event.

use std::time::{Duration, Instant};

use hearth_master::store::{AdminState, StoreEvent};
use tokio::sync::broadcast::error::TryRecvError;

use crate::fixtures::{assignment, deployment, enrol, instance};
use crate::harness::{Engine, TestDb};

/// How long an event may take to reach the other master.
const EVENT_WAIT: Duration = Duration::from_secs(5);

/// Receives until an event `matches`, for at most [`EVENT_WAIT`]; the events passed over.
fn wait_event(
    rx: &mut tokio::sync::broadcast::Receiver<StoreEvent>,
    what: &str,
    matches: impl Fn(&StoreEvent) -> bool,
) -> anyhow::Result<Vec<StoreEvent>> {
    let deadline = Instant::now() + EVENT_WAIT;
    let mut passed = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) if matches(&e) => return Ok(passed),
            Ok(e) => passed.push(e),
            Err(TryRecvError::Empty) => {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "no {what} event within {EVENT_WAIT:?} (received {passed:?})"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(TryRecvError::Lagged(n)) => {
                anyhow::bail!("the subscription lagged ({n} events lost) waiting for {what}")
            }
            Err(TryRecvError::Closed) => {
                anyhow::bail!("the subscription closed waiting for {what}")
            }
        }
    }
}

fn an_engine_says_whether_it_is_shared(db: &TestDb) -> anyhow::Result<()> {
    let store = db.open()?;
    assert_eq!(store.shared(), db.engine == Engine::Postgres);
    if !store.shared() {
        let mut rx = store.subscribe();
        let node = enrol(&*store, 1)?;
        store.put_deployment(&deployment("kv"))?;
        store.put_assignment(&node, &assignment("kv-0", "kv"))?;
        assert!(
            matches!(rx.try_recv(), Err(TryRecvError::Empty)),
            "an engine no other master shares sends nothing"
        );
    }
    Ok(())
}

fn another_masters_writes_reach_this_one(db: &TestDb) -> anyhow::Result<()> {
    let (a, b) = (db.open()?, db.open()?);
    if !a.shared() {
        return Ok(());
    }
    let mut rx = b.subscribe();
    let node = enrol(&*a, 1)?;
    // The other master may start listening a little after it opened: bump until it hears.
    let deadline = Instant::now() + EVENT_WAIT;
    loop {
        a.bump_revisions(&[node])?;
        let heard = std::iter::from_fn(|| rx.try_recv().ok())
            .any(|e| matches!(&e, StoreEvent::Revisions(n) if n.contains(&node)));
        if heard {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the other master never heard a write"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let nodes_event =
        |id| move |e: &StoreEvent| matches!(e, StoreEvent::Nodes(n) if n.contains(&id));

    // Nodes: an enrolment and an administrative state.
    let second = enrol(&*a, 2)?;
    wait_event(&mut rx, "Nodes (enrolment)", nodes_event(second))?;
    assert!(b.node(&second)?.is_some());
    assert_eq!(
        a.set_admin(&second, AdminState::Draining)?,
        hearth_master::store::AdminChange::Set
    );
    wait_event(&mut rx, "Nodes (admin)", nodes_event(second))?;
    assert_eq!(
        b.node(&second)?.map(|n| n.admin),
        Some(AdminState::Draining)
    );

    // Data: a deployment, seen by the other's cached list and its changes() watch.
    assert!(b.deployments()?.is_empty(), "cached empty");
    let mut changes = b.changes();
    changes.mark_unchanged();
    a.put_deployment(&deployment("kv"))?;
    wait_event(&mut rx, "Data (deployment)", |e| *e == StoreEvent::Data)?;
    let names: Vec<String> = b.deployments()?.iter().map(|d| d.name.clone()).collect();
    assert_eq!(names, vec!["kv"], "the other master's cache was dropped");
    assert!(changes.has_changed()?, "and its changes() bumped");

    // Revisions and Data: an assignment.
    assert!(b.assignments()?.is_empty(), "cached empty");
    let revision = b.desired_state(&node)?.revision;
    a.put_assignment(&node, &assignment("kv-0", "kv"))?;
    let mut want_revisions = true;
    let mut want_data = true;
    let deadline = Instant::now() + EVENT_WAIT;
    while want_revisions || want_data {
        anyhow::ensure!(
            Instant::now() < deadline,
            "after an assignment: revisions event {}, data event {}",
            if want_revisions { "missing" } else { "seen" },
            if want_data { "missing" } else { "seen" },
        );
        match rx.try_recv() {
            Ok(StoreEvent::Revisions(n)) if n.contains(&node) => want_revisions = false,
            Ok(StoreEvent::Data) => want_data = false,
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(10)),
            Err(TryRecvError::Closed) => anyhow::bail!("the subscription closed"),
        }
    }
    let seen: Vec<String> = b
        .assignments()?
        .iter()
        .map(|(_, s)| s.instance.to_string())
        .collect();
    assert_eq!(seen, vec!["kv-0"]);
    assert_eq!(b.desired_state(&node)?.revision, revision + 1);

    // Reports.
    let report = hearth_master::store::SharedReport {
        node,
        master: "a".into(),
        status: hearth_protocol::messages::state::InstanceStatus {
            report: hearth_protocol::messages::state::InstanceReport {
                instance: instance("kv-0"),
                generation: 1,
                state: hearth_protocol::messages::state::InstanceState::Running,
                health: hearth_protocol::messages::state::Health::Unknown,
            },
            endpoints: Vec::new(),
            published: Default::default(),
            message: None,
        },
        at_ms: 5,
    };
    a.publish_reports("a", std::slice::from_ref(&report))?;
    wait_event(
        &mut rx,
        "Reports",
        |e| matches!(e, StoreEvent::Reports(i) if i.contains(&instance("kv-0"))),
    )?;
    assert_eq!(b.reports(None)?, vec![report]);

    // And the other way round: a compare-and-set write by the second reaches the first.
    let mut rx_a = a.subscribe();
    assert_eq!(
        a.deployments()?.first().map(|d| d.version),
        Some(1),
        "cached at 1"
    );
    let current = b
        .deployment("kv")?
        .ok_or_else(|| anyhow::anyhow!("kv missing"))?;
    assert!(b.replace_deployment(&current, &deployment("kv"))?);
    wait_event(&mut rx_a, "Data (replace)", |e| *e == StoreEvent::Data)?;
    assert_eq!(a.deployments()?.first().map(|d| d.version), Some(2));
    assert!(
        !a.replace_deployment(&current, &deployment("kv"))?,
        "stale for both masters"
    );
    Ok(())
}

crate::engines!(store: [], db: [an_engine_says_whether_it_is_shared, another_masters_writes_reach_this_one]);
