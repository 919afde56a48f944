//! `hearth-sim`: a simulated fleet of homes driven through the real cores (see issue 7).
//!
//! The discrete-event mode runs a seeded, deterministic simulation with a virtual clock. It does
//! not model Hearth: it drives the master's own scheduler (`hearth_core::scheduler::plan`, so
//! `placement::place` and the re-placement budget), the master's liveness state machine
//! (`hearth_core::liveness`) and, on every node given work, the agent's reconciliation core
//! (`hearth_core::reconcile::Agent`). What is modelled is the world around them: homes on
//! fibre lines ([`fleet`]), power cuts, reboots, ISP and country outages, volunteers leaving and
//! joining ([`failures`]), sessions and reconnect backoff ([`links`]), and the agent driver's
//! fetch, start and stop times ([`agents`]).
//!
//! ```text
//! scenario.toml ─▶ Scenario ─▶ Sim::new ─▶ Queue (time, seq) ─▶ dispatch ─┬▶ failures ─▶ links
//!                                                                          ├▶ master: Liveness::step, plan()
//!                                                                          └▶ agents: Agent::step
//!                                             Sim::finish ─▶ Report ─▶ summary │ JSON │ SVG
//! ```
//!
//! The live mode ([`live`]) is the opposite: real agent sessions over loopback QUIC against a
//! real master process, for the master's load benchmarks.

pub mod agents;
pub mod credits;
pub mod distr;
pub mod engine;
pub mod failures;
pub mod fleet;
pub mod links;
pub mod live;
pub mod master;
pub mod metrics;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod summary;
pub mod svg;

pub use engine::{EngineError, RunOptions, Sim};
pub use report::Report;
pub use scenario::{Scenario, ScenarioError};

/// Loads nothing, runs `scenario` with `opts` and returns the report.
pub fn simulate(scenario: Scenario, opts: RunOptions) -> Result<Report, EngineError> {
    Ok(Sim::new(scenario, opts)?.run())
}
