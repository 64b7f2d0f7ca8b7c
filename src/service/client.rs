//! The member side of the API: turning signed records into a request body,
//! and signing requests (RFC 9421). Used by `caseledger client` and tests.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger_keys::Identity;
use caseledger_ledger::entry::Record;

use super::members::{RecordRequest, WriteRequest};

/// The JSON body of a write of `records`.
pub fn write_body(records: &[Record]) -> Vec<u8> {
    let request = WriteRequest {
        records: records
            .iter()
            .map(|r| RecordRequest {
                kind: r.kind,
                payload: String::from_utf8_lossy(&r.payload).into_owned(),
                signature: BASE64.encode(r.signature.to_bytes()),
            })
            .collect(),
    };
    serde_json::to_vec(&request).expect("serialisable")
}

/// Signature headers for a request made now with a fresh random nonce.
/// `path_and_query` is the request target as sent (percent-encoded).
pub fn sign_request(identity: &Identity, method: &str, path_and_query: &str, body: &[u8]) -> Vec<(String, String)> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    super::httpsig::sign(identity, method, path, query, body, created, &nonce)
}
