//! Where the policy requires SMS, an applicant's phone is confirmed by a
//! code sent to it before any account can be registered for them: the
//! number the filing clerk gave must reach the applicant. The node commits
//! to the code (bound to the case, the applicant and the commitment to
//! their phone) before sending it and reveals it with the salt when the
//! applicant enters it. Refused at write time; forced into storage, named
//! by `verify`.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::http::StatusCode;
use caseledger::court::CaseRecords;
use caseledger::service::client::sign_request;
use caseledger::service::AppState;
use caseledger_keys::Identity;
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::*;
use common::*;
use serde_json::Value;

const CASE: &str = "(2026)苏02执31号";
const MINUTE_MS: u64 = 60_000;

fn expires(clock: &TestClock) -> u64 {
    clock.0.load(Ordering::SeqCst) + 30 * MINUTE_MS
}

/// The node's phone challenge for applicant 1 with `code`, and its record
/// of the `entered` code.
fn challenge_and_entered(case: &CaseRecords, code: &str, entered: &str, clock: &TestClock) -> (Vec<Record>, Record) {
    let ids = ["c".to_owned(), "r".to_owned()];
    let mut records = case.phone_confirmation(1, code, "00112233445566778899aabbccddeeff", &ids, expires(clock));
    let confirmed = records.pop().expect("the confirmation");
    let mut payload: PhoneConfirmed = serde_json::from_slice(&confirmed.payload).expect("json");
    payload.sms.code = entered.to_owned();
    let entered = caseledger::court::sign(ORIGIN, KIND_PHONE_CONFIRMED, &payload, &case.staff.node);
    (records, entered)
}

#[test]
fn no_account_before_the_applicants_phone_is_confirmed_and_a_wrong_code_confirms_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = clock();
    let (ledger, staff) = court_requiring_sms(dir.path(), 31, clock.clone());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger.append(case.open(1)).expect("open");
    let account = case.account("acct-1", 1, "6222000011112222");
    assert_eq!(refused_batch(&ledger, account.clone()), "phone_confirmation");
    // A wrong code does not confirm the phone.
    let (challenge, wrong) = challenge_and_entered(&case, "246810", "135791", &clock);
    ledger.append(challenge).expect("challenge and sent");
    assert_eq!(refused_rule(&ledger, wrong), "sms_confirmation");
    assert_eq!(refused_batch(&ledger, account.clone()), "phone_confirmation");
    // The right one does; then the account goes in.
    let (challenge, right) = challenge_and_entered(&case, "246810", "246810", &clock);
    let mut challenge = challenge;
    for record in &mut challenge {
        // Fresh request ids: the first challenge's are spent.
        let mut value: Value = serde_json::from_slice(&record.payload).expect("json");
        let id = format!("{}-again", value["request_id"].as_str().expect("id"));
        value["request_id"] = id.clone().into();
        if record.kind == KIND_SMS_SENT {
            let challenge_id = format!("{}-again", value["challenge_request_id"].as_str().expect("id"));
            value["challenge_request_id"] = challenge_id.into();
        }
        *record = Record::sign(
            ORIGIN,
            record.kind,
            serde_json::to_vec(&value).expect("json"),
            &staff.node,
        );
    }
    ledger.append(challenge).expect("a new challenge");
    ledger.append_one(right).expect("confirmed");
    ledger.append(account).expect("now the account goes in");
    audit_ok(&ledger);
}

#[test]
fn forced_into_storage_an_unconfirmed_phones_account_and_a_wrong_code_are_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = clock();
    let (ledger, staff) = court_requiring_sms(dir.path(), 32, clock.clone());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger.append(case.open(1)).expect("open");
    let (challenge, wrong) = challenge_and_entered(&case, "246810", "135791", &clock);
    ledger.append(challenge).expect("challenge");
    drop(ledger);
    let wrong_seq = force_append(dir.path(), wrong);
    let account: Vec<u64> = case
        .account("acct-1", 1, "6222000011112222")
        .into_iter()
        .map(|record| force_append(dir.path(), record))
        .collect();
    let report = audit(dir.path());
    // (The derived state stored behind the forgery also differs from the
    // replay's: reported too, as `derived_state`.)
    let found: Vec<(u64, &str)> = report
        .violations
        .iter()
        .map(|v| (v.seq, v.rule.as_str()))
        .filter(|(_, rule)| *rule != "derived_state")
        .collect();
    assert_eq!(
        found,
        [(wrong_seq, "sms_confirmation"), (account[1], "phone_confirmation")]
    );
}

async fn signed(state: &AppState, signer: &Identity, target: &str) -> (StatusCode, Value) {
    let headers = sign_request(signer, caseledger::service::DEFAULT_AUTHORITY, "POST", target, &[]);
    send(state, "POST", target, &headers, Vec::new()).await
}

async fn confirm(state: &AppState, target: &str, code: &str) -> (StatusCode, Value) {
    let body = serde_json::to_vec(&serde_json::json!({ "code": code })).expect("json");
    send(
        state,
        "POST",
        target,
        &[("content-type".into(), "application/json".into())],
        body,
    )
    .await
}

#[tokio::test]
async fn the_code_goes_to_the_phone_the_clerk_gave_and_the_applicant_confirms_it_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_requiring_sms(dir.path(), 33, clock());
    let phone = Arc::new(Phone::default());
    let state = service_state(ledger, &staff).with_sms(phone.clone());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    open_case(&state, &case, 1).await;
    let (status, value) = register_account(&state, &case, "acct-1", 1, "6222000011112222").await;
    assert_eq!(
        (status, value["rule"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("phone_confirmation")),
        "{value}"
    );
    let path = "/v1/cases/(2026)%E8%8B%8F02%E6%89%A731%E5%8F%B7/applicants/applicant-1";
    let ask = format!("{path}/phone-challenge");
    let answer = format!("{path}/phone-confirm");
    // Another case's officer may not ask; the case's officer may.
    let (status, _) = signed(&state, &staff.officers[1].identity, &ask).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, challenge) = signed(&state, &staff.officers[0].identity, &ask).await;
    assert_eq!(status, StatusCode::OK, "{challenge}");
    assert_eq!(challenge["sent_to"], "****0001");
    let sent = phone.0.lock().expect("lock").clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].0,
        CaseRecords::applicant_phone(1),
        "to the number the clerk gave"
    );
    let code: String = sent[0]
        .1
        .split_once("验证码")
        .expect("a code")
        .1
        .chars()
        .take(6)
        .collect();
    let size = state.ledger.size();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, value) = confirm(&state, &answer, wrong).await;
    assert_eq!(
        (status, value["rule"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("sms_code"))
    );
    assert_eq!(state.ledger.size(), size, "a wrong code writes nothing");
    let (status, value) = confirm(&state, &answer, &code).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let (status, value) = confirm(&state, &answer, &code).await;
    assert_eq!(
        (status, value["rule"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("phone_confirmation")),
        "confirmed once: {value}"
    );
    let (status, value) = register_account(&state, &case, "acct-1", 1, "6222000011112222").await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    audit_ok(&state.ledger);
}
