//! RFC 3161 time-stamps of checkpoints: `serve` asks a time-stamp
//! authority for each new checkpoint and serves its answer, which
//! `openssl ts -verify` accepts for the checkpoint's text and refuses for
//! any other. The TSA is `openssl ts -reply` behind a small HTTP server on
//! loopback, with a CA and a TSA certificate made for the test, as a real
//! one would be.

mod common;

use std::process::Command;

use common::tsa::{make_tsa, serve_tsa};
use common::*;

#[test]
fn each_checkpoint_is_time_stamped_and_openssl_verifies_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tsa_dir = dir.path().join("tsa");
    make_tsa(&tsa_dir);
    let tsa_url = serve_tsa(&tsa_dir);
    let staff = caseledger::court::Staff::from_seed(97, ORIGIN);
    let data = dir.path().join("data");
    init_court(dir.path(), &data, &staff);
    let serve = Serve::start(
        &data,
        &[
            ("CASELEDGER_TSA_URL", tsa_url.as_str()),
            ("CASELEDGER_WITNESS_POLL_MS", "50"),
            ("CASELEDGER_CHECKPOINT_EVERY_MS", "100"),
        ],
    );
    set_up_staff(&serve.address, &staff);
    // The newest checkpoint, once its time-stamp is there.
    let (note, stamp) = common::tsa::newest_stamped(&serve.address, 2);
    let text = note.split("\n\n").next().expect("body").to_owned() + "\n";
    std::fs::write(tsa_dir.join("stamp.tsr"), &stamp).expect("stamp");
    std::fs::write(tsa_dir.join("checkpoint.txt"), &text).expect("text");
    std::fs::write(tsa_dir.join("other.txt"), text.replacen('\n', "\n1", 1)).expect("other");
    let verify = |data: &str| {
        Command::new("openssl")
            .args(["ts", "-verify", "-in", "stamp.tsr", "-data", data, "-CAfile", "ca.crt"])
            .current_dir(&tsa_dir)
            .output()
            .expect("openssl ts -verify")
    };
    let out = verify("checkpoint.txt");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verification: OK"),
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !verify("other.txt").status.success(),
        "another text is not this time-stamp's"
    );
    // No time-stamp of a size never checkpointed.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let missing = agent
        .get(&format!("{}/v1/checkpoints/999999/timestamp", serve.address))
        .call()
        .expect("timestamp");
    assert_eq!(missing.status().as_u16(), 404);
}

/// Asks the TSA at `url` for a time-stamp of checkpoint `note`, as the node
/// does; returns its answer (DER).
fn stamp_of(url: &str, note: &str) -> Vec<u8> {
    use sha2::Digest as _;
    let digest: [u8; 32] = sha2::Sha256::digest(caseledger_verify::timestamp::stamped_text(note).as_bytes()).into();
    let nonce = 0x1234_5678_9abc;
    let request = caseledger::service::timestamps::request_der(&digest, nonce);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let answer = agent
        .post(url)
        .header("Content-Type", "application/timestamp-query")
        .send(&request[..])
        .expect("tsa")
        .body_mut()
        .read_to_vec()
        .expect("answer");
    caseledger::service::timestamps::check_response(&answer, &digest, nonce).expect("granted");
    // The same answer with its genTime moved to 2099 (the node does not
    // check the TSA's signature, the relying party does): the node does
    // not keep a stamp from the future.
    let at = answer
        .windows(4)
        .position(|w| w[0] == 0x18 && w[2] == b'2' && w[3] == b'0')
        .expect("a GeneralizedTime");
    let mut future = answer.clone();
    future[at + 2..at + 6].copy_from_slice(b"2099");
    let refused =
        caseledger::service::timestamps::check_response(&future, &digest, nonce).expect_err("from the future");
    assert!(refused.contains("future"), "{refused}");
    answer
}

#[test]
fn the_applicants_bundle_carries_the_time_stamp_and_verify_bundle_checks_it_with_openssl() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let tsa_dir = dir.path().join("tsa");
    make_tsa(&tsa_dir);
    let tsa_url = serve_tsa(&tsa_dir);
    // Another TSA, whose CA vouches for nothing of this court's TSA.
    let other_tsa = dir.path().join("other-tsa");
    make_tsa(&other_tsa);
    let case_number = "(2026)苏02执1901号";
    let (ledger, staff) = court_with_case(&dir.path().join("data"), 191, case_number, 1, 5_000_000);
    let first = ledger.checkpoint_now().expect("checkpoint");
    let first_size = ledger.size();
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let answer = stamp_of(&tsa_url, &first);
    ledger.add_timestamp(first_size, &answer).expect("keep");
    let bundle = ledger.applicant_bundle_of(case_number, "applicant-1").expect("bundle");
    assert_eq!(bundle.tree_size, first_size);
    assert_eq!(
        bundle.timestamp.as_deref(),
        Some(base64::engine::general_purpose::STANDARD.encode(&answer).as_str())
    );
    let report = bundle.verify(&ledger.node_key()).expect("verifies");
    let at = report.time_stamped_ms.expect("the TSA's time");
    // openssl's genTime is in whole seconds.
    assert!(
        at + 1000 >= before_ms && at < before_ms + 600_000,
        "{at} vs {before_ms}"
    );

    let node_pub = dir.path().join("node.pub");
    std::fs::write(&node_pub, ledger.node_key().to_base64()).expect("key");
    let verify_bundle = |bundle: &caseledger_verify::bundle::ApplicantBundle, ca: Option<&std::path::Path>| {
        let file = dir.path().join("bundle.json");
        std::fs::write(&file, serde_json::to_string(bundle).expect("json")).expect("bundle");
        let mut command = Command::new(env!("CARGO_BIN_EXE_caseledger"));
        command.arg("verify-bundle").arg(&file).arg("--key").arg(&node_pub);
        if let Some(ca) = ca {
            command.arg("--tsa-ca").arg(ca);
        }
        let out = command.output().expect("caseledger");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, printed) = verify_bundle(&bundle, Some(&tsa_dir.join("ca.crt")));
    assert_eq!(code, Some(0), "{printed}");
    assert!(
        printed.contains("time-stamped at") && printed.contains("signature checked by openssl"),
        "{printed}"
    );
    // Without the CA the time is shown, said to be unchecked.
    let (code, printed) = verify_bundle(&bundle, None);
    assert_eq!(code, Some(0), "{printed}");
    assert!(printed.contains("not checked: give --tsa-ca"), "{printed}");
    // Another TSA's CA: openssl refuses the signature.
    let (code, printed) = verify_bundle(&bundle, Some(&other_tsa.join("ca.crt")));
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains("openssl ts -verify refused"), "{printed}");
    assert!(
        !printed.contains("OK"),
        "nothing is said to hold before a refusal: {printed}"
    );
    assert!(printed.starts_with("FAILED"), "{printed}");

    // The ledger moves on; the stamp of the first checkpoint put on a
    // bundle of the second is refused, by the library and the CLI.
    let case = caseledger::court::CaseRecords::new(&staff, &staff.officers[0], case_number);
    ledger.append_one(case.receipt("BANK-2", 100)).expect("receipt");
    ledger.checkpoint_now().expect("checkpoint");
    let mut moved = ledger.applicant_bundle_of(case_number, "applicant-1").expect("bundle");
    assert!(moved.tree_size > first_size);
    assert_eq!(moved.timestamp, None, "the newer checkpoint has no stamp yet");
    let (code, printed) = verify_bundle(&moved, Some(&tsa_dir.join("ca.crt")));
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains("carries no time-stamp"), "{printed}");
    moved.timestamp = bundle.timestamp.clone();
    let refused = moved
        .verify(&ledger.node_key())
        .expect_err("another checkpoint's stamp");
    assert!(refused.contains("time-stamp is of another text"), "{refused}");
    let (code, printed) = verify_bundle(&moved, None);
    assert_eq!(code, Some(1), "{printed}");
    // Garbage in its place is refused too.
    moved.timestamp = Some(base64::engine::general_purpose::STANDARD.encode(b"not a time-stamp"));
    assert!(moved.verify(&ledger.node_key()).is_err());
}

#[test]
fn a_time_stamp_not_of_its_checkpoint_is_refused_when_kept_and_named_by_verify_when_forced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tsa_dir = dir.path().join("tsa");
    make_tsa(&tsa_dir);
    let tsa_url = serve_tsa(&tsa_dir);
    let data = dir.path().join("data");
    let (ledger, staff) = court_with_case(&data, 193, "(2026)苏02执1931号", 1, 5_000_000);
    let first = ledger.checkpoint_now().expect("checkpoint");
    let first_size = ledger.size();
    let first_stamp = stamp_of(&tsa_url, &first);
    ledger
        .add_timestamp(first_size, &first_stamp)
        .expect("its own stamp is kept");
    let case = caseledger::court::CaseRecords::new(&staff, &staff.officers[0], "(2026)苏02执1931号");
    ledger.append_one(case.receipt("BANK-2", 100)).expect("receipt");
    ledger.checkpoint_now().expect("checkpoint");
    let second_size = ledger.size();
    // Write time: another checkpoint's stamp, garbage, or a size with no
    // checkpoint are refused, and nothing is kept.
    for (size, answer) in [
        (second_size, first_stamp.clone()),
        (second_size, b"not a time-stamp".to_vec()),
        (second_size + 5, first_stamp.clone()),
    ] {
        assert!(ledger.add_timestamp(size, &answer).is_err(), "size {size}");
    }
    assert_eq!(ledger.timestamp_at(second_size).expect("read"), None);
    drop(ledger);
    let verify = || {
        let out = Command::new(env!("CARGO_BIN_EXE_caseledger"))
            .args(["verify", "--json", "--data"])
            .arg(&data)
            .output()
            .expect("caseledger");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        (out.status.code(), report)
    };
    let (code, report) = verify();
    assert_eq!(code, Some(0), "{report}");
    // Forced into storage behind the node's back: verify names each.
    {
        let db = raw_db(&data);
        let cf = db.cf_handle("timestamps").expect("cf");
        db.put_cf(cf, second_size.to_be_bytes(), &first_stamp).expect("put");
        db.put_cf(cf, (second_size + 5).to_be_bytes(), &first_stamp)
            .expect("put");
    }
    let (code, report) = verify();
    assert_eq!(code, Some(1), "{report}");
    let named: Vec<(u64, String)> = report["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|v| {
            (
                v["seq"].as_u64().expect("seq"),
                v["rule"].as_str().expect("rule").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        named,
        vec![
            (second_size - 1, "checkpoint_timestamp".to_owned()),
            (second_size + 4, "checkpoint_timestamp".to_owned())
        ],
        "{report}"
    );
}

/// A stamp cannot be older than what it stamps: one whose time is before
/// the newest entry of its checkpoint (beyond ten minutes of clock
/// difference) is refused when kept, refused in the applicant's bundle,
/// and named by `verify` when forced into storage. (Here the node's clock
/// runs two days ahead of the TSA's.)
#[test]
fn a_time_stamp_older_than_the_entries_it_stamps_is_refused_and_named() {
    use base64::Engine as _;
    use std::sync::atomic::AtomicU64;
    let dir = tempfile::tempdir().expect("tempdir");
    let tsa_dir = dir.path().join("tsa");
    make_tsa(&tsa_dir);
    let tsa_url = serve_tsa(&tsa_dir);
    let data = dir.path().join("data");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let ahead = std::sync::Arc::new(TestClock(AtomicU64::new(now_ms + 2 * 86_400_000)));
    let (ledger, staff) = court_with_clock(&data, 195, ahead);
    let case_number = "(2026)苏02执1951号";
    let case = caseledger::court::CaseRecords::new(&staff, &staff.officers[0], case_number);
    ledger
        .append(
            [
                case.open(1),
                case.account("acct-1", 1, "6222000011110001"),
                vec![case.confirm("acct-1"), case.receipt("BANK-1", 5_000_000)],
            ]
            .concat(),
        )
        .expect("case");
    let note = ledger.checkpoint_now().expect("checkpoint");
    let size = ledger.size();
    let stamp = stamp_of(&tsa_url, &note);
    let refused = ledger.add_timestamp(size, &stamp).expect_err("older than its entries");
    assert!(refused.to_string().contains("before the entry"), "{refused}");
    assert_eq!(ledger.timestamp_at(size).expect("read"), None, "nothing kept");
    let mut bundle = ledger.applicant_bundle_of(case_number, "applicant-1").expect("bundle");
    bundle.timestamp = Some(base64::engine::general_purpose::STANDARD.encode(&stamp));
    let refused = bundle.verify(&ledger.node_key()).expect_err("refused in the bundle");
    assert!(refused.contains("before the entry"), "{refused}");
    drop(ledger);
    {
        let db = raw_db(&data);
        let cf = db.cf_handle("timestamps").expect("cf");
        db.put_cf(cf, size.to_be_bytes(), &stamp).expect("put");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["verify", "--json", "--data"])
        .arg(&data)
        .output()
        .expect("caseledger");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(out.status.code(), Some(1), "{report}");
    let named: Vec<(u64, &str)> = report["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|v| (v["seq"].as_u64().expect("seq"), v["rule"].as_str().expect("rule")))
        .collect();
    assert_eq!(named, vec![(size - 1, "checkpoint_timestamp")], "{report}");
}
