//! The caseledger ledger: entries, hash chain, Merkle proofs, checkpoints,
//! verification and the RocksDB store.
//!
//! The modules [`hash`], [`merkle`], [`entry`], [`record`], [`registry`],
//! [`checkpoint`], [`audit`] and [`bundle`] are pure: no I/O, no clock, no
//! async runtime. Time and randomness come in as arguments. An applicant's or
//! auditor's verifier needs only them, SHA-256 and Ed25519. [`store`] is the
//! only module that touches disk.
//!
//! ```
//! use caseledger_ledger::{hash::leaf_hash, merkle};
//!
//! let mut tree = merkle::MemoryTree::new();
//! for i in 0u8..5 {
//!     tree.push(leaf_hash(&[i]));
//! }
//! let proof = merkle::inclusion_proof(&tree, 3, 5).unwrap();
//! merkle::verify_inclusion(&leaf_hash(&[3]), 3, 5, &proof, &tree.root()).unwrap();
//! ```
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used)]

pub mod audit;
pub mod bundle;
pub mod checkpoint;
pub mod entry;
pub mod funds;
pub mod hash;
pub mod merkle;
pub mod record;
pub mod registry;
pub mod state;
pub mod store;

/// Everything that can go wrong in the ledger crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// RocksDB or the file system failed.
    #[error("storage: {0}")]
    Storage(String),
    /// Another process has the ledger open for writing.
    #[error("ledger {path} is already open for writing by another process ({detail})")]
    Locked { path: String, detail: String },
    /// The ledger failed its integrity check on open and refuses writes.
    #[error("ledger is read-only: integrity check failed at seq {first_bad_seq}: {detail}")]
    Corrupt { first_bad_seq: u64, detail: String },
    /// The ledger was opened read-only on purpose.
    #[error("ledger is open read-only")]
    ReadOnly,
    /// A record was refused by a rule; nothing was written.
    #[error("record {index} refused: {source}")]
    Rejected {
        index: usize,
        #[source]
        source: registry::RuleError,
    },
    /// A record's signature did not verify; nothing was written.
    #[error("record {index} refused: signature does not verify")]
    BadSignature { index: usize },
    /// The signature of the request that carried the records (an HTTP
    /// request signature) did not verify; nothing was written.
    #[error("the request signature does not verify")]
    BadRequestSignature,
    /// A caller's argument is out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// Something requested does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Stored data is not what the ledger wrote.
    #[error("integrity: seq {seq}: {check}: {detail}")]
    Integrity { seq: u64, check: String, detail: String },
    /// A key or key file problem.
    #[error(transparent)]
    Keys(#[from] caseledger_keys::Error),
    /// The writer stopped after a failed commit; reopen the ledger.
    #[error("ledger writer stopped: {0}")]
    Poisoned(String),
}

pub type Result<T> = std::result::Result<T, Error>;
