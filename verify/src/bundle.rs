//! Proof bundles: one entry, its inclusion proof and the signed checkpoint it
//! is proven against. Checked offline with nothing but the node's public key.

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

fn decode_hash(text: &str) -> Result<Hash, String> {
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

/// Value of [`ApplicantBundle::format`].
pub const APPLICANT_BUNDLE_FORMAT: &str = "caseledger-applicant-bundle/v1";

/// One entry with its inclusion proof against the bundle's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenEntry {
    pub seq: u64,
    /// Entry bytes as stored and hashed, base64.
    pub entry: String,
    pub inclusion_proof: Vec<String>,
}

/// What an applicant gets with their verification code: every entry of
/// their disbursements, the entries that register the keys that signed
/// them, all proven against one node-signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicantBundle {
    pub format: String,
    pub case_number: String,
    pub applicant_id: String,
    pub disbursement_ids: Vec<String>,
    pub tree_size: u64,
    pub checkpoint: String,
    pub entries: Vec<ProvenEntry>,
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

impl ApplicantBundle {
    /// Checks everything offline with the node's public key and returns, in
    /// words, what the bundle proves.
    pub fn verify(&self, node_key: &PublicKey) -> Result<Vec<String>, String> {
        if self.format != APPLICANT_BUNDLE_FORMAT {
            return Err(format!("unknown bundle format {:?}", self.format));
        }
        let origin = Checkpoint::origin_of(&self.checkpoint).ok_or("checkpoint has no origin line")?;
        let verifier = note::Verifier::new(origin, *node_key).map_err(|e| e.to_string())?;
        let checkpoint = Checkpoint::open(&self.checkpoint, &verifier).map_err(|e| e.to_string())?;
        if checkpoint.size != self.tree_size {
            return Err("the checkpoint is not for the bundle's tree size".into());
        }
        let mut entries = std::collections::BTreeMap::new();
        for proven in &self.entries {
            let bytes = BASE64
                .decode(&proven.entry)
                .map_err(|e| format!("entry {}: {e}", proven.seq))?;
            let entry = Entry::decode(&bytes).map_err(|e| format!("entry {}: {e}", proven.seq))?;
            let proof = proven
                .inclusion_proof
                .iter()
                .map(|h| decode_hash(h))
                .collect::<Result<Vec<_>, _>>()?;
            if entry.seq != proven.seq {
                return Err(format!("entry {} claims to be {}", proven.seq, entry.seq));
            }
            merkle::verify_inclusion(
                &Entry::hash_of(&bytes),
                entry.seq,
                checkpoint.size,
                &proof,
                &checkpoint.root,
            )
            .map_err(|e| format!("entry {} is not in the checkpointed ledger: {e}", entry.seq))?;
            entries.insert(entry.seq, entry);
        }
        let mut words = vec![format!(
            "All {} entries below are in ledger {:?} as of its checkpoint of {} entries, signed by its node key.",
            entries.len(),
            checkpoint.origin,
            checkpoint.size
        )];
        let keys = applicant::signing_keys(&entries, &checkpoint.origin, node_key)?;
        words.extend(applicant::check_case(self, &entries, &keys, &checkpoint.origin)?);
        Ok(words)
    }
}

mod applicant {
    //! The checks behind [`super::ApplicantBundle::verify`].

    use std::collections::{BTreeMap, HashMap};

    use caseledger_keys::{KeyId, PublicKey};

    use super::{yuan, ApplicantBundle};
    use crate::entry::{Entry, Record};
    use crate::funds::model::*;
    use crate::record::{self, Genesis, KeyCoSigned, KeyRegistered, KeyRevoked, KeyRotated};

    /// A key the bundle proves was registered, and for whom.
    pub(super) struct Signer {
        pub key: PublicKey,
        pub name: String,
        pub member: Option<Member>,
        pub administrator: bool,
        /// Who holds the key, as the registry says (`KeyInfo::person`):
        /// the member id, or the first key of a line of rotations.
        pub person: String,
        /// The seq of the entry that revoked (or rotated away) the key: it
        /// signs nothing after it.
        pub revoked_at: Option<u64>,
    }

    fn person_of(member: Option<&Member>, first_key: &PublicKey) -> String {
        match member {
            Some(member) => format!("member:{}", member.member_id),
            None => format!("key:{}", first_key.to_base64()),
        }
    }

    fn verified(entry: &Entry, keys: &HashMap<KeyId, Signer>, origin: &str) -> Result<(), String> {
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

    /// Keys registered by the bundle's genesis and key entries, each
    /// registration checked against an administrator known before it.
    pub(super) fn signing_keys(
        entries: &BTreeMap<u64, Entry>,
        origin: &str,
        node_key: &PublicKey,
    ) -> Result<HashMap<KeyId, Signer>, String> {
        let mut keys: HashMap<KeyId, Signer> = HashMap::new();
        // Registered keys awaiting their co-signature, with their registrar.
        let mut awaiting: HashMap<KeyId, (Signer, KeyId)> = HashMap::new();
        for entry in entries.values() {
            let payload = &entry.record.payload;
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
                        co_signed.member_id.as_deref(),
                        co_signed.role,
                        co_signed.phone_masked.as_deref(),
                    );
                    let registered = (
                        signer.name.as_str(),
                        signer.administrator,
                        signer.member.as_ref().map(|m| m.member_id.as_str()),
                        signer.member.as_ref().map(|m| m.role),
                        signer.member.as_ref().map(|m| m.phone_masked.as_str()),
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

    fn payload<T: serde::de::DeserializeOwned>(entry: &Entry) -> Result<T, String> {
        serde_json::from_slice(&entry.record.payload).map_err(|e| format!("entry {}: {e}", entry.seq))
    }

    fn of_kind(entries: &BTreeMap<u64, Entry>, kind: u16) -> impl Iterator<Item = &Entry> {
        entries.values().filter(move |e| e.record.kind == kind)
    }

    fn member<'k>(keys: &'k HashMap<KeyId, Signer>, record: &Record) -> Result<(&'k Signer, &'k Member), String> {
        let signer = keys.get(&record.signer).ok_or("unknown signer")?;
        let member = signer.member.as_ref().ok_or("the signer is not a court member")?;
        Ok((signer, member))
    }

    pub(super) fn check_case(
        bundle: &ApplicantBundle,
        entries: &BTreeMap<u64, Entry>,
        keys: &HashMap<KeyId, Signer>,
        origin: &str,
    ) -> Result<Vec<String>, String> {
        for entry in entries.values().filter(|e| crate::funds::is_funds_kind(e.record.kind)) {
            verified(entry, keys, origin)?;
        }
        let opened = of_kind(entries, KIND_CASE_OPENED)
            .map(payload::<CaseOpened>)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .find(|c| c.case_number == bundle.case_number)
            .ok_or("the bundle does not contain the case's filing")?;
        let applicant = opened
            .applicants
            .iter()
            .find(|a| a.applicant_id == bundle.applicant_id)
            .ok_or("the applicant is not an applicant of the case")?;
        let mut words = vec![format!(
            "Case {} was filed with {} as an applicant.",
            opened.case_number, applicant.name
        )];
        let accounts: Vec<AccountRegistered> = of_kind(entries, KIND_ACCOUNT_REGISTERED)
            .map(payload)
            .collect::<Result<_, _>>()?;
        for id in &bundle.disbursement_ids {
            words.push(check_disbursement(id, entries, keys, origin, &accounts, applicant)?);
        }
        Ok(words)
    }

    fn check_disbursement(
        id: &str,
        entries: &BTreeMap<u64, Entry>,
        keys: &HashMap<KeyId, Signer>,
        origin: &str,
        accounts: &[AccountRegistered],
        applicant: &Applicant,
    ) -> Result<String, String> {
        let (request_entry, request) = of_kind(entries, KIND_DISBURSEMENT_REQUESTED)
            .map(|e| payload::<DisbursementRequested>(e).map(|p| (e, p)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .find(|(_, r)| r.disbursement_id == id)
            .ok_or_else(|| format!("the request of disbursement {id} is missing"))?;
        let account = accounts
            .iter()
            .find(|a| a.account_id == request.account_id)
            .ok_or("the payee account's registration is missing")?;
        if account.applicant_id != applicant.applicant_id || account.account_name != applicant.name {
            return Err(format!("disbursement {id} does not pay an account of this applicant"));
        }
        let (requester, requester_member) = member(keys, &request_entry.record)?;
        if requester_member.role != Role::Officer {
            return Err(format!("disbursement {id} was not requested by an officer"));
        }
        let mut text = format!(
            "Disbursement {id}: {} to {} account {} ({}), requested by {} (officer) at entry {}",
            yuan(request.amount_fen),
            account.bank,
            account.account_number_masked,
            account.account_name,
            requester.name,
            request_entry.seq
        );
        let mut signers = vec![requester_member.member_id.clone()];
        let steps: Vec<(&Entry, ApprovalSigned)> = of_kind(entries, KIND_APPROVAL_SIGNED)
            .map(|e| payload::<ApprovalSigned>(e).map(|p| (e, p)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|(_, s)| s.disbursement_id == id)
            .collect();
        for (n, (entry, statement)) in steps.iter().enumerate() {
            let (signer, member) = member(keys, &entry.record)?;
            let matches = statement.origin == origin
                && statement.amount_fen == request.amount_fen
                && statement.account_id == request.account_id
                && statement.case_number == request.case_number
                && statement.step == n as u32 + 1
                && statement.role == member.role;
            if !matches || signers.contains(&member.member_id) {
                return Err(format!(
                    "approval at entry {} does not match the request, its step or its signer",
                    entry.seq
                ));
            }
            signers.push(member.member_id.clone());
            let verb = if statement.decision == Decision::Approve {
                "approved"
            } else {
                "REJECTED"
            };
            text.push_str(&format!(
                ", {verb} by {} ({}) as step {} at entry {}",
                signer.name,
                member.role.as_str(),
                statement.step,
                entry.seq
            ));
        }
        for entry in of_kind(entries, KIND_DISBURSEMENT_PAID) {
            let paid: DisbursementPaid = payload(entry)?;
            if paid.disbursement_id != id {
                continue;
            }
            let (_, member) = member(keys, &entry.record)?;
            if member.role != Role::Finance
                || paid.amount_fen != request.amount_fen
                || paid.account_id != request.account_id
            {
                return Err(format!(
                    "payment at entry {} does not match the approved disbursement",
                    entry.seq
                ));
            }
            text.push_str(&format!(
                ", paid by finance at entry {} with bank reference {}",
                entry.seq, paid.bank_reference
            ));
        }
        text.push('.');
        Ok(text)
    }
}
