//! The usage reporter: settles the node's bandwidth receipts with the master (SPEC.md §9.16,
//! §9.17).
//!
//! [`Ledger`] is the sans-IO core: which receipts to send in the next `usage_report` (at most
//! [`REPORT_RECEIPTS`], oldest first), with report numbers that only increase, the same number
//! and receipts again until that report's `settlement` arrives, and what each receipt's outcome
//! was (credited, or refused with a code). Its state is `D/settlement.json`, written durably
//! (temporary file, fsync, rename, fsync of the directory) *before* a report is sent and after
//! each settlement, so a restart re-sends the open report with its number and never reuses a
//! number. `hearth-node status` reads the same file.
//!
//! [`run`] is the driver: it polls the receipt store, sends the open report soon after receipts
//! arrive and again every `interval` while unanswered, and applies the answers the link hands it.
//! A master that answers `unexpected_message` (one that does not settle yet) leaves everything
//! pending.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hearth_protocol::messages::error::ErrorCode;
use hearth_protocol::messages::usage::{Settlement, UsageReport};
use hearth_protocol::{Message, Nonce};
use serde::{Deserialize, Serialize};

use super::receipts::ReceiptStore;

/// Receipts one report carries at most (half the master's limit of 1000).
pub const REPORT_RECEIPTS: usize = 500;
/// How often an unanswered report is sent again, by default.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// The state file's name in the data directory.
pub const SETTLEMENT_FILE: &str = "settlement.json";
/// Version of `settlement.json`.
const STATE_VERSION: u32 = 1;

/// Why the reporter's state could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The filesystem failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state file is damaged.
    #[error("{path} is damaged ({reason}); move it away to start the report numbers afresh")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What became of a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The master credited it.
    Credited,
    /// The master refused it with this code.
    Rejected(ErrorCode),
}

/// The report sent and not settled yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    /// Its number.
    pub report: u64,
    /// Its receipts' ids, in the order sent.
    pub receipts: Vec<Nonce>,
}

/// `settlement.json`: the reporter's durable state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Format version.
    pub version: u32,
    /// The number the next new report gets.
    pub next_report: u64,
    /// The report awaiting its settlement, if any.
    pub open: Option<Open>,
    /// Bytes credited in all settlements so far.
    pub credited_bytes: u64,
    /// Each settled receipt still held by the store, and its outcome.
    pub outcomes: BTreeMap<Nonce, Outcome>,
}

impl Default for Ledger {
    fn default() -> Self {
        Self {
            version: STATE_VERSION,
            next_report: 1,
            open: None,
            credited_bytes: 0,
            outcomes: BTreeMap::new(),
        }
    }
}

/// Counts for `hearth-node status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleSummary {
    /// Bytes credited so far.
    pub credited_bytes: u64,
    /// Receipts held and not settled (the open report's included).
    pub pending: usize,
    /// Receipts credited (still held).
    pub credited: usize,
    /// Receipts refused, by code.
    pub rejected: BTreeMap<String, usize>,
    /// The open report's number.
    pub open_report: Option<u64>,
}

impl Ledger {
    /// The next report to send: the open one again, or a new one of the oldest `held` receipts
    /// not settled yet (`None`: nothing to send). A new report must be saved before it is sent.
    pub fn next(&mut self, held: &[Nonce]) -> Option<(Open, bool)> {
        if let Some(open) = &self.open {
            return Some((open.clone(), false));
        }
        let receipts: Vec<Nonce> = held
            .iter()
            .filter(|id| !self.outcomes.contains_key(id))
            .take(REPORT_RECEIPTS)
            .copied()
            .collect();
        if receipts.is_empty() {
            return None;
        }
        let open = Open {
            report: self.next_report,
            receipts,
        };
        self.next_report += 1;
        self.open = Some(open.clone());
        Some((open, true))
    }

    /// Applies a settlement; false if it is not the open report's (then nothing changes).
    pub fn settle(&mut self, s: &Settlement) -> bool {
        let Some(open) = self.open.take_if(|o| o.report == s.report) else {
            return false;
        };
        let refused: BTreeMap<Nonce, ErrorCode> =
            s.rejected.iter().map(|r| (r.receipt, r.code)).collect();
        for id in open.receipts {
            let outcome = refused
                .get(&id)
                .map_or(Outcome::Credited, |code| Outcome::Rejected(*code));
            self.outcomes.insert(id, outcome);
        }
        self.credited_bytes = self.credited_bytes.saturating_add(s.credited_bytes);
        true
    }

    /// Forgets the outcomes of receipts the store no longer holds.
    pub fn prune(&mut self, held: &[Nonce]) {
        let held: std::collections::HashSet<&Nonce> = held.iter().collect();
        self.outcomes.retain(|id, _| held.contains(id));
    }

    /// The counts, given the receipts held.
    pub fn summary(&self, held: usize) -> SettleSummary {
        let mut s = SettleSummary {
            credited_bytes: self.credited_bytes,
            open_report: self.open.as_ref().map(|o| o.report),
            ..SettleSummary::default()
        };
        for outcome in self.outcomes.values() {
            match outcome {
                Outcome::Credited => s.credited += 1,
                Outcome::Rejected(code) => *s.rejected.entry(code.to_string()).or_default() += 1,
            }
        }
        s.pending = held.saturating_sub(self.outcomes.len());
        s
    }

    /// Reads `D/settlement.json` (none: a fresh state).
    pub fn load(dir: &Path) -> Result<Self, SettleError> {
        let path = dir.join(SETTLEMENT_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(SettleError::Io { path, source }),
        };
        let state: Self = serde_json::from_slice(&text).map_err(|e| SettleError::Damaged {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if state.version != STATE_VERSION {
            return Err(SettleError::Damaged {
                path,
                reason: format!("unknown version {}", state.version),
            });
        }
        Ok(state)
    }

    /// Writes `D/settlement.json` durably. Blocking (fsync).
    pub fn save(&self, dir: &Path) -> Result<(), SettleError> {
        let path = dir.join(SETTLEMENT_FILE);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| SettleError::Damaged {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        super::receipts::durable_write(dir, &path, &bytes)
            .map_err(|source| SettleError::Io { path, source })
    }
}

/// What the link hands the reporter.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The master settled a report.
    Settled(Settlement),
    /// The master does not settle reports (`unexpected_message`), or refused the report whole.
    Refused(String),
}

/// How the reporter runs.
#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// The data directory (`settlement.json`).
    pub dir: PathBuf,
    /// How often an unanswered report is sent again ([`REPORT_INTERVAL`]).
    pub interval: Duration,
    /// How often the receipt store is looked at for new receipts.
    pub poll: Duration,
}

/// Runs the reporter until `shutdown` fires.
pub async fn run(
    config: ReporterConfig,
    store: ReceiptStore,
    outbound: tokio::sync::mpsc::UnboundedSender<Message>,
    mut answers: tokio::sync::mpsc::UnboundedReceiver<Answer>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), SettleError> {
    let mut ledger = Ledger::load(&config.dir)?;
    ledger.prune(&store.ids());
    let mut last_sent: Option<Instant> = None;
    let mut tick = tokio::time::interval(config.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(answer) = answers.recv() => match answer {
                Answer::Settled(s) => {
                    if ledger.settle(&s) {
                        tracing::info!(report = s.report, credited_bytes = s.credited_bytes, rejected = s.rejected.len(), "usage report settled");
                        ledger.prune(&store.ids());
                        save(&config.dir, &ledger).await?;
                        last_sent = None; // the next report may go at once
                    } else {
                        tracing::debug!(report = s.report, "settlement of no open report");
                    }
                }
                Answer::Refused(why) => {
                    tracing::warn!("the master did not settle the usage report (kept pending): {why}");
                }
            },
            _ = shutdown.changed() => return Ok(()),
        }
        let due = last_sent.is_none_or(|at| at.elapsed() >= config.interval);
        if !due {
            continue;
        }
        let Some((open, new)) = ledger.next(&store.ids()) else {
            continue;
        };
        if new {
            save(&config.dir, &ledger).await?;
        }
        let receipts = open
            .receipts
            .iter()
            .filter_map(|id| match store.get(id) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(receipt = %id, error = %e, "cannot read a receipt to report");
                    None
                }
            })
            .collect();
        let report = UsageReport {
            report: open.report,
            receipts,
        };
        tracing::debug!(
            report = open.report,
            receipts = open.receipts.len(),
            "sending usage report"
        );
        if outbound.send(Message::UsageReport(report)).is_err() {
            return Ok(()); // the link is gone: shutting down
        }
        last_sent = Some(Instant::now());
    }
}

async fn save(dir: &Path, ledger: &Ledger) -> Result<(), SettleError> {
    let (dir, ledger) = (dir.to_owned(), ledger.clone());
    tokio::task::spawn_blocking(move || ledger.save(&dir))
        .await
        .unwrap_or_else(|e| {
            Err(SettleError::Io {
                path: PathBuf::from(SETTLEMENT_FILE),
                source: std::io::Error::other(e),
            })
        })
}

#[cfg(test)]
#[path = "settle_tests.rs"]
mod tests;
