//! Live mode: N real agent sessions over loopback QUIC against a real `hearth-master` process,
//! for the master's load benchmarks (sessions, heartbeat ingest, the reconnect storm after a
//! master restart).
//!
//! Nothing here is modelled: the master is the released binary in a temporary data dir; each
//! agent is enrolled through the real enrolment protocol with a token made by the API, and keeps
//! a mutual-TLS QUIC session that behaves as the agent's link does. Deployments, when asked, are
//! created through the API and placed by the master's scheduler; the agents receive them as
//! desired states. What is left out is the agent's supervisor: agents run no instances (they
//! acknowledge desired states and answer audit probes, nothing more). With `--masters N` on a
//! shared store (`--postgres`), N masters share the agents and a failover can be measured.
//!
//! ```text
//! run ─▶ MasterProcess::start (init, run: HTTP :0, QUIC :0)
//!     ─▶ enrol_all (POST /v1/tokens, enrol_request)   ─▶ Agents::spawn (one task per key)
//!     ─▶ steady state: /proc/PID/stat, VmRSS, /metrics ─▶ kill -9, restart on the same QUIC port
//!     ─▶ every agent welcomed again? /metrics down count, GET /v1/nodes ─▶ LiveReport
//!     (or, several masters: kill -9 the lease holder while writing ─▶ failover::failover)
//! ```

pub mod agents;
pub mod database;
pub mod deploy;
pub mod enrol;
pub mod failover;
pub mod master;
pub mod probe;
pub mod report;
pub mod run;

pub use agents::{AgentCounters, Agents, AgentsConfig, AgentsError};
pub use enrol::{EnrolAllError, enrol_all};
pub use master::{MasterApi, MasterConfig, MasterError, MasterMetrics, MasterProcess, NodeSummary};
pub use report::{Assign, Failover, LiveReport, Restart, Steady, summary};
pub use run::{LiveError, LiveOptions, run};
