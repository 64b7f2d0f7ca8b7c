//! The applicant's page (`GET /v1/verify`) and the verifier it runs
//! (`GET /v1/verifier.wasm`): `caseledger-verify` compiled to WebAssembly
//! by `build.rs` and embedded in the binary, so the page needs nothing
//! from anywhere else. The page pins the node's public key, the module's
//! SHA-256 (it refuses another module) and the court's hotline.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use sha2::{Digest, Sha256};

use super::problem::ApiError;
use super::AppState;

/// The verifier module, built for `wasm32-unknown-unknown` by `build.rs`.
pub static VERIFIER_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/verify.wasm"));

/// Hex SHA-256 of [`VERIFIER_WASM`]: the page checks the module it loads
/// against it, and shows it for whoever rebuilds the module to compare.
pub fn verifier_sha256() -> String {
    hex::encode(Sha256::digest(VERIFIER_WASM))
}

/// For applicants: a page where they type the code from their SMS (or open
/// its link) and read, in Chinese or English, what their own browser
/// checked about their case's money. Self-contained: no scripts, styles,
/// fonts or modules from elsewhere.
/// Hex hash of the ledger's genesis entry (its leaf hash).
pub(super) fn genesis_hash(state: &AppState) -> Result<String, ApiError> {
    let bytes = state.ledger.entry_bytes(0).map_err(ApiError::from)?;
    Ok(hex::encode(caseledger_verify::hash::leaf_hash(&bytes)))
}

#[utoipa::path(get, path = "/v1/verify", responses((status = OK, body = String, content_type = "text/html")))]
pub(super) async fn verify_page(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let key = state.ledger.node_key();
    let genesis = genesis_hash(&state)?;
    let page = include_str!("verify.html")
        .replace("{{GENESIS_HASH}}", &genesis)
        .replace("{{NODE_PUBLIC_KEY}}", &key.to_base64())
        .replace("{{NODE_FINGERPRINT}}", &key.key_id().fingerprint())
        .replace("{{VERIFIER_SHA256}}", &verifier_sha256())
        .replace("{{HOTLINE}}", &state.applicant_hotline)
        .replace("{{WITNESSES}}", &witnesses_attribute(&state))
        .replace("{{QUORUM}}", &state.witnessing.quorum.to_string());
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline' 'wasm-unsafe-eval'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        page,
    ))
}

/// The witnesses the page pins, as an HTML attribute value: a JSON array of
/// `{key, label}` (the witness's verifier key, and who it is in words).
fn witnesses_attribute(state: &AppState) -> String {
    let listed: Vec<serde_json::Value> = state
        .witnessing
        .witnesses
        .iter()
        .zip(&state.witnessing.labels)
        .map(|((key, _), label)| serde_json::json!({"key": key.to_string(), "label": label}))
        .collect();
    serde_json::Value::Array(listed)
        .to_string()
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The page's verifier (docs/FORMAT.md §7a, "In the browser").
#[utoipa::path(get, path = "/v1/verifier.wasm", responses((status = OK, body = Vec<u8>, content_type = "application/wasm")))]
pub(super) async fn verifier_module() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/wasm"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        VERIFIER_WASM,
    )
}
