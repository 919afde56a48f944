//! Failover of several masters on one store: while an operator's client writes deployments
//! through every master in turn (moving to the next master when one does not answer, as a
//! client given several addresses does), `kill -9` the master holding the scheduler lease and
//! measure how long until another master holds the lease, until a deployment acknowledged
//! after the kill is placed, and until every agent that had its session with the dead master
//! is welcomed by another; then count the acknowledged deployments the survivors do not have.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::live::agents::Agents;
use crate::live::deploy::{create, placed, upload_recipe};
use crate::live::master::{MasterApi, MasterProcess};
use crate::live::report::{Failover, quantiles};
use crate::live::run::{LiveError, LiveOptions};

/// One deployment written every this often.
const WRITE_EVERY: Duration = Duration::from_millis(50);
/// Writes before the kill.
const BEFORE_KILL: Duration = Duration::from_secs(2);
/// Writes go on this long after everything is back.
const AFTER_BACK: Duration = Duration::from_secs(1);
/// Poll period of the survivors' metrics and deployments.
const POLL: Duration = Duration::from_millis(100);

/// What the writer saw: acknowledged deployments with the moment of their acknowledgement,
/// and attempts a master did not answer (then tried at the next).
#[derive(Debug, Default)]
struct Written {
    acked: Vec<(String, Instant)>,
    refused_attempts: u64,
    unwritten: u64,
}

/// Kills the lease holder among `masters` while writing deployments; see the module doc.
pub async fn failover(
    masters: &mut [MasterProcess],
    agents: &Agents,
    opts: &LiveOptions,
    progress: &dyn Fn(&str),
) -> Result<Failover, LiveError> {
    let mut leader = None;
    for (i, m) in masters.iter().enumerate() {
        if m.api().metrics().await?.scheduling {
            leader = Some(i);
        }
    }
    let leader = leader.ok_or(LiveError::Options("no master holds the scheduler lease"))?;
    let apis: Vec<MasterApi> = masters.iter().map(|m| m.api().clone()).collect();
    let survivors: Vec<MasterApi> = masters
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, m)| m.api().clone())
        .collect();
    let Some(survivor) = survivors.first().cloned() else {
        return Err(LiveError::Options("a failover needs at least two masters"));
    };
    let sha = upload_recipe(&survivor).await?;

    let written = Arc::new(Mutex::new(Written::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write(apis, sha, written.clone(), stop.clone()));
    tokio::time::sleep(BEFORE_KILL).await;

    let Some(dead) = masters.get_mut(leader) else {
        return Err(LiveError::Options("no master holds the scheduler lease"));
    };
    let dead_agents = agents.connected_to(dead.quic());
    progress(&format!(
        "kill -9 master {} (scheduler lease holder, {} sessions) while writing deployments",
        dead.name(),
        dead_agents.len()
    ));
    dead.kill9();
    let killed = Instant::now();

    let (mut lease_secs, mut placed_secs, mut back_secs) = (None, None, None);
    let mut max_down_seen = 0;
    while killed.elapsed() <= opts.connect_limit {
        for api in &survivors {
            if let Ok(m) = api.metrics().await {
                max_down_seen = max_down_seen.max(m.nodes.get("down").copied().unwrap_or(0));
                if m.scheduling && lease_secs.is_none() {
                    lease_secs = Some(killed.elapsed().as_secs_f64());
                }
            }
        }
        if placed_secs.is_none() {
            let first_after = written
                .lock()
                .await
                .acked
                .iter()
                .find(|(_, at)| *at > killed)
                .map(|(name, _)| name.clone());
            if let Some(name) = first_after
                && placed(&survivor).await?.get(&name).is_some_and(|n| *n > 0)
            {
                placed_secs = Some(killed.elapsed().as_secs_f64());
            }
        }
        if back_secs.is_none()
            && agents.welcomed_since_of(&dead_agents, killed).len() >= dead_agents.len()
        {
            back_secs = Some(killed.elapsed().as_secs_f64());
        }
        if lease_secs.is_some() && placed_secs.is_some() && back_secs.is_some() {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    progress(&format!(
        "lease after {lease_secs:?} s, first new deployment placed after {placed_secs:?} s, agents back after {back_secs:?} s"
    ));
    tokio::time::sleep(AFTER_BACK).await;
    stop.store(true, Ordering::Relaxed);
    let _ = writer.await;

    let written = std::mem::take(&mut *written.lock().await);
    let present = placed(&survivor).await?;
    let lost = written
        .acked
        .iter()
        .filter(|(name, _)| !present.contains_key(name))
        .count();
    // Every acknowledged deployment placed by the survivors, within the wait.
    let mut unplaced = usize::MAX;
    let settle = Instant::now();
    while settle.elapsed() <= opts.connect_limit {
        let now = placed(&survivor).await?;
        unplaced = written
            .acked
            .iter()
            .filter(|(name, _)| now.get(name).is_none_or(|n| *n == 0))
            .count();
        if unplaced == 0 {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(Failover {
        dead_sessions: dead_agents.len(),
        lease_secs,
        placed_secs,
        back_secs,
        back_quantiles_secs: quantiles(agents.welcomed_since_of(&dead_agents, killed)),
        acked: written.acked.len(),
        acked_after_kill: written.acked.iter().filter(|(_, at)| *at > killed).count(),
        refused_attempts: written.refused_attempts,
        unwritten: written.unwritten,
        lost,
        unplaced,
        max_down_seen,
    })
}

/// Writes `failover-K` every [`WRITE_EVERY`] until `stop`, through master K mod M first and the
/// others in turn when it does not answer.
async fn write(
    apis: Vec<MasterApi>,
    sha: hearth_protocol::Sha256,
    written: Arc<Mutex<Written>>,
    stop: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(WRITE_EVERY);
    let mut k = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let name = format!("failover-{k}");
        let mut done = false;
        for attempt in 0..apis.len() {
            let Some(api) = apis.get((k + attempt) % apis.len()) else {
                break;
            };
            match create(api, &name, sha, 1).await {
                Ok(()) => {
                    written
                        .lock()
                        .await
                        .acked
                        .push((name.clone(), Instant::now()));
                    done = true;
                    break;
                }
                Err(_) => written.lock().await.refused_attempts += 1,
            }
        }
        if !done {
            written.lock().await.unwritten += 1;
        }
        k += 1;
    }
}
