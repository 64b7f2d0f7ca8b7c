//! Admission: whether a record may stand at its place in the chain. The key
//! registry speaks first (is the signer a key allowed to sign this kind?),
//! then, for case-fund kinds, the case-fund rules. The writer and the
//! auditor both call [`admit_record`], so a record is judged the same way
//! when written and when replayed.

use sha2::{Digest, Sha256};

use crate::disclosure;
use crate::entry::Record;
use crate::funds::{self, model};
use crate::record::KeyText;
use crate::registry::{Admitted, KeyInfo, Registry, RuleError};
use crate::state::Overlay;

/// Kinds only the node key signs: it sends the SMS, so it commits to the
/// codes and records what the provider accepted; and it alone holds the
/// commitment key, so it commits to the numbers members give in clear.
pub fn only_node_signs(kind: u16) -> bool {
    matches!(
        kind,
        model::KIND_SMS_CHALLENGE
            | model::KIND_ACCOUNT_CHALLENGE
            | model::KIND_SMS_SENT
            | model::KIND_SMS_CODE_REVEALED
            | model::KIND_NUMBERS_COMMITTED
            | model::KIND_PHONE_CHALLENGE
            | model::KIND_PHONE_CONFIRMED
            | model::KIND_APPLICANT_CODE_ISSUED
    )
}

/// Kinds the node key may sign besides genesis: its own SMS records, and
/// the applicant's account confirmation (the applicant has no key, so the
/// node records the code they entered).
pub fn node_may_sign(kind: u16) -> bool {
    only_node_signs(kind) || kind == model::KIND_ACCOUNT_CONFIRMED
}

/// The origin a record's signature must cover: the ledger's, from its
/// genesis entry; for the genesis record itself, the origin it names.
/// `None` before a genesis entry (nothing else can be admitted then).
pub fn signing_origin(registry: &Registry, record: &Record) -> Option<String> {
    match registry.origin() {
        Some(origin) => Some(origin.to_owned()),
        None if record.kind == crate::record::KIND_GENESIS => {
            serde_json::from_slice::<crate::record::Genesis>(&record.payload)
                .ok()
                .map(|genesis| genesis.origin)
        }
        None => None,
    }
}

/// Admits one record at `seq` with the entry's `timestamp_ms`: the key
/// registry first, then the case-fund rules against `state`. On a refusal
/// the state is left as it was; the registry is changed only by records it
/// admits.
pub fn admit_record(
    registry: &mut Registry,
    state: &mut Overlay,
    seq: u64,
    timestamp_ms: u64,
    record: &Record,
) -> Result<(Admitted, funds::Outcome), RuleError> {
    // The rules read every concealed value revealed (docs/FORMAT.md §3j);
    // numbers and retries are bound to the payload as signed.
    let payload_sha256 = hex::encode(Sha256::digest(&record.payload));
    let revealed = readable(registry, record)?;
    let record = revealed.as_ref().unwrap_or(record);
    // A record refused at any step changes nothing: not the state, not the
    // registry (a key registration refused for its salts after the
    // registry took it must not leave the key behind).
    let mark = state.mark();
    let registry_before = crate::record::changes_registry(record.kind).then(|| registry.clone());
    let admitted = admit_read(registry, state, seq, timestamp_ms, record, &payload_sha256).and_then(|admitted| {
        // A retry writes nothing and spends nothing.
        if admitted.1 == funds::Outcome::New {
            spend_salts(state, seq, record)?;
        }
        Ok(admitted)
    });
    if admitted.is_err() {
        state.rollback(mark);
        if let Some(before) = registry_before {
            *registry = before;
        }
    }
    admitted
}

/// [`admit_record`] of a record as the rules read it.
fn admit_read(
    registry: &mut Registry,
    state: &mut Overlay,
    seq: u64,
    timestamp_ms: u64,
    record: &Record,
    payload_sha256: &str,
) -> Result<(Admitted, funds::Outcome), RuleError> {
    let by_node = record.signer == registry.node_key().key_id();
    let genesis = seq == 0 || record.kind == crate::record::KIND_GENESIS;
    let mark_before = state.mark();
    let admitted = if !genesis && by_node && node_may_sign(record.kind) {
        Admitted {
            key: registry.node_key(),
            changed: Vec::new(),
        }
    } else if !genesis && only_node_signs(record.kind) {
        return Err(RuleError::NotAuthorized(
            "an SMS challenge is recorded by the node key".into(),
        ));
    } else if let Some(completed) = funds::completed_enrolment(state, seq, record, payload_sha256)? {
        // Judged with the node's commitment; the spent commitment is put
        // back if the registry refuses the record.
        let admitted = member_phone_not_an_applicants(state, &completed).and_then(|()| registry.admit(seq, &completed));
        if admitted.is_err() {
            state.rollback(mark_before);
        }
        admitted?
    } else {
        let admitted = registry.admit(seq, record)?;
        // Judged once the registry has found the co-signature states the
        // registration; the caller puts the registry back on a refusal.
        funds::checked_co_signature(state, seq, record, payload_sha256, registry)?;
        admitted
    };
    if !crate::record::is_known_kind(record.kind) {
        return Err(RuleError::Rule {
            rule: "unknown_kind",
            detail: format!("kind {:#06x} is not a caseledger record kind", record.kind),
        });
    }
    if record.kind == crate::record::KIND_DEMO_NOTE {
        if !registry.demo() {
            return Err(RuleError::Rule {
                rule: "demo_only",
                detail: "demo notes are admitted only in a ledger whose genesis says it is a demo ledger".into(),
            });
        }
        let note: Result<crate::record::DemoNote, _> = serde_json::from_slice(&record.payload);
        if !crate::record::is_json_object(&record.payload) || note.is_err() {
            return Err(RuleError::BadPayload {
                kind: "demo_note",
                detail: "a demo note is {\"number\", \"text\"}".into(),
            });
        }
    }
    if !funds::is_funds_kind(record.kind) {
        let mark = state.mark();
        if let Err(e) = crate::threads::append(state, seq, record) {
            state.rollback(mark);
            return Err(e);
        }
        return Ok((admitted, funds::Outcome::New));
    }
    let origin = registry.origin().unwrap_or_default().to_owned();
    let signer = if by_node {
        KeyInfo {
            name: "node".into(),
            public_key: KeyText::from_key(&registry.node_key()),
            administrator: false,
            registered_seq: 0,
            revoked_seq: None,
            member: None,
            registered_by: None,
            co_signed_seq: None,
            holder: None,
        }
    } else {
        registry
            .info(&record.signer)
            .cloned()
            .ok_or_else(|| RuleError::UnknownKey(record.signer.short()))?
    };
    let context = funds::Context {
        seq,
        timestamp_ms,
        origin: &origin,
        by_node,
        payload_sha256,
    };
    let mark = state.mark();
    let admitted_funds = funds::admit(state, &context, record, &signer).and_then(|outcome| {
        if record.kind == model::KIND_CASE_OPENED && outcome == funds::Outcome::New {
            case_parties_independent(registry, state, record)?;
        }
        if outcome == funds::Outcome::New {
            crate::threads::append(state, seq, record)?;
        }
        Ok(outcome)
    });
    match admitted_funds {
        Ok(outcome) => Ok((admitted, outcome)),
        Err(e) => {
            state.rollback(mark);
            Err(e)
        }
    }
}

/// The derived-state key of a disclosure salt the ledger has used.
pub fn salt_key(salt: &str) -> String {
    format!("disclosure_salt/{salt}")
}

/// What the ledger keeps of a salt it has used (`disclosure_salt/<salt>`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaltUse {
    /// The hex digest of the disclosure that used it.
    pub digest: String,
    /// It disclosed a member's id in their registration.
    pub member_id: bool,
}

/// Each salt of `record`'s disclosures is used once in the whole ledger
/// (rule `disclosure`): a salt shared by two values lets whoever is shown
/// one disclosure try the other values it may hide (a co-applicant's name,
/// a mask of 10,000). The one exception is a member's id, disclosed again
/// as it was first given when the member is registered again under their
/// one reference. Any other repeat, even word for word, is refused: a
/// member-id disclosure repeated as a reason would tell an applicant whose
/// reference it is, and a party repeated in another filing would link the
/// two cases.
fn spend_salts(state: &mut Overlay, seq: u64, record: &Record) -> Result<(), RuleError> {
    let refuse = |detail: String| RuleError::Rule {
        rule: "disclosure",
        detail,
    };
    let member_ref = (record.kind == crate::record::KIND_KEY_REGISTERED)
        .then(|| serde_json::from_slice::<crate::record::KeyRegistered>(&record.payload).ok())
        .flatten()
        .and_then(|registration| registration.member)
        .map(|member| member.member_ref);
    let mut salts = std::collections::HashSet::new();
    for text in &record.disclosures {
        let (salt, _): (String, serde::de::IgnoredAny) =
            serde_json::from_str(text).map_err(|e| refuse(format!("a disclosure is not [salt, value]: {e}")))?;
        if !salts.insert(salt.clone()) {
            return Err(refuse("two disclosures of the record share a salt".into()));
        }
        let this = SaltUse {
            digest: disclosure::digest_of(text),
            member_id: member_ref.as_deref() == Some(disclosure::digest_of(text).as_str()),
        };
        let key = salt_key(&salt);
        match state.get(&key).map_err(storage)? {
            Some(used) => {
                let used: Option<SaltUse> = serde_json::from_slice(&used).ok();
                if !(this.member_id && used.as_ref() == Some(&this)) {
                    return Err(refuse(format!(
                        "the salt of a disclosure was used before (before seq {seq}); only a member's id is disclosed again, \
                         as it was first given, when the member is registered again"
                    )));
                }
            }
            None => state.put(key, serde_json::to_vec(&this).expect("serialisable")),
        }
    }
    Ok(())
}

/// `record` as the rules read it, when it conceals values: revealed with
/// its disclosures, member references resolved through the registry.
fn readable(registry: &Registry, record: &Record) -> Result<Option<Record>, RuleError> {
    let members = |digest: &str| registry.member_by_reference(digest);
    let reader = disclosure::Reader::Rules { members: &members };
    match disclosure::readable_payload(record.kind, &record.payload, &record.disclosures, reader) {
        Ok(None) => Ok(None),
        Ok(Some(payload)) => Ok(Some(Record {
            payload,
            ..record.clone()
        })),
        Err(disclosure::Refusal::Disclosure(detail)) => Err(RuleError::Rule {
            rule: "disclosure",
            detail,
        }),
        Err(disclosure::Refusal::Payload(detail)) if funds::is_funds_kind(record.kind) => Err(RuleError::Rule {
            rule: "payload",
            detail,
        }),
        Err(disclosure::Refusal::Payload(detail)) => Err(RuleError::BadPayload {
            kind: crate::record::kind_name(record.kind),
            detail,
        }),
    }
}

/// A new case names an active officer, and none of its applicants has the
/// phone of a court member (rule `phone_of_member`): an insider cannot
/// file themselves, or a phone they hold as a member, as a creditor.
fn case_parties_independent(registry: &Registry, state: &Overlay, record: &Record) -> Result<(), RuleError> {
    let opened: model::CaseOpened = serde_json::from_slice(&record.payload).map_err(|e| RuleError::Rule {
        rule: "payload",
        detail: e.to_string(),
    })?;
    let officer_active = registry.keys().any(|(_, info)| {
        info.is_active()
            && info
                .member
                .as_ref()
                .is_some_and(|m| m.member_id == opened.officer_member_id && m.role == model::Role::Officer)
    });
    if !officer_active {
        return Err(RuleError::Rule {
            rule: "role",
            detail: format!("{} is not an active officer", opened.officer_member_id),
        });
    }
    let case: model::CaseState = state
        .get(&funds::case_key(&opened.case_number))
        .map_err(storage)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| RuleError::Rule {
            rule: "storage",
            detail: "the case just opened is unreadable".into(),
        })?;
    for applicant in &case.applicants {
        let member = registry.keys().map(|(_, info)| info).find(|info| {
            info.member
                .as_ref()
                .is_some_and(|m| m.phone_commitment == applicant.phone_commitment)
        });
        if let Some(member) = member {
            return Err(RuleError::Rule {
                rule: "phone_of_member",
                // Which member is not said: the refusal is no directory.
                detail: format!(
                    "applicant {}'s phone is the phone of a court member{}",
                    applicant.applicant_id,
                    if member.revoked_seq.is_some() { " (revoked)" } else { "" }
                ),
            });
        }
    }
    Ok(())
}

fn storage(e: crate::Error) -> RuleError {
    RuleError::Rule {
        rule: "storage",
        detail: e.to_string(),
    }
}

/// A member is not enrolled with the phone of a case's applicant (rule
/// `phone_of_member`, the other way round).
fn member_phone_not_an_applicants(state: &Overlay, record: &Record) -> Result<(), RuleError> {
    let Ok(registration) = serde_json::from_slice::<crate::record::KeyRegistered>(&record.payload) else {
        return Ok(()); // the registry refuses it with its reason
    };
    let Some(member) = registration.member else {
        return Ok(());
    };
    let key = funds::applicant_phone_key(&member.phone_commitment);
    if let Some(applicant) = state.get(&key).map_err(storage)? {
        let applicant: String = serde_json::from_slice(&applicant).unwrap_or_default();
        return Err(RuleError::Rule {
            rule: "phone_of_member",
            detail: format!(
                "member {}'s phone is the phone of applicant {applicant}",
                member.member_id
            ),
        });
    }
    Ok(())
}
