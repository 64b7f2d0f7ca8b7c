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

/// The client's address (loopback when the router runs without one, as in tests).
pub(super) fn client_ip(extensions: &axum::http::Extensions) -> std::net::IpAddr {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.0.ip())
}

/// Whom a guess is counted against: an IPv4 address, or an IPv6 /64 (one
/// subscriber holds a whole /64; counting single addresses would give it
/// 2^64 quotas).
pub(super) fn guesser(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            std::net::IpAddr::from(octets)
        }
        v4 => v4,
    }
}

/// Addresses the verify limiter remembers before it forgets those whose
/// quota has refilled (each is a few dozen bytes; without this the map
/// would grow with every address ever seen).
const LIMITER_KEYS_MAX: usize = 10_000;

/// For applicants: the proof bundle of their disbursements, by the
/// verification code they received by SMS (as printed, `K7QM-2X9P-…`, in
/// any case, spaces and hyphens ignored). No account, no key. A mistyped
/// code (its check symbol) is told apart from an unknown one, and a
/// revoked or expired one says so.
#[utoipa::path(get, path = "/v1/verify/{code}", params(("code" = String, Path)), responses(
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
) -> Result<Json<VerifyResponse>, ApiError> {
    use caseledger_ledger::store::CodeLookup;
    use caseledger_verify::funds::applicant_code::{canonical, CodeError};
    let client = guesser(client_ip(&extensions));
    if state.verify_limiter.len() > LIMITER_KEYS_MAX {
        state.verify_limiter.retain_recent();
    }
    if state.verify_limiter.check_key(&client).is_err() {
        metrics::counter!("caseledger_rate_limited_total", "route" => "/v1/verify").increment(1);
        return Err(ApiError::RateLimited);
    }
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

#[cfg(test)]
mod tests {
    use super::guesser;
    use std::net::IpAddr;

    #[test]
    fn guesses_count_against_an_ipv6_64_or_an_ipv4_address() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(guesser(a), guesser(b));
        assert_ne!(guesser(a), guesser(other));
        let v4: IpAddr = "192.0.2.7".parse().expect("ip");
        assert_eq!(guesser(v4), v4);
    }
}
