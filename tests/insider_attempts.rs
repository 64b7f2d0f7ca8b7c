//! The fourth attack round, kept as tests: applicants' phone
//! confirmation, node-drawn applicant codes, member enrolments committed
//! by the node. Two findings are open in issue 15 (the node acts on
//! derived state a database writer changed: an applicant's commitment
//! swapped sends their phone code to the insider; a phone marked confirmed
//! lets an account in); the tests here show the replay names both.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use caseledger::court::{CaseRecords, Person, Staff};
use caseledger::service::client::sign_request;
use caseledger::service::AppState;
use caseledger_keys::Identity;
use caseledger_verify::funds::model::*;
use common::*;
use serde_json::Value;

const CASE: &str = "(2026)苏02执31号";
const PATH: &str = "/v1/cases/(2026)%E8%8B%8F02%E6%89%A731%E5%8F%B7/applicants";

async fn signed(state: &AppState, signer: &Identity, target: &str) -> (StatusCode, Value) {
    let headers = sign_request(signer, caseledger::service::DEFAULT_AUTHORITY, "POST", target, &[]);
    send(state, "POST", target, &headers, Vec::new()).await
}

async fn signed_json(state: &AppState, signer: &Identity, target: &str, body: &Value) -> (StatusCode, Value) {
    let body = serde_json::to_vec(body).expect("json");
    let headers = sign_request(signer, caseledger::service::DEFAULT_AUTHORITY, "POST", target, &body);
    send(state, "POST", target, &headers, body).await
}

async fn confirm(state: &AppState, applicant: u32, code: &str) -> (StatusCode, Value) {
    let body = serde_json::to_vec(&serde_json::json!({ "code": code })).expect("json");
    send(
        state,
        "POST",
        &format!("{PATH}/applicant-{applicant}/phone-confirm"),
        &[("content-type".into(), "application/json".into())],
        body,
    )
    .await
}

async fn challenge(state: &AppState, who: &Identity, applicant: u32) -> (StatusCode, Value) {
    signed(state, who, &format!("{PATH}/applicant-{applicant}/phone-challenge")).await
}

/// The code in the last SMS sent to `to`.
fn last_code(phone: &Phone, to: &str) -> Option<String> {
    let sent = phone.0.lock().expect("lock").clone();
    sent.iter()
        .rev()
        .find(|(number, _)| number == to)
        .map(|(_, text)| text.split_once("验证码").expect("a code").1.chars().take(6).collect())
}

fn sms_state(dir: &std::path::Path, seed: u64) -> (AppState, Staff, Arc<Phone>) {
    let (ledger, staff) = court_requiring_sms(dir, seed, clock());
    let phone = Arc::new(Phone::default());
    let state = service_state(ledger, &staff).with_sms(phone.clone());
    (state, staff, phone)
}

/// What a database insider does with the ledger closed: rewrites the
/// derived case [`CASE`] in the `state` column family.
fn tamper_with_the_case(dir: &std::path::Path, edit: impl FnOnce(&mut Value)) {
    let db = raw_db(dir);
    let cf = db.cf_handle("state").expect("state");
    let key = caseledger_verify::funds::case_key(CASE);
    let mut case_state: Value =
        serde_json::from_slice(&db.get_cf(cf, key.as_bytes()).expect("get").expect("case")).expect("json");
    edit(&mut case_state);
    db.put_cf(cf, key.as_bytes(), serde_json::to_vec(&case_state).expect("json"))
        .expect("put");
}

/// The ledger in `dir`, whose derived state an insider edited after a
/// clean close, opens refusing writes: the node's seal of its clean close
/// no longer matches (`state_seal`); with the seal deleted as well, the
/// open replays the chain and names the edit (`derived_state`), as
/// `verify` does.
fn refused_on_open(dir: &std::path::Path) {
    use caseledger_ledger::store::Ledger;
    let ledger = Ledger::open(dir, clock(), options()).expect("opens, refusing writes");
    let (_, detail) = ledger.corruption().expect("the edit is found before any write");
    assert!(detail.starts_with("state_seal"), "{detail}");
    drop(ledger);
    {
        let db = raw_db(dir);
        db.delete_cf(db.cf_handle("meta").expect("meta"), b"state_seal")
            .expect("delete the seal");
    }
    let ledger = Ledger::open(dir, clock(), options()).expect("opens, refusing writes");
    let (_, detail) = ledger.corruption().expect("the replay finds the edit");
    assert!(detail.starts_with("derived_state"), "{detail}");
    assert!(matches!(
        ledger.append_one(caseledger::court::sign(
            ORIGIN,
            KIND_RECEIPT_RECORDED,
            &serde_json::json!({}),
            &caseledger_keys::Identity::from_seed([9; 32])
        )),
        Err(caseledger_ledger::Error::Corrupt { .. })
    ));
    drop(ledger);
    let report = audit(dir);
    assert!(report.violations.iter().any(|v| v.rule == "derived_state"));
}

fn rule_of(value: &Value) -> Option<&str> {
    value["rule"].as_str()
}

/// A database insider who is also the case's officer rewrites, in the
/// derived state, applicant 1's phone commitment to their own enrolled
/// phone's and the applicant's contact to that phone, so that the node
/// would send the phone code to them. The node checks its derived tables
/// before acting on them (issue 15) and refuses to open.
#[tokio::test]
async fn after_the_derived_state_swap_the_node_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_requiring_sms(dir.path(), 42, clock());
    let officer = &staff.officers[0];
    let case = CaseRecords::new(&staff, officer, CASE);
    {
        let state = service_state(ledger, &staff);
        open_case(&state, &case, 1).await;
    }
    let officer_commitment = caseledger::commitments::commitment(&staff.commitment_key, "phone", &officer.phone);
    tamper_with_the_case(dir.path(), |case| {
        case["applicants"][0]["phone_commitment"] = officer_commitment.into();
    });
    {
        let db = raw_db(dir.path());
        let meta = db.cf_handle("meta").expect("meta");
        let contact = format!(
            "private/{}",
            caseledger::service::sms::contact_key(&caseledger_verify::funds::notify::applicant_contact(
                CASE,
                "applicant-1"
            ))
        );
        db.put_cf(meta, contact.as_bytes(), officer.phone.as_bytes())
            .expect("put");
    }
    refused_on_open(dir.path());
}

// ---------------------------------------------------------------------
// Attempts expected to be refused.
// ---------------------------------------------------------------------

/// The officer who asks for the challenge learns only the masked number.
#[tokio::test]
async fn the_officer_asking_for_a_phone_challenge_sees_no_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, staff, phone) = sms_state(dir.path(), 43);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    open_case(&state, &case, 1).await;
    let (status, body) = challenge(&state, &staff.officers[0].identity, 1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let code = last_code(&phone, &CaseRecords::applicant_phone(1)).expect("sent to the applicant");
    assert!(!body.to_string().contains(&code), "the response shows the code: {body}");
    // The ledger's entries carry no code either (only the commitment).
    for seq in 0..state.ledger.size() {
        let target = format!("/v1/entries/{seq}");
        let (_, entry) = send(&state, "GET", &target, &[], Vec::new()).await;
        let text = entry.to_string();
        assert!(!text.contains(&format!("\"{code}\"")), "entry {seq} shows the code");
    }
}

/// Applicant 2's code does not confirm applicant 1's phone, and a code sent
/// only to applicant 2 confirms nothing for applicant 1.
#[tokio::test]
async fn one_applicants_phone_code_does_not_confirm_another_applicant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, staff, phone) = sms_state(dir.path(), 44);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    open_case(&state, &case, 2).await;
    let officer = &staff.officers[0].identity;
    let (status, body) = challenge(&state, officer, 2).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let code2 = last_code(&phone, &CaseRecords::applicant_phone(2)).expect("code 2");
    let (status, value) = confirm(&state, 1, &code2).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{value}");
    // With a challenge of applicant 1 out too.
    let (status, body) = challenge(&state, officer, 1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let code1 = last_code(&phone, &CaseRecords::applicant_phone(1)).expect("code 1");
    if code1 != code2 {
        let (status, value) = confirm(&state, 1, &code2).await;
        assert_eq!(
            (status, rule_of(&value)),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("sms_code")),
            "{value}"
        );
    }
    let (status, value) = register_account(&state, &case, "acct-1", 1, "6222000011112222").await;
    assert_eq!(rule_of(&value), Some("phone_confirmation"), "{status} {value}");
}

/// After a new challenge, the first code is stale.
#[tokio::test]
async fn a_stale_phone_code_is_refused_after_a_new_challenge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, staff, phone) = sms_state(dir.path(), 45);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    open_case(&state, &case, 1).await;
    let officer = &staff.officers[0].identity;
    assert_eq!(challenge(&state, officer, 1).await.0, StatusCode::OK);
    let first = last_code(&phone, &CaseRecords::applicant_phone(1)).expect("first");
    assert_eq!(
        challenge(&state, &staff.filing_clerk.identity, 1).await.0,
        StatusCode::OK
    );
    let second = last_code(&phone, &CaseRecords::applicant_phone(1)).expect("second");
    if first != second {
        let (status, value) = confirm(&state, 1, &first).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{value}");
    }
    let (status, value) = confirm(&state, 1, &second).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    audit_ok(&state.ledger);
}

/// Forced: the node's phone_confirmed for applicant 1 revealing the code
/// and salt of applicant 2's challenge is named by verify.
#[test]
fn forced_a_phone_confirmation_with_another_applicants_code_is_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = clock();
    let (ledger, staff) = court_requiring_sms(dir.path(), 46, clock.clone());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger.append(case.open(2)).expect("open");
    let expires = clock.0.load(std::sync::atomic::Ordering::SeqCst) + 1_800_000;
    let ids = ["x2c".to_owned(), "x2r".to_owned()];
    let mut two = case.phone_confirmation(2, "424242", "00112233445566778899aabbccddeeff", &ids, expires);
    let confirmed2 = two.pop().expect("confirmation");
    ledger.append(two).expect("challenge of applicant 2");
    let ids = ["x1c".to_owned(), "x1r".to_owned()];
    let mut one = case.phone_confirmation(1, "111111", "ffeeddccbbaa99887766554433221100", &ids, expires);
    one.pop();
    ledger.append(one).expect("challenge of applicant 1");
    let mut payload: PhoneConfirmed = serde_json::from_slice(&confirmed2.payload).expect("json");
    payload.applicant_id = "applicant-1".into();
    let swapped = caseledger::court::sign(ORIGIN, KIND_PHONE_CONFIRMED, &payload, &staff.node);
    assert_eq!(refused_rule(&ledger, swapped.clone()), "sms_confirmation");
    drop(ledger);
    let seq = force_append(dir.path(), swapped);
    let report = audit(dir.path());
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.seq == seq && v.rule == "sms_confirmation"),
        "{:?}",
        report.violations
    );
}

/// The administrator enrols a member with an applicant's phone: refused;
/// the filing clerk files an applicant with a member's phone: refused.
#[tokio::test]
async fn member_and_applicant_phones_stay_apart_through_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, staff, _phone) = sms_state(dir.path(), 47);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    open_case(&state, &case, 1).await;
    let insider = Person::new(
        [77; 32],
        "officer-9",
        "新承办",
        Role::Officer,
        &CaseRecords::applicant_phone(1),
    );
    let request = insider.enrolment_request(ORIGIN, &staff.administrator.identity);
    let (status, value) = write_numbered(&state, &staff.administrator.identity, &[request]).await;
    assert_eq!(
        (status, rule_of(&value)),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("phone_of_member")),
        "{value}"
    );
    // Enrol first (another phone), then the clerk files it as an applicant's.
    let insider = Person::new([78; 32], "officer-8", "又承办", Role::Officer, "13900000077");
    let request = insider.enrolment_request(ORIGIN, &staff.administrator.identity);
    let (status, value) = write_numbered(&state, &staff.administrator.identity, &[request]).await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    let other = CaseRecords::new(&staff, &staff.officers[0], "(2026)苏02执32号");
    let applicant_77 = 77u32; // CaseRecords::applicant_phone(77) == "13900000077"
    assert_eq!(CaseRecords::applicant_phone(applicant_77), "13900000077");
    let (record, _) = other.open_request(1);
    let (status, value) = write_numbered(
        &state,
        &staff.filing_clerk.identity,
        &[(record, vec!["13900000077".into()])],
    )
    .await;
    // The mask of applicant 1 is ****0001: a different number is refused
    // for its mask; use a record whose mask matches.
    if status == StatusCode::BAD_REQUEST {
        let mut payload: CaseOpened = caseledger::court::revealed(&other.open_request(1).0);
        payload.applicants[0].phone_masked = "****0077".into();
        let record = caseledger::court::sign_revealed(ORIGIN, KIND_CASE_OPENED, &payload, &staff.filing_clerk.identity);
        let (status, value) = write_numbered(
            &state,
            &staff.filing_clerk.identity,
            &[(record, vec!["13900000077".into()])],
        )
        .await;
        assert_eq!(
            (status, rule_of(&value)),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("phone_of_member")),
            "{value}"
        );
    } else {
        assert_eq!(rule_of(&value), Some("phone_of_member"), "{status} {value}");
    }
}

/// The node's commitment for one enrolment is not spent by another
/// registration put right after it.
#[test]
fn an_enrolment_commitment_is_not_spent_by_another_registration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 48);
    let a = Person::new([81; 32], "officer-a", "甲", Role::Officer, "13900000081");
    let b = Person::new([82; 32], "officer-b", "乙", Role::Officer, "13900000082");
    let committed_a = staff.enrol(&a);
    let (record_b, _) = b.enrolment_request(ORIGIN, &staff.administrator.identity);
    assert_eq!(
        refused_batch(&ledger, vec![committed_a[0].clone(), record_b]),
        "commitment"
    );
    audit_ok(&ledger);
}

/// Only the case's officer asks for an applicant's code; a member cannot
/// sign an applicant_code_issued.
#[tokio::test]
async fn applicant_codes_only_at_the_case_officers_request_and_only_to_the_applicant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, staff, phone) = sms_state(dir.path(), 49);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    open_case(&state, &case, 1).await;
    let body = serde_json::json!({"case_number": CASE, "applicant_id": "applicant-1"});
    for who in [
        &staff.officers[1],
        &staff.filing_clerk,
        &staff.administrator,
        &staff.fund_manager,
    ] {
        let (status, value) = signed_json(&state, &who.identity, "/v1/applicant-codes", &body).await;
        assert!(
            status == StatusCode::FORBIDDEN || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{} {status} {value}",
            who.member_id
        );
    }
    let (status, value) = signed_json(&state, &staff.officers[0].identity, "/v1/applicant-codes", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    let sent = phone.0.lock().expect("lock").clone();
    assert!(
        sent.iter().all(|(to, _)| *to == CaseRecords::applicant_phone(1)),
        "{sent:?}"
    );
    let (_, issued) = case.applicant_code(1);
    let mut payload: ApplicantCodeIssued = caseledger::court::revealed(&issued);
    payload.request_id = "code-by-officer".into();
    let by_officer = caseledger::court::sign_revealed(
        ORIGIN,
        KIND_APPLICANT_CODE_ISSUED,
        &payload,
        &staff.officers[0].identity,
    );
    let (status, value) = write_numbered(&state, &staff.officers[0].identity, &[(by_officer, Vec::new())]).await;
    assert_ne!(status, StatusCode::CREATED, "{value}");
}

/// The insider marks applicant 1's phone confirmed in the derived state, so
/// that an account would go in without any code: the node refuses to open.
#[tokio::test]
async fn after_marking_a_phone_confirmed_in_derived_state_the_node_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_requiring_sms(dir.path(), 51, clock());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    {
        let state = service_state(ledger, &staff);
        open_case(&state, &case, 1).await;
    }
    tamper_with_the_case(dir.path(), |case| {
        case["phones_confirmed"] = serde_json::json!(["applicant-1"]);
    });
    refused_on_open(dir.path());
}
