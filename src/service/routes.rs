//! Handlers. Public reads carry no personal data: health, metrics, the
//! signed checkpoint, and proofs made of hashes. Entry contents and case
//! views are for signed member requests (next step of the service issue).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::{ApiError, Problem};
use super::AppState;

/// Every route, with its timeout: `timeout` for the ordinary ones, and
/// [`AUDIT_TIMEOUT`] for the audit, which replays the whole ledger.
pub(super) fn routes(timeout: std::time::Duration) -> OpenApiRouter<AppState> {
    let timed = |t| tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, t);
    let ordinary = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics_text))
        .routes(routes!(checkpoint))
        .routes(routes!(checkpoint_timestamp))
        .routes(routes!(inclusion_proof))
        .routes(routes!(consistency_proof))
        .routes(routes!(openapi_json))
        .routes(routes!(super::writes::write_records))
        .routes(routes!(super::reads::entry))
        .routes(routes!(super::reads::case_view))
        .routes(routes!(super::reads::pending_steps))
        .routes(routes!(super::reads::receipts_due))
        .routes(routes!(super::reads::member_reference))
        .routes(routes!(super::reads::export))
        .routes(routes!(super::applicant::verify_code))
        .routes(routes!(super::verifier::verify_page))
        .routes(routes!(super::verifier::verifier_module))
        .routes(routes!(node_key))
        .routes(routes!(super::reads::dead_letters))
        .routes(routes!(super::approvals::challenge))
        .routes(routes!(super::contacts::member_contact))
        .routes(routes!(super::approvals::disbursement))
        .routes(routes!(super::accounts::challenge))
        .routes(routes!(super::accounts::confirm))
        .routes(routes!(super::phones::challenge))
        .routes(routes!(super::phones::confirm))
        .routes(routes!(super::applicant_codes::issue))
        .routes(routes!(super::reports::aliyun))
        .routes(routes!(super::reports::twilio))
        .routes(routes!(super::reports::notification))
        .routes(routes!(super::reports::resend))
        .layer(timed(timeout));
    let long = OpenApiRouter::new()
        .routes(routes!(super::reads::audit))
        .layer(timed(AUDIT_TIMEOUT));
    ordinary.merge(long)
}

/// The audit of a large ledger takes minutes (BENCHMARKS.md: ~20 s a million entries).
pub const AUDIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1800);

/// The process is up.
#[utoipa::path(get, path = "/healthz", responses((status = OK, body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// The ledger is open and accepts writes.
#[utoipa::path(get, path = "/readyz", responses(
    (status = OK, body = String),
    (status = SERVICE_UNAVAILABLE, body = Problem, content_type = "application/problem+json"),
))]
async fn readyz(State(state): State<AppState>) -> Result<String, ApiError> {
    if let Some((seq, _)) = state.ledger.corruption() {
        return Err(ApiError::Unavailable(format!("integrity check failed at seq {seq}")));
    }
    if let Some(reason) = state.ledger.poisoned() {
        return Err(ApiError::Unavailable(reason));
    }
    if state.ledger.stalled().is_some() || state.ledger.space_left().is_err() {
        return Err(ApiError::Unavailable(super::problem::DISK_FULL.into()));
    }
    // Each witness's lag: the node is ready whatever the witnesses do.
    let checkpoint_size = newest_checkpoint_size(&state);
    let mut text = String::from("ready\n");
    for (name, status) in state.witnessing.snapshot() {
        text.push_str(&format!(
            "witness {name}: cosigned {} of {checkpoint_size} entries{}\n",
            status.cosigned_size,
            status.last_error.map(|e| format!(" ({e})")).unwrap_or_default()
        ));
    }
    Ok(text)
}

/// The size of the newest checkpoint (0 before the first).
fn newest_checkpoint_size(state: &AppState) -> u64 {
    state
        .ledger
        .latest_checkpoint()
        .ok()
        .flatten()
        .map_or(0, |(size, _)| size)
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = OK, body = String, content_type = "text/plain")))]
async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    super::telemetry::sample_process();
    metrics::gauge!("caseledger_ledger_entries").set(state.ledger.size() as f64);
    metrics::gauge!("caseledger_writes_stalled_disk_full").set(f64::from(u8::from(state.ledger.stalled().is_some())));
    let checkpoint_size = newest_checkpoint_size(&state);
    metrics::gauge!("caseledger_checkpoint_size").set(checkpoint_size as f64);
    for (name, status) in state.witnessing.snapshot() {
        metrics::gauge!("caseledger_witness_cosigned_size", "witness" => name.clone()).set(status.cosigned_size as f64);
        metrics::gauge!("caseledger_witness_lag_entries", "witness" => name)
            .set(checkpoint_size.saturating_sub(status.cosigned_size) as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The node's public key, at a stable address: the key that signs every
/// checkpoint and every node record, with its fingerprint (the one in an
/// applicant's SMS) and its C2SP signed-note verifier key.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct NodeKey {
    pub origin: String,
    /// Ed25519 public key, standard base64.
    pub public_key: String,
    /// Hex SHA-256 key id (docs/FORMAT.md §2).
    pub key_id: String,
    /// The key id's first 8 bytes, upper-case hex in groups of four.
    pub fingerprint: String,
    /// `origin+hexid+base64(0x01 || key)`, for signed-note verifiers.
    pub note_verifier_key: String,
    /// Hex hash of the ledger's genesis entry: which ledger this key signs
    /// for (pin it with the key: `verify-bundle --genesis`).
    pub genesis_hash: String,
}

#[utoipa::path(get, path = "/v1/node-key", responses((status = OK, body = NodeKey)))]
async fn node_key(State(state): State<AppState>) -> Result<axum::Json<NodeKey>, ApiError> {
    let key = state.ledger.node_key();
    let origin = state.ledger.origin().to_owned();
    let verifier = caseledger_keys::note::Verifier::new(&origin, key).map_err(|e| ApiError::Internal(e.to_string()))?;
    let genesis_hash = super::verifier::genesis_hash(&state)?;
    Ok(axum::Json(NodeKey {
        genesis_hash,
        public_key: key.to_base64(),
        key_id: key.key_id().to_hex(),
        fingerprint: key.key_id().fingerprint(),
        note_verifier_key: verifier.to_string(),
        origin,
    }))
}

/// The time-stamp authority's RFC 3161 answer (DER `TimeStampResp`) for the
/// checkpoint of `size`: `openssl ts -verify -in FILE -data TEXT -CAfile
/// TSA_CA`, TEXT the checkpoint's body (docs/FORMAT.md §6c).
#[utoipa::path(get, path = "/v1/checkpoints/{size}/timestamp", params(("size" = u64, Path)), responses(
    (status = OK, content_type = "application/timestamp-reply"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
))]
async fn checkpoint_timestamp(
    State(state): State<AppState>,
    axum::extract::Path(size): axum::extract::Path<u64>,
) -> Result<impl IntoResponse, ApiError> {
    let response = state
        .ledger
        .timestamp_at(size)?
        .ok_or_else(|| ApiError::NotFound(format!("no time-stamp of a checkpoint of size {size}")))?;
    Ok(([(header::CONTENT_TYPE, "application/timestamp-reply")], response))
}

/// The latest signed checkpoint (C2SP tlog-checkpoint in a signed note).
#[utoipa::path(get, path = "/v1/checkpoint", responses(
    (status = OK, body = String, content_type = "text/plain"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
))]
async fn checkpoint(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let (size, note) = state
        .ledger
        .latest_checkpoint()?
        .ok_or_else(|| ApiError::NotFound("no checkpoint yet".into()))?;
    // With the cosignatures its witnesses gave so far, and whether they
    // reach the quorum (a checkpoint without it is published all the same).
    let (cosigned, count) = state.witnessing.cosigned(&state.ledger, size, &note);
    let witnessed = format!(
        "{count} of {}; quorum {} {}",
        state.witnessing.witnesses.len(),
        state.witnessing.quorum,
        if count >= state.witnessing.quorum {
            "reached"
        } else {
            "not reached"
        }
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (header::HeaderName::from_static("caseledger-witnessed"), witnessed),
        ],
        cosigned,
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct InclusionQuery {
    /// Sequence number (leaf index) of the entry.
    seq: u64,
    /// Tree size to prove against (a checkpoint's size), greater than `seq`.
    #[param(minimum = 1)]
    size: u64,
}

#[derive(Serialize, ToSchema)]
struct InclusionProof {
    leaf_index: u64,
    tree_size: u64,
    /// RFC 6962 leaf hash of the entry, base64.
    leaf_hash: String,
    /// Proof hashes, base64, leaf side first.
    proof: Vec<String>,
}

fn b64(hashes: &[[u8; 32]]) -> Vec<String> {
    hashes.iter().map(|h| BASE64.encode(h)).collect()
}

/// Inclusion proof of an entry in the tree of a given size (hashes only).
#[utoipa::path(get, path = "/v1/proofs/inclusion", params(InclusionQuery), responses(
    (status = OK, body = InclusionProof),
    (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
))]
async fn inclusion_proof(
    State(state): State<AppState>,
    query: Result<Query<InclusionQuery>, QueryRejection>,
) -> Result<Json<InclusionProof>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    // Built on the runtime thread: ~40 µs of reads from RocksDB's block
    // cache, less than the hand-over to a blocking-pool thread and back.
    let ledger = &state.ledger;
    let proof = {
        // A tree the ledger has not grown to is not there (yet): 404.
        if query.size > ledger.size() {
            return Err(ApiError::NotFound(format!(
                "no tree of size {}: the ledger has {} entries",
                query.size,
                ledger.size()
            )));
        }
        if query.seq >= query.size {
            return Err(ApiError::BadRequest(format!(
                "need seq < size <= {} (got seq {} size {})",
                ledger.size(),
                query.seq,
                query.size
            )));
        }
        let bytes = super::verified_entry(&state, query.seq)?;
        let proof = ledger.inclusion_proof(query.seq, query.size)?;
        InclusionProof {
            leaf_index: query.seq,
            tree_size: query.size,
            leaf_hash: BASE64.encode(caseledger_verify::hash::leaf_hash(&bytes)),
            proof: b64(&proof),
        }
    };
    Ok(Json(proof))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ConsistencyQuery {
    /// The earlier tree size, at most `second`.
    #[param(minimum = 1)]
    first: u64,
    /// The later tree size (at most the ledger's).
    second: u64,
}

#[derive(Serialize, ToSchema)]
struct ConsistencyProof {
    first: u64,
    second: u64,
    proof: Vec<String>,
}

/// Consistency proof between two tree sizes.
#[utoipa::path(get, path = "/v1/proofs/consistency", params(ConsistencyQuery), responses(
    (status = OK, body = ConsistencyProof),
    (status = BAD_REQUEST, body = Problem, content_type = "application/problem+json"),
    (status = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
))]
async fn consistency_proof(
    State(state): State<AppState>,
    query: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let size = state.ledger.size();
    if query.second > size {
        return Err(ApiError::NotFound(format!(
            "no tree of size {}: the ledger has {size} entries",
            query.second
        )));
    }
    // On the runtime thread, as the inclusion proof: O(log n) cached reads.
    let proof = state.ledger.consistency_proof(query.first, query.second)?;
    Ok(Json(ConsistencyProof {
        first: query.first,
        second: query.second,
        proof: b64(&proof),
    }))
}

/// Answers unknown paths with a problem document.
pub(super) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", responses((status = OK, content_type = "application/json")))]
async fn openapi_json() -> impl IntoResponse {
    (StatusCode::OK, Json(super::openapi()))
}
