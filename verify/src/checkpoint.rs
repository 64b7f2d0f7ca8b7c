//! Checkpoints: C2SP tlog-checkpoint bodies signed as C2SP signed notes.
//!
//! ```text
//! <origin>\n
//! <tree size, decimal>\n
//! <root hash, standard base64>\n
//! ```
//!
//! The node key signs under the name `<origin>`; witnesses may append their
//! own signature lines, which verifiers that do not know them ignore.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger_keys::note;

use crate::hash::Hash;

/// The signed statement "the ledger `origin` has `size` entries with root `root`".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// Why a checkpoint did not parse or verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint signature: {0}")]
    Signature(String),
    #[error("checkpoint body: {0}")]
    Format(String),
}

impl Checkpoint {
    /// The note text (the body that is signed).
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, BASE64.encode(self.root))
    }

    /// Parses a checkpoint body; extension lines after the root are allowed
    /// (C2SP) but ignored.
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let format = |s: &str| CheckpointError::Format(s.to_owned());
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| format("missing origin"))?;
        let size_text = lines.next().ok_or_else(|| format("missing size"))?;
        if size_text.is_empty()
            || !size_text.bytes().all(|b| b.is_ascii_digit())
            || (size_text.len() > 1 && size_text.starts_with('0'))
        {
            return Err(format("size must be a decimal number without leading zeros"));
        }
        let size = size_text.parse().map_err(|_| format("size out of range"))?;
        let root_text = lines.next().ok_or_else(|| format("missing root"))?;
        let root: Hash = BASE64
            .decode(root_text)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| format("root must be 32 bytes in base64"))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// Signs this checkpoint with the node's note signer.
    pub fn sign(&self, signer: &note::Signer) -> Result<String, CheckpointError> {
        signer
            .sign(&self.body())
            .map_err(|e| CheckpointError::Signature(e.to_string()))
    }

    /// Verifies a signed checkpoint against the node key and parses it.
    pub fn open(signed: &str, verifier: &note::Verifier) -> Result<Self, CheckpointError> {
        let opened = note::open(signed, std::slice::from_ref(verifier))
            .map_err(|e| CheckpointError::Signature(e.to_string()))?;
        let checkpoint = Self::parse_body(opened.text)?;
        if checkpoint.origin != verifier.name() {
            return Err(CheckpointError::Format(format!(
                "origin {:?} is not the key name {:?}",
                checkpoint.origin,
                verifier.name()
            )));
        }
        Ok(checkpoint)
    }

    /// The origin of a signed checkpoint, read without verifying (to pick the key name).
    pub fn origin_of(signed: &str) -> Option<&str> {
        signed.split('\n').next().filter(|o| !o.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caseledger_keys::Identity;

    #[test]
    fn sign_open_and_reject_changes() {
        let signer = note::Signer::new("court.example/ledger", Identity::from_seed([8; 32])).expect("signer");
        let checkpoint = Checkpoint {
            origin: "court.example/ledger".into(),
            size: 42,
            root: [7; 32],
        };
        let signed = checkpoint.sign(&signer).expect("sign");
        assert!(signed.starts_with("court.example/ledger\n42\n"));
        assert_eq!(Checkpoint::open(&signed, signer.verifier()).expect("open"), checkpoint);
        let changed = signed.replace("\n42\n", "\n43\n");
        assert!(matches!(
            Checkpoint::open(&changed, signer.verifier()),
            Err(CheckpointError::Signature(_))
        ));
    }

    #[test]
    fn body_rules() {
        assert!(Checkpoint::parse_body("o\n012\nAAAA\n").is_err());
        assert!(Checkpoint::parse_body("o\n12\nAAAA\n").is_err());
        assert!(Checkpoint::parse_body("o\n-1\nAAAA\n").is_err());
    }
}
