//! Duplicate SMS when a provider answers late (issue 15, item 4).
//!
//! A provider that takes a message and answers after our timeout
//! (`sms_timeout_ms`) leaves the delivery worker with a failed attempt, so
//! it retries: Aliyun's SendSms and Twilio's Messages API have no
//! idempotency key, and the applicant gets the message twice. The court's
//! own gateway gets the notification id as `Idempotency-Key` and can drop
//! the repeat.
//!
//! Here the real worker (wall clock, short timeout from the configuration,
//! short backoff) delivers 50 notifications through the Aliyun and Twilio
//! emulators and a gateway emulator that honours `Idempotency-Key`, each
//! taking every message but answering every [`LATE_EVERY`]-th one late
//! (chosen by count, not by chance or timing). What reached the phone is
//! counted per notification and checked against the worker's attempts and
//! the late answers; the figures are printed (`-- --nocapture`).

mod common;
#[path = "common/sms_emulators.rs"]
mod sms_emulators;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use caseledger::court::{CaseRecords, Staff};
use caseledger::service::config::Config;
use caseledger::service::serve;
use caseledger::service::sms::{self, Deliverer, DeliveryOptions, DeliveryStatus, SmsProvider, Templates};
use caseledger_ledger::store::Ledger;
use caseledger_verify::funds::notify::Notification;
use sms_emulators::*;

/// Two applicants a case: 50 notifications.
const CASES: u32 = 25;
/// Every this many-th message taken is answered late.
const LATE_EVERY: usize = 5;
/// The provider timeout the configuration sets: far above a loopback
/// answer (a millisecond or so), so only the late answers miss it.
const TIMEOUT_MS: u64 = 1_000;
/// How late a late answer comes: well past the timeout.
const LATE_BY: Duration = Duration::from_millis(5 * TIMEOUT_MS);
/// Only a guard against a hang, never a measure.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// The configuration of `provider` with the short timeout; `settings`
/// fills in the provider's own.
fn config(provider: &str, settings: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config {
        sms_provider: provider.to_owned(),
        sms_timeout_ms: TIMEOUT_MS,
        // Each pass sends half the notifications at once: every late answer
        // costs a pass one timeout, so a few passes deliver them all.
        sms_concurrency: 25,
        ..Config::default()
    };
    settings(&mut config);
    config
}

/// The worker's options as `serve` makes them from `config`, with a short
/// backoff (20 ms, at most 100 ms) and no per-phone limit in the way (the
/// 25 cases' applicants share two numbers).
fn delivery_options(config: &Config) -> DeliveryOptions {
    DeliveryOptions {
        attempts_max: config.sms_attempts_max.max(1),
        retry_for_ms: config.sms_retry_for_ms,
        concurrency: config.sms_concurrency.clamp(1, 64),
        backoff_first_ms: 20,
        backoff_max_ms: 100,
        per_phone_per_minute: 1_000,
        templates: Templates::default(),
    }
}

/// A court with [`CASES`] cases of two applicants, money received in each:
/// a notification queued for every applicant, their phones on file.
fn court_with_notifications(dir: &std::path::Path, seed: u64) -> (Arc<Ledger>, Staff, Vec<Notification>) {
    let (ledger, staff) = common::court(dir, seed);
    let mut records = Vec::new();
    for n in 0..CASES {
        let case = CaseRecords::new(&staff, &staff.officers[0], &format!("(2026)苏02执{}号", 300 + n));
        records.extend(case.open(2));
        records.push(case.receipt(&format!("DUP-{n}"), 10_000 + u64::from(n)));
    }
    ledger.append(records).expect("cases and receipts");
    let notifications: Vec<Notification> = ledger
        .outbox_from("", 1_000)
        .expect("outbox")
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(notifications.len(), 2 * CASES as usize, "two applicants a case");
    for notification in &notifications {
        // Applicant k's number, as the case committed to it.
        let k: u32 = notification
            .recipient
            .rsplit('-')
            .next()
            .and_then(|k| k.parse().ok())
            .expect("applicant-k");
        sms::put_contact(&ledger, &notification.recipient, &CaseRecords::applicant_phone(k)).expect("contact");
    }
    (Arc::new(ledger), staff, notifications)
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// Runs the delivery worker on the wall clock, a pass every 10 ms, until
/// the outbox says every notification is sent; returns each one's
/// attempts.
fn deliver_all(
    ledger: &Arc<Ledger>,
    staff: &Staff,
    provider: Arc<dyn SmsProvider>,
    options: DeliveryOptions,
    notifications: &[Notification],
) -> BTreeMap<String, u32> {
    let mut worker = Deliverer::new(Arc::clone(ledger), provider, staff.commitment_key, options);
    let started = Instant::now();
    loop {
        let pass = worker.run_once(wall_ms()).expect("pass");
        assert_eq!(pass.dead, 0, "nothing is dead-lettered");
        let states: Vec<sms::Delivery> = notifications
            .iter()
            .map(|n| sms::delivery(ledger, &n.id).expect("read").expect("state"))
            .collect();
        if states.iter().all(|s| s.status == DeliveryStatus::Sent) {
            return notifications
                .iter()
                .zip(states)
                .map(|(n, s)| (n.id.clone(), s.attempts))
                .collect();
        }
        let waiting = states.iter().filter(|s| s.status != DeliveryStatus::Sent).count();
        assert!(
            started.elapsed() < HANG_GUARD,
            "hang guard: {waiting} notifications still not sent"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How many answers are late when every `every`-th of the messages is:
/// each late one is followed by one more message (the retry), the last
/// message is answered in time, so the messages number `n + late` with
/// `late = messages / every`; the least such count.
fn predicted_late(n: usize, every: usize) -> usize {
    let mut messages = n;
    loop {
        let next = n + messages / every;
        if next == messages {
            return messages - n;
        }
        messages = next;
    }
}

#[derive(Debug)]
struct Figures {
    notifications: usize,
    attempts: u32,
    /// Messages the provider took (went to the phones).
    taken: usize,
    /// `taken` less the distinct notifications.
    duplicates: usize,
    answered_late: usize,
    /// Late answers followed by another message for the same notification.
    late_then_retried: usize,
    /// How many notifications reached the phone how many times.
    copies: BTreeMap<u32, usize>,
}

/// `taken`: the notification of each message the provider took, in order;
/// `late`: the counts (from 1) of those answered late. Checks that every
/// notification reached the phone at least once and no more often than
/// the worker tried it.
fn measure(
    provider: &str,
    notifications: &[Notification],
    attempts: &BTreeMap<String, u32>,
    taken: &[String],
    late: &[usize],
) -> Figures {
    let mut per_notification: BTreeMap<&str, u32> = BTreeMap::new();
    for id in taken {
        assert!(
            attempts.contains_key(id),
            "{provider}: a message for no notification: {id}"
        );
        *per_notification.entry(id.as_str()).or_default() += 1;
    }
    for notification in notifications {
        let got = per_notification.get(notification.id.as_str()).copied().unwrap_or(0);
        let tried = attempts[&notification.id];
        assert!(got >= 1, "{provider}: {} never reached the phone", notification.id);
        assert!(
            got <= tried,
            "{provider}: {} reached the phone {got} times in {tried} attempts",
            notification.id
        );
    }
    let late_then_retried = late.iter().filter(|&&n| taken[n..].contains(&taken[n - 1])).count();
    Figures {
        notifications: notifications.len(),
        attempts: attempts.values().sum(),
        taken: taken.len(),
        duplicates: taken.len() - per_notification.len(),
        answered_late: late.len(),
        late_then_retried,
        copies: per_notification.values().fold(BTreeMap::new(), |mut copies, &c| {
            *copies.entry(c).or_default() += 1;
            copies
        }),
    }
}

fn print_figures(provider: &str, figures: &Figures) {
    eprintln!(
        "{provider}: {} notifications, {} attempts; {} answers of {} late (after {} ms, timeout \
         {TIMEOUT_MS} ms), {} retried; {} messages to phones, {} duplicates \
         (notifications by copies: {:?})",
        figures.notifications,
        figures.attempts,
        figures.answered_late,
        figures.taken,
        LATE_BY.as_millis(),
        figures.late_then_retried,
        figures.taken,
        figures.duplicates,
        figures.copies,
    );
}

/// What a provider without idempotency does: one duplicate per late
/// answer, as many as the count of late answers predicts.
fn assert_one_duplicate_per_late_answer(provider: &str, figures: &Figures) {
    assert_eq!(
        figures.duplicates, figures.late_then_retried,
        "{provider}: duplicates are the late answers followed by a retry: {figures:?}"
    );
    assert_eq!(
        figures.late_then_retried, figures.answered_late,
        "{provider}: every late answer was retried (none dead): {figures:?}"
    );
    assert_eq!(
        figures.answered_late,
        predicted_late(figures.notifications, LATE_EVERY),
        "{provider}: late answers: {figures:?}"
    );
    assert!(figures.duplicates > 0, "{provider}: the late answers made no duplicate");
}

/// Checks that the id the worker recorded for each notification is the one
/// the provider gave its last message (the one answered in time); `ids`
/// names the `n`-th message (from 1).
fn assert_recorded_ids_are_the_last_messages(
    provider: &str,
    ledger: &Ledger,
    taken: &[String],
    ids: impl Fn(usize) -> String,
) {
    for id in taken.iter().collect::<BTreeSet<_>>() {
        let last = taken.iter().rposition(|t| t == id).expect("taken") + 1;
        let state = sms::delivery(ledger, id).expect("read").expect("state");
        assert_eq!(
            state.provider_id.as_deref(),
            Some(ids(last).as_str()),
            "{provider}: {id}"
        );
    }
}

/// The figures of a provider without idempotency, printed and checked:
/// one duplicate per late answer, and the recorded ids those of the
/// messages answered in time.
fn judge_without_idempotency(
    provider: &str,
    ledger: &Ledger,
    notifications: &[Notification],
    attempts: &BTreeMap<String, u32>,
    taken: &[String],
    late: &[usize],
    ids: impl Fn(usize) -> String,
) {
    let figures = measure(provider, notifications, attempts, taken, late);
    print_figures(provider, &figures);
    assert_one_duplicate_per_late_answer(provider, &figures);
    assert_recorded_ids_are_the_last_messages(provider, ledger, taken, ids);
}

#[test]
fn aliyun_answering_late_sends_a_duplicate_per_late_answer() {
    let (emulator, endpoint, _runtime) = aliyun_emulator();
    emulator.late.set(LATE_EVERY, LATE_BY);
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff, notifications) = court_with_notifications(dir.path(), 91);
    let config = config("aliyun", |c| {
        c.sms_aliyun_endpoint = endpoint.clone();
        c.sms_aliyun_access_key_id = Some(ALIYUN_KEY_ID.into());
        c.sms_aliyun_access_key_secret = Some(ALIYUN_SECRET.into());
        c.sms_aliyun_sign_name = Some(SIGN_NAME.into());
        // Every message needs its template (serve refuses to start
        // otherwise); the emulator knows the arrival's, SMS_460001.
        c.sms_aliyun_template_codes = caseledger::service::sms::Templates::names()
            .into_iter()
            .enumerate()
            .map(|(n, name)| {
                let code = if name == "receipt_arrived" {
                    "SMS_460001".to_owned()
                } else {
                    format!("SMS_47{n:04}")
                };
                (name, code)
            })
            .collect::<BTreeMap<_, _>>();
    });
    let provider = serve::provider(&config).expect("provider");
    let attempts = deliver_all(&ledger, &staff, provider, delivery_options(&config), &notifications);

    // Aliyun's OutId is the notification id: it tells each message's
    // notification (and so would its delivery report).
    let taken: Vec<String> = emulator
        .accepted
        .lock()
        .expect("lock")
        .iter()
        .map(|params| params["OutId"].clone())
        .collect();
    let late = emulator.late.answered_late();
    judge_without_idempotency(
        "aliyun",
        &ledger,
        &notifications,
        &attempts,
        &taken,
        &late,
        aliyun_biz_id,
    );
}

#[test]
fn twilio_answering_late_sends_a_duplicate_per_late_answer() {
    let (emulator, api_base, _runtime) = twilio_emulator();
    emulator.late.set(LATE_EVERY, LATE_BY);
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff, notifications) = court_with_notifications(dir.path(), 92);
    let callback = "https://court.example/v1/sms/reports/twilio";
    let config = config("twilio", |c| {
        c.sms_twilio_api_base = api_base.clone();
        c.sms_twilio_account_sid = Some(TWILIO_SID.into());
        c.sms_twilio_auth_token = Some(TWILIO_TOKEN.into());
        c.sms_twilio_from = Some(TWILIO_FROM.into());
        c.sms_twilio_status_callback_url = Some(callback.into());
    });
    let provider = serve::provider(&config).expect("provider");
    let attempts = deliver_all(&ledger, &staff, provider, delivery_options(&config), &notifications);

    // Twilio keeps no id of ours but the status callback's `?id=`.
    let taken: Vec<String> = emulator
        .accepted
        .lock()
        .expect("lock")
        .iter()
        .map(|params| {
            let url = &params["StatusCallback"];
            let query = url.strip_prefix(&format!("{callback}?")).expect("our callback");
            form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "id")
                .map(|(_, v)| v.into_owned())
                .expect("id")
        })
        .collect();
    let late = emulator.late.answered_late();
    judge_without_idempotency("twilio", &ledger, &notifications, &attempts, &taken, &late, twilio_sid);
}

#[test]
fn a_gateway_honouring_the_idempotency_key_sends_no_duplicate() {
    let (gateway, url, _runtime) = gateway_emulator();
    gateway.late.set(LATE_EVERY, LATE_BY);
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff, notifications) = court_with_notifications(dir.path(), 93);
    let config = config("webhook", |c| {
        c.sms_webhook_url = Some(url.clone());
        c.sms_webhook_secret = Some(GATEWAY_SECRET.into());
    });
    let provider = serve::provider(&config).expect("provider");
    let attempts = deliver_all(&ledger, &staff, provider, delivery_options(&config), &notifications);

    let requests = gateway.requests.lock().expect("lock").clone();
    assert_eq!(*gateway.bad_requests.lock().expect("lock"), 0, "signed, with a key");
    // Every request, retries included, carried its notification's id as key.
    for request in &requests {
        assert_eq!(request.idempotency_key, request.id, "the key is the notification id");
    }
    let keys: Vec<String> = requests.iter().map(|r| r.idempotency_key.clone()).collect();
    let late = gateway.late.answered_late();
    let retries = measure("webhook requests", &notifications, &attempts, &keys, &late);
    // The retries: one per late answer, as with Aliyun and Twilio ...
    assert_one_duplicate_per_late_answer("webhook requests", &retries);
    // ... but the gateway sent each notification once.
    let sent: Vec<String> = requests.iter().filter(|r| r.sent).map(|r| r.id.clone()).collect();
    let to_phones = measure("webhook to phones", &notifications, &attempts, &sent, &[]);
    assert_eq!(to_phones.taken, notifications.len());
    assert_eq!(to_phones.duplicates, 0, "no duplicate reached a phone");
    eprintln!(
        "webhook (Idempotency-Key): {} notifications, {} attempts; {} answers of {} late \
         (after {} ms, timeout {TIMEOUT_MS} ms), {} retried with the same key; \
         {} messages to phones, {} duplicates",
        retries.notifications,
        retries.attempts,
        retries.answered_late,
        retries.taken,
        LATE_BY.as_millis(),
        retries.late_then_retried,
        to_phones.taken,
        to_phones.duplicates,
    );
}

#[test]
fn the_prediction_counts_late_answers_followed_by_a_retry() {
    // 50 messages, every fifth late: 10 late, 10 retries (51 to 60, two of
    // them late), 2 retries (61, 62) in time: 12.
    assert_eq!(predicted_late(50, 5), 12);
    assert_eq!(predicted_late(4, 5), 0);
    // Every second late: of 4, the 2nd and 4th; their retries are the 5th
    // and the 6th (late); its retry, the 7th, in time: 3.
    assert_eq!(predicted_late(4, 2), 3);
}
