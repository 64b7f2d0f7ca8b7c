//! The applicant's phone confirmed by a code sent to it, before any account
//! can be registered for them (where the policy requires SMS): the number
//! the filing clerk gave must reach the applicant, not only match a mask.
//!
//! The case's officer or the filing clerk asks for a challenge; the node
//! commits to a 6-digit code in the ledger (`phone_challenge`, bound to the
//! case, the applicant and the commitment to their phone; docs/FORMAT.md
//! §3c) and sends the code to the applicant's phone on file, checked
//! against that commitment. The applicant, who has no key, enters it at
//! `POST /v1/cases/{case}/applicants/{id}/phone-confirm`; the node then
//! writes `phone_confirmed` revealing the code and the salt. Five wrong
//! codes lock a challenge; the salt never leaves the node before (see
//! [`super::challenges`]).

use axum::extract::{Path, State};
use axum::Json;
use caseledger_verify::funds::model::*;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::SignedBy;
use super::challenges::{self, refuse, Issued};
use super::problem::{ApiError, Problem};
use super::AppState;

/// How long an applicant's phone code lives.
pub const PHONE_CODE_TTL_MS: u64 = 30 * 60 * 1000;

fn private_key(case_number: &str, applicant_id: &str) -> String {
    format!("phone_challenge/{case_number}/{applicant_id}")
}

/// The case and the applicant whose phone is still to be confirmed.
fn unconfirmed(state: &AppState, case_number: &str, applicant_id: &str) -> Result<(CaseState, Applicant), ApiError> {
    let case: CaseState = serde_json::from_slice(
        &state
            .ledger
            .state_object(&caseledger_verify::funds::case_key(case_number))?
            .ok_or_else(|| ApiError::NotFound(format!("case {case_number}")))?,
    )
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let applicant = case
        .applicants
        .iter()
        .find(|a| a.applicant_id == applicant_id)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("applicant {applicant_id}")))?;
    if case.phones_confirmed.iter().any(|a| a == applicant_id) {
        return Err(refuse(
            "phone_confirmation",
            "this applicant's phone is confirmed already",
        ));
    }
    Ok((case, applicant))
}

#[derive(Serialize, ToSchema)]
pub struct PhoneChallengeResponse {
    /// Seq of the node's commitment in the ledger.
    pub challenge_seq: u64,
    pub expires_ms: u64,
    /// The phone the code went to, masked.
    pub sent_to: String,
}

/// Sends an applicant a code confirming their phone (the case's officer or
/// a filing clerk asks; the code goes only to the applicant's phone).
#[utoipa::path(post, path = "/v1/cases/{case_number}/applicants/{applicant_id}/phone-challenge", operation_id = "phone_challenge",
    params(("case_number" = String, Path), ("applicant_id" = String, Path)),
    responses(
        (status = OK, body = PhoneChallengeResponse),
        (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
        (status = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
        (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
        (status = UNPROCESSABLE_ENTITY, body = Problem, content_type = "application/problem+json"),
        (status = TOO_MANY_REQUESTS, body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn challenge(
    State(state): State<AppState>,
    Path((case_number, applicant_id)): Path<(String, String)>,
    SignedBy { info, .. }: SignedBy,
) -> Result<Json<PhoneChallengeResponse>, ApiError> {
    let case_number = caseledger_verify::funds::normal_case_number(&case_number);
    let (case, applicant) = unconfirmed(&state, &case_number, &applicant_id)?;
    let allowed = info.member.as_ref().is_some_and(|m| {
        m.role == Role::FilingClerk || (m.role == Role::Officer && m.member_id == case.officer_member_id)
    });
    if !allowed {
        return Err(refuse(
            "role",
            "the case's officer or a filing clerk asks for the applicant's phone confirmation",
        ));
    }
    let recipient = caseledger_verify::funds::notify::applicant_contact(&case_number, &applicant_id);
    let phone = super::contacts::phone_for(&state, &recipient, "phone", "this applicant")?;
    state.challenge_allowed(&format!("phone/{case_number}/{applicant_id}"))?;
    let issued = Issued::new(&state, "phone-challenge", PHONE_CODE_TTL_MS);
    let payload = PhoneChallenge {
        request_id: issued.request_id.clone(),
        case_number: case_number.clone(),
        applicant_id: applicant_id.clone(),
        commitment: phone_code_commitment(
            &issued.salt,
            &issued.code,
            &phone_binding(state.ledger.origin(), &case_number, &applicant),
        ),
        expires_ms: issued.expires_ms,
    };
    let record = state
        .ledger
        .sign_as_node(KIND_PHONE_CHALLENGE, serde_json::to_vec(&payload).expect("json"))?;
    let seq = state.append_one(record).await?;
    issued.remember(&state, &private_key(&case_number, &applicant_id), seq)?;
    let params = [("case", case_number.clone()), ("code", issued.code.clone())];
    let message = state
        .templates
        .message(&format!("phone-challenge-{seq}"), &phone, "phone_code", &params);
    challenges::send(&state, &message, &payload.request_id, "phone").await?;
    Ok(Json(PhoneChallengeResponse {
        challenge_seq: seq,
        expires_ms: issued.expires_ms,
        sent_to: crate::commitments::mask(&phone),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct PhoneConfirmResponse {
    /// Seq of the node's `phone_confirmed` entry.
    pub seq: u64,
}

/// For applicants (no key): confirms their phone with the code sent to it.
/// Five wrong codes lock the challenge.
#[utoipa::path(post, path = "/v1/cases/{case_number}/applicants/{applicant_id}/phone-confirm", operation_id = "phone_confirm",
    params(("case_number" = String, Path), ("applicant_id" = String, Path)),
    request_body = super::challenges::CodeEntry,
    responses(
        (status = OK, body = PhoneConfirmResponse),
        (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json"),
        (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
        (status = UNPROCESSABLE_ENTITY, body = Problem, content_type = "application/problem+json"),
        (status = TOO_MANY_REQUESTS, body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn confirm(
    State(state): State<AppState>,
    Path((case_number, applicant_id)): Path<(String, String)>,
    extensions: axum::http::Extensions,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<PhoneConfirmResponse>, ApiError> {
    let case_number = caseledger_verify::funds::normal_case_number(&case_number);
    let code = challenges::entered_code(&state, (&extensions, &headers), &body, "/v1/cases/phone-confirm")?;
    unconfirmed(&state, &case_number, &applicant_id)?;
    let key = private_key(&case_number, &applicant_id);
    let challenge = challenges::check(&state, &key, &code, "ask the court to send a new one")?;
    let payload = PhoneConfirmed {
        request_id: challenges::random_request_id("phone-confirmed"),
        case_number,
        applicant_id,
        sms: SmsReveal {
            code,
            salt: challenge.salt(&state),
        },
    };
    let record = state
        .ledger
        .sign_as_node(KIND_PHONE_CONFIRMED, serde_json::to_vec(&payload).expect("json"))?;
    // The ledger spends the commitment: a second use is refused by the rules.
    let seq = state.append_one(record).await?;
    challenges::forget(&state, &key)?;
    Ok(Json(PhoneConfirmResponse { seq }))
}
