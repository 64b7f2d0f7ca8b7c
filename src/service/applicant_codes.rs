//! Applicants' verification codes (issue 14 item 13): the case's officer
//! asks (`POST /v1/applicant-codes`, signed); the node draws the 80-bit
//! code (docs/FORMAT.md §3b), writes `applicant_code_issued` (node-signed, naming the officer
//! in `requested_by`, carrying only the code's hash) and sends the code to
//! the applicant's phone on file, checked against the ledger's commitment.
//! No member chooses or sees a code; the code itself is stored nowhere.

use axum::extract::State;
use axum::Json;
use caseledger_verify::funds::model::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::SignedJson;
use super::challenges::refuse;
use super::problem::{ApiError, Problem};
use super::AppState;

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicantCodeRequest {
    pub case_number: String,
    pub applicant_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApplicantCodeResponse {
    pub seq: u64,
    /// When the code stops opening the bundle (ms since the epoch).
    pub expires_ms: u64,
    /// The applicant's phone the code went to, masked.
    pub sent_to: String,
}

/// Issues an applicant's verification code at the request of the case's
/// officer: the node draws it, records its hash and sends it to the
/// applicant only.
#[utoipa::path(post, path = "/v1/applicant-codes", request_body = ApplicantCodeRequest, responses(
    (status = CREATED, body = ApplicantCodeResponse),
    (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json"),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
    (status = UNPROCESSABLE_ENTITY, body = Problem, content_type = "application/problem+json"),
    (status = SERVICE_UNAVAILABLE, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn issue(
    State(state): State<AppState>,
    SignedJson {
        info,
        body: mut request,
        ..
    }: SignedJson<ApplicantCodeRequest>,
) -> Result<(axum::http::StatusCode, Json<ApplicantCodeResponse>), ApiError> {
    request.case_number = caseledger_verify::funds::normal_case_number(&request.case_number);
    let case: CaseState = serde_json::from_slice(
        &state
            .ledger
            .state_object(&caseledger_verify::funds::case_key(&request.case_number))?
            .ok_or_else(|| ApiError::NotFound(format!("case {}", request.case_number)))?,
    )
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let officer = info
        .member
        .as_ref()
        .filter(|m| m.role == Role::Officer && m.member_id == case.officer_member_id)
        .ok_or_else(|| refuse("role", "the case's officer asks for an applicant's code"))?;
    if !case.applicants.iter().any(|a| a.applicant_id == request.applicant_id) {
        return Err(ApiError::NotFound(format!("applicant {}", request.applicant_id)));
    }
    let recipient = caseledger_verify::funds::notify::applicant_contact(&request.case_number, &request.applicant_id);
    let phone = super::contacts::phone_for(&state, &recipient, "applicant_code", "this applicant")?;
    let code = caseledger_verify::funds::applicant_code::from_random(rand::random());
    let expires_ms = super::challenges::now_ms().saturating_add(state.applicant_code_ttl_ms);
    // The officer named by their member reference, not their id (§3j).
    let payload = serde_json::json!({
        "request_id": super::challenges::random_request_id("code"),
        "case_number": request.case_number,
        "applicant_id": request.applicant_id,
        "code_hash": applicant_code_hash(&code),
        "requested_by": caseledger_verify::disclosure::Concealed::new(officer.member_ref.clone()),
        "expires_ms": expires_ms,
    });
    let record = state
        .ledger
        .sign_as_node(KIND_APPLICANT_CODE_ISSUED, serde_json::to_vec(&payload).expect("json"))?;
    let seq = state.append_one(record).await?;
    // The link opens the page with the code filled in and checked.
    let params = [
        ("case", request.case_number),
        ("code", caseledger_verify::funds::applicant_code::grouped(&code)),
        // In the fragment: browsers never send it, so no proxy logs it.
        ("link", format!("{}#c={code}", state.templates.verify_link)),
        // The key the page checks against, for the careful to compare.
        ("fingerprint", state.ledger.node_key().key_id().fingerprint()),
    ];
    let message = state
        .templates
        .message(&format!("applicant-code-{seq}"), &phone, "applicant_code", &params);
    super::challenges::provider_send(&state, &message).await?.map_err(|e| {
        ApiError::Unavailable(format!(
            "the code was issued at seq {seq} but the SMS could not be sent ({}): revoke it and issue another",
            e.detail
        ))
    })?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(ApplicantCodeResponse {
            seq,
            expires_ms,
            sent_to: crate::commitments::mask(&phone),
        }),
    ))
}
