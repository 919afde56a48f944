//! A synthetic but real ledger, for tests, vectors and the verify benchmark: a master key, a
//! few hundred node keys and a gateway key (all from seeds), entries with real signatures
//! (probes answered by the node's key, receipts signed by the gateway), the Merkle tree over
//! them and checkpoints signed by the master. Score and statement entries come from the books
//! ([`Books::due_scores`], [`Books::due_statements`]) as the master writes them, so the whole
//! log is consistent. Deterministic for a given seed.

use std::collections::{HashMap, VecDeque};

use hearth_protocol::messages::audit::AuditAnswer;
use hearth_protocol::messages::usage::BandwidthReceipt;
use hearth_protocol::{Hex, MasterId, NodeId, SecretKey, SignerId};

use crate::books::Books;
use crate::checkpoint::{Checkpoint, origin_for};
use crate::entry::{
    Body, ENTRY_VERSION, Entry, GatewayEntry, Hash, NodeClass, NodeEntry, ProbeEntry, ProbeOutcome,
    ReceiptEntry, leaf_hash,
};
use crate::policy::Policy;
use crate::tree::Tree;

/// 2026-11-01T00:00:00Z, where sample logs start.
pub const SAMPLE_START_MS: u64 = 1_793_491_200_000;

/// A growing sample log.
#[derive(Debug)]
pub struct SampleLog {
    master: SecretKey,
    nodes: Vec<SecretKey>,
    gateway: SecretKey,
    rng: u64,
    probe: u64,
    report: u64,
    /// Current time, ms.
    pub now_ms: u64,
    prev: Hash,
    /// The tree over the entries so far.
    pub tree: Tree,
    /// The books over the entries so far.
    pub books: Books,
    pending: VecDeque<Body>,
    receipt_end: HashMap<usize, u64>,
}

impl SampleLog {
    /// A log of `nodes` nodes (at least one); its first entries (policy, gateway, one per node) are returned by
    /// [`Self::preamble`].
    pub fn new(seed: u64, nodes: usize) -> Self {
        let key = |tag: u64, i: u64| {
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&seed.to_le_bytes());
            s[8..16].copy_from_slice(&tag.to_le_bytes());
            s[16..24].copy_from_slice(&i.to_le_bytes());
            SecretKey::from_seed(&s)
        };
        Self {
            master: key(1, 0),
            nodes: (0..nodes.max(1) as u64).map(|i| key(2, i)).collect(),
            gateway: key(3, 0),
            rng: seed ^ 0x9e37_79b9_7f4a_7c15,
            probe: 0,
            report: 0,
            now_ms: SAMPLE_START_MS,
            prev: Hex([0; 32]),
            tree: Tree::new(),
            books: Books::new(),
            pending: VecDeque::new(),
            receipt_end: HashMap::new(),
        }
    }

    /// The master's id.
    pub fn master(&self) -> MasterId {
        MasterId::from_key(self.master.public())
    }

    /// The master's key.
    pub fn master_key(&self) -> &SecretKey {
        &self.master
    }

    /// The node ids.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .map(|k| NodeId::from_key(k.public()))
            .collect()
    }

    /// The bodies a log starts with: the policy, the gateway, every node.
    pub fn preamble(&self) -> Vec<Body> {
        let mut out = vec![
            Body::Policy(Policy::default()),
            Body::Gateway(GatewayEntry {
                key: SignerId::from_key(self.gateway.public()),
                name: "gw-1".into(),
                registered: true,
            }),
        ];
        for (i, id) in self.node_ids().into_iter().enumerate() {
            out.push(Body::Node(NodeEntry {
                node: id,
                class: NodeClass::Serving,
                country: if i % 3 == 0 { "DE" } else { "FR" }
                    .parse()
                    .unwrap_or_else(|_| unreachable!()),
                power_w: (i % 2 == 0).then_some(25),
            }));
        }
        out
    }

    /// A realistic next body: any score or statement entries now due, else, a little later,
    /// a probe (one in twenty failed) or, one time in eight, a receipt.
    pub fn next_body(&mut self) -> Body {
        if let Some(b) = self.pending.pop_front() {
            return b;
        }
        self.now_ms += 1 + self.next() % 2_000;
        self.pending.extend(self.books.due_scores(self.now_ms));
        self.pending.extend(self.books.due_statements(self.now_ms));
        if let Some(b) = self.pending.pop_front() {
            return b;
        }
        let node = (self.next() % self.nodes.len() as u64) as usize;
        let end = self.now_ms - self.now_ms % 60_000;
        if self.next().is_multiple_of(8) && self.receipt_end.get(&node).is_none_or(|e| *e < end) {
            self.receipt(node)
        } else {
            let pass = !self.next().is_multiple_of(20);
            self.probe_body(node, pass)
        }
    }

    /// A probe of node `node` issued a little before now.
    pub fn probe_body(&mut self, node: usize, pass: bool) -> Body {
        self.probe += 1;
        let nonce = Hex(self.bytes32());
        let rtt_us = 20_000 + self.next() % 80_000;
        let key = self.node_key(node);
        let mut answer = AuditAnswer {
            probe: self.probe,
            nonce,
            issued_at_ms: self.now_ms.saturating_sub(400),
            node: NodeId::from_key(key.public()),
            signature: Hex([0; 64]),
        };
        let outcome = if pass {
            answer.signature = key.sign(&answer.signing_bytes());
            ProbeOutcome::Passed {
                rtt_us,
                signature: answer.signature,
            }
        } else {
            ProbeOutcome::Failed {
                reason: "no answer to 3 attempts within 10 s each".into(),
            }
        };
        Body::Probe(ProbeEntry {
            node: answer.node,
            probe: answer.probe,
            nonce: answer.nonce,
            issued_at_ms: answer.issued_at_ms,
            attempts: if pass { 1 } else { 3 },
            outcome,
        })
    }

    /// A receipt for node `node`'s traffic since its last receipt (at most the last minute),
    /// signed by the gateway.
    pub fn receipt(&mut self, node: usize) -> Body {
        self.report += 1;
        let end = self.now_ms - self.now_ms % 60_000;
        let start = self
            .receipt_end
            .get(&node)
            .map_or(end - 60_000, |e| (*e).max(end - 60_000));
        self.receipt_end.insert(node, end);
        let mut receipt = BandwidthReceipt {
            receipt: Hex(self.bytes32()),
            gateway: SignerId::from_key(self.gateway.public()),
            node: NodeId::from_key(self.node_key(node).public()),
            instance: format!("web-{}", node % 7)
                .parse()
                .unwrap_or_else(|_| unreachable!()),
            window_start_ms: start,
            window_end_ms: end,
            bytes_from_node: self.next() % 50_000_000,
            bytes_to_node: self.next() % 2_000_000,
            signature: Hex([0; 64]),
        };
        receipt.signature = self.gateway.sign(&receipt.signing_bytes());
        Body::Receipt(ReceiptEntry {
            report: self.report,
            receipt,
        })
    }

    /// Appends a body: returns its line (the leaf bytes).
    pub fn append(&mut self, body: Body) -> Vec<u8> {
        let entry = Entry {
            v: ENTRY_VERSION,
            seq: self.tree.size(),
            at_ms: self.now_ms,
            prev: self.prev,
            body,
        };
        let line = entry.to_line();
        // A sample entry the books disagree with is a bug of this generator; the verify
        // tests would report it.
        let _ = self.books.observe(&entry);
        self.prev = leaf_hash(&line);
        self.tree.append(self.prev);
        line
    }

    /// The master's signed checkpoint note at the current size.
    pub fn checkpoint(&self) -> String {
        let size = self.tree.size();
        let root = self.tree.root(size).unwrap_or_else(|_| unreachable!());
        let cp = Checkpoint {
            origin: origin_for(&self.master()),
            size,
            root,
        };
        cp.sign(&self.master).unwrap_or_else(|_| unreachable!())
    }

    fn node_key(&self, node: usize) -> &SecretKey {
        // `new` makes at least one node key
        self.nodes
            .get(node % self.nodes.len())
            .unwrap_or(&self.master)
    }

    fn next(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for c in out.chunks_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        out
    }
}
