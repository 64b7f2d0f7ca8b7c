//! SMS benchmarks (issue 5), each next to its raw limit in the same run:
//!
//! * notifications drained by the delivery worker to a local emulator of
//!   the Aliyun API (HTTP on 127.0.0.1; every request signed), against the
//!   same emulator called directly with an already-signed request;
//! * an approval step confirmed by SMS (challenge: node commitment, send,
//!   `sms_sent`; then the signed step revealing the code) against the same
//!   step without SMS, both through the service's router on a real ledger.
//!
//! `cargo bench --bench sms`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::Request;
use axum::routing::post;
use axum::{Json, Router};
use caseledger::court::{sign, CaseRecords, Staff};
use caseledger::service::client::{sign_request, write_body};
use caseledger::service::providers::{AliyunProvider, AliyunSettings};
use caseledger::service::sms::{self, Deliverer, DeliveryOptions, Message, SendError, SmsProvider, Templates};
use caseledger::service::{app, AppState};
use caseledger_keys::Identity;
use caseledger_ledger::store::{Ledger, Options, SystemClock};
use caseledger_verify::funds::model::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

const ORIGIN: &str = "bench.caseledger.local/ledger";
const NOTIFICATIONS_PER_ITERATION: u64 = 100;
const CASES: u64 = 10;

fn court() -> (tempfile::TempDir, Arc<Ledger>, Staff) {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = Staff::from_seed(5, ORIGIN);
    let ledger = Ledger::create(
        dir.path(),
        ORIGIN,
        &Identity::from_seed([1; 32]),
        &staff.genesis_administrators(),
        Arc::new(SystemClock),
        Options::default(),
    )
    .expect("create");
    ledger.append(staff.setup_records()).expect("staff");
    (dir, Arc::new(ledger), staff)
}

fn case_number(n: u64) -> String {
    format!("(2026)苏02执{}号", n + 1)
}

/// An emulated Aliyun endpoint that takes every message.
fn aliyun_emulator(runtime: &tokio::runtime::Runtime) -> String {
    async fn send_sms(body: Bytes) -> Json<serde_json::Value> {
        let params: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
        let ok = params.contains_key("Signature") && params.contains_key("OutId");
        Json(serde_json::json!({
            "Code": if ok { "OK" } else { "MissingSignature" },
            "Message": "OK",
            "BizId": "900001^0",
            "RequestId": "BENCH"
        }))
    }
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("address"));
    runtime.spawn(async move { axum::serve(listener, Router::new().route("/", post(send_sms))).await });
    url
}

fn aliyun(endpoint: &str) -> AliyunProvider {
    AliyunProvider::new(
        AliyunSettings {
            endpoint: endpoint.to_owned(),
            access_key_id: "LTAI5tBench".into(),
            access_key_secret: "bench-secret".into(),
            sign_name: "无锡市中级人民法院".into(),
            region: "cn-hangzhou".into(),
            template_codes: Templates::names()
                .into_iter()
                .enumerate()
                .map(|(i, name)| (name, format!("SMS_46{i:04}")))
                .collect(),
        },
        Duration::from_secs(10),
    )
}

fn drain(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let endpoint = aliyun_emulator(&runtime);
    let (_dir, ledger, staff) = court();
    for n in 0..CASES {
        let case = CaseRecords::new(&staff, &staff.officers[0], &case_number(n));
        ledger.append(case.open(1)).expect("case");
        sms::put_contact(
            &ledger,
            &caseledger_verify::funds::notify::applicant_contact(&case_number(n), "applicant-1"),
            // Applicant 1's number in every case (the ledger's commitment).
            "13900000001",
        )
        .expect("contact");
    }
    let provider: Arc<dyn SmsProvider> = Arc::new(aliyun(&endpoint));
    let options = DeliveryOptions {
        per_phone_per_minute: 1_000_000,
        ..DeliveryOptions::default()
    };
    let mut worker = Deliverer::new(
        Arc::clone(&ledger),
        Arc::clone(&provider),
        staff.commitment_key,
        options,
    );
    let mut receipts = 0u64;
    let mut group = c.benchmark_group("sms");
    group.sample_size(10);
    group.throughput(Throughput::Elements(NOTIFICATIONS_PER_ITERATION));
    group.bench_function("drain_notifications_to_aliyun_emulator", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Untimed: queue the next 100 notifications (one per receipt).
                let records = (0..NOTIFICATIONS_PER_ITERATION)
                    .map(|_| {
                        receipts += 1;
                        let case = CaseRecords::new(&staff, &staff.officers[0], &case_number(receipts % CASES));
                        case.receipt(&format!("BENCH-{receipts}"), 10_000)
                    })
                    .collect();
                ledger.append(records).expect("receipts");
                let started = Instant::now();
                let mut sent = 0;
                while sent < NOTIFICATIONS_PER_ITERATION {
                    sent += worker.run_once(u64::MAX / 2).expect("pass").sent;
                }
                total += started.elapsed();
            }
            total
        });
    });
    // The raw limit: the same emulator, one signed request after another.
    let direct = aliyun(&endpoint);
    let message = Templates::default().message(
        "raw",
        "13900000001",
        "receipt_arrived",
        &[("case", case_number(0)), ("amount", "¥100.00".into())],
    );
    group.bench_function("raw_signed_sendsms_to_emulator", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters * NOTIFICATIONS_PER_ITERATION {
                direct.send(&message).expect("sent");
            }
            started.elapsed()
        });
    });
    group.finish();
}

/// Keeps the last code sent.
#[derive(Default)]
struct Phone(Mutex<String>);

impl SmsProvider for Phone {
    fn send(&self, message: &Message) -> Result<String, SendError> {
        message.params["code"].clone_into(&mut self.0.lock().expect("lock"));
        Ok(message.id.clone())
    }
}

async fn call(router: &axum::Router, method: &str, target: &str, headers: Vec<(String, String)>, body: Vec<u8>) -> u16 {
    let mut request = Request::builder().method(method).uri(target);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body)).expect("request"))
        .await
        .expect("response");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    assert!(status < 300, "{status}: {}", String::from_utf8_lossy(&bytes));
    status
}

fn approval_latency(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (_dir, ledger, staff) = court();
    let phone = Arc::new(Phone::default());
    let state = AppState::new(Arc::clone(&ledger), 256 * 1024, Duration::from_secs(10))
        .with_commitment_key(staff.commitment_key)
        .with_sms(phone.clone());
    let officer = &staff.officers[0];
    let head = &staff.bureau_head;
    let case = CaseRecords::new(&staff, officer, &case_number(0));
    // Thousands of ¥1,000 disbursements to one applicant: under the
    // example policy their sum would soon reach the court leader's tier
    // (issue 14: splitting does not skip approvers). One tier here: this
    // measures a step, not the tiers.
    let mut policy = caseledger::court::example_policy("policy-bench", 2);
    policy.tiers.truncate(1);
    let mut records = staff.policy_records(&policy);
    records.extend(case.open(1));
    records.extend(case.account("acct-1", 1, "6222000011110001"));
    records.extend([case.confirm("acct-1"), case.receipt("BANK-1", 9_000_000_000)]);
    ledger.append(records).expect("case");
    sms::put_contact(&ledger, &sms::member_recipient(&head.member_id), &head.phone).expect("phone");
    let mut next = 0u64;
    let mut pending = |count: u64| -> Vec<String> {
        let ids: Vec<String> = (0..count)
            .map(|_| {
                next += 1;
                format!("d-{next}")
            })
            .collect();
        let records = ids.iter().map(|id| case.request(id, "acct-1", 100_000)).collect();
        ledger.append(records).expect("requests");
        ids
    };
    let step = |id: &str, code: Option<String>| {
        let record = case.approval(
            ORIGIN,
            id,
            "acct-1",
            100_000,
            1,
            Role::BureauHead,
            Decision::Approve,
            head,
        );
        let mut statement: ApprovalSigned = serde_json::from_slice(&record.payload).expect("json");
        statement.sms_code = code;
        write_body(&[sign(ORIGIN, KIND_APPROVAL_SIGNED, &statement, &head.identity)])
    };
    // Built once, as `serve` does.
    let router = app(state.clone());
    let mut group = c.benchmark_group("sms_step");
    group.sample_size(20);
    group.bench_function("approval_step_without_sms", |b| {
        b.iter_custom(|iters| {
            let ids = pending(iters);
            let started = Instant::now();
            for id in &ids {
                let body = step(id, None);
                let headers = sign_request(
                    &head.identity,
                    caseledger::service::DEFAULT_AUTHORITY,
                    "POST",
                    "/v1/records",
                    &body,
                );
                runtime.block_on(call(&router, "POST", "/v1/records", headers, body));
            }
            started.elapsed()
        });
    });
    // The per-approver limit on new codes is policy, not cost: lift it here.
    let unlimited = || {
        Arc::new(governor::RateLimiter::keyed(governor::Quota::per_second(
            std::num::NonZeroU32::new(1_000_000).expect("positive"),
        )))
    };
    let state = AppState {
        challenge_limiter: unlimited(),
        challenge_hourly_limiter: unlimited(),
        ..state.clone()
    };
    let router = app(state);
    group.bench_function("approval_step_with_sms_challenge", |b| {
        b.iter_custom(|iters| {
            let ids = pending(iters);
            let started = Instant::now();
            for id in &ids {
                let target = format!("/v1/disbursements/{id}/steps/1/challenge");
                let headers = sign_request(
                    &head.identity,
                    caseledger::service::DEFAULT_AUTHORITY,
                    "POST",
                    &target,
                    &[],
                );
                let response = runtime.block_on(async {
                    let response = router
                        .clone()
                        .oneshot(
                            headers
                                .iter()
                                .fold(Request::builder().method("POST").uri(&target), |r, (k, v)| {
                                    r.header(k, v)
                                })
                                .body(Body::empty())
                                .expect("request"),
                        )
                        .await
                        .expect("response");
                    response.into_body().collect().await.expect("body").to_bytes()
                });
                let challenge: serde_json::Value = serde_json::from_slice(&response).expect("json");
                assert!(challenge["challenge_seq"].is_u64(), "{challenge}");
                let body = step(id, Some(phone.0.lock().expect("lock").clone()));
                let headers = sign_request(
                    &head.identity,
                    caseledger::service::DEFAULT_AUTHORITY,
                    "POST",
                    "/v1/records",
                    &body,
                );
                runtime.block_on(call(&router, "POST", "/v1/records", headers, body));
            }
            started.elapsed()
        });
    });
    group.finish();
}

criterion_group!(benches, drain, approval_latency);
criterion_main!(benches);
