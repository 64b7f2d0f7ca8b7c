//! Signed member reads: entries, case views, pending steps, receipts due,
//! the audit, the export and dead letters.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger_verify::funds::model::Role;
use caseledger_verify::registry::KeyInfo;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{unix_now, SignedBy};
use super::problem::{ApiError, Problem};
use super::AppState;

#[derive(Serialize, ToSchema)]
pub struct EntryResponse {
    pub seq: u64,
    pub timestamp_ms: u64,
    pub kind: u16,
    pub kind_name: String,
    /// Hex key id of the signer.
    pub signer: String,
    pub payload: String,
    /// The entry bytes as stored and hashed, base64.
    pub entry: String,
    /// The disclosures of the values the payload conceals (docs/FORMAT.md
    /// §3j), for the members who may read the entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disclosures: Vec<String>,
}

/// One entry: auditors and administrators read every entry; other members
/// the entries of the cases they work on and their own (see
/// [`super::access`]).
#[utoipa::path(get, path = "/v1/entries/{seq}", params(("seq" = u64, Path)), responses(
    (status = OK, body = EntryResponse),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn entry(
    State(state): State<AppState>,
    Path(seq): Path<u64>,
    SignedBy { info }: SignedBy,
) -> Result<Json<EntryResponse>, ApiError> {
    let bytes = super::verified_entry(&state, seq)?;
    let entry = caseledger_verify::entry::Entry::decode(&bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
    if !super::access::may_read(&state, &info, &entry.record)? {
        return Err(ApiError::RuleViolated {
            rule: "role".into(),
            detail: "members read the entries of the cases they work on; auditors read everything".into(),
        });
    }
    Ok(Json(EntryResponse {
        seq,
        timestamp_ms: entry.timestamp_ms,
        kind: entry.record.kind,
        kind_name: caseledger_verify::record::kind_name(entry.record.kind).to_owned(),
        signer: entry.record.signer.to_hex(),
        payload: String::from_utf8_lossy(&entry.record.payload).into_owned(),
        entry: BASE64.encode(&bytes),
        disclosures: state.ledger.disclosures(seq)?,
    }))
}

/// A case with its receipts (deadline status now) and disbursements (members only).
#[utoipa::path(get, path = "/v1/cases/{case_number}", params(("case_number" = String, Path)), responses(
    (status = OK, content_type = "application/json"),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn case_view(
    State(state): State<AppState>,
    Path(case_number): Path<String>,
    _member: SignedBy,
) -> Result<Json<caseledger_verify::funds::views::CaseView>, ApiError> {
    let now_ms = unix_now() * 1000;
    let case_number = caseledger_verify::funds::normal_case_number(&case_number);
    state
        .ledger
        .case_view(&case_number, now_ms)?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("case {case_number}")))
}

#[derive(Serialize, ToSchema)]
pub struct PendingSteps {
    pub role: String,
    pub disbursements: Vec<String>,
}

/// Disbursements waiting for a step the calling member may sign.
#[utoipa::path(get, path = "/v1/steps/pending", responses(
    (status = OK, body = PendingSteps),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn pending_steps(
    State(state): State<AppState>,
    SignedBy { info, .. }: SignedBy,
) -> Result<Json<PendingSteps>, ApiError> {
    let Some(member) = info.member else {
        return Ok(Json(PendingSteps {
            role: "none".into(),
            disbursements: Vec::new(),
        }));
    };
    let disbursements = match member.role {
        Role::Officer | Role::Auditor | Role::Administrator => Vec::new(),
        role => state.ledger.pending_steps_for(role, &member.member_id)?,
    };
    Ok(Json(PendingSteps {
        role: member.role.as_str().into(),
        disbursements,
    }))
}

/// A court member as staff name them in records (docs/FORMAT.md §3j).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct MemberReference {
    pub member_id: String,
    /// The member reference (hex): `{"_sd": reference}` names the member
    /// in a `case_opened`'s `officer_member_id`.
    pub reference: String,
    pub name: String,
    pub role: String,
    /// A key of theirs may sign now.
    pub active: bool,
    /// The seq of their first registration, whose disclosures an
    /// administrator reuses to register them again (`GET /v1/entries/{seq}`).
    pub registered_seq: u64,
    /// Each of their keys, oldest first.
    pub keys: Vec<MemberKey>,
}

/// One key of a member.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct MemberKey {
    /// Hex key id.
    pub key_id: String,
    /// The seq of its registration.
    pub registered_seq: u64,
    /// Registered and waiting for a second person's co-signature.
    pub awaiting_co_signature: bool,
    /// It may sign now.
    pub active: bool,
}

/// A member's reference by member id, for staff who write records naming
/// them (the filing clerk names the case's officer). Members only; the
/// reference is never shown to applicants with the member id.
#[utoipa::path(get, path = "/v1/members/{member_id}", params(("member_id" = String, Path)), responses(
    (status = OK, body = MemberReference),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn member_reference(
    State(state): State<AppState>,
    Path(member_id): Path<String>,
    _member: SignedBy,
) -> Result<Json<MemberReference>, ApiError> {
    let registry = state.ledger.keys();
    let keys: Vec<&KeyInfo> = registry
        .keys()
        .map(|(_, info)| info)
        .filter(|info| info.member.as_ref().is_some_and(|m| m.member_id == member_id))
        .collect();
    let first = keys
        .iter()
        .min_by_key(|info| info.registered_seq)
        .ok_or_else(|| ApiError::NotFound(format!("member {member_id}")))?;
    let newest = keys.iter().max_by_key(|info| info.registered_seq).unwrap_or(first);
    let member = newest.member.as_ref().expect("filtered on members");
    Ok(Json(MemberReference {
        member_id: member.member_id.clone(),
        reference: member.member_ref.clone(),
        name: newest.name.clone(),
        role: member.role.as_str().into(),
        active: keys.iter().any(|info| info.is_active()),
        registered_seq: first.registered_seq,
        keys: {
            let mut listed: Vec<MemberKey> = keys
                .iter()
                .map(|info| MemberKey {
                    key_id: info.public_key.key().map(|k| k.key_id().to_hex()).unwrap_or_default(),
                    registered_seq: info.registered_seq,
                    awaiting_co_signature: info.awaits_co_signature(),
                    active: info.is_active(),
                })
                .collect();
            listed.sort_by_key(|k| k.registered_seq);
            listed
        },
    }))
}

/// Receipts near their deadline or past it (members only).
#[utoipa::path(get, path = "/v1/receipts/due", responses(
    (status = OK, content_type = "application/json"),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn receipts_due(
    State(state): State<AppState>,
    _member: SignedBy,
) -> Result<Json<Vec<caseledger_verify::funds::views::ReceiptView>>, ApiError> {
    Ok(Json(state.ledger.receipts_due(unix_now() * 1000)?))
}

/// Runs the full audit (as `caseledger verify`) on a snapshot of the live
/// ledger. Auditors and administrators only.
#[utoipa::path(get, path = "/v1/audit", responses(
    (status = OK, content_type = "application/json"),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn audit(
    State(state): State<AppState>,
    SignedBy { info, .. }: SignedBy,
) -> Result<Json<caseledger_verify::audit::AuditReport>, ApiError> {
    require_auditor(&info)?;
    let ledger = state.ledger.clone();
    let report = tokio::task::spawn_blocking(move || ledger.audit_live(2))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(report))
}

fn require_auditor(info: &KeyInfo) -> Result<(), ApiError> {
    let role = info.member.as_ref().map(|m| m.role);
    if info.administrator || role == Some(Role::Auditor) {
        return Ok(());
    }
    Err(ApiError::RuleViolated {
        rule: "role".into(),
        detail: "only auditors and administrators read everything".into(),
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ExportQuery {
    /// First sequence number, at most the ledger's size (default 0: a
    /// whole export, which `caseledger verify-export` audits).
    #[serde(default)]
    #[param(required = false)]
    from: u64,
    /// Most entries to send; without it, everything up to the head as of the request.
    limit: Option<u64>,
}

/// Entries in flight between the RocksDB scan and the socket.
const EXPORT_CHUNK_ENTRIES: usize = 256;

/// Streams entries from a seq, as stored, one JSON object a line
/// (`{"seq":N,"entry":"<base64 of the entry bytes>"}`, each checkpoint as
/// `{"size":N,"checkpoint":"<signed note>"}` right after the entry that
/// completes it; docs/FORMAT.md "Export", `application/x-ndjson`), read in
/// one forward scan and sent as the client reads: memory stays flat
/// whatever the size of the export. `caseledger verify-export` audits a
/// whole one. Auditors and administrators only.
#[utoipa::path(get, path = "/v1/export", params(ExportQuery), responses(
    (status = OK, content_type = "application/x-ndjson"),
    (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json"),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn export(
    State(state): State<AppState>,
    SignedBy { info, .. }: SignedBy,
    query: Result<axum::extract::Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    require_auditor(&info)?;
    let axum::extract::Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    // A whole export ends with a checkpoint covering its last entry:
    // `verify-export` vouches only for entries a checkpoint covers.
    // A ledger opened read-only (an integrity failure) makes none: its
    // export is still served, for the investigation.
    if query.limit.is_none() {
        let ledger = state.ledger.clone();
        let made = tokio::task::spawn_blocking(move || ledger.checkpoint_now())
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        match made {
            Ok(_) | Err(caseledger_ledger::Error::ReadOnly | caseledger_ledger::Error::Corrupt { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if query.limit.is_some_and(|limit| i64::try_from(limit).is_err()) {
        return Err(ApiError::BadRequest(
            "limit is at most 9223372036854775807 (a 64-bit signed integer)".into(),
        ));
    }
    let size = state.ledger.size();
    if query.from > size {
        return Err(ApiError::NotFound(format!(
            "no entry {}: the ledger has {size} entries",
            query.from
        )));
    }
    let end = query
        .limit
        .map_or(size, |limit| size.min(query.from.saturating_add(limit)));
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let ledger = state.ledger.clone();
    let from = query.from;
    tokio::task::spawn_blocking(move || {
        let mut chunk = String::new();
        let mut in_chunk = 0;
        let result = ledger.export(from, end, &mut |line| {
            chunk.push_str(&line.to_json());
            chunk.push('\n');
            in_chunk += 1;
            if in_chunk == EXPORT_CHUNK_ENTRIES {
                in_chunk = 0;
                let bytes = Bytes::from(std::mem::take(&mut chunk));
                // The client went away: stop reading.
                sender
                    .blocking_send(Ok(bytes))
                    .map_err(|_| caseledger_ledger::Error::NotFound("client gone".into()))?;
            }
            Ok(())
        });
        match result {
            Ok(()) | Err(caseledger_ledger::Error::NotFound(_)) => {
                if !chunk.is_empty() {
                    let _ = sender.blocking_send(Ok(Bytes::from(chunk)));
                }
            }
            Err(error) => {
                tracing::error!(%error, "export stopped");
                // Cut the response short: the client sees an incomplete body.
                let _ = sender.blocking_send(Err(std::io::Error::other("export stopped")));
            }
        }
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/x-ndjson")
        .body(axum::body::Body::from_stream(stream))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetter {
    pub id: String,
    pub seq: u64,
    pub case_number: String,
    pub event: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// Notifications that could not be delivered after every retry (auditors
/// and administrators), so that someone calls the applicant instead.
#[utoipa::path(get, path = "/v1/notifications/dead", responses(
    (status = OK, body = [DeadLetter]),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn dead_letters(
    State(state): State<AppState>,
    SignedBy { info, .. }: SignedBy,
) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    require_auditor(&info)?;
    let ledger = state.ledger.clone();
    let dead = tokio::task::spawn_blocking(move || super::sms::dead_letters(&ledger, 1000))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(
        dead.into_iter()
            .map(|(n, d)| DeadLetter {
                id: n.id,
                seq: n.seq,
                case_number: n.case_number,
                event: serde_json::to_value(n.event)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                attempts: d.attempts,
                last_error: d.last_error,
            })
            .collect(),
    ))
}
