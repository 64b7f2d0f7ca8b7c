//! The Aliyun and Twilio clients against emulators: real HTTP servers on
//! 127.0.0.1 that check what the real provider checks (Aliyun's RPC
//! signature, recomputed here the way Aliyun's documentation describes it,
//! nonce reuse, signature name, template code and variables, phone format;
//! Twilio's Basic auth, account, E.164 numbers, sender, body) and, on
//! demand, refuse, throttle, answer late or drop the connection. Then the
//! delivery worker through a long Aliyun outage, and the delivery reports
//! coming back to the service's callback endpoints.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger::court::CaseRecords;
use caseledger::service::providers::*;
use caseledger::service::sms::{self, Deliverer, DeliveryOptions, DeliveryStatus, Message, SmsProvider, Templates};
use hmac::Mac as _;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Accept,
    Refuse(&'static str),
    Throttle,
    Slow,
    /// Answers after 150 ms, like a provider across the internet.
    Lag,
    Drop,
}

/// Serves `router` on a loopback port from its own runtime.
fn serve(router: Router) -> (String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let address = listener.local_addr().expect("address");
    runtime.spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}"), runtime)
}

/// What the emulated provider does before it answers.
async fn behave(mode: Mode) {
    match mode {
        Mode::Slow => tokio::time::sleep(Duration::from_secs(3)).await,
        Mode::Lag => tokio::time::sleep(Duration::from_millis(150)).await,
        // Unwinding the connection's task closes it without an answer.
        Mode::Drop => panic!("emulated provider drops the connection"),
        _ => {}
    }
}

// ---- Aliyun ----

const ALIYUN_KEY_ID: &str = "LTAI5tTestKeyId";
const ALIYUN_SECRET: &str = "aliyun-test-secret";
const SIGN_NAME: &str = "无锡市中级人民法院";

struct Aliyun {
    mode: Mutex<Mode>,
    nonces: Mutex<HashSet<String>>,
    accepted: Mutex<Vec<BTreeMap<String, String>>>,
    calls: Mutex<u32>,
    in_flight: std::sync::atomic::AtomicUsize,
    most_in_flight: std::sync::atomic::AtomicUsize,
    /// Approved templates and their variables.
    templates: BTreeMap<&'static str, Vec<&'static str>>,
}

/// Aliyun's documented encoding: Java's URLEncoder, then `+` → `%20`,
/// `*` → `%2A`, `%7E` → `~`.
fn aliyun_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
        .replace('*', "%2A")
        .replace("%7E", "~")
}

fn aliyun_answer(status: StatusCode, code: &str) -> Response {
    (
        status,
        Json(json!({"Code": code, "Message": code, "RequestId": "EMULATED-REQUEST"})),
    )
        .into_response()
}

async fn aliyun_send_sms(State(e): State<Arc<Aliyun>>, body: Bytes) -> Response {
    use std::sync::atomic::Ordering::SeqCst;
    *e.calls.lock().expect("lock") += 1;
    let mode = *e.mode.lock().expect("lock");
    let now = e.in_flight.fetch_add(1, SeqCst) + 1;
    e.most_in_flight.fetch_max(now, SeqCst);
    behave(mode).await;
    e.in_flight.fetch_sub(1, SeqCst);
    let mut params: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let Some(signature) = params.remove("Signature") else {
        return aliyun_answer(StatusCode::BAD_REQUEST, "MissingSignature");
    };
    let canonical = params
        .iter()
        .map(|(k, v)| format!("{}={}", aliyun_encode(k), aliyun_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let to_sign = format!("POST&{}&{}", aliyun_encode("/"), aliyun_encode(&canonical));
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(format!("{ALIYUN_SECRET}&").as_bytes()).expect("key");
    mac.update(to_sign.as_bytes());
    if BASE64.encode(mac.finalize().into_bytes()) != signature {
        return aliyun_answer(StatusCode::BAD_REQUEST, "SignatureDoesNotMatch");
    }
    let field = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    if field("AccessKeyId") != ALIYUN_KEY_ID {
        return aliyun_answer(StatusCode::NOT_FOUND, "InvalidAccessKeyId.NotFound");
    }
    let fixed = [
        ("Action", "SendSms"),
        ("Version", "2017-05-25"),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("RegionId", "cn-hangzhou"),
    ];
    if fixed.iter().any(|(k, v)| field(k) != *v) {
        return aliyun_answer(StatusCode::BAD_REQUEST, "InvalidParameter");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let timestamp = field("Timestamp");
    if timestamp < utc_timestamp(now - 900_000).as_str() || timestamp > utc_timestamp(now + 900_000).as_str() {
        return aliyun_answer(StatusCode::BAD_REQUEST, "InvalidTimeStamp.Expired");
    }
    if !e
        .nonces
        .lock()
        .expect("lock")
        .insert(field("SignatureNonce").to_owned())
    {
        return aliyun_answer(StatusCode::BAD_REQUEST, "SignatureNonceUsed");
    }
    if mode == Mode::Throttle {
        return aliyun_answer(StatusCode::OK, "isv.BUSINESS_LIMIT_CONTROL");
    }
    if let Mode::Refuse(code) = mode {
        return aliyun_answer(StatusCode::OK, code);
    }
    let phone = field("PhoneNumbers");
    if phone.len() != 11 || !phone.starts_with('1') || !phone.bytes().all(|b| b.is_ascii_digit()) {
        return aliyun_answer(StatusCode::OK, "isv.MOBILE_NUMBER_ILLEGAL");
    }
    if field("SignName") != SIGN_NAME {
        return aliyun_answer(StatusCode::OK, "isv.SMS_SIGNATURE_ILLEGAL");
    }
    let Some(variables) = e.templates.get(field("TemplateCode")) else {
        return aliyun_answer(StatusCode::OK, "isv.SMS_TEMPLATE_ILLEGAL");
    };
    let Ok(Value::Object(values)) = serde_json::from_str::<Value>(field("TemplateParam")) else {
        return aliyun_answer(StatusCode::OK, "isv.INVALID_JSON_PARAM");
    };
    if variables.iter().any(|v| !values.get(*v).is_some_and(Value::is_string)) {
        return aliyun_answer(StatusCode::OK, "isv.TEMPLATE_MISSING_PARAMETERS");
    }
    e.accepted.lock().expect("lock").push(params);
    let biz_id = format!("{}^0", 900_000 + e.accepted.lock().expect("lock").len());
    (
        StatusCode::OK,
        Json(json!({"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": "EMULATED"})),
    )
        .into_response()
}

fn aliyun_emulator() -> (Arc<Aliyun>, String, tokio::runtime::Runtime) {
    let emulator = Arc::new(Aliyun {
        mode: Mutex::new(Mode::Accept),
        nonces: Mutex::default(),
        accepted: Mutex::default(),
        calls: Mutex::default(),
        in_flight: Default::default(),
        most_in_flight: Default::default(),
        templates: BTreeMap::from([("SMS_460001", vec!["case", "amount"]), ("SMS_460002", vec!["code"])]),
    });
    let router = Router::new()
        .route("/", post(aliyun_send_sms))
        .with_state(Arc::clone(&emulator));
    let (url, runtime) = serve(router);
    (emulator, format!("{url}/"), runtime)
}

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

const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "twilio-test-token";
const TWILIO_FROM: &str = "+14155550100";

struct Twilio {
    mode: Mutex<Mode>,
    accepted: Mutex<Vec<BTreeMap<String, String>>>,
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({"code": code, "message": message, "status": status.as_u16()})),
    )
        .into_response()
}

async fn twilio_messages(
    State(e): State<Arc<Twilio>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mode = *e.mode.lock().expect("lock");
    behave(mode).await;
    let expected = format!("Basic {}", BASE64.encode(format!("{TWILIO_SID}:{TWILIO_TOKEN}")));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    if sid != TWILIO_SID {
        return twilio_error(StatusCode::NOT_FOUND, 20404, "The requested resource was not found");
    }
    if mode == Mode::Throttle {
        return twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
    }
    let params: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let to = params.get("To").cloned().unwrap_or_default();
    let digits = to.strip_prefix('+').unwrap_or_default();
    if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21211,
            "The 'To' number is not a valid phone number.",
        );
    }
    if params.get("From").map(String::as_str) != Some(TWILIO_FROM) {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21606,
            "The 'From' phone number is not a valid number for this account.",
        );
    }
    let body_text = params.get("Body").cloned().unwrap_or_default();
    if body_text.is_empty() || body_text.chars().count() > 1600 {
        return twilio_error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
    }
    if params
        .get("StatusCallback")
        .is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://")))
    {
        return twilio_error(StatusCode::BAD_REQUEST, 21609, "Invalid StatusCallback URL");
    }
    e.accepted.lock().expect("lock").push(params);
    let n = e.accepted.lock().expect("lock").len();
    (
        StatusCode::CREATED,
        Json(json!({"sid": format!("SM{n:032x}"), "status": "queued", "account_sid": TWILIO_SID})),
    )
        .into_response()
}

fn twilio_emulator() -> (Arc<Twilio>, String, tokio::runtime::Runtime) {
    let emulator = Arc::new(Twilio {
        mode: Mutex::new(Mode::Accept),
        accepted: Mutex::default(),
    });
    let router = Router::new()
        .route("/2010-04-01/Accounts/{sid}/Messages.json", post(twilio_messages))
        .with_state(Arc::clone(&emulator));
    let (url, runtime) = serve(router);
    (emulator, url, runtime)
}

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

/// A court with one case and a receipt; the applicant's phone is on file.
/// Returns the ledger, the staff and the first notification queued.
fn case_with_a_notification(
    dir: &std::path::Path,
    seed: u64,
) -> (
    Arc<caseledger_ledger::store::Ledger>,
    caseledger::court::Staff,
    caseledger_verify::funds::notify::Notification,
) {
    let (ledger, staff) = common::court(dir, seed);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append([case.open(1), vec![case.receipt("BANK-1", 123_456)]].concat())
        .expect("case and receipt");
    let (_, first) = ledger.outbox_from("", 1).expect("outbox").remove(0);
    sms::put_contact(&ledger, &first.recipient, "13900000001").expect("contact");
    (Arc::new(ledger), staff, first)
}

#[test]
fn a_long_aliyun_outage_waits_then_delivers_and_the_limit_dead_letters() {
    let (emulator, endpoint, _runtime) = aliyun_emulator();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff, first) = case_with_a_notification(dir.path(), 71);
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
    let (ledger, staff, notification) = case_with_a_notification(dir.path(), 72);
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
