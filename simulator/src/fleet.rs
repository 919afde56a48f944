//! The simulated homes, ISPs and countries, and the facts the master holds about each node.
//!
//! A node's identity is a real Ed25519 key derived from the run's seed, so node ids (and hence
//! the placement scan order and every output) are the same for the same seed.

use std::collections::BTreeSet;

use hearth_core::liveness::Liveness;
use hearth_core::reconcile::Agent;
use hearth_protocol::messages::state::InstanceId;
use hearth_protocol::{Arch, CountryCode, HomeId, NodeFacts, NodeId, Resources, SecretKey};

use crate::distr::SimRng;
use crate::scenario::HomeModel;

/// Why the fleet cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A generated home id is not a valid label.
    #[error("generated home id {0} is invalid: {1}")]
    HomeId(String, hearth_protocol::ValueError),
}

/// Power of a home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// On and booted: the agent runs.
    On,
    /// Off (power cut, reboot).
    Off,
    /// Booting after power came back.
    Booting,
}

/// The agent's session to the master, as the simulation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// No session (home off or cut off); `since` is when it was lost.
    Offline {
        /// When the link was lost, ms.
        since: u64,
    },
    /// Open since `since`; heartbeats every interval from then on.
    Online {
        /// When the session opened, ms.
        since: u64,
    },
}

/// A simulated agent: the real reconciliation core and the driver's bookkeeping.
#[derive(Debug, Default)]
pub struct SimAgent {
    /// The real core (`hearth_core::reconcile::Agent`).
    pub core: Agent,
    /// Next process id handed out.
    pub next_pid: u32,
    /// Earliest timer scheduled for the core.
    pub wake: Option<u64>,
}

/// One home with one node.
#[derive(Debug)]
pub struct Home {
    /// The node's id.
    pub id: NodeId,
    /// What it declares at enrolment (what the master's record holds).
    pub facts: NodeFacts,
    /// Index of its ISP.
    pub isp: usize,
    /// Index of its country.
    pub country: usize,
    /// Hardware and line.
    pub model: HomeModel,
    /// Power.
    pub power: Power,
    /// Bumped at every power cut, to drop events of an earlier boot.
    pub power_epoch: u64,
    /// Left the cooperative for good.
    pub left: bool,
    /// Reachable now (powered, booted, ISP and country links up, not left).
    pub reachable: bool,
    /// Session.
    pub session: Session,
    /// Bumped whenever the session is lost, to drop messages of an earlier session.
    pub session_epoch: u64,
    /// The master's liveness state of the node (real state machine).
    pub liveness: Liveness,
    /// Desired-state revision the master is at for this node.
    pub revision: u64,
    /// Instances the master assigns to it.
    pub hosted: BTreeSet<InstanceId>,
    /// Recipes in the node's cache (by deployment name).
    pub cache: BTreeSet<String>,
    /// The agent, created when it is first given work.
    pub agent: Option<Box<SimAgent>>,
    /// Joined, ms.
    pub joined_ms: u64,
    /// Last boot, ms.
    pub booted_ms: u64,
    /// Left, ms.
    pub left_ms: Option<u64>,
    /// Time reachable so far, ms (credits).
    pub up_ms: u64,
    /// Reachable since, ms.
    pub up_since: Option<u64>,
    /// Reachable time per scoring window, for the credits formula.
    pub meter: crate::credits::Meter,
}

impl Home {
    /// A new home, powered and not yet connected.
    pub fn new(
        keys: &mut SimRng,
        index: usize,
        (country, code): (usize, CountryCode),
        (isp, isp_name): (usize, &str),
        model: HomeModel,
        now: u64,
    ) -> Result<Self, FleetError> {
        let key = SecretKey::from_seed(&keys.bytes32());
        let id = NodeId::from_key(key.public());
        let name = format!("home-{index}");
        let home = name
            .parse::<HomeId>()
            .map_err(|e| FleetError::HomeId(name, e))?;
        let facts = NodeFacts {
            agent: "hearth-sim".into(),
            arch: Arch::X86_64,
            capacity: Resources {
                cpu_millis: model.cpu_millis,
                memory_mib: model.memory_mib,
                disk_mib: model.disk_mib,
                bandwidth_mbps: model.up_mbps,
            },
            country: code,
            isp: isp_name.to_owned(),
            asn: None,
            home,
            uplink_mbps: model.up_mbps,
            downlink_mbps: model.down_mbps,
            cgroups_v2: true,
            labels: Default::default(),
            power_w: None,
        };
        Ok(Self {
            id,
            facts,
            isp,
            country,
            model,
            power: Power::On,
            power_epoch: 0,
            left: false,
            reachable: false,
            session: Session::Offline { since: now },
            session_epoch: 0,
            liveness: Liveness::Pending,
            revision: 0,
            hosted: BTreeSet::new(),
            cache: BTreeSet::new(),
            agent: None,
            joined_ms: now,
            booted_ms: now,
            left_ms: None,
            up_ms: 0,
            up_since: None,
            meter: crate::credits::Meter::new(now, &hearth_ledger::Policy::default()),
        })
    }

    /// Whether the agent process runs (power on, booted, still a member).
    pub fn running(&self) -> bool {
        self.power == Power::On && !self.left
    }

    /// Round-trip time to the master, ms.
    pub fn rtt_ms(&self) -> u64 {
        2 * u64::from(self.model.latency_ms)
    }
}

/// An ISP in the fleet.
#[derive(Debug)]
pub struct IspState {
    /// Name.
    pub name: String,
    /// Its country.
    pub country: usize,
    /// Overlapping outages in progress.
    pub down: u32,
    /// Homes it serves (including those that left).
    pub homes: Vec<usize>,
    /// Homes at the start (weight for joins).
    pub weight: u64,
    /// Home model.
    pub model: HomeModel,
}

/// A country in the fleet.
#[derive(Debug)]
pub struct CountryState {
    /// Code.
    pub code: CountryCode,
    /// Overlapping link losses in progress.
    pub down: u32,
    /// Its ISPs.
    pub isps: Vec<usize>,
}
