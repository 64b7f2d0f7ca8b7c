//! Everything a caseledger verifier must trust, and nothing else.
//!
//! An applicant's browser, an auditor's laptop and the ledger's own writer
//! run this same code: the entry and record format ([`entry`], [`record`]),
//! hashing and Merkle proofs ([`hash`], [`merkle`]), signed checkpoints
//! ([`checkpoint`]), the key registry ([`registry`], [`member`]), the
//! case-fund rules ([`funds`]) and how a record is admitted by both
//! ([`admission`]), the derived state they build ([`state`]), the auditor
//! that replays a whole ledger ([`audit`]), the export format it can replay
//! without any store ([`export`]) and the bundles that prove one entry or
//! one applicant's money ([`bundle`]). Signatures and keys follow
//! the one rule of `caseledger-keys` (docs/FORMAT.md §2).
//!
//! Architecture Invariant: this crate does no I/O, reads no clock, starts
//! no thread, draws no random number and has no `unsafe`. Time comes in as
//! an argument (an entry's timestamp, a caller's `now_ms`); storage comes
//! in through two small traits ([`merkle::NodeSource`],
//! [`state::StateRead`]); a caller that wants to check signatures on
//! several cores does so itself and hands the verdicts to the
//! [`audit::Auditor`]. It builds for `wasm32-unknown-unknown`.
//!
//! ```
//! use caseledger_verify::{hash::leaf_hash, merkle};
//!
//! let mut tree = merkle::MemoryTree::new();
//! for i in 0u8..5 {
//!     tree.push(leaf_hash(&[i]));
//! }
//! let proof = merkle::inclusion_proof(&tree, 3, 5).unwrap();
//! merkle::verify_inclusion(&leaf_hash(&[3]), 3, 5, &proof, &tree.root()).unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]

pub mod admission;
pub mod audit;
pub mod bundle;
pub mod checkpoint;
pub mod disclosure;
pub mod entry;
pub mod export;
pub mod funds;
pub mod hash;
pub mod member;
pub mod merkle;
pub mod record;
pub mod registry;
pub mod state;
pub mod text;
pub mod thread_map;
pub mod threads;
pub mod timestamp;

/// What can go wrong in the verifier's own calls (rule refusals and proof
/// failures have their own types: [`registry::RuleError`],
/// [`merkle::ProofError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A caller's argument is out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// Data read through [`merkle::NodeSource`] or [`state::StateRead`] is
    /// not what the ledger wrote.
    #[error("integrity: seq {seq}: {check}: {detail}")]
    Integrity { seq: u64, check: String, detail: String },
    /// The source behind [`merkle::NodeSource`] or [`state::StateRead`]
    /// failed (a storage error, in the store's words).
    #[error("source: {0}")]
    Source(String),
}

pub type Result<T> = std::result::Result<T, Error>;
