//! The outbox survives SIGKILL: `serve` is killed with notifications queued
//! while the court's SMS gateway is down; after a restart, with the gateway
//! back, every notification reaches the gateway exactly once (by id), and
//! none is sent for a record that was refused. The gateway is an emulator on
//! 127.0.0.1 that checks the HMAC signature as the real one would.

mod common;

use common::Serve;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use caseledger::court::{CaseRecords, Staff};
use caseledger::service::client::Client;
use caseledger::service::sms::{WebhookProvider, WEBHOOK_SIGNATURE_HEADER};

const SECRET: &str = "gateway-test-secret";

#[derive(Default)]
struct Gateway {
    up: AtomicBool,
    received: Mutex<HashMap<String, usize>>,
    bad_signatures: Mutex<usize>,
}

/// Starts the emulator; returns its URL.
fn start_gateway(gateway: Arc<Gateway>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/sms",
                axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                    let gateway = Arc::clone(&gateway);
                    async move {
                        let signature = headers.get(WEBHOOK_SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
                        if signature != Some(WebhookProvider::signature(SECRET.as_bytes(), &body).as_str()) {
                            *gateway.bad_signatures.lock().expect("lock") += 1;
                            return StatusCode::UNAUTHORIZED;
                        }
                        if !gateway.up.load(Ordering::SeqCst) {
                            return StatusCode::SERVICE_UNAVAILABLE;
                        }
                        let message: serde_json::Value = serde_json::from_slice(&body).expect("json");
                        let id = message["id"].as_str().expect("id").to_owned();
                        *gateway.received.lock().expect("lock").entry(id).or_default() += 1;
                        StatusCode::OK
                    }
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("serve gateway");
        });
    });
    format!("http://{address}/sms")
}

fn start_serve(data: &Path, gateway_url: &str) -> Serve {
    start_serve_with(data, gateway_url, &[])
}

fn start_serve_with(data: &Path, gateway_url: &str, more: &[(&str, &str)]) -> Serve {
    let mut envs = more.to_vec();
    envs.extend_from_slice(&[
        ("CASELEDGER_SMS_PROVIDER", "webhook"),
        ("CASELEDGER_SMS_WEBHOOK_URL", gateway_url),
        ("CASELEDGER_SMS_WEBHOOK_SECRET", SECRET),
        // A loaded machine may answer slowly; a send that timed out
        // would be sent again (a duplicate by timing, not by crash).
        ("CASELEDGER_SMS_TIMEOUT_MS", "120000"),
    ]);
    Serve::start(data, &envs)
}

#[test]
fn queued_notifications_survive_sigkill_and_arrive_exactly_once() {
    let gateway = Arc::new(Gateway::default());
    let url = start_gateway(Arc::clone(&gateway));
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ledger");
    let staff = Staff::from_seed(71, "court.example/sms");
    common::init_court(dir.path(), &data, &staff);
    // The demo staff's commitments were made with this key.
    std::fs::write(data.join("commitment.key"), hex::encode(staff.commitment_key)).expect("commitment key");

    let mut serve = start_serve(&data, &url);
    let address = serve.address.clone();
    let officer = &staff.officers[0];
    let case = CaseRecords::new(&staff, officer, "(2026)苏02执99号");
    common::set_up_staff(&address, &staff);
    // The filing clerk opens the case; the applicant's phone is kept.
    let clerk_client = Client::new(&address, staff.filing_clerk.identity.clone());
    assert_eq!(
        clerk_client.write_numbered(&[case.open_request(1)]).expect("open").0,
        201
    );
    let finance = Client::new(&address, staff.finance.identity.clone());
    for (n, amount) in [(1, 10_000), (2, 20_000), (3, 30_000)] {
        assert_eq!(
            finance
                .write(&[case.receipt(&format!("BANK-{n}"), amount)])
                .expect("receipt")
                .0,
            201
        );
    }
    assert_eq!(
        finance.write(&[case.receipt("BANK-0", 0)]).expect("refused").0,
        422,
        "refused: no message"
    );

    // The gateway is down; let the worker fail a few times, then kill -9.
    std::thread::sleep(Duration::from_millis(1500));
    serve.kill();
    assert!(gateway.received.lock().expect("lock").is_empty());

    gateway.up.store(true, Ordering::SeqCst);
    let mut serve = start_serve(&data, &url);
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway.received.lock().expect("lock").len() < 3 {
        assert!(
            Instant::now() < deadline,
            "not all notifications arrived: {:?}",
            gateway.received.lock()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Give a duplicate the chance to show up before checking.
    std::thread::sleep(Duration::from_millis(1500));
    serve.terminate();
    let received = gateway.received.lock().expect("lock").clone();
    assert_eq!(received.len(), 3, "{received:?}");
    assert!(received.values().all(|count| *count == 1), "exactly once: {received:?}");
    assert_eq!(*gateway.bad_signatures.lock().expect("lock"), 0);
}

/// `caseledger sms`, as an administrator runs it: a notification the
/// gateway kept refusing is a dead letter (here after one attempt, by
/// configuration); `sms dead-letters` lists it with the gateway's answer,
/// `sms resend ID` queues it again, and once the gateway is back it
/// arrives, once. A member who is neither administrator nor auditor may
/// not list them.
#[test]
fn dead_letters_are_listed_and_sent_again_from_the_command_line() {
    let gateway = Arc::new(Gateway::default());
    let url = start_gateway(Arc::clone(&gateway));
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ledger");
    let staff = Staff::from_seed(72, "court.example/sms");
    common::init_court(dir.path(), &data, &staff);
    std::fs::write(data.join("commitment.key"), hex::encode(staff.commitment_key)).expect("commitment key");
    let serve = start_serve_with(
        &data,
        &url,
        &[
            ("CASELEDGER_SMS_ATTEMPTS_MAX", "1"),
            ("CASELEDGER_SMS_RETRY_FOR_MS", "0"),
        ],
    );
    common::set_up_staff(&serve.address, &staff);
    let case = CaseRecords::new(&staff, &staff.officers[0], "(2026)苏02执98号");
    let clerk = Client::new(&serve.address, staff.filing_clerk.identity.clone());
    assert_eq!(clerk.write_numbered(&[case.open_request(1)]).expect("open").0, 201);
    let finance = Client::new(&serve.address, staff.finance.identity.clone());
    assert_eq!(
        finance.write(&[case.receipt("BANK-98", 9_800)]).expect("receipt").0,
        201
    );

    let key_file = |name: &str, identity: &caseledger_keys::Identity| {
        let path = dir.path().join(name);
        caseledger_keys::files::write_private_key(&path, identity).expect("key file");
        path
    };
    let admin_key = key_file("admin.key", &staff.administrator.identity);
    let officer_key = key_file("officer.key", &staff.officers[0].identity);
    let sms = |key: &Path, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
            .args(["sms", "--url", &serve.address, "--key"])
            .arg(key)
            .args(args)
            .output()
            .expect("caseledger sms");
        let text = String::from_utf8(out.stdout).expect("utf8");
        (
            out.status.code(),
            serde_json::from_str::<serde_json::Value>(&text).unwrap_or(serde_json::Value::Null),
        )
    };
    let began = Instant::now();
    let dead = loop {
        let (code, listed) = sms(&admin_key, &["dead-letters"]);
        assert_eq!(code, Some(0), "{listed}");
        if let Some(first) = listed.as_array().and_then(|a| a.first()) {
            break first.clone();
        }
        // A hang guard: the worker's first pass dead-letters it.
        assert!(began.elapsed() < Duration::from_secs(60), "no dead letter: {listed}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = dead.to_string();
    assert!(text.contains("503"), "the gateway's answer is kept: {text}");
    let id = dead["id"].as_str().expect("an id").to_owned();
    assert_eq!(dead["case_number"], "(2026)苏02执98号", "{dead}");
    assert_eq!(
        sms(&officer_key, &["dead-letters"]).0,
        Some(1),
        "an officer may not list them"
    );

    gateway.up.store(true, Ordering::SeqCst);
    let (code, resent) = sms(&admin_key, &["resend", &id]);
    assert_eq!(code, Some(0), "{resent}");
    let began = Instant::now();
    while gateway.received.lock().expect("lock").get(&id).is_none() {
        assert!(began.elapsed() < Duration::from_secs(60), "never resent");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, listed) = sms(&admin_key, &["dead-letters"]);
    assert_eq!((code, listed.as_array().map(Vec::len)), (Some(0), Some(0)), "{listed}");
    assert_eq!(gateway.received.lock().expect("lock")[&id], 1);
}
