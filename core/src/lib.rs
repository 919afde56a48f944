//! Hearth's sans-IO cores: the decisions of the master and the agent as plain functions of
//! `(state, now, event) -> actions`, with no sockets, clocks, files or threads.
//!
//! [`liveness`] tracks a node from its heartbeats; [`placement`] chooses nodes for replicas;
//! [`scheduler`] plans a fleet's deployments (re-placements, moves, conditions); [`rollout`]
//! updates replicas one at a time; [`reconcile`] is the agent's convergence to its desired
//! state; [`node`] is the view of a node they share; [`backoff`] is the one retry backoff, [`link`] the agent's session link and [`chunks`] the planner of artifact fetches from peers, [`backups`] the choice of the homes that keep a deployment's backup copies. The master, the agent and the simulator
//! drive the same code; only their drivers differ.

pub mod backoff;
pub mod backups;
pub mod chunks;
pub mod ingress;
pub mod link;
pub mod liveness;
pub mod node;
pub mod placement;
pub mod reconcile;
pub mod rollout;
pub mod scheduler;
