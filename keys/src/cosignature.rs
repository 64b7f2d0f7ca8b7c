//! C2SP tlog-cosignature v1 with Ed25519 (c2sp.org/tlog-cosignature): a
//! witness's timestamped statement that a checkpoint is the largest
//! consistent tree it has seen of the log.
//!
//! A cosignature is a signed-note signature line (see [`crate::note`])
//!
//! ```text
//! — <witness name> base64(key id (4) || timestamp (u64 BE, POSIX seconds) || Ed25519 signature (64))
//! ```
//!
//! with key id = SHA-256(name || 0x0A || 0x04 || public key)[:4], over the
//! message `cosignature/v1\ntime <timestamp>\n` followed by the note text
//! (the checkpoint body with its final newline, extension lines included).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::note::SIGNATURE_LINE_PREFIX;
use crate::{Error, Identity, PublicKey, Result, Signature, SIGNATURE_BYTES};

/// Signature type byte of Ed25519 cosignatures (tlog-cosignature v1).
pub const ALGORITHM_COSIGNATURE_V1: u8 = 0x04;
/// Bytes of a cosignature line's blob: key id, timestamp, signature.
pub const COSIGNATURE_BLOB_BYTES: usize = 4 + 8 + SIGNATURE_BYTES;
/// The largest timestamp a cosignature may carry (2^63 - 1).
pub const TIMESTAMP_MAX: u64 = i64::MAX as u64;

fn error(text: impl Into<String>) -> Error {
    Error::Note(text.into())
}

/// The 4-byte key id of a witness's cosigning key.
pub fn key_id(name: &str, key: &PublicKey) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ALGORITHM_COSIGNATURE_V1]);
    hasher.update(key.to_bytes());
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The message a cosignature signs.
pub fn signed_message(text: &str, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{text}").into_bytes()
}

/// A witness as a verifier knows it: its name and cosigning public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witness {
    name: String,
    key_id: u32,
    key: PublicKey,
}

impl Witness {
    pub fn new(name: &str, key: PublicKey) -> Result<Self> {
        crate::note::check_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, &key),
            key,
        })
    }

    /// Parses a verifier key `name+hexid+base64(0x04 || key)`.
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(error("a witness key is name+hexid+base64"));
        };
        let bytes = BASE64
            .decode(key_b64)
            .map_err(|e| error(format!("bad witness key base64: {e}")))?;
        let key = match bytes.split_first() {
            Some((&ALGORITHM_COSIGNATURE_V1, key)) => PublicKey::from_bytes(key)?,
            _ => return Err(error("a witness key is of type 0x04 (Ed25519 cosignature v1)")),
        };
        let witness = Self::new(name, key)?;
        if id_hex.len() != 8 || u32::from_str_radix(id_hex, 16).ok() != Some(witness.key_id) {
            return Err(error(format!("witness key id {id_hex} does not match the key")));
        }
        Ok(witness)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public_key(&self) -> PublicKey {
        self.key
    }

    /// Checks a cosignature blob (key id, timestamp, signature) on `text`;
    /// returns its timestamp.
    fn check(&self, text: &str, blob: &[u8]) -> Result<u64> {
        let blob: &[u8; COSIGNATURE_BLOB_BYTES] = blob
            .try_into()
            .map_err(|_| error(format!("cosignature by {} has the wrong length", self.name)))?;
        let timestamp = u64::from_be_bytes(blob[4..12].try_into().expect("8 bytes"));
        if timestamp == 0 || timestamp > TIMESTAMP_MAX {
            return Err(error(format!("cosignature by {} has no valid time", self.name)));
        }
        let signature = Signature::from_bytes(&blob[12..].try_into().expect("64 bytes"));
        self.key
            .verify_raw(&signed_message(text, timestamp), &signature)
            .map_err(|_| error(format!("cosignature by {} does not verify", self.name)))?;
        Ok(timestamp)
    }
}

impl std::fmt::Display for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut typed = vec![ALGORITHM_COSIGNATURE_V1];
        typed.extend_from_slice(&self.key.to_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, BASE64.encode(typed))
    }
}

/// A witness's private key that cosigns.
#[derive(Clone, Debug)]
pub struct Cosigner {
    witness: Witness,
    identity: Identity,
}

impl Cosigner {
    pub fn new(name: &str, identity: Identity) -> Result<Self> {
        Ok(Self {
            witness: Witness::new(name, identity.public_key())?,
            identity,
        })
    }

    pub fn witness(&self) -> &Witness {
        &self.witness
    }

    /// The cosignature line (with its newline) of `text` at `timestamp`.
    pub fn cosign(&self, text: &str, timestamp: u64) -> Result<String> {
        if timestamp == 0 || timestamp > TIMESTAMP_MAX || !text.ends_with('\n') {
            return Err(error("a cosignature needs a time and a note text ending in a newline"));
        }
        let signature = self.identity.sign_raw(&signed_message(text, timestamp));
        let mut blob = self.witness.key_id.to_be_bytes().to_vec();
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{SIGNATURE_LINE_PREFIX}{} {}\n",
            self.witness.name,
            BASE64.encode(blob)
        ))
    }
}

/// A cosignature that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosigned {
    /// The witness's name.
    pub witness: String,
    /// When it cosigned (POSIX seconds).
    pub timestamp: u64,
}

/// The cosignatures of `witnesses` on a signed note (text, blank line,
/// signature lines), each checked; one per witness key at most (the
/// first): the signed message does not name the witness, so one key
/// listed under two names counts once.
/// Lines of other keys are ignored; a line that names a known witness and
/// key id but does not verify is an error (the note is malformed).
pub fn cosignatures(note: &str, witnesses: &[Witness]) -> Result<Vec<Cosigned>> {
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| error("no blank line between text and signatures"))?;
    let text = &note[..split + 1];
    let mut found: Vec<Cosigned> = Vec::new();
    for line in note[split + 2..].lines() {
        let Some(rest) = line.strip_prefix(SIGNATURE_LINE_PREFIX) else {
            return Err(error("signature line must start with an em dash and a space"));
        };
        let Some((name, blob_b64)) = rest.split_once(' ') else {
            return Err(error("signature line must be name and base64"));
        };
        let Ok(blob) = BASE64.decode(blob_b64) else {
            return Err(error("bad signature base64"));
        };
        let Some(id) = blob.get(..4).map(|id| u32::from_be_bytes([id[0], id[1], id[2], id[3]])) else {
            return Err(error("signature too short"));
        };
        let Some(witness) = witnesses.iter().find(|w| w.name == name && w.key_id == id) else {
            continue;
        };
        let timestamp = witness.check(text, &blob)?;
        let same_key = |c: &Cosigned| witnesses.iter().any(|w| w.name == c.witness && w.key == witness.key);
        if !found.iter().any(same_key) {
            found.push(Cosigned {
                witness: witness.name.clone(),
                timestamp,
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note;

    const TEXT: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    #[test]
    fn a_cosignature_verifies_beside_the_logs_signature_and_is_ignored_by_note_open() {
        let log = note::Signer::new("example.com/behind-the-sofa", Identity::from_seed([1; 32])).expect("log");
        let cosigner = Cosigner::new("witness.example.com/w1", Identity::from_seed([2; 32])).expect("witness");
        let signed = log.sign(TEXT).expect("sign");
        let cosigned = format!("{signed}{}", cosigner.cosign(TEXT, 1_679_315_147).expect("cosign"));
        // The log's verifier ignores the cosignature (another key id).
        let opened = note::open(&cosigned, &[log.verifier().clone()]).expect("open");
        assert_eq!(opened.unknown_signatures, 1);
        let found = cosignatures(&cosigned, &[cosigner.witness().clone()]).expect("cosignatures");
        assert_eq!(
            found,
            vec![Cosigned {
                witness: "witness.example.com/w1".into(),
                timestamp: 1_679_315_147
            }]
        );
        // The witness's key round-trips as a verifier key.
        let text = cosigner.witness().to_string();
        assert_eq!(&Witness::parse(&text).expect("parse"), cosigner.witness());
        assert!(Witness::parse(&log.verifier().to_string()).is_err(), "a type 0x01 key");
        // Another body, or another time: the line does not verify.
        let other = cosigned.replace("20852163", "20852164");
        assert!(cosignatures(&other, &[cosigner.witness().clone()]).is_err());
        let line = cosigner.cosign(TEXT, 1_679_315_147).expect("cosign");
        let blob = BASE64
            .decode(line.trim_end().rsplit(' ').next().expect("blob"))
            .expect("b64");
        let mut later = blob.clone();
        later[11] ^= 1;
        let forged = format!("{signed}\u{2014} witness.example.com/w1 {}\n", BASE64.encode(later));
        assert!(cosignatures(&forged, &[cosigner.witness().clone()]).is_err());
        // An unknown witness's line is ignored.
        let stranger = Cosigner::new("witness.example.com/w1", Identity::from_seed([3; 32])).expect("stranger");
        assert!(cosignatures(&cosigned, &[stranger.witness().clone()])
            .expect("ignored")
            .is_empty());
    }

    #[test]
    fn one_key_under_two_names_counts_once() {
        let log = note::Signer::new("example.com/behind-the-sofa", Identity::from_seed([1; 32])).expect("log");
        let first = Cosigner::new("w1", Identity::from_seed([2; 32])).expect("w1");
        let renamed = Cosigner::new("w1-old", Identity::from_seed([2; 32])).expect("the same key");
        let signed = log.sign(TEXT).expect("sign");
        let line = first.cosign(TEXT, 1_679_315_147).expect("cosign");
        // The same signature, under the other name (the message names no witness).
        let blob = BASE64
            .decode(line.trim_end().rsplit(' ').next().expect("blob"))
            .expect("b64");
        let mut copied = key_id("w1-old", &renamed.witness().public_key()).to_be_bytes().to_vec();
        copied.extend_from_slice(&blob[4..]);
        let note = format!("{signed}{line}\u{2014} w1-old {}\n", BASE64.encode(copied));
        let found = cosignatures(&note, &[first.witness().clone(), renamed.witness().clone()]).expect("verify");
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn the_message_and_key_id_follow_the_spec() {
        assert_eq!(
            signed_message(TEXT, 1_679_315_147),
            format!("cosignature/v1\ntime 1679315147\n{TEXT}").into_bytes()
        );
        let key = Identity::from_seed([2; 32]).public_key();
        let mut hasher = Sha256::new();
        hasher.update(b"w\n\x04");
        hasher.update(key.to_bytes());
        let digest = hasher.finalize();
        assert_eq!(key_id("w", &key).to_be_bytes(), digest[..4]);
        let cosigner = Cosigner::new("w", Identity::from_seed([2; 32])).expect("witness");
        assert!(cosigner.cosign(TEXT, 0).is_err(), "a cosignature has a time");
        assert!(cosigner.cosign(TEXT, TIMESTAMP_MAX + 1).is_err());
    }
}

#[cfg(test)]
mod vector {
    use super::*;

    /// docs/FORMAT.md §6b's vector (checked with pyca/cryptography, an
    /// implementation of its own).
    #[test]
    fn the_format_vector_holds() {
        let cosigner = Cosigner::new("witness.example/w1", Identity::from_seed([2; 32])).expect("witness");
        let text = "court.example/ledger\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        assert_eq!(
            cosigner.witness().to_string(),
            "witness.example/w1+df1c0a35+BIE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU"
        );
        assert_eq!(
            cosigner.cosign(text, 1_795_190_400).expect("cosign"),
            "\u{2014} witness.example/w1 3xwKNQAAAABrAG6Apve7J3bKlR4QHrohei1JFKIlL+C81wmVToXS5nZ9Pn6yrIxLUkkwLrBm/q630ZO0THJujTUxUOkX6vp/+aMHAA==\n"
        );
    }
}
