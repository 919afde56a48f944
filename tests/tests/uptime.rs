//! Uptime end to end (issue 16): a real master probing at random times with containment, its
//! ledger read back over the public API. A real agent passes its probes; a node that
//! heartbeats but never answers earns a score of 0, is suspended, told so and given no new
//! replicas; a node that drops a chosen probe gets the very same probe again, and cannot dodge
//! it by waiting for a fresh one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::time::{Duration, Instant};

use hearth_ledger::entry::{Body, Entry, ProbeEntry, ProbeOutcome};
use hearth_protocol::messages::audit::{AuditAnswer, AuditProbe};
use hearth_protocol::messages::session::{Counters, Heartbeat};
use hearth_protocol::messages::standing::{Standing, StandingLevel};
use hearth_protocol::{Message, NodeId, Resources, SecretKey};
use hearth_tests::deploy::{cli_ok, deployment, upload_static_site};
use hearth_tests::eventually;
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::node::{NodeProc, TestSession, enrol_node};

const WAIT: Duration = Duration::from_secs(20);

/// Every ledger entry, read from the master's `DATA/ledger/entries.log` (the leaf lines as
/// written; a torn last line, not yet synced, is left out).
async fn entries(m: &MasterProc) -> Vec<Entry> {
    let text =
        std::fs::read_to_string(m.dir.join("ledger").join("entries.log")).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|l| Entry::parse(l.as_bytes()).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The probe entries of `node`, in log order.
async fn probes_of(m: &MasterProc, node: &NodeId) -> Vec<ProbeEntry> {
    entries(m)
        .await
        .into_iter()
        .filter_map(|e| match e.body {
            Body::Probe(p) if p.node == *node => Some(p),
            _ => None,
        })
        .collect()
}

/// A session that heartbeats (without asking for acks) and hands every other message on.
struct Node {
    session: TestSession,
    seq: u64,
    next_beat: Instant,
}

impl Node {
    async fn open(m: &MasterProc, key: &SecretKey) -> Self {
        Self {
            session: TestSession::open(m.quic, m.id, key).await,
            seq: 1000,
            next_beat: Instant::now(),
        }
    }

    /// The next message that is not a heartbeat ack, heartbeating meanwhile; None after `limit`.
    async fn next(&mut self, limit: Duration) -> Option<Message> {
        let until = Instant::now() + limit;
        loop {
            if Instant::now() >= self.next_beat {
                self.seq += 1;
                let hb = Heartbeat {
                    seq: self.seq,
                    used: Resources::default(),
                    applied_revision: 0,
                    instances: vec![],
                    counters: Counters::default(),
                    ack: false,
                };
                self.session
                    .control
                    .send(&Message::Heartbeat(hb))
                    .await
                    .unwrap();
                self.next_beat = Instant::now() + Duration::from_millis(200);
            }
            let now = Instant::now();
            if now >= until {
                return None;
            }
            let wait = self.next_beat.min(until) - now;
            match tokio::time::timeout(wait, self.session.control.recv()).await {
                Ok(Ok(Some(Message::HeartbeatAck(_)))) => {}
                Ok(Ok(Some(m))) => return Some(m),
                Ok(other) => panic!("session ended: {other:?}"),
                Err(_) => {}
            }
        }
    }

    /// The next probe (its copy) within `limit`, keeping the latest standing seen.
    async fn probe(
        &mut self,
        limit: Duration,
        standing: &mut Option<Standing>,
    ) -> Option<AuditProbe> {
        let until = Instant::now() + limit;
        while let Some(m) = self
            .next(until.saturating_duration_since(Instant::now()))
            .await
        {
            match m {
                Message::AuditProbe(p) => return Some(p),
                Message::Standing(s) => *standing = Some(s),
                _ => {}
            }
        }
        None
    }

    async fn answer(&mut self, probe: &AuditProbe, key: &SecretKey) {
        let answer = AuditAnswer::signed(probe, key);
        self.session
            .control
            .send(&Message::AuditAnswer(answer))
            .await
            .unwrap();
    }
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = FAST.to_vec();
    all.extend_from_slice(extra);
    all
}

#[tokio::test]
async fn a_real_agent_passes_random_probes_signed_in_the_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &args(&["--probe-mean", "300ms"]));
    let agent = NodeProc::enrol_and_run(&tmp.path().join("agent"), m.quic, &m.token(&[]));
    let id: NodeId = agent.status()["node"].as_str().unwrap().parse().unwrap();
    let passed = eventually(WAIT, async || {
        let p = probes_of(&m, &id).await;
        (p.iter().filter(|e| e.passed()).count() >= 5).then_some(p)
    })
    .await
    .unwrap_or_else(|| panic!("no passed probes in the ledger; log:\n{}", m.log()));
    for e in &passed {
        assert!(e.passed(), "a running agent failed a probe: {e:?}");
        assert_eq!(e.verify(), Ok(()), "{e:?}");
        // A probe sent before the agent's session opened is answered on a later copy.
        assert!((1..=3).contains(&e.attempts), "{e:?}");
    }
    // Random numbers and nonces, distinct per probe; issue times spread out.
    let mut nonces: Vec<_> = passed.iter().map(|e| e.nonce).collect();
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), passed.len());
    // The agent is told its standing and shows it.
    let shown = eventually(WAIT, async || {
        let s = agent.status();
        s["standing"]["standing"].is_string().then_some(s)
    })
    .await
    .unwrap_or_else(|| panic!("no standing reached the agent: {}", agent.status()));
    assert_eq!(shown["standing"]["standing"], "good", "{shown}");
    let text = std::process::Command::new(hearth_tests::bin("hearth-node"))
        .args(["status", "--data-dir"])
        .arg(tmp.path().join("agent"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("standing: good (online score"), "{text}");
    // And the operator sees it too.
    let node = cli_ok(&m, &["node", "show", &id.to_string()]);
    assert!(node.contains("standing:       good"), "{node}");
}

#[tokio::test]
async fn a_node_that_drops_a_probe_gets_the_same_one_back_and_cannot_dodge_it() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &args(&["--probe-mean", "200ms"]));
    let (id, key) = enrol_node(&tmp.path().join("n"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    let mut node = Node::open(&m, &key).await;
    let mut standing = None;

    // Drop the first copy of a probe: after 10 s the same probe (number, nonce, time) returns.
    let chosen = node
        .probe(WAIT, &mut standing)
        .await
        .expect("a first probe");
    let again = node
        .probe(Duration::from_secs(15), &mut standing)
        .await
        .expect("a re-sent probe");
    assert_eq!(again, chosen, "the re-sent copy is identical");
    node.answer(&again, &key).await;
    let logged = eventually(WAIT, async || {
        probes_of(&m, &id)
            .await
            .into_iter()
            .find(|e| e.probe == chosen.probe)
    })
    .await
    .unwrap_or_else(|| panic!("the answered probe is not in the ledger; {}", m.log()));
    assert!(logged.passed() && logged.verify().is_ok(), "{logged:?}");
    assert_eq!(logged.nonce, chosen.nonce);
    // At least the copy it dropped and the one it answered (one more if the probe was first
    // sent before the session opened).
    assert!((2..=3).contains(&logged.attempts), "{logged:?}");

    // Drop every copy of the next probe: the same probe comes back until it fails, and no
    // fresh probe comes meanwhile, though one would be due every 200 ms on average.
    let dodged = node
        .probe(WAIT, &mut standing)
        .await
        .expect("another probe");
    assert_ne!(dodged.nonce, chosen.nonce);
    let mut copies = 1;
    let started = Instant::now();
    while let Some(p) = node.probe(Duration::from_secs(12), &mut standing).await {
        if p != dodged {
            break; // the next probe: the dodged one must have ended
        }
        copies += 1;
    }
    assert_eq!(copies, 3, "three sends in all");
    assert!(started.elapsed() >= Duration::from_secs(20));
    let failed = probes_of(&m, &id)
        .await
        .into_iter()
        .find(|e| e.probe == dodged.probe)
        .expect("the dodged probe is logged");
    assert_eq!(failed.nonce, dodged.nonce);
    assert_eq!(failed.issued_at_ms, dodged.issued_at_ms);
    assert_eq!(failed.attempts, 3);
    assert!(
        matches!(&failed.outcome, ProbeOutcome::Failed { reason } if reason.contains("no answer to 3 sends")),
        "{failed:?}"
    );
}

#[tokio::test]
async fn a_node_that_only_heartbeats_scores_zero_is_suspended_told_and_gets_no_replicas() {
    let tmp = tempfile::tempdir().unwrap();
    // One-minute windows, judged from 2 probes; one send per probe so a silent node fails a
    // probe every ~10 s.
    let policy = tmp.path().join("policy.toml");
    std::fs::write(
        &policy,
        "window_ms = 60000\nscore_windows = 60\nmin_probes = 2\nwarn_ppm = 950000\n\
         suspend_ppm = 600000\nfibre_credit_cents = 3000\nuptime_threshold_ppm = 950000\n\
         bandwidth_millicents_per_gib = 1000\ndefault_power_w = 30\n",
    )
    .unwrap();
    let policy = policy.to_str().unwrap().to_owned();
    let m = MasterProc::start(
        tmp.path(),
        &args(&[
            "--probe-mean",
            "200ms",
            "--probe-attempts",
            "1",
            "--score-every",
            "1s",
            "--credit-policy",
            &policy,
        ]),
    );
    let site = upload_static_site(&m, tmp.path(), |t| t);
    let (id, key) = enrol_node(&tmp.path().join("n"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    let mut node = Node::open(&m, &key).await;
    let mut standing = None;
    // Never answers; waits for its standing to turn to suspended (a window closes 2 min after
    // it ends, so this takes up to about 4 minutes).
    let suspended = eventually(Duration::from_secs(300), async || {
        let _ = node.probe(Duration::from_millis(500), &mut standing).await;
        standing
            .clone()
            .filter(|s| s.standing == StandingLevel::Suspended)
    })
    .await
    .unwrap_or_else(|| panic!("never suspended (last standing {standing:?}); {}", m.log()));
    assert_eq!(suspended.score_ppm, 0, "{suspended:?}");
    assert!(suspended.probes >= 2, "{suspended:?}");
    let logged = probes_of(&m, &id).await;
    assert!(
        !logged.is_empty() && logged.iter().all(|e| !e.passed()),
        "{logged:?}"
    );
    let scores: Vec<_> = entries(&m)
        .await
        .into_iter()
        .filter_map(|e| match e.body {
            Body::Score(s) if s.node == id => Some(s),
            _ => None,
        })
        .collect();
    assert!(
        scores.iter().any(|s| s.score_ppm == 0 && s.passed == 0),
        "{scores:?}"
    );
    // The operator sees it; the scheduler places nothing on it.
    let show: serde_json::Value =
        serde_json::from_str(&cli_ok(&m, &["node", "show", &id.to_string(), "--json"])).unwrap();
    assert_eq!(show["standing"]["standing"], "suspended", "{show}");
    assert_eq!(show["standing"]["score_ppm"], 0, "{show}");
    cli_ok(&m, &["deploy", "web", "--recipe", &site, "--replicas", "1"]);
    let noted = eventually(WAIT, async || {
        let d = deployment(&m, "web");
        d["notes"]
            .as_array()
            .is_some_and(|n| {
                n.iter()
                    .any(|n| n.as_str().unwrap_or("").contains("0 schedulable"))
            })
            .then_some(d)
    })
    .await;
    assert!(noted.is_some(), "{}", deployment(&m, "web"));
    // Nothing reaches the node.
    while let Some(msg) = node.next(Duration::from_secs(2)).await {
        if let Message::DesiredState(ds) = msg {
            assert!(
                ds.instances.is_empty(),
                "placed on a suspended node: {ds:?}"
            );
        }
    }
}
