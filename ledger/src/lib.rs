//! Hearth's credits ledger (SPEC.md §15): the entries the master appends (probe outcomes,
//! settled receipts, scores, monthly statements), the credits formula, the RFC 6962 Merkle log
//! over them with C2SP signed checkpoints, inclusion and consistency proofs, witnesses that
//! co-sign only a log that extends what they signed before, and a verifier that recomputes all
//! of it from an export. Depends on neither the master nor its database: auditors run it alone.

pub mod books;
pub mod checkpoint;
pub mod entry;
pub mod export;
pub mod month;
pub mod policy;
pub mod proof;
pub mod receipts;
pub mod render;
pub mod sample;
pub mod score;
pub mod statement;
pub mod tree;
pub mod verify;
pub mod witness;

pub use checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint, WitnessKey, WitnessVkey};
pub use entry::{Body, Entry, EntryError, Hash, NodeClass, Standing, leaf_hash};
pub use export::{ExportError, ExportHeader, ExportWriter};
pub use policy::Policy;
pub use proof::{
    ConsistencyProof, InclusionProof, ProofError, verify_consistency, verify_inclusion,
};
pub use statement::{Month, Statement};
pub use tree::{Frontier, Tree, TreeError};
pub use verify::{Observer, Problem, Report, VerifyOptions, verify};
pub use witness::{WitnessError, WitnessState};
