//! Signed member requests: record writes and member reads. Each request is
//! authenticated with an HTTP Message Signature (see [`super::httpsig`]) by
//! an active member key; every record in a write must be signed by that
//! same key, and its record signature is what the ledger keeps, so who did
//! what is provable from the chain alone.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Json;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger_keys::{KeyId, Signature};
use caseledger_ledger::store::Authorization;
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::Role;
use caseledger_verify::registry::KeyInfo;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::httpsig::{self, AuthError, RequestParts, SpentNonce, Unverified};
use super::problem::{ApiError, Problem};
use super::AppState;

/// Most records in one write.
pub const RECORDS_PER_REQUEST_MAX: usize = 1024;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn auth_error(error: AuthError) -> ApiError {
    match error {
        AuthError::Malformed(d) => ApiError::Unauthorized("signature-missing", d),
        AuthError::UnknownKey(k) => ApiError::Unauthorized("unknown-key", format!("key {k} is not registered")),
        AuthError::BadSignature => bad_request_signature(),
        AuthError::DigestMismatch => {
            ApiError::Unauthorized("bad-signature", "Content-Digest does not match the body".into())
        }
        AuthError::Expired => ApiError::Unauthorized(
            "signature-expired",
            "the signature's created time is outside the window, or before the service started: sign again".into(),
        ),
        AuthError::Replay => ApiError::Unauthorized("replay", "this nonce was used already".into()),
    }
}

pub(super) fn bad_request_signature() -> ApiError {
    ApiError::Unauthorized("bad-signature", "the request signature does not verify".into())
}

/// Checks a request's signature headers and that they name an active
/// member key; the signature itself is not verified yet.
fn check_request(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Unverified, KeyInfo), ApiError> {
    let keys = state.ledger.keys();
    let parts = RequestParts {
        method: method.as_str(),
        authority: &state.authority,
        path: uri.path(),
        query: uri.query(),
        content_digest: header(headers, "content-digest"),
    };
    let unverified = httpsig::check(
        &parts,
        body,
        header(headers, "signature-input"),
        header(headers, "signature"),
        unix_now(),
        |id| keys.public_key(id),
    )
    .map_err(auth_error)?;
    let info = keys
        .info(&unverified.key_id)
        .cloned()
        .ok_or_else(|| ApiError::Unauthorized("unknown-key", "the node key does not make requests".into()))?;
    if let Some(seq) = info.revoked_seq {
        return Err(ApiError::Unauthorized(
            "revoked-key",
            format!("the key was revoked at seq {seq}"),
        ));
    }
    Ok((unverified, info))
}

/// Authenticates a request; returns the member's key id and key info.
pub(super) fn authenticate(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(KeyId, KeyInfo), ApiError> {
    let (unverified, info) = check_request(state, method, uri, headers, body)?;
    let verified = unverified.verify(&state.nonces, unix_now()).map_err(auth_error)?;
    Ok((verified.key_id, info))
}

/// Reads a request's body and checks its signature headers
/// ([`check_request`]); the signature itself is not verified yet.
async fn checked_body(
    request: axum::extract::Request,
    state: &AppState,
) -> Result<(Unverified, KeyInfo, Bytes), ApiError> {
    let (parts, body) = request.into_parts();
    let bytes = <Bytes as axum::extract::FromRequest<AppState>>::from_request(
        axum::extract::Request::from_parts(parts.clone(), body),
        state,
    )
    .await
    .map_err(|e: BytesRejection| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        _ => ApiError::BadRequest(e.body_text()),
    })?;
    let (unverified, info) = check_request(state, &parts.method, &parts.uri, &parts.headers, &bytes)?;
    Ok((unverified, info, bytes))
}

/// A request with a JSON body of type `T`, authenticated (RFC 9421 over
/// method, path and the body's Content-Digest) as an active member key.
/// A body over the limit is `payload-too-large`; a body that is not a `T`
/// is `bad-request`, after the signature was checked.
pub(super) struct SignedJson<T> {
    pub key_id: KeyId,
    pub info: KeyInfo,
    pub body: T,
}

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequest<AppState> for SignedJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &AppState) -> Result<Self, ApiError> {
        let (unverified, info, bytes) = checked_body(request, state).await?;
        let key_id = unverified.verify(&state.nonces, unix_now()).map_err(auth_error)?.key_id;
        let body =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("malformed request: {e}")))?;
        Ok(Self { key_id, info, body })
    }
}

/// A record write: like [`SignedJson`], but the request signature is left
/// to the ledger, which verifies it with the signatures of the group
/// that writes the records (one batch for many requests, instead of one
/// verification each before the append). Its nonce is spent at once. Any
/// refusal before the append verifies the signature first, so that an
/// unauthenticated request learns nothing but `unauthorized`.
pub(super) struct SignedWrite<T> {
    pub key_id: KeyId,
    pub info: KeyInfo,
    pub body: T,
    pub signature: PendingSignature,
}

/// A request signature still to be verified, and the nonce it spent.
pub(super) struct PendingSignature {
    unverified: Unverified,
    nonce: SpentNonce,
}

impl PendingSignature {
    /// Verifies the signature now; if it fails, the nonce is released.
    pub fn verify_now(self, state: &AppState) -> Result<(), ApiError> {
        if self.unverified.holds() {
            return Ok(());
        }
        self.nonce.release(&state.nonces);
        Err(bad_request_signature())
    }

    /// The signature for the ledger to verify, and the nonce to release
    /// if it fails.
    pub fn into_authorization(self) -> (Authorization, SpentNonce) {
        let authorization = Authorization {
            signer: self.unverified.key_id,
            message: self.unverified.base.into_bytes(),
            signature: self.unverified.signature,
        };
        (authorization, self.nonce)
    }
}

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequest<AppState> for SignedWrite<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &AppState) -> Result<Self, ApiError> {
        let (unverified, info, bytes) = checked_body(request, state).await?;
        let (unverified, nonce) = unverified.defer(&state.nonces, unix_now()).map_err(auth_error)?;
        let signature = PendingSignature { unverified, nonce };
        let key_id = signature.unverified.key_id;
        match serde_json::from_slice(&bytes) {
            Ok(body) => Ok(Self {
                key_id,
                info,
                body,
                signature,
            }),
            Err(e) => {
                signature.verify_now(state)?;
                Err(ApiError::BadRequest(format!("malformed request: {e}")))
            }
        }
    }
}

/// A bodyless request (a read) authenticated as an active member key.
pub(super) struct SignedBy {
    pub info: KeyInfo,
}

impl axum::extract::FromRequestParts<AppState> for SignedBy {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, ApiError> {
        let (_, info) = authenticate(state, &parts.method, &parts.uri, &parts.headers, &[])?;
        Ok(Self { info })
    }
}

/// One signed record as sent by a member.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordRequest {
    /// Record kind (docs/FORMAT.md §3, §3a), e.g. 272 for case_opened.
    pub kind: u16,
    /// The payload exactly as signed: a JSON document as text.
    pub payload: String,
    /// Ed25519 record signature (docs/FORMAT.md §3), base64.
    pub signature: String,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteRequest {
    pub records: Vec<RecordRequest>,
}

#[derive(Serialize, ToSchema)]
pub struct WriteResponse {
    /// Per record: its seq, or the seq of the earlier entry it repeats.
    pub seqs: Vec<u64>,
    /// New entries written (0 when everything was a retry).
    pub written: u64,
}

/// Writes signed records (all or none), each checked by every rule.
#[utoipa::path(post, path = "/v1/records", request_body = WriteRequest, responses(
    (status = CREATED, body = WriteResponse),
    (status = OK, body = WriteResponse, description = "an idempotent retry: nothing new written"),
    (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json"),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
    (status = PAYLOAD_TOO_LARGE, body = Problem, content_type = "application/problem+json"),
    (status = UNPROCESSABLE_ENTITY, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn write_records(
    State(state): State<AppState>,
    headers: HeaderMap,
    SignedWrite {
        key_id,
        info: member_info,
        body: request,
        signature,
    }: SignedWrite<WriteRequest>,
) -> Result<(StatusCode, Json<WriteResponse>), ApiError> {
    let records = match write_request_records(&headers, request, key_id) {
        Ok(records) => records,
        Err(refused) => {
            signature.verify_now(&state)?;
            return Err(refused);
        }
    };
    let approval = |r: &Record| r.kind == caseledger_verify::funds::model::KIND_APPROVAL_SIGNED;
    let member_id = member_info.member.as_ref().map(|m| m.member_id.clone());
    let (records, own, signature) = if records.iter().any(approval) {
        // An approval's SMS code is looked at only for a verified request;
        // the node's opening of its commitment goes right before the step.
        signature.verify_now(&state)?;
        let (records, own) = super::approvals::with_code_reveals(&state, member_id.as_deref(), records)?;
        (records, Some(own), None)
    } else {
        (records, None, Some(signature.into_authorization()))
    };
    let (authorization, nonce) = signature.unzip();
    let approvals: Vec<Record> = records.iter().filter(|r| approval(r)).cloned().collect();
    let mut appended = match state.ledger.append_authorized(records, authorization).await {
        Err(caseledger_ledger::Error::BadRequestSignature) => {
            nonce.into_iter().for_each(|n| n.release(&state.nonces));
            return Err(bad_request_signature());
        }
        Err(caseledger_ledger::Error::Rejected { index, source }) => {
            // Name the member's own record, not its place among the node's.
            let index = own
                .as_ref()
                .map_or(index, |own| own.iter().position(|&i| i >= index).unwrap_or(index));
            return Err(caseledger_ledger::Error::Rejected { index, source }.into());
        }
        result => result?,
    };
    if let Some(own) = own {
        super::approvals::forget_spent(&state, member_id.as_deref(), &approvals)?;
        appended.seqs = own.iter().map(|&i| appended.seqs[i]).collect();
    }
    metrics::counter!("caseledger_appended_entries_total").increment(appended.count);
    let status = if appended.count == 0 {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(WriteResponse {
            seqs: appended.seqs,
            written: appended.count,
        }),
    ))
}

/// The records of a write request, checked for shape: their number, the
/// `Idempotency-Key`, each signature's encoding and payload's JSON.
fn write_request_records(headers: &HeaderMap, request: WriteRequest, signer: KeyId) -> Result<Vec<Record>, ApiError> {
    if request.records.is_empty() || request.records.len() > RECORDS_PER_REQUEST_MAX {
        return Err(ApiError::BadRequest(format!(
            "send 1 to {RECORDS_PER_REQUEST_MAX} records"
        )));
    }
    check_idempotency_key(headers, &request)?;
    request
        .records
        .into_iter()
        .enumerate()
        .map(|(index, r)| decode_record(index, r, signer))
        .collect()
}

/// A record as sent, signed by the requester's key `signer`.
pub(super) fn decode_record(index: usize, r: RecordRequest, signer: KeyId) -> Result<Record, ApiError> {
    let signature: [u8; 64] = BASE64
        .decode(&r.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::BadRequest(format!("record {index}: signature must be 64 bytes of base64")))?;
    serde_json::from_str::<serde_json::Value>(&r.payload)
        .map_err(|e| ApiError::BadRequest(format!("record {index}: payload is not JSON: {e}")))?;
    Ok(Record {
        kind: r.kind,
        signer,
        payload: r.payload.into_bytes(),
        signature: Signature::from_bytes(&signature),
    })
}

/// `Idempotency-Key`, when sent, must be the `request_id` of the first
/// record: the ledger keeps request ids, so a retry with the same key is
/// answered with the original seqs and writes nothing, even after a restart.
fn check_idempotency_key(headers: &HeaderMap, request: &WriteRequest) -> Result<(), ApiError> {
    let Some(key) = header(headers, "idempotency-key") else {
        return Ok(());
    };
    #[derive(Deserialize)]
    struct WithRequestId {
        request_id: Option<String>,
    }
    let first = request
        .records
        .first()
        .and_then(|r| serde_json::from_str::<WithRequestId>(&r.payload).ok())
        .and_then(|p| p.request_id);
    if first.as_deref() != Some(key) {
        return Err(ApiError::BadRequest(
            "Idempotency-Key must equal the request_id of the first record".into(),
        ));
    }
    Ok(())
}

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
    let bytes = state.ledger.entry_bytes(seq)?;
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
pub(super) struct ExportQuery {
    /// First sequence number (default 0: a whole export, which
    /// `caseledger verify-export` audits).
    #[serde(default)]
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
    let size = state.ledger.size();
    if query.from > size {
        return Err(ApiError::BadRequest(format!("from must be at most the size {size}")));
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
        "phone" => crate::court::COMMITMENT_PHONE,
        "account" => crate::court::COMMITMENT_ACCOUNT,
        _ => return Err(ApiError::BadRequest("purpose must be phone or account".into())),
    };
    if request.value.is_empty() || request.value.len() > 40 || !request.value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest("the number must be 1 to 40 digits".into()));
    }
    Ok(Json(CommitmentResponse {
        commitment: crate::court::commitment(&state.commitment_key, purpose, &request.value),
        masked: crate::court::mask(&request.value),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    pub case_number: String,
    pub applicant_id: String,
    /// The applicant's phone number; must match the commitment on file.
    pub phone: String,
}

/// Records an applicant's phone number for notifications, kept beside the
/// ledger (never in it), after checking it against the commitment recorded
/// when the case was opened. The case's officer only.
#[utoipa::path(post, path = "/v1/contacts", request_body = ContactRequest, responses(
    (status = NO_CONTENT),
    (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json"),
    (status = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
))]
pub(super) async fn contact(
    State(state): State<AppState>,
    SignedJson {
        info, body: request, ..
    }: SignedJson<ContactRequest>,
) -> Result<StatusCode, ApiError> {
    let view = state
        .ledger
        .case_view(&request.case_number, 0)?
        .ok_or_else(|| ApiError::NotFound(format!("case {}", request.case_number)))?;
    let is_officer = info
        .member
        .as_ref()
        .is_some_and(|m| m.member_id == view.case.officer_member_id);
    if !is_officer {
        return Err(ApiError::RuleViolated {
            rule: "role".into(),
            detail: "the case's officer records contacts".into(),
        });
    }
    let applicant = view
        .case
        .applicants
        .iter()
        .find(|a| a.applicant_id == request.applicant_id)
        .ok_or_else(|| ApiError::NotFound(format!("applicant {}", request.applicant_id)))?;
    let recipient = caseledger_verify::funds::notify::applicant_contact(&request.case_number, &request.applicant_id);
    put_checked_phone(
        &state,
        &recipient,
        &request.phone,
        &applicant.phone_commitment,
        "the applicant",
    )
}

/// Keeps `phone` for `recipient` (beside the ledger) if it opens the
/// commitment the ledger recorded for `whose` phone.
pub(super) fn put_checked_phone(
    state: &AppState,
    recipient: &str,
    phone: &str,
    commitment: &str,
    whose: &str,
) -> Result<StatusCode, ApiError> {
    if crate::court::commitment(&state.commitment_key, crate::court::COMMITMENT_PHONE, phone) != commitment {
        return Err(ApiError::BadRequest(format!(
            "the phone number does not match the one recorded for {whose}"
        )));
    }
    super::sms::put_contact(&state.ledger, recipient, phone)?;
    Ok(StatusCode::NO_CONTENT)
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
