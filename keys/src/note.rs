//! C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys.
//!
//! A note is UTF-8 text ending in a newline, a blank line, then one signature
//! line per signer: `— <name> <base64(key id (4 bytes, big-endian) || signature)>`.
//! The key id is the first four bytes of SHA-256(name || 0x0A || 0x01 || public key).
//! Checkpoints are notes, so witnesses can add their own signature lines; a
//! verifier ignores lines from keys it does not know.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::{Error, Identity, PublicKey, Result, Signature, SIGNATURE_BYTES};

/// Signature type byte of Ed25519 in the signed-note format.
pub const ALGORITHM_ED25519: u8 = 0x01;
/// The em dash and space that open every signature line.
pub const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";
/// A note with more signature lines than this is refused.
pub const SIGNATURES_MAX: usize = 100;

fn note_error(text: impl Into<String>) -> Error {
    Error::Note(text.into())
}

/// Key names may not be empty or contain whitespace or '+'.
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control()) {
        return Err(note_error(format!("invalid key name {name:?}")));
    }
    Ok(())
}

/// The 4-byte key id of a named Ed25519 key.
pub fn key_id(name: &str, key: &PublicKey) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ALGORITHM_ED25519]);
    hasher.update(key.to_bytes());
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// A named public key that can check note signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    key: PublicKey,
}

impl Verifier {
    pub fn new(name: &str, key: PublicKey) -> Result<Self> {
        check_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, &key),
            key,
        })
    }

    /// Parses `name+hexid+base64(0x01 || key)`, checking that the id matches.
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(note_error("verifier key must be name+hexid+base64"));
        };
        let key_bytes = decode_typed_key(key_b64)?;
        let verifier = Self::new(name, PublicKey::from_bytes(&key_bytes)?)?;
        if id_hex.len() != 8 || u32::from_str_radix(id_hex, 16).ok() != Some(verifier.key_id) {
            return Err(note_error(format!("verifier key id {id_hex} does not match the key")));
        }
        Ok(verifier)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn public_key(&self) -> PublicKey {
        self.key
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut typed = vec![ALGORITHM_ED25519];
        typed.extend_from_slice(&self.key.to_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, BASE64.encode(typed))
    }
}

fn decode_typed_key(b64: &str) -> Result<Vec<u8>> {
    let bytes = BASE64
        .decode(b64)
        .map_err(|e| note_error(format!("bad key base64: {e}")))?;
    match bytes.split_first() {
        Some((&ALGORITHM_ED25519, key)) => Ok(key.to_vec()),
        _ => Err(note_error("key is not an Ed25519 (type 0x01) key")),
    }
}

/// A named private key that signs notes.
#[derive(Clone, Debug)]
pub struct Signer {
    verifier: Verifier,
    identity: Identity,
}

impl Signer {
    pub fn new(name: &str, identity: Identity) -> Result<Self> {
        Ok(Self {
            verifier: Verifier::new(name, identity.public_key())?,
            identity,
        })
    }

    /// Parses `PRIVATE+KEY+name+hexid+base64(0x01 || seed)`.
    pub fn parse(text: &str) -> Result<Self> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| note_error("signer key must start with PRIVATE+KEY+"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(seed_b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(note_error("signer key must be PRIVATE+KEY+name+hexid+base64"));
        };
        let seed: [u8; 32] = decode_typed_key(seed_b64)?
            .try_into()
            .map_err(|_| note_error("signer seed must be 32 bytes"))?;
        let signer = Self::new(name, Identity::from_seed(seed))?;
        if u32::from_str_radix(id_hex, 16).ok() != Some(signer.verifier.key_id) {
            return Err(note_error("signer key id does not match the key"));
        }
        Ok(signer)
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The signature line for `text`, including its trailing newline.
    pub fn signature_line(&self, text: &str) -> Result<String> {
        check_text(text)?;
        let signature = self.identity.sign_raw(text.as_bytes());
        let mut blob = self.verifier.key_id.to_be_bytes().to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{SIGNATURE_LINE_PREFIX}{} {}\n",
            self.verifier.name,
            BASE64.encode(blob)
        ))
    }

    /// Signs `text` into a complete note.
    pub fn sign(&self, text: &str) -> Result<String> {
        Ok(format!("{text}\n{}", self.signature_line(text)?))
    }
}

fn check_text(text: &str) -> Result<()> {
    if !text.ends_with('\n') {
        return Err(note_error("note text must end with a newline"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(note_error("note text contains a control character"));
    }
    Ok(())
}

/// A note whose signature by a known key was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// The signed text, ending in a newline.
    pub text: &'a str,
    /// Names of the known keys whose signatures verified.
    pub verified_by: Vec<String>,
    /// Signature lines from keys the verifier does not know (e.g. witnesses).
    pub unknown_signatures: usize,
}

/// Splits a note into text and signature lines and checks every signature by
/// a key in `verifiers`. At least one known signature must verify; a known
/// key with a bad signature is an error; unknown keys are skipped.
pub fn open<'a>(note: &'a str, verifiers: &[Verifier]) -> Result<Opened<'a>> {
    if !note.ends_with('\n') {
        return Err(note_error("note must end with a newline"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| note_error("no blank line between text and signatures"))?;
    let text = &note[..split + 1];
    check_text(text)?;
    let lines: Vec<&str> = note[split + 2..].lines().collect();
    if lines.is_empty() {
        return Err(note_error("note has no signatures"));
    }
    if lines.len() > SIGNATURES_MAX {
        return Err(note_error("note has too many signatures"));
    }
    let mut opened = Opened {
        text,
        verified_by: Vec::new(),
        unknown_signatures: 0,
    };
    for line in lines {
        let (name, id, signature) = parse_signature_line(line)?;
        let known = verifiers.iter().find(|v| v.name == name && v.key_id == id);
        match (known, signature) {
            (Some(verifier), Some(signature)) => {
                verifier
                    .key
                    .verify_raw(text.as_bytes(), &signature)
                    .map_err(|_| note_error(format!("signature by {name} does not verify")))?;
                opened.verified_by.push(name.to_owned());
            }
            (Some(_), None) => return Err(note_error(format!("signature by {name} has the wrong length"))),
            (None, _) => opened.unknown_signatures += 1,
        }
    }
    if opened.verified_by.is_empty() {
        return Err(note_error("no signature by a known key"));
    }
    Ok(opened)
}

/// Returns (name, key id, Ed25519 signature if the blob has the right length).
fn parse_signature_line(line: &str) -> Result<(&str, u32, Option<Signature>)> {
    let rest = line
        .strip_prefix(SIGNATURE_LINE_PREFIX)
        .ok_or_else(|| note_error("signature line must start with an em dash and a space"))?;
    let (name, blob_b64) = rest
        .split_once(' ')
        .ok_or_else(|| note_error("signature line must be name and base64"))?;
    check_name(name)?;
    let blob = BASE64
        .decode(blob_b64)
        .map_err(|e| note_error(format!("bad signature base64: {e}")))?;
    if blob.len() < 5 {
        return Err(note_error("signature too short"));
    }
    let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
    let signature = <[u8; SIGNATURE_BYTES]>::try_from(&blob[4..])
        .ok()
        .map(|bytes| Signature::from_bytes(&bytes));
    Ok((name, id, signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_open() {
        let signer = Signer::new("example.org/log", Identity::from_seed([3; 32])).expect("signer");
        let note = signer.sign("hello\nworld\n").expect("sign");
        let opened = open(&note, &[signer.verifier().clone()]).expect("open");
        assert_eq!(opened.text, "hello\nworld\n");
        let tampered = note.replace("world", "w0rld");
        assert!(open(&tampered, &[signer.verifier().clone()]).is_err());
        let other = Signer::new("example.org/log", Identity::from_seed([4; 32])).expect("signer");
        assert!(open(&note, &[other.verifier().clone()]).is_err(), "unknown key only");
    }

    #[test]
    fn verifier_key_round_trips() {
        let signer = Signer::new("court", Identity::from_seed([5; 32])).expect("signer");
        let text = signer.verifier().to_string();
        assert_eq!(&Verifier::parse(&text).expect("parse"), signer.verifier());
        let wrong_id = text.replacen('+', "+0", 1).replacen("+0", "+", 1);
        assert_eq!(wrong_id, text);
        let mut bad = text.clone();
        bad.replace_range(6..7, if &text[6..7] == "0" { "1" } else { "0" });
        assert!(Verifier::parse(&bad).is_err(), "changed key id must be refused");
    }

    #[test]
    fn text_rules() {
        let signer = Signer::new("court", Identity::from_seed([5; 32])).expect("signer");
        assert!(signer.sign("no newline").is_err());
        assert!(signer.sign("tab\there\n").is_err());
    }
}
