//! The Aliyun and Twilio clients against emulators (`common/sms_emulators.rs`):
//! real HTTP servers on 127.0.0.1 that check what the real provider checks
//! (Aliyun's RPC signature, recomputed there the way Aliyun's documentation
//! describes it, nonce reuse, signature name, template code and variables,
//! phone format; Twilio's Basic auth, account, E.164 numbers, sender, body)
//! and, on demand, refuse, throttle, answer late or drop the connection.
//! Then the delivery worker through a long Aliyun outage, and the delivery
//! reports coming back to the service's callback endpoints.

mod common;
#[path = "common/sms_emulators.rs"]
mod sms_emulators;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger::court::CaseRecords;
use caseledger::service::providers::*;
use caseledger::service::sms::{self, Deliverer, DeliveryOptions, DeliveryStatus, Message, SmsProvider, Templates};
use hmac::Mac as _;
use serde_json::{json, Value};
use sms_emulators::*;

// ---- Aliyun ----

fn aliyun_provider(endpoint: &str, secret: &str) -> AliyunProvider {
    AliyunProvider::new(
        AliyunSettings {
            endpoint: endpoint.to_owned(),
            access_key_id: ALIYUN_KEY_ID.into(),
            access_key_secret: secret.into(),
            sign_name: SIGN_NAME.into(),
            region: "cn-hangzhou".into(),
            template_codes: BTreeMap::from([
                ("receipt_arrived".to_owned(), "SMS_460001".to_owned()),
                ("approval_code".to_owned(), "SMS_460002".to_owned()),
            ]),
        },
        Duration::from_millis(800),
    )
}

fn receipt_message(id: &str, to: &str) -> Message {
    Templates::default().message(
        id,
        to,
        "receipt_arrived",
        &[("case", "(2026)苏02执7号".into()), ("amount", "¥1,234.56".into())],
    )
}

#[test]
fn aliyun_client_sends_what_aliyun_accepts() {
    let (emulator, endpoint, _runtime) = aliyun_emulator();
    let provider = aliyun_provider(&endpoint, ALIYUN_SECRET);
    let message = receipt_message("n42-0", "13900000001");
    let biz_id = provider.send(&message).expect("accepted");
    assert_eq!(biz_id, "900001^0");
    let accepted = emulator.accepted.lock().expect("lock").clone();
    assert_eq!(accepted.len(), 1);
    let params = &accepted[0];
    assert_eq!(params["OutId"], "n42-0", "the notification id is the OutId");
    assert_eq!(params["TemplateCode"], "SMS_460001");
    let values: Value = serde_json::from_str(&params["TemplateParam"]).expect("json");
    assert_eq!(values, json!({"case": "(2026)苏02执7号", "amount": "¥1,234.56"}));

    // An approval code: only the code goes in the template.
    let code = Templates::default().message(
        "challenge-9",
        "13900000002",
        "approval_code",
        &[("code", "482913".into())],
    );
    provider.send(&code).expect("accepted");
    let params = emulator.accepted.lock().expect("lock")[1].clone();
    assert_eq!(params["TemplateParam"], r#"{"code":"482913"}"#);
}

#[test]
fn aliyun_refusals_are_told_apart_from_outages() {
    let (emulator, endpoint, _runtime) = aliyun_emulator();
    let message = receipt_message("n1-0", "13900000001");
    // A wrong secret: the signature does not match; nothing sent.
    let error = aliyun_provider(&endpoint, "not-the-secret")
        .send(&message)
        .expect_err("refused");
    assert!(error.detail.contains("SignatureDoesNotMatch"), "{}", error.detail);
    let provider = aliyun_provider(&endpoint, ALIYUN_SECRET);
    // A number Aliyun will never take: permanent.
    let error = provider
        .send(&receipt_message("n1-1", "1390000"))
        .expect_err("bad number");
    assert!(
        error.permanent && error.detail.contains("isv.MOBILE_NUMBER_ILLEGAL"),
        "{error:?}"
    );
    // A message with no approved template: permanent, and Aliyun is not called.
    let calls = *emulator.calls.lock().expect("lock");
    let error = provider
        .send(&Templates::default().message("n1-2", "13900000001", "delay_approved", &[("case", "x".into())]))
        .expect_err("no template");
    assert!(error.permanent);
    assert_eq!(*emulator.calls.lock().expect("lock"), calls);
    // Throttled, late, dropped: transient, to be retried.
    for (mode, expected) in [
        (Mode::Throttle, "isv.BUSINESS_LIMIT_CONTROL"),
        (Mode::Slow, "unreachable"),
        (Mode::Drop, "unreachable"),
        (Mode::Refuse("isp.SYSTEM_ERROR"), "isp.SYSTEM_ERROR"),
    ] {
        *emulator.mode.lock().expect("lock") = mode;
        let error = provider.send(&message).expect_err("not sent");
        assert!(
            !error.permanent && error.detail.contains(expected),
            "{mode:?}: {error:?}"
        );
    }
    assert!(emulator.accepted.lock().expect("lock").is_empty());
}

// ---- Twilio ----

fn twilio_provider(api_base: &str, token: &str, callback: Option<&str>) -> TwilioProvider {
    TwilioProvider::new(
        TwilioSettings {
            api_base: api_base.to_owned(),
            account_sid: TWILIO_SID.into(),
            auth_token: token.into(),
            from: TWILIO_FROM.into(),
            status_callback_url: callback.map(str::to_owned),
        },
        Duration::from_millis(800),
    )
}

#[test]
fn twilio_client_sends_what_twilio_accepts_and_tells_refusals_from_outages() {
    let (emulator, api_base, _runtime) = twilio_emulator();
    let callback = "https://court.example/v1/sms/reports/twilio";
    let provider = twilio_provider(&api_base, TWILIO_TOKEN, Some(callback));
    let message = receipt_message("n7-1", "13900000001");
    let sid = provider.send(&message).expect("accepted");
    assert_eq!(sid, format!("SM{:032x}", 1));
    let params = emulator.accepted.lock().expect("lock")[0].clone();
    assert_eq!(params["To"], "+8613900000001");
    assert_eq!(params["Body"], message.text);
    assert_eq!(params["StatusCallback"], format!("{callback}?id=n7-1"));

    let error = twilio_provider(&api_base, "wrong-token", None)
        .send(&message)
        .expect_err("unauthorised");
    assert!(!error.permanent && error.detail.contains("20003"), "{error:?}");
    let error = provider.send(&receipt_message("n7-2", "+1")).expect_err("bad number");
    assert!(error.permanent && error.detail.contains("21211"), "{error:?}");
    for (mode, expected) in [
        (Mode::Throttle, "20429"),
        (Mode::Slow, "unreachable"),
        (Mode::Drop, "unreachable"),
    ] {
        *emulator.mode.lock().expect("lock") = mode;
        let error = provider.send(&message).expect_err("not sent");
        assert!(
            !error.permanent && error.detail.contains(expected),
            "{mode:?}: {error:?}"
        );
    }
    assert_eq!(emulator.accepted.lock().expect("lock").len(), 1);
}

// ---- delivery through an outage, and the reports ----

const CASE: &str = "(2026)苏02执7号";
const MINUTE_MS: u64 = 60_000;

#[test]
fn a_long_aliyun_outage_waits_then_delivers_and_the_limit_dead_letters() {
    let (emulator, endpoint, _runtime) = aliyun_emulator();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff, first) = common::case_with_a_notification(dir.path(), 71, CASE);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let options = DeliveryOptions {
        attempts_max: 20,
        // Dead after the attempts alone: this emulated clock is not the
        // entries' time.
        retry_for_ms: 0,
        backoff_first_ms: 1_000,
        backoff_max_ms: 30 * MINUTE_MS,
        per_phone_per_minute: 100,
        templates: Templates::default(),
        concurrency: 8,
    };
    let provider: Arc<dyn SmsProvider> = Arc::new(aliyun_provider(&endpoint, ALIYUN_SECRET));
    let mut worker = Deliverer::new(
        Arc::clone(&ledger),
        Arc::clone(&provider),
        staff.commitment_key,
        options.clone(),
    );

    // Down (throttled, then dropping connections) for two hours, a pass a minute.
    *emulator.mode.lock().expect("lock") = Mode::Throttle;
    let mut now = 1_000_000_u64;
    let mut attempts_seen = 0;
    for minute in 0..120 {
        if minute == 60 {
            *emulator.mode.lock().expect("lock") = Mode::Drop;
        }
        worker.run_once(now).expect("pass");
        now += MINUTE_MS;
        let state = sms::delivery(&ledger, &first.id).expect("read").expect("state");
        assert_eq!(state.status, DeliveryStatus::Pending, "waiting, not lost");
        attempts_seen = state.attempts;
    }
    assert!(
        (10..=16).contains(&attempts_seen),
        "backed off: {attempts_seen} attempts in two hours, not 120"
    );
    assert!(emulator.accepted.lock().expect("lock").is_empty());
    // Back: the message goes once, with its notification id as OutId.
    *emulator.mode.lock().expect("lock") = Mode::Accept;
    for _ in 0..40 {
        worker.run_once(now).expect("pass");
        now += MINUTE_MS;
    }
    let accepted = emulator.accepted.lock().expect("lock").clone();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["OutId"], first.id);
    let state = sms::delivery(&ledger, &first.id).expect("read").expect("state");
    assert_eq!(state.status, DeliveryStatus::Sent);
    assert_eq!(state.provider_id.as_deref(), Some("900001^0"));

    // Down for good: after the limit the next one is dead, and says so.
    ledger.append_one(case.receipt("BANK-2", 500)).expect("receipt");
    *emulator.mode.lock().expect("lock") = Mode::Refuse("isp.SYSTEM_ERROR");
    let mut dead = 0;
    for _ in 0..(24 * 60) {
        dead += worker.run_once(now).expect("pass").dead;
        now += MINUTE_MS;
    }
    assert_eq!(dead, 1);
    let letters = sms::dead_letters(&ledger, 10).expect("dead letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].1.attempts, 20);
    assert!(letters[0]
        .1
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("isp.SYSTEM_ERROR")));
    // A permanent refusal dead-letters at once.
    ledger.append_one(case.receipt("BANK-3", 700)).expect("receipt");
    *emulator.mode.lock().expect("lock") = Mode::Refuse("isv.MOBILE_NUMBER_ILLEGAL");
    assert_eq!(worker.run_once(now).expect("pass").dead, 1);
    assert_eq!(emulator.accepted.lock().expect("lock").len(), 1, "nothing sent twice");
}

/// The service on a loopback port, with report endpoints configured; the
/// Twilio callback URL is the service's own.
fn service(ledger: Arc<caseledger_ledger::store::Ledger>) -> (String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let state = caseledger::service::AppState::new(ledger, 64 * 1024, Duration::from_secs(5)).with_reports(
        caseledger::service::reports::ReportSettings {
            aliyun_token: Some("report-token-8f3a".into()),
            twilio_auth_token: Some(TWILIO_TOKEN.into()),
            twilio_callback_url: Some(format!("{base}/v1/sms/reports/twilio")),
        },
    );
    let state = state.with_authority(&caseledger::service::client::authority_of(&base));
    let app = caseledger::service::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    runtime.spawn(async move { axum::serve(listener, app).await });
    (base, runtime)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// `X-Twilio-Signature` as Twilio computes it.
fn twilio_signs(url: &str, params: &BTreeMap<String, String>, token: &str) -> String {
    let mut data = url.to_owned();
    for (k, v) in params {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).expect("key");
    mac.update(data.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

#[test]
fn delivery_reports_come_back_to_the_service_and_forgeries_change_nothing() {
    let (_emulator, endpoint, _aliyun) = aliyun_emulator();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff, notification) = common::case_with_a_notification(dir.path(), 72, CASE);
    let provider: Arc<dyn SmsProvider> = Arc::new(aliyun_provider(&endpoint, ALIYUN_SECRET));
    Deliverer::new(
        Arc::clone(&ledger),
        provider,
        staff.commitment_key,
        DeliveryOptions::default(),
    )
    .run_once(1_000)
    .expect("pass");
    let (base, _service) = service(Arc::clone(&ledger));
    let agent = agent();

    // Aliyun's SmsReport push, to the secret URL only.
    let push = json!([{
        "phone_number": "13900000001", "send_time": "2026-11-26 10:00:00",
        "report_time": "2026-11-26 10:00:05", "success": true, "err_code": "DELIVERED",
        "err_msg": "用户接收成功", "sms_size": "1", "biz_id": "900001^0", "out_id": notification.id
    }])
    .to_string();
    let status = agent
        .post(&format!("{base}/v1/sms/reports/aliyun/wrong-token"))
        .header("content-type", "application/json")
        .send(push.as_bytes())
        .expect("post")
        .status();
    assert_eq!(status.as_u16(), 404);
    assert!(sms::report(&ledger, &notification.id).expect("read").is_none());
    let mut response = agent
        .post(&format!("{base}/v1/sms/reports/aliyun/report-token-8f3a"))
        .header("content-type", "application/json")
        .send(push.as_bytes())
        .expect("post");
    assert_eq!(response.status().as_u16(), 200);
    let ack: Value = serde_json::from_str(&response.body_mut().read_to_string().expect("body")).expect("json");
    assert_eq!(ack, json!({"code": 0, "msg": "成功"}));
    let state = sms::delivery(&ledger, &notification.id).expect("read").expect("state");
    assert_eq!(state.status, DeliveryStatus::Sent);
    let report = sms::report(&ledger, &notification.id).expect("read").expect("recorded");
    assert_eq!(
        (report.status.as_str(), report.provider_id.as_deref()),
        ("delivered", Some("900001^0"))
    );

    // A member reads it.
    let path = format!("/v1/notifications/{}", notification.id);
    let mut request = agent.get(&format!("{base}{path}"));
    for (name, value) in caseledger::service::client::sign_request(
        &staff.bureau_head.identity,
        &caseledger::service::client::authority_of(&base),
        "GET",
        &path,
        &[],
    ) {
        request = request.header(&name, &value);
    }
    let mut response = request.call().expect("get");
    assert_eq!(response.status().as_u16(), 200);
    let view: Value = serde_json::from_str(&response.body_mut().read_to_string().expect("body")).expect("json");
    assert_eq!(view["report"]["status"], "delivered");
    assert_eq!(view["delivery"]["status"], "sent");

    // Twilio's status callback for an approval code, signed over the URL it called.
    let url = format!("{base}/v1/sms/reports/twilio?id=challenge-5");
    let mut form = BTreeMap::from([
        ("AccountSid".to_owned(), TWILIO_SID.to_owned()),
        ("ErrorCode".to_owned(), "30003".to_owned()),
        ("MessageSid".to_owned(), format!("SM{:032x}", 7)),
        ("MessageStatus".to_owned(), "undelivered".to_owned()),
        ("To".to_owned(), "+8613900000002".to_owned()),
    ]);
    let post = |form: &BTreeMap<String, String>, signature: &str| {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        agent
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .send(body.as_bytes())
            .expect("post")
            .status()
            .as_u16()
    };
    assert_eq!(post(&form, &twilio_signs(&url, &form, TWILIO_TOKEN)), 204);
    let report = sms::report(&ledger, "challenge-5").expect("read").expect("recorded");
    assert_eq!(
        (report.status.as_str(), report.error.as_deref()),
        ("undelivered", Some("30003"))
    );
    // A forged "delivered" (wrong key, or a field changed after signing) is refused.
    let signed = twilio_signs(&url, &form, TWILIO_TOKEN);
    form.insert("MessageStatus".into(), "delivered".into());
    assert_eq!(post(&form, &twilio_signs(&url, &form, "not-the-token")), 403);
    assert_eq!(post(&form, &signed), 403);
    assert_eq!(post(&form, ""), 403);
    let report = sms::report(&ledger, "challenge-5").expect("read").expect("recorded");
    assert_eq!(report.status, "undelivered", "forgeries changed nothing");
}

#[test]
fn the_worker_sends_several_messages_at_once_and_each_exactly_once() {
    let (emulator, endpoint, _runtime) = aliyun_emulator();
    *emulator.mode.lock().expect("lock") = Mode::Lag;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = common::court(dir.path(), 73);
    let mut records = Vec::new();
    for n in 0..4 {
        let case = CaseRecords::new(&staff, &staff.officers[0], &format!("(2026)苏02执{}号", 100 + n));
        records.extend(case.open(2));
        records.push(case.receipt(&format!("LAG-{n}"), 10_000 + n));
    }
    ledger.append(records).expect("cases and receipts");
    let ledger = Arc::new(ledger);
    let outbox = ledger.outbox_from("", 100).expect("outbox");
    assert_eq!(outbox.len(), 8, "two applicants a case");
    for (_, notification) in &outbox {
        // Applicant k's number, as the case committed to it.
        let k: u32 = notification
            .recipient
            .rsplit('-')
            .next()
            .and_then(|k| k.parse().ok())
            .expect("applicant-k");
        sms::put_contact(&ledger, &notification.recipient, &format!("139{k:08}")).expect("contact");
    }
    let provider: Arc<dyn SmsProvider> = Arc::new(aliyun_provider(&endpoint, ALIYUN_SECRET));
    let mut worker = Deliverer::new(
        Arc::clone(&ledger),
        provider,
        staff.commitment_key,
        DeliveryOptions::default(),
    );
    let pass = worker.run_once(1_000).expect("pass");
    assert_eq!(pass.sent, 8);
    let most = emulator.most_in_flight.load(std::sync::atomic::Ordering::SeqCst);
    assert!(most > 1, "sent one after another ({most} at most in flight)");
    // Another pass, and a new worker, send nothing again.
    worker.run_once(2_000).expect("pass");
    Deliverer::new(
        Arc::clone(&ledger),
        Arc::new(aliyun_provider(&endpoint, ALIYUN_SECRET)),
        staff.commitment_key,
        DeliveryOptions::default(),
    )
    .run_once(3_000)
    .expect("pass");
    let accepted = emulator.accepted.lock().expect("lock").clone();
    let mut ids: Vec<String> = accepted.iter().map(|p| p["OutId"].clone()).collect();
    ids.sort();
    let mut expected: Vec<String> = outbox.iter().map(|(_, n)| n.id.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected, "each notification once");
}
