//! Proof bundles, checked offline with nothing but the node's public key:
//! one entry with its inclusion proof and the signed checkpoint it is
//! proven against ([`ProofBundle`]), and everything about one applicant's
//! money, complete ([`ApplicantBundle`], in `applicant.rs`; the signers'
//! keys in `signers.rs`; what it proves, as a [`CaseReport`], in
//! `report.rs`).

mod applicant;
mod membership;
mod report;
mod signers;

pub use applicant::{ApplicantBundle, ProvenEntry, ProvenThread, APPLICANT_BUNDLE_FORMAT};
pub use report::*;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger_keys::{note, KeyId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::entry::Entry;
use crate::hash::Hash;
use crate::merkle;

/// Value of [`ProofBundle::format`].
pub const PROOF_BUNDLE_FORMAT: &str = "caseledger-proof/v1";

/// What `caseledger proof` prints and `caseledger verify-proof` checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    pub format: String,
    /// The entry, exactly as stored and hashed, in standard base64.
    pub entry: String,
    pub leaf_index: u64,
    pub tree_size: u64,
    /// Inclusion proof hashes (RFC 6962 PATH), base64, leaf side first.
    pub inclusion_proof: Vec<String>,
    /// The node-signed checkpoint (C2SP signed note) of size `tree_size`.
    pub checkpoint: String,
}

/// What a verified bundle proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedProof {
    pub origin: String,
    pub tree_size: u64,
    pub root: Hash,
    pub entry: Entry,
}

impl VerifiedProof {
    pub fn signer(&self) -> KeyId {
        self.entry.record.signer
    }
}

pub(crate) fn decode_hash(text: &str) -> Result<Hash, String> {
    BASE64
        .decode(text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| format!("proof hash {text:?} is not 32 bytes of base64"))
}

impl ProofBundle {
    pub fn new(entry_bytes: &[u8], leaf_index: u64, tree_size: u64, proof: &[Hash], checkpoint: String) -> Self {
        Self {
            format: PROOF_BUNDLE_FORMAT.to_owned(),
            entry: BASE64.encode(entry_bytes),
            leaf_index,
            tree_size,
            inclusion_proof: proof.iter().map(|h| BASE64.encode(h)).collect(),
            checkpoint,
        }
    }

    /// Checks the bundle against the node key: the checkpoint's signature,
    /// its size, the entry's position, and the inclusion proof.
    pub fn verify(&self, node_key: &PublicKey) -> Result<VerifiedProof, String> {
        if self.format != PROOF_BUNDLE_FORMAT {
            return Err(format!("unknown bundle format {:?}", self.format));
        }
        let origin = Checkpoint::origin_of(&self.checkpoint).ok_or("checkpoint has no origin line")?;
        let verifier = note::Verifier::new(origin, *node_key).map_err(|e| e.to_string())?;
        let checkpoint = Checkpoint::open(&self.checkpoint, &verifier).map_err(|e| e.to_string())?;
        if checkpoint.size != self.tree_size {
            return Err(format!(
                "bundle says tree size {} but the checkpoint is for size {}",
                self.tree_size, checkpoint.size
            ));
        }
        let bytes = BASE64
            .decode(&self.entry)
            .map_err(|e| format!("entry is not base64: {e}"))?;
        let entry = Entry::decode(&bytes).map_err(|e| format!("entry: {e}"))?;
        if entry.seq != self.leaf_index {
            return Err(format!("entry {} is not at leaf index {}", entry.seq, self.leaf_index));
        }
        let proof = self
            .inclusion_proof
            .iter()
            .map(|h| decode_hash(h))
            .collect::<Result<Vec<_>, _>>()?;
        merkle::verify_inclusion(
            &Entry::hash_of(&bytes),
            self.leaf_index,
            self.tree_size,
            &proof,
            &checkpoint.root,
        )
        .map_err(|e| format!("inclusion proof: {e}"))?;
        Ok(VerifiedProof {
            origin: checkpoint.origin,
            tree_size: checkpoint.size,
            root: checkpoint.root,
            entry,
        })
    }
}

/// `¥40,000.00` from fen.
pub fn yuan(fen: u64) -> String {
    let whole = (fen / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("¥{grouped}.{:02}", fen % 100)
}
