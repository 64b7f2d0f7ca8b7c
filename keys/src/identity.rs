//! Ed25519 identities, public keys, key ids and signatures.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::{context, Error, Result};

/// Length of an Ed25519 signature in bytes.
pub const SIGNATURE_BYTES: usize = 64;

/// An Ed25519 signature.
pub type Signature = ed25519_dalek::Signature;

/// A private signing identity. The secret never appears in `Debug` output.
#[derive(Clone)]
pub struct Identity {
    signing_key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("key_id", &self.public_key().key_id())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Generates a new identity from the operating system's CSPRNG.
    #[cfg(feature = "generate")]
    pub fn generate() -> Self {
        Self::from_seed(rand::random())
    }

    /// Builds an identity from a 32-byte Ed25519 seed (the RFC 8032 private key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing_key: SigningKey::from_bytes(&seed),
        }
    }

    /// The 32-byte seed. Callers must treat it as secret.
    pub fn seed(&self) -> [u8; 32] {
        self.signing_key.to_bytes()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing_key.verifying_key())
    }

    /// Signs `context || 0x00 || body`.
    pub fn sign(&self, context: &str, body: &[u8]) -> Signature {
        self.signing_key.sign(&context::message(context, body))
    }

    /// Signs raw bytes with no context; only for formats that define their own
    /// framing (C2SP signed notes).
    pub fn sign_raw(&self, message: &[u8]) -> Signature {
        self.signing_key.sign(message)
    }

    /// PKCS#8 v1 PEM ("BEGIN PRIVATE KEY", RFC 8410 without the optional
    /// public key), byte for byte what `openssl genpkey -algorithm ed25519`
    /// writes, so OpenSSL 3.0 and Python `cryptography` load it. (The
    /// PKCS#8 v2 form of RFC 5958, with the public key, is refused by both;
    /// it is still read.)
    pub fn to_pkcs8_pem(&self) -> Result<String> {
        ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.signing_key.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(Default::default())
        .map(|pem| pem.to_string())
        .map_err(|e| Error::InvalidKey(format!("cannot encode private key: {e}")))
    }

    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|signing_key| Self { signing_key })
            .map_err(|e| Error::InvalidKey(format!("not an Ed25519 PKCS#8 private key: {e}")))
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl PublicKey {
    /// Parses a raw 32-byte key under the key rule (docs/FORMAT.md §2):
    /// the canonical encoding of a point of the prime-order subgroup other
    /// than the identity. Keys of small order, keys with a torsion
    /// component and non-canonical encodings are refused, so that one
    /// point has one key id and nobody but the holder of the private key
    /// can make a signature that verifies with it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::InvalidKey(format!("public key must be 32 bytes, got {}", bytes.len())))?;
        let key =
            VerifyingKey::from_bytes(&array).map_err(|e| Error::InvalidKey(format!("not an Ed25519 point: {e}")))?;
        Self::strong(key)
    }

    /// Applies the key rule to a decoded key.
    fn strong(key: VerifyingKey) -> Result<Self> {
        let point = key.to_edwards();
        if point.compress().to_bytes() != key.to_bytes() {
            return Err(Error::InvalidKey("not the canonical encoding of its point".into()));
        }
        if key.is_weak() {
            return Err(Error::InvalidKey("a point of small order is not a key".into()));
        }
        if !point.is_torsion_free() {
            return Err(Error::InvalidKey(
                "the point has a torsion component (not in the prime-order subgroup)".into(),
            ));
        }
        Ok(PublicKey(key))
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    /// The key id: SHA-256(KEY_ID context || 0x00 || public key).
    pub fn key_id(&self) -> KeyId {
        let digest = Sha256::digest(context::message(context::KEY_ID, &self.to_bytes()));
        KeyId(digest.into())
    }

    /// Raw 32-byte key in standard base64 (44 characters).
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.to_bytes())
    }

    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|e| Error::InvalidKey(format!("bad base64: {e}")))?;
        Self::from_bytes(&bytes)
    }

    /// SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY"), readable by OpenSSL.
    pub fn to_spki_pem(&self) -> Result<String> {
        self.0
            .to_public_key_pem(Default::default())
            .map_err(|e| Error::InvalidKey(format!("cannot encode public key: {e}")))
    }

    pub fn from_spki_pem(pem: &str) -> Result<Self> {
        let key = VerifyingKey::from_public_key_pem(pem)
            .map_err(|e| Error::InvalidKey(format!("not an Ed25519 SPKI public key: {e}")))?;
        Self::strong(key)
    }

    /// Parses any of the public key forms we write or accept: SPKI PEM, raw
    /// base64, or a C2SP note verifier key (`name+hexid+base64(0x01||key)`).
    pub fn parse_any(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.starts_with("-----BEGIN PUBLIC KEY-----") {
            return Self::from_spki_pem(text);
        }
        if text.contains('+') && !text.contains('\n') {
            if let Ok(verifier) = crate::note::Verifier::parse(text) {
                return Ok(verifier.public_key());
            }
        }
        Self::from_base64(text)
    }

    /// Verifies a signature over `context || 0x00 || body`.
    pub fn verify(&self, context: &str, body: &[u8], signature: &Signature) -> Result<()> {
        self.verify_raw(&context::message(context, body), signature)
    }

    /// Verifies a signature over raw bytes: the one signature rule of
    /// caseledger (docs/FORMAT.md §2), for every path that checks a
    /// signature. Strict RFC 8032: `s < ℓ`, `R` the canonical encoding of
    /// a point not of small order, the key not of small order, and the
    /// cofactorless equation `[s]B = R + [k]A` with
    /// `k = SHA-512(R ‖ A ‖ M) mod ℓ` (what
    /// `ed25519_dalek::VerifyingKey::verify_strict` accepts). Everything it
    /// accepts, OpenSSL and every RFC 8032 verifier accept too.
    pub fn verify_raw(&self, message: &[u8], signature: &Signature) -> Result<()> {
        self.0
            .verify_strict(message, signature)
            .map_err(|_| Error::BadSignature)
    }
}

/// The 32-byte identifier of a public key, as carried in ledger entries.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 32]);

impl KeyId {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Result<Self> {
        let bytes = hex::decode(text).map_err(|e| Error::InvalidKey(format!("bad key id: {e}")))?;
        bytes
            .try_into()
            .map(KeyId)
            .map_err(|_| Error::InvalidKey("key id must be 32 bytes".into()))
    }

    /// The first 8 bytes in hex, for messages meant for people.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }

    /// The same 8 bytes as a person compares them: upper-case hex in
    /// groups of four (`8A3F-02C1-…`), e.g. the node key's fingerprint in
    /// an applicant's SMS and on the page that checks their record.
    pub fn fingerprint(&self) -> String {
        hex::encode_upper(&self.0[..8])
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({})", self.short())
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_with_context() {
        let identity = Identity::from_seed([7; 32]);
        let public = identity.public_key();
        let signature = identity.sign(context::LEDGER_RECORD, b"hello");
        public
            .verify(context::LEDGER_RECORD, b"hello", &signature)
            .expect("valid signature");
        assert!(public.verify(context::KEY_ID, b"hello", &signature).is_err());
        assert!(public.verify(context::LEDGER_RECORD, b"hellO", &signature).is_err());
    }

    #[test]
    fn pem_round_trips() {
        let identity = Identity::from_seed([9; 32]);
        let pem = identity.to_pkcs8_pem().expect("encode");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = Identity::from_pkcs8_pem(&pem).expect("decode");
        assert_eq!(back.seed(), identity.seed());
        let public_pem = identity.public_key().to_spki_pem().expect("encode");
        assert_eq!(PublicKey::parse_any(&public_pem).expect("parse"), identity.public_key());
        let b64 = identity.public_key().to_base64();
        assert_eq!(PublicKey::parse_any(&b64).expect("parse"), identity.public_key());
    }

    #[test]
    fn the_fingerprint_is_the_key_ids_first_eight_bytes_grouped() {
        let key = Identity::from_seed(core::array::from_fn(|i| i as u8)).public_key();
        assert_eq!(key.key_id().fingerprint(), "859A-0571-14BA-5D75");
    }

    #[test]
    fn key_id_is_sha256_of_context_and_key() {
        let public = Identity::from_seed([1; 32]).public_key();
        let mut hasher = Sha256::new();
        hasher.update(b"caseledger/v1/key-id\0");
        hasher.update(public.to_bytes());
        let expected: [u8; 32] = hasher.finalize().into();
        assert_eq!(public.key_id().0, expected);
    }
}
