//! HTTP Message Signatures (RFC 9421) with Ed25519, and Content-Digest
//! (RFC 9530), for signed member requests.
//!
//! Every member request carries
//!
//! ```text
//! Content-Digest: sha-256=:<base64 SHA-256 of the body>:
//! Signature-Input: sig1=("@method" "@authority" "@path" "@query" "content-digest");created=<unix s>;keyid="<hex key id>";nonce="<random>";alg="ed25519"
//! Signature: sig1=:<base64 Ed25519 signature of the signature base>:
//! ```
//!
//! `@authority` is always covered: the service checks it against its own
//! public authority (`authority` in its configuration), never against the
//! `Host` header, so a request signed for one court's service (or for
//! staging) is refused by any other that registers the same key.
//! `@query` is covered when the request has a query, `content-digest` when
//! it has a body. The signature base is RFC 9421 §2.5: one line per covered
//! component, then the `@signature-params` line, joined by newlines.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger_keys::{Identity, KeyId, PublicKey, Signature};
use sha2::{Digest, Sha256};

/// How far `created` may be from the server's clock.
pub const SIGNATURE_WINDOW_SECONDS: u64 = 300;
/// Nonces remembered at most; beyond this the oldest are forgotten first
/// (they are outside the window by then under any sane load).
pub const NONCES_MAX: usize = 1_000_000;
const LABEL: &str = "sig1";

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Headers missing or malformed.
    Malformed(String),
    UnknownKey(String),
    BadSignature,
    /// `created` outside the window.
    Expired,
    Replay,
    DigestMismatch,
}

/// `sha-256=:<base64>:`
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", BASE64.encode(Sha256::digest(body)))
}

fn signature_params(components: &[&str], created: u64, key_id: &KeyId, nonce: &str) -> String {
    let list: Vec<String> = components.iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        "({});created={created};keyid=\"{}\";nonce=\"{nonce}\";alg=\"ed25519\"",
        list.join(" "),
        key_id.to_hex()
    )
}

/// The request as the signature sees it.
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The service's authority (`host[:port]`, lower case) as the member
    /// addresses it: the signer's target, the verifier's own name.
    pub authority: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub content_digest: Option<&'a str>,
}

fn component_value<'a>(parts: &'a RequestParts, component: &str) -> Option<std::borrow::Cow<'a, str>> {
    match component {
        "@method" => Some(parts.method.into()),
        "@authority" => Some(parts.authority.to_ascii_lowercase().into()),
        "@path" => Some(parts.path.into()),
        "@query" => Some(format!("?{}", parts.query.unwrap_or("")).into()),
        "content-digest" => parts.content_digest.map(Into::into),
        _ => None,
    }
}

fn signature_base(parts: &RequestParts, components: &[&str], params: &str) -> Option<String> {
    let mut base = String::new();
    for component in components {
        let value = component_value(parts, component)?;
        base.push_str(&format!("\"{component}\": {value}\n"));
    }
    base.push_str(&format!("\"@signature-params\": {params}"));
    Some(base)
}

fn covered(parts: &RequestParts) -> Vec<&'static str> {
    let mut components = vec!["@method", "@authority", "@path"];
    if parts.query.is_some() {
        components.push("@query");
    }
    if parts.content_digest.is_some() {
        components.push("content-digest");
    }
    components
}

/// Signs a request: returns the headers to add (name, value).
#[allow(clippy::too_many_arguments)]
pub fn sign(
    identity: &Identity,
    method: &str,
    authority: &str,
    path: &str,
    query: Option<&str>,
    body: &[u8],
    created: u64,
    nonce: &str,
) -> Vec<(String, String)> {
    let digest = (!body.is_empty()).then(|| content_digest(body));
    let parts = RequestParts {
        method,
        authority,
        path,
        query,
        content_digest: digest.as_deref(),
    };
    let components = covered(&parts);
    let params = signature_params(&components, created, &identity.public_key().key_id(), nonce);
    let base = signature_base(&parts, &components, &params).expect("all components present");
    let signature = identity.sign_raw(base.as_bytes());
    let mut headers = vec![
        ("signature-input".to_owned(), format!("{LABEL}={params}")),
        (
            "signature".to_owned(),
            format!("{LABEL}=:{}:", BASE64.encode(signature.to_bytes())),
        ),
    ];
    if let Some(digest) = digest {
        headers.push(("content-digest".to_owned(), digest));
    }
    headers
}

/// The parsed `Signature-Input` of our one label.
struct Input {
    components: Vec<String>,
    params: String,
    created: u64,
    key_id: String,
    nonce: String,
}

fn malformed(what: &str) -> AuthError {
    AuthError::Malformed(what.to_owned())
}

fn parse_input(header: &str) -> Result<Input, AuthError> {
    let params = header
        .strip_prefix(&format!("{LABEL}="))
        .ok_or_else(|| malformed("Signature-Input must have one signature labelled sig1"))?;
    let close = params
        .find(')')
        .ok_or_else(|| malformed("Signature-Input has no component list"))?;
    let list = params
        .get(1..close)
        .filter(|_| params.starts_with('('))
        .ok_or_else(|| malformed("bad component list"))?;
    let components = list
        .split(' ')
        .filter(|c| !c.is_empty())
        .map(|c| c.strip_prefix('"').and_then(|c| c.strip_suffix('"')).map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| malformed("components must be quoted"))?;
    let (mut created, mut key_id, mut nonce, mut alg) = (None, None, None, None);
    for param in params[close + 1..].split(';').filter(|p| !p.is_empty()) {
        let (name, value) = param.split_once('=').ok_or_else(|| malformed("bad parameter"))?;
        let text = value.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
        match (name, text) {
            ("created", None) => created = value.parse().ok(),
            ("keyid", Some(v)) => key_id = Some(v.to_owned()),
            ("nonce", Some(v)) => nonce = Some(v.to_owned()),
            ("alg", Some(v)) => alg = Some(v.to_owned()),
            _ => return Err(malformed("unexpected signature parameter")),
        }
    }
    if alg.as_deref() != Some("ed25519") {
        return Err(malformed("alg must be ed25519"));
    }
    let nonce = nonce
        .filter(|n| (16..=128).contains(&n.len()))
        .ok_or_else(|| malformed("nonce of 16 to 128 characters required"))?;
    Ok(Input {
        components,
        params: params.to_owned(),
        created: created.ok_or_else(|| malformed("created required"))?,
        key_id: key_id.ok_or_else(|| malformed("keyid required"))?,
        nonce,
    })
}

/// Remembers nonces within the window to refuse replays. The cache lives
/// in memory, so it also refuses every signature created before it was
/// (`not_before`, the service's start): a request captured before a
/// restart cannot be replayed after it (a client whose clock runs behind
/// signs again once it has passed the start).
#[derive(Default)]
pub struct NonceCache {
    seen: Mutex<HashMap<String, u64>>,
    not_before: u64,
}

impl NonceCache {
    /// A cache that refuses signatures created before `not_before` (unix
    /// seconds): the service's start.
    pub fn since(not_before: u64) -> Self {
        Self {
            seen: Mutex::default(),
            not_before,
        }
    }

    /// Records `nonce` (for `key`) used at `created`; false if seen already.
    fn insert(&self, key: &str, nonce: &str, created: u64, now: u64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= NONCES_MAX {
            seen.retain(|_, at| at.saturating_add(2 * SIGNATURE_WINDOW_SECONDS) > now);
        }
        seen.insert(format!("{key}/{nonce}"), created).is_none()
    }

    /// Forgets a nonce spent by a request whose signature then failed, so
    /// that a forgery cannot burn the nonce of a genuine request.
    fn remove(&self, key: &str, nonce: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.remove(&format!("{key}/{nonce}"));
    }
}

/// A request whose signature verified.
#[derive(Debug)]
pub struct Verified {
    pub key_id: KeyId,
    pub key: PublicKey,
}

/// Checks the signature headers of a request at `now` (unix seconds):
/// covered components, body digest, freshness, nonce, key, signature.
pub fn verify(
    parts: &RequestParts,
    body: &[u8],
    signature_input: Option<&str>,
    signature: Option<&str>,
    now: u64,
    nonces: &NonceCache,
    lookup: impl Fn(&KeyId) -> Option<PublicKey>,
) -> Result<Verified, AuthError> {
    check(parts, body, signature_input, signature, now, lookup)?.verify(nonces, now)
}

/// A request whose signature headers are complete, fresh, over the right
/// components and by a known key, and whose signature is not verified yet.
pub struct Unverified {
    pub key_id: KeyId,
    pub key: PublicKey,
    /// The signature base (RFC 9421 §2.5): the signed message.
    pub base: String,
    pub signature: Signature,
    key_text: String,
    nonce: String,
    created: u64,
}

/// A nonce spent by a request whose signature is still to be verified
/// (with the ledger group that writes its records).
#[must_use = "release the nonce if the signature fails"]
pub struct SpentNonce {
    key_text: String,
    nonce: String,
}

impl SpentNonce {
    /// The signature failed: the nonce was not the signer's to spend.
    pub fn release(self, nonces: &NonceCache) {
        nonces.remove(&self.key_text, &self.nonce);
    }
}

impl Unverified {
    /// Whether the signature verifies (nothing else is checked or spent).
    pub fn holds(&self) -> bool {
        self.key.verify_raw(self.base.as_bytes(), &self.signature).is_ok()
    }

    /// Verifies the signature, then spends the nonce.
    pub fn verify(self, nonces: &NonceCache, now: u64) -> Result<Verified, AuthError> {
        if !self.holds() {
            return Err(AuthError::BadSignature);
        }
        // The signature holds: the nonce stays spent.
        let _spent = self.spend(nonces, now)?;
        Ok(Verified {
            key_id: self.key_id,
            key: self.key,
        })
    }

    /// Spends the nonce now and leaves the signature to the caller, who
    /// must verify it before acting on the request and release the nonce
    /// if it fails.
    pub fn defer(self, nonces: &NonceCache, now: u64) -> Result<(Self, SpentNonce), AuthError> {
        let spent = self.spend(nonces, now)?;
        Ok((self, spent))
    }

    fn spend(&self, nonces: &NonceCache, now: u64) -> Result<SpentNonce, AuthError> {
        if self.created < nonces.not_before {
            return Err(AuthError::Expired);
        }
        if !nonces.insert(&self.key_text, &self.nonce, self.created, now) {
            return Err(AuthError::Replay);
        }
        Ok(SpentNonce {
            key_text: self.key_text.clone(),
            nonce: self.nonce.clone(),
        })
    }
}

/// Everything [`verify`] checks except the signature itself and the nonce.
pub fn check(
    parts: &RequestParts,
    body: &[u8],
    signature_input: Option<&str>,
    signature: Option<&str>,
    now: u64,
    lookup: impl Fn(&KeyId) -> Option<PublicKey>,
) -> Result<Unverified, AuthError> {
    let input = parse_input(signature_input.ok_or_else(|| malformed("Signature-Input header required"))?)?;
    let required = covered(parts);
    if !body.is_empty() && parts.content_digest.is_none() {
        return Err(malformed("Content-Digest header required with a body"));
    }
    if let Some(digest) = parts.content_digest {
        if digest != content_digest(body) {
            return Err(AuthError::DigestMismatch);
        }
    }
    if required.iter().any(|r| !input.components.iter().any(|c| c == r)) {
        return Err(malformed(
            "the signature must cover @method, @authority, @path, @query (if any) and content-digest (if a body)",
        ));
    }
    if input.created.abs_diff(now) > SIGNATURE_WINDOW_SECONDS {
        return Err(AuthError::Expired);
    }
    let key_id = KeyId::from_hex(&input.key_id).map_err(|_| malformed("keyid must be a hex key id"))?;
    let key = lookup(&key_id).ok_or_else(|| AuthError::UnknownKey(key_id.short()))?;
    let components: Vec<&str> = input.components.iter().map(String::as_str).collect();
    let base =
        signature_base(parts, &components, &input.params).ok_or_else(|| malformed("unknown covered component"))?;
    let bytes = signature
        .and_then(|s| s.strip_prefix(&format!("{LABEL}=:")))
        .and_then(|s| s.strip_suffix(':'))
        .and_then(|s| BASE64.decode(s).ok())
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or_else(|| malformed("Signature header must be sig1=:<base64>:"))?;
    Ok(Unverified {
        key_id,
        key,
        base,
        signature: Signature::from_bytes(&bytes),
        key_text: input.key_id,
        nonce: input.nonce,
        created: input.created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        headers: &[(String, String)],
        parts: &RequestParts,
        body: &[u8],
        now: u64,
        nonces: &NonceCache,
        key: PublicKey,
    ) -> Result<Verified, AuthError> {
        let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        verify(
            parts,
            body,
            get("signature-input"),
            get("signature"),
            now,
            nonces,
            |id| (*id == key.key_id()).then_some(key),
        )
    }

    #[test]
    fn sign_verify_and_refuse_changes_replays_and_stale_requests() {
        let identity = Identity::from_seed([5; 32]);
        let key = identity.public_key();
        let body = br#"{"x":1}"#;
        let headers = sign(
            &identity,
            "POST",
            "court.example",
            "/v1/records",
            None,
            body,
            1000,
            "nonce-0123456789abcdef",
        );
        let digest = headers
            .iter()
            .find(|(n, _)| n == "content-digest")
            .map(|(_, v)| v.clone());
        let parts = RequestParts {
            method: "POST",
            authority: "court.example",
            path: "/v1/records",
            query: None,
            content_digest: digest.as_deref(),
        };
        let nonces = NonceCache::default();
        check(&headers, &parts, body, 1010, &nonces, key).expect("valid");
        assert_eq!(
            check(&headers, &parts, body, 1010, &nonces, key).err(),
            Some(AuthError::Replay)
        );
        let fresh = NonceCache::default();
        assert_eq!(
            check(&headers, &parts, b"{\"x\":2}", 1010, &fresh, key).err(),
            Some(AuthError::DigestMismatch)
        );
        let other_path = RequestParts {
            path: "/v1/other",
            ..parts
        };
        assert_eq!(
            check(&headers, &other_path, body, 1010, &fresh, key).err(),
            Some(AuthError::BadSignature)
        );
        // Signed for another service (another court, staging).
        let other_authority = RequestParts {
            authority: "staging.court.example",
            ..parts
        };
        assert_eq!(
            check(&headers, &other_authority, body, 1010, &fresh, key).err(),
            Some(AuthError::BadSignature)
        );
        let parts = RequestParts {
            method: "POST",
            authority: "court.example",
            path: "/v1/records",
            query: None,
            content_digest: digest.as_deref(),
        };
        assert_eq!(
            check(&headers, &parts, body, 1000 + 301, &fresh, key).err(),
            Some(AuthError::Expired)
        );
        // Signed before the service (re)started: refused, as a replay of a
        // request captured before the restart would be.
        let restarted = NonceCache::since(1001);
        assert_eq!(
            check(&headers, &parts, body, 1010, &restarted, key).err(),
            Some(AuthError::Expired)
        );
        let stranger = Identity::from_seed([6; 32]).public_key();
        assert!(matches!(
            check(&headers, &parts, body, 1010, &fresh, stranger),
            Err(AuthError::UnknownKey(_))
        ));
    }
}
