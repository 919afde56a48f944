//! The discrete-event engine: builds a run from a scenario, pops events in time order and
//! dispatches them to the failure models ([`crate::failures`]), the master side
//! ([`crate::master`]) and the agents ([`crate::agents`]).
//!
//! Heartbeats are not events: while a session is open a node heartbeats every interval, which
//! changes nothing in the master's liveness machine but the last-heartbeat time, so the engine
//! replays only the last heartbeat when a session is lost and lets the real `Liveness::step` run
//! at the master's ticks that can change the state (`suspect_after` and `down_after` later).

use std::collections::{BTreeMap, HashMap};

use hearth_core::liveness::{Liveness, LivenessConfig};
use hearth_core::node::{AdminState, NodeView};
use hearth_core::scheduler::{Deployment, DeploymentSpec, NodeState, RecipeInfo, node_state};
use hearth_protocol::messages::state::{Assignment, InstanceId, Name, RecipeRef};
use hearth_protocol::{CountryCode, NodeId, Resources, Sha256};

use crate::distr::SimRng;
use crate::fleet::{CountryState, FleetError, Home, IspState};
use crate::metrics::{DepStats, Gauges, Messages};
use crate::queue::{Event, HomeIx, Queue};
use crate::scenario::Scenario;

/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;
/// Milliseconds in a (365-day) year.
pub const YEAR_MS: f64 = 365.0 * 86_400_000.0;
/// When the operator's deployments are first scheduled (the fleet has connected by then).
pub const DEPLOY_AT_MS: u64 = 60_000;

/// Why a run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The fleet could not be built.
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// A scenario value does not make a valid protocol value.
    #[error("{0}")]
    Invalid(String),
}

/// Options of a run beyond the scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Seed (default: the scenario's).
    pub seed: Option<u64>,
    /// Simulated days (default: the scenario's).
    pub days: Option<f64>,
    /// Also call `plan` on the passes skipped as no-ops and count any that would have changed
    /// something (a check of the shortcut, for tests; slower).
    pub check_skips: bool,
}

/// A run in progress. Fields are shared by the engine's modules.
#[derive(Debug)]
pub struct Sim {
    pub(crate) scenario: Scenario,
    pub(crate) seed: u64,
    pub(crate) end_ms: u64,
    pub(crate) warmup_ms: u64,
    pub(crate) sample_ms: u64,
    pub(crate) q: Queue,
    pub(crate) rng: SimRng,
    pub(crate) keys: SimRng,
    pub(crate) cfg: LivenessConfig,
    pub(crate) homes: Vec<Home>,
    pub(crate) by_id: HashMap<NodeId, HomeIx>,
    pub(crate) active: Vec<HomeIx>,
    pub(crate) active_pos: Vec<Option<usize>>,
    pub(crate) isps: Vec<IspState>,
    pub(crate) countries: Vec<CountryState>,
    pub(crate) nodes: Vec<NodeState>,
    pub(crate) deployments: Vec<Deployment>,
    pub(crate) dep_index: BTreeMap<Name, usize>,
    pub(crate) assign: BTreeMap<InstanceId, (HomeIx, Assignment)>,
    pub(crate) dep_instances: Vec<Vec<InstanceId>>,
    pub(crate) pass_pending: bool,
    pub(crate) check_skips: bool,
    pub(crate) passes: crate::master::PassCounts,
    pub(crate) deps: Vec<DepStats>,
    pub(crate) gauges: Gauges,
    pub(crate) msgs: Messages,
    pub(crate) msgs_mark: u64,
    pub(crate) peak: crate::metrics::PeakSecond,
    pub(crate) counts: crate::failures::FailureCounts,
    pub(crate) series: Vec<crate::report::Sample>,
}

impl Sim {
    /// Builds a run: the fleet at time 0, its first connections and the failure processes.
    pub fn new(scenario: Scenario, opts: RunOptions) -> Result<Self, EngineError> {
        let seed = opts.seed.unwrap_or(scenario.seed);
        let days = opts.days.unwrap_or(scenario.days);
        let end_ms = crate::distr::to_ms(days * DAY_MS as f64);
        let sample_ms = if scenario.sample_minutes > 0 {
            scenario.sample_minutes * 60_000
        } else {
            (end_ms / 500).max(60_000)
        };
        let warmup_ms = scenario.warmup_minutes * 60_000;
        let mut sim = Self {
            seed,
            end_ms,
            warmup_ms,
            sample_ms,
            q: Queue::default(),
            rng: SimRng::new(seed, 1),
            keys: SimRng::new(seed, 2),
            cfg: LivenessConfig::default(),
            homes: Vec::new(),
            by_id: HashMap::new(),
            active: Vec::new(),
            active_pos: Vec::new(),
            isps: Vec::new(),
            countries: Vec::new(),
            nodes: Vec::new(),
            deployments: Vec::new(),
            dep_index: BTreeMap::new(),
            assign: BTreeMap::new(),
            dep_instances: Vec::new(),
            pass_pending: false,
            check_skips: opts.check_skips,
            passes: Default::default(),
            deps: Vec::new(),
            gauges: Gauges::default(),
            msgs: Messages::default(),
            msgs_mark: 0,
            peak: Default::default(),
            counts: Default::default(),
            series: Vec::new(),
            scenario,
        };
        sim.build_fleet()?;
        sim.build_deployments()?;
        for h in 0..sim.homes.len() {
            sim.set_reachability(h);
        }
        sim.start_failures();
        sim.q.at(DEPLOY_AT_MS, Event::SchedulerPass);
        sim.pass_pending = true;
        sim.q.at(sim.sample_ms, Event::Sample);
        Ok(sim)
    }

    /// Runs to the end and returns the report.
    pub fn run(mut self) -> crate::report::Report {
        while let Some(ev) = self.q.pop(self.end_ms) {
            self.dispatch(ev);
        }
        self.finish()
    }

    /// Events handled so far.
    pub fn events(&self) -> u64 {
        self.q.handled()
    }

    fn dispatch(&mut self, ev: Event) {
        match ev {
            Event::PowerCut => self.on_power_cut(false),
            Event::Reboot => self.on_power_cut(true),
            Event::PowerBack { home, epoch } => self.on_power_back(home, epoch),
            Event::Booted { home, epoch } => self.on_booted(home, epoch),
            Event::IspOutage => self.on_isp_outage(),
            Event::IspLost { isp, hours_ms } => self.isp_down(isp, hours_ms),
            Event::IspBack { isp } => self.on_isp_back(isp),
            Event::CountryOutage => self.on_country_outage(),
            Event::CountryLost { country, hours_ms } => self.country_down(country, hours_ms),
            Event::CountryBack { country } => self.on_country_back(country),
            Event::Leave => self.on_leave(),
            Event::Join => self.on_join(),
            Event::Connect { home, epoch } => self.on_connect(home, epoch),
            Event::LivenessTick { home } => self.on_liveness_tick(home),
            Event::SchedulerPass => self.on_pass(),
            Event::Deliver { home, epoch, state } => self.on_deliver(home, epoch, *state),
            Event::Prepared {
                home,
                power,
                instance,
                generation,
            } => self.on_prepared(home, power, instance, generation),
            Event::Started {
                home,
                power,
                instance,
                generation,
            } => self.on_started(home, power, instance, generation),
            Event::Exited {
                home,
                power,
                instance,
                pid,
            } => self.on_exited(home, power, instance, pid),
            Event::AgentTick { home, power } => self.on_agent_tick(home, power),
            Event::Sample => self.on_sample(),
        }
    }

    fn build_fleet(&mut self) -> Result<(), EngineError> {
        let base = self.scenario.fleet.home;
        let countries = self.scenario.fleet.countries.clone();
        for c in &countries {
            let code: CountryCode = c
                .code
                .parse()
                .map_err(|e| EngineError::Invalid(format!("country {}: {e}", c.code)))?;
            let ci = self.countries.len();
            self.countries.push(CountryState {
                code,
                down: 0,
                isps: Vec::new(),
            });
            for isp in &c.isps {
                let ii = self.isps.len();
                if let Some(cs) = self.countries.get_mut(ci) {
                    cs.isps.push(ii);
                }
                self.isps.push(IspState {
                    name: isp.name.clone(),
                    country: ci,
                    down: 0,
                    homes: Vec::new(),
                    weight: u64::from(isp.homes),
                    model: isp.home(&base),
                });
                for _ in 0..isp.homes {
                    self.add_home(ii, 0)?;
                }
            }
        }
        Ok(())
    }

    /// Adds a home to ISP `isp` at `now`; returns its index.
    pub(crate) fn add_home(&mut self, isp: usize, now: u64) -> Result<HomeIx, EngineError> {
        let ix = self.homes.len();
        let (country, name, model) = match self.isps.get(isp) {
            Some(i) => (i.country, i.name.clone(), i.model),
            None => return Err(EngineError::Invalid(format!("no ISP {isp}"))),
        };
        let code = self
            .countries
            .get(country)
            .map(|c| c.code)
            .ok_or_else(|| EngineError::Invalid(format!("no country {country}")))?;
        let home = Home::new(
            &mut self.keys,
            ix,
            (country, code),
            (isp, &name),
            model,
            now,
        )?;
        self.by_id.insert(home.id, ix);
        self.nodes.push(node_state(NodeView {
            id: home.id,
            facts: &home.facts,
            admin: AdminState::Active,
            liveness: Liveness::Pending,
            reliability: 1.0,
            suspended: false,
        }));
        self.homes.push(home);
        self.active_pos.push(Some(self.active.len()));
        self.active.push(ix);
        if let Some(i) = self.isps.get_mut(isp) {
            i.homes.push(ix);
        }
        self.gauges.members.add(now, 1);
        Ok(ix)
    }

    fn build_deployments(&mut self) -> Result<(), EngineError> {
        let recipe_hash = Sha256::digest(b"hearth-sim recipe");
        let entries = self.scenario.deployments.clone();
        for d in &entries {
            for name in d.names() {
                let bad = |e: hearth_protocol::ValueError| {
                    EngineError::Invalid(format!("deployment {name}: {e}"))
                };
                let n: Name = name.parse().map_err(bad)?;
                let countries = d
                    .countries
                    .iter()
                    .map(|c| c.parse::<CountryCode>())
                    .collect::<Result<_, _>>()
                    .map_err(bad)?;
                let spec = DeploymentSpec {
                    name: n.clone(),
                    recipe: RecipeRef {
                        name: n.clone(),
                        version: "1.0.0".into(),
                        sha256: recipe_hash,
                    },
                    replicas: d.replicas,
                    spread: d.spread.clone(),
                    countries,
                    params: BTreeMap::new(),
                    labels: BTreeMap::new(),
                    hosts: Vec::new(),
                    tcp: Vec::new(),
                };
                let info = RecipeInfo {
                    resources: Resources {
                        cpu_millis: d.cpu_millis,
                        memory_mib: d.memory_mib,
                        disk_mib: d.disk_mib,
                        bandwidth_mbps: d.bandwidth_mbps,
                    },
                    ports: vec!["http".into()],
                };
                self.dep_index.insert(n, self.deployments.len());
                self.deps.push(DepStats::new(&name, d.replicas));
                self.dep_instances.push(Vec::new());
                self.deployments.push(Deployment {
                    spec,
                    info,
                    moving: None,
                    calm_until_ms: 0,
                    rolling: false,
                    failed: Default::default(),
                });
            }
        }
        Ok(())
    }
}
