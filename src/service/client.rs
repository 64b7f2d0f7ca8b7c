//! The member side of the API: turning signed records into a request body,
//! and signing requests (RFC 9421). Used by `caseledger client` and tests.

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger_keys::Identity;
use caseledger_verify::entry::Record;

use super::writes::{RecordRequest, WriteRequest};

/// The JSON body of a write of `records`.
pub fn write_body(records: &[Record]) -> Vec<u8> {
    let numbered: Vec<(Record, Vec<String>)> = records.iter().map(|r| (r.clone(), Vec::new())).collect();
    write_body_numbered(&numbered)
}

/// The JSON body of a write of records, each with the numbers it masks in
/// clear (a `case_opened`'s applicants' phones, an `account_registered`'s
/// account number; empty for other records).
pub fn write_body_numbered(records: &[(Record, Vec<String>)]) -> Vec<u8> {
    let request = WriteRequest {
        records: records
            .iter()
            .map(|(r, numbers)| RecordRequest {
                kind: r.kind,
                payload: String::from_utf8_lossy(&r.payload).into_owned(),
                signature: BASE64.encode(r.signature.to_bytes()),
                numbers: numbers.clone(),
                disclosures: r.disclosures.clone(),
            })
            .collect(),
    };
    serde_json::to_vec(&request).expect("serialisable")
}

/// Signature headers for a request made now with a fresh random nonce.
/// `path_and_query` is the request target as sent (percent-encoded).
/// `authority` is the service's `host[:port]` as the member addresses it.
pub fn sign_request(
    identity: &Identity,
    authority: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    super::httpsig::sign(identity, method, authority, path, query, body, created, &nonce)
}

/// A member's connection to a running service.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// `host[:port]` of `base`: what request signatures cover as `@authority`.
    authority: String,
    identity: Identity,
}

/// The `host[:port]` of a base URL such as `https://court.example:8443/`.
pub fn authority_of(base: &str) -> String {
    let rest = base.split_once("://").map_or(base, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    authority.to_ascii_lowercase()
}

impl Client {
    pub fn new(base: &str, identity: Identity) -> Self {
        Self {
            agent: ureq::Agent::config_builder().http_status_as_error(false).build().into(),
            base: base.trim_end_matches('/').to_owned(),
            authority: authority_of(base),
            identity,
        }
    }

    fn finish(mut response: ureq::http::Response<ureq::Body>) -> anyhow::Result<(u16, serde_json::Value)> {
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        ))
    }

    /// The ledger's origin: the first line of its latest checkpoint. Every
    /// record a member signs covers it (docs/FORMAT.md §3).
    pub fn origin(&self) -> anyhow::Result<String> {
        let (status, checkpoint) = self.get("/v1/checkpoint")?;
        anyhow::ensure!(
            (200..300).contains(&status),
            "reading the checkpoint: {status} {checkpoint}"
        );
        checkpoint
            .as_str()
            .and_then(|text| text.lines().next())
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("the checkpoint has no origin line"))
    }

    /// A signed GET of `path_and_query` (percent-encoded).
    pub fn get(&self, path_and_query: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut request = self.agent.get(&format!("{}{path_and_query}", self.base));
        for (name, value) in sign_request(&self.identity, &self.authority, "GET", path_and_query, &[]) {
            request = request.header(&name, &value);
        }
        let response = request
            .call()
            .with_context(|| self.unreachable("GET", path_and_query))?;
        Self::finish(response)
    }

    /// What a request that got no answer says: the method and the whole
    /// URL (the node's address is the first thing to check).
    fn unreachable(&self, method: &str, path: &str) -> String {
        format!("{method} {}{path}: no answer from the node", self.base)
    }

    /// A signed POST without a body (e.g. a challenge).
    pub fn post_empty(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut request = self.agent.post(&format!("{}{path}", self.base));
        for (name, value) in sign_request(&self.identity, &self.authority, "POST", path, &[]) {
            request = request.header(&name, &value);
        }
        let response = request.send_empty().with_context(|| self.unreachable("POST", path))?;
        Self::finish(response)
    }

    /// A signed POST of a JSON `body` to `path`.
    pub fn post_json(&self, path: &str, body: &[u8]) -> anyhow::Result<(u16, serde_json::Value)> {
        self.post_presigned(
            path,
            body,
            &sign_request(&self.identity, &self.authority, "POST", path, body),
        )
    }

    /// A POST of a JSON `body` to `path` with signature headers made
    /// earlier with [`sign_request`] (a load generator signs before it
    /// starts the clock).
    pub fn post_presigned(
        &self,
        path: &str,
        body: &[u8],
        signature: &[(String, String)],
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut request = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("content-type", "application/json");
        for (name, value) in signature {
            request = request.header(name, value);
        }
        let response = request.send(body).with_context(|| self.unreachable("POST", path))?;
        Self::finish(response)
    }

    /// Asks the node to issue a verification code for an applicant of a
    /// case (the case's officer): the node draws it and sends it to the
    /// applicant only; nobody else sees it.
    pub fn issue_applicant_code(
        &self,
        case_number: &str,
        applicant_id: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let body = serde_json::to_vec(&serde_json::json!({
            "case_number": case_number,
            "applicant_id": applicant_id,
        }))?;
        self.post_json("/v1/applicant-codes", &body)
    }

    /// A signed write of `records`, which must be signed by this member.
    pub fn write(&self, records: &[Record]) -> anyhow::Result<(u16, serde_json::Value)> {
        self.post_json("/v1/records", &write_body(records))
    }

    /// A signed write of records with the numbers they mask in clear (see
    /// [`write_body_numbered`]).
    pub fn write_numbered(&self, records: &[(Record, Vec<String>)]) -> anyhow::Result<(u16, serde_json::Value)> {
        self.post_json("/v1/records", &write_body_numbered(records))
    }
}
