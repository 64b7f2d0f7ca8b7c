//! The page's verifier (`caseledger-verify-wasm`, run natively here)
//! checks that a bundle's checkpoint extends the one the page saw before:
//! every malformed or partial `seen` and `consistency` is refused, a
//! rollback and a second history from the same genesis too; an honest
//! return visit passes (issue 16, third attack round).

mod common;

use caseledger_verify_wasm as wasm;

use base64::Engine as _;
use caseledger::court::CaseRecords;
use caseledger_ledger::store::Ledger;
use common::*;
use serde_json::{json, Value};

const CASE: &str = "(2026)苏02执1801号";

fn run(ledger: &Ledger, input: &Value) -> Value {
    let key = ledger.node_key().to_base64();
    let bytes = [key.as_bytes(), input.to_string().as_bytes()].concat();
    serde_json::from_str(&wasm::answer(&bytes, key.len())).expect("json")
}

fn proof(ledger: &Ledger, first: u64, second: u64) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    Value::from(
        ledger
            .consistency_proof(first, second)
            .expect("proof")
            .iter()
            .map(|h| b64.encode(h))
            .collect::<Vec<_>>(),
    )
}

fn ok(v: &Value) -> bool {
    v["ok"] == true
}

#[test]
fn consistent_with_edges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 181, CASE, 1, 6_000_000);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let (code, issue) = case.applicant_code(1);
    ledger.append_one(issue).expect("code");
    let b1 = serde_json::to_value(ledger.applicant_bundle(&code).expect("b").expect("c")).expect("v");
    let first = run(&ledger, &json!({ "bundle": b1 }));
    assert!(ok(&first), "{first}");
    let seen = json!({"size": first["report"]["tree_size"], "root": first["report"]["root"]});
    let n1 = seen["size"].as_u64().expect("size");
    // Grow.
    ledger
        .append_one(case.request("d-1", "acct-1", 1_000_000))
        .expect("d-1");
    let b2 = serde_json::to_value(ledger.applicant_bundle(&code).expect("b").expect("c")).expect("v");
    let n2 = b2["tree_size"].as_u64().expect("size");
    assert!(n2 > n1);
    // Honest extension, remembered as the page remembers it.
    let a = run(
        &ledger,
        &json!({"bundle": b2, "seen": seen, "consistency": proof(&ledger, n1, n2)}),
    );
    assert!(ok(&a), "honest return visit: {a}");
    // Same checkpoint again: equal sizes, no proof.
    let a = run(&ledger, &json!({"bundle": b1, "seen": seen, "consistency": []}));
    assert!(ok(&a), "same checkpoint: {a}");
    let a = run(&ledger, &json!({"bundle": b1, "seen": seen}));
    assert!(ok(&a), "same checkpoint, no consistency field: {a}");
    // Bypass attempts, each must be refused.
    let cases: Vec<(&str, Value)> = vec![
        ("no proof", json!({"bundle": b2, "seen": seen})),
        ("empty proof", json!({"bundle": b2, "seen": seen, "consistency": []})),
        ("null proof", json!({"bundle": b2, "seen": seen, "consistency": null})),
        (
            "object proof",
            json!({"bundle": b2, "seen": seen, "consistency": {"proof": proof(&ledger, n1, n2)}}),
        ),
        ("string proof", json!({"bundle": b2, "seen": seen, "consistency": "x"})),
        (
            "proof with non-string",
            json!({"bundle": b2, "seen": seen, "consistency": [1, 2]}),
        ),
        (
            "rolled back",
            json!({"bundle": b1, "seen": {"size": n2, "root": a_root(&b2, &ledger)}, "consistency": []}),
        ),
        (
            "equal size other root",
            json!({"bundle": b1, "seen": {"size": n1, "root": a_root(&b2, &ledger)}, "consistency": []}),
        ),
        (
            "wrong-size proof",
            json!({"bundle": b2, "seen": seen, "consistency": proof(&ledger, n1 - 1, n2)}),
        ),
        (
            "seen size 0",
            json!({"bundle": b2, "seen": {"size": 0, "root": seen["root"]}, "consistency": []}),
        ),
        (
            "seen size string",
            json!({"bundle": b2, "seen": {"size": n1.to_string(), "root": seen["root"]}, "consistency": []}),
        ),
        (
            "seen no root",
            json!({"bundle": b2, "seen": {"size": n1}, "consistency": proof(&ledger, n1, n2)}),
        ),
        (
            "seen array",
            json!({"bundle": b2, "seen": [n1, seen["root"]], "consistency": []}),
        ),
        ("seen number", json!({"bundle": b2, "seen": 5, "consistency": []})),
        (
            "seen size negative",
            json!({"bundle": b2, "seen": {"size": -1, "root": seen["root"]}, "consistency": []}),
        ),
        (
            "seen size huge",
            json!({"bundle": b2, "seen": {"size": u64::MAX, "root": seen["root"]}, "consistency": []}),
        ),
    ];
    let mut passed = Vec::new();
    for (name, input) in &cases {
        let a = run(&ledger, input);
        println!("{name}: {}", a.get("error").cloned().unwrap_or(Value::Null));
        if ok(&a) {
            passed.push(*name);
        }
    }
    // "seen": false / 0 / "" / {} are what a page never stores; noted only.
    for (name, s) in [
        ("false", json!(false)),
        ("zero", json!(0)),
        ("empty string", json!("")),
        ("empty object", json!({})),
    ] {
        let a = run(&ledger, &json!({"bundle": b2, "seen": s, "consistency": []}));
        println!("seen {name}: ok={}", ok(&a));
    }
    assert!(passed.is_empty(), "accepted: {passed:?}");
}

fn a_root(_b: &Value, ledger: &Ledger) -> Value {
    // the root of a tree of the current size: a different root from seen's
    let b64 = base64::engine::general_purpose::STANDARD;
    Value::from(b64.encode(ledger.root_at(ledger.size()).expect("root")))
}

/// A second history from the same genesis: seen from A, bundle and proof from B.
#[test]
fn a_second_history_from_the_same_genesis_is_refused() {
    let da = tempfile::tempdir().expect("tempdir");
    let db = tempfile::tempdir().expect("tempdir");
    let (a, staff) = court_with_case(da.path(), 182, CASE, 1, 6_000_000);
    let (b, _) = court_with_case(db.path(), 182, CASE, 1, 6_000_000);
    if a.entry_bytes(0).expect("g") != b.entry_bytes(0).expect("g") {
        println!("genesis not deterministic here; skipped");
        return;
    }
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let (code, issue) = case.applicant_code(1);
    a.append_one(issue.clone()).expect("code a");
    b.append_one(case.receipt("BANK-FORK", 1)).expect("fork differs");
    b.append_one(issue).expect("code b");
    let ba = serde_json::to_value(a.applicant_bundle(&code).expect("b").expect("c")).expect("v");
    let ra = run(&a, &json!({ "bundle": ba }));
    assert!(ok(&ra), "{ra}");
    let seen = json!({"size": ra["report"]["tree_size"], "root": ra["report"]["root"]});
    b.append_one(case.request("d-1", "acct-1", 1_000_000)).expect("grow b");
    let bb = serde_json::to_value(b.applicant_bundle(&code).expect("b").expect("c")).expect("v");
    let n1 = seen["size"].as_u64().expect("n1");
    let n2 = bb["tree_size"].as_u64().expect("n2");
    assert!(n2 > n1);
    let r = run(
        &b,
        &json!({"bundle": bb, "seen": seen, "consistency": proof(&b, n1, n2)}),
    );
    assert!(!ok(&r), "fork accepted: {r}");
    println!("fork: {}", r["error"]);
}

/// With witnesses, the applicant is shown the ledger as of the newest
/// checkpoint a quorum of them cosigned, and the report (the server's and
/// the page's verifier's alike) names who vouched for it and when; the
/// page pins the witnesses' keys and who they are.
#[test]
fn the_applicant_sees_the_newest_witnessed_state_and_who_vouched() {
    use caseledger::service::witnesses::{WitnessSetting, Witnessing};
    use caseledger_keys::cosignature::Cosigner;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 182, CASE, 1, 6_000_000);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let (code, issue) = case.applicant_code(1);
    ledger.append_one(issue).expect("code");
    // A witness cosigns the checkpoint of this size...
    let note = ledger.checkpoint_now().expect("checkpoint");
    let size = ledger.size();
    let cosigner = Cosigner::new(
        "witness.procuratorate.example/w1",
        caseledger_keys::Identity::from_seed([44; 32]),
    )
    .expect("cosigner");
    let text = note.split("\n\n").next().expect("body").to_owned() + "\n";
    let line = cosigner.cosign(&text, 1_795_190_400).expect("cosign");
    ledger
        .add_cosignature(size, cosigner.witness().name(), &line)
        .expect("keep");
    // ... and the ledger moves on, its newest checkpoint not cosigned yet.
    ledger
        .append_one(case.request("d-1", "acct-1", 1_000_000))
        .expect("d-1");
    ledger.checkpoint_now().expect("checkpoint");
    assert!(ledger.size() > size);
    let witnessing = Witnessing::configured(
        &[WitnessSetting {
            key: cosigner.witness().to_string(),
            url: "http://127.0.0.1:9".into(),
            label: Some("无锡市人民检察院".into()),
        }],
        1,
    )
    .expect("witnesses");
    let state = service_state(ledger, &staff).with_witnessing(std::sync::Arc::new(witnessing));
    let runtime = runtime();
    let (status, answer) = wait(
        &runtime,
        send(&state, "GET", &format!("/v1/verify/{code}"), &[], Vec::new()),
    );
    assert_eq!(status, axum::http::StatusCode::OK, "{answer}");
    assert_eq!(answer["bundle"]["tree_size"], size, "as of the witnessed checkpoint");
    assert_eq!(
        answer["report"]["witnessed_by"],
        json!([{"witness": "witness.procuratorate.example/w1", "at_ms": 1_795_190_400_000u64}])
    );
    // The page's verifier, given the pinned keys, says the same.
    let input = json!({"bundle": answer["bundle"], "witnesses": [cosigner.witness().to_string()]});
    let checked = run(&state.ledger, &input);
    assert!(ok(&checked), "{checked}");
    assert_eq!(checked["report"], answer["report"]);
    // Without the witness's key it names nobody; with a quorum it cannot
    // reach, the verifier refuses.
    let unpinned = run(&state.ledger, &json!({"bundle": answer["bundle"]}));
    assert_eq!(unpinned["report"]["witnessed_by"], json!([]));
    let bundle: caseledger_verify::bundle::ApplicantBundle =
        serde_json::from_value(answer["bundle"].clone()).expect("bundle");
    let other = Cosigner::new(
        "witness.bank.example/w1",
        caseledger_keys::Identity::from_seed([45; 32]),
    )
    .expect("other");
    let refused = bundle
        .verify_witnessed(
            &state.ledger.node_key(),
            &[cosigner.witness().clone(), other.witness().clone()],
            2,
        )
        .expect_err("one cosignature of two required");
    assert!(refused.contains("1 of the 2"), "{refused}");
    // The page pins the witness's key and names it.
    let page = wait(&runtime, async {
        use http_body_util::BodyExt as _;
        use tower::ServiceExt as _;
        let request = axum::http::Request::get("/v1/verify")
            .header("host", caseledger::service::DEFAULT_AUTHORITY)
            .body(axum::body::Body::empty())
            .expect("request");
        let response = caseledger::service::app(state.clone())
            .oneshot(request)
            .await
            .expect("page");
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    });
    assert!(page.contains("data-quorum=\"1\""), "the quorum is pinned");
    assert!(page.contains(&cosigner.witness().to_string()) && page.contains("无锡市人民检察院"));
}
