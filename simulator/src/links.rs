//! Reachability and sessions: when a home can talk to the master, its agent's reconnects, and
//! the heartbeat replay that feeds the master's liveness machine.
//!
//! A home is reachable when it is powered and booted, still a member, and its ISP and country
//! links are up. When it becomes reachable the agent opens a session after its reconnect delay:
//! right after a boot one round trip; after a link outage the remaining wait of the agent's
//! full-jitter backoff (`Backoff::RECONNECT`: 0.5 s doubling to 30 s per failed attempt, as
//! the agent's link does, the jitter drawn from the run's RNG; a failed attempt is taken to last [`ATTEMPT_MS`]).

use hearth_core::backoff::Backoff;
use hearth_core::liveness::Event as LiveEvent;
use hearth_core::reconcile::Event as AgentEvent;

use crate::engine::Sim;
use crate::fleet::Session;
use crate::queue::{Event, HomeIx};

/// How long a connection attempt to an unreachable master takes to fail, ms.
pub const ATTEMPT_MS: u64 = 5_000;
/// Cap of the agent's reconnect backoff, ms.
const BACKOFF_CAP_MS: u64 = Backoff::RECONNECT.cap_ms;
/// Spread of the agents' first connections at the start, ms.
const START_SPREAD_MS: u64 = 5_000;

/// The master's liveness ticker period, ms.
const TICK_MS: u64 = 500;

impl Sim {
    /// Recomputes whether `h` is reachable and acts on a change.
    pub(crate) fn set_reachability(&mut self, h: HomeIx) {
        let now = self.q.now();
        let net = self.net_up(h);
        let Some(home) = self.homes.get_mut(h) else {
            return;
        };
        let reach = home.running() && net;
        if reach == home.reachable {
            return;
        }
        home.reachable = reach;
        home.meter
            .set_up(now, reach, &hearth_ledger::Policy::default());
        if reach {
            home.up_since = Some(now);
            self.gauges.reachable.add(now, 1);
            let delay = self.reconnect_delay(h);
            if let Some(home) = self.homes.get(h) {
                let ev = Event::Connect {
                    home: h,
                    epoch: home.session_epoch,
                };
                self.q.after(delay, ev);
            }
        } else {
            if let Some(since) = home.up_since.take() {
                home.up_ms += now.saturating_sub(since);
            }
            self.gauges.reachable.add(now, -1);
            let was = home.session;
            home.session = Session::Offline { since: now };
            home.session_epoch += 1;
            let has_agent = home.running() && home.agent.is_some();
            if let Session::Online { since } = was {
                self.session_lost(h, since);
            }
            if has_agent {
                self.agent_step(h, AgentEvent::LinkDown);
            }
        }
        self.refresh_home(h);
    }

    /// Whether the ISP and country links of `h` are up.
    pub(crate) fn net_up(&self, h: HomeIx) -> bool {
        self.homes.get(h).is_some_and(|home| {
            self.isps.get(home.isp).is_some_and(|i| i.down == 0)
                && self
                    .countries
                    .get(home.country)
                    .is_some_and(|c| c.down == 0)
        })
    }

    /// The agent's wait before its session opens, from now.
    fn reconnect_delay(&mut self, h: HomeIx) -> u64 {
        let now = self.q.now();
        let Some(home) = self.homes.get(h) else {
            return 0;
        };
        let rtt = home.rtt_ms();
        let handshake = 2 * rtt;
        if now == 0 {
            return self.rng.upto(START_SPREAD_MS) + handshake;
        }
        // The agent has been trying since the later of losing its link and booting.
        let trying_since = match home.session {
            Session::Offline { since } => since.max(home.booted_ms),
            Session::Online { .. } => now,
        };
        let outage = now.saturating_sub(trying_since);
        if outage == 0 {
            return handshake;
        }
        let mut t = 0u64;
        let mut failures = 0u32;
        loop {
            failures += 1;
            let cap = Backoff::RECONNECT.ceiling_ms(failures);
            if cap >= BACKOFF_CAP_MS && t < outage {
                // Steady state: the next attempt is anywhere in one more attempt and wait.
                return self.rng.upto(ATTEMPT_MS + BACKOFF_CAP_MS) + handshake;
            }
            t += ATTEMPT_MS + self.rng.upto(cap);
            if t >= outage {
                return t - outage + handshake;
            }
        }
    }

    /// A session opens: hello, welcome, the desired state, and the node is up.
    pub(crate) fn on_connect(&mut self, h: HomeIx, epoch: u64) {
        let now = self.q.now();
        let Some(home) = self.homes.get_mut(h) else {
            return;
        };
        if home.session_epoch != epoch || !home.reachable {
            return;
        }
        home.session = Session::Online { since: now };
        home.liveness = home.liveness.step(&self.cfg, now, LiveEvent::Heartbeat).0;
        self.gauges.online.add(now, 1);
        self.msgs.hello += 1;
        self.msgs.welcome += 1;
        self.count_msgs(2);
        self.node_changed(h);
        if self.homes.get(h).is_some_and(|x| x.agent.is_some()) {
            self.agent_step(h, AgentEvent::LinkUp);
        }
        // After every welcome the master pushes the node's whole desired state.
        if self
            .homes
            .get(h)
            .is_some_and(|x| x.revision > 0 || !x.hosted.is_empty())
        {
            self.send_desired(h);
        }
    }

    /// A session was lost: replay its last heartbeat and wake the liveness ticker when the
    /// silence can change the state.
    fn session_lost(&mut self, h: HomeIx, since: u64) {
        let now = self.q.now();
        self.gauges.online.add(now, -1);
        let iv = u64::try_from(self.cfg.heartbeat_interval.as_millis()).unwrap_or(3_000);
        let suspect = u64::try_from(self.cfg.suspect_after.as_millis()).unwrap_or(6_000);
        let down = u64::try_from(self.cfg.down_after.as_millis()).unwrap_or(10_000);
        let last = since + (now.saturating_sub(since) / iv.max(1)) * iv;
        if let Some(home) = self.homes.get_mut(h) {
            home.liveness = home.liveness.step(&self.cfg, last, LiveEvent::Heartbeat).0;
        }
        self.q
            .at(tick_at(last + suspect), Event::LivenessTick { home: h });
        self.q
            .at(tick_at(last + down), Event::LivenessTick { home: h });
    }
}

/// The first tick of the master's liveness ticker at or after `t`.
fn tick_at(t: u64) -> u64 {
    t.div_ceil(TICK_MS) * TICK_MS
}
