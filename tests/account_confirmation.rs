//! An applicant's bank account becomes active only after the applicant
//! confirms it with a code sent to the phone on file: the node commits to
//! the code (bound to the account's case, applicant, bank, name and number
//! commitment) before sending it, and records the applicant's code with
//! the salt when they enter it. The rules check it at write time, the audit
//! offline; over HTTP the code goes to the applicant, never to the officer.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use caseledger::court::{account_confirmation, sign, CaseRecords, Staff};
use caseledger::service::client::{sign_request, write_body};
use caseledger::service::AppState;
use caseledger_keys::Identity;
use caseledger_ledger::store::Ledger;
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::*;
use common::*;
use serde_json::Value;

const CASE: &str = "(2026)苏02执21号";
const SALT: &str = "0123456789abcdef0123456789abcdef";
const MINUTE_MS: u64 = 60_000;

struct Court {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    ledger: Ledger,
    staff: Staff,
    clock: Arc<TestClock>,
    node: Identity,
}

/// A court whose policy requires SMS confirmation, with case `CASE` open
/// and account "acct-1" registered (not yet confirmed).
fn court() -> Court {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = common::clock();
    let node = Identity::from_seed([1; 32]);
    let (ledger, staff) = court_requiring_sms(dir.path(), 23, clock.clone());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append(
            [
                case.open(1),
                case.phones_confirmed(1, clock.0.load(Ordering::SeqCst) + 30 * MINUTE_MS),
                case.account("acct-1", 1, "6222000011112222"),
            ]
            .concat(),
        )
        .expect("case");
    Court {
        path: dir.path().to_owned(),
        _dir: dir,
        ledger,
        staff,
        clock,
        node,
    }
}

fn account(ledger: &Ledger, id: &str) -> AccountState {
    serde_json::from_slice(
        &ledger
            .state_object(&format!("account/{id}"))
            .expect("read")
            .expect("exists"),
    )
    .expect("json")
}

fn registered(court: &Court, id: &str, number: &str) -> Vec<Record> {
    CaseRecords::new(&court.staff, &court.staff.officers[0], CASE).account(id, 1, number)
}

/// The node's challenge for `code` and its record of the applicant's
/// `entered` code (request ids made distinct by `tag`).
fn challenge_and_reveal(
    court: &Court,
    registered: &[Record],
    code: &str,
    entered: &str,
    tag: &str,
) -> (Record, Record) {
    let expires = court.clock.0.load(Ordering::SeqCst) + 30 * MINUTE_MS;
    let ids = ["challenge".to_owned(), "confirm".to_owned()];
    let mut pair = account_confirmation(&court.node, ORIGIN, registered, code, SALT, &ids, expires);
    let retag = |record: &Record, kind: u16| {
        let mut value: Value = serde_json::from_slice(&record.payload).expect("json");
        value["request_id"] = format!("{}-{tag}", value["request_id"].as_str().expect("id")).into();
        if kind == KIND_ACCOUNT_CONFIRMED {
            value["sms"]["code"] = entered.into();
        }
        Record::sign(ORIGIN, kind, serde_json::to_vec(&value).expect("json"), &court.node)
    };
    let reveal = retag(&pair.pop().expect("reveal"), KIND_ACCOUNT_CONFIRMED);
    let challenge = retag(&pair.remove(0), KIND_ACCOUNT_CHALLENGE);
    (challenge, reveal)
}

#[test]
fn the_applicants_code_activates_the_account_and_the_audit_counts_it() {
    let court = court();
    let registered = registered(&court, "acct-1", "6222000011112222");
    // The officer cannot confirm for the applicant when the policy requires SMS.
    let case = CaseRecords::new(&court.staff, &court.staff.officers[0], CASE);
    assert_eq!(refused_rule(&court.ledger, case.confirm("acct-1")), "sms_confirmation");
    let (challenge, reveal) = challenge_and_reveal(&court, &registered, "314159", "314159", "a");
    court.ledger.append_one(challenge).expect("challenge");
    assert_eq!(account(&court.ledger, "acct-1").status, AccountStatus::Pending);
    court.ledger.append_one(reveal.clone()).expect("confirmed");
    assert_eq!(account(&court.ledger, "acct-1").status, AccountStatus::Active);
    // The same reveal again is a retry (same request id): nothing new.
    let size = court.ledger.size();
    court.ledger.append_one(reveal).expect("retry answers the first seq");
    assert_eq!(court.ledger.size(), size);
    let report = court.ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
    assert_eq!(report.account_confirmations_verified, 1);
}

#[test]
fn wrong_expired_rebound_reused_or_member_made_codes_are_refused() {
    let court = court();
    let registered_1 = registered(&court, "acct-1", "6222000011112222");
    let size = court.ledger.size();
    // No challenge yet: nothing to reveal.
    let (challenge, reveal) = challenge_and_reveal(&court, &registered_1, "111111", "111111", "none");
    assert_eq!(refused_rule(&court.ledger, reveal), "sms_confirmation");
    court.ledger.append_one(challenge).expect("challenge");
    // Wrong code.
    let (_, wrong) = challenge_and_reveal(&court, &registered_1, "111111", "222222", "wrong");
    assert_eq!(refused_rule(&court.ledger, wrong), "sms_confirmation");
    // A code committed for another account number does not confirm this one.
    let other = registered(&court, "acct-1", "6222999999999999");
    let (challenge, reveal) = challenge_and_reveal(&court, &other, "333333", "333333", "rebound");
    court
        .ledger
        .append_one(challenge)
        .expect("challenge for the switched number");
    assert_eq!(refused_rule(&court.ledger, reveal), "sms_confirmation");
    // Only the latest challenge counts: the first code is dead now.
    let (_, first) = challenge_and_reveal(&court, &registered_1, "111111", "111111", "stale");
    assert_eq!(refused_rule(&court.ledger, first), "sms_confirmation");
    // Expired.
    let (challenge, reveal) = challenge_and_reveal(&court, &registered_1, "444444", "444444", "late");
    court.ledger.append_one(challenge).expect("challenge");
    court.clock.0.fetch_add(31 * MINUTE_MS, Ordering::SeqCst);
    assert_eq!(refused_rule(&court.ledger, reveal), "sms_confirmation");
    assert_eq!(court.ledger.size(), size + 3, "only the three challenges were written");
    // A member cannot make a challenge, nor confirm by revealing a code.
    let officer = &court.staff.officers[0].identity;
    let forged = Record::sign(
        ORIGIN,
        KIND_ACCOUNT_CHALLENGE,
        serde_json::to_vec(&AccountChallenge {
            request_id: "officer-challenge".into(),
            account_id: "acct-1".into(),
            commitment: "00".repeat(32),
            expires_ms: u64::MAX,
        })
        .expect("json"),
        officer,
    );
    assert_eq!(refused_rule(&court.ledger, forged), "not_authorized");
    // The right code then works once; afterwards the account is no longer waiting.
    let (challenge, reveal) = challenge_and_reveal(&court, &registered_1, "555555", "555555", "ok");
    court.ledger.append_one(challenge).expect("challenge");
    court.ledger.append_one(reveal).expect("confirmed");
    let (challenge, _) = challenge_and_reveal(&court, &registered_1, "666666", "666666", "again");
    assert_eq!(refused_rule(&court.ledger, challenge), "account");
    assert_eq!(account(&court.ledger, "acct-1").status, AccountStatus::Active);
}

#[test]
fn without_the_sms_policy_the_officer_records_a_confirmation_in_person() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = common::court(dir.path(), 24);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append([case.open(1), case.account("acct-1", 1, "6222000011113333")].concat())
        .expect("case");
    // Another officer may not.
    let mut payload: AccountConfirmed = serde_json::from_slice(&case.confirm("acct-1").payload).expect("json");
    assert_eq!(
        refused_rule(
            &ledger,
            sign(ORIGIN, KIND_ACCOUNT_CONFIRMED, &payload, &staff.officers[1].identity)
        ),
        "role"
    );
    payload.confirmation = None;
    assert_eq!(
        refused_rule(
            &ledger,
            sign(ORIGIN, KIND_ACCOUNT_CONFIRMED, &payload, &staff.officers[0].identity)
        ),
        "payload",
        "a confirmation names its reference"
    );
    ledger.append_one(case.confirm("acct-1")).expect("in person");
    assert_eq!(account(&ledger, "acct-1").status, AccountStatus::Active);
}

#[test]
fn a_forged_account_confirmation_written_behind_the_service_is_caught_by_verify() {
    let court = court();
    let registered = registered(&court, "acct-1", "6222000011112222");
    let (challenge, forged) = challenge_and_reveal(&court, &registered, "271828", "999999", "forged");
    court.ledger.append_one(challenge).expect("challenge");
    let Court {
        _dir: dir,
        ledger,
        path,
        ..
    } = court;
    ledger.close().expect("close");
    let forged_seq = force_append(&path, forged);
    let report = audit(&path);
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.seq == forged_seq && v.rule == "sms_confirmation"),
        "{:?}",
        report.violations
    );
    assert_eq!(report.account_confirmations_verified, 0);
    drop(dir);
}

// ---- over HTTP ----

async fn signed(state: &AppState, signer: &Identity, target: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let headers = sign_request(signer, caseledger::service::DEFAULT_AUTHORITY, "POST", target, &body);
    send(state, "POST", target, &headers, body).await
}

async fn confirm(state: &AppState, code: &str) -> (StatusCode, Value) {
    let body = serde_json::to_vec(&serde_json::json!({ "code": code })).expect("json");
    send(
        state,
        "POST",
        "/v1/accounts/acct-1/confirm",
        &[("content-type".into(), "application/json".into())],
        body,
    )
    .await
}

/// The 6 digits after "验证码" in the last SMS to `number`.
fn code_sent_to(phone: &Phone, number: &str) -> String {
    let texts = phone.0.lock().expect("lock");
    let (_, text) = texts
        .iter()
        .rev()
        .find(|(to, _)| to == number)
        .expect("an SMS to the applicant");
    let (_, after) = text.split_once("验证码").expect("a code");
    after.chars().filter(char::is_ascii_digit).take(6).collect()
}

#[tokio::test]
async fn the_code_goes_to_the_applicants_phone_and_the_applicant_confirms_over_http() {
    let Court {
        _dir: _kept,
        ledger,
        staff,
        ..
    } = court();
    let phone = Arc::new(Phone::default());
    let state = AppState::new(Arc::new(ledger), 256 * 1024, Duration::from_secs(5))
        .with_commitment_key(staff.commitment_key)
        .with_sms(phone.clone());
    let officer = &staff.officers[0];
    let target = "/v1/accounts/acct-1/challenge";

    // Without the applicant's phone on file no code can be sent.
    let (status, value) = signed(&state, &officer.identity, target, Vec::new()).await;
    assert_eq!(
        (status, value["rule"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("sms_confirmation"))
    );
    let applicant_phone = "13900000001"; // CaseRecords::applicant(1)
                                         // What the filing clerk's request would have kept (this case was
                                         // opened behind the service).
    caseledger::service::sms::put_contact(
        &state.ledger,
        &caseledger_verify::funds::notify::applicant_contact(CASE, "applicant-1"),
        applicant_phone,
    )
    .expect("contact");

    // Only the case's officer asks; another officer is refused.
    let (status, _) = signed(&state, &staff.officers[1].identity, target, Vec::new()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, challenge) = signed(&state, &officer.identity, target, Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "{challenge}");
    assert_eq!(challenge["sent_to"], "****0001");
    assert!(challenge["statement"].as_str().expect("words").contains("****2222"));
    let code = code_sent_to(&phone, applicant_phone);
    assert_eq!(code.len(), 6);
    assert!(
        phone
            .0
            .lock()
            .expect("lock")
            .iter()
            .all(|(to, _)| to == applicant_phone),
        "the code goes to the applicant only"
    );

    let size = state.ledger.size();
    let (status, _) = confirm(&state, "12345").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a malformed code");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let (status, value) = confirm(&state, wrong).await;
        assert_eq!(
            (status, value["rule"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("sms_code"))
        );
    }
    let (_, value) = confirm(&state, &code).await;
    assert_eq!(value["rule"], "sms_locked", "five wrong codes lock the challenge");
    assert_eq!(state.ledger.size(), size, "nothing written by wrong codes");

    // A new code (the limiter allows a second challenge within the minute).
    let (status, _) = signed(&state, &officer.identity, target, Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    let code = code_sent_to(&phone, applicant_phone);
    let (status, value) = confirm(&state, &code).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value["status"], "active");
    assert_eq!(account(&state.ledger, "acct-1").status, AccountStatus::Active);
    let (_, value) = confirm(&state, &code).await;
    assert_eq!(value["rule"], "account", "the code is spent");

    // The confirmation is the node's record, revealing the code the applicant entered.
    let entry = state.ledger.entry(value_seq(&state.ledger)).expect("entry");
    assert_eq!(entry.record.kind, KIND_ACCOUNT_CONFIRMED);
    assert_eq!(entry.record.signer, state.ledger.node_key().key_id());
    let report = state.ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
    assert_eq!(report.account_confirmations_verified, 1);

    // The account is now a valid payee: a disbursement to it is accepted
    // (under the court's policy 2, which requires SMS).
    let case = CaseRecords::new(&staff, officer, CASE).under_policy(2);
    let body = write_body(&[case.receipt("BANK-1", 1_000_000)]);
    assert_eq!(
        signed(&state, &staff.finance.identity, "/v1/records", body).await.0,
        StatusCode::CREATED
    );
    let body = write_body(&[case.request("d-1", "acct-1", 500_000)]);
    assert_eq!(
        signed(&state, &officer.identity, "/v1/records", body).await.0,
        StatusCode::CREATED
    );
}

/// The wrong codes counted per account from anywhere are only those judged
/// against a live challenge: a stranger who knows the account id and
/// sends codes while no code is out spends nothing of the applicant's
/// hourly quota; wrong codes against the court's challenges do, and once
/// the quota is spent every entry is refused with the time to wait.
#[tokio::test]
async fn only_wrong_codes_against_a_live_challenge_spend_the_accounts_quota() {
    use caseledger::service::limits::{Limits, Quotas, TrustedProxies};
    let Court {
        _dir: _kept,
        ledger,
        staff,
        ..
    } = court();
    let phone = Arc::new(Phone::default());
    let state = AppState::new(Arc::new(ledger), 256 * 1024, Duration::from_secs(5))
        .with_commitment_key(staff.commitment_key)
        .with_sms(phone.clone())
        .with_limits(Limits::new(
            TrustedProxies::default(),
            Quotas {
                lookups_per_minute: 100,
                code_entries_per_minute: 1000,
                code_entries_per_target_per_hour: 7,
            },
        ));
    let applicant_phone = "13900000001";
    caseledger::service::sms::put_contact(
        &state.ledger,
        &caseledger_verify::funds::notify::applicant_contact(CASE, "applicant-1"),
        applicant_phone,
    )
    .expect("contact");
    // No code is out: a stranger's entries are refused and spend nothing.
    for _ in 0..20 {
        let (status, value) = confirm(&state, "000000").await;
        assert_eq!(
            (status, value["rule"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("sms_confirmation")),
            "{value}"
        );
    }
    let officer = &staff.officers[0];
    let target = "/v1/accounts/acct-1/challenge";
    let (status, _) = signed(&state, &officer.identity, target, Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    let code = code_sent_to(&phone, applicant_phone);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    // Five wrong codes lock the challenge; entries against a locked one
    // do not count either.
    for _ in 0..5 {
        assert_eq!(confirm(&state, wrong).await.1["rule"], "sms_code");
    }
    for _ in 0..5 {
        assert_eq!(confirm(&state, wrong).await.1["rule"], "sms_locked");
    }
    // A new challenge: two more wrong codes make seven in the hour.
    let (status, _) = signed(&state, &officer.identity, target, Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    let code = code_sent_to(&phone, applicant_phone);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..2 {
        assert_eq!(confirm(&state, wrong).await.1["rule"], "sms_code");
    }
    let size = state.ledger.size();
    let (status, value) = confirm(&state, &code).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{value}");
    assert!(value["detail"].as_str().expect("detail").starts_with("try again in"));
    assert_eq!(state.ledger.size(), size, "nothing written");
    assert_eq!(account(&state.ledger, "acct-1").status, AccountStatus::Pending);
}

fn value_seq(ledger: &Ledger) -> u64 {
    ledger.size() - 1
}
