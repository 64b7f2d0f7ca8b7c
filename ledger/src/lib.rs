//! The caseledger store: the RocksDB ledger and its writer.
//!
//! Everything a verifier must trust (format, hashing, Merkle proofs,
//! checkpoints, the key registry, the case-fund rules, the auditor,
//! bundles) is in `caseledger-verify`; this crate keeps entries, Merkle
//! nodes, checkpoints and derived state in RocksDB, commits appends in
//! durable groups, checks signatures on verifier threads, and drives the
//! pure auditor over what it stored. [`store`] is the only module.
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used)]

pub mod store;

use caseledger_verify::registry;

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
    /// RocksDB found its write-ahead log or tables damaged and the ledger
    /// is not opened (rather than opened without what was lost).
    #[error("the ledger's storage is damaged and is not opened: {0}")]
    Damaged(String),
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
    /// The disk is full: nothing of the write reached the ledger, and
    /// writes wait until space is freed (the writer resumes by itself).
    #[error("the disk is full; writes resume once space is freed: {0}")]
    OutOfSpace(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<caseledger_verify::Error> for Error {
    fn from(error: caseledger_verify::Error) -> Self {
        use caseledger_verify::Error as E;
        match error {
            E::InvalidArgument(detail) => Error::InvalidArgument(detail),
            E::Integrity { seq, check, detail } => Error::Integrity { seq, check, detail },
            E::Source(detail) => Error::Storage(detail),
            other => Error::Storage(other.to_string()),
        }
    }
}

impl From<Error> for caseledger_verify::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(detail) => caseledger_verify::Error::InvalidArgument(detail),
            Error::Integrity { seq, check, detail } => caseledger_verify::Error::Integrity { seq, check, detail },
            other => caseledger_verify::Error::Source(other.to_string()),
        }
    }
}
