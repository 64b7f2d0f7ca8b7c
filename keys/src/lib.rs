//! Identities, key files and domain-separated signing for caseledger.
//!
//! Everything that signs in caseledger (the ledger node, court members, demo
//! writers) is an Ed25519 key pair from `ed25519-dalek`. This crate owns:
//!
//! * [`Identity`] (a private key) and [`PublicKey`], with their file formats
//!   (PKCS#8 / SPKI PEM, so `openssl pkeyutl -verify -rawin` can check us);
//! * [`KeyId`], the 32-byte identifier of a public key used inside entries;
//! * [`context`], the domain-separation constant of every kind of signed message;
//! * [`note`], the C2SP signed-note format used for checkpoints;
//! * [`cosignature`], C2SP tlog-cosignature v1 (Ed25519): witnesses'
//!   timestamped cosignatures of checkpoints;
//!
//! There is one signature rule, [`PublicKey::verify_raw`] (strict RFC 8032),
//! and one key rule, [`PublicKey::from_bytes`] (a canonical point of the
//! prime-order subgroup, not the identity); every path in caseledger uses
//! them.
//!
//! It does no I/O except in `files` (feature `files`, on by default), which
//! reads and writes key files; without the features `files` and `generate`
//! it builds for `wasm32-unknown-unknown` (the verifier's browser build).
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]

pub mod context;
pub mod cosignature;
#[cfg(feature = "files")]
pub mod files;
mod identity;
pub mod note;

pub use identity::{Identity, KeyId, PublicKey, Signature, SIGNATURE_BYTES};

/// Everything that can go wrong with keys, key files and signatures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key file could not be read or written. (The I/O error is in the
    /// message, not the source chain, so that `{:#}` says it once.)
    #[error("key file {path}: {error}")]
    Io { path: String, error: std::io::Error },
    /// A private key file is readable by group or others.
    #[error(
        "private key file {path} has mode {mode:o}; it must not be readable by group or others (chmod 600 {path})"
    )]
    InsecurePermissions { path: String, mode: u32 },
    /// A key could not be parsed.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A signature did not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A signed note is malformed or not signed by the expected key.
    #[error("signed note: {0}")]
    Note(String),
}

pub type Result<T> = std::result::Result<T, Error>;
