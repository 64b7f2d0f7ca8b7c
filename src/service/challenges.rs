//! Codes sent by SMS, one type for every purpose (approval steps, account
//! confirmations): issue, keep, check, send and reveal.
//!
//! A code is 6 digits from the OS CSPRNG. The node commits to it in the
//! ledger (`sms_challenge`, `account_challenge`: SHA-256 over a salt, the
//! code and what the code is bound to, docs/FORMAT.md §3c) before sending
//! it, and opens the commitment only in the entry that uses the code, in
//! the same request: `sms_code_revealed` right before an approver's step,
//! `account_confirmed` for an applicant. Until then nobody but the node can
//! open it: the salt is never sent, logged or stored, but derived when
//! needed from the court's commitment key and the challenge's random
//! request id. With the salt, anyone holding the public commitment could
//! search the million codes in a second, and the key alone would sign a
//! "confirmed" step without the phone.
//!
//! Beside the ledger the node keeps, per challenge, an HMAC of the code
//! (never the code), the wrong tries, the expiry and the request id. Five
//! wrong codes lock a challenge, under any concurrency: tries are counted
//! under one lock.

use hmac::Mac as _;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use super::problem::ApiError;
use super::AppState;

/// Wrong codes before a challenge is locked.
pub const CODE_ATTEMPTS_MAX: u32 = 5;

/// A new code, before it is committed to and sent.
pub(super) struct Issued {
    /// Random, 128 bits: says nothing of the salt or the code.
    pub request_id: String,
    /// Only for the SMS.
    pub code: String,
    /// The salt of the commitment: for the commitment and, later, the
    /// reveal; never stored.
    pub salt: String,
    pub expires_ms: u64,
}

impl Issued {
    /// A fresh code for a challenge whose request id starts with `prefix`,
    /// alive for `ttl_ms`.
    pub fn new(state: &AppState, prefix: &str, ttl_ms: u64) -> Self {
        let request_id = random_request_id(prefix);
        Self {
            salt: salt_of(&state.commitment_key, &request_id),
            code: format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32)),
            expires_ms: now_ms().saturating_add(ttl_ms),
            request_id,
        }
    }

    /// Keeps what the node needs to check the code later, under `key`,
    /// once the challenge is in the ledger at `seq`.
    pub fn remember(&self, state: &AppState, key: &str, seq: u64) -> Result<(), ApiError> {
        PrivateChallenge {
            seq,
            request_id: self.request_id.clone(),
            code_mac: code_mac(&state.commitment_key, &self.request_id, &self.code),
            attempts: 0,
            expires_ms: self.expires_ms,
        }
        .store(state, key)
    }
}

/// The salt of the challenge `request_id`: hex of the first 16 bytes of
/// HMAC-SHA256(court commitment key, "caseledger/code-salt" ‖ 0x00 ‖
/// request id). Whoever lacks the court's key cannot compute it.
pub(super) fn salt_of(key: &[u8; 32], request_id: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(b"caseledger/code-salt\0");
    mac.update(request_id.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// HMAC of a code under the court's key, bound to its challenge.
fn code_mac(key: &[u8; 32], request_id: &str, code: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(b"caseledger/sms-code\0");
    mac.update(request_id.as_bytes());
    mac.update(b"\0");
    mac.update(code.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// What the node keeps, beside the ledger, of a code it sent.
#[derive(Serialize, Deserialize)]
pub(super) struct PrivateChallenge {
    /// Seq of the node's commitment.
    pub seq: u64,
    /// The challenge's request id (its salt is derived from it).
    pub request_id: String,
    code_mac: String,
    attempts: u32,
    expires_ms: u64,
}

impl PrivateChallenge {
    fn store(&self, state: &AppState, key: &str) -> Result<(), ApiError> {
        Ok(state
            .ledger
            .private_put(&private_key(key), &serde_json::to_vec(self).expect("json"))?)
    }

    /// The salt to reveal with the code.
    pub fn salt(&self, state: &AppState) -> String {
        salt_of(&state.commitment_key, &self.request_id)
    }
}

fn private_key(key: &str) -> String {
    format!("code/{key}")
}

/// The challenge at `key` if `code` is its code, unexpired, with fewer
/// than [`CODE_ATTEMPTS_MAX`] wrong tries; a wrong code counts against it,
/// under a lock, so that concurrent guesses are counted one by one, and
/// against the hourly quota of wrong codes for `key` from anywhere
/// ([`super::limits::Limits::target_open`]). `again` tells the caller how
/// to get a new code.
pub(super) fn check(state: &AppState, key: &str, code: &str, again: &str) -> Result<PrivateChallenge, ApiError> {
    let _one_at_a_time = state.code_checks.lock().unwrap_or_else(|p| p.into_inner());
    state.limits.target_open(key)?;
    let Some(bytes) = state.ledger.private_get(&private_key(key))? else {
        return Err(refuse("sms_confirmation", "no code was sent for this"));
    };
    let mut challenge: PrivateChallenge =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
    if challenge.attempts >= CODE_ATTEMPTS_MAX {
        return Err(refuse("sms_locked", &format!("too many wrong codes: {again}")));
    }
    if now_ms() > challenge.expires_ms {
        return Err(refuse("sms_confirmation", &format!("the code has expired: {again}")));
    }
    if code_mac(&state.commitment_key, &challenge.request_id, code) != challenge.code_mac {
        challenge.attempts += 1;
        challenge.store(state, key)?;
        state.limits.wrong_code(key);
        metrics::counter!("caseledger_sms_wrong_codes_total").increment(1);
        let left = CODE_ATTEMPTS_MAX.saturating_sub(challenge.attempts);
        return Err(refuse(
            "sms_code",
            &if left == 0 {
                format!("wrong code; no tries left: {again}")
            } else {
                format!("wrong code; {left} more tries with this code")
            },
        ));
    }
    Ok(challenge)
}

/// Forgets the challenge at `key` once the ledger holds its use.
pub(super) fn forget(state: &AppState, key: &str) -> Result<(), ApiError> {
    Ok(state.ledger.private_delete(&private_key(key))?)
}

/// Sends a code's SMS and records in the ledger which provider took it
/// under which message id (`sms_sent` for the challenge `request_id`).
pub(super) async fn send(
    state: &AppState,
    message: &super::sms::Message,
    request_id: &str,
    purpose: &'static str,
) -> Result<(), ApiError> {
    let message_id = provider_send(state, message)
        .await?
        .map_err(|e| ApiError::Unavailable(format!("the SMS could not be sent: {}", e.detail)))?;
    metrics::counter!("caseledger_sms_challenges_total", "purpose" => purpose).increment(1);
    let (ledger, sms, request_id) = (state.ledger.clone(), state.sms.clone(), request_id.to_owned());
    tokio::task::spawn_blocking(move || super::sms::record_sent(&ledger, sms.as_ref(), &request_id, &message_id))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(())
}

/// `message` handed to the SMS provider on a blocking thread, never on the
/// async runtime's workers: a gateway that accepts and never answers holds
/// one blocking thread until the provider's timeout (`sms_timeout_ms`),
/// not the HTTP service.
pub(super) async fn provider_send(
    state: &AppState,
    message: &super::sms::Message,
) -> Result<Result<String, super::sms::SendError>, ApiError> {
    let (sms, message) = (state.sms.clone(), message.clone());
    tokio::task::spawn_blocking(move || sms.send(&message))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// A random request id for a node record: `prefix-` and 128 random bits.
pub(super) fn random_request_id(prefix: &str) -> String {
    format!("{prefix}-{}", hex::encode(rand::random::<[u8; 16]>()))
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn refuse(rule: &str, detail: &str) -> ApiError {
    ApiError::RuleViolated {
        rule: rule.into(),
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salts_and_code_macs_need_the_court_key_and_name_their_challenge() {
        let (key, other) = ([7u8; 32], [8u8; 32]);
        let salt = salt_of(&key, "challenge-1");
        assert_eq!(salt.len(), 32);
        assert_eq!(salt, salt_of(&key, "challenge-1"));
        assert_ne!(salt, salt_of(&other, "challenge-1"), "another court's key");
        assert_ne!(salt, salt_of(&key, "challenge-2"), "another challenge");
        let mac = code_mac(&key, "challenge-1", "123456");
        assert_ne!(mac, code_mac(&key, "challenge-2", "123456"));
        assert_ne!(mac, code_mac(&other, "challenge-1", "123456"));
        assert_ne!(mac, code_mac(&key, "challenge-1", "123457"));
    }
}

/// What an applicant (no key) sends to confirm something with the code from
/// their SMS.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeEntry {
    /// The 6-digit code from the SMS.
    #[schema(pattern = "^[0-9]{6}$")]
    pub code: String,
}

/// The code an applicant entered at the keyless `route`: rate-limited per
/// client (the brute-force guard of every keyless endpoint, besides the
/// tries of one challenge and the wrong codes per target that [`check`]
/// counts), decoded, 6 digits.
pub(super) fn entered_code(
    state: &AppState,
    (extensions, headers): (&axum::http::Extensions, &axum::http::HeaderMap),
    body: &[u8],
    route: &'static str,
) -> Result<String, ApiError> {
    let client = state.limits.client(extensions, headers);
    state.limits.check(super::limits::Purpose::CodeEntry, client, route)?;
    let entry: CodeEntry =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("malformed request: {e}")))?;
    if entry.code.len() != 6 || !entry.code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest("the code is 6 digits".into()));
    }
    Ok(entry.code)
}
