//! The node never acts on damaged derived tables (issue 15, item 2): a
//! database insider who changes one byte of a case's balance, or a key's
//! entry, while the service is stopped, finds the service refusing to
//! start (exit code 3), first by the seal the node made of the tables at
//! its clean close (`state_seal`), and with that seal deleted too, by the
//! replay the open then makes (`derived_state`, `derived_keys`).

mod common;

use std::path::Path;

use caseledger::court::{CaseRecords, Staff};
use caseledger::service::client::Client;
use common::Serve;

/// A court served, its staff enrolled and a case with money, then stopped
/// cleanly: the ledger folder.
fn stopped_court(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("ledger");
    let staff = Staff::from_seed(17, "court.example/tables");
    common::init_court(dir, &data, &staff);
    std::fs::write(data.join("commitment.key"), hex::encode(staff.commitment_key)).expect("commitment key");
    let mut serve = Serve::start(&data, &[]);
    common::set_up_staff(&serve.address, &staff);
    let case = CaseRecords::new(&staff, &staff.officers[0], "(2026)苏02执17号");
    let clerk = Client::new(&serve.address, staff.filing_clerk.identity.clone());
    assert_eq!(clerk.write_numbered(&[case.open_request(1)]).expect("open").0, 201);
    let finance = Client::new(&serve.address, staff.finance.identity.clone());
    let (status, body) = finance.write(&[case.receipt("BANK-17", 2_004_000)]).expect("receipt");
    assert_eq!(status, 201, "{body}");
    assert!(serve.terminate().success());
    data
}

/// Changes one value of column family `cf` whose key starts with `prefix`.
fn edit(data: &Path, cf: &str, prefix: &[u8], change: impl FnOnce(&mut Vec<u8>)) {
    let db = common::raw_db(data);
    let handle = db.cf_handle(cf).expect("cf");
    let (key, value) = db
        .iterator_cf(handle, rocksdb::IteratorMode::Start)
        .map(|item| item.expect("read"))
        .find(|(key, _)| key.starts_with(prefix))
        .expect("a value to change");
    let mut value = value.into_vec();
    change(&mut value);
    db.put_cf(handle, key, value).expect("put");
}

fn delete_seal(data: &Path) {
    let db = common::raw_db(data);
    db.delete_cf(db.cf_handle("meta").expect("meta"), b"state_seal")
        .expect("delete");
}

fn refused_with(data: &Path, check: &str) {
    let (status, stderr) = common::serve_exit(data);
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(check), "{check}: {stderr}");
}

#[test]
fn a_changed_balance_stops_the_service_from_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = stopped_court(dir.path());
    edit(&data, "state", b"case/", |value| {
        let text = String::from_utf8(value.clone()).expect("json");
        let changed = text.replacen("2004000", "5004000", 1);
        assert_ne!(changed, text, "the balance is in the case object");
        *value = changed.into_bytes();
    });
    refused_with(&data, "state_seal");
    delete_seal(&data);
    refused_with(&data, "derived_state");
}

#[test]
fn a_changed_key_entry_stops_the_service_from_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = stopped_court(dir.path());
    // Some key becomes an administrator.
    edit(&data, "keys", b"", |value| {
        let text = String::from_utf8(value.clone()).expect("json");
        let changed = text.replacen("\"administrator\":false", "\"administrator\":true", 1);
        assert_ne!(changed, text);
        *value = changed.into_bytes();
    });
    refused_with(&data, "state_seal");
    delete_seal(&data);
    refused_with(&data, "derived_keys");
}

/// One byte of a middle entry changed while the service was stopped: the
/// service starts (its open checks read the head, not every entry), but
/// never serves the entry as genuine. Reading it answers 503, `/readyz`
/// turns 503 with the seq and check, every later write is refused, and the
/// failure is counted; `verify` names the entry.
#[test]
fn a_changed_middle_entry_is_never_served_and_stops_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = stopped_court(dir.path());
    let staff = Staff::from_seed(17, "court.example/tables");
    let seq = 10u64;
    {
        let db = common::raw_db(&data);
        let entries = db.cf_handle("entries").expect("cf");
        let mut bytes = db.get_cf(entries, common::seq_key(seq)).expect("get").expect("entry");
        let last = bytes.len() - 70; // inside the payload, before the signature
        bytes[last] ^= 0x01;
        db.put_cf(entries, common::seq_key(seq), bytes).expect("put");
    }
    let serve = Serve::start(&data, &[]);
    let admin = Client::new(&serve.address, staff.administrator.identity.clone());
    let (status, _) = admin.get("/v1/entries/9").expect("read");
    assert_eq!(status, 200, "an untouched entry is served");
    let (status, body) = admin.get(&format!("/v1/entries/{seq}")).expect("read");
    assert_eq!(status, 503, "{body}");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut ready = agent.get(&format!("{}/readyz", serve.address)).call().expect("readyz");
    assert_eq!(ready.status().as_u16(), 503);
    let reason = ready.body_mut().read_to_string().expect("body");
    assert!(
        reason.contains(&format!("seq {seq}")) && reason.contains("leaf_hash"),
        "{reason}"
    );
    let case = CaseRecords::new(&staff, &staff.officers[0], "(2026)苏02执17号");
    let finance = Client::new(&serve.address, staff.finance.identity.clone());
    let (status, body) = finance.write(&[case.receipt("BANK-18", 1_000)]).expect("write");
    assert_eq!(status, 503, "writes stopped: {body}");
    let mut metrics = agent
        .get(&format!("{}/metrics", serve.address))
        .call()
        .expect("metrics");
    let text = metrics.body_mut().read_to_string().expect("metrics");
    assert!(text.contains("caseledger_integrity_failures_total"), "{text}");
    drop(serve);
    let report = caseledger_ledger::store::Ledger::open_read_only(&data)
        .expect("open")
        .audit(None, 2, &|_| {})
        .expect("audit");
    assert_eq!(report.first_finding().map(|(s, _)| s), Some(seq));
}

/// The background self-audit (自动存证校验) finds a changed entry nobody
/// reads: `/readyz` turns 503 with its seq and check, writes stop, the
/// gauge says so, and the court's auditor gets an SMS alert.
#[test]
fn the_self_audit_finds_a_changed_entry_and_alerts_the_auditor() {
    use caseledger::court::Person;
    use caseledger_verify::funds::model::Role;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ledger");
    let staff = Staff::from_seed(19, "court.example/self-audit");
    common::init_court(dir.path(), &data, &staff);
    std::fs::write(data.join("commitment.key"), hex::encode(staff.commitment_key)).expect("commitment key");
    let auditor = Person::new([19; 32], "auditor-19", "纪检监察", Role::Auditor, "13800000119");
    {
        let mut serve = Serve::start(&data, &[]);
        common::set_up_staff(&serve.address, &staff);
        let admin = Client::new(&serve.address, staff.administrator.identity.clone());
        let enrolment = auditor.enrolment_request(&staff.origin, &staff.administrator.identity);
        assert_eq!(admin.write_numbered(&[enrolment]).expect("enrol").0, 201);
        let co_admin = Client::new(&serve.address, staff.co_administrator.identity.clone());
        let co_signed = auditor.co_signature_request(&staff.origin, &staff.co_administrator.identity);
        assert_eq!(co_admin.write_numbered(&[co_signed]).expect("co-sign").0, 201);
        assert!(serve.terminate().success());
    }
    let seq = 10u64;
    {
        let db = common::raw_db(&data);
        let entries = db.cf_handle("entries").expect("cf");
        let mut bytes = db.get_cf(entries, common::seq_key(seq)).expect("get").expect("entry");
        let inside = bytes.len() - 70;
        bytes[inside] ^= 0x01;
        db.put_cf(entries, common::seq_key(seq), bytes).expect("put");
    }
    let serve = Serve::start(&data, &[("CASELEDGER_SELF_AUDIT_EVERY_MS", "100")]);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    // Bounded only against a hang: the audit runs every 100 ms.
    let began = std::time::Instant::now();
    let reason = loop {
        let mut ready = agent.get(&format!("{}/readyz", serve.address)).call().expect("readyz");
        if ready.status().as_u16() == 503 {
            break ready.body_mut().read_to_string().expect("body");
        }
        assert!(
            began.elapsed() < std::time::Duration::from_secs(300),
            "the self-audit never failed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(reason.contains(&format!("self-audit failed at seq {seq}")), "{reason}");
    let alert = loop {
        let line = serve
            .lines
            .recv_timeout(std::time::Duration::from_secs(300))
            .expect("an SMS alert printed by the console provider");
        if line.contains("[SMS alert-") {
            break line;
        }
    };
    assert!(alert.contains("****0119") && alert.contains("自检"), "{alert}");
    let finance = Client::new(&serve.address, staff.finance.identity.clone());
    let case = CaseRecords::new(&staff, &staff.officers[0], "(2026)苏02执19号");
    assert_eq!(finance.write(&[case.receipt("BANK-19", 1_000)]).expect("write").0, 503);
    let mut metrics = agent
        .get(&format!("{}/metrics", serve.address))
        .call()
        .expect("metrics");
    let text = metrics.body_mut().read_to_string().expect("metrics");
    assert!(text.contains("caseledger_self_audit_ok 0"), "{text}");
}
