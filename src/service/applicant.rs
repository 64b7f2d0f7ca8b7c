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
    /// What the bundle proves, as data (the server's own check of it).
    #[schema(value_type = Object)]
    pub report: caseledger_verify::bundle::CaseReport,
    /// The applicant bundle (format `caseledger-applicant-bundle/v2`).
    #[schema(value_type = Object)]
    pub bundle: caseledger_verify::bundle::ApplicantBundle,
}

/// For applicants: the proof bundle of their disbursements, by the
/// verification code they received by SMS (as printed, `K7QM-2X9P-…`, in
/// any case, spaces and hyphens ignored). No account, no key. A mistyped
/// code (its check symbol) is told apart from an unknown one, and a
/// revoked or expired one says so.
#[utoipa::path(get, path = "/v1/verify/{code}", params(("code" = String, Path, pattern = r"^[ -]*(?:[0-9A-TV-Za-tv-z][ -]*){17}$|^[ -]*(?:[0-9A-Fa-f][ -]*){32}$", description = "The code as printed in the SMS: 17 symbols of Crockford's base32, any case, spaces and hyphens ignored (or a first-format code of 32 hex digits). One whose check symbol does not match is 404 `code-mistyped`.")), responses(
    (status = OK, body = VerifyResponse),
    (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
    (status = GONE, body = Problem, content_type = "application/problem+json"),
    (status = TOO_MANY_REQUESTS, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn verify_code(
    State(state): State<AppState>,
    Path(code): Path<String>,
    extensions: axum::http::Extensions,
    headers: axum::http::HeaderMap,
) -> Result<Json<VerifyResponse>, ApiError> {
    use caseledger_ledger::store::CodeLookup;
    use caseledger_verify::funds::applicant_code::{canonical, CodeError};
    let client = state.limits.client(&extensions, &headers);
    state
        .limits
        .check(super::limits::Purpose::Lookup, client, "/v1/verify")?;
    let code = canonical(&code).map_err(|error| match error {
        CodeError::Check => ApiError::BadCode("code-mistyped", error.to_string()),
        CodeError::Length | CodeError::Symbol => ApiError::BadCode("code-malformed", error.to_string()),
    })?;
    let ledger = state.ledger.clone();
    let now_ms = super::challenges::now_ms();
    let found = tokio::task::spawn_blocking(move || ledger.applicant_lookup(&code, now_ms))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let bundle = match found {
        CodeLookup::Bundle(bundle) => *bundle,
        CodeLookup::Unknown => return Err(ApiError::NotFound("unknown verification code".into())),
        CodeLookup::Revoked { seq } => {
            return Err(ApiError::Gone(
                "code-revoked",
                format!("this verification code was revoked (entry {seq}); ask the case's officer for a new one"),
            ))
        }
        CodeLookup::Expired { expires_ms } => {
            return Err(ApiError::Gone(
                "code-expired",
                format!(
                    "this verification code expired on {}; ask the case's officer for a new one",
                    crate::date_cst(expires_ms)
                ),
            ))
        }
    };
    // With witnesses, the bundle is as of the newest checkpoint they vouch
    // for (a quorum of cosignatures), if one is older than the bundle's.
    let bundle = match witnessed_size(&state, bundle.tree_size)? {
        Some(size) if size < bundle.tree_size => {
            let ledger = state.ledger.clone();
            let (case, applicant) = (bundle.case_number.clone(), bundle.applicant_id.clone());
            tokio::task::spawn_blocking(move || ledger.applicant_bundle_as_of(&case, &applicant, size))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))??
        }
        _ => bundle,
    };
    let witnesses: Vec<_> = state.witnessing.witnesses.iter().map(|(key, _)| key.clone()).collect();
    let report = bundle
        .verify_witnessed(&state.ledger.node_key(), &witnesses, 0)
        .map_err(|e| ApiError::Internal(format!("a bundle we built does not verify: {e}")))?;
    Ok(Json(VerifyResponse {
        statements: report.statements(),
        report,
        bundle,
    }))
}

/// The size of the newest checkpoint, at most `newest`, that a quorum of
/// the configured witnesses cosigned (`None` without witnesses, or if none
/// has the quorum yet).
fn witnessed_size(state: &AppState, newest: u64) -> Result<Option<u64>, ApiError> {
    let witnessing = &state.witnessing;
    if witnessing.quorum == 0 {
        return Ok(None);
    }
    let mut checkpoints = state.ledger.checkpoints()?;
    checkpoints.retain(|(size, _)| *size <= newest);
    Ok(checkpoints
        .iter()
        .rev()
        .find(|(size, note)| witnessing.cosigned(&state.ledger, *size, note).1 >= witnessing.quorum)
        .map(|(size, _)| *size))
}
