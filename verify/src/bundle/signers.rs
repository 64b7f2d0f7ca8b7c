//! The keys an applicant bundle proves: every key line it holds replayed
//! from its registration, each registration and co-signature checked
//! against the administrators (and court leaders) known before it.

use std::collections::{BTreeMap, HashMap};

use caseledger_keys::{KeyId, PublicKey};

use crate::entry::Entry;
use crate::funds::model::*;
use crate::record::{self, Genesis, KeyCoSigned, KeyRegistered, KeyRevoked, KeyRotated};

/// A key the bundle proves was registered, and for whom.
pub(crate) struct Signer {
    pub key: PublicKey,
    pub name: String,
    pub member: Option<Member>,
    pub administrator: bool,
    /// Who holds the key, as the registry says (`KeyInfo::person`):
    /// the member id, or the first key of a line of rotations.
    pub person: String,
    /// The key line it belongs to: the id of the line's first key (§5b).
    pub line: KeyId,
    /// The seq of the entry that revoked (or rotated away) the key: it
    /// signs nothing after it.
    pub revoked_at: Option<u64>,
}

/// Who holds a key: a member by their reference (the bundle does not
/// disclose member ids, §3j; a member keeps one reference), else the
/// line's first key.
fn person_of(member: Option<&Member>, first_key: &PublicKey) -> String {
    match member {
        Some(member) => format!("member:{}", member.member_ref),
        None => format!("key:{}", first_key.to_base64()),
    }
}

/// Checks the signature of `entry` (as signed) with its signer's key.
pub(crate) fn verified(entry: &Entry, keys: &HashMap<KeyId, Signer>, origin: &str) -> Result<(), String> {
    let signer = keys
        .get(&entry.record.signer)
        .ok_or_else(|| format!("entry {} is signed by a key the bundle does not register", entry.seq))?;
    if let Some(revoked) = signer.revoked_at.filter(|revoked| entry.seq > *revoked) {
        return Err(format!(
            "entry {} is signed by a key revoked at entry {revoked}",
            entry.seq
        ));
    }
    entry
        .record
        .verify(origin, &signer.key)
        .map_err(|_| format!("entry {}: the signature does not verify", entry.seq))
}

/// Keys registered by the bundle's genesis and key entries (`entries` as
/// the bundle reads them, `signed` as signed), each registration checked
/// against an administrator known before it.
pub(crate) fn signing_keys(
    entries: &BTreeMap<u64, Entry>,
    signed: &BTreeMap<u64, Entry>,
    origin: &str,
    node_key: &PublicKey,
) -> Result<HashMap<KeyId, Signer>, String> {
    let mut keys: HashMap<KeyId, Signer> = HashMap::new();
    // Registered keys awaiting their co-signature, with their registrar.
    let mut awaiting: HashMap<KeyId, (Signer, KeyId)> = HashMap::new();
    for read in entries.values() {
        let payload = &read.record.payload;
        let entry = signed.get(&read.seq).ok_or("a key entry without its signed form")?;
        match entry.record.kind {
            record::KIND_GENESIS => {
                // The genesis entry is seq 0, signed by the node key
                // that signed the checkpoint; a genesis-kind record
                // anywhere else is a refused record, not a genesis.
                if entry.seq != 0 || entry.record.signer != node_key.key_id() {
                    return Err(format!(
                        "entry {} is a genesis record that is not the node's entry 0",
                        entry.seq
                    ));
                }
                entry
                    .record
                    .verify(origin, node_key)
                    .map_err(|_| "the genesis entry's signature does not verify with the node key".to_owned())?;
                let genesis: Genesis = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
                if genesis.origin != origin {
                    return Err(format!(
                        "the genesis entry names ledger {:?}, the checkpoint {origin:?}",
                        genesis.origin
                    ));
                }
                for admin in genesis.administrators {
                    let key = admin.public_key.key()?;
                    keys.insert(
                        key.key_id(),
                        Signer {
                            key,
                            name: admin.name,
                            member: None,
                            administrator: true,
                            person: person_of(None, &key),
                            line: key.key_id(),
                            revoked_at: None,
                        },
                    );
                }
            }
            record::KIND_KEY_REGISTERED | record::KIND_KEY_ROTATED => {
                let admin = keys.get(&entry.record.signer).filter(|s| s.administrator);
                if admin.is_none() {
                    return Err(format!(
                        "key entry {} is not signed by a known administrator",
                        entry.seq
                    ));
                }
                verified(entry, &keys, origin)?;
                let signer = if entry.record.kind == record::KIND_KEY_REGISTERED {
                    let registered: KeyRegistered = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
                    let key = registered.public_key.key()?;
                    Signer {
                        key,
                        name: registered.name,
                        person: person_of(registered.member.as_ref(), &key),
                        line: key.key_id(),
                        member: registered.member,
                        administrator: registered.administrator,
                        revoked_at: None,
                    }
                } else {
                    let rotated: KeyRotated = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
                    let old = KeyId::from_hex(&rotated.key_id).map_err(|e| e.to_string())?;
                    let old = keys
                        .get_mut(&old)
                        .ok_or("a rotation of a key the bundle does not register")?;
                    if old.revoked_at.is_some() {
                        return Err(format!("entry {} rotates a key revoked before", entry.seq));
                    }
                    old.revoked_at = Some(entry.seq);
                    Signer {
                        key: rotated.public_key.key()?,
                        name: old.name.clone(),
                        member: old.member.clone(),
                        administrator: old.administrator,
                        person: old.person.clone(),
                        line: old.line,
                        revoked_at: None,
                    }
                };
                // It signs nothing until a second person co-signs it.
                awaiting.insert(signer.key.key_id(), (signer, entry.record.signer));
            }
            record::KIND_KEY_REVOKED => {
                if keys.get(&entry.record.signer).filter(|s| s.administrator).is_none() {
                    return Err(format!(
                        "key entry {} is not signed by a known administrator",
                        entry.seq
                    ));
                }
                verified(entry, &keys, origin)?;
                let revoked: KeyRevoked = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
                let id = revoked.key_id()?;
                awaiting.remove(&id);
                if let Some(key) = keys.get_mut(&id) {
                    key.revoked_at.get_or_insert(entry.seq);
                }
            }
            record::KIND_KEY_CO_SIGNED => {
                let co_signer = keys
                    .get(&entry.record.signer)
                    .filter(|s| s.administrator || s.member.as_ref().is_some_and(|m| m.role == Role::CourtLeader))
                    .ok_or_else(|| {
                        format!(
                            "key co-signature {} is not signed by a known administrator or court leader",
                            entry.seq
                        )
                    })?;
                verified(entry, &keys, origin)?;
                let co_signed: KeyCoSigned = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
                let id = KeyId::from_hex(&co_signed.key_id).map_err(|e| e.to_string())?;
                let (signer, registrar) = awaiting
                    .remove(&id)
                    .ok_or_else(|| format!("entry {} co-signs a key that awaits no co-signature", entry.seq))?;
                let stated = (
                    co_signed.name.as_str(),
                    co_signed.administrator,
                    co_signed.member_id.as_ref().map(|c| c.digest.as_str()),
                    co_signed.role,
                    co_signed.phone_masked.as_ref().map(|c| c.digest.as_str()),
                );
                let registered = (
                    signer.name.as_str(),
                    signer.administrator,
                    signer.member.as_ref().map(|m| m.member_ref.as_str()),
                    signer.member.as_ref().map(|m| m.role),
                    signer.member.as_ref().map(|m| m.phone_ref.as_str()),
                );
                if stated != registered {
                    return Err(format!(
                        "entry {} co-signs other facts than the key's registration",
                        entry.seq
                    ));
                }
                let by_registrar = keys.get(&registrar).is_some_and(|r| r.person == co_signer.person);
                if by_registrar || signer.person == co_signer.person {
                    return Err(format!(
                        "entry {} co-signs a key as the person who registered it or holds it",
                        entry.seq
                    ));
                }
                keys.insert(id, signer);
            }
            _ => {}
        }
    }
    Ok(keys)
}
