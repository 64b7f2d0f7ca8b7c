//! Notifications: queued by the rules in the same batch as their entry,
//! reproduced by the audit, and delivered by the worker exactly once per
//! notification, with retries, backoff and a dead letter.

mod common;

use std::sync::{Arc, Mutex};

use caseledger::court::CaseRecords;
use caseledger::service::sms::{self, Deliverer, DeliveryOptions, DeliveryStatus, SendError, SmsProvider};
use caseledger_verify::funds::notify::Event;
use common::*;

const CASE: &str = "(2024)苏02执5号";

/// Records what it is asked to send; fails the first `failures` sends.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(String, String, String)>>,
    failures: Mutex<u32>,
}

impl SmsProvider for Recorder {
    fn send(&self, message: &sms::Message) -> Result<String, SendError> {
        let mut failures = self.failures.lock().expect("lock");
        if *failures > 0 {
            *failures -= 1;
            return Err(SendError::transient("provider unavailable"));
        }
        self.sent
            .lock()
            .expect("lock")
            .push((message.to.clone(), message.text.clone(), message.id.clone()));
        Ok(format!("provider-{}", message.id))
    }
}

fn options() -> DeliveryOptions {
    DeliveryOptions {
        attempts_max: 4,
        retry_for_ms: 0,
        backoff_first_ms: 1_000,
        backoff_max_ms: 60_000,
        per_phone_per_minute: 100,
        templates: sms::Templates::default(),
        concurrency: 1,
    }
}

/// Case `CASE` opened with one applicant and money received: the
/// notification queued for it, its applicant's phone on file.
fn case_with_a_notice(
    ledger: caseledger_ledger::store::Ledger,
    staff: &caseledger::court::Staff,
) -> (
    Arc<caseledger_ledger::store::Ledger>,
    caseledger_verify::funds::notify::Notification,
) {
    let case = CaseRecords::new(staff, &staff.officers[0], CASE);
    ledger
        .append([case.open(1), vec![case.receipt("BANK-1", 100)]].concat())
        .expect("case and receipt");
    let ledger = Arc::new(ledger);
    let (_, notification) = ledger.outbox_from("", 1).expect("outbox").remove(0);
    sms::put_contact(&ledger, &notification.recipient, "13900000001").expect("contact");
    (ledger, notification)
}

#[test]
fn every_arrival_is_queued_with_its_entry_and_sent_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 61);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger.append(case.open(2)).expect("case");
    ledger.append_one(case.receipt("BANK-1", 123_456)).expect("receipt");
    assert!(
        ledger.append_one(case.receipt("BANK-0", 0)).is_err(),
        "refused: queues nothing"
    );
    let outbox = ledger.outbox_from("", 100).expect("outbox");
    assert_eq!(outbox.len(), 2, "one message per applicant");
    assert!(outbox
        .iter()
        .all(|(_, n)| n.event == Event::ReceiptArrived && n.amount_fen == Some(123_456)));
    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "the replay reproduces the outbox: {:?}", report.violations);

    let ledger = Arc::new(ledger);
    sms::put_contact(&ledger, &outbox[0].1.recipient, "13900000001").expect("contact");
    let provider = Arc::new(Recorder::default());
    let mut worker = Deliverer::new(Arc::clone(&ledger), provider.clone(), staff.commitment_key, options());
    let pass = worker.run_once(1_000).expect("pass");
    assert_eq!(
        (pass.sent, pass.waiting),
        (1, 1),
        "the second applicant has no phone on file yet"
    );
    worker.run_once(2_000).expect("pass");
    sms::put_contact(&ledger, &outbox[1].1.recipient, "13900000002").expect("contact");
    worker.run_once(3_000).expect("pass");
    // A restarted worker (fresh cursor) sends nothing twice.
    Deliverer::new(Arc::clone(&ledger), provider.clone(), staff.commitment_key, options())
        .run_once(4_000)
        .expect("pass");
    let sent = provider.sent.lock().expect("lock").clone();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].0, "13900000001");
    assert!(
        sent[0].1.contains(CASE) && sent[0].1.contains("¥1,234.56") && sent[0].1.contains(sms::DEFAULT_VERIFY_LINK),
        "{}",
        sent[0].1
    );
    assert_ne!(sent[0].2, sent[1].2, "stable, distinct ids");
}

#[test]
fn failures_back_off_and_end_in_the_dead_letter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 62);
    let (ledger, notification) = case_with_a_notice(ledger, &staff);

    // Down for two attempts, then back.
    let provider = Arc::new(Recorder {
        failures: Mutex::new(2),
        ..Recorder::default()
    });
    let mut worker = Deliverer::new(Arc::clone(&ledger), provider.clone(), staff.commitment_key, options());
    assert_eq!(worker.run_once(10_000).expect("pass").failed, 1);
    let state = sms::delivery(&ledger, &notification.id).expect("read").expect("state");
    assert!(
        state.next_attempt_ms >= 10_800 && state.next_attempt_ms <= 11_200,
        "first backoff ~1 s: {state:?}"
    );
    // Not due yet: nothing sent or tried, but still counted as queued.
    assert_eq!(
        worker.run_once(10_500).expect("pass"),
        sms::Pass {
            queued: 1,
            ..Default::default()
        },
        "not due yet"
    );
    assert_eq!(worker.run_once(12_000).expect("pass").failed, 1);
    let state = sms::delivery(&ledger, &notification.id).expect("read").expect("state");
    assert!(
        state.next_attempt_ms >= 12_000 + 1_600,
        "second backoff ~2 s: {state:?}"
    );
    assert_eq!(worker.run_once(20_000).expect("pass").sent, 1);
    assert_eq!(provider.sent.lock().expect("lock").len(), 1);

    // Down for good: dead after attempts_max.
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger.append_one(case.receipt("BANK-2", 200)).expect("receipt");
    let provider = Arc::new(Recorder {
        failures: Mutex::new(100),
        ..Recorder::default()
    });
    let mut worker = Deliverer::new(Arc::clone(&ledger), provider, staff.commitment_key, options());
    let queued_ms = ledger.entry(ledger.size() - 1).expect("entry").timestamp_ms;
    let mut now = queued_ms + 5_000;
    let first = worker.run_once(now).expect("pass");
    assert_eq!(
        (first.failed, first.queued, first.oldest_age_ms),
        (1, 1, 5_000),
        "queued, and waiting since its entry"
    );
    now += 120_000;
    let mut dead = first.dead;
    for _ in 0..10 {
        dead += worker.run_once(now).expect("pass").dead;
        now += 120_000;
    }
    assert_eq!(dead, 1);
    let (_, second) = ledger.outbox_from("", 10).expect("outbox").pop().expect("second");
    let state = sms::delivery(&ledger, &second.id).expect("read").expect("state");
    assert_eq!((state.status, state.attempts), (DeliveryStatus::Dead, 4));
    let dead = sms::dead_letters(&ledger, 10).expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0.id, second.id);
}

#[test]
fn deadline_reminders_go_to_the_officer_and_the_bureau_head_once_per_threshold() {
    const DAY_MS: u64 = 86_400_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 63);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append([case.open(1), vec![case.receipt("BANK-1", 4_200_000)]].concat())
        .expect("case and receipt");
    let recorded = ledger.entry(ledger.size() - 1).expect("entry").timestamp_ms;
    for person in [&staff.officers[0], &staff.bureau_head] {
        sms::put_contact(&ledger, &format!("member/{}", person.member_id), &person.phone).expect("contact");
    }
    let provider = Recorder::default();
    assert_eq!(
        sms::send_reminders(
            &ledger,
            &provider,
            &sms::Templates::default(),
            &staff.commitment_key,
            recorded + DAY_MS
        )
        .expect("pass"),
        0,
        "on time"
    );
    assert_eq!(
        sms::send_reminders(
            &ledger,
            &provider,
            &sms::Templates::default(),
            &staff.commitment_key,
            recorded + 26 * DAY_MS
        )
        .expect("pass"),
        2,
        "near due"
    );
    assert_eq!(
        sms::send_reminders(
            &ledger,
            &provider,
            &sms::Templates::default(),
            &staff.commitment_key,
            recorded + 27 * DAY_MS
        )
        .expect("pass"),
        0,
        "once per threshold"
    );
    assert_eq!(
        sms::send_reminders(
            &ledger,
            &provider,
            &sms::Templates::default(),
            &staff.commitment_key,
            recorded + 31 * DAY_MS
        )
        .expect("pass"),
        2,
        "overdue"
    );
    assert_eq!(
        sms::send_reminders(
            &ledger,
            &provider,
            &sms::Templates::default(),
            &staff.commitment_key,
            recorded + 40 * DAY_MS
        )
        .expect("pass"),
        0
    );
    let sent = provider.sent.lock().expect("lock").clone();
    let phones: Vec<&str> = sent.iter().map(|(phone, _, _)| phone.as_str()).collect();
    assert_eq!(
        phones,
        [
            staff.officers[0].phone.as_str(),
            staff.bureau_head.phone.as_str(),
            staff.officers[0].phone.as_str(),
            staff.bureau_head.phone.as_str()
        ]
    );
    assert!(
        sent[2].1.contains("超过发放期限") && sent[2].1.contains("¥42,000.00"),
        "{}",
        sent[2].1
    );
}

/// A provider down for hours loses nothing: a failing notification is
/// retried (backing off to the longest interval) until both the attempts
/// and `retry_for_ms` since it was queued are spent; only then is it a
/// dead letter.
#[test]
fn an_outage_of_hours_is_retried_for_the_whole_retry_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 63);
    let (ledger, notification) = case_with_a_notice(ledger, &staff);
    let queued_ms = ledger.entry(notification.seq).expect("entry").timestamp_ms;
    let provider = Arc::new(Recorder {
        failures: Mutex::new(u32::MAX),
        ..Recorder::default()
    });
    let hour_ms = 60 * 60 * 1000;
    let options = DeliveryOptions {
        retry_for_ms: 24 * hour_ms,
        // The per-phone limit counts real minutes; this day passes in less.
        per_phone_per_minute: 1_000_000,
        ..options()
    };
    let mut worker = Deliverer::new(Arc::clone(&ledger), provider, staff.commitment_key, options);
    // A pass a minute for a day: far more than 4 attempts, never dead.
    let mut now = queued_ms;
    while now < queued_ms + 24 * hour_ms - 60_000 {
        assert_eq!(worker.run_once(now).expect("pass").dead, 0, "dead too soon");
        now += 60_000;
    }
    let state = sms::delivery(&ledger, &notification.id).expect("read").expect("state");
    assert_eq!(state.status, DeliveryStatus::Pending);
    assert!(state.attempts > 4, "{state:?}");
    // The day is over: at its next failed attempt it is dead.
    let mut dead = 0;
    for _ in 0..10 {
        now += 60_000;
        dead += worker.run_once(now).expect("pass").dead;
    }
    assert_eq!(dead, 1);
}

/// Dead letters are reported once a day to the court's auditors and
/// administrators (with a phone on file), with their number; a day
/// without dead letters sends nothing.
#[test]
fn dead_letters_are_reported_daily_to_auditors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 64);
    let auditor = caseledger::court::Person::new(
        [64; 32],
        "auditor-64",
        "纪检监察",
        caseledger_verify::funds::model::Role::Auditor,
        "13800000164",
    );
    ledger.append(staff.enrol(&auditor)).expect("auditor");
    sms::put_contact(&ledger, &sms::member_recipient("auditor-64"), &auditor.phone).expect("contact");
    let (ledger, _) = case_with_a_notice(ledger, &staff);
    let templates = sms::Templates::default();
    let day_ms = 86_400_000;
    let report = Recorder::default();
    // Nothing dead on day 1: nothing sent.
    let sent = sms::report_dead_letters(&ledger, &report, &templates, &staff.commitment_key, day_ms).expect("report");
    assert_eq!(sent, 0);
    // The notification dies.
    let down = Arc::new(Recorder {
        failures: Mutex::new(u32::MAX),
        ..Recorder::default()
    });
    let mut worker = Deliverer::new(Arc::clone(&ledger), down, staff.commitment_key, options());
    let mut now = 100_000;
    while sms::dead_letters(&ledger, 10).expect("dead").is_empty() {
        worker.run_once(now).expect("pass");
        now += 120_000;
    }
    // Day 2: reported once, to the auditor.
    let day2 = 2 * day_ms;
    for _ in 0..3 {
        sms::report_dead_letters(&ledger, &report, &templates, &staff.commitment_key, day2).expect("report");
    }
    let sent = report.sent.lock().expect("lock").clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, auditor.phone);
    assert!(sent[0].1.contains("1条"), "{}", sent[0].1);
}

/// A provider's answer is logged with any phone number it echoes masked
/// (Twilio's refusals quote the number), short codes kept.
#[test]
fn provider_answers_are_logged_without_phone_numbers() {
    assert_eq!(
        sms::loggable("Twilio refused: The 'To' number +8613912345678 is not a valid phone number (21211)"),
        "Twilio refused: The 'To' number +****5678 is not a valid phone number (21211)"
    );
    assert_eq!(sms::loggable("gateway answered 503"), "gateway answered 503");
}
