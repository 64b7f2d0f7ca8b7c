//! Signed member requests: the extractors that authenticate a request with
//! an HTTP Message Signature (see [`super::httpsig`]) by an active member
//! key ([`SignedJson`], [`SignedWrite`], [`SignedBy`]) and their helpers.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use caseledger_keys::KeyId;
use caseledger_ledger::store::Authorization;
use caseledger_verify::registry::KeyInfo;

use super::httpsig::{self, AuthError, RequestParts, SpentNonce, Unverified};
use super::problem::{bad_request_signature, ApiError};
use super::AppState;

pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn unix_now() -> u64 {
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
    if info.awaits_co_signature() {
        return Err(ApiError::Unauthorized(
            "key-awaits-co-signature",
            format!(
                "the key's registration (seq {}) awaits a second person's co-signature",
                info.registered_seq
            ),
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
    pub info: KeyInfo,
    pub body: T,
}

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequest<AppState> for SignedJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &AppState) -> Result<Self, ApiError> {
        let (unverified, info, bytes) = checked_body(request, state).await?;
        unverified.verify(&state.nonces, unix_now()).map_err(auth_error)?;
        let body =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("malformed request: {e}")))?;
        Ok(Self { info, body })
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
