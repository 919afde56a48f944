//! The truth about replicas, end to end with real agents: partial deployments run what fits and
//! heal onto the one free home; a shortfall stays in the notes for as long as it lasts; replicas
//! of a dead home are never shown as running; spread is restored after an outage, and drains
//! move replicas, make-before-break (never fewer serving replicas than before).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::collections::BTreeSet;
use std::time::Duration;

use hearth_tests::deploy::{THREE_HOMES, cli_ok, homes, upload_static_site};
use hearth_tests::eventually;
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::node::NodeProc;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

async fn view(m: &MasterProc, name: &str) -> Value {
    let (status, v) = m.get(&format!("/v1/deployments/{name}")).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// (instance, node) of the replicas that really serve.
fn serving(d: &Value) -> Vec<(String, String)> {
    d["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["serving"] == true)
        .map(|r| {
            (
                r["instance"].as_str().unwrap().to_owned(),
                r["node"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn notes(d: &Value) -> Vec<String> {
    d["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

/// Replicas on `dead` nodes shown as running or healthy.
fn shown_alive_on(d: &Value, dead: &BTreeSet<String>) -> Vec<Value> {
    d["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| dead.contains(r["node"].as_str().unwrap()))
        .filter(|r| r["state"] == "running" || r["health"] == "healthy" || r["serving"] == true)
        .cloned()
        .collect()
}

#[tokio::test]
async fn partial_deployments_run_what_fits_and_heal_onto_the_one_free_home() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let places = [
        ("BE", "Proximus", "home-a"),
        ("BE", "Telenet", "home-b"),
        ("BE", "Orange", "home-c"),
        ("BE", "Scarlet", "home-d"),
        ("FR", "Free", "home-e"),
    ];
    let (mut nodes, ids) = homes(&m, tmp.path(), &places, WAIT).await;
    let recipe = upload_static_site(&m, tmp.path(), |r| r);

    // Six replicas on five homes: the deploy warns at once, five run, the note says why.
    let out = m.cli(&["deploy", "big", "--recipe", &recipe, "--replicas", "6"]);
    assert!(out.status.success(), "stored all the same");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: 5 of 6 replicas placed: needs 6 replicas in distinct homes in the fleet, 5 possible"),
        "{stderr}"
    );
    assert!(!stderr.contains("labels"), "no labels were asked: {stderr}");
    let five = eventually(WAIT, async || {
        Some(view(&m, "big").await).filter(|d| serving(d).len() == 5 && !notes(d).is_empty())
    })
    .await;
    let d =
        five.unwrap_or_else(|| panic!("not 5 serving: {}\n{}", futures_view(&m, "big"), m.log()));
    assert_eq!(d["running"], 5);
    assert!(notes(&d)[0].starts_with("5 of 6 replicas placed"), "{d}");
    // `--json` carries the same warning; `deployment show` names each replica's home, ISP and
    // country and the spread achieved.
    let again = cli_ok(
        &m,
        &[
            "deploy",
            "--json",
            "big",
            "--recipe",
            &recipe,
            "--replicas",
            "6",
        ],
    );
    let again: Value = serde_json::from_str(&again).unwrap();
    assert!(
        again["warnings"][0]
            .as_str()
            .is_some_and(|w| w.starts_with("5 of 6 replicas placed")),
        "{again}"
    );
    let shown = cli_ok(&m, &["deployment", "show", "big"]);
    assert!(
        shown.contains("spread:    5 homes, 2 countries, 5 ISPs, no spread asked beyond homes"),
        "{shown}"
    );
    for (cc, isp, home) in &places {
        let row = shown
            .lines()
            .find(|l| l.contains(home))
            .unwrap_or_else(|| panic!("no row for {home}: {shown}"));
        assert!(row.contains(isp) && row.contains(cc), "{row}");
    }
    // `--wait` fails when placement does not complete.
    let waited = m.cli(&[
        "deploy",
        "big",
        "--recipe",
        &recipe,
        "--replicas",
        "6",
        "--wait",
        "2s",
    ]);
    assert!(!waited.status.success());
    assert!(String::from_utf8_lossy(&waited.stderr).contains("5 of 6 running"));
    cli_ok(&m, &["undeploy", "big"]);

    // Three replicas restricted to BE; two of their homes die; one BE home is free.
    let out = cli_ok(
        &m,
        &[
            "deploy",
            "be-only",
            "--recipe",
            &recipe,
            "--replicas",
            "3",
            "--countries",
            "BE",
            "--wait",
            "90s",
        ],
    );
    assert!(out.contains("3 of 3 running"), "{out}");
    let d = view(&m, "be-only").await;
    let before = serving(&d);
    assert_eq!(before.len(), 3);
    let dead: BTreeSet<String> = before.iter().take(2).map(|(_, n)| n.clone()).collect();
    for n in &dead {
        let i = ids.iter().position(|x| x == n).unwrap();
        nodes[i].kill9();
    }
    // Between a home's silence and its node being declared down, its replicas are shown as
    // unknown (node suspect), not running, and not counted as serving.
    let started = std::time::Instant::now();
    let mut suspect_seen = None;
    while suspect_seen.is_none() && started.elapsed() < WAIT {
        let d = view(&m, "be-only").await;
        let on_dead: Vec<&Value> = d["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| dead.contains(r["node"].as_str().unwrap()))
            .collect();
        if on_dead.iter().any(|r| r["state"] == "lost") && suspect_seen.is_none() {
            panic!("a dead home's replica went lost without being shown suspect first: {d}");
        }
        if let Some(r) = on_dead.iter().find(|r| r["state"] == "unknown") {
            assert!(
                r["detail"].as_str().unwrap().starts_with("node suspect"),
                "{r}"
            );
            assert_eq!(r["health"], "unknown", "{r}");
            assert_eq!(r["serving"], false, "{r}");
            suspect_seen = Some(d);
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let d = suspect_seen.expect("no view showed the dead homes' replicas as suspect");
    assert!(
        serving(&d).iter().all(|(_, n)| !dead.contains(n)),
        "a suspect home's replica counted as serving: {d}"
    );
    let free = ids
        .iter()
        .enumerate()
        .find(|(i, id)| places[*i].0 == "BE" && !before.iter().any(|(_, n)| n == *id))
        .map(|(_, id)| id.clone())
        .unwrap();
    let healed = eventually(WAIT, async || {
        let d = view(&m, "be-only").await;
        let s = serving(&d);
        let said = notes(&d)
            .iter()
            .any(|n| n.starts_with("2 of 3 replicas placed"));
        (s.len() == 2 && s.iter().any(|(_, n)| *n == free) && said).then_some(d)
    })
    .await;
    let d = healed.unwrap_or_else(|| {
        panic!(
            "not healed onto {free}: {}\n{}",
            futures_view(&m, "be-only"),
            m.log()
        )
    });
    assert!(serving(&d).iter().all(|(_, n)| !dead.contains(n)));
    // For as long as the shortfall lasts, the note says it, with the same since; the replica
    // left on a dead home is lost, never running.
    let since = d["conditions"][0]["since_ms"].as_u64().unwrap();
    for _ in 0..12 {
        let d = view(&m, "be-only").await;
        let n = notes(&d);
        assert!(
            n.iter()
                .any(|n| n.starts_with("2 of 3 replicas placed, 1 replica on lost nodes")),
            "{d}"
        );
        assert_eq!(d["conditions"][0]["since_ms"].as_u64(), Some(since));
        assert_eq!(d["running"], 2);
        assert!(shown_alive_on(&d, &dead).is_empty(), "{d}");
        let lost: Vec<&Value> = d["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| dead.contains(r["node"].as_str().unwrap()))
            .collect();
        assert_eq!(lost.len(), 1, "{d}");
        assert_eq!(lost[0]["state"], "lost");
        assert!(
            lost[0]["detail"].as_str().unwrap().starts_with("node down"),
            "{d}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let shown = cli_ok(&m, &["deployment", "show", "be-only"]);
    eprintln!("{shown}");
    assert!(
        shown.contains("deployment be-only: 3 replicas wanted, 2 running"),
        "{shown}"
    );
    assert!(
        shown.contains("INSTANCE") && shown.contains("home-"),
        "{shown}"
    );
    assert!(
        shown.contains("lost") && shown.contains("events:"),
        "{shown}"
    );
    assert!(shown.contains("re-placed"), "{shown}");
}

/// The view as text, for failure messages.
fn futures_view(m: &MasterProc, name: &str) -> String {
    String::from_utf8_lossy(&m.cli(&["deployment", "show", name, "--json"]).stdout).into_owned()
}

#[tokio::test]
async fn spread_is_restored_after_the_outage_and_drains_start_the_new_copy_first() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let mut places = THREE_HOMES.to_vec();
    places.push(("BE", "Telenet", "home-d"));
    let (mut nodes, ids) = homes(&m, tmp.path(), &places, WAIT).await;
    let recipe = upload_static_site(&m, tmp.path(), |r| r);
    cli_ok(
        &m,
        &[
            "deploy",
            "web",
            "--recipe",
            &recipe,
            "--replicas",
            "3",
            "--spread",
            "country",
            "--wait",
            "90s",
        ],
    );
    let d = view(&m, "web").await;
    assert_eq!(d["spread"]["countries"], 3, "{d}");
    let fr = ids[1].clone();
    assert!(serving(&d).iter().any(|(_, n)| *n == fr), "{d}");

    // FR goes dark: its replica is re-placed in BE; the spread is degraded and says so.
    nodes[1].kill9();
    let degraded = eventually(WAIT, async || {
        let d = view(&m, "web").await;
        let said = d["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "countries");
        (serving(&d).len() == 3 && d["spread"]["countries"] == 2 && said).then_some(d)
    })
    .await
    .unwrap_or_else(|| panic!("not re-placed: {}\n{}", futures_view(&m, "web"), m.log()));
    let cond = degraded["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "countries")
        .cloned();
    let cond = cond.unwrap_or_else(|| panic!("no spread condition: {degraded}"));
    assert!(
        cond["detail"]
            .as_str()
            .unwrap()
            .starts_with("2 of 3 countries (BE, DE)"),
        "{cond}"
    );
    for _ in 0..8 {
        let d = view(&m, "web").await;
        let c = d["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == "countries")
            .cloned();
        assert_eq!(
            c.map(|c| c["since_ms"].clone()),
            Some(cond["since_ms"].clone()),
            "{d}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let shown = cli_ok(&m, &["deployment", "show", "web"]);
    eprintln!("{shown}");
    assert!(shown.contains("degraded since"), "{shown}");

    // FR returns: a replica moves back, make-before-break: never fewer than 3 serving.
    nodes[1] = NodeProc::run(&nodes[1].dir.clone());
    let mut fewest = usize::MAX;
    let restored = eventually(Duration::from_secs(60), async || {
        let d = view(&m, "web").await;
        fewest = fewest.min(serving(&d).len());
        let done = d["spread"]["countries"] == 3 && d["replicas"].as_array().unwrap().len() == 3;
        // The status is stored right after the pass's changes: wait for both.
        let settled = d["conditions"].as_array().unwrap().is_empty() && d["moving"].is_null();
        (done && settled && serving(&d).len() == 3).then_some(d)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "spread not restored: {}\n{}",
            futures_view(&m, "web"),
            m.log()
        )
    });
    assert!(fewest >= 3, "only {fewest} serving during the rebalancing");
    assert!(
        restored["conditions"].as_array().unwrap().is_empty(),
        "{restored}"
    );
    let (_, events) = m.get("/v1/deployments/web").await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in [
        "placed",
        "re-placed",
        "degraded",
        "moving",
        "moved",
        "restored",
    ] {
        assert!(kinds.contains(&k), "no {k} event: {kinds:?}");
    }

    // Drain DE: its replica's new copy starts and is healthy before the old one stops.
    let de = ids[2].clone();
    let on_de = serving(&restored)
        .into_iter()
        .find(|(_, n)| *n == de)
        .unwrap()
        .0;
    cli_ok(&m, &["node", "drain", &de]);
    let mut fewest = usize::MAX;
    let moved = eventually(Duration::from_secs(60), async || {
        let d = view(&m, "web").await;
        fewest = fewest.min(serving(&d).len());
        let gone = d["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["node"] != de.as_str());
        (gone && serving(&d).len() == 3).then_some(d)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "drain did not move: {}\n{}",
            futures_view(&m, "web"),
            m.log()
        )
    });
    assert!(fewest >= 3, "only {fewest} serving during the drain");
    assert!(serving(&moved).iter().all(|(i, _)| *i != on_de));
    let stopped = eventually(WAIT, async || {
        nodes[2].processes_of(&on_de).is_empty().then_some(())
    })
    .await;
    assert!(stopped.is_some(), "the drained copy still runs");
}

#[test]
fn a_closed_pipe_is_an_exit_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    for _ in 0..3 {
        m.token(&["--label", "pipe"]);
    }
    let mut child = std::process::Command::new(hearth_tests::bin("hearth"))
        .arg("--data-dir")
        .arg(&m.dir)
        .args(["token", "list", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before anything is written, as `| head -0` would.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}

#[test]
fn init_commands_with_a_closed_pipe_fail_cleanly_without_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    for (bin, flag, dir) in [
        ("hearth-master", "--data-dir", "master"),
        ("hearth-gateway", "--data", "gateway"),
    ] {
        let mut child = std::process::Command::new(hearth_tests::bin(bin))
            .args(["init", flag])
            .arg(tmp.path().join(dir))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{bin}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{bin}: {stderr}");
        assert!(tmp.path().join(dir).exists(), "{bin} initialised nothing");
    }
}
