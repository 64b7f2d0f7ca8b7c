//! Checkpoints: C2SP tlog-checkpoint bodies signed as C2SP signed notes.
//!
//! ```text
//! <origin>\n
//! <tree size, decimal>\n
//! <root hash, standard base64>\n
//! ```
//!
//! A caseledger checkpoint has one extension line (C2SP allows them after
//! the root), the root of the thread map (§3c) as of the same size:
//!
//! ```text
//! caseledger-threads <thread-map root, standard base64>\n
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
    /// The root of the thread map of the first `size` entries.
    pub threads: Hash,
}

/// The keyword of the thread-map extension line.
pub const THREADS_LINE: &str = "caseledger-threads";

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
        format!(
            "{}\n{}\n{}\n{THREADS_LINE} {}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root),
            BASE64.encode(self.threads)
        )
    }

    /// Parses a checkpoint body: origin, size, root and exactly one
    /// extension line, the thread-map root.
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
        // The body ends at its first empty line (a signed note's signatures follow it).
        let extensions: Vec<&str> = lines.take_while(|l| !l.is_empty()).collect();
        let threads: Hash = match extensions.as_slice() {
            [line] => line
                .strip_prefix(THREADS_LINE)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|b64| BASE64.decode(b64).ok())
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| {
                    format("the extension line must be the thread-map root: caseledger-threads <32 bytes of base64>")
                })?,
            [] => return Err(format("missing the thread-map line (caseledger-threads)")),
            _ => {
                return Err(format(
                    "a checkpoint has exactly one extension line, the thread-map root",
                ))
            }
        };
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            threads,
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
            threads: [9; 32],
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
        let root = BASE64.encode([1u8; 32]);
        let ok = format!("o\n12\n{root}\ncaseledger-threads {root}\n");
        assert_eq!(Checkpoint::parse_body(&ok).expect("parses").threads, [1; 32]);
        assert!(Checkpoint::parse_body(&format!("o\n12\n{root}\n")).is_err());
        assert!(Checkpoint::parse_body(&format!("o\n12\n{root}\ncaseledger-threads AAAA\n")).is_err());
        assert!(Checkpoint::parse_body(&format!("o\n12\n{root}\nother {root}\n")).is_err());
        assert!(Checkpoint::parse_body(&format!("{ok}caseledger-threads {root}\n")).is_err());
    }
}
