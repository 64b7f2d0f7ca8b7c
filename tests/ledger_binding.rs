//! Records and requests are bound to their ledger: a record signature
//! covers the ledger's origin (docs/FORMAT.md §3), so a record signed for
//! another court's ledger, or for staging, by a key both ledgers register,
//! is refused when written and reported by the auditor when forced in.

mod common;

use caseledger::court::CaseRecords;
use caseledger::service::client::{sign_request, write_body_numbered};
use caseledger_ledger::Error;
use common::*;

const STAGING: &str = "staging.caseledger.local/ledger";
const CASE: &str = "(2024)苏02执5号";

#[test]
fn a_record_signed_for_another_ledger_is_refused_by_the_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    let size = ledger.size();
    // Same key, same kind, same payload: only the origin differs.
    let mut elsewhere = note(&keys.writer, 1);
    elsewhere.signature =
        caseledger_verify::entry::Record::sign(STAGING, elsewhere.kind, elsewhere.payload.clone(), &keys.writer)
            .signature;
    let refused = ledger.append_one(elsewhere).expect_err("other ledger");
    assert!(matches!(refused, Error::BadSignature { index: 0 }), "{refused}");
    assert_eq!(ledger.size(), size);
    ledger
        .append_one(note(&keys.writer, 1))
        .expect("the same record for this ledger");
    audit_ok(&ledger);
}

#[test]
fn a_record_signed_for_another_ledger_forced_into_storage_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    create(dir.path(), &keys).close().expect("close");
    let record = caseledger_verify::entry::Record::sign(
        STAGING,
        note(&keys.writer, 1).kind,
        note(&keys.writer, 1).payload,
        &keys.writer,
    );
    let seq = force_append(dir.path(), record);
    let report = audit(dir.path());
    assert!(report.first_error.is_none(), "{:?}", report.first_error);
    let found: Vec<_> = report.violations.iter().map(|v| (v.seq, v.rule.as_str())).collect();
    assert_eq!(found, [(seq, "signature")]);
}

#[tokio::test]
async fn post_records_refuses_a_record_signed_for_staging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 61);
    let state = service_state(ledger, &staff);
    // The same staff, keys and case, signing for the staging ledger.
    let staging = caseledger::court::Staff::from_seed(61, STAGING);
    let officer = &staging.filing_clerk;
    let size = state.ledger.size();
    let body = write_body_numbered(&[CaseRecords::new(&staging, &staging.officers[0], CASE).open_request(1)]);
    let headers = sign_request(
        &officer.identity,
        caseledger::service::DEFAULT_AUTHORITY,
        "POST",
        "/v1/records",
        &body,
    );
    let (status, answer) = send(&state, "POST", "/v1/records", &headers, body).await;
    assert_eq!(status.as_u16(), 422, "{answer}");
    assert_eq!(answer["rule"], "signature", "{answer}");
    assert_eq!(state.ledger.size(), size);
    // Signed for this ledger, it goes in.
    let body = write_body_numbered(&[CaseRecords::new(&staff, &staff.officers[0], CASE).open_request(1)]);
    let headers = sign_request(
        &staff.filing_clerk.identity,
        caseledger::service::DEFAULT_AUTHORITY,
        "POST",
        "/v1/records",
        &body,
    );
    let (status, answer) = send(&state, "POST", "/v1/records", &headers, body).await;
    assert_eq!(status.as_u16(), 201, "{answer}");
}

/// Headers of a request signed by `signer` that do not cover `@authority`
/// (RFC 9421 base built here, as a client that leaves one out would).
fn signed_without_authority(signer: &caseledger_keys::Identity, authority: &str, body: &[u8]) -> Vec<(String, String)> {
    let headers = sign_request(signer, authority, "POST", "/v1/records", body);
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .expect(name)
    };
    let params = get("signature-input")
        .strip_prefix("sig1=")
        .expect("label")
        .replace("\"@method\" \"@authority\" \"@path\"", "\"@method\" \"@path\"");
    let base = format!(
        "\"@method\": POST\n\"@path\": /v1/records\n\"content-digest\": {}\n\"@signature-params\": {params}",
        get("content-digest")
    );
    let signature = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        signer.sign_raw(base.as_bytes()).to_bytes(),
    );
    vec![
        ("signature-input".into(), format!("sig1={params}")),
        ("signature".into(), format!("sig1=:{signature}:")),
        ("content-digest".into(), get("content-digest")),
    ]
}

#[tokio::test]
async fn a_request_signed_for_another_service_or_not_naming_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 62);
    let state = service_state(ledger, &staff).with_authority("Case-Funds.Court-A.example");
    let officer = &staff.filing_clerk.identity;
    let size = state.ledger.size();
    let body = write_body_numbered(&[CaseRecords::new(&staff, &staff.officers[0], CASE).open_request(1)]);
    for (headers, problem) in [
        (
            sign_request(officer, "case-funds.court-b.example", "POST", "/v1/records", &body),
            "bad-signature",
        ),
        (
            sign_request(officer, "staging.court-a.example", "POST", "/v1/records", &body),
            "bad-signature",
        ),
        (
            signed_without_authority(officer, "case-funds.court-a.example", &body),
            "signature-missing",
        ),
    ] {
        let (status, answer) = send(&state, "POST", "/v1/records", &headers, body.clone()).await;
        assert_eq!(status.as_u16(), 401, "{answer}");
        assert_eq!(answer["type"], format!("urn:caseledger:problem:{problem}"), "{answer}");
    }
    assert_eq!(state.ledger.size(), size, "nothing written");
    // Signed for this service (authorities compare without case), it goes in.
    let headers = sign_request(officer, "case-funds.court-a.example", "POST", "/v1/records", &body);
    let (status, answer) = send(&state, "POST", "/v1/records", &headers, body).await;
    assert_eq!(status.as_u16(), 201, "{answer}");
}

#[test]
fn authority_of_a_base_url() {
    use caseledger::service::client::authority_of;
    assert_eq!(authority_of("http://127.0.0.1:8470"), "127.0.0.1:8470");
    assert_eq!(authority_of("https://Court.Example/case-funds/"), "court.example");
    assert_eq!(authority_of("https://user@court.example:8443?x"), "court.example:8443");
}
