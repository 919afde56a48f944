//! Two masters on one PostgreSQL database, end to end with real agents: each serves node
//! sessions and the operator API; a deployment written through one runs on nodes connected to
//! the other; `kill -9` of the master holding the scheduler lease loses no acknowledged write,
//! the survivor schedules within seconds, the dead master's agents reconnect to it, and a home
//! lost afterwards is healed by it.
//!
//! Needs `HEARTH_TEST_POSTGRES` (run `eval "$(scripts/pg-cluster start)"`); skipped with a
//! message without it, and failed under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hearth_tests::deploy::{THREE_HOMES, cli_ok, running, upload_static_site};
use hearth_tests::eventually;
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::node::NodeProc;
use hearth_tests::pg::TestDatabase;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// The nodes that have a session with `m` now.
async fn connected_to(m: &MasterProc) -> BTreeSet<String> {
    let (status, v) = m.get("/v1/nodes").await;
    assert_eq!(status, 200, "{v}");
    v.as_array()
        .or_else(|| v["nodes"].as_array())
        .unwrap()
        .iter()
        .filter(|n| n["connected"] == true)
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A metric of `m` without labels, if it answers.
async fn metric(m: &MasterProc, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{}/metrics", m.http))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Whether `m`'s metrics say it holds the scheduler lease.
async fn scheduling(m: &MasterProc) -> bool {
    metric(m, "hearth_master_scheduling").await == Some(1.0)
}

fn view(m: &MasterProc, name: &str) -> Value {
    serde_json::from_str(&cli_ok(m, &["deployment", "show", name, "--json"])).unwrap()
}

#[tokio::test]
async fn two_masters_share_one_postgres_and_survive_the_loss_of_either() {
    let Some(db) = TestDatabase::create("two_masters_share_one_postgres").await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = db.url.clone();
    let args = |name: &'static str| -> Vec<&str> {
        let mut a = FAST.to_vec();
        a.extend(["--store", store.as_str(), "--name", name]);
        a
    };
    let a = MasterProc::start(&tmp.path().join("a"), &args("a"));
    let b = MasterProc::start_sharing(&tmp.path().join("b"), &a, &args("b"));
    let both = eventually(WAIT, async || {
        (scheduling(&a).await ^ scheduling(&b).await).then_some(())
    })
    .await;
    assert!(
        both.is_some(),
        "exactly one master schedules:\n{}\n{}",
        a.log(),
        b.log()
    );

    // Both masters know each other before tokens are made.
    for m in [&a, &b] {
        let two = eventually(WAIT, async || {
            (metric(m, "hearth_master_masters").await == Some(2.0)).then_some(())
        })
        .await;
        assert!(
            two.is_some(),
            "{} does not see two masters:\n{}",
            m.quic,
            m.log()
        );
    }
    // The recipe is published through one master only: the other serves it too.
    let recipe = upload_static_site(&a, tmp.path(), |r| r);

    // The token lists both masters; half the homes enrol through each.
    let token_a = a.token(&[]);
    assert!(
        token_a.contains(&a.quic.to_string()) && token_a.contains(&b.quic.to_string()),
        "the token names every master: {token_a}"
    );
    let places = [
        THREE_HOMES[0],
        THREE_HOMES[1],
        THREE_HOMES[2],
        ("NL", "KPN", "home-d"),
    ];
    let mut nodes: Vec<NodeProc> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for (i, at) in places.iter().enumerate() {
        let (via, token) = if i % 2 == 0 {
            (&a, a.token(&[]))
        } else {
            (&b, b.token(&[]))
        };
        let node =
            NodeProc::enrol_and_run_at(&tmp.path().join(format!("n{i}")), via.quic, &token, *at);
        ids.push(node.status()["node"].as_str().unwrap().to_owned());
        nodes.push(node);
    }
    // Every master sees every node active, wherever its session is.
    for m in [&a, &b] {
        for id in &ids {
            let up = eventually(WAIT, async || {
                (m.node_state(id).await == "active").then_some(())
            })
            .await;
            assert!(
                up.is_some(),
                "node {id} not active on {}:\n{}",
                m.quic,
                m.log()
            );
        }
    }
    let on_a = connected_to(&a).await;
    let on_b = connected_to(&b).await;
    assert_eq!(on_a.len() + on_b.len(), 4, "a: {on_a:?} b: {on_b:?}");
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "sessions on both masters"
    );

    // A deployment written through each master runs on homes of both.
    cli_ok(
        &b,
        &["deploy", "web", "--recipe", &recipe, "--replicas", "4"],
    );
    let placed = eventually(WAIT, async || {
        let d = view(&a, "web");
        (running(&d).len() == 4).then_some(d)
    })
    .await;
    assert!(
        placed.is_some(),
        "web not running 4:\n{}\n{}",
        a.log(),
        b.log()
    );

    // Write deployments through both masters while the scheduling one is killed.
    let (leader, survivor) = if scheduling(&a).await { (a, b) } else { (b, a) };
    let mut leader = leader;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writer = {
        let acked = acked.clone();
        let masters = [leader.dir.clone(), survivor.dir.clone()];
        let recipe = recipe.clone();
        std::thread::spawn(move || {
            for k in 0..24 {
                let name = format!("w{k}");
                let out = std::process::Command::new(hearth_tests::bin("hearth"))
                    .arg("--data-dir")
                    .arg(&masters[k % 2])
                    .args(["deploy", &name, "--recipe", &recipe, "--replicas", "1"])
                    .output()
                    .expect("run hearth");
                if out.status.success() {
                    acked.lock().unwrap().push(name);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let dead_sessions = connected_to(&leader).await;
    leader.kill9();
    let killed = Instant::now();
    let schedules = eventually(WAIT, async || scheduling(&survivor).await.then_some(())).await;
    assert!(
        schedules.is_some(),
        "the survivor never took the lease:\n{}",
        survivor.log()
    );
    let took_lease = killed.elapsed();
    let back = eventually(WAIT, async || {
        (connected_to(&survivor).await.len() == 4).then_some(())
    })
    .await;
    assert!(
        back.is_some(),
        "agents of the dead master not back on the survivor: {:?} of {dead_sessions:?}\n{}",
        connected_to(&survivor).await,
        survivor.log()
    );
    let reconnected = killed.elapsed();
    writer.join().unwrap();
    eprintln!(
        "failover: lease taken after {took_lease:?}, {} agents back after {reconnected:?}",
        dead_sessions.len()
    );

    // Nothing acknowledged is lost, and every acknowledged deployment runs.
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 12,
        "the survivor's writes succeed: {acked:?}"
    );
    let listed = cli_ok(&survivor, &["deployments", "--json"]);
    for name in &acked {
        assert!(
            listed.contains(&format!("\"{name}\"")),
            "{name} lost: {listed}"
        );
    }
    for name in acked.iter().chain(std::iter::once(&"web".to_owned())) {
        let want = if name == "web" { 4 } else { 1 };
        let runs = eventually(WAIT, async || {
            (running(&view(&survivor, name)).len() == want).then_some(())
        })
        .await;
        assert!(
            runs.is_some(),
            "{name} not running {want} after failover:\n{}",
            survivor.log()
        );
    }

    // A home lost after the failover is healed by the survivor: `web` asks for 4 replicas in
    // distinct homes and 4 homes exist, so the lost home's replica waits, and comes back when
    // the home does.
    let d = view(&survivor, "web");
    let victim = running(&d)[0].1.clone();
    let index = ids.iter().position(|id| *id == victim).unwrap();
    let w_on_victim: Vec<String> = acked
        .iter()
        .filter(|n| {
            running(&view(&survivor, n))
                .iter()
                .any(|(_, node)| *node == victim)
        })
        .cloned()
        .collect();
    nodes[index].kill9();
    let down = eventually(WAIT, async || {
        (survivor.node_state(&victim).await == "down").then_some(())
    })
    .await;
    assert!(
        down.is_some(),
        "the killed home never went down on the survivor"
    );
    for name in &w_on_victim {
        let healed = eventually(WAIT, async || {
            let d = view(&survivor, name);
            let r = running(&d);
            (r.len() == 1 && r[0].1 != victim).then_some(())
        })
        .await;
        assert!(
            healed.is_some(),
            "{name} not re-placed off the dead home:\n{}",
            survivor.log()
        );
    }
    nodes[index] = NodeProc::run(&tmp.path().join(format!("n{index}")));
    let whole = eventually(WAIT, async || {
        (running(&view(&survivor, "web")).len() == 4).then_some(())
    })
    .await;
    assert!(
        whole.is_some(),
        "web not back to 4 after the home returned:\n{}",
        survivor.log()
    );
    drop(nodes);
    drop(survivor);
    drop(leader);
    drop(db);
}
