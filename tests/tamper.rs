//! Tampering with a closed ledger directly in RocksDB, as someone with disk
//! access would: every change is detected by `audit` and located to the right
//! sequence number, and the open-time check refuses writes.

mod common;

use std::path::Path;

use caseledger_keys::note;
use caseledger_ledger::store::Ledger;
use caseledger_ledger::Error;
use caseledger_verify::checkpoint::Checkpoint;
use caseledger_verify::entry::{Entry, Record};
use caseledger_verify::record;
use common::*;

/// Entries in the tampering fixture: 0 genesis, 1 to 4 two co-signed
/// registrations, then notes.
const SIZE: u64 = 100;

fn fixture(dir: &Path, keys: &Keys) {
    let ledger = create(dir, keys);
    ledger
        .append(registered(keys, &keys.other, "other", false))
        .expect("register other");
    fill(&ledger, &keys.writer, SIZE - 5);
    assert_eq!(ledger.size(), SIZE);
    ledger.close().expect("close");
}

/// Audits the ledger and returns (seq, check or rule) of the first finding.
fn first_error(dir: &Path) -> (u64, String) {
    let ledger = Ledger::open_read_only(dir).expect("open read-only");
    let report = ledger.audit(None, 2, &|_| {}).expect("audit runs");
    assert!(!report.ok);
    let (seq, check) = report.first_finding().expect("tampering must be detected");
    (seq, check.to_owned())
}

fn with_db(dir: &Path, change: impl FnOnce(&rocksdb::DB)) {
    let db = raw_db(dir);
    change(&db);
}

fn entries(db: &rocksdb::DB) -> &rocksdb::ColumnFamily {
    db.cf_handle("entries").expect("entries column family")
}

fn tampered(change: impl FnOnce(&rocksdb::DB, &Keys)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    fixture(dir.path(), &keys);
    with_db(dir.path(), |db| change(db, &keys));
    dir
}

#[test]
fn untouched_fixture_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture(dir.path(), &Keys::new());
    let ledger = Ledger::open_read_only(dir.path()).expect("open");
    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "{:?}", report.first_error);
    assert_eq!(report.entries, SIZE);
    assert!(report.checkpoints >= 6);
}

#[test]
fn flipped_byte_in_payload_is_located() {
    let dir = tampered(|db, _| {
        let mut bytes = db.get_cf(entries(db), seq_key(40)).expect("get").expect("entry 40");
        bytes[100] ^= 0x01;
        db.put_cf(entries(db), seq_key(40), bytes).expect("put");
    });
    assert_eq!(first_error(dir.path()).0, 40);
}

#[test]
fn flipped_byte_in_timestamp_is_located() {
    let dir = tampered(|db, _| {
        let mut bytes = db.get_cf(entries(db), seq_key(55)).expect("get").expect("entry 55");
        bytes[16] ^= 0x01;
        db.put_cf(entries(db), seq_key(55), bytes).expect("put");
    });
    assert_eq!(first_error(dir.path()), (55, "leaf_hash".to_owned()));
}

#[test]
fn deleted_entry_is_located() {
    let dir = tampered(|db, _| db.delete_cf(entries(db), seq_key(40)).expect("delete"));
    assert_eq!(first_error(dir.path()), (40, "entry_missing".to_owned()));
}

#[test]
fn swapped_entries_are_located() {
    let dir = tampered(|db, _| {
        let a = db.get_cf(entries(db), seq_key(40)).expect("get").expect("40");
        let b = db.get_cf(entries(db), seq_key(41)).expect("get").expect("41");
        db.put_cf(entries(db), seq_key(40), b).expect("put");
        db.put_cf(entries(db), seq_key(41), a).expect("put");
    });
    assert_eq!(first_error(dir.path()), (40, "entry_seq".to_owned()));
}

fn resign(db: &rocksdb::DB, seq: u64, signer: &caseledger_keys::Identity) {
    let bytes = db.get_cf(entries(db), seq_key(seq)).expect("get").expect("entry");
    let mut entry = Entry::decode(&bytes).expect("decode");
    entry.record = Record::sign(ORIGIN, entry.record.kind, entry.record.payload.clone(), signer);
    db.put_cf(entries(db), seq_key(seq), entry.encode()).expect("put");
}

#[test]
fn entry_resigned_by_another_registered_key_is_located() {
    let dir = tampered(|db, keys| resign(db, 40, &keys.other));
    assert_eq!(first_error(dir.path()), (40, "leaf_hash".to_owned()));
}

#[test]
fn entry_resigned_by_an_unregistered_key_is_located() {
    let dir = tampered(|db, _| resign(db, 40, &caseledger_keys::Identity::from_seed([77; 32])));
    assert_eq!(first_error(dir.path()), (40, "unknown_key".to_owned()));
}

#[test]
fn rewritten_chain_after_an_entry_is_still_caught_by_the_signature() {
    // A thorough forger changes entry 40's payload and rewrites every later
    // hash link and node; without the writer's private key the record
    // signature still gives it away at 40.
    let dir = tampered(|db, _| {
        let bytes = db.get_cf(entries(db), seq_key(40)).expect("get").expect("entry");
        let mut entry = Entry::decode(&bytes).expect("decode");
        entry.record.payload[20] ^= 0x02;
        let mut prev = caseledger_verify::hash::leaf_hash(&entry.encode());
        db.put_cf(entries(db), seq_key(40), entry.encode()).expect("put");
        for seq in 41..SIZE {
            let bytes = db.get_cf(entries(db), seq_key(seq)).expect("get").expect("entry");
            let mut later = Entry::decode(&bytes).expect("decode");
            later.prev_hash = prev;
            prev = caseledger_verify::hash::leaf_hash(&later.encode());
            db.put_cf(entries(db), seq_key(seq), later.encode()).expect("put");
        }
    });
    assert_eq!(first_error(dir.path()).0, 40);
}

#[test]
fn checkpoint_with_a_changed_root_is_located() {
    let dir = tampered(|db, _| {
        let cf = db.cf_handle("checkpoints").expect("cf");
        let note =
            String::from_utf8(db.get_cf(cf, seq_key(49)).expect("get").expect("checkpoint at 49")).expect("utf8");
        let mut lines: Vec<String> = note.split('\n').map(str::to_owned).collect();
        lines[2] = base64_root([9; 32]);
        db.put_cf(cf, seq_key(49), lines.join("\n")).expect("put");
    });
    assert_eq!(first_error(dir.path()), (48, "checkpoint_signature".to_owned()));
}

#[test]
fn checkpoint_resigned_by_the_node_with_a_changed_root_is_located() {
    // The operator holds the node key; a re-signed false root still does not
    // match the entries.
    let dir = tampered(|db, keys| {
        let cf = db.cf_handle("checkpoints").expect("cf");
        let signer = note::Signer::new(ORIGIN, keys.node.clone()).expect("signer");
        let forged = Checkpoint {
            origin: ORIGIN.into(),
            size: 49,
            root: [9; 32],
            threads: [0; 32],
        };
        db.put_cf(cf, seq_key(49), forged.sign(&signer).expect("sign"))
            .expect("put");
    });
    assert_eq!(first_error(dir.path()), (48, "checkpoint_root".to_owned()));
}

#[test]
fn truncated_tail_is_located_and_refuses_writes_on_open() {
    let dir = tampered(|db, _| {
        for seq in 90..SIZE {
            db.delete_cf(entries(db), seq_key(seq)).expect("delete");
        }
    });
    assert_eq!(first_error(dir.path()), (90, "entry_missing".to_owned()));
    let ledger = Ledger::open(dir.path(), clock(), options()).expect("opens read-only");
    assert_eq!(ledger.corruption().map(|(seq, _)| seq), Some(90));
    let keys = Keys::new();
    match ledger.append_one(note(&keys.writer, 1)) {
        Err(Error::Corrupt { first_bad_seq: 90, .. }) => {}
        other => panic!("expected Corrupt at 90, got {other:?}"),
    }
}

#[test]
fn changed_last_entry_refuses_writes_on_open() {
    let dir = tampered(|db, keys| resign(db, SIZE - 1, &keys.other));
    let ledger = Ledger::open(dir.path(), clock(), options()).expect("opens read-only");
    assert_eq!(ledger.corruption().map(|(seq, _)| seq), Some(SIZE - 1));
    assert!(matches!(
        ledger.append_one(note(&Keys::new().writer, 1)),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn a_record_kind_changed_to_genesis_is_located() {
    let dir = tampered(|db, keys| {
        let bytes = db.get_cf(entries(db), seq_key(30)).expect("get").expect("entry");
        let mut entry = Entry::decode(&bytes).expect("decode");
        entry.record = Record::sign(ORIGIN, record::KIND_GENESIS, entry.record.payload.clone(), &keys.writer);
        db.put_cf(entries(db), seq_key(30), entry.encode()).expect("put");
    });
    assert_eq!(first_error(dir.path()), (30, "genesis".to_owned()));
}

fn base64_root(root: [u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(root)
}
