//! Errors as `application/problem+json` (RFC 9457) with a stable `type`
//! per failure. Internal details are logged, never sent.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Prefix of every problem type; the rest names the failure.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:caseledger:problem:";

/// A failure answered to a client.
#[derive(Debug)]
pub enum ApiError {
    NotFound(String),
    BadRequest(String),
    /// A case-fund or key rule refused the record; `rule` is its stable name.
    RuleViolated {
        rule: String,
        detail: String,
    },
    PayloadTooLarge,
    /// Too many requests from one client, or for one target; try again
    /// after `retry_after` (sent as `Retry-After`, whole seconds).
    RateLimited {
        retry_after: std::time::Duration,
    },
    /// The request's signature did not authenticate a member; the first
    /// field is the problem name (`unknown-key`, `bad-signature`, `replay`,
    /// `signature-expired`, `signature-missing`, `revoked-key`).
    Unauthorized(&'static str, String),
    /// The ledger refuses writes (integrity check failed on open, or read-only).
    Unavailable(String),
    /// The route's time limit passed before the answer was ready. A write
    /// may still land: retry it with the same request id.
    Timeout,
    /// Something broke inside; the detail goes to the log only.
    Internal(String),
    /// A verification code that cannot be one (`code-malformed`) or was
    /// mistyped (`code-mistyped`: its check symbol does not match).
    BadCode(&'static str, String),
    /// A verification code that no longer opens anything:
    /// `code-revoked` or `code-expired`.
    Gone(&'static str, String),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable machine-readable identifier, e.g. `urn:caseledger:problem:not-found`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The broken rule's name, for `rule-violated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            ApiError::RuleViolated { rule, .. } if rule == "role" || rule == "not_authorized" => {
                (StatusCode::FORBIDDEN, "wrong-role", "The signer's role may not do this")
            }
            ApiError::RuleViolated { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "rule-violated",
                "A rule refused the record",
            ),
            ApiError::Unauthorized(name, _) => (
                StatusCode::UNAUTHORIZED,
                name,
                "The request is not signed by an active member key",
            ),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests"),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The ledger does not accept writes",
            ),
            ApiError::Timeout => (StatusCode::REQUEST_TIMEOUT, "timeout", "The request took too long"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
            // A code of the right form whose check symbol does not match
            // names no record (404); one not of that form is a bad request.
            ApiError::BadCode(name @ "code-mistyped", _) => (StatusCode::NOT_FOUND, name, "Not a verification code"),
            ApiError::BadCode(name, _) => (StatusCode::BAD_REQUEST, name, "Not a verification code"),
            ApiError::Gone(name, _) => (
                StatusCode::GONE,
                name,
                "The verification code no longer opens the record",
            ),
        }
    }
}

impl ApiError {
    /// Refused for now: try again after `wait`.
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        ApiError::RateLimited { retry_after: wait }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, name, title) = self.parts();
        let retry_after = match &self {
            ApiError::RateLimited { retry_after } => {
                Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0))
            }
            _ => None,
        };
        let (detail, rule) = match self {
            ApiError::NotFound(d) | ApiError::BadRequest(d) | ApiError::Unavailable(d) => (Some(d), None),
            ApiError::Unauthorized(_, d) | ApiError::BadCode(_, d) | ApiError::Gone(_, d) => (Some(d), None),
            ApiError::RuleViolated { rule, detail } => (Some(detail), Some(rule)),
            ApiError::RateLimited { .. } => (
                Some(format!("try again in {} s", retry_after.unwrap_or(1).max(1))),
                None,
            ),
            ApiError::PayloadTooLarge | ApiError::Timeout => (None, None),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (None, None)
            }
        };
        let problem = Problem {
            problem_type: format!("{PROBLEM_TYPE_PREFIX}{name}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            rule,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

impl From<caseledger_ledger::Error> for ApiError {
    fn from(error: caseledger_ledger::Error) -> Self {
        use caseledger_ledger::Error as E;
        match error {
            E::NotFound(detail) => ApiError::NotFound(detail),
            E::InvalidArgument(detail) => ApiError::BadRequest(detail),
            E::Rejected { source, .. } => ApiError::RuleViolated {
                rule: source.check().to_owned(),
                detail: source.to_string(),
            },
            E::BadSignature { .. } => ApiError::RuleViolated {
                rule: "signature".into(),
                detail: "a record signature does not verify".into(),
            },
            E::BadRequestSignature => bad_request_signature(),
            E::Corrupt { first_bad_seq, .. } => {
                ApiError::Unavailable(format!("integrity check failed at seq {first_bad_seq}; writes refused"))
            }
            E::ReadOnly => ApiError::Unavailable("the ledger is open read-only".into()),
            E::Integrity { seq, check, .. } => {
                ApiError::Unavailable(format!("integrity failure at seq {seq} ({check}); writes stopped"))
            }
            E::Damaged(_) => ApiError::Unavailable("the ledger's storage is damaged; writes stopped".into()),
            E::Poisoned(reason) => ApiError::Unavailable(format!("writes stopped: {reason}")),
            E::OutOfSpace(_) => ApiError::Unavailable(DISK_FULL.into()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// What a request and `/readyz` say while the disk is full (the path and
/// RocksDB's words are in the log).
pub(super) const DISK_FULL: &str =
    "the disk is full: nothing of this request was stored; writes resume by themselves once space is freed";

pub(super) fn bad_request_signature() -> ApiError {
    ApiError::Unauthorized("bad-signature", "the request signature does not verify".into())
}

/// The timeout layers answer with a bare 408: make it a problem document.
pub(super) async fn timeout_as_problem(response: Response) -> Response {
    if response.status() == StatusCode::REQUEST_TIMEOUT && !response.headers().contains_key(header::CONTENT_TYPE) {
        return ApiError::Timeout.into_response();
    }
    plain_error_as_problem(response).await
}

/// Every error answered as `application/problem+json`: one the framework
/// made (a query, path or body its extractors refused, a method not
/// allowed) is turned into a problem document with its text as detail.
async fn plain_error_as_problem(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 16 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let name = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        StatusCode::NOT_FOUND => "not-found",
        s if s.is_server_error() => "internal",
        _ => "bad-request",
    };
    let problem = Problem {
        problem_type: format!("{PROBLEM_TYPE_PREFIX}{name}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: (!text.is_empty() && !status.is_server_error()).then_some(text),
        rule: None,
    };
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        serde_json::to_vec(&problem).unwrap_or_default(),
    )
        .into_response();
    // Keep what the framework said besides (Allow on a 405).
    for (name, value) in parts.headers.iter().filter(|(n, _)| *n == header::ALLOW) {
        response.headers_mut().insert(name, value.clone());
    }
    response
}
