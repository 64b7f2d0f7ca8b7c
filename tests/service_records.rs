//! Signed member requests through the router (`oneshot`): a whole
//! disbursement from filing to payment driven only through HTTP, and every
//! kind of bad request answered with its problem type and nothing written.

mod common;

use common::{send, Phone, ORIGIN};

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use caseledger::court::{sign, CaseRecords, Person, Staff};
use caseledger::service::client::{sign_request, write_body, write_body_numbered};
use caseledger::service::httpsig;
use caseledger::service::{app, AppState};
use caseledger_keys::Identity;
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::*;
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

const CASE: &str = "(2023)苏02执123号";
const CASE_PATH: &str = "/v1/cases/%282023%29%E8%8B%8F02%E6%89%A7123%E5%8F%B7";

struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
    staff: Staff,
}

fn fixture(body_bytes_max: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = common::court(dir.path(), 41);
    let state = AppState::new(Arc::new(ledger), body_bytes_max, Duration::from_secs(5))
        .with_commitment_key(staff.commitment_key);
    Fixture {
        _dir: dir,
        state,
        staff,
    }
}

async fn write(state: &AppState, signer: &Identity, records: &[Record]) -> (StatusCode, Value) {
    let body = write_body(records);
    let headers = sign_request(
        signer,
        caseledger::service::DEFAULT_AUTHORITY,
        "POST",
        "/v1/records",
        &body,
    );
    send(state, "POST", "/v1/records", &headers, body).await
}

async fn read(state: &AppState, signer: &Identity, target: &str) -> (StatusCode, Value) {
    let headers = sign_request(signer, caseledger::service::DEFAULT_AUTHORITY, "GET", target, &[]);
    send(state, "GET", target, &headers, Vec::new()).await
}

/// `headers` with the signature replaced by `signer`'s signature of other
/// bytes: same key id and nonce, a signature that does not verify.
fn with_forged_signature(headers: Vec<(String, String)>, signer: &Person) -> Vec<(String, String)> {
    let forged = format!(
        "sig1=:{}:",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            signer.identity.sign_raw(b"other bytes").to_bytes()
        )
    );
    headers
        .into_iter()
        .map(|(name, value)| match name.as_str() {
            "signature" => (name, forged.clone()),
            _ => (name, value),
        })
        .collect()
}

fn problem(value: &Value) -> &str {
    value["type"].as_str().unwrap_or("no problem type")
}

#[tokio::test]
async fn a_disbursement_from_filing_to_payment_over_http() {
    let f = fixture(256 * 1024);
    let officer: &Person = &f.staff.officers[0];
    let case = CaseRecords::new(&f.staff, officer, CASE);
    common::open_case(&f.state, &case, 1).await;
    let (status, body) = common::write_numbered(
        &f.state,
        &officer.identity,
        &[
            case.account_request("acct-1", 1, "6222000011110001"),
            (case.confirm("acct-1"), Vec::new()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = write(
        &f.state,
        &f.staff.finance.identity,
        &[case.receipt("BANK-1", 5_000_000)],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = write(&f.state, &officer.identity, &[case.request("d-1", "acct-1", 4_000_000)]).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, pending) = read(&f.state, &f.staff.bureau_head.identity, "/v1/steps/pending").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pending["disbursements"], serde_json::json!(["d-1"]));
    for (role, person) in [
        (Role::BureauHead, &f.staff.bureau_head),
        (Role::Finance, &f.staff.finance),
    ] {
        let step = if role == Role::BureauHead { 1 } else { 2 };
        let approval = case.approval(
            common::ORIGIN,
            "d-1",
            "acct-1",
            4_000_000,
            step,
            role,
            Decision::Approve,
            person,
        );
        let (status, body) = write(&f.state, &person.identity, &[approval]).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let payment = case.payment("d-1", "PAY-1", "acct-1", 4_000_000);
    let (status, body) = write(&f.state, &f.staff.finance.identity, std::slice::from_ref(&payment)).await;
    assert_eq!(status, StatusCode::CREATED);
    let seq = body["seqs"][0].as_u64().expect("seq");
    // A retry of the same record writes nothing and returns the first seq.
    let (status, retry) = write(&f.state, &f.staff.finance.identity, &[payment]).await;
    assert_eq!(
        (status, retry["seqs"][0].as_u64(), retry["written"].as_u64()),
        (StatusCode::OK, Some(seq), Some(0))
    );

    let (status, view) = read(&f.state, &officer.identity, CASE_PATH).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["case"]["paid_fen"], 4_000_000);
    // Typed with the official full-width brackets: the same case.
    let full_width = "/v1/cases/%EF%BC%882023%EF%BC%89%E8%8B%8F02%E6%89%A7123%E5%8F%B7";
    let (status, same) = read(&f.state, &officer.identity, full_width).await;
    assert_eq!((status, &same), (StatusCode::OK, &view));
    // A disbursement that does not exist is named as the member knows it.
    let (status, missing) = read(&f.state, &officer.identity, "/v1/disbursements/D999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["detail"], "no disbursement D999", "{missing}");
    assert_eq!(view["disbursements"][0]["status"], "paid");
    // One read rule for entries: the case's officer, finance and the
    // administrator read this payment; another officer, and a court leader
    // whom no chain of this case names, do not.
    let target = format!("/v1/entries/{seq}");
    for (who, expected) in [
        (&officer.identity, StatusCode::OK),
        (&f.staff.finance.identity, StatusCode::OK),
        (&f.staff.administrator.identity, StatusCode::OK),
        (&f.staff.officers[1].identity, StatusCode::FORBIDDEN),
        (&f.staff.court_leader.identity, StatusCode::FORBIDDEN),
    ] {
        let (status, entry) = read(&f.state, who, &target).await;
        assert_eq!(status, expected, "{entry}");
        if status == StatusCode::OK {
            assert_eq!(entry["kind_name"], "disbursement_paid");
            assert_eq!(entry["signer"], f.staff.finance.identity.public_key().key_id().to_hex());
        }
    }
    // Entries that concern no case (key registrations) are not for an officer.
    let (status, _) = read(&f.state, &officer.identity, "/v1/entries/1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let report = f.state.ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
}

#[tokio::test]
async fn bad_requests_get_their_problem_type_and_write_nothing() {
    let f = fixture(8 * 1024);
    let case = CaseRecords::new(&f.staff, &f.staff.officers[0], CASE);
    // The filing clerk opens the case.
    let officer = &f.staff.filing_clerk;
    let size = f.state.ledger.size();
    let body = write_body_numbered(&[case.open_request(1)]);

    // No signature at all.
    let (status, value) = send(&f.state, "POST", "/v1/records", &[], body.clone()).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::UNAUTHORIZED, "urn:caseledger:problem:signature-missing")
    );
    // Signed by someone the ledger does not know.
    let stranger = Identity::from_seed([77; 32]);
    let headers = sign_request(
        &stranger,
        caseledger::service::DEFAULT_AUTHORITY,
        "POST",
        "/v1/records",
        &body,
    );
    let (status, value) = send(&f.state, "POST", "/v1/records", &headers, body.clone()).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::UNAUTHORIZED, "urn:caseledger:problem:unknown-key")
    );
    // A body changed after signing.
    let headers = sign_request(
        &officer.identity,
        caseledger::service::DEFAULT_AUTHORITY,
        "POST",
        "/v1/records",
        &body,
    );
    let mut changed = body.clone();
    changed[20] ^= 1;
    let (status, value) = send(&f.state, "POST", "/v1/records", &headers, changed).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::UNAUTHORIZED, "urn:caseledger:problem:bad-signature")
    );
    // The digest header altered to match the change: the signature no longer verifies.
    let mut forged: Vec<(String, String)> = headers.clone();
    let mut other_body = body.clone();
    other_body[30] ^= 1;
    for header in &mut forged {
        if header.0 == "content-digest" {
            header.1 = httpsig::content_digest(&other_body);
        }
    }
    let (status, value) = send(&f.state, "POST", "/v1/records", &forged, other_body).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::UNAUTHORIZED, "urn:caseledger:problem:bad-signature")
    );
    // Expired: created ten minutes ago.
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        - 600;
    let stale = httpsig::sign(
        &officer.identity,
        "POST",
        caseledger::service::DEFAULT_AUTHORITY,
        "/v1/records",
        None,
        &body,
        created,
        "stale-nonce-0123456789",
    );
    let (status, value) = send(&f.state, "POST", "/v1/records", &stale, body.clone()).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::UNAUTHORIZED, "urn:caseledger:problem:signature-expired")
    );
    // Malformed JSON and unknown fields.
    for bad in [b"{not json".to_vec(), br#"{"records":[],"extra":1}"#.to_vec()] {
        let headers = sign_request(
            &officer.identity,
            caseledger::service::DEFAULT_AUTHORITY,
            "POST",
            "/v1/records",
            &bad,
        );
        let (status, value) = send(&f.state, "POST", "/v1/records", &headers, bad).await;
        assert_eq!(
            (status, problem(&value)),
            (StatusCode::BAD_REQUEST, "urn:caseledger:problem:bad-request")
        );
    }
    // Too large.
    let huge = vec![b' '; 9 * 1024];
    let headers = sign_request(
        &officer.identity,
        caseledger::service::DEFAULT_AUTHORITY,
        "POST",
        "/v1/records",
        &huge,
    );
    let (status, value) = send(&f.state, "POST", "/v1/records", &headers, huge).await;
    assert_eq!(
        (status, problem(&value)),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "urn:caseledger:problem:payload-too-large"
        )
    );
    assert_eq!(f.state.ledger.size(), size, "nothing was written");

    // A replayed request: the first is accepted, the same signed request again is refused.
    let headers = sign_request(
        &officer.identity,
        caseledger::service::DEFAULT_AUTHORITY,
        "POST",
        "/v1/records",
        &body,
    );
    let (status, _) = send(&f.state, "POST", "/v1/records", &headers, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, value) = send(&f.state, "POST", "/v1/records", &headers, body).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::UNAUTHORIZED, "urn:caseledger:problem:replay")
    );
}

#[tokio::test]
async fn a_forged_request_signature_writes_nothing_and_spends_no_nonce() {
    let f = fixture(8 * 1024);
    let case = CaseRecords::new(&f.staff, &f.staff.officers[0], CASE);
    // The filing clerk opens the case.
    let officer = &f.staff.filing_clerk;
    let size = f.state.ledger.size();
    let body = write_body_numbered(&[case.open_request(1)]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let nonce = "nonce-of-a-genuine-request-0001";
    let genuine = httpsig::sign(
        &officer.identity,
        "POST",
        caseledger::service::DEFAULT_AUTHORITY,
        "/v1/records",
        None,
        &body,
        now,
        nonce,
    );
    // The same headers (key id, nonce) with a signature over other bytes:
    // checked with the ledger group, refused, nothing written.
    let forged = with_forged_signature(genuine.clone(), officer);
    let (status, value) = send(&f.state, "POST", "/v1/records", &forged, body.clone()).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::UNAUTHORIZED, "urn:caseledger:problem:bad-signature")
    );
    // A forged request with a record the service refuses before the
    // ledger: still `unauthorized`, not a description of the body.
    let bad_body = serde_json::to_vec(&serde_json::json!({
        "records": [{"kind": KIND_CASE_OPENED, "payload": "{}", "signature": "not base64"}]
    }))
    .expect("json");
    let headers = with_forged_signature(
        sign_request(
            &officer.identity,
            caseledger::service::DEFAULT_AUTHORITY,
            "POST",
            "/v1/records",
            &bad_body,
        ),
        officer,
    );
    let (status, value) = send(&f.state, "POST", "/v1/records", &headers, bad_body).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::UNAUTHORIZED, "urn:caseledger:problem:bad-signature")
    );
    assert_eq!(f.state.ledger.size(), size, "nothing was written");

    // The forgery did not spend the genuine request's nonce.
    let (status, value) = send(&f.state, "POST", "/v1/records", &genuine, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    assert_eq!(f.state.ledger.size(), size + 2, "the node's commitment and the case");
    let (status, value) = send(&f.state, "POST", "/v1/records", &genuine, body).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::UNAUTHORIZED, "urn:caseledger:problem:replay")
    );
}

#[tokio::test]
async fn rules_answer_with_their_names_and_roles_with_wrong_role() {
    let f = fixture(256 * 1024);
    let officer = &f.staff.officers[0];
    let case = CaseRecords::new(&f.staff, officer, CASE);
    common::open_case(&f.state, &case, 1).await;
    let size = f.state.ledger.size();
    // An officer recording a receipt: wrong role.
    let mut receipt: ReceiptRecorded = serde_json::from_slice(&case.receipt("BANK-1", 100).payload).expect("json");
    receipt.request_id = "officer-receipt".into();
    let record = sign(ORIGIN, KIND_RECEIPT_RECORDED, &receipt, &officer.identity);
    let (status, value) = write(&f.state, &officer.identity, &[record]).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::FORBIDDEN, "urn:caseledger:problem:wrong-role")
    );
    // Negative, fractional and huge amounts.
    for amount in ["-5", "1.5", "100000000000000000000", "0"] {
        let text = String::from_utf8(case.receipt("BANK-2", 100).payload)
            .expect("utf8")
            .replace("\"amount_fen\":100", &format!("\"amount_fen\":{amount}"));
        let record = Record::sign(
            ORIGIN,
            KIND_RECEIPT_RECORDED,
            text.into_bytes(),
            &f.staff.finance.identity,
        );
        let (status, value) = write(&f.state, &f.staff.finance.identity, &[record]).await;
        assert_eq!(
            (status, problem(&value)),
            (StatusCode::UNPROCESSABLE_ENTITY, "urn:caseledger:problem:rule-violated"),
            "{amount}"
        );
        assert!(
            ["payload", "amount"].contains(&value["rule"].as_str().expect("rule")),
            "{value}"
        );
    }
    // A record signed by someone else than the request's signer is refused.
    let record = case.receipt("BANK-3", 100);
    let (status, value) = write(&f.state, &officer.identity, &[record]).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::UNPROCESSABLE_ENTITY, "urn:caseledger:problem:rule-violated")
    );
    assert_eq!(value["rule"], "signature");
    assert_eq!(f.state.ledger.size(), size, "nothing was written");
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_the_door() {
    let f = fixture(256 * 1024);
    let revoke = caseledger_verify::record::KeyRevoked {
        key_id: f.staff.bureau_head.identity.public_key().key_id().to_hex(),
        reason: "transferred to another court".into(),
    };
    let record = sign(
        ORIGIN,
        caseledger_verify::record::KIND_KEY_REVOKED,
        &revoke,
        &f.staff.administrator.identity,
    );
    let (status, body) = write(&f.state, &f.staff.administrator.identity, &[record]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, value) = read(&f.state, &f.staff.bureau_head.identity, "/v1/steps/pending").await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::UNAUTHORIZED, "urn:caseledger:problem:revoked-key")
    );
}

#[tokio::test]
async fn auditors_run_the_audit_on_the_live_ledger_and_export_entries() {
    let f = fixture(256 * 1024);
    let auditor = Person::new([61; 32], "auditor-1", "纪检监察", Role::Auditor, "13800000061");
    let (status, body) = common::write_numbered(
        &f.state,
        &f.staff.administrator.identity,
        &[auditor.enrolment_request(ORIGIN, &f.staff.administrator.identity)],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Registered by one administrator, the key signs nothing yet: not a
    // request, not even the administrator's own co-signature of it.
    let (status, value) = read(&f.state, &auditor.identity, "/v1/audit").await;
    assert_eq!(
        (status, problem(&value)),
        (
            StatusCode::UNAUTHORIZED,
            "urn:caseledger:problem:key-awaits-co-signature"
        )
    );
    let size = f.state.ledger.size();
    let own = auditor.co_signature(ORIGIN, &f.staff.administrator.identity);
    let (status, value) = write(&f.state, &f.staff.administrator.identity, &[own]).await;
    assert_eq!(
        (status, value["rule"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("key_co_signature")),
        "{value}"
    );
    assert_eq!(f.state.ledger.size(), size, "nothing written");
    // The second administrator co-signs: now it reads.
    let co_signed = auditor.co_signature_request(ORIGIN, &f.staff.co_administrator.identity);
    let (status, body) = common::write_numbered(&f.state, &f.staff.co_administrator.identity, &[co_signed]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, report) = read(&f.state, &auditor.identity, "/v1/audit").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["entries"].as_u64(), Some(f.state.ledger.size()));
    let (status, value) = read(&f.state, &f.staff.officers[0].identity, "/v1/audit").await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::FORBIDDEN, "urn:caseledger:problem:wrong-role")
    );
    let export = |target: &str| {
        let headers = sign_request(
            &auditor.identity,
            caseledger::service::DEFAULT_AUTHORITY,
            "GET",
            target,
            &[],
        );
        let mut request = Request::builder().method("GET").uri(target);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let state = f.state.clone();
        async move {
            let response = app(state)
                .oneshot(request.body(Body::empty()).expect("request"))
                .await
                .expect("response");
            let status = response.status();
            let bytes = response.into_body().collect().await.expect("body").to_bytes();
            (status, String::from_utf8(bytes.to_vec()).expect("utf8"))
        }
    };
    let (status, text) = export("/v1/export?from=2&limit=3").await;
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 3);
    for (i, line) in lines.iter().enumerate() {
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            line["entry"].as_str().expect("b64"),
        )
        .expect("base64");
        assert_eq!(
            bytes,
            f.state.ledger.entry_bytes(2 + i as u64).expect("stored"),
            "as stored"
        );
        assert_eq!(line["seq"], 2 + i as u64);
    }
    // Without a limit: everything from the seq to the head, in order, over
    // several chunks of the stream.
    let receipts: Vec<Record> = (0..600)
        .map(|n| {
            let payload = ReceiptRecorded {
                request_id: format!("export-{n}"),
                bank_reference: format!("EXPORT-{n}"),
                amount_fen: 100,
                payer: "某公司".into(),
                value_date: "2026-11-20".into(),
                channel: Channel::Transfer,
                case_number: None,
            };
            sign(ORIGIN, KIND_RECEIPT_RECORDED, &payload, &f.staff.finance.identity)
        })
        .collect();
    assert_eq!(
        write(&f.state, &f.staff.finance.identity, &receipts).await.0,
        StatusCode::CREATED
    );
    let (_, text) = export("/v1/export?from=0").await;
    let lines: Vec<caseledger_verify::export::ExportLine> = text
        .lines()
        .map(|l| caseledger_verify::export::ExportLine::parse(l).expect("an export line"))
        .collect();
    let seqs: Vec<u64> = lines
        .iter()
        .filter_map(|l| match l {
            caseledger_verify::export::ExportLine::Entry { seq, .. } => Some(*seq),
            caseledger_verify::export::ExportLine::Checkpoint { .. } => None,
        })
        .collect();
    assert_eq!(seqs, (0..f.state.ledger.size()).collect::<Vec<_>>());
    // The export is whole and audits as the ledger does.
    let report = caseledger_verify::export::audit_export(text.lines(), f.state.ledger.node_key());
    assert!(report.ok, "{:?} {:?}", report.first_error, report.violations);
    assert_eq!(report.entries, f.state.ledger.size());
    // Beyond the end there is nothing (404); a limit beyond the document's
    // 64-bit signed integer is refused.
    let (status, _) = export(&format!("/v1/export?from={}", f.state.ledger.size() + 1)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = export("/v1/export?limit=9223372036854775808").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_applicant_verifies_their_disbursement_with_the_code_alone() {
    let f = fixture(256 * 1024);
    let officer = &f.staff.officers[0];
    let case = CaseRecords::new(&f.staff, officer, CASE);
    let (code, issue) = case.applicant_code(1);
    common::open_case(&f.state, &case, 2).await;
    let (status, body) = common::write_numbered(
        &f.state,
        &officer.identity,
        &[
            case.account_request("acct-1", 1, "6222000011113445"),
            (case.confirm("acct-1"), Vec::new()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The node's record of the code it drew (as `POST /v1/applicant-codes` writes it).
    f.state.ledger.append_one(issue).expect("code issued");
    write(
        &f.state,
        &f.staff.finance.identity,
        &[case.receipt("BANK-1", 5_000_000)],
    )
    .await;
    write(&f.state, &officer.identity, &[case.request("d-1", "acct-1", 4_000_000)]).await;
    for (step, role, person) in [
        (1, Role::BureauHead, &f.staff.bureau_head),
        (2, Role::Finance, &f.staff.finance),
    ] {
        let approval = case.approval(
            common::ORIGIN,
            "d-1",
            "acct-1",
            4_000_000,
            step,
            role,
            Decision::Approve,
            person,
        );
        write(&f.state, &person.identity, &[approval]).await;
    }
    write(
        &f.state,
        &f.staff.finance.identity,
        &[case.payment("d-1", "PAY-1", "acct-1", 4_000_000)],
    )
    .await;

    let response = app(f.state.clone())
        .oneshot(
            Request::get(format!("/v1/verify/{code}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let value: Value = serde_json::from_slice(&bytes).expect("json");
    let statements = value["statements"].as_array().expect("statements");
    let words: Vec<&str> = statements.iter().map(|s| s.as_str().expect("text")).collect();
    assert!(
        words
            .iter()
            .any(|w| w.contains("¥40,000.00") && w.contains("****3445") && w.contains("paid")),
        "{words:?}"
    );

    // Offline, with only the node key: the bundle verifies; altered, it does not.
    let bundle: caseledger_verify::bundle::ApplicantBundle =
        serde_json::from_value(value["bundle"].clone()).expect("bundle");
    let node = f.state.ledger.node_key();
    bundle.verify(&node).expect("verifies offline");
    let mut tampered = bundle.clone();
    let last = tampered.entries.len() - 1;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut changed = base64::Engine::decode(&engine, &tampered.entries[last].entry).expect("base64");
    changed[100] ^= 1;
    tampered.entries[last].entry = base64::Engine::encode(&engine, changed);
    assert!(
        tampered.verify(&node).is_err(),
        "a changed entry is not in the checkpointed ledger"
    );
    let mut wrong_payee = bundle.clone();
    wrong_payee.applicant_id = "applicant-2".into();
    assert!(wrong_payee.verify(&node).is_err());
    assert!(
        bundle.verify(&Identity::from_seed([3; 32]).public_key()).is_err(),
        "another node key"
    );

    // The command-line check an applicant runs, with the node's public key file.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bundle.json");
    let key = dir.path().join("node.pub");
    std::fs::write(&file, &bytes).expect("write bundle");
    caseledger_keys::files::write_public_key(&key, &node).expect("write key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args([
            "verify-bundle",
            file.to_str().expect("utf8"),
            "--key",
            key.to_str().expect("utf8"),
        ])
        .output()
        .expect("run verify-bundle");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("¥40,000.00"));
    std::fs::write(&file, serde_json::to_vec(&tampered).expect("json")).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args([
            "verify-bundle",
            file.to_str().expect("utf8"),
            "--key",
            key.to_str().expect("utf8"),
        ])
        .output()
        .expect("run verify-bundle");
    assert_eq!(out.status.code(), Some(1));

    let unknown = app(f.state.clone())
        .oneshot(
            Request::get("/v1/verify/00112233445566778899aabbccddeeff")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn guessing_verification_codes_is_rate_limited() {
    let f = fixture(256 * 1024);
    let mut statuses = Vec::new();
    for n in 0..(caseledger::service::VERIFY_PER_IP_PER_MINUTE + 5) {
        let response = app(f.state.clone())
            .oneshot(
                Request::get(format!("/v1/verify/{n:032x}"))
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        statuses.push(response.status());
    }
    let limit = caseledger::service::VERIFY_PER_IP_PER_MINUTE as usize;
    assert!(
        statuses[..limit].iter().all(|s| *s == StatusCode::NOT_FOUND),
        "{statuses:?}"
    );
    assert!(
        statuses[limit..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

/// Behind the court's TLS proxy every applicant's TCP peer is the proxy:
/// with the proxy trusted, each applicant has their own quota (read from
/// the header the proxy writes, `X-Forwarded-For` here); a client's own
/// `Forwarded`, which such a proxy passes through, is not read; anyone
/// else's forwarded headers are ignored; look-ups and code entries count
/// apart; a 429 says when to retry.
#[tokio::test]
async fn behind_a_trusted_proxy_each_applicant_has_their_own_quota() {
    use caseledger::service::limits::{Limits, Quotas, TrustedProxies};
    let f = fixture(256 * 1024);
    let state = f.state.clone().with_limits(Limits::new(
        TrustedProxies::parse(&["10.0.0.0/24".into()]).expect("proxies"),
        Quotas {
            lookups_per_minute: 3,
            code_entries_per_minute: 2,
            code_entries_per_target_per_hour: 100,
        },
    ));
    let ask = |method: &str, path: String, peer: &str, header: Option<(&str, &str)>| {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let mut request = request.body(Body::from(r#"{"code":"123456"}"#)).expect("request");
        request.extensions_mut().insert(axum::extract::ConnectInfo(
            format!("{peer}:443").parse::<std::net::SocketAddr>().expect("peer"),
        ));
        let state = state.clone();
        async move { app(state).oneshot(request).await.expect("response") }
    };
    let lookup = |n: u32, peer: &'static str, header: Option<(&'static str, &'static str)>| {
        ask("GET", format!("/v1/verify/{n:032x}"), peer, header)
    };
    // Applicant A through the proxy: three look-ups, then 429 with Retry-After.
    let a = Some(("x-forwarded-for", "203.0.113.7"));
    for n in 0..3 {
        assert_eq!(lookup(n, "10.0.0.1", a).await.status(), StatusCode::NOT_FOUND);
    }
    let refused = lookup(3, "10.0.0.1", a).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    let body = refused.into_body().collect().await.expect("body").to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).expect("problem");
    assert_eq!(problem["detail"], format!("try again in {wait} s"));
    // A again, writing a `Forwarded` of their own that the proxy passes
    // through: still A.
    let mut again = Request::builder()
        .uri(format!("/v1/verify/{:032x}", 4))
        .header("forwarded", "for=198.51.100.77")
        .header("x-forwarded-for", "203.0.113.7")
        .body(Body::empty())
        .expect("request");
    again.extensions_mut().insert(axum::extract::ConnectInfo(
        "10.0.0.1:443".parse::<std::net::SocketAddr>().expect("peer"),
    ));
    assert_eq!(
        app(state.clone()).oneshot(again).await.expect("response").status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Applicant B through the same proxy (with a port): their own quota.
    let b = Some(("x-forwarded-for", "[2001:db8::5]:5000"));
    assert_eq!(lookup(10, "10.0.0.2", b).await.status(), StatusCode::NOT_FOUND);
    // A's code entries count apart from A's look-ups (404: no such account).
    let entry = ask("POST", "/v1/accounts/acct-x/confirm".into(), "10.0.0.1", a).await;
    assert_eq!(entry.status(), StatusCode::NOT_FOUND);
    // Someone not behind the proxy claiming to be B is counted as themself.
    let forged_b = Some(("x-forwarded-for", "2001:db8::5"));
    for n in 20..23 {
        assert_eq!(
            lookup(n, "198.51.100.9", forged_b).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        lookup(23, "198.51.100.9", forged_b).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // ... and B still has two look-ups left.
    assert_eq!(lookup(11, "10.0.0.2", b).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(lookup(12, "10.0.0.2", b).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(lookup(13, "10.0.0.2", b).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_idempotency_key_names_the_request() {
    let f = fixture(256 * 1024);
    let case = CaseRecords::new(&f.staff, &f.staff.officers[0], CASE);
    // The filing clerk opens the case.
    let officer = &f.staff.filing_clerk;
    let records = [case.open_request(1)];
    let body = write_body_numbered(&records);
    let request_id: Value = serde_json::from_slice(&records[0].0.payload).expect("json");
    let request_id = request_id["request_id"].as_str().expect("id").to_owned();
    let mut headers = sign_request(
        &officer.identity,
        caseledger::service::DEFAULT_AUTHORITY,
        "POST",
        "/v1/records",
        &body,
    );
    headers.push(("idempotency-key".into(), "something-else".into()));
    let (status, value) = send(&f.state, "POST", "/v1/records", &headers, body.clone()).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::BAD_REQUEST, "urn:caseledger:problem:bad-request")
    );
    for expected in [StatusCode::CREATED, StatusCode::OK] {
        let mut headers = sign_request(
            &officer.identity,
            caseledger::service::DEFAULT_AUTHORITY,
            "POST",
            "/v1/records",
            &body,
        );
        headers.push(("idempotency-key".into(), request_id.clone()));
        let (status, _) = send(&f.state, "POST", "/v1/records", &headers, body.clone()).await;
        assert_eq!(status, expected, "the retry is answered without writing");
    }
}

#[tokio::test]
async fn the_filing_clerk_gives_the_phones_in_clear_the_node_commits_and_the_applicant_is_told() {
    let f = fixture(256 * 1024);
    let officer = &f.staff.officers[0];
    let clerk = &f.staff.filing_clerk;
    let case = CaseRecords::new(&f.staff, officer, CASE);
    let phone = CaseRecords::applicant_phone(1);
    let size = f.state.ledger.size();

    // No commitment oracle: the endpoint is gone.
    let body = serde_json::to_vec(&serde_json::json!({"purpose": "phone", "value": phone})).expect("json");
    let headers = sign_request(
        &officer.identity,
        caseledger::service::DEFAULT_AUTHORITY,
        "POST",
        "/v1/commitments",
        &body,
    );
    assert_eq!(
        send(&f.state, "POST", "/v1/commitments", &headers, body).await.0,
        StatusCode::NOT_FOUND
    );

    // The case's officer may not open it, numbers or not.
    let (record, phones) = case.open_request(1);
    let by_officer = caseledger::court::sign_revealed(
        common::ORIGIN,
        KIND_CASE_OPENED,
        &caseledger::court::revealed::<CaseOpened>(&record),
        &officer.identity,
    );
    let (status, value) = common::write_numbered(&f.state, &officer.identity, &[(by_officer, phones.clone())]).await;
    assert_eq!(
        (status, value["rule"].as_str()),
        (StatusCode::FORBIDDEN, Some("role")),
        "{value}"
    );
    // Without the numbers, with a number that is not the masked one, or
    // with one that is not a phone number: refused, nothing written.
    for numbers in [
        vec![],
        vec!["13912340002".to_owned()],
        vec!["1390000000".to_owned()],
        vec![phone.clone(), phone.clone()],
    ] {
        let (status, value) =
            common::write_numbered(&f.state, &clerk.identity, &[(record.clone(), numbers.clone())]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{numbers:?}: {value}");
    }
    // Numbers with a record that masks none.
    let receipt = case.receipt("BANK-0", 100);
    let (status, _) =
        common::write_numbered(&f.state, &f.staff.finance.identity, &[(receipt, vec![phone.clone()])]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(f.state.ledger.size(), size, "nothing written");

    // The clerk's request: the node's commitment right before the record,
    // computed from the number in the request; the applicant's contact kept.
    let (status, value) = common::write_numbered(&f.state, &clerk.identity, &[(record.clone(), phones.clone())]).await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    let seq = value["seqs"][0].as_u64().expect("seq");
    assert_eq!(value["written"], 2, "the node's numbers_committed and the case");
    let (_, node_entry) = read(
        &f.state,
        &f.staff.administrator.identity,
        &format!("/v1/entries/{}", seq - 1),
    )
    .await;
    assert_eq!(node_entry["kind_name"], "numbers_committed");
    let committed: NumbersCommitted =
        serde_json::from_str(node_entry["payload"].as_str().expect("payload")).expect("json");
    let expected = caseledger::commitments::commitment(
        &f.staff.commitment_key,
        caseledger::commitments::COMMITMENT_PHONE,
        &phone,
    );
    assert_eq!(committed.commitments, vec![expected.clone()]);
    let (_, view) = read(&f.state, &officer.identity, CASE_PATH).await;
    assert_eq!(view["case"]["applicants"][0]["phone_commitment"], expected);
    // A retry writes nothing new, not even a second commitment.
    let (status, retry) = common::write_numbered(&f.state, &clerk.identity, &[(record, phones)]).await;
    assert_eq!((status, retry["written"].as_u64()), (StatusCode::OK, Some(0)));

    write(&f.state, &f.staff.finance.identity, &[case.receipt("BANK-1", 250_000)]).await;
    struct Collect(std::sync::Mutex<Vec<(String, String)>>);
    impl caseledger::service::sms::SmsProvider for Collect {
        fn send(
            &self,
            message: &caseledger::service::sms::Message,
        ) -> Result<String, caseledger::service::sms::SendError> {
            self.0
                .lock()
                .expect("lock")
                .push((message.to.clone(), message.text.clone()));
            Ok(message.id.clone())
        }
    }
    let provider = Arc::new(Collect(std::sync::Mutex::new(Vec::new())));
    let mut worker = caseledger::service::sms::Deliverer::new(
        f.state.ledger.clone(),
        provider.clone(),
        f.staff.commitment_key,
        Default::default(),
    );
    assert_eq!(worker.run_once(0).expect("pass").sent, 1);
    let sent = provider.0.lock().expect("lock").clone();
    assert_eq!(sent[0].0, phone, "the number the clerk gave");
    assert!(sent[0].1.contains("¥2,500.00"), "{}", sent[0].1);
}

/// The bureau head's step 1 of d-1 (¥40,000 to acct-1) carrying `code`,
/// under request id `request`.
fn head_step(case: &CaseRecords, head: &Person, code: &str, request: &str) -> Record {
    let record = case.approval(
        common::ORIGIN,
        "d-1",
        "acct-1",
        4_000_000,
        1,
        Role::BureauHead,
        Decision::Approve,
        head,
    );
    let mut statement: ApprovalSigned = serde_json::from_slice(&record.payload).expect("json");
    statement.request_id = request.into();
    statement.sms_code = Some(code.into());
    sign(ORIGIN, KIND_APPROVAL_SIGNED, &statement, &head.identity)
}

fn last_code(phone: &Phone) -> String {
    let texts = phone.0.lock().expect("lock");
    let text = &texts.last().expect("an SMS").1;
    text.chars().filter(char::is_ascii_digit).take(6).collect()
}

/// Case `CASE` with account acct-1 and ¥50,000 received, and disbursement
/// d-1 of ¥40,000 awaiting the bureau head's step.
async fn awaiting_the_bureau_head(f: &Fixture) {
    let officer = &f.staff.officers[0];
    let case = CaseRecords::new(&f.staff, officer, CASE);
    common::open_case(&f.state, &case, 1).await;
    let opened = [
        case.account_request("acct-1", 1, "6222000011110001"),
        (case.confirm("acct-1"), Vec::new()),
    ];
    assert_eq!(
        common::write_numbered(&f.state, &officer.identity, &opened).await.0,
        StatusCode::CREATED
    );
    let receipt = [case.receipt("BANK-1", 5_000_000)];
    assert_eq!(
        write(&f.state, &f.staff.finance.identity, &receipt).await.0,
        StatusCode::CREATED
    );
    let request = [case.request("d-1", "acct-1", 4_000_000)];
    assert_eq!(
        write(&f.state, &officer.identity, &request).await.0,
        StatusCode::CREATED
    );
}

/// Records the bureau head's phone (administrator); another number is refused.
async fn head_phone_on_file(f: &Fixture) {
    let head = &f.staff.bureau_head;
    let wrong =
        serde_json::to_vec(&serde_json::json!({"member_id": head.member_id, "phone": "13000000000"})).expect("json");
    let headers = sign_request(
        &f.staff.administrator.identity,
        caseledger::service::DEFAULT_AUTHORITY,
        "POST",
        "/v1/contacts/members",
        &wrong,
    );
    assert_eq!(
        send(&f.state, "POST", "/v1/contacts/members", &headers, wrong).await.0,
        StatusCode::BAD_REQUEST
    );
    let body =
        serde_json::to_vec(&serde_json::json!({"member_id": head.member_id, "phone": head.phone})).expect("json");
    let headers = sign_request(
        &f.staff.administrator.identity,
        caseledger::service::DEFAULT_AUTHORITY,
        "POST",
        "/v1/contacts/members",
        &body,
    );
    assert_eq!(
        send(&f.state, "POST", "/v1/contacts/members", &headers, body).await.0,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn an_approval_step_confirmed_by_the_code_sent_to_the_approvers_phone() {
    let mut f = fixture(256 * 1024);
    let phone = Arc::new(Phone::default());
    f.state = f.state.clone().with_sms(phone.clone());
    let officer = &f.staff.officers[0];
    let head = &f.staff.bureau_head;
    let case = CaseRecords::new(&f.staff, officer, CASE);
    awaiting_the_bureau_head(&f).await;

    // No phone on file yet: no challenge.
    let target = "/v1/disbursements/d-1/steps/1/challenge";
    let (status, value) = send(
        &f.state,
        "POST",
        target,
        &sign_request(
            &head.identity,
            caseledger::service::DEFAULT_AUTHORITY,
            "POST",
            target,
            &[],
        ),
        Vec::new(),
    )
    .await;
    assert_eq!(
        (status, value["rule"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("sms_confirmation"))
    );
    head_phone_on_file(&f).await;
    // Finance is not the next step's role.
    let (status, _) = send(
        &f.state,
        "POST",
        target,
        &sign_request(
            &f.staff.finance.identity,
            caseledger::service::DEFAULT_AUTHORITY,
            "POST",
            target,
            &[],
        ),
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, challenge) = send(
        &f.state,
        "POST",
        target,
        &sign_request(
            &head.identity,
            caseledger::service::DEFAULT_AUTHORITY,
            "POST",
            target,
            &[],
        ),
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{challenge}");
    assert!(challenge["statement"].as_str().expect("words").contains("¥40,000.00"));
    assert!(
        challenge.get("salt").is_none(),
        "the salt of the commitment stays with the node: {challenge}"
    );
    let sent_to = phone.0.lock().expect("lock").last().expect("sms").0.clone();
    assert_eq!(sent_to, head.phone);
    let code = last_code(&phone);
    let approval = |code: &str, request: &str| head_step(&case, head, code, request);

    let wrong = if code == "000000" { "111111" } else { "000000" };
    // A forged request signature is refused before the code is looked at:
    // it spends none of the five tries.
    for attempt in 0..6 {
        let body = write_body(&[approval(wrong, &format!("forged-{attempt}"))]);
        let headers = with_forged_signature(
            sign_request(
                &head.identity,
                caseledger::service::DEFAULT_AUTHORITY,
                "POST",
                "/v1/records",
                &body,
            ),
            head,
        );
        let (status, value) = send(&f.state, "POST", "/v1/records", &headers, body).await;
        assert_eq!(
            (status, problem(&value)),
            (StatusCode::UNAUTHORIZED, "urn:caseledger:problem:bad-signature")
        );
    }
    for attempt in 0..5 {
        let (status, value) = write(&f.state, &head.identity, &[approval(wrong, &format!("try-{attempt}"))]).await;
        assert_eq!(
            (status, value["rule"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("sms_code"))
        );
    }
    let (_, value) = write(&f.state, &head.identity, &[approval(&code, "after-lock")]).await;
    assert_eq!(value["rule"], "sms_locked", "five wrong codes lock the challenge");

    // A new challenge (the limiter allows a second one in the minute, not a third).
    let (status, challenge) = send(
        &f.state,
        "POST",
        target,
        &sign_request(
            &head.identity,
            caseledger::service::DEFAULT_AUTHORITY,
            "POST",
            target,
            &[],
        ),
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let code = last_code(&phone);
    let (status, _) = send(
        &f.state,
        "POST",
        target,
        &sign_request(
            &head.identity,
            caseledger::service::DEFAULT_AUTHORITY,
            "POST",
            target,
            &[],
        ),
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, body) = write(&f.state, &head.identity, &[approval(&code, "right")]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The answer names the approver's own record; right before it the node
    // opened its commitment, in the same request.
    let seqs: Vec<u64> = serde_json::from_value(body["seqs"].clone()).expect("seqs");
    assert_eq!(seqs.len(), 1, "{body}");
    let entry = |seq: u64| {
        caseledger_verify::entry::Entry::decode(&f.state.ledger.entry_bytes(seq).expect("entry")).expect("decodes")
    };
    let step = entry(seqs[0]);
    assert_eq!(step.record.kind, KIND_APPROVAL_SIGNED);
    let opening = entry(seqs[0] - 1);
    assert_eq!(opening.record.kind, KIND_SMS_CODE_REVEALED);
    assert_eq!(opening.record.signer, f.state.ledger.node_key().key_id());
    let opened: SmsCodeRevealed = serde_json::from_slice(&opening.record.payload).expect("json");
    assert_eq!(opened.code, code);
    // Nothing the approver saw before the step told the salt: not the
    // challenge's answer (checked above), not its request id.
    let challenge_entry = entry(challenge["challenge_seq"].as_u64().expect("seq"));
    let committed: SmsChallenge = serde_json::from_slice(&challenge_entry.record.payload).expect("json");
    assert!(
        !committed.request_id.contains(&opened.salt[..8]),
        "{} tells the salt",
        committed.request_id
    );
    // A retry of the same step writes nothing new and opens nothing again.
    let size = f.state.ledger.size();
    let (status, again) = write(&f.state, &head.identity, &[approval(&code, "right")]).await;
    assert_eq!((status, again["seqs"].clone()), (StatusCode::OK, body["seqs"].clone()));
    assert_eq!(f.state.ledger.size(), size);
    let report = f.state.ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
    assert_eq!(report.sms_confirmations_verified, 1);
}

/// Five wrong codes lock a challenge however many arrive at once: the
/// tries are counted one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_codes_are_counted_one_by_one() {
    let mut f = fixture(256 * 1024);
    let phone = Arc::new(Phone::default());
    f.state = f.state.clone().with_sms(phone.clone());
    let head = &f.staff.bureau_head;
    let case = CaseRecords::new(&f.staff, &f.staff.officers[0], CASE);
    awaiting_the_bureau_head(&f).await;
    head_phone_on_file(&f).await;
    let target = "/v1/disbursements/d-1/steps/1/challenge";
    let headers = sign_request(
        &head.identity,
        caseledger::service::DEFAULT_AUTHORITY,
        "POST",
        target,
        &[],
    );
    let (status, challenge) = send(&f.state, "POST", target, &headers, Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "{challenge}");
    let code = last_code(&phone);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let size = f.state.ledger.size();
    // The bureau head's step 1 with `code`, under request id `request`.
    let step = |code: &str, request: &str| head_step(&case, head, code, request);

    let tries = (0..16).map(|n| {
        let record = step(wrong, &format!("guess-{n}"));
        let state = f.state.clone();
        let identity = head.identity.clone();
        tokio::spawn(async move { write(&state, &identity, &[record]).await })
    });
    let mut rules = Vec::new();
    for task in tries.collect::<Vec<_>>() {
        let (status, value) = task.await.expect("task");
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{value}");
        rules.push(value["rule"].as_str().expect("rule").to_owned());
    }
    let wrong_codes = rules.iter().filter(|r| *r == "sms_code").count();
    let locked = rules.iter().filter(|r| *r == "sms_locked").count();
    assert_eq!((wrong_codes, locked), (5, 11), "{rules:?}");
    // The right code cannot sign any more: the challenge is locked.
    let record = step(&code, "right-but-locked");
    let (_, value) = write(&f.state, &head.identity, &[record]).await;
    assert_eq!(value["rule"], "sms_locked");
    assert_eq!(f.state.ledger.size(), size, "nothing written");
}

#[tokio::test]
async fn an_approval_code_dies_after_the_configured_lifetime() {
    let mut f = fixture(256 * 1024);
    let phone = Arc::new(Phone::default());
    f.state = f.state.clone().with_sms(phone.clone()).with_code_ttl_ms(50);
    let head = &f.staff.bureau_head;
    let case = CaseRecords::new(&f.staff, &f.staff.officers[0], CASE);
    awaiting_the_bureau_head(&f).await;
    head_phone_on_file(&f).await;
    let target = "/v1/disbursements/d-1/steps/1/challenge";
    let (status, challenge) = send(
        &f.state,
        "POST",
        target,
        &sign_request(
            &head.identity,
            caseledger::service::DEFAULT_AUTHORITY,
            "POST",
            target,
            &[],
        ),
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{challenge}");
    let code = last_code(&phone);
    tokio::time::sleep(Duration::from_millis(120)).await;
    let size = f.state.ledger.size();
    let (status, value) = write(
        &f.state,
        &head.identity,
        &[head_step(&case, head, &code, "expired-step")],
    )
    .await;
    assert_eq!(
        (status, value["rule"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("sms_confirmation"))
    );
    assert!(value["detail"].as_str().expect("detail").contains("expired"), "{value}");
    assert_eq!(f.state.ledger.size(), size, "nothing written");
}

#[tokio::test]
async fn an_applicant_gets_a_verification_code_by_sms_and_only_the_applicant() {
    let mut f = fixture(256 * 1024);
    let phone = Arc::new(Phone::default());
    f.state = f.state.clone().with_sms(phone.clone());
    let officer = &f.staff.officers[0];
    let case = CaseRecords::new(&f.staff, officer, CASE);
    // Opened behind the service: no contact kept.
    f.state.ledger.append(case.open(1)).expect("open");
    let issue = |signer: &Identity, body: Vec<u8>| {
        let headers = sign_request(
            signer,
            caseledger::service::DEFAULT_AUTHORITY,
            "POST",
            "/v1/applicant-codes",
            &body,
        );
        let state = f.state.clone();
        async move { send(&state, "POST", "/v1/applicant-codes", &headers, body).await }
    };
    let body = |applicant: &str| {
        serde_json::to_vec(&serde_json::json!({"case_number": CASE, "applicant_id": applicant})).expect("json")
    };
    let size = f.state.ledger.size();
    // No phone on file: nothing is written.
    let (status, value) = issue(&officer.identity, body("applicant-1")).await;
    assert_eq!(
        (status, value["rule"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("sms_confirmation"))
    );
    caseledger::service::sms::put_contact(
        &f.state.ledger,
        &caseledger_verify::funds::notify::applicant_contact(CASE, "applicant-1"),
        &CaseRecords::applicant_phone(1),
    )
    .expect("the operator keeps the number");
    // A code the officer chose, an applicant the case does not have, and
    // another officer: refused.
    let chosen = serde_json::to_vec(&serde_json::json!({
        "case_number": CASE, "applicant_id": "applicant-1", "code": "00000000000000000000000000000000"
    }))
    .expect("json");
    assert_eq!(issue(&officer.identity, chosen).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        issue(&officer.identity, body("applicant-9")).await.0,
        StatusCode::NOT_FOUND
    );
    let other = &f.staff.officers[1];
    assert_eq!(
        issue(&other.identity, body("applicant-1")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(f.state.ledger.size(), size, "nothing written");
    assert!(phone.0.lock().expect("lock").is_empty(), "no SMS sent");

    // The node draws the code: it goes to the applicant only.
    let (status, value) = issue(&officer.identity, body("applicant-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    assert_eq!(value["sent_to"], "****0001");
    assert!(
        !value.to_string().contains("code\":"),
        "the officer is not given the code: {value}"
    );
    let (to, text) = phone.0.lock().expect("lock").last().cloned().expect("an SMS");
    assert_eq!(to, "13900000001");
    let code: String = text
        .split_once("查询码为")
        .expect("a code")
        .1
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    // 16 symbols of Crockford's base32 and a check symbol, in groups of four.
    assert_eq!(code.len(), 17 + 4, "{text}");
    let canonical = caseledger_verify::funds::applicant_code::canonical(&code).expect("a code that reads");
    assert!(
        text.contains(&format!("/v1/verify#c={canonical}")),
        "the link carries the code: {text}"
    );
    let fingerprint = f.state.ledger.node_key().key_id().fingerprint();
    assert!(text.contains(&fingerprint), "the node key's fingerprint: {text}");
    assert!(text.contains(CASE), "{text}");
    let issued = f
        .state
        .ledger
        .entry(value["seq"].as_u64().expect("seq"))
        .expect("entry");
    assert_eq!(
        issued.record.signer,
        f.state.ledger.node_key().key_id(),
        "signed by the node"
    );
    // The officer is named by their member reference, not their id (§3j).
    let payload: ApplicantCodeIssued = caseledger::court::revealed(&issued.record);
    assert_eq!(payload.requested_by, format!("sd:{}", officer.reference().digest));
    assert!(!String::from_utf8_lossy(&issued.record.payload).contains(&officer.member_id));
    // The code opens the applicant's view; the ledger keeps only its hash.
    let (status, _) = send(&f.state, "GET", &format!("/v1/verify/{code}"), &[], Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    let entry = f
        .state
        .ledger
        .entry(value["seq"].as_u64().expect("seq"))
        .expect("entry");
    assert!(!String::from_utf8_lossy(&entry.record.payload).contains(&code));
    assert!(payload.expires_ms.is_some_and(|e| e > entry.timestamp_ms), "it expires");

    // Typed as people type: lower case, spaces for hyphens.
    let typed = code.to_lowercase().replace('-', "%20");
    let (status, _) = send(&f.state, "GET", &format!("/v1/verify/{typed}"), &[], Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "{typed}");
    // A slip of one symbol is told apart from an unknown code.
    let mut slipped = code.clone().into_bytes();
    slipped[0] = if slipped[0] == b'A' { b'B' } else { b'A' };
    let slipped = String::from_utf8(slipped).expect("ASCII");
    let (status, value) = send(&f.state, "GET", &format!("/v1/verify/{slipped}"), &[], Vec::new()).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::NOT_FOUND, "urn:caseledger:problem:code-mistyped"),
        "{value}"
    );
    let (status, value) = send(&f.state, "GET", "/v1/verify/ABC", &[], Vec::new()).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::BAD_REQUEST, "urn:caseledger:problem:code-malformed"),
        "{value}"
    );
    // Revoked by the officer: it says so.
    let revoked = caseledger::court::sign(
        &f.staff.origin,
        KIND_APPLICANT_CODE_REVOKED,
        &ApplicantCodeRevoked {
            request_id: "revoke-1".into(),
            code_hash: payload.code_hash.clone(),
        },
        &officer.identity,
    );
    assert_eq!(
        write(&f.state, &officer.identity, &[revoked]).await.0,
        StatusCode::CREATED
    );
    let (status, value) = send(&f.state, "GET", &format!("/v1/verify/{code}"), &[], Vec::new()).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::GONE, "urn:caseledger:problem:code-revoked"),
        "{value}"
    );
    // A code issued to live one millisecond has expired when it is used.
    let short = f.state.clone().with_applicant_code_ttl_ms(1);
    let request = body("applicant-1");
    let headers = sign_request(
        &officer.identity,
        caseledger::service::DEFAULT_AUTHORITY,
        "POST",
        "/v1/applicant-codes",
        &request,
    );
    let (status, value) = send(&short, "POST", "/v1/applicant-codes", &headers, request).await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    let (_, text) = phone.0.lock().expect("lock").last().cloned().expect("an SMS");
    let short_lived: String = text
        .split_once("#c=")
        .expect("the link")
        .1
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    std::thread::sleep(Duration::from_millis(5));
    let (status, value) = send(&short, "GET", &format!("/v1/verify/{short_lived}"), &[], Vec::new()).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::GONE, "urn:caseledger:problem:code-expired"),
        "{value}"
    );
}

#[tokio::test]
async fn each_route_has_its_own_time_limit_and_a_timeout_is_a_problem_document() {
    let mut f = fixture(4 * 1024 * 1024);
    // Ordinary routes get 5 ms; the audit keeps its own 30 minutes.
    f.state = AppState::new(f.state.ledger.clone(), 4 * 1024 * 1024, Duration::from_millis(5))
        .with_commitment_key(f.staff.commitment_key);
    let officer = &f.staff.officers[0];
    let case = CaseRecords::new(&f.staff, officer, CASE);
    // Opened behind the service: no contact kept.
    f.state.ledger.append(case.open(1)).expect("open");
    // An auditor, enrolled behind the service too (under the 5 ms limit an
    // enrolment through it may answer with a timeout before it lands).
    let auditor = Person::new([77; 32], "auditor-1", "审计员", Role::Auditor, "13900007777");
    f.state.ledger.append(f.staff.enrol(&auditor)).expect("auditor");
    // A thousand receipts: their signature checks alone take ~25 ms on 2 cores.
    let receipts: Vec<Record> = (0..1000).map(|n| case.receipt(&format!("SLOW-{n}"), 100)).collect();
    let (status, value) = write(&f.state, &f.staff.finance.identity, &receipts).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::REQUEST_TIMEOUT, "urn:caseledger:problem:timeout")
    );
    // The write was not cancelled by the timeout: it lands, and a retry says so.
    let size = f.state.ledger.size();
    for _ in 0..200 {
        if f.state.ledger.size() > size {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The audit of the whole ledger takes far longer than 5 ms, and answers.
    let (status, report) = read(&f.state, &auditor.identity, "/v1/audit").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["entries"].as_u64(), Some(f.state.ledger.size()));
}

#[test]
fn at_most_five_new_codes_an_hour_for_one_approver_or_account() {
    let f = fixture(1024);
    // Lift the per-minute limit to see the hourly one alone.
    let state = AppState {
        challenge_limiter: Arc::new(governor::RateLimiter::keyed(governor::Quota::per_second(
            std::num::NonZeroU32::new(1000).expect("positive"),
        ))),
        ..f.state.clone()
    };
    for n in 1..=5 {
        assert!(state.challenge_allowed("head-1").is_ok(), "code {n} of the hour");
    }
    // A sixth in the hour: refused, saying to wait most of the hour.
    match state.challenge_allowed("head-1") {
        Err(caseledger::service::problem::ApiError::RateLimited { retry_after }) => {
            assert!(retry_after > std::time::Duration::from_secs(600), "{retry_after:?}")
        }
        other => panic!("a sixth in the hour: {other:?}"),
    }
    assert!(
        state.challenge_allowed("account/acct-1").is_ok(),
        "limits are per approver or account"
    );
    // With the default limits, a third code within the minute is refused,
    // saying to wait under a minute.
    assert!(f.state.challenge_allowed("head-2").is_ok() && f.state.challenge_allowed("head-2").is_ok());
    match f.state.challenge_allowed("head-2") {
        Err(caseledger::service::problem::ApiError::RateLimited { retry_after }) => {
            assert!(retry_after <= std::time::Duration::from_secs(60), "{retry_after:?}")
        }
        other => panic!("a third in the minute: {other:?}"),
    }
}

/// A signed challenge request captured on the wire cannot be replayed to
/// send the approver another SMS: not before a restart (the nonce is
/// spent), and not after one (the nonces of the earlier run are gone, so
/// every signature made before the start is refused).
#[tokio::test]
async fn a_captured_challenge_request_replays_neither_before_nor_after_a_restart() {
    let mut f = fixture(256 * 1024);
    let phone = Arc::new(Phone::default());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    // The first run started a minute ago.
    f.state = AppState {
        nonces: Arc::new(httpsig::NonceCache::since(now - 60)),
        ..f.state.clone().with_sms(phone.clone())
    };
    awaiting_the_bureau_head(&f).await;
    head_phone_on_file(&f).await;
    let head = &f.staff.bureau_head;
    let target = "/v1/disbursements/d-1/steps/1/challenge";
    let captured = httpsig::sign(
        &head.identity,
        "POST",
        caseledger::service::DEFAULT_AUTHORITY,
        target,
        None,
        &[],
        now - 2,
        "captured-nonce-0123456789",
    );
    let (status, _) = send(&f.state, "POST", target, &captured, Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(phone.0.lock().expect("lock").len(), 1);
    let (status, value) = send(&f.state, "POST", target, &captured, Vec::new()).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::UNAUTHORIZED, "urn:caseledger:problem:replay")
    );
    // Restarted now: a fresh nonce cache.
    let restarted = AppState {
        nonces: Arc::new(httpsig::NonceCache::since(now)),
        ..f.state.clone()
    };
    let (status, value) = send(&restarted, "POST", target, &captured, Vec::new()).await;
    assert_eq!(
        (status, problem(&value)),
        (StatusCode::UNAUTHORIZED, "urn:caseledger:problem:signature-expired")
    );
    assert_eq!(phone.0.lock().expect("lock").len(), 1, "no second SMS");
}

/// The administrator gives an officer's phone in clear; the node commits
/// to it; that phone can then not be filed as an applicant's of a case the
/// officer handles (third attack round, finding B).
#[tokio::test]
async fn an_officer_enrolled_through_the_service_cannot_be_filed_as_an_applicant() {
    let f = fixture(256 * 1024);
    let admin = &f.staff.administrator.identity;
    let officer = Person::new([93; 32], "officer-93", "陈承办", Role::Officer, "13912345678");
    // A made-up commitment in the registration: refused.
    let (record, phone) = officer.enrolment_request(ORIGIN, admin);
    let mut payload: caseledger_verify::record::KeyRegistered = caseledger::court::revealed(&record);
    payload.member.as_mut().expect("member").phone_commitment = "ab".repeat(32);
    let made_up =
        caseledger::court::sign_revealed(ORIGIN, caseledger_verify::record::KIND_KEY_REGISTERED, &payload, admin);
    let (status, value) = common::write_numbered(&f.state, admin, &[(made_up, phone.clone())]).await;
    assert_eq!(
        (status, value["rule"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("commitment")),
        "{value}"
    );
    // The phone in clear: the node commits.
    let (status, value) = common::write_numbered(&f.state, admin, &[(record, phone)]).await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    assert_eq!(value["written"], 2);
    let co_signed = officer.co_signature_request(ORIGIN, &f.staff.co_administrator.identity);
    let (status, value) = common::write_numbered(&f.state, &f.staff.co_administrator.identity, &[co_signed]).await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    // The officer's phone as an applicant's: refused, nothing written.
    let case = CaseRecords::new(&f.staff, &officer, "(2022)苏02执10号");
    let (record, _) = case.open_request(1);
    let mut opened: CaseOpened = caseledger::court::revealed(&record);
    opened.applicants[0].phone_masked = caseledger::commitments::mask("13912345678");
    let record = caseledger::court::sign_revealed(ORIGIN, KIND_CASE_OPENED, &opened, &f.staff.filing_clerk.identity);
    let size = f.state.ledger.size();
    let (status, value) = common::write_numbered(
        &f.state,
        &f.staff.filing_clerk.identity,
        &[(record, vec!["13912345678".to_owned()])],
    )
    .await;
    assert_eq!(
        (status, value["rule"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("phone_of_member")),
        "{value}"
    );
    assert_eq!(f.state.ledger.size(), size);
}

/// A provider that refuses everything, for good.
struct Refusing;

impl caseledger::service::sms::SmsProvider for Refusing {
    fn send(
        &self,
        _message: &caseledger::service::sms::Message,
    ) -> Result<String, caseledger::service::sms::SendError> {
        Err(caseledger::service::sms::SendError::transient("gateway down"))
    }
}

/// An administrator sends a dead letter again (`POST
/// /v1/notifications/{id}/resend`, or `caseledger sms resend ID`): its
/// delivery starts over and it reaches the applicant. Other members may
/// not; a message that is no dead letter is not found.
#[tokio::test]
async fn administrators_send_dead_letters_again() {
    use caseledger::service::sms::{self, Deliverer, DeliveryOptions, DeliveryStatus};
    let f = fixture(256 * 1024);
    let case = CaseRecords::new(&f.staff, &f.staff.officers[0], "(2026)苏02执51号");
    f.state
        .ledger
        .append([case.open(1), vec![case.receipt("BANK-51", 5_100)]].concat())
        .expect("case and receipt");
    let (_, notification) = f.state.ledger.outbox_from("", 1).expect("outbox").remove(0);
    sms::put_contact(
        &f.state.ledger,
        &notification.recipient,
        &CaseRecords::applicant_phone(1),
    )
    .expect("contact");
    let options = || DeliveryOptions {
        attempts_max: 1,
        retry_for_ms: 0,
        ..DeliveryOptions::default()
    };
    let mut down = Deliverer::new(
        f.state.ledger.clone(),
        Arc::new(Refusing),
        f.staff.commitment_key,
        options(),
    );
    let pass = down.run_once(1).expect("pass");
    assert_eq!(pass.dead, 1, "{pass:?}");
    let target = format!("/v1/notifications/{}/resend", notification.id);
    let resend_as = |signer: &Identity| {
        let headers = sign_request(signer, caseledger::service::DEFAULT_AUTHORITY, "POST", &target, &[]);
        let (state, target) = (f.state.clone(), target.clone());
        async move { send(&state, "POST", &target, &headers, Vec::new()).await }
    };
    let (status, value) = resend_as(&f.staff.officers[0].identity).await;
    assert_eq!(
        (status, value["rule"].as_str()),
        (StatusCode::FORBIDDEN, Some("role")),
        "{value}"
    );
    let (status, value) = resend_as(&f.staff.administrator.identity).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{value}");
    assert_eq!(value["delivery"]["status"], "pending", "{value}");
    assert_eq!(value["delivery"]["attempts"], 0, "{value}");
    let (status, _) = resend_as(&f.staff.administrator.identity).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no longer a dead letter");
    let phone = Arc::new(Phone::default());
    let mut back = Deliverer::new(f.state.ledger.clone(), phone.clone(), f.staff.commitment_key, options());
    // The service's worker runs on the wall clock, as the resend does.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    assert_eq!(back.run_once(now_ms + 1_000).expect("pass").sent, 1);
    let state = sms::delivery(&f.state.ledger, &notification.id)
        .expect("read")
        .expect("state");
    assert_eq!(state.status, DeliveryStatus::Sent);
    assert_eq!(phone.0.lock().expect("lock").len(), 1);
}

/// A filing clerk's client names the case's officer by the reference the
/// service gives (`GET /v1/members/{id}`) and conceals the parties with
/// salts of its own (docs/FORMAT.md §3j); the case is written, and an
/// administrator reads the disclosures beside the entry.
#[tokio::test]
async fn a_client_conceals_the_parties_with_its_own_salts_and_the_officers_reference() {
    use caseledger_verify::disclosure::conceal;
    let f = fixture(256 * 1024);
    let clerk = &f.staff.filing_clerk;
    let officer = &f.staff.officers[1];
    let target = format!("/v1/members/{}", officer.member_id);
    let (status, member) = read(&f.state, &clerk.identity, &target).await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!(member["reference"], officer.reference().digest.as_str());
    assert_eq!(
        (member["role"].as_str(), member["active"].as_bool()),
        (Some("officer"), Some(true))
    );
    assert_eq!(
        read(&f.state, &clerk.identity, "/v1/members/nobody-9").await.0,
        StatusCode::NOT_FOUND
    );
    let unsigned = send(&f.state, "GET", &target, &[], Vec::new()).await;
    assert_eq!(unsigned.0, StatusCode::UNAUTHORIZED);

    let salt = || hex::encode(rand::random::<[u8; 16]>());
    let applicant = Applicant {
        applicant_id: "applicant-1".into(),
        name: "钱申请".into(),
        phone_masked: "****5678".into(),
        phone_commitment: String::new(),
    };
    let (party, party_text) = conceal(&salt(), &applicant);
    let (respondent, respondent_text) = conceal(&salt(), &"某建设公司");
    let payload = serde_json::json!({
        "request_id": "open-by-client", "case_number": "(2026)苏02执500号",
        "applicants": [party], "respondents": [respondent],
        "officer_member_id": {"_sd": member["reference"]},
    });
    let record = sign(ORIGIN, KIND_CASE_OPENED, &payload, &clerk.identity)
        .with_disclosures(vec![party_text.clone(), respondent_text.clone()]);
    let (status, written) =
        common::write_numbered(&f.state, &clerk.identity, &[(record, vec!["13912345678".into()])]).await;
    assert_eq!(status, StatusCode::CREATED, "{written}");
    let seq = written["seqs"][0].as_u64().expect("the filing's seq");
    let (status, entry) = read(&f.state, &f.staff.administrator.identity, &format!("/v1/entries/{seq}")).await;
    assert_eq!(status, StatusCode::OK, "{entry}");
    assert_eq!(entry["disclosures"], serde_json::json!([party_text, respondent_text]));
    assert!(!entry["payload"].as_str().expect("payload").contains("钱申请"));
    let case: Value = read(
        &f.state,
        &clerk.identity,
        "/v1/cases/%282026%29%E8%8B%8F02%E6%89%A7500%E5%8F%B7",
    )
    .await
    .1;
    assert!(
        case.to_string().contains(&officer.member_id),
        "the court's view names the officer: {case}"
    );
}
