//! Which keys may sign which records, derived from the ledger itself.
//!
//! The genesis entry names the node key and the first administrators; key
//! registrations and revocations follow as entries. Writers and the auditor
//! run the same [`Registry::admit`], so a record forced into storage behind
//! the writer's back is judged by the same rules when the chain is replayed.

use std::collections::BTreeMap;

use caseledger_keys::{KeyId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::entry::Record;
use crate::member::{Member, Role};
use crate::record::{self, Genesis, KeyCoSigned, KeyRegistered, KeyRevoked, KeyRotated, KeyText};

/// Names longer than this are refused.
pub const KEY_NAME_BYTES_MAX: usize = 200;

/// A rule that a record broke.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("signer key {0} is not registered")]
    UnknownKey(String),
    #[error("signer key {key} was revoked at seq {revoked_seq}")]
    RevokedKey { key: String, revoked_seq: u64 },
    #[error("not authorized: {0}")]
    NotAuthorized(String),
    #[error("invalid {kind} payload: {detail}")]
    BadPayload { kind: &'static str, detail: String },
    #[error("genesis: {0}")]
    Genesis(String),
    /// A case-fund rule, by its stable name.
    #[error("rule {rule}: {detail}")]
    Rule { rule: &'static str, detail: String },
}

impl RuleError {
    /// Stable check name for reports.
    pub fn check(&self) -> &'static str {
        match self {
            RuleError::UnknownKey(_) => "unknown_key",
            RuleError::RevokedKey { .. } => "revoked_key",
            RuleError::NotAuthorized(_) => "not_authorized",
            RuleError::BadPayload { .. } => "record_payload",
            RuleError::Genesis(_) => "genesis",
            RuleError::Rule { rule, .. } => rule,
        }
    }
}

/// What the ledger knows about one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub name: String,
    pub public_key: KeyText,
    pub administrator: bool,
    pub registered_seq: u64,
    pub revoked_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<Member>,
    /// Hex key id of the administrator who registered (or rotated to) this
    /// key; absent for the genesis administrators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_by: Option<String>,
    /// The seq of the second person's `key_co_signed`; a key registered
    /// after genesis signs nothing until it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub co_signed_seq: Option<u64>,
    /// Who holds a key without member fields, carried over by a rotation:
    /// the public key (base64) of the first key of its line. Absent for the
    /// first key itself (its own public key) and for member keys (held by
    /// their member id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

impl KeyInfo {
    /// Registered after genesis and not yet co-signed by a second person.
    pub fn awaits_co_signature(&self) -> bool {
        self.registered_by.is_some() && self.co_signed_seq.is_none()
    }

    /// Neither revoked nor awaiting its co-signature: the key may sign.
    pub fn is_active(&self) -> bool {
        self.revoked_seq.is_none() && !self.awaits_co_signature()
    }

    /// Who holds the key: `member:<member id>` for a member key, else
    /// `key:<public key>` of the first key of its line (a rotated
    /// administrator key is still held by whoever held the key it replaced).
    pub fn person(&self) -> String {
        match (&self.member, &self.holder) {
            (Some(member), _) => format!("member:{}", member.member_id),
            (None, Some(holder)) => format!("key:{holder}"),
            (None, None) => format!("key:{}", self.public_key.0),
        }
    }

    /// Whether this key and `other` are held by one person.
    fn same_person(&self, other: &KeyInfo) -> bool {
        self.person() == other.person()
    }
}

/// The key registry at some point of the chain.
#[derive(Clone, Debug)]
pub struct Registry {
    node_key: PublicKey,
    origin: Option<String>,
    demo: bool,
    keys: BTreeMap<KeyId, (KeyInfo, PublicKey)>,
}

/// The outcome of admitting a record.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// The key to verify the record's signature with.
    pub key: PublicKey,
    /// Keys whose [`KeyInfo`] this record created or changed.
    pub changed: Vec<KeyId>,
}

fn bad_payload(kind: u16, detail: impl ToString) -> RuleError {
    RuleError::BadPayload {
        kind: record::kind_name(kind),
        detail: detail.to_string(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(record: &Record) -> Result<T, RuleError> {
    if !crate::record::is_json_object(&record.payload) {
        return Err(bad_payload(record.kind, "a payload is a JSON object"));
    }
    serde_json::from_slice(&record.payload).map_err(|e| bad_payload(record.kind, e))
}

fn check_name(kind: u16, name: &str) -> Result<(), RuleError> {
    if let Some(problem) = crate::text::free_text_problem(name, KEY_NAME_BYTES_MAX) {
        return Err(bad_payload(kind, format!("the key name must have {problem}")));
    }
    Ok(())
}

impl Registry {
    /// An empty registry that expects a genesis entry signed by `node_key`.
    pub fn new(node_key: PublicKey) -> Self {
        Self {
            node_key,
            origin: None,
            demo: false,
            keys: BTreeMap::new(),
        }
    }

    /// Rebuilds a registry from stored state (the store keeps it so that
    /// opening a ledger does not replay the chain) and the genesis entry.
    pub fn from_parts(genesis: &Genesis, node_key: PublicKey, infos: Vec<(KeyId, KeyInfo)>) -> Result<Self, String> {
        let mut keys = BTreeMap::new();
        for (id, info) in infos {
            let key = info.public_key.key()?;
            if key.key_id() != id {
                return Err(format!("stored key {} does not match its id", id.short()));
            }
            keys.insert(id, (info, key));
        }
        Ok(Self {
            node_key,
            origin: Some(genesis.origin.clone()),
            demo: genesis.demo,
            keys,
        })
    }

    /// Whether the genesis entry made this a demo ledger.
    pub fn demo(&self) -> bool {
        self.demo
    }

    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    pub fn node_key(&self) -> PublicKey {
        self.node_key
    }

    /// The public key behind a key id, registered at any time (revoked or not).
    pub fn public_key(&self, id: &KeyId) -> Option<PublicKey> {
        if *id == self.node_key.key_id() {
            return Some(self.node_key);
        }
        self.keys.get(id).map(|(_, key)| *key)
    }

    /// The member id whose reference (docs/FORMAT.md §3j) is `digest`, if
    /// any member, active or not, was registered with it.
    pub fn member_by_reference(&self, digest: &str) -> Option<String> {
        self.keys.values().find_map(|(info, _)| {
            info.member
                .as_ref()
                .filter(|m| m.member_ref == digest)
                .map(|m| m.member_id.clone())
        })
    }

    pub fn info(&self, id: &KeyId) -> Option<&KeyInfo> {
        self.keys.get(id).map(|(info, _)| info)
    }

    pub fn keys(&self) -> impl Iterator<Item = (&KeyId, &KeyInfo)> {
        self.keys.iter().map(|(id, (info, _))| (id, info))
    }

    /// Checks that `record` may stand at `seq` and applies its effect on the
    /// registry. The caller must still verify the signature with the key
    /// returned; a record is admitted only if that succeeds too.
    pub fn admit(&mut self, seq: u64, record: &Record) -> Result<Admitted, RuleError> {
        if seq == 0 || record.kind == record::KIND_GENESIS {
            return self.admit_genesis(seq, record);
        }
        let signer = self.active_key(seq, &record.signer)?;
        match record.kind {
            record::KIND_KEY_REGISTERED => self.admit_registration(seq, record, signer),
            record::KIND_KEY_REVOKED => self.admit_revocation(seq, record, signer),
            record::KIND_KEY_ROTATED => self.admit_rotation(seq, record, signer),
            record::KIND_KEY_CO_SIGNED => self.admit_co_signature(seq, record, signer),
            _ => Ok(Admitted {
                key: signer.1,
                changed: Vec::new(),
            }),
        }
    }

    fn active_key(&self, seq: u64, id: &KeyId) -> Result<(KeyInfo, PublicKey), RuleError> {
        if *id == self.node_key.key_id() {
            return Err(RuleError::NotAuthorized(format!(
                "the node key signs only the genesis entry, checkpoints and its SMS records (seq {seq})"
            )));
        }
        let (info, key) = self.keys.get(id).ok_or_else(|| RuleError::UnknownKey(id.short()))?;
        if let Some(revoked_seq) = info.revoked_seq {
            return Err(RuleError::RevokedKey {
                key: id.short(),
                revoked_seq,
            });
        }
        if info.awaits_co_signature() {
            return Err(RuleError::Rule {
                rule: "key_co_signature",
                detail: format!(
                    "key {} (registered at seq {}) signs nothing before a second person co-signs its registration",
                    id.short(),
                    info.registered_seq
                ),
            });
        }
        Ok((info.clone(), *key))
    }

    fn require_administrator(signer: &KeyInfo, what: &str) -> Result<(), RuleError> {
        if signer.administrator {
            Ok(())
        } else {
            Err(RuleError::NotAuthorized(format!(
                "{what} must be signed by an administrator; {:?} is not one",
                signer.name
            )))
        }
    }

    fn admit_genesis(&mut self, seq: u64, record: &Record) -> Result<Admitted, RuleError> {
        if seq != 0 || record.kind != record::KIND_GENESIS || self.origin.is_some() {
            return Err(RuleError::Genesis(format!(
                "the genesis entry must be exactly the entry at seq 0 (seq {seq}, kind {})",
                record.kind
            )));
        }
        if record.signer != self.node_key.key_id() {
            return Err(RuleError::Genesis("genesis must be signed by the node key".into()));
        }
        let genesis: Genesis = parse(record)?;
        record::check_origin(&genesis.origin).map_err(RuleError::Genesis)?;
        let node_key = genesis.node_key.key().map_err(RuleError::Genesis)?;
        if node_key != self.node_key {
            return Err(RuleError::Genesis("genesis names a different node key".into()));
        }
        if genesis.administrators.is_empty() {
            return Err(RuleError::Genesis(
                "genesis must list at least one administrator".into(),
            ));
        }
        let mut changed = Vec::new();
        for admin in &genesis.administrators {
            let genesis_key = KeyRegistered {
                name: admin.name.clone(),
                public_key: admin.public_key.clone(),
                administrator: true,
                member: None,
            };
            let added = self.add_key(seq, record.kind, genesis_key, None, None)?;
            changed.push(added);
        }
        self.origin = Some(genesis.origin);
        self.demo = genesis.demo;
        Ok(Admitted {
            key: self.node_key,
            changed,
        })
    }

    /// Adds the key `new` names, registered at `seq` by `registered_by`
    /// (`None`: by the genesis entry).
    fn add_key(
        &mut self,
        seq: u64,
        kind: u16,
        new: KeyRegistered,
        registered_by: Option<KeyId>,
        holder: Option<String>,
    ) -> Result<KeyId, RuleError> {
        let KeyRegistered {
            name,
            public_key: text,
            administrator,
            member,
        } = new;
        check_name(kind, &name)?;
        let key = text.key().map_err(|e| bad_payload(kind, e))?;
        let id = key.key_id();
        if key == self.node_key {
            return Err(bad_payload(kind, "the node key cannot be registered as a member key"));
        }
        if self.keys.contains_key(&id) {
            return Err(bad_payload(kind, format!("key {} is already registered", id.short())));
        }
        if let Some(member) = &member {
            let taken = self.keys.values().any(|(info, _)| {
                info.revoked_seq.is_none() && info.member.as_ref().is_some_and(|m| m.member_id == member.member_id)
            });
            let malformed = crate::text::ascii_id_problem(&member.member_id, 128, false).is_some()
                || !member
                    .phone_masked
                    .strip_prefix("****")
                    .is_some_and(|tail| tail.len() == 4 && tail.bytes().all(|b| b.is_ascii_digit()))
                || member.phone_commitment.len() != 64
                || !member
                    .phone_commitment
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if taken || malformed {
                return Err(bad_payload(
                    kind,
                    format!(
                        "member {:?}: an id of printable ASCII, a phone masked as ****dddd and a 64-hex commitment, and no other active key",
                        member.member_id
                    ),
                ));
            }
            // A member keeps one reference for good: records name members
            // by it, and an applicant's bundle tells people apart by it.
            let other_reference = self.keys.values().find_map(|(info, _)| {
                info.member
                    .as_ref()
                    .filter(|m| (m.member_id == member.member_id) != (m.member_ref == member.member_ref))
            });
            if member.member_ref.is_empty() || other_reference.is_some() {
                return Err(RuleError::Rule {
                    rule: "disclosure",
                    detail: format!(
                        "member {:?} must be concealed with the reference of their first registration, and no other member's",
                        member.member_id
                    ),
                });
            }
            if (member.role == Role::Administrator) != administrator {
                return Err(bad_payload(
                    kind,
                    "the administrator role and the administrator flag must agree",
                ));
            }
        }
        let holder = if member.is_none() { holder } else { None };
        let info = KeyInfo {
            name,
            public_key: text,
            administrator,
            registered_seq: seq,
            revoked_seq: None,
            member,
            registered_by: registered_by.map(|id| id.to_hex()),
            co_signed_seq: None,
            holder,
        };
        self.keys.insert(id, (info, key));
        Ok(id)
    }

    fn admit_registration(
        &mut self,
        seq: u64,
        record: &Record,
        signer: (KeyInfo, PublicKey),
    ) -> Result<Admitted, RuleError> {
        Self::require_administrator(&signer.0, "a key registration")?;
        let payload: KeyRegistered = parse(record)?;
        // One phone, one member id, for good: a phone another member holds
        // would let one person confirm two roles' steps (a borrowed
        // account); a phone a revoked member held, under a new member id,
        // would let one person be their own second person (a claimant
        // re-enrolled to decide their own claim). A person keeps their
        // member id across keys and roles.
        if let Some(member) = &payload.member {
            let shared = self.keys.values().find_map(|(info, _)| {
                info.member
                    .as_ref()
                    .filter(|m| m.member_id != member.member_id)
                    .filter(|m| m.phone_commitment == member.phone_commitment)
            });
            if let Some(other) = shared {
                return Err(RuleError::Rule {
                    rule: "phone_of_member",
                    detail: format!(
                        "member {}'s phone is the phone of member {}",
                        member.member_id, other.member_id
                    ),
                });
            }
        }
        let id = self.add_key(seq, record.kind, payload, Some(record.signer), None)?;
        Ok(Admitted {
            key: signer.1,
            changed: vec![id],
        })
    }

    fn admit_rotation(
        &mut self,
        seq: u64,
        record: &Record,
        signer: (KeyInfo, PublicKey),
    ) -> Result<Admitted, RuleError> {
        Self::require_administrator(&signer.0, "a key rotation")?;
        let payload: KeyRotated = parse(record)?;
        let old_id = KeyId::from_hex(&payload.key_id).map_err(|e| bad_payload(record.kind, e))?;
        let active_administrators = self
            .keys
            .values()
            .filter(|(info, _)| info.administrator && info.is_active())
            .count();
        let old = match self.keys.get_mut(&old_id) {
            // A key awaiting its co-signature is not rotated: its
            // registration is withdrawn (revoked) and made again, so that
            // the co-signer vouches for what the registrar registered.
            Some((info, _)) if info.is_active() => {
                if info.administrator && active_administrators == 1 {
                    return Err(bad_payload(
                        record.kind,
                        "the only active administrator's key is rotated once a second administrator is active \
                         (the new key awaits a co-signature)",
                    ));
                }
                info.revoked_seq = Some(seq);
                info.clone()
            }
            _ => {
                return Err(bad_payload(
                    record.kind,
                    format!("key {} is not an active key", old_id.short()),
                ))
            }
        };
        let successor = KeyRegistered {
            name: old.name.clone(),
            public_key: payload.public_key,
            administrator: old.administrator,
            member: old.member.clone(),
        };
        // Held by whoever held the key it replaces.
        let holder = old.person().strip_prefix("key:").map(str::to_owned);
        let added = self.add_key(seq, record.kind, successor, Some(record.signer), holder);
        match added {
            Ok(new_id) => Ok(Admitted {
                key: signer.1,
                changed: vec![old_id, new_id],
            }),
            Err(e) => {
                if let Some((info, _)) = self.keys.get_mut(&old_id) {
                    info.revoked_seq = None;
                }
                Err(e)
            }
        }
    }

    fn admit_revocation(
        &mut self,
        seq: u64,
        record: &Record,
        signer: (KeyInfo, PublicKey),
    ) -> Result<Admitted, RuleError> {
        Self::require_administrator(&signer.0, "a key revocation")?;
        let payload: KeyRevoked = parse(record)?;
        if let Some(problem) = crate::text::free_text_problem(&payload.reason, 500) {
            return Err(bad_payload(record.kind, format!("the reason must have {problem}")));
        }
        let id = payload.key_id().map_err(|e| bad_payload(record.kind, e))?;
        let active_administrators = self
            .keys
            .values()
            .filter(|(info, _)| info.administrator && info.is_active())
            .count();
        let (info, _) = self
            .keys
            .get_mut(&id)
            .ok_or_else(|| bad_payload(record.kind, format!("key {} is not registered", id.short())))?;
        if info.revoked_seq.is_some() {
            return Err(bad_payload(
                record.kind,
                format!("key {} is already revoked", id.short()),
            ));
        }
        if info.administrator && info.is_active() && active_administrators == 1 {
            return Err(bad_payload(
                record.kind,
                "the last active administrator cannot be revoked",
            ));
        }
        info.revoked_seq = Some(seq);
        Ok(Admitted {
            key: signer.1,
            changed: vec![id],
        })
    }

    /// A second person puts a registered or rotated key in force: an active
    /// administrator or court leader who is neither the person who
    /// registered the key nor the person it is for. One administrator alone
    /// never creates a key that signs (a court leader of their own making
    /// would co-sign their own policy; an officer, bureau head and finance
    /// of their own making would pay whom they like).
    fn admit_co_signature(
        &mut self,
        seq: u64,
        record: &Record,
        signer: (KeyInfo, PublicKey),
    ) -> Result<Admitted, RuleError> {
        let refuse = |detail: String| RuleError::Rule {
            rule: "key_co_signature",
            detail,
        };
        let may_co_sign =
            signer.0.administrator || signer.0.member.as_ref().is_some_and(|m| m.role == Role::CourtLeader);
        if !may_co_sign {
            return Err(RuleError::NotAuthorized(format!(
                "a key co-signature must be signed by an administrator or a court leader; {:?} is neither",
                signer.0.name
            )));
        }
        let payload: KeyCoSigned = parse(record)?;
        let id = KeyId::from_hex(&payload.key_id).map_err(|e| bad_payload(record.kind, e))?;
        let (info, _) = self
            .keys
            .get(&id)
            .ok_or_else(|| refuse(format!("key {} is not registered", id.short())))?;
        if !info.awaits_co_signature() || info.revoked_seq.is_some() {
            return Err(refuse(format!(
                "key {} does not await a co-signature (registered at seq {}, {})",
                id.short(),
                info.registered_seq,
                match (info.revoked_seq, info.co_signed_seq) {
                    (Some(revoked), _) => format!("revoked at seq {revoked}"),
                    (None, Some(co_signed)) => format!("co-signed at seq {co_signed}"),
                    (None, None) => "a genesis administrator".to_owned(),
                }
            )));
        }
        // The member's id and phone as the registration concealed them:
        // the co-signer restates the same digests (docs/FORMAT.md §3j).
        let stated = (
            payload.name.as_str(),
            payload.administrator,
            payload.member_id.as_ref().map(|c| c.digest.as_str()),
            payload.role,
            payload.phone_masked.as_ref().map(|c| c.digest.as_str()),
        );
        let registered = (
            info.name.as_str(),
            info.administrator,
            info.member.as_ref().map(|m| m.member_ref.as_str()),
            info.member.as_ref().map(|m| m.role),
            info.member.as_ref().map(|m| m.phone_ref.as_str()),
        );
        if stated != registered {
            return Err(refuse(format!(
                "the co-signature names {stated:?}; key {} is registered as {registered:?}",
                id.short()
            )));
        }
        let registrar = info
            .registered_by
            .as_deref()
            .and_then(|hex| KeyId::from_hex(hex).ok())
            .and_then(|registrar| self.keys.get(&registrar))
            .map(|(registrar, _)| registrar);
        if registrar.is_some_and(|registrar| registrar.same_person(&signer.0)) {
            return Err(refuse(
                "the administrator who registered a key cannot co-sign it: a second person must".into(),
            ));
        }
        if let Some((info, _)) = self.keys.get_mut(&id) {
            info.co_signed_seq = Some(seq);
        }
        Ok(Admitted {
            key: signer.1,
            changed: vec![id],
        })
    }
}
