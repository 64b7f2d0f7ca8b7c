//! Approval steps confirmed by SMS (issue 5): the challenge endpoint and
//! the code check before a step is written (approvers' phone numbers are
//! recorded in [`super::contacts`]).
//!
//! The code (see [`super::challenges`]) goes to the approver's phone on
//! file; the node commits to it in the ledger before sending. The approver
//! signs the step with the code they typed; the service checks it and
//! writes, in the same request, the node's `sms_code_revealed` (the
//! opening of its commitment) right before the step.

use axum::extract::{Path, State};
use axum::Json;
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::*;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::SignedBy;
use super::challenges::{self, refuse, Issued};
use super::problem::{ApiError, Problem};
use super::AppState;

/// How long a code lives by default (config `sms_code_ttl_ms`).
pub const CODE_TTL_MS: u64 = 5 * 60 * 1000;

fn private_key(disbursement_id: &str, step: u32, member_id: &str) -> String {
    format!("challenge/{disbursement_id}/{step}/{member_id}")
}

#[derive(Serialize, ToSchema)]
pub struct ChallengeResponse {
    /// Seq of the node's commitment in the ledger.
    pub challenge_seq: u64,
    pub expires_ms: u64,
    /// What the code will approve, in words (the SMS carries only the code).
    pub statement: String,
}

/// Sends a code to the calling approver's phone for step `n` of a
/// disbursement, after the node commits to it in the ledger.
#[utoipa::path(post, path = "/v1/disbursements/{id}/steps/{n}/challenge", operation_id = "step_challenge",
    params(("id" = String, Path), ("n" = u32, Path)),
    responses(
        (status = OK, body = ChallengeResponse),
        (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
        (status = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
        (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
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
    let phone = super::contacts::phone_for(
        &state,
        &super::sms::member_recipient(&member.member_id),
        "approval",
        "this approver",
    )?;
    // Only challenges that will send a code count against the limit.
    state.challenge_allowed(&member.member_id)?;
    let issued = Issued::new(&state, "challenge", state.code_ttl_ms);
    let origin = state.ledger.origin().to_owned();
    let commitment = sms_commitment(
        &issued.salt,
        &issued.code,
        &sms_binding(&origin, &disbursement, n, role, &member.member_id),
    );
    let payload = SmsChallenge {
        request_id: issued.request_id.clone(),
        disbursement_id: id.clone(),
        step: n,
        member_id: member.member_id.clone(),
        commitment,
        expires_ms: issued.expires_ms,
    };
    let record = state
        .ledger
        .sign_as_node(KIND_SMS_CHALLENGE, serde_json::to_vec(&payload).expect("json"))?;
    let seq = state.append_one(record).await?;
    issued.remember(&state, &private_key(&id, n, &member.member_id), seq)?;
    // The template carries only the code, as Chinese providers require.
    let message = state.templates.message(
        &format!("challenge-{seq}"),
        &phone,
        "approval_code",
        &[("code", issued.code.clone())],
    );
    challenges::send(&state, &message, &payload.request_id, "approval").await?;
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
        expires_ms: issued.expires_ms,
        statement,
    }))
}

/// After the write: the challenges whose codes the ledger now holds are
/// forgotten by the node.
pub(super) fn forget_spent(state: &AppState, member_id: Option<&str>, records: &[Record]) -> Result<(), ApiError> {
    let Some(member_id) = member_id else { return Ok(()) };
    for record in records.iter().filter(|r| r.kind == KIND_APPROVAL_SIGNED) {
        if let Ok(statement) = serde_json::from_slice::<ApprovalSigned>(&record.payload) {
            if statement.sms_code.is_some() {
                challenges::forget(
                    state,
                    &private_key(&statement.disbursement_id, statement.step, member_id),
                )?;
            }
        }
    }
    Ok(())
}

/// The node's `sms_code_revealed` record for an approval step carrying a
/// code.
pub(super) fn reveal_for(
    state: &AppState,
    member_id: Option<&str>,
    record: &Record,
) -> Result<Option<Record>, ApiError> {
    if record.kind != KIND_APPROVAL_SIGNED {
        return Ok(None);
    }
    let (Ok(statement), Some(member_id)) = (serde_json::from_slice::<ApprovalSigned>(&record.payload), member_id)
    else {
        // The rules refuse it, with their reason.
        return Ok(None);
    };
    let Some(code) = &statement.sms_code else {
        return Ok(None);
    };
    let retry = state
        .ledger
        .state_object(&format!("request/{}", statement.request_id))?
        .is_some();
    if retry {
        return Ok(None);
    }
    let key = private_key(&statement.disbursement_id, statement.step, member_id);
    let challenge = challenges::check(state, &key, code, "ask for a new challenge")?;
    let reveal = SmsCodeRevealed {
        request_id: challenges::random_request_id("code-revealed"),
        disbursement_id: statement.disbursement_id.clone(),
        step: statement.step,
        member_id: member_id.to_owned(),
        code: code.clone(),
        salt: challenge.salt(state),
        step_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&record.payload)),
    };
    let record = state
        .ledger
        .sign_as_node(KIND_SMS_CODE_REVEALED, serde_json::to_vec(&reveal).expect("json"))?;
    Ok(Some(record))
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
    // Named as the member knows them, not by the state's keys.
    let read = |key: String, what: String| -> Result<Vec<u8>, ApiError> {
        let found = state.ledger.state_object(&key)?;
        found.ok_or(ApiError::NotFound(what))
    };
    let disbursement: DisbursementState = serde_json::from_slice(&read(
        caseledger_verify::funds::disbursement_key(&id),
        format!("no disbursement {id}"),
    )?)
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let account: AccountState = serde_json::from_slice(&read(
        caseledger_verify::funds::account_key(&disbursement.account_id),
        format!("no account {}", disbursement.account_id),
    )?)
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(DisbursementView {
        disbursement,
        account_number_masked: account.account_number_masked,
        account_name: account.account_name,
        bank: account.bank,
    }))
}
