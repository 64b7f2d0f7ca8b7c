//! Delivery reports from the SMS providers, recorded against the message
//! they are about (notifications, approval and account codes), and a
//! member's view of one notification's delivery.
//!
//! * Aliyun pushes SmsReport as a JSON array to a URL we register; the push
//!   carries no signature, so the URL holds a secret token
//!   (`sms_aliyun_report_token`) compared in constant time. Each report names
//!   our notification id as `out_id`.
//! * Twilio posts a form to the `StatusCallback` we sent (with `?id=` our
//!   id), signed with `X-Twilio-Signature` over that URL and the sorted form
//!   fields; an unsigned or wrongly signed report is refused and changes
//!   nothing.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::SignedBy;
use super::challenges::now_ms;
use super::problem::{ApiError, Problem};
use super::providers::{twilio_signature_ok, AliyunReport};
use super::sms::{self, Delivery, DeliveryReport};
use super::AppState;

/// What the report endpoints accept (from the config).
#[derive(Clone, Debug, Default)]
pub struct ReportSettings {
    pub aliyun_token: Option<String>,
    pub twilio_auth_token: Option<String>,
    pub twilio_callback_url: Option<String>,
}

fn equal_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Ids are ours: short, printable.
fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Serialize, ToSchema)]
pub struct AliyunAck {
    pub code: u32,
    pub msg: String,
}

/// Aliyun SmsReport push (a JSON array of reports). Answers
/// `{"code": 0, "msg": "成功"}` as Aliyun expects.
#[utoipa::path(post, path = "/v1/sms/reports/aliyun/{token}", params(("token" = String, Path)), responses(
    (status = OK, body = AliyunAck),
    (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn aliyun(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: Bytes,
) -> Result<Json<AliyunAck>, ApiError> {
    let known = state.reports.aliyun_token.as_deref().unwrap_or_default();
    if known.is_empty() || !equal_time(known.as_bytes(), token.as_bytes()) {
        return Err(ApiError::NotFound("no such report endpoint".into()));
    }
    let reports: Vec<AliyunReport> =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("not an SmsReport array: {e}")))?;
    for report in reports {
        let Some(id) = report.out_id.clone().filter(|id| plausible_id(id)) else {
            continue;
        };
        let status = if report.success { "delivered" } else { "failed" };
        sms::record_report(
            &state.ledger,
            &id,
            DeliveryReport {
                provider: "aliyun".into(),
                status: status.into(),
                error: report.err_code.filter(|c| c != "DELIVERED"),
                provider_id: report.biz_id,
                received_ms: now_ms(),
            },
        )?;
    }
    Ok(Json(AliyunAck {
        code: 0,
        msg: "成功".into(),
    }))
}

/// Twilio status callback: form fields signed with `X-Twilio-Signature`.
#[utoipa::path(post, path = "/v1/sms/reports/twilio", responses(
    (status = NO_CONTENT),
    (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json"),
    (status = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn twilio(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let (Some(token), Some(callback)) = (
        state.reports.twilio_auth_token.as_deref(),
        state.reports.twilio_callback_url.as_deref(),
    ) else {
        return Err(ApiError::NotFound("no such report endpoint".into()));
    };
    let params: BTreeMap<String, String> = url_form(&body)?;
    // The URL Twilio signed: our public callback URL with the query it called.
    let base = callback.split('?').next().unwrap_or(callback);
    let url = match uri.query() {
        Some(query) => format!("{base}?{query}"),
        None => base.to_owned(),
    };
    let given = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !twilio_signature_ok(token, &url, &params, given) {
        metrics::counter!("caseledger_sms_reports_refused_total", "provider" => "twilio").increment(1);
        return Err(ApiError::RuleViolated {
            rule: "not_authorized".into(),
            detail: "the X-Twilio-Signature does not match".into(),
        });
    }
    let query: BTreeMap<String, String> = url_form(uri.query().unwrap_or_default().as_bytes())?;
    let id = query
        .get("id")
        .filter(|id| plausible_id(id))
        .ok_or_else(|| ApiError::BadRequest("the callback names no message id".into()))?;
    let status = params
        .get("MessageStatus")
        .or_else(|| params.get("SmsStatus"))
        .ok_or_else(|| ApiError::BadRequest("no MessageStatus".into()))?;
    sms::record_report(
        &state.ledger,
        id,
        DeliveryReport {
            provider: "twilio".into(),
            status: status.clone(),
            error: params.get("ErrorCode").cloned(),
            provider_id: params.get("MessageSid").cloned(),
            received_ms: now_ms(),
        },
    )?;
    Ok(StatusCode::NO_CONTENT)
}

/// Decodes `application/x-www-form-urlencoded` (`+` is a space).
fn url_form(bytes: &[u8]) -> Result<BTreeMap<String, String>, ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::BadRequest("malformed form body".into()));
    }
    Ok(form_urlencoded::parse(bytes).into_owned().collect())
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    /// The outbox notification's delivery state, if it is one.
    #[schema(value_type = Object)]
    pub delivery: Option<Delivery>,
    /// The provider's last delivery report, if any came.
    #[schema(value_type = Object)]
    pub report: Option<DeliveryReport>,
}

/// One message's delivery state and report (members only).
#[utoipa::path(get, path = "/v1/notifications/{id}", params(("id" = String, Path)), responses(
    (status = OK, body = DeliveryView),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn notification(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _member: SignedBy,
) -> Result<Json<DeliveryView>, ApiError> {
    if !plausible_id(&id) {
        return Err(ApiError::NotFound(format!("message {id}")));
    }
    let delivery = sms::delivery(&state.ledger, &id).map_err(|e| ApiError::Internal(e.to_string()))?;
    let report = sms::report(&state.ledger, &id).map_err(|e| ApiError::Internal(e.to_string()))?;
    if delivery.is_none() && report.is_none() {
        return Err(ApiError::NotFound(format!("message {id}")));
    }
    Ok(Json(DeliveryView { id, delivery, report }))
}

/// Sends a dead letter again (administrators): its delivery starts over,
/// attempts and retry period from now. 404 if the message is no dead
/// letter.
#[utoipa::path(post, path = "/v1/notifications/{id}/resend", params(("id" = String, Path)), responses(
    (status = ACCEPTED, body = DeliveryView),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn resend(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedBy { info }: SignedBy,
) -> Result<(axum::http::StatusCode, Json<DeliveryView>), ApiError> {
    if !info.administrator {
        return Err(ApiError::RuleViolated {
            rule: "role".into(),
            detail: "administrators send dead letters again".into(),
        });
    }
    if !plausible_id(&id) {
        return Err(ApiError::NotFound(format!("dead letter {id}")));
    }
    let now_ms = super::challenges::now_ms();
    let resent = sms::resend(&state.ledger, &id, now_ms).map_err(|e| ApiError::Internal(e.to_string()))?;
    if !resent {
        return Err(ApiError::NotFound(format!("dead letter {id}")));
    }
    tracing::info!(%id, by = %info.name, "dead letter sent again");
    metrics::counter!("caseledger_sms_resent_total").increment(1);
    let delivery = sms::delivery(&state.ledger, &id).map_err(|e| ApiError::Internal(e.to_string()))?;
    let report = sms::report(&state.ledger, &id).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(DeliveryView { id, delivery, report }),
    ))
}
