//! Record writes (`POST /v1/records`): every record in a write must be
//! signed by the key that signed the request, and its record signature is
//! what the ledger keeps, so who did what is provable from the chain alone.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger_keys::{KeyId, Signature};
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::{KIND_ACCOUNT_REGISTERED, KIND_APPROVAL_SIGNED, KIND_CASE_OPENED};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{header, SignedWrite};
use super::problem::{bad_request_signature, ApiError, Problem};
use super::AppState;

/// Most records in one write.
pub const RECORDS_PER_REQUEST_MAX: usize = 1024;

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
    /// The numbers the record masks, in clear and in order: a
    /// `case_opened`'s applicants' phones, an `account_registered`'s
    /// account number. The node commits to them in the ledger right before
    /// the record (`numbers_committed`); they never enter it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub numbers: Vec<String>,
    /// The disclosures of the values the payload conceals (docs/FORMAT.md
    /// §3j): a `case_opened`'s applicants and respondents, a member's id
    /// and masked phone in `key_registered`. Stored beside the entry, never
    /// in it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disclosures: Vec<String>,
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
    let approval = |r: &Record| r.kind == KIND_APPROVAL_SIGNED;
    let member_id = member_info.member.as_ref().map(|m| m.member_id.clone());
    let who = member_id.clone().unwrap_or_else(|| key_id.to_hex());
    let needs_node = records.iter().any(|(r, numbers)| {
        approval(r)
            || !numbers.is_empty()
            || matches!(
                r.kind,
                KIND_CASE_OPENED
                    | KIND_ACCOUNT_REGISTERED
                    | caseledger_verify::record::KIND_KEY_REGISTERED
                    | caseledger_verify::record::KIND_KEY_CO_SIGNED
            )
    });
    let mut contacts = Vec::new();
    let (records, own, signature) = if needs_node {
        // An approval's SMS code and numbers in clear are looked at only for
        // a verified request; the node's records go right before the
        // member's record they are for.
        signature.verify_now(&state)?;
        let (records, own) = with_node_records(&state, member_id.as_deref(), &who, records, &mut contacts)?;
        (records, Some(own), None)
    } else {
        let records = records.into_iter().map(|(r, _)| r).collect();
        (records, None, Some(signature.into_authorization()))
    };
    let (authorization, nonce) = signature.unzip();
    let approvals: Vec<Record> = records.iter().filter(|r| approval(r)).cloned().collect();
    let logged: Vec<super::events::Logged> = records.iter().map(super::events::Logged::of).collect();
    let mut appended = match state.ledger.append_authorized(records, authorization).await {
        Err(caseledger_ledger::Error::BadRequestSignature) => {
            nonce.into_iter().for_each(|n| n.release(&state.nonces));
            return Err(bad_request_signature());
        }
        Err(caseledger_ledger::Error::Rejected { index, source }) => {
            super::events::refused(source.check(), logged.get(index).map(super::events::Logged::kind));
            // Name the member's own record, not its place among the node's.
            let index = own
                .as_ref()
                .map_or(index, |own| own.iter().position(|&i| i >= index).unwrap_or(index));
            return Err(caseledger_ledger::Error::Rejected { index, source }.into());
        }
        result => result?,
    };
    super::events::written(&logged, &appended);
    for (recipient, phone) in &contacts {
        super::sms::put_contact(&state.ledger, recipient, phone)?;
    }
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

/// The records of a write with the node's records each needs right before
/// it: its commitments to numbers given in clear ([`super::numbers`]), the
/// opening of an approval code's commitment ([`super::approvals`]).
/// Returns the records and the positions of the member's own among them;
/// `contacts` gets the applicants' phones to keep once written.
fn with_node_records(
    state: &AppState,
    member_id: Option<&str>,
    who: &str,
    records: Vec<(Record, Vec<String>)>,
    contacts: &mut Vec<(String, String)>,
) -> Result<(Vec<Record>, Vec<usize>), ApiError> {
    let mut out = Vec::with_capacity(records.len() + 1);
    let mut own = Vec::with_capacity(records.len());
    for (index, (record, numbers)) in records.into_iter().enumerate() {
        if let Some(committed) = super::numbers::commit(state, who, index, &record, &numbers)? {
            out.push(committed.record);
            contacts.extend(committed.contacts);
        }
        if let Some(reveal) = super::approvals::reveal_for(state, member_id, &record)? {
            out.push(reveal);
        }
        own.push(out.len());
        out.push(record);
    }
    Ok((out, own))
}

/// The records of a write request, checked for shape: their number, the
/// `Idempotency-Key`, each signature's encoding and payload's JSON; each
/// with the numbers its request gave in clear.
fn write_request_records(
    headers: &HeaderMap,
    request: WriteRequest,
    signer: KeyId,
) -> Result<Vec<(Record, Vec<String>)>, ApiError> {
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
        .map(|(index, mut r)| {
            let numbers = std::mem::take(&mut r.numbers);
            decode_record(index, r, signer).map(|record| (record, numbers))
        })
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
        disclosures: r.disclosures,
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
