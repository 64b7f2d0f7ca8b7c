//! The export (docs/FORMAT.md, "Export"): `caseledger export` and
//! `GET /v1/export` write the same NDJSON, entries and checkpoints;
//! `caseledger verify-export` audits it with the pure auditor alone and
//! gives the report `caseledger verify` gives for the ledger folder, good
//! or bad.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use caseledger::court::CaseRecords;
use caseledger_verify::export::ExportLine;
use caseledger_verify::funds::model::Role;
use common::*;
use serde_json::Value;

fn caseledger(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(args)
        .output()
        .expect("run caseledger")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

/// `(exit code, report)` of `verify --json` on a folder.
fn verify(dir: &Path, key: &Path) -> (i32, Value) {
    let out = caseledger(&["verify", "--data", path(dir), "--key", path(key), "--json"]);
    (
        out.status.code().expect("exit code"),
        serde_json::from_slice(&out.stdout).expect("json"),
    )
}

/// Exports `dir` to `file` with the CLI, then `(exit code, report)` of
/// `verify-export --json` on it.
fn export_and_verify(dir: &Path, file: &Path, key: &Path) -> (i32, Value) {
    let out = caseledger(&["export", "--data", path(dir), "--out", path(file)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    verify_export(file, key)
}

fn verify_export(file: &Path, key: &Path) -> (i32, Value) {
    let out = caseledger(&["verify-export", path(file), "--key", path(key), "--json"]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().expect("exit code"),
        serde_json::from_slice(&out.stdout).expect("json"),
    )
}

/// A closed court ledger with two cases, a disbursement paid, checkpoints.
fn court_ledger(dir: &Path) -> caseledger::court::Staff {
    let (ledger, staff) = court_with_case(dir, 81, "(2024)苏02执81号", 1, 9_000_000);
    let case = CaseRecords::new(&staff, &staff.officers[0], "(2024)苏02执81号");
    ledger
        .append_one(case.request("d-1", "acct-1", 3_000_000))
        .expect("request");
    for approval in case.approvals(ORIGIN, "d-1", "acct-1", 3_000_000, &[Role::BureauHead, Role::Finance]) {
        ledger.append_one(approval).expect("approval");
    }
    ledger
        .append_one(case.payment("d-1", "PAY-1", "acct-1", 3_000_000))
        .expect("payment");
    ledger.checkpoint_now().expect("checkpoint");
    ledger.close().expect("close");
    staff
}

#[test]
fn an_export_audits_as_the_ledger_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    court_ledger(dir.path());
    let key = dir.path().join("node.pub");
    let file = dir.path().join("export.ndjson");
    let (code, exported) = export_and_verify(dir.path(), &file, &key);
    let (folder_code, folder) = verify(dir.path(), &key);
    assert_eq!((code, folder_code), (0, 0), "{exported} {folder}");
    assert_eq!(exported, folder, "the same report");
    assert!(exported["checkpoints"].as_u64().expect("count") >= 2);
    // Every checkpoint stored is in the export, right after its last entry.
    let text = std::fs::read_to_string(&file).expect("read");
    let lines: Vec<ExportLine> = text.lines().map(|l| ExportLine::parse(l).expect("line")).collect();
    let mut entries = 0;
    let mut checkpoints = 0;
    for line in &lines {
        match line {
            ExportLine::Entry { seq, .. } => {
                assert_eq!(*seq, entries);
                entries += 1;
            }
            ExportLine::Checkpoint { size, .. } => {
                assert_eq!(*size, entries);
                checkpoints += 1;
            }
        }
    }
    assert_eq!(checkpoints, exported["checkpoints"].as_u64().expect("count"));
    assert_eq!(entries, exported["entries"].as_u64().expect("count"));
}

#[test]
fn a_forced_record_is_reported_by_verify_export_as_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = court_ledger(dir.path());
    let case = CaseRecords::new(&staff, &staff.officers[0], "(2024)苏02执81号");
    let seq = force_append(dir.path(), case.request("d-2", "acct-1", 900_000_000));
    let key = dir.path().join("node.pub");
    let (code, exported) = export_and_verify(dir.path(), &dir.path().join("export.ndjson"), &key);
    assert_eq!(code, 1);
    let (_, folder) = verify(dir.path(), &key);
    let found = |report: &Value| -> Vec<(u64, String)> {
        report["violations"]
            .as_array()
            .expect("violations")
            .iter()
            .map(|v| {
                (
                    v["seq"].as_u64().expect("seq"),
                    v["rule"].as_str().expect("rule").to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(found(&exported), [(seq, "balance".to_owned())]);
    // The folder also holds tables the export does not carry; the record
    // itself is reported alike.
    assert!(found(&folder).contains(&(seq, "balance".to_owned())), "{folder}");
}

#[test]
fn a_damaged_export_is_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    court_ledger(dir.path());
    let key = dir.path().join("node.pub");
    let file = dir.path().join("export.ndjson");
    assert_eq!(export_and_verify(dir.path(), &file, &key).0, 0);
    let text = std::fs::read_to_string(&file).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    let first_checkpoint = lines
        .iter()
        .position(|l| l.contains("\"checkpoint\""))
        .expect("a checkpoint line");
    let damaged = |edit: &dyn Fn(&mut Vec<String>)| -> (u64, String) {
        let mut copy: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        edit(&mut copy);
        let bad = dir.path().join("bad.ndjson");
        std::fs::write(&bad, copy.join("\n") + "\n").expect("write");
        let (code, report) = verify_export(&bad, &key);
        assert_eq!(code, 1, "{report}");
        let error = &report["first_error"];
        (
            error["seq"].as_u64().expect("seq"),
            error["check"].as_str().expect("check").to_owned(),
        )
    };
    // An entry line dropped: the next one is not where the chain expects it.
    let entry_5 = lines
        .iter()
        .position(|l| matches!(ExportLine::parse(l), Ok(ExportLine::Entry { seq: 5, .. })))
        .expect("entry 5");
    assert_eq!(damaged(&|l| drop(l.remove(entry_5))), (5, "entry_missing".to_owned()));
    // A checkpoint moved one entry later.
    assert_eq!(
        damaged(&|l| l.swap(first_checkpoint, first_checkpoint + 1)).1,
        "checkpoint_size"
    );
    // A field the format does not have.
    assert_eq!(
        damaged(&|l| l[entry_5] = l[entry_5].replacen('{', "{\"note\":1,", 1)),
        (5, "export_line".to_owned())
    );
    // A checkpoint signed by another key (the export's signature replaced).
    let other = caseledger_keys::Identity::from_seed([9; 32]);
    let signer = caseledger_keys::note::Signer::new(ORIGIN, other).expect("signer");
    let forged = |l: &mut Vec<String>| {
        let ExportLine::Checkpoint { size, note } = ExportLine::parse(&l[first_checkpoint]).expect("line") else {
            panic!("not a checkpoint line")
        };
        let text = note.split("\n\n").next().expect("body").to_owned() + "\n";
        l[first_checkpoint] = ExportLine::Checkpoint {
            size,
            note: signer.sign(&text).expect("sign"),
        }
        .to_json();
    };
    assert_eq!(damaged(&forged).1, "checkpoint_signature");
}

#[tokio::test]
async fn get_export_is_byte_for_byte_the_cli_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = court_ledger(dir.path());
    let file = dir.path().join("export.ndjson");
    let out = caseledger(&["export", "--data", path(dir.path()), "--out", path(&file)]);
    assert!(out.status.success());
    let ledger = caseledger_ledger::store::Ledger::open(dir.path(), clock(), options()).expect("open");
    let state = service_state(ledger, &staff);
    let body = get_export(state, &staff.administrator.identity).await;
    assert_eq!(body, std::fs::read_to_string(&file).expect("read"));
}

#[test]
fn an_export_without_its_checkpoints_is_not_certified() {
    let dir = tempfile::tempdir().expect("tempdir");
    court_ledger(dir.path());
    let key = dir.path().join("node.pub");
    let file = dir.path().join("export.ndjson");
    assert_eq!(export_and_verify(dir.path(), &file, &key).0, 0);
    let text = std::fs::read_to_string(&file).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    // Every checkpoint line removed: nothing the node signed vouches for
    // the entries, which anyone could then re-date or drop.
    let entries_only: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.contains("\"checkpoint\""))
        .collect();
    let bad = dir.path().join("no-checkpoints.ndjson");
    std::fs::write(&bad, entries_only.join("\n") + "\n").expect("write");
    let (code, report) = verify_export(&bad, &key);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["violations"][0]["rule"], "uncheckpointed", "{report}");
    assert_eq!(report["violations"][0]["seq"], 0, "{report}");
    // Entries after the last checkpoint line are not vouched for either:
    // the export without its final checkpoint line.
    let last_checkpoint = lines
        .iter()
        .rposition(|l| l.contains("\"checkpoint\""))
        .expect("checkpoint");
    let tail: Vec<&str> = lines[..last_checkpoint].to_vec();
    let cut = dir.path().join("cut.ndjson");
    std::fs::write(&cut, tail.join("\n") + "\n").expect("write");
    let (code, report) = verify_export(&cut, &key);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["violations"][0]["rule"], "uncheckpointed", "{report}");
}

#[tokio::test]
async fn a_ledger_that_failed_its_open_checks_is_still_audited_and_exported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = court_ledger(dir.path());
    // The head no longer matches the last entry: the ledger opens read-only.
    {
        let db = raw_db(dir.path());
        let meta = db.cf_handle("meta").expect("cf");
        let mut head: Value =
            serde_json::from_slice(&db.get_cf(meta, b"head").expect("get").expect("head")).expect("json");
        head["last_hash"] = "00".repeat(32).into();
        db.put_cf(meta, b"head", serde_json::to_vec(&head).expect("json"))
            .expect("put");
    }
    let ledger = caseledger_ledger::store::Ledger::open(dir.path(), clock(), options()).expect("opens read-only");
    assert!(ledger.corruption().is_some());
    let report = ledger.audit(None, 2, &|_| {}).expect("the audit runs");
    assert_eq!(report.first_error.expect("found").check, "head");
    let size = ledger.size();
    let state = service_state(ledger, &staff);
    let body = get_export(state, &staff.administrator.identity).await;
    let entries = body
        .lines()
        .filter(|l| matches!(ExportLine::parse(l), Ok(ExportLine::Entry { .. })))
        .count();
    assert_eq!(entries as u64, size);
}

/// `GET /v1/export` signed by `signer`, answered 200; its body.
async fn get_export(state: caseledger::service::AppState, signer: &caseledger_keys::Identity) -> String {
    let headers = caseledger::service::client::sign_request(
        signer,
        caseledger::service::DEFAULT_AUTHORITY,
        "GET",
        "/v1/export",
        &[],
    );
    let mut request = axum::http::Request::builder().method("GET").uri("/v1/export");
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let response = tower::ServiceExt::oneshot(
        caseledger::service::app(state),
        request.body(axum::body::Body::empty()).expect("request"),
    )
    .await
    .expect("response");
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8(body.to_vec()).expect("utf8")
}
