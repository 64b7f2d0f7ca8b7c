//! Approval steps confirmed by SMS (issue 5): the challenge endpoint, the
//! approvers' phone numbers, and the code check before a step is written.
//!
//! The code is 6 digits from the OS CSPRNG, valid 5 minutes, kept only as
//! an HMAC under the court's key until the approver reveals it in the signed
//! step; 5 wrong tries lock the challenge. The node records a commitment to
//! it in the ledger before sending (docs/FORMAT.md §3c).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use caseledger_verify::funds::model::*;
use hmac::Mac as _;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::members::{SignedBy, SignedJson};
use super::problem::{ApiError, Problem};
use super::AppState;

/// How long a code lives by default (config `sms_code_ttl_ms`).
pub const CODE_TTL_MS: u64 = 5 * 60 * 1000;
/// Wrong codes before a challenge is locked.
pub const CODE_ATTEMPTS_MAX: u32 = 5;

/// What the node keeps, beside the ledger, of a code it sent: an HMAC of
/// the code (never the code), the wrong tries, the expiry, and for account
/// codes the salt it reveals on the applicant's behalf.
#[derive(Serialize, Deserialize)]
pub(super) struct PrivateChallenge {
    pub seq: u64,
    pub code_mac: String,
    pub attempts: u32,
    pub expires_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
}

impl PrivateChallenge {
    pub fn new(state: &AppState, seq: u64, code: &str, expires_ms: u64, salt: Option<String>) -> Self {
        Self {
            seq,
            code_mac: code_mac(&state.commitment_key, code),
            attempts: 0,
            expires_ms,
            salt,
        }
    }

    pub fn store(&self, state: &AppState, key: &str) -> Result<(), ApiError> {
        Ok(state
            .ledger
            .private_put(key, &serde_json::to_vec(self).expect("json"))?)
    }
}

/// The challenge at `key` if `code` is its code, unexpired, with fewer
/// than 5 wrong tries; a wrong code counts against it. `again` tells the
/// caller how to get a new code.
pub(super) fn check_private_code(
    state: &AppState,
    key: &str,
    code: &str,
    again: &str,
) -> Result<PrivateChallenge, ApiError> {
    let Some(bytes) = state.ledger.private_get(key)? else {
        return Err(refuse("sms_confirmation", "no code was sent for this"));
    };
    let mut challenge: PrivateChallenge =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
    if challenge.attempts >= CODE_ATTEMPTS_MAX {
        return Err(refuse("sms_locked", &format!("too many wrong codes: {again}")));
    }
    if now_ms() > challenge.expires_ms {
        return Err(refuse("sms_confirmation", &format!("the code has expired: {again}")));
    }
    if code_mac(&state.commitment_key, code) != challenge.code_mac {
        challenge.attempts += 1;
        challenge.store(state, key)?;
        return Err(refuse("sms_code", "wrong code"));
    }
    Ok(challenge)
}

/// Sends a code's SMS and records in the ledger which provider took it
/// under which message id (`sms_sent` for the challenge `request_id`).
pub(super) async fn send_code(
    state: &AppState,
    message: &super::sms::Message,
    request_id: &str,
    purpose: &'static str,
) -> Result<(), ApiError> {
    let message_id = state
        .sms
        .send(message)
        .map_err(|e| ApiError::Unavailable(format!("the SMS could not be sent: {}", e.detail)))?;
    metrics::counter!("caseledger_sms_challenges_total", "purpose" => purpose).increment(1);
    let (ledger, sms, request_id) = (state.ledger.clone(), state.sms.clone(), request_id.to_owned());
    tokio::task::spawn_blocking(move || super::sms::record_sent(&ledger, sms.as_ref(), &request_id, &message_id))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(())
}

fn private_key(disbursement_id: &str, step: u32, member_id: &str) -> String {
    format!("challenge/{disbursement_id}/{step}/{member_id}")
}

pub(super) fn code_mac(key: &[u8; 32], code: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(b"sms-code\0");
    mac.update(code.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn refuse(rule: &str, detail: &str) -> ApiError {
    ApiError::RuleViolated {
        rule: rule.into(),
        detail: detail.into(),
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChallengeResponse {
    /// Seq of the node's commitment in the ledger.
    pub challenge_seq: u64,
    /// Salt of the commitment, to put in the step's `sms.salt`.
    pub salt: String,
    pub expires_ms: u64,
    /// What the code will approve, in words (the SMS carries only the code).
    pub statement: String,
}

/// Sends a code to the calling approver's phone for step `n` of a
/// disbursement, after the node commits to it in the ledger.
#[utoipa::path(post, path = "/v1/disbursements/{id}/steps/{n}/challenge",
    params(("id" = String, Path), ("n" = u32, Path)),
    responses(
        (status = OK, body = ChallengeResponse),
        (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
        (status = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
        (status = UNPROCESSABLE_ENTITY, body = Problem, content_type = "application/problem+json"),
        (status = TOO_MANY_REQUESTS, body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn challenge(
    State(state): State<AppState>,
    Path((id, n)): Path<(String, u32)>,
    SignedBy { info, .. }: SignedBy,
) -> Result<Json<ChallengeResponse>, ApiError> {
    let member = info
        .member
        .ok_or_else(|| refuse("role", "only court members approve"))?;
    let bytes = state
        .ledger
        .state_object(&caseledger_verify::funds::disbursement_key(&id))?
        .ok_or_else(|| ApiError::NotFound(format!("disbursement {id}")))?;
    let disbursement: DisbursementState =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
    let role = disbursement
        .next_role()
        .ok_or_else(|| refuse("status", "no step of this disbursement is awaited"))?;
    if disbursement.steps.len() as u32 + 1 != n {
        return Err(refuse("step_order", "that is not the next step"));
    }
    if member.role != role {
        return Err(refuse("role", "the next step needs another role"));
    }
    let phone = state
        .ledger
        .private_get(&super::sms::contact_key(&super::sms::member_recipient(
            &member.member_id,
        )))?
        .ok_or_else(|| refuse("sms_confirmation", "no phone number is on file for this approver"))?;
    // Only challenges that will send a code count against the limit.
    if !state.challenge_allowed(&member.member_id) {
        return Err(ApiError::RateLimited);
    }
    let code = format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32));
    let salt = hex::encode(rand::random::<[u8; 16]>());
    let expires_ms = now_ms() + state.code_ttl_ms;
    let origin = state.ledger.origin().to_owned();
    let commitment = sms_commitment(
        &salt,
        &code,
        &sms_binding(&origin, &disbursement, n, role, &member.member_id),
    );
    let payload = SmsChallenge {
        request_id: format!("challenge-{}", &salt[..16]),
        disbursement_id: id.clone(),
        step: n,
        member_id: member.member_id.clone(),
        commitment,
        expires_ms,
    };
    let record = state
        .ledger
        .sign_as_node(KIND_SMS_CHALLENGE, serde_json::to_vec(&payload).expect("json"))?;
    let seq = state.append_one(record).await?;
    PrivateChallenge::new(&state, seq, &code, expires_ms, None)
        .store(&state, &private_key(&id, n, &member.member_id))?;
    let phone = String::from_utf8_lossy(&phone).into_owned();
    // The template carries only the code, as Chinese providers require.
    let message = state
        .templates
        .message(&format!("challenge-{seq}"), &phone, "approval_code", &[("code", code)]);
    send_code(&state, &message, &payload.request_id, "approval").await?;
    let payee = state
        .ledger
        .state_object(&caseledger_verify::funds::account_key(&disbursement.account_id))?
        .and_then(|bytes| serde_json::from_slice::<AccountState>(&bytes).ok())
        .map_or_else(String::new, |a| {
            format!("{} {}", a.account_name, a.account_number_masked)
        });
    let statement = format!(
        "{}: {} to {payee} — step {n} as {}",
        disbursement.case_number,
        caseledger_verify::bundle::yuan(disbursement.amount_fen),
        role.as_str()
    );
    Ok(Json(ChallengeResponse {
        challenge_seq: seq,
        salt,
        expires_ms,
        statement,
    }))
}

/// Before a step that reveals a code is written: the code must match the
/// one sent, within its lifetime, with fewer than 5 wrong tries.
pub(super) fn check_code(state: &AppState, member_id: &str, statement: &ApprovalSigned) -> Result<(), ApiError> {
    let Some(reveal) = &statement.sms else { return Ok(()) };
    let key = private_key(&statement.disbursement_id, statement.step, member_id);
    check_private_code(state, &key, &reveal.code, "ask for a new challenge").map(|_| ())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberContactRequest {
    pub member_id: String,
    pub phone: String,
}

/// Records an approver's phone number (administrators), checked against
/// the commitment in their enrolment.
#[utoipa::path(post, path = "/v1/contacts/members", request_body = MemberContactRequest, responses(
    (status = NO_CONTENT),
    (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json"),
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
        .filter(|(_, i)| i.revoked_seq.is_none())
        .find_map(|(_, i)| i.member.clone().filter(|m| m.member_id == request.member_id))
        .ok_or_else(|| ApiError::NotFound(format!("member {}", request.member_id)))?;
    super::members::put_checked_phone(
        &state,
        &super::sms::member_recipient(&request.member_id),
        &request.phone,
        &member.phone_commitment,
        "the member's enrolment",
    )
}

#[derive(Serialize, ToSchema)]
pub struct DisbursementView {
    #[schema(value_type = Object)]
    pub disbursement: DisbursementState,
    /// The payee account, masked.
    pub account_number_masked: String,
    pub account_name: String,
    pub bank: String,
}

/// One disbursement with its payee (members only): what an approver looks
/// at before asking for a code.
#[utoipa::path(get, path = "/v1/disbursements/{id}", params(("id" = String, Path)), responses(
    (status = OK, body = DisbursementView),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn disbursement(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _member: SignedBy,
) -> Result<Json<DisbursementView>, ApiError> {
    let read = |key: String| -> Result<Vec<u8>, ApiError> {
        let found = state.ledger.state_object(&key)?;
        found.ok_or(ApiError::NotFound(key))
    };
    let disbursement: DisbursementState =
        serde_json::from_slice(&read(caseledger_verify::funds::disbursement_key(&id))?)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    let account: AccountState =
        serde_json::from_slice(&read(caseledger_verify::funds::account_key(&disbursement.account_id))?)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(DisbursementView {
        disbursement,
        account_number_masked: account.account_number_masked,
        account_name: account.account_name,
        bank: account.bank,
    }))
}
