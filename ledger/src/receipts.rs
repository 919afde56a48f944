//! The rules a bandwidth receipt must meet to be credited (SPEC.md §9.17, §15.4), and the index
//! of credited receipts they are checked against: each receipt id is credited once, and the
//! windows credited for one gateway, node and instance never overlap.

use std::collections::{BTreeMap, HashMap};

use hearth_protocol::messages::usage::BandwidthReceipt;
use hearth_protocol::{ErrorCode, NodeId, Nonce, SignerId};

/// A receipt window longer than this is refused.
pub const MAX_WINDOW_MS: u64 = 24 * 3_600_000;
/// A receipt whose window ends further than this in the future is refused (clock skew).
pub const MAX_SKEW_MS: u64 = 5 * 60_000;
/// A receipt whose window ended longer ago than this is refused (and forgotten by the index).
pub const MAX_AGE_MS: u64 = 35 * 86_400_000;

/// Why a receipt is not credited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptRefusal {
    /// The signature does not verify under the named gateway's key.
    #[error("the signature does not verify under the gateway's key")]
    BadSignature,
    /// The signer was not a registered gateway when the window ended.
    #[error("{0} was not a registered gateway when the receipt's window ended")]
    UnknownSigner(SignerId),
    /// The receipt names another node.
    #[error("the receipt credits {0}, not the node that reported it")]
    NotYours(NodeId),
    /// This receipt id was credited before.
    #[error("this receipt was credited before")]
    Duplicate,
    /// Its window overlaps one credited for the same gateway, node and instance.
    #[error("its window overlaps a receipt already credited for the same gateway and instance")]
    Overlapping,
    /// Its window is empty, too long, in the future or too old.
    #[error("its window is not acceptable: {0}")]
    BadWindow(&'static str),
}

impl ReceiptRefusal {
    /// The code a settlement names (SPEC.md §9.17).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadSignature => ErrorCode::BadSignature,
            Self::UnknownSigner(_) => ErrorCode::UnknownSigner,
            Self::NotYours(_) => ErrorCode::NotYours,
            Self::Duplicate => ErrorCode::Duplicate,
            Self::Overlapping => ErrorCode::Overlapping,
            Self::BadWindow(_) => ErrorCode::BadWindow,
        }
    }
}

/// Who may sign receipts when: each gateway's registration changes, in log order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Gateways {
    history: HashMap<SignerId, Vec<(u64, bool)>>,
}

impl Gateways {
    pub(crate) fn record(&mut self, key: SignerId, at_ms: u64, registered: bool) {
        self.history
            .entry(key)
            .or_default()
            .push((at_ms, registered));
    }

    /// Whether `key` was registered at `at_ms` (its last change at or before then).
    pub(crate) fn registered_at(&self, key: &SignerId, at_ms: u64) -> bool {
        self.history.get(key).is_some_and(|h| {
            h.iter()
                .rev()
                .find(|(t, _)| *t <= at_ms)
                .is_some_and(|(_, on)| *on)
        })
    }
}

type Stream = (SignerId, NodeId, String);

/// Credited receipts, for duplicate and overlap checks (entries older than [`MAX_AGE_MS`] are
/// dropped by [`Index::prune`]: such receipts are refused as too old anyway).
#[derive(Debug, Default, Clone)]
pub(crate) struct Index {
    ids: HashMap<Nonce, u64>,
    windows: HashMap<Stream, BTreeMap<u64, u64>>,
}

fn stream(r: &BandwidthReceipt) -> Stream {
    (r.gateway, r.node, r.instance.as_str().to_owned())
}

impl Index {
    /// Checks everything but the signature (the verifier checks those separately).
    pub(crate) fn check_rules(
        &self,
        gateways: &Gateways,
        r: &BandwidthReceipt,
        sender: &NodeId,
        now_ms: u64,
    ) -> Result<(), ReceiptRefusal> {
        if r.node != *sender {
            return Err(ReceiptRefusal::NotYours(r.node));
        }
        if !gateways.registered_at(&r.gateway, r.window_end_ms) {
            return Err(ReceiptRefusal::UnknownSigner(r.gateway));
        }
        if r.window_end_ms <= r.window_start_ms {
            return Err(ReceiptRefusal::BadWindow("it ends before it starts"));
        }
        if r.window_end_ms - r.window_start_ms > MAX_WINDOW_MS {
            return Err(ReceiptRefusal::BadWindow("it is longer than 24 h"));
        }
        if r.window_end_ms > now_ms.saturating_add(MAX_SKEW_MS) {
            return Err(ReceiptRefusal::BadWindow("it ends in the future"));
        }
        if r.window_end_ms.saturating_add(MAX_AGE_MS) < now_ms {
            return Err(ReceiptRefusal::BadWindow(
                "it ended more than 35 days ago: too late to settle",
            ));
        }
        if self.ids.contains_key(&r.receipt) {
            return Err(ReceiptRefusal::Duplicate);
        }
        if let Some(windows) = self.windows.get(&stream(r))
            && let Some((_, end)) = windows.range(..r.window_end_ms).next_back()
            && *end > r.window_start_ms
        {
            return Err(ReceiptRefusal::Overlapping);
        }
        Ok(())
    }

    pub(crate) fn insert(&mut self, r: &BandwidthReceipt) {
        self.ids.insert(r.receipt, r.window_end_ms);
        self.windows
            .entry(stream(r))
            .or_default()
            .insert(r.window_start_ms, r.window_end_ms);
    }

    /// Forgets receipts too old to be settled again at `now_ms`.
    pub(crate) fn prune(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(MAX_AGE_MS + MAX_WINDOW_MS);
        self.ids.retain(|_, end| *end >= horizon);
        self.windows.retain(|_, w| {
            w.retain(|_, end| *end >= horizon);
            !w.is_empty()
        });
    }
}
