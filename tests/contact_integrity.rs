//! The phone numbers the node sends to live beside the ledger, in a table
//! nobody hashes. A database insider who points an applicant's or an
//! approver's number at their own phone gets nothing: before every send the
//! number is checked against the ledger's commitment, the send is refused,
//! logged and counted (issue 14, item 3).

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use caseledger::court::{CaseRecords, Staff};
use caseledger::service::client::sign_request;
use caseledger::service::sms::{self, Deliverer, DeliveryOptions, DeliveryStatus};
use caseledger::service::AppState;
use caseledger_verify::funds::notify::applicant_contact;
use common::{send, Phone};

const CASE: &str = "(2026)苏02执55号";
const INSIDER_PHONE: &str = "13812345678";

struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
    staff: Staff,
    phone: Arc<Phone>,
}

/// A case whose applicant 1 has a registered, unconfirmed account
/// "acct-1" and ¥1,000 received (a notification queued); the applicant's
/// and the bureau head's numbers recorded, checked, through the service.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = common::court(dir.path(), 91);
    let phone = Arc::new(Phone::default());
    let state = AppState::new(Arc::new(ledger), 256 * 1024, Duration::from_secs(5))
        .with_commitment_key(staff.commitment_key)
        .with_sms(phone.clone());
    let f = Fixture {
        _dir: dir,
        state,
        staff,
        phone,
    };
    let case = CaseRecords::new(&f.staff, &f.staff.officers[0], CASE);
    // The filing clerk's request gives the applicant's number: kept as
    // their contact.
    common::open_case(&f.state, &case, 1).await;
    let (status, body) = common::register_account(&f.state, &case, "acct-1", 1, "6222000011110001").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    f.state
        .ledger
        .append(vec![case.receipt("BANK-1", 100_000)])
        .expect("receipt");
    let head = &f.staff.bureau_head;
    let member = serde_json::json!({"member_id": head.member_id, "phone": head.phone});
    post(
        &f,
        &f.staff.administrator,
        "/v1/contacts/members",
        &member,
        StatusCode::NO_CONTENT,
    )
    .await;
    f
}

async fn post(
    f: &Fixture,
    who: &caseledger::court::Person,
    target: &str,
    body: &serde_json::Value,
    expected: StatusCode,
) -> serde_json::Value {
    // `null`: a bodyless request.
    let body = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).expect("json")
    };
    let headers = sign_request(
        &who.identity,
        caseledger::service::DEFAULT_AUTHORITY,
        "POST",
        target,
        &body,
    );
    let (status, value) = send(&f.state, "POST", target, &headers, body).await;
    assert_eq!(status, expected, "{target}: {value}");
    value
}

fn mismatches(f: &Fixture, purpose: &str) -> u64 {
    let text = f.state.metrics.render();
    text.lines()
        .filter(|l| l.starts_with("caseledger_contact_mismatch_total") && l.contains(&format!("purpose=\"{purpose}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_switched_applicant_number_gets_neither_codes_nor_notices() {
    let f = fixture().await;
    let recipient = applicant_contact(CASE, "applicant-1");
    // The insider writes the private table directly.
    sms::put_contact(&f.state.ledger, &recipient, INSIDER_PHONE).expect("insider write");
    let size = f.state.ledger.size();
    let before = mismatches(&f, "account");
    let refused = post(
        &f,
        &f.staff.officers[0],
        "/v1/accounts/acct-1/challenge",
        &serde_json::Value::Null,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(refused["rule"], "contact_mismatch", "{refused}");
    assert!(
        !refused.to_string().contains(INSIDER_PHONE),
        "the number is never echoed: {refused}"
    );
    assert_eq!(f.state.ledger.size(), size, "no challenge committed");
    assert!(f.phone.0.lock().expect("lock").is_empty(), "no SMS went out");
    assert_eq!(mismatches(&f, "account"), before + 1);

    // The queued arrival notice is a dead letter, not a message to the insider.
    let provider = Arc::new(Phone::default());
    let mut worker = Deliverer::new(
        Arc::clone(&f.state.ledger),
        provider.clone(),
        f.staff.commitment_key,
        DeliveryOptions::default(),
    );
    let pass = worker.run_once(1_000).expect("pass");
    let queued = f.state.ledger.outbox_from("", 100).expect("outbox").len() as u64;
    assert_eq!(queued, 2, "the account registration and the arrival");
    assert_eq!((pass.sent, pass.dead), (0, queued));
    assert!(provider.0.lock().expect("lock").is_empty());
    let (_, notification) = f.state.ledger.outbox_from("", 1).expect("outbox").remove(0);
    let delivery = sms::delivery(&f.state.ledger, &notification.id)
        .expect("read")
        .expect("state");
    assert_eq!(delivery.status, DeliveryStatus::Dead);
    assert!(
        delivery
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("contact_mismatch")),
        "{delivery:?}"
    );

    // Put back by the operator, everything flows again.
    sms::put_contact(&f.state.ledger, &recipient, &CaseRecords::applicant_phone(1)).expect("restore");
    post(
        &f,
        &f.staff.officers[0],
        "/v1/accounts/acct-1/challenge",
        &serde_json::Value::Null,
        StatusCode::OK,
    )
    .await;
    let sent = f.phone.0.lock().expect("lock").clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, CaseRecords::applicant_phone(1));
}

#[tokio::test]
async fn a_switched_approver_number_gets_no_approval_code_and_no_reminder() {
    let f = fixture().await;
    let head = &f.staff.bureau_head;
    let case = CaseRecords::new(&f.staff, &f.staff.officers[0], CASE);
    f.state
        .ledger
        .append(vec![case.confirm("acct-1"), case.request("d-1", "acct-1", 50_000)])
        .expect("awaiting the bureau head");
    sms::put_contact(&f.state.ledger, &sms::member_recipient(&head.member_id), INSIDER_PHONE).expect("insider write");
    let target = "/v1/disbursements/d-1/steps/1/challenge";
    let headers = sign_request(
        &head.identity,
        caseledger::service::DEFAULT_AUTHORITY,
        "POST",
        target,
        &[],
    );
    let before = mismatches(&f, "approval");
    let (status, refused) = send(&f.state, "POST", target, &headers, Vec::new()).await;
    assert_eq!(
        (status, refused["rule"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("contact_mismatch")),
        "{refused}"
    );
    assert!(f.phone.0.lock().expect("lock").is_empty());
    assert_eq!(mismatches(&f, "approval"), before + 1);
    // Deadline reminders skip the switched number (and count it).
    let provider = Phone::default();
    let overdue_ms = common::CLOCK_START_MS + 40 * 86_400_000;
    let before = mismatches(&f, "reminder");
    sms::send_reminders(
        &f.state.ledger,
        &provider,
        &sms::Templates::default(),
        &f.staff.commitment_key,
        overdue_ms,
    )
    .expect("pass");
    assert!(
        provider
            .0
            .lock()
            .expect("lock")
            .iter()
            .all(|(to, _)| to != INSIDER_PHONE),
        "no reminder to the insider's phone"
    );
    assert!(mismatches(&f, "reminder") > before);
}

/// Recording an approver's phone is no free phone oracle for an
/// administrator: a number that is not the enrolled one is refused, logged
/// and counted, and every number tried spends the administrator's hourly
/// quota of numbers given in clear, after which they wait (429).
#[tokio::test]
async fn recording_a_phone_is_no_free_oracle_for_an_administrator() {
    let f = fixture().await;
    let head = &f.staff.bureau_head;
    let before = mismatches(&f, "contact_recorded");
    let mut guess = 13_900_000_000u64;
    let mut refused_at = None;
    // The fixture recorded one number already.
    for tried in 2..=caseledger::service::numbers::NUMBERS_PER_MEMBER_PER_HOUR + 1 {
        guess += 1;
        let body = serde_json::to_vec(&serde_json::json!({"member_id": head.member_id, "phone": guess.to_string()}))
            .expect("json");
        let headers = sign_request(
            &f.staff.administrator.identity,
            caseledger::service::DEFAULT_AUTHORITY,
            "POST",
            "/v1/contacts/members",
            &body,
        );
        let (status, value) = send(&f.state, "POST", "/v1/contacts/members", &headers, body).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused_at = Some(tried);
            break;
        }
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
    }
    assert_eq!(
        refused_at,
        Some(caseledger::service::numbers::NUMBERS_PER_MEMBER_PER_HOUR + 1),
        "the quota of numbers ends the guessing"
    );
    assert_eq!(
        mismatches(&f, "contact_recorded") - before,
        u64::from(caseledger::service::numbers::NUMBERS_PER_MEMBER_PER_HOUR - 1),
        "each wrong number is counted"
    );
}
