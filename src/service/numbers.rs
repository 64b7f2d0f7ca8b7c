//! Numbers given in clear: a case's applicants' phones (the filing clerk's
//! `case_opened`), an account's number (the officer's
//! `account_registered`) and a member's phone (the administrator's
//! `key_registered`). The member's record carries only the masks; the
//! member's signed request carries the numbers, in `numbers`; the node
//! checks each against its mask, computes the court's commitments (HMAC
//! with `commitment.key`) and writes them, node-signed, in
//! `numbers_committed` right before the member's record, in the same
//! request (docs/FORMAT.md §3c). So no member ever learns a commitment
//! before it is in the ledger: there is no commitment oracle, each number
//! committed leaves a permanent record naming who gave it, and the numbers
//! a member may have committed are limited per hour. The applicants' and
//! members' phones become their contacts for codes and notices.

use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::*;

use super::challenges::refuse;
use super::problem::ApiError;
use super::AppState;
use crate::commitments::{commitment, mask, COMMITMENT_ACCOUNT, COMMITMENT_PHONE};

/// Numbers one member may have committed in an hour (a filing clerk opens
/// a few dozen cases a day; trying phone numbers against commitments
/// would need millions).
pub const NUMBERS_PER_MEMBER_PER_HOUR: u32 = 600;

/// The payload of `record` with its concealed values revealed by its
/// disclosures (docs/FORMAT.md §3j); member references are left as they
/// are (the rules resolve them when the record is written). `None` if they
/// do not reveal it (the rules refuse it with their reason).
fn revealed(record: &Record) -> Option<Vec<u8>> {
    let unresolved = |digest: &str| Some(format!("{}{digest}", caseledger_verify::disclosure::UNDISCLOSED_PREFIX));
    let reader = caseledger_verify::disclosure::Reader::Rules { members: &unresolved };
    match caseledger_verify::disclosure::readable_payload(record.kind, &record.payload, &record.disclosures, reader) {
        Ok(Some(payload)) => Some(payload),
        Ok(None) => Some(record.payload.clone()),
        Err(_) => None,
    }
}

/// What a record's numbers are, and how many it has.
fn numbers_of(record: &Record) -> Option<(&'static str, Vec<String>)> {
    let payload = revealed(record)?;
    match record.kind {
        KIND_CASE_OPENED => {
            let case: CaseOpened = serde_json::from_slice(&payload).ok()?;
            Some((
                COMMITMENT_PHONE,
                case.applicants.into_iter().map(|a| a.phone_masked).collect(),
            ))
        }
        KIND_ACCOUNT_REGISTERED => {
            let account: AccountRegistered = serde_json::from_slice(&payload).ok()?;
            Some((COMMITMENT_ACCOUNT, vec![account.account_number_masked]))
        }
        caseledger_verify::record::KIND_KEY_REGISTERED => {
            let registration: caseledger_verify::record::KeyRegistered = serde_json::from_slice(&payload).ok()?;
            Some((COMMITMENT_PHONE, vec![registration.member?.phone_masked]))
        }
        _ => None,
    }
}

/// A mainland mobile number (11 digits, 1 then 3-9), or a bank account
/// number (8 to 30 digits).
fn well_formed(purpose: &str, number: &str) -> bool {
    let digits = number.bytes().all(|b| b.is_ascii_digit());
    if purpose == COMMITMENT_PHONE {
        digits && number.len() == 11 && number.starts_with('1') && !matches!(number.as_bytes()[1], b'0'..=b'2')
    } else {
        digits && (8..=30).contains(&number.len())
    }
}

/// The node's commitments to what the request gave in clear.
pub(super) struct Committed {
    /// The node's `numbers_committed`, to go right before the record.
    pub record: Record,
    /// `(recipient, phone)` to keep as contacts once written.
    pub contacts: Vec<(String, String)>,
}

/// The node's `numbers_committed` for `record` and the `numbers` its
/// request gave in clear, by `who` (a member id, or the key id of a
/// genesis administrator); `None` for a record without numbers, or a retry
/// of a record already written (the ledger answers the retry).
pub(super) fn commit(
    state: &AppState,
    who: &str,
    index: usize,
    record: &Record,
    numbers: &[String],
) -> Result<Option<Committed>, ApiError> {
    if record.kind == caseledger_verify::record::KIND_KEY_CO_SIGNED {
        return co_signature_phone(state, who, index, record, numbers);
    }
    let Some((purpose, masks)) = numbers_of(record) else {
        if numbers.is_empty() {
            return Ok(None);
        }
        if revealed(record).is_none() {
            return Err(ApiError::BadRequest(format!(
                "record {index}: its concealed values and their disclosures do not match (docs/FORMAT.md §3j)"
            )));
        }
        return Err(ApiError::BadRequest(format!(
            "record {index}: numbers are given only with case_opened (the applicants' phones), account_registered (the account number) and a member's key_registered (the member's phone)"
        )));
    };
    let request_id = serde_json::from_slice::<serde_json::Value>(&record.payload)
        .ok()
        .and_then(|v| v.get("request_id").and_then(|r| r.as_str()).map(str::to_owned))
        .unwrap_or_default();
    if state.ledger.state_object(&format!("request/{request_id}"))?.is_some() {
        return Ok(None);
    }
    if numbers.len() != masks.len() {
        return Err(ApiError::BadRequest(format!(
            "record {index}: give {} number(s) in clear in `numbers`, in the order of the masked ones",
            masks.len()
        )));
    }
    for (number, masked) in numbers.iter().zip(&masks) {
        if !well_formed(purpose, number) {
            return Err(ApiError::BadRequest(format!(
                "record {index}: a {purpose} number must be {}",
                if purpose == COMMITMENT_PHONE {
                    "a mainland mobile number of 11 digits"
                } else {
                    "8 to 30 digits"
                }
            )));
        }
        if mask(number) != *masked {
            return Err(ApiError::BadRequest(format!(
                "record {index}: a number given does not end with the digits of its mask {masked}"
            )));
        }
    }

    spend_number_quota(state, who, numbers.len())?;
    tracing::info!(
        by = who,
        kind = caseledger_verify::record::kind_name(record.kind),
        request_id,
        numbers = numbers.len(),
        "numbers given for the node to commit to"
    );
    let payload_revealed = revealed(record).expect("read above");
    let contacts = match record.kind {
        KIND_CASE_OPENED => {
            let case: CaseOpened = serde_json::from_slice(&payload_revealed).expect("parsed above");
            case.applicants
                .iter()
                .zip(numbers)
                .map(|(a, phone)| {
                    (
                        caseledger_verify::funds::notify::applicant_contact(&case.case_number, &a.applicant_id),
                        phone.clone(),
                    )
                })
                .collect()
        }
        caseledger_verify::record::KIND_KEY_REGISTERED => {
            let registration: caseledger_verify::record::KeyRegistered =
                serde_json::from_slice(&payload_revealed).expect("parsed above");
            let member = registration.member.expect("a member: parsed above");
            vec![(super::sms::member_recipient(&member.member_id), numbers[0].clone())]
        }
        _ => Vec::new(),
    };
    let commitments = numbers
        .iter()
        .map(|n| commitment(&state.commitment_key, purpose, n))
        .collect();
    let record = numbers_committed(state, record, commitments)?;
    Ok(Some(Committed { record, contacts }))
}

/// `count` numbers of `who`'s hourly quota ([`NUMBERS_PER_MEMBER_PER_HOUR`]):
/// each number given in clear is one more try against the court's
/// commitments.
pub(super) fn spend_number_quota(state: &AppState, who: &str, count: usize) -> Result<(), ApiError> {
    let cells = std::num::NonZeroU32::new(u32::try_from(count).unwrap_or(u32::MAX)).expect("at least one number");
    match state.numbers_limiter.check_key_n(&who.to_owned(), cells) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(until)) => {
            use governor::clock::Clock as _;
            metrics::counter!("caseledger_rate_limited_total", "route" => "numbers").increment(1);
            Err(ApiError::rate_limited(
                until.wait_time_from(state.numbers_limiter.clock().now()),
            ))
        }
        // More numbers in one request than the hour allows.
        Err(_) => {
            metrics::counter!("caseledger_rate_limited_total", "route" => "numbers").increment(1);
            Err(ApiError::rate_limited(std::time::Duration::from_secs(3600)))
        }
    }
}

/// The node's `numbers_committed` of `commitments` for `record`, to go
/// right before it.
fn numbers_committed(state: &AppState, record: &Record, commitments: Vec<String>) -> Result<Record, ApiError> {
    let payload = NumbersCommitted {
        request_id: super::challenges::random_request_id("numbers"),
        record_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&record.payload)),
        commitments,
    };
    Ok(state
        .ledger
        .sign_as_node(KIND_NUMBERS_COMMITTED, serde_json::to_vec(&payload).expect("json"))?)
}

/// A co-signature of a member's key: the co-signer's request gives the
/// member's phone number from the staff list in clear; the node refuses
/// it unless it opens the commitment the enrolment holds (rule
/// `co_signature_phone`), so a registrar who enrolled the member with
/// another phone ending in the same digits is caught before the key may
/// sign. The node's `numbers_committed` of that number goes right before
/// the co-signature (the rules require it), and the number becomes the
/// member's contact.
fn co_signature_phone(
    state: &AppState,
    who: &str,
    index: usize,
    record: &Record,
    numbers: &[String],
) -> Result<Option<Committed>, ApiError> {
    let keys = state.ledger.keys();
    let awaiting = serde_json::from_slice::<caseledger_verify::record::KeyCoSigned>(&record.payload)
        .ok()
        .and_then(|co_signed| caseledger_keys::KeyId::from_hex(&co_signed.key_id).ok())
        .and_then(|id| keys.info(&id))
        .filter(|info| info.awaits_co_signature());
    // Only someone who may co-sign this key gets the number compared: an
    // active administrator or court leader, not the registrar's person.
    // Anyone else is refused by the rules (`not_authorized`,
    // `key_co_signature`) without the number being looked at, so the
    // check is no phone oracle for every member.
    let signer = keys.info(&record.signer).filter(|s| s.is_active());
    let may_co_sign =
        signer.is_some_and(|s| s.administrator || s.member.as_ref().is_some_and(|m| m.role == Role::CourtLeader));
    let registrar_signs = awaiting
        .and_then(|info| info.registered_by.as_deref())
        .and_then(|hex| caseledger_keys::KeyId::from_hex(hex).ok())
        .and_then(|id| keys.info(&id))
        .zip(signer)
        .is_some_and(|(registrar, signer)| registrar.person() == signer.person());
    if awaiting.is_some_and(|info| info.member.is_some()) && (!may_co_sign || registrar_signs) {
        return Ok(None);
    }
    let Some(member) = awaiting.and_then(|info| info.member.clone()) else {
        // Not a member's key awaiting its co-signature: the rules judge it.
        return if numbers.is_empty() {
            Ok(None)
        } else {
            Err(ApiError::BadRequest(format!(
                "record {index}: a number is given with a co-signature only for a member's key awaiting it (the member's phone)"
            )))
        };
    };
    let phone = match numbers {
        // The rules refuse it (`co_signature_phone`) unless they refuse
        // it for a reason of their own first (`key_co_signature`).
        [] => return Ok(None),
        [phone] => phone,
        _ => {
            return Err(ApiError::BadRequest(format!(
                "record {index}: give one number with a co-signature: member {}'s phone from the staff list",
                member.member_id
            )))
        }
    };
    if !well_formed(COMMITMENT_PHONE, phone) {
        return Err(ApiError::BadRequest(format!(
            "record {index}: a phone number must be a mainland mobile number of 11 digits"
        )));
    }
    spend_number_quota(state, who, 1)?;
    let given = commitment(&state.commitment_key, COMMITMENT_PHONE, phone);
    if given != member.phone_commitment {
        metrics::counter!("caseledger_contact_mismatch_total", "purpose" => "co_signature").increment(1);
        tracing::error!(
            by = who,
            member_id = member.member_id,
            "a co-signer's phone number for a member is not the one the member was enrolled with; co-signature refused"
        );
        return Err(refuse(
            "co_signature_phone",
            &format!(
                "record {index}: the phone number given is not the one member {} was enrolled with (the enrolment shows {}): codes would go to another phone; not co-signed",
                member.member_id, member.phone_masked
            ),
        ));
    }
    let record = numbers_committed(state, record, vec![given])?;
    Ok(Some(Committed {
        record,
        contacts: vec![(super::sms::member_recipient(&member.member_id), phone.clone())],
    }))
}
