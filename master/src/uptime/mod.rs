//! Uptime from probes a node cannot fake (SPEC.md §9.10–9.11): the master probes every enrolled
//! node that is neither retired nor revoked at exponential random intervals, re-sends an
//! unanswered probe unchanged (containment), and appends each probe's final outcome to the
//! credits ledger. Scores and standings follow from those entries (`hearth_ledger::books`);
//! each node is told its standing (`standing`, §9.19) and the scheduler reads it.
//!
//! [`prober`] is the sans-IO core (one timer heap for the whole fleet); [`driver`] runs it,
//! `record` appends its outcomes, [`standing`] tells nodes where they stand.

pub mod driver;
pub mod prober;
mod record;
pub mod standing;

pub use driver::{Uptime, UptimeConfig, run};
pub use prober::{Action, Event, Prober, ProberConfig, check_answer};
