//! Emulated SMS providers for the tests: real HTTP servers on 127.0.0.1
//! that check what the real provider checks (Aliyun's RPC signature,
//! recomputed here the way Aliyun's documentation describes it, nonce
//! reuse, signature name, template code and variables, phone format;
//! Twilio's Basic auth, account, E.164 numbers, sender, body; the court
//! gateway's HMAC signature and Idempotency-Key) and, on demand, refuse,
//! throttle, answer late or drop the connection, or take a message and
//! answer it only after the client has given up ([`LateAnswers`]).
//!
//! Included by the SMS test files with `#[path]`, not from `common`, so
//! that only they build it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
use caseledger::service::providers::utc_timestamp;
use caseledger::service::sms::{WebhookProvider, WEBHOOK_SIGNATURE_HEADER};
use hmac::Mac as _;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Accept,
    Refuse(&'static str),
    Throttle,
    Slow,
    /// Answers after 150 ms, like a provider across the internet.
    Lag,
    Drop,
}

/// Serves `router` on a loopback port from its own runtime.
pub fn serve(router: Router) -> (String, tokio::runtime::Runtime) {
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

/// Messages taken but answered late: every `every`-th one (counted from 1
/// in the order they are taken; 0: none) is answered only after
/// `delay_ms`, set longer than the client's timeout, so that the client
/// has given up by then although the message went to the phone. The
/// choice is by count, not by chance or timing.
#[derive(Default)]
pub struct LateAnswers {
    pub every: AtomicUsize,
    pub delay_ms: AtomicU64,
    /// The counts (from 1) of the messages answered late.
    pub answered_late: Mutex<Vec<usize>>,
}

impl LateAnswers {
    /// Answers every `every`-th message after `delay`.
    pub fn set(&self, every: usize, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
        self.every.store(every, Ordering::SeqCst);
    }

    /// Whether the `n`-th message (from 1) is answered late: recorded
    /// before the wait (the client's giving up may end the wait early).
    pub async fn wait_if_late(&self, n: usize) {
        let every = self.every.load(Ordering::SeqCst);
        if every == 0 || !n.is_multiple_of(every) {
            return;
        }
        self.answered_late.lock().expect("lock").push(n);
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))).await;
    }

    pub fn answered_late(&self) -> Vec<usize> {
        self.answered_late.lock().expect("lock").clone()
    }
}

// ---- Aliyun ----

pub const ALIYUN_KEY_ID: &str = "LTAI5tTestKeyId";
pub const ALIYUN_SECRET: &str = "aliyun-test-secret";
pub const SIGN_NAME: &str = "无锡市中级人民法院";
/// Approved template codes and their variables.
pub const ALIYUN_TEMPLATES: [(&str, &[&str]); 2] = [("SMS_460001", &["case", "amount"]), ("SMS_460002", &["code"])];

pub struct Aliyun {
    pub mode: Mutex<Mode>,
    pub nonces: Mutex<HashSet<String>>,
    /// Every message taken (sent to the phone), in order.
    pub accepted: Mutex<Vec<BTreeMap<String, String>>>,
    pub calls: Mutex<u32>,
    pub in_flight: AtomicUsize,
    pub most_in_flight: AtomicUsize,
    /// Approved templates and their variables.
    pub templates: BTreeMap<&'static str, Vec<&'static str>>,
    pub late: LateAnswers,
}

/// The `BizId` Aliyun gives the `n`-th message it takes (from 1).
pub fn aliyun_biz_id(n: usize) -> String {
    format!("{}^0", 900_000 + n)
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
    // Taken: from here on the message is on its way to the phone, whether
    // or not the answer reaches the client.
    let n = {
        let mut accepted = e.accepted.lock().expect("lock");
        accepted.push(params);
        accepted.len()
    };
    e.late.wait_if_late(n).await;
    (
        StatusCode::OK,
        Json(json!({"Code": "OK", "Message": "OK", "BizId": aliyun_biz_id(n), "RequestId": "EMULATED"})),
    )
        .into_response()
}

pub fn aliyun_emulator() -> (Arc<Aliyun>, String, tokio::runtime::Runtime) {
    let emulator = Arc::new(Aliyun {
        mode: Mutex::new(Mode::Accept),
        nonces: Mutex::default(),
        accepted: Mutex::default(),
        calls: Mutex::default(),
        in_flight: Default::default(),
        most_in_flight: Default::default(),
        templates: ALIYUN_TEMPLATES
            .iter()
            .map(|(code, variables)| (*code, variables.to_vec()))
            .collect(),
        late: LateAnswers::default(),
    });
    let router = Router::new()
        .route("/", post(aliyun_send_sms))
        .with_state(Arc::clone(&emulator));
    let (url, runtime) = serve(router);
    (emulator, format!("{url}/"), runtime)
}

// ---- Twilio ----

pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TWILIO_TOKEN: &str = "twilio-test-token";
pub const TWILIO_FROM: &str = "+14155550100";

pub struct Twilio {
    pub mode: Mutex<Mode>,
    /// Every message taken (sent to the phone), in order.
    pub accepted: Mutex<Vec<BTreeMap<String, String>>>,
    pub late: LateAnswers,
}

/// The message sid Twilio gives the `n`-th message it takes (from 1).
pub fn twilio_sid(n: usize) -> String {
    format!("SM{n:032x}")
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
    // Taken: on its way to the phone, whether or not the answer arrives.
    let n = {
        let mut accepted = e.accepted.lock().expect("lock");
        accepted.push(params);
        accepted.len()
    };
    e.late.wait_if_late(n).await;
    (
        StatusCode::CREATED,
        Json(json!({"sid": twilio_sid(n), "status": "queued", "account_sid": TWILIO_SID})),
    )
        .into_response()
}

pub fn twilio_emulator() -> (Arc<Twilio>, String, tokio::runtime::Runtime) {
    let emulator = Arc::new(Twilio {
        mode: Mutex::new(Mode::Accept),
        accepted: Mutex::default(),
        late: LateAnswers::default(),
    });
    let router = Router::new()
        .route("/2010-04-01/Accounts/{sid}/Messages.json", post(twilio_messages))
        .with_state(Arc::clone(&emulator));
    let (url, runtime) = serve(router);
    (emulator, url, runtime)
}

// ---- the court's own gateway ----

pub const GATEWAY_SECRET: &str = "gateway-test-secret";

/// One request that reached the gateway with a good signature.
#[derive(Clone, Debug)]
pub struct GatewayRequest {
    pub idempotency_key: String,
    /// The `id` in the body.
    pub id: String,
    /// Whether it went to the phone (the first with its key).
    pub sent: bool,
}

/// A court SMS gateway that honours `Idempotency-Key`: the first request
/// with a key sends the message; a request repeating a key sends nothing
/// and gets the first one's answer again. Every `late.every`-th request
/// (new or repeated) is answered late.
#[derive(Default)]
pub struct Gateway {
    pub requests: Mutex<Vec<GatewayRequest>>,
    pub bad_requests: Mutex<usize>,
    pub late: LateAnswers,
}

async fn gateway_send(State(g): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers.get(WEBHOOK_SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|m| m["id"].as_str().map(str::to_owned));
    let (Some(key), Some(id)) = (key, id) else {
        *g.bad_requests.lock().expect("lock") += 1;
        return StatusCode::BAD_REQUEST;
    };
    if signature != Some(WebhookProvider::signature(GATEWAY_SECRET.as_bytes(), &body).as_str()) {
        *g.bad_requests.lock().expect("lock") += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let n = {
        let mut requests = g.requests.lock().expect("lock");
        let sent = !requests.iter().any(|r| r.idempotency_key == key);
        requests.push(GatewayRequest {
            idempotency_key: key.to_owned(),
            id,
            sent,
        });
        requests.len()
    };
    g.late.wait_if_late(n).await;
    StatusCode::OK
}

pub fn gateway_emulator() -> (Arc<Gateway>, String, tokio::runtime::Runtime) {
    let gateway = Arc::new(Gateway::default());
    let router = Router::new()
        .route("/sms", post(gateway_send))
        .with_state(Arc::clone(&gateway));
    let (url, runtime) = serve(router);
    (gateway, format!("{url}/sms"), runtime)
}
