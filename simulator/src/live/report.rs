//! The report of a live run: steady-state load of each master, the reconnect storm after a
//! master restart, the failover between masters; as JSON and as a readable summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::live::agents::AgentCounters;

/// Issue 7's goal for all agents back after a master restart, seconds (reported, not enforced).
pub const GOAL_SECS: f64 = 10.0;
/// Issue 19's goal for another master scheduling after the lease holder's death, seconds.
pub const LEASE_GOAL_SECS: f64 = 5.0;

/// Everything a live run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LiveReport {
    /// Agents (enrolled nodes, one session each).
    pub nodes: usize,
    /// Masters (on one shared store when more than one).
    pub masters: usize,
    /// Heartbeat interval asked of the agents, ms.
    pub interval_ms: u64,
    /// Suspect and down timeouts of the master, ms.
    pub suspect_after_ms: u64,
    /// Silence after which the master marks a node down, ms.
    pub down_after_ms: u64,
    /// Wall time to create the tokens and enrol every agent, s.
    pub enrol_secs: f64,
    /// Wall time from starting the agents to every agent welcomed, s.
    pub connect_secs: f64,
    /// Steady state with every session open (and the deployments, when asked, in place): one
    /// per master, measured over the same window.
    pub steady: Vec<Steady>,
    /// The deployments, when asked.
    pub assign: Option<Assign>,
    /// The audit probe round, when asked.
    pub probes: Option<crate::live::probe::ProbeRound>,
    /// The master restart, when asked.
    pub restart: Option<Restart>,
    /// The failover, when asked.
    pub failover: Option<Failover>,
    /// Agents' counters at the end.
    pub agents: AgentCounters,
}

/// The master under N idle sessions that heartbeat.
#[derive(Debug, Clone, Serialize)]
pub struct Steady {
    /// Length of the window, s.
    pub window_secs: f64,
    /// Master CPU (user + system, all threads) over the window, % of one core.
    pub cpu_percent: f64,
    /// Master RSS after enrolment, before any session, KiB.
    pub rss_idle_kib: u64,
    /// Master RSS at the end of the window, KiB.
    pub rss_kib: u64,
    /// Heartbeats all the agents sent per second over the window (to every master).
    pub heartbeats_sent_per_sec: f64,
    /// Heartbeats the master ingested per second (its `/metrics` counter; read outside the
    /// window).
    pub heartbeats_ingested_per_sec: f64,
    /// Sessions the master counts at the end of the window.
    pub master_sessions: u64,
    /// Random uptime probes the agents answered per second over the window (the master's
    /// `--probe-mean`; 10,000 agents at a 5-minute mean: about 33/s).
    pub probes_answered_per_sec: f64,
}

/// Deployments created through the API once every session was open: placed by the master's
/// scheduler, delivered as `desired_state` over the sessions.
#[derive(Debug, Clone, Serialize)]
pub struct Assign {
    /// Deployments created.
    pub deployments: usize,
    /// Replicas of each.
    pub replicas: u32,
    /// Replicas the agents' latest desired states hold, summed (equal to all asked for).
    pub held: u64,
    /// Agents given at least one replica.
    pub agents_with_work: usize,
    /// From the first API call to every replica at its agent, s.
    pub secs: f64,
}

/// `kill -9` of the master, restart on the same QUIC port and data dir, and the agents' return.
#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    /// From the kill to the new master publishing its addresses, s.
    pub master_start_secs: f64,
    /// Agents that received a welcome from the new master within the wait.
    pub back: usize,
    /// Time from the restart (new process spawned) to the last agent's welcome, s; None if not
    /// all came back.
    pub all_back_secs: Option<f64>,
    /// Agents whose welcome came more than [`GOAL_SECS`] after the restart.
    pub late: usize,
    /// Quantiles of each agent's welcome after the restart, s: p50, p90, p99, max.
    pub back_quantiles_secs: [f64; 4],
    /// Quantiles of each agent's detection of the lost session after the kill, s: p50, p90,
    /// p99, max (the agent gives a session up after 4/3 of a heartbeat interval of silence).
    pub lost_quantiles_secs: [f64; 4],
    /// Master CPU from the restart until all were back (or the wait ended), % of one core.
    pub storm_cpu_percent: f64,
    /// Master RSS when all were back, KiB.
    pub rss_kib: u64,
    /// Most nodes the master showed `down` at once while polled (`/metrics`, every 250 ms).
    pub max_down_seen: u64,
    /// Most nodes the master showed `suspect` at once while polled.
    pub max_suspect_seen: u64,
    /// `GET /v1/nodes` once all were back: nodes per state.
    pub states_after: BTreeMap<String, u64>,
    /// `GET /v1/nodes` once all were back: nodes with a session.
    pub connected_after: u64,
    /// Agents holding replicas (0 without deployments).
    pub agents_with_work: usize,
    /// Of those, agents that the new master sent their desired state again.
    pub work_redelivered: usize,
}

impl Restart {
    /// All agents back with their work, and no node was ever seen down.
    pub fn ok(&self) -> bool {
        self.all_back_secs.is_some()
            && self.work_redelivered >= self.agents_with_work
            && self.max_down_seen == 0
            && !self.states_after.contains_key("down")
    }
}

/// `kill -9` of the master holding the scheduler lease while deployments are written through
/// every master in turn.
#[derive(Debug, Clone, Serialize)]
pub struct Failover {
    /// Agents whose session was with the killed master.
    pub dead_sessions: usize,
    /// From the kill to another master holding the lease (its `/metrics`), s.
    pub lease_secs: Option<f64>,
    /// From the kill to the first deployment acknowledged after it being placed, s.
    pub placed_secs: Option<f64>,
    /// From the kill to the last of the dead master's agents welcomed by another, s.
    pub back_secs: Option<f64>,
    /// Quantiles of those agents' welcomes after the kill, s: p50, p90, p99, max.
    pub back_quantiles_secs: [f64; 4],
    /// Deployments acknowledged (`2xx`) by some master.
    pub acked: usize,
    /// Of those, acknowledged after the kill.
    pub acked_after_kill: usize,
    /// Write attempts a master did not acknowledge (then tried at the next).
    pub refused_attempts: u64,
    /// Deployments no master acknowledged.
    pub unwritten: u64,
    /// Acknowledged deployments the survivors do not have (goal 0).
    pub lost: usize,
    /// Acknowledged deployments still without a placed replica at the end of the wait.
    pub unplaced: usize,
    /// Most nodes a survivor showed `down` at once while polled.
    pub max_down_seen: u64,
}

impl Failover {
    /// Another master scheduled, the agents came back, nothing acknowledged was lost and
    /// every acknowledged deployment was placed; no node was seen down.
    pub fn ok(&self) -> bool {
        self.lease_secs.is_some()
            && self.placed_secs.is_some()
            && self.back_secs.is_some()
            && self.lost == 0
            && self.unplaced == 0
            && self.max_down_seen == 0
    }
}

/// p50, p90, p99 and max of `times`, s (zeros when empty).
pub fn quantiles(mut times: Vec<Duration>) -> [f64; 4] {
    times.sort_unstable();
    let at = |q: f64| {
        let last = times.len().saturating_sub(1);
        let i = ((last as f64) * q).round() as usize;
        times.get(i.min(last)).map_or(0.0, Duration::as_secs_f64)
    };
    [at(0.5), at(0.9), at(0.99), at(1.0)]
}

/// The readable summary.
pub fn summary(r: &LiveReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "live: {} agents, heartbeat {} ms (master: suspect after {} ms, down after {} ms)",
        r.nodes, r.interval_ms, r.suspect_after_ms, r.down_after_ms
    );
    let _ = writeln!(
        s,
        "enrolled in {:.1} s, all sessions open in {:.1} s",
        r.enrol_secs, r.connect_secs
    );
    for (i, st) in r.steady.iter().enumerate() {
        let who = if r.masters > 1 {
            format!("master m{i}")
        } else {
            "master".to_owned()
        };
        let _ = writeln!(s, "steady state over {:.0} s, {who}:", st.window_secs);
        let _ = writeln!(
            s,
            "  master CPU            {:.2} % of one core",
            st.cpu_percent
        );
        let sessions = st.master_sessions.max(1);
        let _ = writeln!(
            s,
            "  master RSS            {} KiB ({} KiB idle, {:.1} KiB per session)",
            st.rss_kib,
            st.rss_idle_kib,
            st.rss_kib.saturating_sub(st.rss_idle_kib) as f64 / sessions as f64
        );
        let _ = writeln!(
            s,
            "  heartbeats/s          {:.0} sent by all agents, {:.0} ingested (this master's counter)",
            st.heartbeats_sent_per_sec, st.heartbeats_ingested_per_sec
        );
        let _ = writeln!(s, "  master sessions       {}", st.master_sessions);
        let _ = writeln!(
            s,
            "  probes answered/s     {:.1}",
            st.probes_answered_per_sec
        );
    }
    if let Some(a) = &r.assign {
        let _ = writeln!(
            s,
            "deployments: {} × {} replicas (spread isp,country) placed by the master and held by {} agents, {:.1} s after the first API call",
            a.deployments, a.replicas, a.agents_with_work, a.secs
        );
    }
    if let Some(p) = &r.probes {
        let q = &p.rtt_quantiles_ms;
        let _ = writeln!(
            s,
            "audit probes: {} sent, {} passed (master's round trip p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms), failed {:?}, in {:.1} s",
            p.sent, p.passed, q[0], q[2], q[3], p.failed, p.secs
        );
    }
    if let Some(rs) = &r.restart {
        let q = |v: &[f64; 4]| {
            format!(
                "p50 {:.2} s, p90 {:.2} s, p99 {:.2} s, max {:.2} s",
                v[0], v[1], v[2], v[3]
            )
        };
        let _ = writeln!(
            s,
            "master kill -9 and restart (same QUIC port, same data dir):"
        );
        let _ = writeln!(
            s,
            "  master listening      {:.2} s after the kill",
            rs.master_start_secs
        );
        let _ = writeln!(
            s,
            "  sessions lost         {} (agents' detection after the kill)",
            q(&rs.lost_quantiles_secs)
        );
        let _ = writeln!(
            s,
            "  welcomed again        {} (after the restart)",
            q(&rs.back_quantiles_secs)
        );
        match rs.all_back_secs {
            Some(t) => {
                let goal = if t <= GOAL_SECS { "met" } else { "missed" };
                let _ = writeln!(
                    s,
                    "  all back              {t:.2} s after the restart ({} agents; goal ≤ {GOAL_SECS} s {goal}; {} later than that)",
                    rs.back, rs.late
                );
            }
            None => {
                let _ = writeln!(s, "  NOT ALL BACK          {} of {}", rs.back, r.nodes);
            }
        }
        let _ = writeln!(
            s,
            "  master CPU (storm)    {:.1} % of one core",
            rs.storm_cpu_percent
        );
        let _ = writeln!(s, "  master RSS            {} KiB", rs.rss_kib);
        let _ = writeln!(
            s,
            "  down / suspect seen   {} / {} at most (polled), states after: {:?}, {} connected",
            rs.max_down_seen, rs.max_suspect_seen, rs.states_after, rs.connected_after
        );
        if rs.agents_with_work > 0 {
            let _ = writeln!(
                s,
                "  work re-delivered     to {} of the {} agents holding replicas",
                rs.work_redelivered, rs.agents_with_work
            );
        }
        let _ = writeln!(
            s,
            "  verdict               {}",
            if rs.ok() {
                "all back, none down"
            } else {
                "FAILED"
            }
        );
    }
    if let Some(f) = &r.failover {
        failover_summary(&mut s, f);
    }
    let a = &r.agents;
    let _ = writeln!(
        s,
        "agents: {} welcomes, {} heartbeats, {} desired states, {} probes answered, {} sessions lost ({} reset by the master, {} given up as silent), {} failed attempts, {} refused",
        a.welcomes,
        a.heartbeats,
        a.desired_states,
        a.probes,
        a.lost,
        a.lost_by_reset,
        a.lost_silent,
        a.failed_attempts,
        a.refused
    );
    s
}

fn failover_summary(s: &mut String, f: &Failover) {
    let secs = |v: Option<f64>| v.map_or("never".to_owned(), |t| format!("{t:.2} s"));
    let goal = |v: Option<f64>, goal: f64| match v {
        Some(t) if t <= goal => "met",
        _ => "missed",
    };
    let _ = writeln!(
        s,
        "failover: kill -9 of the scheduler lease holder while writing deployments:"
    );
    let _ = writeln!(
        s,
        "  lease taken           {} after the kill (goal ≤ {LEASE_GOAL_SECS} s {})",
        secs(f.lease_secs),
        goal(f.lease_secs, LEASE_GOAL_SECS)
    );
    let _ = writeln!(
        s,
        "  first new placement   {} after the kill",
        secs(f.placed_secs)
    );
    let q = &f.back_quantiles_secs;
    let _ = writeln!(
        s,
        "  agents back           all {} of the dead master's {} after the kill (goal ≤ {GOAL_SECS} s {}; p50 {:.2} s, p90 {:.2} s, p99 {:.2} s)",
        f.dead_sessions,
        secs(f.back_secs),
        goal(f.back_secs, GOAL_SECS),
        q[0],
        q[1],
        q[2]
    );
    let _ = writeln!(
        s,
        "  writes                {} acknowledged ({} after the kill), {} attempts unanswered then retried at another master, {} not written",
        f.acked, f.acked_after_kill, f.refused_attempts, f.unwritten
    );
    let _ = writeln!(
        s,
        "  acknowledged lost     {} (goal 0); {} not placed at the end; {} nodes seen down at most",
        f.lost, f.unplaced, f.max_down_seen
    );
    let _ = writeln!(
        s,
        "  verdict               {}",
        if f.ok() {
            "failed over, nothing lost"
        } else {
            "FAILED"
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_nothing_and_of_some() {
        assert_eq!(quantiles(vec![]), [0.0; 4]);
        let q = quantiles((1..=100).map(Duration::from_secs).collect());
        assert_eq!(q, [51.0, 90.0, 99.0, 100.0]);
    }
}
