//! Contacts: the phone numbers the node sends codes and notices to. They
//! live beside the ledger (`meta/private/contact/<recipient>`), never in
//! it, and that table is not hashed: whoever can write the database could
//! point an applicant's codes and notices at their own phone. So before
//! every send the number is checked against the commitment the ledger
//! holds for that recipient (a member's enrolment, the applicant's entry
//! in `case_opened`); a mismatch refuses the send, is logged as an error
//! naming the recipient (never the number) and is counted in `/metrics`
//! (`caseledger_contact_mismatch_total`).
//!
//! An applicant's phone is kept when the case is opened, from the filing
//! clerk's request (see [`super::numbers`]); an approver's is recorded by an
//! administrator at `POST /v1/contacts/members`, here.

use axum::extract::State;
use axum::http::StatusCode;
use caseledger_ledger::store::Ledger;
use caseledger_verify::funds::model::CaseState;
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::SignedJson;
use super::challenges::refuse;
use super::problem::{ApiError, Problem};
use super::sms::contact_key;
use super::AppState;

/// Why no number can be used for a recipient.
#[derive(Debug)]
pub enum ContactError {
    /// No number is on file.
    Missing,
    /// The ledger holds no phone commitment for this recipient.
    Unknown,
    /// The number on file does not open the ledger's commitment.
    Mismatch,
    Storage(String),
}

impl std::fmt::Display for ContactError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("no phone number is on file"),
            Self::Unknown => f.write_str("the ledger holds no phone commitment for this recipient"),
            Self::Mismatch => f.write_str(
                "the phone number on file does not match the ledger's commitment: the send is refused and reported",
            ),
            Self::Storage(detail) => write!(f, "storage: {detail}"),
        }
    }
}

impl From<caseledger_ledger::Error> for ContactError {
    fn from(error: caseledger_ledger::Error) -> Self {
        Self::Storage(error.to_string())
    }
}

/// The commitment the ledger holds for `recipient`'s phone:
/// `member/<member_id>` (an active member's enrolment) or
/// `applicant/<case_number>/<applicant_id>` (the case as opened).
fn ledger_commitment(ledger: &Ledger, recipient: &str) -> Result<Option<String>, ContactError> {
    if let Some(member_id) = recipient.strip_prefix("member/") {
        let keys = ledger.keys();
        return Ok(keys
            .keys()
            .filter(|(_, info)| info.is_active())
            .find_map(|(_, info)| info.member.as_ref().filter(|m| m.member_id == member_id))
            .map(|m| m.phone_commitment.clone()));
    }
    let Some((case_number, applicant_id)) = recipient
        .strip_prefix("applicant/")
        .and_then(|rest| rest.rsplit_once('/'))
    else {
        return Ok(None);
    };
    let Some(bytes) = ledger.state_object(&caseledger_verify::funds::case_key(case_number))? else {
        return Ok(None);
    };
    let case: CaseState = serde_json::from_slice(&bytes).map_err(|e| ContactError::Storage(e.to_string()))?;
    Ok(case
        .applicants
        .into_iter()
        .find(|a| a.applicant_id == applicant_id)
        .map(|a| a.phone_commitment))
}

/// The phone number on file for `recipient`, if it opens the commitment
/// the ledger holds for that recipient under the court's key. `purpose`
/// labels the metric and the log line of a mismatch.
pub fn checked_phone(
    ledger: &Ledger,
    commitment_key: &[u8; 32],
    recipient: &str,
    purpose: &'static str,
) -> Result<String, ContactError> {
    let phone = ledger
        .private_get(&contact_key(recipient))?
        .ok_or(ContactError::Missing)?;
    let phone = String::from_utf8(phone).map_err(|_| ContactError::Mismatch)?;
    let committed = ledger_commitment(ledger, recipient)?.ok_or(ContactError::Unknown)?;
    if crate::commitments::commitment(commitment_key, crate::commitments::COMMITMENT_PHONE, &phone) != committed {
        metrics::counter!("caseledger_contact_mismatch_total", "purpose" => purpose).increment(1);
        tracing::error!(
            recipient,
            purpose,
            "the phone number on file does not match the ledger's commitment; send refused"
        );
        return Err(ContactError::Mismatch);
    }
    Ok(phone)
}

/// [`checked_phone`] for a handler: a missing number is the `rule`
/// refusal it always was; a mismatch is `contact_mismatch`.
pub(super) fn phone_for(
    state: &super::AppState,
    recipient: &str,
    purpose: &'static str,
    whose: &str,
) -> Result<String, super::problem::ApiError> {
    checked_phone(&state.ledger, &state.commitment_key, recipient, purpose).map_err(|error| match error {
        ContactError::Missing => refuse(
            "sms_confirmation",
            &if recipient.starts_with("applicant/") {
                format!("no phone number is on file for {whose}: the filing clerk gives it when opening the case")
            } else {
                format!(
                    "no phone number is on file for {whose}: an administrator records it with `caseledger admin phone` (POST /v1/contacts/members)"
                )
            },
        ),
        ContactError::Unknown => refuse("sms_confirmation", &format!("the ledger holds no phone of {whose}")),
        ContactError::Mismatch => refuse("contact_mismatch", &format!("{whose}: {error}")),
        ContactError::Storage(detail) => super::problem::ApiError::Internal(detail),
    })
}

/// Keeps `phone` for `recipient` (beside the ledger) if it opens the
/// commitment the ledger recorded for `whose` phone.
/// Each number tried is one of `who`'s hourly quota of numbers given in
/// clear (as when committing), and a mismatch is logged and counted: the
/// check is no free phone oracle for administrators.
fn put_checked_phone(
    state: &AppState,
    who: &str,
    recipient: &str,
    phone: &str,
    commitment: &str,
    whose: &str,
) -> Result<StatusCode, ApiError> {
    super::numbers::spend_number_quota(state, who, 1)?;
    if crate::commitments::commitment(&state.commitment_key, crate::commitments::COMMITMENT_PHONE, phone) != commitment
    {
        metrics::counter!("caseledger_contact_mismatch_total", "purpose" => "contact_recorded").increment(1);
        tracing::error!(
            by = who,
            recipient,
            "a phone number recorded for a member is not the one they were enrolled with; refused"
        );
        return Err(ApiError::BadRequest(format!(
            "the phone number does not match the one recorded for {whose}"
        )));
    }
    super::sms::put_contact(&state.ledger, recipient, phone)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MemberContactRequest {
    pub member_id: String,
    pub phone: String,
}

/// Records an approver's phone number (administrators), checked against
/// the commitment in their enrolment.
#[utoipa::path(post, path = "/v1/contacts/members", request_body = MemberContactRequest, responses(
    (status = NO_CONTENT),
    (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json"),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn member_contact(
    State(state): State<AppState>,
    SignedJson {
        info, body: request, ..
    }: SignedJson<MemberContactRequest>,
) -> Result<StatusCode, ApiError> {
    if !info.administrator {
        return Err(refuse("role", "administrators record approvers' phones"));
    }
    let keys = state.ledger.keys();
    let member = keys
        .keys()
        .filter(|(_, i)| i.is_active())
        .find_map(|(_, i)| i.member.clone().filter(|m| m.member_id == request.member_id))
        .ok_or_else(|| ApiError::NotFound(format!("member {}", request.member_id)))?;
    // The same quota key as the write path's: the member id, or a genesis
    // administrator's key id.
    let who = match &info.member {
        Some(member) => member.member_id.clone(),
        None => info.public_key.key().map(|k| k.key_id().to_hex()).unwrap_or_default(),
    };
    put_checked_phone(
        &state,
        &who,
        &super::sms::member_recipient(&request.member_id),
        &request.phone,
        &member.phone_commitment,
        "the member's enrolment",
    )
}
