//! The record kinds the ledger core itself understands, and their payloads.
//!
//! Payloads are JSON objects (unknown fields refused). They are stored and
//! hashed exactly as the signer sent them, so nobody ever re-serialises them
//! to verify. Kinds from 0x0100 up belong to the case-fund layer.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger_keys::{KeyId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::disclosure::Concealed;

/// The first entry: names the ledger and its node key, lists the first administrators.
pub const KIND_GENESIS: u16 = 0x0001;
/// An administrator registers a key that may sign records from the next entry on.
pub const KIND_KEY_REGISTERED: u16 = 0x0002;
/// An administrator revokes a key; it signs nothing after this entry.
pub const KIND_KEY_REVOKED: u16 = 0x0003;
/// An administrator replaces a key: the old one is revoked, the new one
/// inherits its name, administrator flag and member fields.
pub const KIND_KEY_ROTATED: u16 = 0x0004;
/// A second person (another administrator, or a court leader) co-signs a
/// key registration or rotation: until then the new key signs nothing.
pub const KIND_KEY_CO_SIGNED: u16 = 0x0005;
/// A synthetic record written by `caseledger demo --entries`.
pub const KIND_DEMO_NOTE: u16 = 0x0010;

/// Whether `payload` is a JSON object (a payload's first byte after
/// whitespace is `{`): serde would also take a struct from a JSON array.
pub fn is_json_object(payload: &[u8]) -> bool {
    payload.trim_ascii_start().first() == Some(&b'{')
}

/// Whether caseledger knows records of this kind; every other kind is
/// refused (rule `unknown_kind`).
pub fn is_known_kind(kind: u16) -> bool {
    changes_registry(kind) || kind == KIND_DEMO_NOTE || crate::funds::is_funds_kind(kind)
}

/// Whether records of this kind change the key registry.
pub fn changes_registry(kind: u16) -> bool {
    matches!(
        kind,
        KIND_GENESIS | KIND_KEY_REGISTERED | KIND_KEY_REVOKED | KIND_KEY_ROTATED | KIND_KEY_CO_SIGNED
    )
}

/// A human-readable name for a kind, for reports.
pub fn kind_name(kind: u16) -> &'static str {
    match kind {
        KIND_GENESIS => "genesis",
        KIND_KEY_REGISTERED => "key_registered",
        KIND_KEY_REVOKED => "key_revoked",
        KIND_KEY_ROTATED => "key_rotated",
        KIND_KEY_CO_SIGNED => "key_co_signed",
        KIND_DEMO_NOTE => "demo_note",
        other => crate::funds::model::kind_name(other).unwrap_or("other"),
    }
}

/// A public key as it appears in payloads: standard base64 of the 32 raw bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyText(pub String);

impl KeyText {
    pub fn from_key(key: &PublicKey) -> Self {
        Self(key.to_base64())
    }

    pub fn key(&self) -> Result<PublicKey, String> {
        let bytes = BASE64.decode(&self.0).map_err(|e| format!("bad key base64: {e}"))?;
        PublicKey::from_bytes(&bytes).map_err(|e| e.to_string())
    }
}

/// An administrator listed in the genesis entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisKey {
    pub name: String,
    pub public_key: KeyText,
}

/// Payload of [`KIND_GENESIS`], signed by the node key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// The checkpoint origin line and signed-note key name of this ledger.
    pub origin: String,
    /// The node key that signs checkpoints.
    pub node_key: KeyText,
    /// Administrators who may register and revoke keys.
    pub administrators: Vec<GenesisKey>,
    /// A demo ledger (tests, benchmarks, `caseledger demo`): the only kind
    /// of ledger that admits [`KIND_DEMO_NOTE`]. Absent means false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub demo: bool,
}

/// Payload of [`KIND_KEY_REGISTERED`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRegistered {
    pub name: String,
    pub public_key: KeyText,
    /// Whether the key may itself register and revoke keys.
    pub administrator: bool,
    /// Present when the key belongs to a court member (member enrolment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<crate::funds::model::Member>,
}

/// Payload of [`KIND_KEY_ROTATED`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotated {
    /// Hex key id of the key being replaced.
    pub key_id: String,
    pub public_key: KeyText,
}

/// Payload of [`KIND_KEY_CO_SIGNED`]: the co-signer restates what they
/// approve (the key and, as registered, its name, administrator flag and
/// member id, role and masked phone), so that their signature says it in
/// words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyCoSigned {
    /// Hex key id of the key awaiting its co-signature.
    pub key_id: String,
    pub name: String,
    pub administrator: bool,
    /// The member id as the registration conceals it (the member's
    /// reference, docs/FORMAT.md §3j).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_id: Option<Concealed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<crate::member::Role>,
    /// The member's phone as the registration masks and conceals it: the
    /// co-signer, shown the disclosure, checks with the person that the
    /// codes go to their phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_masked: Option<Concealed>,
}

impl KeyCoSigned {
    /// The co-signature of `registration` (what a `key_registered` names,
    /// as the rules read it: its member's concealed values are those whose
    /// digests `member_ref` and `phone_ref` give).
    pub fn of(registration: &KeyRegistered) -> Result<Self, String> {
        Ok(Self {
            key_id: registration.public_key.key()?.key_id().to_hex(),
            name: registration.name.clone(),
            administrator: registration.administrator,
            member_id: registration
                .member
                .as_ref()
                .map(|m| Concealed::new(m.member_ref.clone())),
            role: registration.member.as_ref().map(|m| m.role),
            phone_masked: registration
                .member
                .as_ref()
                .map(|m| Concealed::new(m.phone_ref.clone())),
        })
    }
}

/// Payload of [`KIND_KEY_REVOKED`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRevoked {
    /// Hex key id of the revoked key.
    pub key_id: String,
    pub reason: String,
}

impl KeyRevoked {
    pub fn key_id(&self) -> Result<KeyId, String> {
        KeyId::from_hex(&self.key_id).map_err(|e| e.to_string())
    }
}

/// Payload of [`KIND_DEMO_NOTE`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoNote {
    pub number: u64,
    pub text: String,
}

/// Checks an origin: printable, no whitespace, no '+', at most 255 bytes.
/// It is both the checkpoint's first line and the signed-note key name.
pub fn check_origin(origin: &str) -> Result<(), String> {
    if origin.is_empty() || origin.len() > 255 {
        return Err("origin must be 1 to 255 bytes".into());
    }
    if origin.chars().any(|c| c.is_whitespace() || c.is_control() || c == '+') {
        return Err(format!(
            "origin {origin:?} must not contain whitespace, control characters or '+'"
        ));
    }
    Ok(())
}
