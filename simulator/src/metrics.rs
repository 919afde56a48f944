//! What a run measures as it goes: per-service availability and healing episodes, time
//! integrals of fleet-wide gauges (for the time series), and the master's message counts.
//!
//! A replica *serves* when the master assigns it to a home, that home is reachable, and the
//! home's agent core has the instance `Running` at the assigned generation (a stale copy on a
//! home that came back does not count). A service is *available* (all, quorum, at least one)
//! by how many of its replicas serve.

use crate::engine::Sim;
use crate::queue::HomeIx;

/// One service's availability so far.
#[derive(Debug, Clone)]
pub struct DepStats {
    /// Name.
    pub name: String,
    /// Replicas wanted.
    pub replicas: u32,
    /// Replicas serving now.
    pub serving: u32,
    /// Last change of `serving`, ms.
    pub last_ms: u64,
    /// Time with all replicas serving (after warm-up), ms.
    pub full_ms: u64,
    /// Time with a majority serving, ms.
    pub quorum_ms: u64,
    /// Time with at least one serving, ms.
    pub any_ms: u64,
    /// Start of the current episode below all replicas.
    pub degraded_since: Option<u64>,
    /// Start of the current episode with none serving.
    pub down_since: Option<u64>,
    /// Durations of finished episodes below all replicas (started after warm-up), ms.
    pub heal_ms: Vec<u64>,
    /// Durations of finished episodes with none serving, ms.
    pub outage_ms: Vec<u64>,
    /// Lost replicas re-placed.
    pub re_placements: u64,
}

impl DepStats {
    /// A service with nothing placed yet.
    pub fn new(name: &str, replicas: u32) -> Self {
        Self {
            name: name.to_owned(),
            replicas,
            serving: 0,
            last_ms: 0,
            full_ms: 0,
            quorum_ms: 0,
            any_ms: 0,
            degraded_since: Some(0),
            down_since: Some(0),
            heal_ms: Vec::new(),
            outage_ms: Vec::new(),
            re_placements: 0,
        }
    }

    /// Majority of the replicas.
    pub fn quorum(&self) -> u32 {
        self.replicas / 2 + 1
    }

    /// Accounts the time since the last change, clipped to after `warmup`.
    pub fn account(&mut self, now: u64, warmup: u64) {
        let from = self.last_ms.max(warmup);
        if now > from {
            let d = now - from;
            if self.serving >= self.replicas {
                self.full_ms += d;
            }
            if self.serving >= self.quorum() {
                self.quorum_ms += d;
            }
            if self.serving >= 1 {
                self.any_ms += d;
            }
        }
        self.last_ms = now;
    }

    /// Sets the serving count at `now`; returns (full, quorum, any) before and after.
    fn set(&mut self, now: u64, warmup: u64, serving: u32) -> [(bool, bool); 3] {
        let before = self.status();
        self.account(now, warmup);
        self.serving = serving;
        let after = self.status();
        let (full, any) = (self.serving >= self.replicas, self.serving >= 1);
        match (self.degraded_since, full) {
            (Some(since), true) => {
                if since >= warmup {
                    self.heal_ms.push(now - since);
                }
                self.degraded_since = None;
            }
            (None, false) => self.degraded_since = Some(now),
            _ => {}
        }
        match (self.down_since, any) {
            (Some(since), true) => {
                if since >= warmup {
                    self.outage_ms.push(now - since);
                }
                self.down_since = None;
            }
            (None, false) => self.down_since = Some(now),
            _ => {}
        }
        [
            (before.0, after.0),
            (before.1, after.1),
            (before.2, after.2),
        ]
    }

    fn status(&self) -> (bool, bool, bool) {
        (
            self.serving >= self.replicas,
            self.serving >= self.quorum(),
            self.serving >= 1,
        )
    }
}

/// A quantity over time and its integral (unit·ms).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauge {
    value: i64,
    last: u64,
    integral: i128,
    mark: i128,
}

impl Gauge {
    /// Adds `delta` at `now`.
    pub fn add(&mut self, now: u64, delta: i64) {
        self.integral += i128::from(self.value) * i128::from(now.saturating_sub(self.last));
        self.last = now.max(self.last);
        self.value += delta;
    }

    /// The current value.
    pub fn value(&self) -> i64 {
        self.value
    }

    /// Integral up to `now`.
    pub fn integral(&self, now: u64) -> i128 {
        self.integral + i128::from(self.value) * i128::from(now.saturating_sub(self.last))
    }

    /// Mean since the last call (over `dt` ms), and marks `now`.
    pub fn window_mean(&mut self, now: u64, dt: u64) -> f64 {
        let i = self.integral(now);
        let mean = (i - self.mark) as f64 / dt.max(1) as f64;
        self.mark = i;
        mean
    }
}

/// Fleet-wide gauges.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Members (joined, not left).
    pub members: Gauge,
    /// Reachable homes.
    pub reachable: Gauge,
    /// Open sessions (each heartbeats every interval).
    pub online: Gauge,
    /// Services with all replicas serving.
    pub full: Gauge,
    /// Services with a majority serving.
    pub quorum: Gauge,
    /// Services with at least one serving.
    pub any: Gauge,
}

/// Messages the master handled, besides heartbeats (which follow from `online`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Messages {
    /// `hello` received.
    pub hello: u64,
    /// `welcome` sent.
    pub welcome: u64,
    /// `desired_state` pushed.
    pub desired: u64,
    /// `instance_status` reports received.
    pub reports: u64,
}

impl Messages {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.hello + self.welcome + self.desired + self.reports
    }
}

/// The busiest second for the master: messages besides heartbeats counted per second of
/// virtual time, plus the heartbeats the open sessions send in a second.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeakSecond {
    second: u64,
    count: u64,
    /// Highest messages per second so far.
    pub peak: f64,
    /// When, ms.
    pub at_ms: u64,
}

impl Sim {
    /// Counts `n` messages (besides heartbeats) at the current time.
    pub(crate) fn count_msgs(&mut self, n: u64) {
        let sec = self.q.now() / 1000;
        let p = &mut self.peak;
        if sec != p.second {
            p.second = sec;
            p.count = 0;
        }
        p.count += n;
        let iv = self.cfg.heartbeat_interval.as_millis().max(1) as f64;
        let rate = p.count as f64 + self.gauges.online.value() as f64 * 1000.0 / iv;
        if rate > p.peak {
            p.peak = rate;
            p.at_ms = sec * 1000;
        }
    }
}

impl Sim {
    /// Recomputes the services with a replica (assigned or running) on `h`.
    pub(crate) fn refresh_home(&mut self, h: HomeIx) {
        let Some(home) = self.homes.get(h) else {
            return;
        };
        let mut deps: Vec<usize> = home
            .hosted
            .iter()
            .filter_map(|id| self.assign.get(id))
            .filter_map(|(_, a)| self.dep_index.get(&a.deployment).copied())
            .collect();
        if let Some(agent) = &home.agent {
            deps.extend(
                agent
                    .core
                    .instances
                    .values()
                    .filter_map(|i| self.dep_index.get(&i.spec.deployment).copied()),
            );
        }
        deps.sort_unstable();
        deps.dedup();
        for d in deps {
            self.refresh_dep(d);
        }
    }

    /// Recomputes how many replicas of service `d` serve.
    pub(crate) fn refresh_dep(&mut self, d: usize) {
        let now = self.q.now();
        let Some(ids) = self.dep_instances.get(d) else {
            return;
        };
        let serving = ids.iter().filter(|id| self.serves(id)).count();
        let serving = u32::try_from(serving).unwrap_or(u32::MAX);
        let warmup = self.warmup_ms;
        let Some(stats) = self.deps.get_mut(d) else {
            return;
        };
        if stats.serving == serving {
            return;
        }
        let changes = stats.set(now, warmup, serving);
        let gauges = [
            &mut self.gauges.full,
            &mut self.gauges.quorum,
            &mut self.gauges.any,
        ];
        for (g, (before, after)) in gauges.into_iter().zip(changes) {
            if before != after {
                g.add(now, if after { 1 } else { -1 });
            }
        }
    }

    fn serves(&self, id: &hearth_protocol::messages::state::InstanceId) -> bool {
        let Some((h, a)) = self.assign.get(id) else {
            return false;
        };
        let Some(home) = self.homes.get(*h) else {
            return false;
        };
        home.reachable
            && home
                .agent
                .as_ref()
                .and_then(|ag| ag.core.instances.get(id))
                .is_some_and(|i| {
                    i.spec.generation == a.generation
                        && matches!(i.phase, hearth_core::reconcile::Phase::Running { .. })
                })
    }
}
