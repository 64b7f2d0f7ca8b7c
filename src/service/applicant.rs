//! The applicant's keyless endpoints: the proof bundle by verification code
//! (`GET /v1/verify/{code}`, rate-limited per IP) and the client's address
//! the limits count by.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::problem::{ApiError, Problem};
use super::AppState;

#[derive(Serialize, ToSchema)]
pub struct VerifyResponse {
    /// What the bundle proves, in words (check it yourself offline with
    /// `caseledger verify-bundle FILE --key NODEPUB`).
    pub statements: Vec<String>,
    /// The applicant bundle (format `caseledger-applicant-bundle/v1`).
    #[schema(value_type = Object)]
    pub bundle: caseledger_verify::bundle::ApplicantBundle,
}

/// The client's address (loopback when the router runs without one, as in tests).
pub(super) fn client_ip(extensions: &axum::http::Extensions) -> std::net::IpAddr {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.0.ip())
}

/// For applicants: the proof bundle of their disbursements, by the
/// verification code they received by SMS. No account, no key.
#[utoipa::path(get, path = "/v1/verify/{code}", params(("code" = String, Path)), responses(
    (status = OK, body = VerifyResponse),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
    (status = TOO_MANY_REQUESTS, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn verify_code(
    State(state): State<AppState>,
    Path(code): Path<String>,
    extensions: axum::http::Extensions,
) -> Result<Json<VerifyResponse>, ApiError> {
    let client = client_ip(&extensions);
    if state.verify_limiter.check_key(&client).is_err() {
        metrics::counter!("caseledger_rate_limited_total", "route" => "/v1/verify").increment(1);
        return Err(ApiError::RateLimited);
    }
    if code.len() > 64 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::NotFound("unknown verification code".into()));
    }
    let ledger = state.ledger.clone();
    let bundle = tokio::task::spawn_blocking(move || ledger.applicant_bundle(&code))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??
        .ok_or_else(|| ApiError::NotFound("unknown verification code".into()))?;
    let statements = bundle
        .verify(&state.ledger.node_key())
        .map_err(|e| ApiError::Internal(format!("a bundle we built does not verify: {e}")))?;
    Ok(Json(VerifyResponse { statements, bundle }))
}
