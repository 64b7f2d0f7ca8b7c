//! The entry format: a hash-chained envelope around a signed record.
//!
//! Layout (all integers big-endian; see docs/FORMAT.md):
//!
//! ```text
//! offset  size  field
//! 0       1     format version (1)
//! 1       8     sequence number
//! 9       8     ledger timestamp, milliseconds since the Unix epoch (UTC)
//! 17      32    hash of the previous entry (RFC 6962 leaf hash; zeros at seq 0)
//! 49      2     record kind            ┐
//! 51      32    signer key id          │ record body
//! 83      4     payload length L       │
//! 87      L     payload                ┘
//! 87+L    64    Ed25519 signature of the signer
//! ```
//!
//! The signature covers `LEDGER_RECORD || 0x00 || len(origin) (1 byte) ||
//! origin || record body`: the ledger's origin (from its genesis entry) is
//! signed but not stored, so a record signed for one ledger (another
//! court's, a staging ledger) does not verify in another that registers
//! the same key. The signer cannot know the sequence number when it signs,
//! so the record signature does not cover the envelope; the chain position
//! is protected by the hash chain and by the node-signed checkpoints over
//! the Merkle tree.

use caseledger_keys::{context, Identity, KeyId, PublicKey, Signature, SIGNATURE_BYTES};

use crate::hash::{leaf_hash, Hash};

/// The only entry format version so far.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes before the record body.
pub const ENVELOPE_BYTES: usize = 1 + 8 + 8 + 32;
/// Bytes of the record body before the payload.
pub const RECORD_HEADER_BYTES: usize = 2 + 32 + 4;
/// Largest payload accepted in one record.
pub const PAYLOAD_BYTES_MAX: usize = 1 << 20;

/// Why entry bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("entry is {0} bytes, too short")]
    TooShort(usize),
    #[error("unknown entry format version {0}")]
    UnknownVersion(u8),
    #[error("payload length {0} exceeds the maximum")]
    PayloadTooLarge(usize),
    #[error("entry length {actual} does not match its payload length (expected {expected})")]
    LengthMismatch { expected: usize, actual: usize },
}

/// A record as its signer made it: kind, payload, signer and signature,
/// and the disclosures of the values its payload conceals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: u16,
    pub signer: KeyId,
    pub payload: Vec<u8>,
    pub signature: Signature,
    /// Disclosure texts (docs/FORMAT.md §3j): beside the record, neither
    /// signed nor in the entry bytes; each opens a digest the signed
    /// payload holds. Empty when decoded from entry bytes alone.
    pub disclosures: Vec<String>,
}

impl Record {
    /// Signs a new record with `identity` for the ledger named `origin`.
    pub fn sign(origin: &str, kind: u16, payload: Vec<u8>, identity: &Identity) -> Self {
        let signer = identity.public_key().key_id();
        let body = record_body(kind, &signer, &payload);
        let signature = identity.sign(context::LEDGER_RECORD, &bound_body(origin, &body));
        Self {
            kind,
            signer,
            payload,
            signature,
            disclosures: Vec::new(),
        }
    }

    /// The same record with the disclosures of its concealed values.
    pub fn with_disclosures(mut self, disclosures: Vec<String>) -> Self {
        self.disclosures = disclosures;
        self
    }

    /// The record body that the signature covers (without the context prefix).
    pub fn body(&self) -> Vec<u8> {
        record_body(self.kind, &self.signer, &self.payload)
    }

    /// The exact bytes the signer signed for the ledger named `origin`:
    /// `LEDGER_RECORD || 0x00 || len(origin) || origin || body`.
    pub fn signed_message(&self, origin: &str) -> Vec<u8> {
        context::message(context::LEDGER_RECORD, &bound_body(origin, &self.body()))
    }

    /// Checks the signature, under the one signature rule, as a record of
    /// the ledger named `origin`.
    pub fn verify(&self, origin: &str, key: &PublicKey) -> caseledger_keys::Result<()> {
        key.verify_raw(&self.signed_message(origin), &self.signature)
    }
}

/// `len(origin) (u8) || origin || body`. Origins are 1 to 255 bytes
/// (`record::check_origin`); a longer one is cut at 255 bytes, which no
/// ledger's origin can be.
fn bound_body(origin: &str, body: &[u8]) -> Vec<u8> {
    let origin = &origin.as_bytes()[..origin.len().min(255)];
    let mut bound = Vec::with_capacity(1 + origin.len() + body.len());
    bound.push(origin.len() as u8);
    bound.extend_from_slice(origin);
    bound.extend_from_slice(body);
    bound
}

fn record_body(kind: u16, signer: &KeyId, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    body.extend_from_slice(&kind.to_be_bytes());
    body.extend_from_slice(&signer.0);
    body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    body.extend_from_slice(payload);
    body
}

/// A ledger entry: the envelope fields and the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub timestamp_ms: u64,
    pub prev_hash: Hash,
    pub record: Record,
}

impl Entry {
    /// Serialises the entry. These bytes are stored, hashed and proven as they are.
    pub fn encode(&self) -> Vec<u8> {
        let payload = &self.record.payload;
        let mut bytes = Vec::with_capacity(ENVELOPE_BYTES + RECORD_HEADER_BYTES + payload.len() + SIGNATURE_BYTES);
        bytes.push(FORMAT_VERSION);
        bytes.extend_from_slice(&self.seq.to_be_bytes());
        bytes.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        bytes.extend_from_slice(&self.prev_hash);
        bytes.extend_from_slice(&self.record.kind.to_be_bytes());
        bytes.extend_from_slice(&self.record.signer.0);
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes.extend_from_slice(&self.record.signature.to_bytes());
        bytes
    }

    /// Parses entry bytes. Every byte is accounted for: trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let minimum = ENVELOPE_BYTES + RECORD_HEADER_BYTES + SIGNATURE_BYTES;
        if bytes.len() < minimum {
            return Err(DecodeError::TooShort(bytes.len()));
        }
        if bytes[0] != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion(bytes[0]));
        }
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let payload_len = u32::from_be_bytes(bytes[83..87].try_into().expect("4 bytes")) as usize;
        if payload_len > PAYLOAD_BYTES_MAX {
            return Err(DecodeError::PayloadTooLarge(payload_len));
        }
        let expected = minimum + payload_len;
        if bytes.len() != expected {
            return Err(DecodeError::LengthMismatch {
                expected,
                actual: bytes.len(),
            });
        }
        let payload_end = 87 + payload_len;
        let signature: [u8; SIGNATURE_BYTES] = bytes[payload_end..].try_into().expect("64 bytes");
        Ok(Self {
            seq: u64_at(1),
            timestamp_ms: u64_at(9),
            prev_hash: bytes[17..49].try_into().expect("32 bytes"),
            record: Record {
                kind: u16::from_be_bytes([bytes[49], bytes[50]]),
                signer: KeyId(bytes[51..83].try_into().expect("32 bytes")),
                payload: bytes[87..payload_end].to_vec(),
                signature: Signature::from_bytes(&signature),
                disclosures: Vec::new(),
            },
        })
    }

    /// The entry's hash: its RFC 6962 leaf hash.
    pub fn hash_of(bytes: &[u8]) -> Hash {
        leaf_hash(bytes)
    }

    /// The signed message of the record inside well-formed entry bytes of
    /// the ledger named `origin`, built without decoding the whole entry
    /// (the auditor's hot path).
    pub fn signed_message_of(origin: &str, bytes: &[u8]) -> Vec<u8> {
        let body = &bytes[ENVELOPE_BYTES..bytes.len() - SIGNATURE_BYTES];
        context::message(context::LEDGER_RECORD, &bound_body(origin, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "test.caseledger.local/ledger";

    fn sample() -> Entry {
        let identity = Identity::from_seed([2; 32]);
        Entry {
            seq: 5,
            timestamp_ms: 1_700_000_000_000,
            prev_hash: [9; 32],
            record: Record::sign(ORIGIN, 16, b"{\"note\":\"x\"}".to_vec(), &identity),
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let entry = sample();
        let bytes = entry.encode();
        assert_eq!(bytes.len(), ENVELOPE_BYTES + RECORD_HEADER_BYTES + 12 + SIGNATURE_BYTES);
        assert_eq!(Entry::decode(&bytes).expect("decode"), entry);
        assert_eq!(
            Entry::signed_message_of(ORIGIN, &bytes),
            entry.record.signed_message(ORIGIN)
        );
        entry
            .record
            .verify(ORIGIN, &Identity::from_seed([2; 32]).public_key())
            .expect("signature");
    }

    #[test]
    fn decode_rejects_bad_lengths_and_versions() {
        let bytes = sample().encode();
        assert!(matches!(Entry::decode(&bytes[..10]), Err(DecodeError::TooShort(10))));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            Entry::decode(&longer),
            Err(DecodeError::LengthMismatch { .. })
        ));
        let mut version = bytes.clone();
        version[0] = 2;
        assert_eq!(Entry::decode(&version), Err(DecodeError::UnknownVersion(2)));
    }

    #[test]
    fn signature_covers_kind_signer_and_payload() {
        let entry = sample();
        let key = Identity::from_seed([2; 32]).public_key();
        let mut record = entry.record.clone();
        record.kind += 1;
        assert!(record.verify(ORIGIN, &key).is_err());
        let mut record = entry.record.clone();
        record.payload[2] ^= 1;
        assert!(record.verify(ORIGIN, &key).is_err());
    }

    #[test]
    fn signature_binds_the_record_to_its_ledger() {
        let entry = sample();
        let key = Identity::from_seed([2; 32]).public_key();
        entry.record.verify(ORIGIN, &key).expect("its own ledger");
        for other in ["staging.caseledger.local/ledger", "test.caseledger.local/ledge", ""] {
            assert!(entry.record.verify(other, &key).is_err(), "{other:?}");
        }
    }
}
