//! The applicant's confirmation of a bank account by SMS code (issue 3).
//!
//! The case's officer registers an account (an ordinary signed record) and
//! asks for a challenge: the node commits to a 6-digit code in the ledger
//! (`account_challenge`, docs/FORMAT.md §3c) and sends the code to the
//! applicant's phone on file, never to the officer. The applicant, who has
//! no key, enters the code at `POST /v1/accounts/{id}/confirm`; the node
//! then records `account_confirmed` revealing the code and the salt, so an
//! auditor can check offline that the confirmation opens the commitment
//! made for exactly that account (bank, name, number commitment) before it.
//!
//! The salt never leaves the node until the reveal (see
//! [`super::challenges`]): with it, anyone could search the million codes
//! against the public commitment.

use axum::extract::{Path, State};
use axum::Json;
use caseledger_verify::funds::model::*;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::SignedBy;
use super::challenges::{self, refuse, Issued};
use super::problem::{ApiError, Problem};
use super::AppState;

/// How long an applicant's account code lives: the applicant may not be
/// holding the phone when the officer registers the account.
pub const ACCOUNT_CODE_TTL_MS: u64 = 30 * 60 * 1000;

fn private_key(account_id: &str) -> String {
    format!("account_challenge/{account_id}")
}

fn account(state: &AppState, id: &str) -> Result<AccountState, ApiError> {
    let bytes = state
        .ledger
        .state_object(&caseledger_verify::funds::account_key(id))?
        .ok_or_else(|| ApiError::NotFound(format!("account {id}")))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(e.to_string()))
}

fn waiting(account: &AccountState) -> Result<(), ApiError> {
    if account.confirmed || account.status != AccountStatus::Pending {
        return Err(refuse("account", "the account is not waiting for confirmation"));
    }
    Ok(())
}

#[derive(Serialize, ToSchema)]
pub struct AccountChallengeResponse {
    /// Seq of the node's commitment in the ledger.
    pub challenge_seq: u64,
    pub expires_ms: u64,
    /// The applicant's phone the code went to, masked.
    pub sent_to: String,
    /// What the applicant confirms with the code, in words.
    pub statement: String,
}

/// Sends the applicant a code to confirm a registered account (the case's
/// officer asks; the code goes only to the applicant's phone on file).
#[utoipa::path(post, path = "/v1/accounts/{id}/challenge", operation_id = "account_challenge", params(("id" = String, Path)), responses(
    (status = OK, body = AccountChallengeResponse),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
    (status = UNPROCESSABLE_ENTITY, body = Problem, content_type = "application/problem+json"),
    (status = TOO_MANY_REQUESTS, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn challenge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedBy { info, .. }: SignedBy,
) -> Result<Json<AccountChallengeResponse>, ApiError> {
    let account = account(&state, &id)?;
    waiting(&account)?;
    let case: CaseState = serde_json::from_slice(
        &state
            .ledger
            .state_object(&caseledger_verify::funds::case_key(&account.case_number))?
            .ok_or_else(|| ApiError::NotFound(format!("case {}", account.case_number)))?,
    )
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let is_officer = info
        .member
        .as_ref()
        .is_some_and(|m| m.role == Role::Officer && m.member_id == case.officer_member_id);
    if !is_officer {
        return Err(refuse(
            "role",
            "the case's officer asks for the applicant's confirmation",
        ));
    }
    let recipient = caseledger_verify::funds::notify::applicant_contact(&account.case_number, &account.applicant_id);
    let phone = super::contacts::phone_for(&state, &recipient, "account", "this applicant")?;
    state.challenge_allowed(&format!("account/{id}"))?;
    let issued = Issued::new(&state, "account-challenge", ACCOUNT_CODE_TTL_MS);
    let payload = AccountChallenge {
        request_id: issued.request_id.clone(),
        account_id: id.clone(),
        commitment: account_code_commitment(
            &issued.salt,
            &issued.code,
            &account_binding(state.ledger.origin(), &account),
        ),
        expires_ms: issued.expires_ms,
    };
    let record = state
        .ledger
        .sign_as_node(KIND_ACCOUNT_CHALLENGE, serde_json::to_vec(&payload).expect("json"))?;
    let seq = state.append_one(record).await?;
    issued.remember(&state, &private_key(&id), seq)?;
    let params = [
        ("case", account.case_number.clone()),
        ("account", account.account_number_masked.clone()),
        ("code", issued.code.clone()),
    ];
    let message = state
        .templates
        .message(&format!("account-challenge-{seq}"), &phone, "account_code", &params);
    challenges::send(&state, &message, &payload.request_id, "account").await?;
    Ok(Json(AccountChallengeResponse {
        challenge_seq: seq,
        expires_ms: issued.expires_ms,
        sent_to: crate::commitments::mask(&phone),
        statement: statement(&account),
    }))
}

fn statement(account: &AccountState) -> String {
    format!(
        "{}: account {} of {} at {} for applicant {}",
        account.case_number, account.account_number_masked, account.account_name, account.bank, account.applicant_id
    )
}

#[derive(Serialize, ToSchema)]
pub struct AccountConfirmResponse {
    /// Seq of the node's `account_confirmed` entry.
    pub seq: u64,
    pub account_id: String,
    /// `active`, or `pending` while a change still waits for the bureau head.
    pub status: String,
    pub statement: String,
}

/// For applicants (no key): confirms a registered account with the code
/// sent to their phone. Five wrong codes lock the challenge.
#[utoipa::path(post, path = "/v1/accounts/{id}/confirm", operation_id = "account_confirm", params(("id" = String, Path)),
    request_body = super::challenges::CodeEntry,
    responses(
        (status = OK, body = AccountConfirmResponse),
        (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json"),
        (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
        (status = UNPROCESSABLE_ENTITY, body = Problem, content_type = "application/problem+json"),
        (status = TOO_MANY_REQUESTS, body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn confirm(
    State(state): State<AppState>,
    Path(id): Path<String>,
    extensions: axum::http::Extensions,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<AccountConfirmResponse>, ApiError> {
    let code = challenges::entered_code(&state, (&extensions, &headers), &body, "/v1/accounts/confirm")?;
    let account = account(&state, &id)?;
    waiting(&account)?;
    let challenge = challenges::check(&state, &private_key(&id), &code, "ask the court to send a new one")?;
    let payload = AccountConfirmed {
        request_id: challenges::random_request_id("account-confirm"),
        account_id: id.clone(),
        sms: Some(SmsReveal {
            code,
            salt: challenge.salt(&state),
        }),
        confirmation: None,
    };
    let record = state
        .ledger
        .sign_as_node(KIND_ACCOUNT_CONFIRMED, serde_json::to_vec(&payload).expect("json"))?;
    // The ledger spends the commitment: a second use is refused by the rules.
    let seq = state.append_one(record).await?;
    challenges::forget(&state, &private_key(&id))?;
    let account = self::account(&state, &id)?;
    let status = match account.status {
        AccountStatus::Active => "active",
        AccountStatus::Pending => "pending",
        AccountStatus::Superseded => "superseded",
    };
    Ok(Json(AccountConfirmResponse {
        seq,
        account_id: id,
        status: status.into(),
        statement: statement(&account),
    }))
}
