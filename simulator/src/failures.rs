//! Failure models: power cuts and reboots per home, ISP outages, a country's link lost
//! (random or scheduled), volunteers leaving for good and new ones joining.
//!
//! Each random kind is one fleet-wide Poisson process whose rate is the per-unit rate times the
//! current number of units (homes, ISPs, countries); the unit is drawn uniformly when the event
//! fires. This is the same as one process per unit (Poisson processes add up), costs one pending
//! event per kind, and follows the fleet as volunteers leave and join.

use serde::Serialize;

use crate::engine::{DAY_MS, Sim, YEAR_MS};
use crate::fleet::Power;
use crate::master::Transitions;
use crate::queue::{Event, HomeIx};
use crate::scenario::RateModel;

/// What happened during a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FailureCounts {
    /// Power cuts.
    pub power_cuts: u64,
    /// Reboots.
    pub reboots: u64,
    /// ISP outages.
    pub isp_outages: u64,
    /// Country link losses.
    pub country_outages: u64,
    /// Volunteers who left.
    pub left: u64,
    /// Volunteers who joined.
    pub joined: u64,
    /// Liveness transitions at the master.
    pub transitions: Transitions,
}

impl Sim {
    /// Schedules the first event of every process.
    pub(crate) fn start_failures(&mut self) {
        self.next(Event::PowerCut);
        self.next(Event::Reboot);
        self.next(Event::IspOutage);
        self.next(Event::CountryOutage);
        self.next(Event::Leave);
        self.next(Event::Join);
        let links = self.scenario.failures.country_link.clone();
        for l in links {
            let country = self
                .countries
                .iter()
                .position(|c| c.code.as_str() == l.country);
            if let Some(country) = country {
                let at = crate::distr::to_ms(l.at_day * DAY_MS as f64);
                let hours_ms = crate::distr::to_ms(l.hours * 3_600_000.0);
                self.q.at(at, Event::CountryLost { country, hours_ms });
            }
        }
        let isps = self.scenario.failures.isp_link.clone();
        for l in isps {
            let isp = self.isps.iter().position(|i| {
                i.name == l.isp
                    && self
                        .countries
                        .get(i.country)
                        .is_some_and(|c| c.code.as_str() == l.country)
            });
            if let Some(isp) = isp {
                let at = crate::distr::to_ms(l.at_day * DAY_MS as f64);
                let hours_ms = crate::distr::to_ms(l.hours * 3_600_000.0);
                self.q.at(at, Event::IspLost { isp, hours_ms });
            }
        }
    }

    /// Schedules the next event of a process, if its rate is not zero.
    fn next(&mut self, kind: Event) {
        let f = &self.scenario.failures;
        let v = &self.scenario.volunteers;
        let rate = match kind {
            Event::PowerCut => rate(&f.power) * self.active.len() as f64,
            Event::Reboot => rate(&f.reboot) * self.active.len() as f64,
            Event::IspOutage => rate(&f.isp_outage) * self.isps.len() as f64,
            Event::CountryOutage => rate(&f.country_outage) * self.countries.len() as f64,
            Event::Leave => v.leave_per_year * self.active.len() as f64,
            Event::Join => v.join_per_year,
            _ => 0.0,
        };
        if rate > 0.0 {
            let wait = self.rng.exp_ms(YEAR_MS / rate);
            self.q.after(wait, kind);
        }
    }

    fn random_active(&mut self) -> Option<HomeIx> {
        let i = self.rng.below(self.active.len() as u64);
        usize::try_from(i)
            .ok()
            .and_then(|i| self.active.get(i).copied())
    }

    /// A power cut (or a reboot) at a random home.
    pub(crate) fn on_power_cut(&mut self, reboot: bool) {
        let kind = if reboot {
            Event::Reboot
        } else {
            Event::PowerCut
        };
        self.next(kind);
        let model = if reboot {
            &self.scenario.failures.reboot
        } else {
            &self.scenario.failures.power
        };
        let Some(off) = model.as_ref().map(|m| m.duration.clone()) else {
            return;
        };
        let Some(h) = self.random_active() else {
            return;
        };
        let off_ms = off.sample_ms(&mut self.rng);
        let Some(home) = self.homes.get_mut(h) else {
            return;
        };
        if home.power == Power::Off {
            return; // already dark
        }
        if reboot {
            self.counts.reboots += 1;
        } else {
            self.counts.power_cuts += 1;
        }
        home.power = Power::Off;
        home.power_epoch += 1;
        let epoch = home.power_epoch;
        self.q.after(off_ms, Event::PowerBack { home: h, epoch });
        self.set_reachability(h);
        self.refresh_home(h);
    }

    /// Power is back: boot.
    pub(crate) fn on_power_back(&mut self, h: HomeIx, epoch: u64) {
        let boot = crate::distr::to_ms(self.scenario.agent.boot_seconds * 1000.0);
        if let Some(home) = self.homes.get_mut(h)
            && home.power_epoch == epoch
            && !home.left
        {
            home.power = Power::Booting;
            self.q.after(boot, Event::Booted { home: h, epoch });
        }
    }

    /// Booted: the agent runs again.
    pub(crate) fn on_booted(&mut self, h: HomeIx, epoch: u64) {
        let now = self.q.now();
        let Some(home) = self.homes.get_mut(h) else {
            return;
        };
        if home.power_epoch != epoch || home.left {
            return;
        }
        home.power = Power::On;
        home.booted_ms = now;
        self.agent_boot(h);
        self.set_reachability(h);
    }

    /// A random ISP loses its links.
    pub(crate) fn on_isp_outage(&mut self) {
        self.next(Event::IspOutage);
        let Some(d) = self
            .scenario
            .failures
            .isp_outage
            .as_ref()
            .map(|m| m.duration.clone())
        else {
            return;
        };
        let i = self.rng.below(self.isps.len() as u64);
        let Some(isp) = usize::try_from(i).ok().filter(|i| *i < self.isps.len()) else {
            return;
        };
        let dur = d.sample_ms(&mut self.rng);
        self.isp_down(isp, dur);
    }

    /// ISP `isp` loses its links for `dur` ms.
    pub(crate) fn isp_down(&mut self, isp: usize, dur: u64) {
        let Some(state) = self.isps.get_mut(isp) else {
            return;
        };
        state.down += 1;
        self.counts.isp_outages += 1;
        self.q.after(dur, Event::IspBack { isp });
        self.reach_isp(isp);
    }

    /// An ISP's outage ends.
    pub(crate) fn on_isp_back(&mut self, isp: usize) {
        if let Some(state) = self.isps.get_mut(isp) {
            state.down = state.down.saturating_sub(1);
        }
        self.reach_isp(isp);
    }

    fn reach_isp(&mut self, isp: usize) {
        let homes = self
            .isps
            .get(isp)
            .map(|i| i.homes.clone())
            .unwrap_or_default();
        for h in homes {
            self.set_reachability(h);
        }
    }

    /// A random country loses its link.
    pub(crate) fn on_country_outage(&mut self) {
        self.next(Event::CountryOutage);
        let f = &self.scenario.failures;
        let Some(d) = f.country_outage.as_ref().map(|m| m.duration.clone()) else {
            return;
        };
        let i = self.rng.below(self.countries.len() as u64);
        let dur = d.sample_ms(&mut self.rng);
        if let Ok(c) = usize::try_from(i) {
            self.country_down(c, dur);
        }
    }

    /// Country `c` loses its link for `dur` ms.
    pub(crate) fn country_down(&mut self, c: usize, dur: u64) {
        let Some(state) = self.countries.get_mut(c) else {
            return;
        };
        state.down += 1;
        self.counts.country_outages += 1;
        self.q.after(dur, Event::CountryBack { country: c });
        self.reach_country(c);
    }

    /// A country's link is back.
    pub(crate) fn on_country_back(&mut self, c: usize) {
        if let Some(state) = self.countries.get_mut(c) {
            state.down = state.down.saturating_sub(1);
        }
        self.reach_country(c);
    }

    fn reach_country(&mut self, c: usize) {
        let isps = self
            .countries
            .get(c)
            .map(|x| x.isps.clone())
            .unwrap_or_default();
        for isp in isps {
            self.reach_isp(isp);
        }
    }

    /// A volunteer leaves for good: the home goes dark and never returns.
    pub(crate) fn on_leave(&mut self) {
        self.next(Event::Leave);
        let now = self.q.now();
        let Some(h) = self.random_active() else {
            return;
        };
        self.deactivate(h);
        if let Some(home) = self.homes.get_mut(h) {
            home.left = true;
            home.left_ms = Some(now);
            home.meter.leave(now, &hearth_ledger::Policy::default());
            home.power_epoch += 1;
        }
        self.counts.left += 1;
        self.gauges.members.add(now, -1);
        self.set_reachability(h);
    }

    fn deactivate(&mut self, h: HomeIx) {
        let Some(pos) = self.active_pos.get_mut(h).and_then(Option::take) else {
            return;
        };
        self.active.swap_remove(pos);
        if let Some(&moved) = self.active.get(pos)
            && let Some(p) = self.active_pos.get_mut(moved)
        {
            *p = Some(pos);
        }
    }

    /// A new volunteer joins an ISP drawn in proportion to the ISPs' sizes at the start.
    pub(crate) fn on_join(&mut self) {
        self.next(Event::Join);
        let now = self.q.now();
        let total: u64 = self.isps.iter().map(|i| i.weight).sum();
        let mut pick = self.rng.below(total.max(1));
        let mut chosen = 0;
        for (ix, isp) in self.isps.iter().enumerate() {
            if pick < isp.weight {
                chosen = ix;
                break;
            }
            pick -= isp.weight;
        }
        if let Ok(h) = self.add_home(chosen, now) {
            self.counts.joined += 1;
            self.set_reachability(h);
        }
    }
}

fn rate(m: &Option<RateModel>) -> f64 {
    m.as_ref().map_or(0.0, |m| m.rate_per_year)
}
