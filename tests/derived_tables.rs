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
