//! `POST /v1/commitments`: the court's commitment of a phone or account
//! number for a member to put in a record (see [`crate::commitments`]).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::SignedJson;
use super::problem::{ApiError, Problem};
use super::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitmentRequest {
    /// `phone` or `account`.
    pub purpose: String,
    pub value: String,
}

#[derive(Serialize, ToSchema)]
pub struct CommitmentResponse {
    pub commitment: String,
    pub masked: String,
}

/// The court's commitment of a phone or account number, to put in a record
/// (the number itself never enters the ledger). Members only.
#[utoipa::path(post, path = "/v1/commitments", request_body = CommitmentRequest, responses(
    (status = OK, body = CommitmentResponse),
    (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json"),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn commitment(
    State(state): State<AppState>,
    SignedJson { body: request, .. }: SignedJson<CommitmentRequest>,
) -> Result<Json<CommitmentResponse>, ApiError> {
    let purpose = match request.purpose.as_str() {
        "phone" => crate::commitments::COMMITMENT_PHONE,
        "account" => crate::commitments::COMMITMENT_ACCOUNT,
        _ => return Err(ApiError::BadRequest("purpose must be phone or account".into())),
    };
    if request.value.is_empty() || request.value.len() > 40 || !request.value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest("the number must be 1 to 40 digits".into()));
    }
    Ok(Json(CommitmentResponse {
        commitment: crate::commitments::commitment(&state.commitment_key, purpose, &request.value),
        masked: crate::commitments::mask(&request.value),
    }))
}
