//! The books: everything the credits need, derived from ledger entries in log order by one
//! sans-IO accumulator that the master, `hearth ledger verify` and the simulator all run
//! (SPEC.md §15.4). It counts probes per node and window, tracks gateways and credited receipts,
//! and computes score entries and monthly statements; when it observes a logged score,
//! statement or receipt entry it first checks it against its own recomputation (or the receipt
//! rules), so a verifier replaying an export pinpoints any entry the master got wrong.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hearth_protocol::messages::usage::BandwidthReceipt;
use hearth_protocol::{CountryCode, NodeId};

use crate::entry::{Body, Entry, NodeClass, ProbeEntry, ScoreEntry, Standing};
use crate::month::Month;
use crate::policy::Policy;
use crate::receipts::{Gateways, Index, ReceiptRefusal};
use crate::score::{self, Counts, NodeScore};
use crate::statement::{self, Statement};

/// A window (or month) is closed this long after it ends: probes appended later than that for
/// it are not counted, and its score (or statement) entries may then be written.
pub const CLOSE_GRACE_MS: u64 = 120_000;
/// The receipt index forgets old receipts every this many entries.
const PRUNE_EVERY: u64 = 10_000;

/// A logged entry that does not match what the entries before it imply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {seq}: {reason}")]
pub struct Inconsistency {
    /// The entry's index.
    pub seq: u64,
    /// What is wrong, as a sentence.
    pub reason: String,
}

/// One node's books.
#[derive(Debug, Clone)]
pub(crate) struct NodeBook {
    pub(crate) class: NodeClass,
    pub(crate) country: Option<CountryCode>,
    pub(crate) power_w: Option<u32>,
    /// Probe counts per window start (windows with at least one counted probe).
    pub(crate) windows: BTreeMap<u64, Counts>,
    /// Receipts credited per month (by the receipt entry's time): count, bytes.
    pub(crate) receipts: BTreeMap<Month, (u64, u64)>,
    /// The node's class while it served in each month (at its last probe or receipt then).
    pub(crate) month_class: BTreeMap<Month, NodeClass>,
    last_score: Option<ScoreEntry>,
    standing_since_ms: u64,
}

impl Default for NodeBook {
    fn default() -> Self {
        Self {
            class: NodeClass::Serving,
            country: None,
            power_w: None,
            windows: BTreeMap::new(),
            receipts: BTreeMap::new(),
            month_class: BTreeMap::new(),
            last_score: None,
            standing_since_ms: 0,
        }
    }
}

/// The books (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Books {
    pub(crate) policy: Policy,
    next_seq: u64,
    last_at_ms: u64,
    probes_counted: u64,
    pub(crate) nodes: HashMap<NodeId, NodeBook>,
    /// Windows in which any node had a counted probe.
    pub(crate) fleet: BTreeSet<u64>,
    /// Nodes probed in each window whose score entry is not written yet.
    unscored: BTreeMap<u64, BTreeSet<NodeId>>,
    /// Months with any counted probe or receipt.
    months: BTreeSet<Month>,
    /// Logged statements per month.
    stated: BTreeMap<Month, BTreeMap<NodeId, Statement>>,
    gateways: Gateways,
    receipts: Index,
}

impl Books {
    /// Empty books under the default policy (until a policy entry).
    pub fn new() -> Self {
        Self::default()
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The index the next entry must have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The time of the last entry observed, Unix ms.
    pub fn last_at_ms(&self) -> u64 {
        self.last_at_ms
    }

    /// Probes counted so far.
    pub fn probes_counted(&self) -> u64 {
        self.probes_counted
    }

    /// A node's class, if the ledger has a node entry or a probe for it.
    pub fn class(&self, node: &NodeId) -> Option<NodeClass> {
        self.nodes.get(node).map(|n| n.class)
    }

    /// Applies an entry (see the module docs). An `Err` names what the entry got wrong; the
    /// entry is applied all the same (a verifier goes on to find more).
    pub fn observe(&mut self, entry: &Entry) -> Result<(), Inconsistency> {
        let mut problems = Vec::new();
        if entry.seq != self.next_seq {
            problems.push(format!(
                "has index {}, expected {}",
                entry.seq, self.next_seq
            ));
        }
        if entry.at_ms < self.last_at_ms {
            problems.push(format!(
                "is dated {} ms, before the entry preceding it ({} ms)",
                entry.at_ms, self.last_at_ms
            ));
        }
        self.next_seq = entry.seq.saturating_add(1);
        self.last_at_ms = self.last_at_ms.max(entry.at_ms);
        if let Err(why) = self.apply(entry) {
            problems.push(why);
        }
        if entry.seq.is_multiple_of(PRUNE_EVERY) {
            self.receipts.prune(entry.at_ms);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Inconsistency {
                seq: entry.seq,
                reason: problems.join("; "),
            })
        }
    }

    fn apply(&mut self, entry: &Entry) -> Result<(), String> {
        let at = entry.at_ms;
        match &entry.body {
            Body::Policy(p) => {
                p.validate()
                    .map_err(|e| format!("policy is not valid: {e}"))?;
                if p.window_ms != self.policy.window_ms && self.probes_counted > 0 {
                    return Err(format!(
                        "policy changes window_ms from {} to {} after probes were counted",
                        self.policy.window_ms, p.window_ms
                    ));
                }
                self.policy = p.clone();
                Ok(())
            }
            Body::Gateway(g) => {
                self.gateways.record(g.key, at, g.registered);
                Ok(())
            }
            Body::Node(n) => {
                let book = self.nodes.entry(n.node).or_default();
                book.class = n.class;
                book.country = Some(n.country);
                book.power_w = n.power_w;
                Ok(())
            }
            Body::Probe(p) => self.count_probe(p, at),
            Body::Receipt(r) => {
                let checked =
                    self.receipts
                        .check_rules(&self.gateways, &r.receipt, &r.receipt.node, at);
                self.receipts.insert(&r.receipt);
                let month = Month::of(at);
                let book = self.nodes.entry(r.receipt.node).or_default();
                let (count, bytes) = book.receipts.entry(month).or_default();
                *count += 1;
                *bytes = bytes
                    .saturating_add(r.receipt.bytes_from_node)
                    .saturating_add(r.receipt.bytes_to_node);
                book.month_class.insert(month, book.class);
                self.months.insert(month);
                checked.map_err(|e| format!("credits a receipt that should be refused: {e}"))
            }
            Body::Score(s) => self.observe_score(s, at),
            Body::Statement(s) => self.observe_statement(s),
        }
    }

    fn count_probe(&mut self, p: &ProbeEntry, at: u64) -> Result<(), String> {
        if p.issued_at_ms > at {
            return Err("probe is issued after it was logged".into());
        }
        let window = self.policy.window_of(p.issued_at_ms);
        if window + self.policy.window_ms + CLOSE_GRACE_MS <= at {
            // Logged after its window closed: recorded, not counted (SPEC.md §15.4).
            return Ok(());
        }
        let book = self.nodes.entry(p.node).or_default();
        let counts = book.windows.entry(window).or_default();
        if p.passed() {
            counts.passed = counts.passed.saturating_add(1);
        } else {
            counts.failed = counts.failed.saturating_add(1);
        }
        let month = Month::of(window);
        book.month_class.insert(month, book.class);
        self.months.insert(month);
        self.fleet.insert(window);
        self.unscored.entry(window).or_default().insert(p.node);
        self.probes_counted += 1;
        Ok(())
    }

    /// The score entry the books give `node` for `window` now.
    fn score_entry(&self, node: &NodeId, window: u64) -> Option<ScoreEntry> {
        let book = self.nodes.get(node)?;
        let counts = *book.windows.get(&window)?;
        let upto: BTreeMap<u64, Counts> = book
            .windows
            .range(..=window)
            .rev()
            .take(self.policy.score_windows as usize)
            .map(|(w, c)| (*w, *c))
            .collect();
        let (score_ppm, counted) = score::online(&self.policy, &upto);
        Some(ScoreEntry {
            node: *node,
            class: book.class,
            window_start_ms: window,
            passed: counts.passed,
            failed: counts.failed,
            score_ppm,
            standing: score::standing(&self.policy, book.class, score_ppm, counted.total()),
        })
    }

    fn observe_score(&mut self, s: &ScoreEntry, at: u64) -> Result<(), String> {
        let expected = self.score_entry(&s.node, s.window_start_ms);
        if let Some(nodes) = self.unscored.get_mut(&s.window_start_ms) {
            nodes.remove(&s.node);
            if nodes.is_empty() {
                self.unscored.remove(&s.window_start_ms);
            }
        }
        let book = self.nodes.entry(s.node).or_default();
        let previous = book.last_score.as_ref().map(|l| l.standing);
        if previous != Some(s.standing) {
            book.standing_since_ms = at;
        }
        book.last_score = Some(s.clone());
        match expected {
            Some(e) if e == *s => Ok(()),
            Some(e) => Err(format!(
                "score entry does not match the probes: expected {}",
                String::from_utf8_lossy(&serde_json::to_vec(&e).unwrap_or_default())
            )),
            None => Err("score entry for a window in which the node had no counted probe".into()),
        }
    }

    fn observe_statement(&mut self, s: &Statement) -> Result<(), String> {
        let expected = self.compute(&s.node, s.month);
        if !self.stated.contains_key(&s.month) {
            self.prune_before(s.month);
        }
        self.stated
            .entry(s.month)
            .or_default()
            .insert(s.node, s.clone());
        if expected == *s {
            Ok(())
        } else {
            Err(format!(
                "statement does not match the entries: expected {}",
                String::from_utf8_lossy(&serde_json::to_vec(&expected).unwrap_or_default())
            ))
        }
    }

    /// Forgets what no later score or statement needs once `month` is being stated: windows
    /// before it (but the last `score_windows` of each node), and older months' aggregates.
    fn prune_before(&mut self, month: Month) {
        let start = month.start_ms();
        self.fleet = self.fleet.split_off(&start);
        let keep = self.policy.score_windows as usize;
        for book in self.nodes.values_mut() {
            if book.windows.range(..start).next().is_some() {
                let cut: Vec<u64> = book.windows.keys().rev().skip(keep).copied().collect();
                for w in cut.into_iter().filter(|w| *w < start) {
                    book.windows.remove(&w);
                }
            }
            book.receipts = book.receipts.split_off(&month);
            book.month_class = book.month_class.split_off(&month);
        }
    }

    /// One node's statement for `month` from the books now.
    fn compute(&self, node: &NodeId, month: Month) -> Statement {
        statement::compute(self, node, month)
    }

    /// Score entries due at `now_ms`: for every window that closed and every node probed in it
    /// whose entry is not written yet, in window then node order.
    pub fn due_scores(&self, now_ms: u64) -> Vec<Body> {
        let Some(last_closed) = now_ms.checked_sub(self.policy.window_ms + CLOSE_GRACE_MS) else {
            return Vec::new();
        };
        let mut due = Vec::new();
        for (window, nodes) in self.unscored.range(..=last_closed) {
            for node in nodes {
                // A score entry reads only probe counts, never earlier score entries.
                if let Some(entry) = self.score_entry(node, *window) {
                    due.push(Body::Score(entry));
                }
            }
        }
        due
    }

    /// A node's score now (None if it was never probed).
    pub fn score(&self, node: &NodeId) -> Option<NodeScore> {
        let book = self.nodes.get(node)?;
        if book.windows.is_empty() && book.last_score.is_none() {
            return None;
        }
        let (live_ppm, _) = score::online(&self.policy, &book.windows);
        let (score_ppm, standing, counted) = match &book.last_score {
            Some(last) => {
                let closed: BTreeMap<u64, Counts> = book
                    .windows
                    .range(..=last.window_start_ms)
                    .map(|(w, c)| (*w, *c))
                    .collect();
                let (_, counted) = score::online(&self.policy, &closed);
                (last.score_ppm, last.standing, counted)
            }
            None => (1_000_000, Standing::Good, Counts::default()),
        };
        Some(NodeScore {
            score_ppm,
            live_ppm,
            standing,
            probes_passed: u64::from(counted.passed),
            probes_failed: u64::from(counted.failed),
            since_ms: book.standing_since_ms,
            reason: score::reason(
                &self.policy,
                book.class,
                standing,
                score_ppm,
                counted.total(),
            ),
        })
    }

    /// Whether a receipt reported by `sender` may be credited at `now_ms`: its gateway
    /// signature, then the rules of [`ReceiptRefusal`].
    pub fn check_receipt(
        &self,
        receipt: &BandwidthReceipt,
        sender: &NodeId,
        now_ms: u64,
    ) -> Result<(), ReceiptRefusal> {
        receipt.verify().map_err(|_| ReceiptRefusal::BadSignature)?;
        self.receipts
            .check_rules(&self.gateways, receipt, sender, now_ms)
    }

    /// Statement entries due at `now_ms`: for every month that closed, has data and is not
    /// stated yet, one per node seen in it (node order).
    pub fn due_statements(&self, now_ms: u64) -> Vec<Body> {
        self.months
            .iter()
            .filter(|m| m.end_ms() + CLOSE_GRACE_MS <= now_ms && !self.stated.contains_key(m))
            .flat_map(|m| self.computed(*m))
            .map(Body::Statement)
            .collect()
    }

    fn computed(&self, month: Month) -> Vec<Statement> {
        let (start, end) = (month.start_ms(), month.end_ms());
        let mut nodes: Vec<&NodeId> = self
            .nodes
            .iter()
            .filter(|(_, b)| {
                b.windows.range(start..end).next().is_some() || b.receipts.contains_key(&month)
            })
            .map(|(id, _)| id)
            .collect();
        nodes.sort();
        nodes.into_iter().map(|n| self.compute(n, month)).collect()
    }

    /// The statements of `month` (node order): the logged ones once it is stated, else
    /// computed from the entries so far (provisional).
    pub fn statements(&self, month: Month) -> Vec<Statement> {
        match self.stated.get(&month) {
            Some(logged) => logged.values().cloned().collect(),
            None => self.computed(month),
        }
    }

    /// Whether `month`'s statements are in the ledger.
    pub fn is_stated(&self, month: Month) -> bool {
        self.stated.contains_key(&month)
    }
}
