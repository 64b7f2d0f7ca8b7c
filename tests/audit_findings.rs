//! The auditor checks every table it relies on and goes on after a refused
//! record: each refusal is a violation with its rule, seq and signer, the
//! record has no effect, and the replay continues to the end, so one audit
//! lists everything a database insider did.

mod common;

use std::path::Path;

use caseledger::court::{sign, CaseRecords};
use caseledger_keys::{Identity, Signature};
use caseledger_verify::entry::{Entry, Record};
use caseledger_verify::funds::model::*;
use caseledger_verify::registry::KeyInfo;
use common::*;

const CASE: &str = "(2024)苏02执77号";

fn violations(dir: &Path) -> Vec<(u64, String, Option<String>)> {
    let report = audit(dir);
    assert!(
        report.first_error.is_none(),
        "integrity holds: {:?}",
        report.first_error
    );
    assert!(!report.ok);
    assert_eq!(report.violations_total, report.violations.len() as u64);
    report
        .violations
        .into_iter()
        .map(|v| (v.seq, v.rule, v.signer))
        .collect()
}

fn hex_id(identity: &Identity) -> Option<String> {
    Some(identity.public_key().key_id().to_hex())
}

#[test]
fn refused_records_are_each_reported_with_rule_seq_and_signer_and_the_replay_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 31, CASE, 1, 5_000_000);
    let size = ledger.size();
    ledger.close().expect("close");
    let officer = &staff.officers[0].identity;
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let node = Identity::from_seed([1; 32]);
    let outsider = Identity::from_seed([99; 32]);

    // 1. A record whose signature is not the officer's.
    let forged = forged(case.request("d-1", "acct-1", 1_000), officer);
    // 2. A case-fund record signed by the node key, which may not sign it.
    let by_node = sign(
        ORIGIN,
        KIND_RECEIPT_RECORDED,
        &serde_json::from_slice::<ReceiptRecorded>(&case.receipt("BANK-N", 1_000).payload).expect("json"),
        &node,
    );
    // 3. A disbursement of more than the case holds.
    let too_much = case.request("d-2", "acct-1", 50_000_000);
    // 4. A record by a key nobody registered.
    let unknown = note(&outsider, 1);
    let mut expected = Vec::new();
    for (record, rule, signer) in [
        (forged, "signature", hex_id(officer)),
        (by_node, "not_authorized", hex_id(&node)),
        (too_much, "balance", hex_id(officer)),
        (unknown, "unknown_key", hex_id(&outsider)),
    ] {
        let seq = force_append(dir.path(), record);
        expected.push((seq, rule.to_owned(), signer));
    }
    // An honest record after them is replayed as usual: the refused
    // request "d-1" left no reservation behind, so "d-1" is free again.
    let seq = force_append(dir.path(), case.request("d-1", "acct-1", 2_000));
    let found = violations(dir.path());
    // The honest request changed the state the store did not update.
    let (rules, state): (Vec<_>, Vec<_>) = found.into_iter().partition(|v| v.1 != "derived_state");
    assert_eq!(rules, expected);
    assert!(!state.is_empty() && state.iter().all(|v| v.0 == seq), "{state:?}");
    assert_eq!(audit(dir.path()).entries, size + 5);
}

#[test]
fn a_corrupt_signature_among_thousands_is_blamed_on_its_own_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    // More than one chunk of the driver's ahead checks (4,096 entries).
    let records: Vec<Record> = (0..5000).map(|n| note(&keys.writer, n)).collect();
    for chunk in records.chunks(500) {
        ledger.append(chunk.to_vec()).expect("append");
    }
    ledger.close().expect("close");
    let bad = [57u64, 4500];
    {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("entries").expect("cf");
        for seq in bad {
            let bytes = db.get_cf(cf, seq_key(seq)).expect("get").expect("entry");
            let mut entry = Entry::decode(&bytes).expect("decode");
            let mut signature = entry.record.signature.to_bytes();
            signature[10] ^= 0x01;
            entry.record.signature = Signature::from_bytes(&signature);
            db.put_cf(cf, seq_key(seq), entry.encode()).expect("put");
        }
    }
    // The flipped bytes change the entries' hashes too, so the stored
    // Merkle nodes disagree at 57 and the replay stops there: the record
    // itself is blamed (no other entry of the chunk is).
    let report = audit(dir.path());
    assert_eq!(report.first_finding(), Some((57, "signature")));
    assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
    // With the chain and nodes rebuilt around them, both are found and
    // nothing else.
    rebuild_chain(dir.path());
    // The checkpoint the node signed last, kept beside the database, names
    // the rewrite at once: the rebuilt chain is not what the node signed.
    let report = audit(dir.path());
    let kept = report.first_error.expect("the kept checkpoint disagrees");
    assert_eq!(kept.check, "checkpoint_root", "{}", kept.detail);
    // An insider who also deletes that file leaves the records to speak.
    std::fs::remove_file(
        dir.path()
            .join(caseledger_ledger::store::signed_checkpoint::LATEST_CHECKPOINT_FILE),
    )
    .expect("delete the kept checkpoint");
    let found = violations(dir.path());
    let mut expected: Vec<_> = bad
        .iter()
        .map(|&seq| (seq, "signature".to_owned(), hex_id(&keys.writer)))
        .collect();
    // Without the node key the insider could not sign checkpoints again:
    // nothing in the rebuilt chain is vouched for.
    expected.push((0, "uncheckpointed".to_owned(), None));
    assert_eq!(found, expected);
}

/// Rewrites every hash link, Merkle node and the head after entries were
/// changed, as an insider who controls the store would (checkpoints are
/// removed: the node key is not the insider's).
fn rebuild_chain(dir: &Path) {
    use caseledger_ledger::store::Head;
    use caseledger_verify::merkle::Frontier;
    let db = raw_db(dir);
    let entries = db.cf_handle("entries").expect("cf");
    let nodes = db.cf_handle("nodes").expect("cf");
    let meta = db.cf_handle("meta").expect("cf");
    let checkpoints = db.cf_handle("checkpoints").expect("cf");
    let head: Head = serde_json::from_slice(&db.get_cf(meta, b"head").expect("get").expect("head")).expect("json");
    let mut frontier = Frontier::new();
    let mut prev = [0u8; 32];
    let mut timestamp = 0;
    for seq in 0..head.size {
        let bytes = db.get_cf(entries, seq_key(seq)).expect("get").expect("entry");
        let mut entry = Entry::decode(&bytes).expect("decode");
        entry.prev_hash = prev;
        timestamp = entry.timestamp_ms;
        let bytes = entry.encode();
        prev = caseledger_verify::hash::leaf_hash(&bytes);
        db.put_cf(entries, seq_key(seq), &bytes).expect("put");
        for (level, index, hash) in frontier.push(prev) {
            let mut key = (((index + 1) << level) - 1).to_be_bytes().to_vec();
            key.push(level as u8);
            db.put_cf(nodes, key, hash).expect("put node");
        }
    }
    let stored: Vec<Box<[u8]>> = db
        .iterator_cf(checkpoints, rocksdb::IteratorMode::Start)
        .map(|item| item.expect("checkpoint").0)
        .collect();
    for key in stored {
        db.delete_cf(checkpoints, key).expect("delete");
    }
    let new_head = Head::new(&frontier, &prev, timestamp, 0);
    db.put_cf(meta, b"head", serde_json::to_vec(&new_head).expect("json"))
        .expect("put head");
}

#[test]
fn a_member_made_administrator_or_given_another_role_in_the_keys_table_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 32, CASE, 1, 5_000_000);
    assert!(ledger.audit(None, 2, &|_| {}).expect("audit").ok);
    ledger.close().expect("close");
    let officer = staff.officers[0].identity.public_key().key_id();
    let finance = staff.finance.identity.public_key().key_id();
    {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("keys").expect("cf");
        let edit = |id: caseledger_keys::KeyId, change: &dyn Fn(&mut KeyInfo)| {
            let mut info: KeyInfo =
                serde_json::from_slice(&db.get_cf(cf, id.0).expect("get").expect("key info")).expect("json");
            change(&mut info);
            db.put_cf(cf, id.0, serde_json::to_vec(&info).expect("json"))
                .expect("put");
        };
        edit(officer, &|info| info.administrator = true);
        edit(finance, &|info| {
            if let Some(member) = info.member.as_mut() {
                member.role = Role::BureauHead;
            }
        });
    }
    let found = violations(dir.path());
    let mut expected = vec![
        format!("stored key {} differs from the replay", officer.to_hex()),
        format!("stored key {} differs from the replay", finance.to_hex()),
    ];
    expected.sort();
    let mut reported: Vec<String> = audit(dir.path())
        .violations
        .into_iter()
        .map(|v| {
            assert_eq!(v.rule, "derived_keys");
            v.detail
        })
        .collect();
    reported.sort();
    assert_eq!(reported, expected);
    assert_eq!(found.len(), 2);
}

#[test]
fn a_key_deleted_from_or_added_to_the_keys_table_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    create(dir.path(), &keys).close().expect("close");
    {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("keys").expect("cf");
        db.delete_cf(cf, keys.writer.public_key().key_id().0).expect("delete");
        let extra = KeyInfo {
            name: "inserted".into(),
            public_key: caseledger_verify::record::KeyText::from_key(&keys.other.public_key()),
            administrator: true,
            registered_seq: 1,
            revoked_seq: None,
            member: None,
            registered_by: None,
            co_signed_seq: None,
            holder: None,
        };
        db.put_cf(
            cf,
            keys.other.public_key().key_id().0,
            serde_json::to_vec(&extra).expect("json"),
        )
        .expect("put");
    }
    let found = audit(dir.path());
    let details: Vec<(&str, bool)> = found
        .violations
        .iter()
        .map(|v| {
            (
                v.rule.as_str(),
                v.detail.contains("missing") || v.detail.contains("not produced"),
            )
        })
        .collect();
    assert_eq!(details, [("derived_keys", true), ("derived_keys", true)]);
}

#[test]
fn a_stored_origin_other_than_the_genesis_entry_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    create(dir.path(), &keys).close().expect("close");
    {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("meta").expect("cf");
        let mut meta: serde_json::Value =
            serde_json::from_slice(&db.get_cf(cf, b"ledger").expect("get").expect("meta")).expect("json");
        meta["origin"] = "other.court/ledger".into();
        db.put_cf(cf, b"ledger", serde_json::to_vec(&meta).expect("json"))
            .expect("put");
    }
    let report = caseledger_ledger::store::Ledger::open_read_only(dir.path())
        .expect("open")
        .audit(Some(keys.node.public_key()), 2, &|_| {})
        .expect("audit");
    assert!(report.first_error.is_none(), "{:?}", report.first_error);
    let rules: Vec<&str> = report.violations.iter().map(|v| v.rule.as_str()).collect();
    assert_eq!(rules, ["stored_meta"]);
}

/// Sets the head record's fields with `change`.
fn edit_head(dir: &Path, change: impl FnOnce(&mut serde_json::Value)) {
    let db = raw_db(dir);
    let meta = db.cf_handle("meta").expect("cf");
    let mut head: serde_json::Value =
        serde_json::from_slice(&db.get_cf(meta, b"head").expect("get").expect("head")).expect("json");
    change(&mut head);
    db.put_cf(meta, b"head", serde_json::to_vec(&head).expect("json"))
        .expect("put");
}

#[test]
fn entries_no_checkpoint_covers_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    fill(&ledger, &keys.writer, 40);
    // A clean close covers every entry.
    ledger.close().expect("close");
    assert!(audit(dir.path()).ok);
    // An insider drops the newest checkpoint (and fixes the head to match).
    let (newest, previous) = {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("checkpoints").expect("cf");
        let sizes: Vec<u64> = db
            .iterator_cf(cf, rocksdb::IteratorMode::Start)
            .map(|item| u64::from_be_bytes(item.expect("item").0[..].try_into().expect("key")))
            .collect();
        let (newest, previous) = (sizes[sizes.len() - 1], sizes[sizes.len() - 2]);
        db.delete_cf(cf, seq_key(newest)).expect("delete");
        (newest, previous)
    };
    edit_head(dir.path(), |head| head["checkpoint_size"] = previous.into());
    let report = audit(dir.path());
    assert!(report.first_error.is_none(), "{:?}", report.first_error);
    let found: Vec<_> = report.violations.iter().map(|v| (v.seq, v.rule.as_str())).collect();
    assert_eq!(found, [(previous, "uncheckpointed")], "newest was {newest}");
}

#[test]
fn a_head_moved_into_the_future_or_naming_another_checkpoint_is_reported() {
    for (field, value) in [
        ("last_timestamp_ms", serde_json::json!(4_102_444_800_000u64)),
        ("checkpoint_size", serde_json::json!(1)),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = Keys::new();
        let ledger = create(dir.path(), &keys);
        fill(&ledger, &keys.writer, 20);
        ledger.close().expect("close");
        edit_head(dir.path(), |head| head[field] = value);
        let report = audit(dir.path());
        let error = report.first_error.expect("found");
        assert_eq!(error.check, "head", "{field}: {}", error.detail);
    }
}

#[test]
fn a_planted_undo_record_is_reported_and_never_undoes_checkpointed_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    fill(&ledger, &keys.writer, 3);
    let size = ledger.size();
    ledger.close().expect("close");
    let planted = serde_json::json!({
        "first_seq": 2, "size": size, "last_timestamp_ms": 0,
        "state": [["policy", hex::encode(b"{\"planted\":true}")]],
        "request_signatures": [{"signer": "00".repeat(32), "message": "AA==", "signature": "AA=="}],
    });
    {
        let db = raw_db(dir.path());
        db.put_cf(
            db.cf_handle("meta").expect("cf"),
            b"pending",
            serde_json::to_vec(&planted).expect("json"),
        )
        .expect("put");
    }
    // The auditor reports it before anything acts on it.
    let report = audit(dir.path());
    let found: Vec<_> = report.violations.iter().map(|v| v.rule.as_str()).collect();
    assert_eq!(found, ["pending_group"]);
    // Opening does not undo entries a checkpoint covers: it refuses to write.
    let opened = caseledger_ledger::store::Ledger::open(dir.path(), clock(), options()).expect("opens read-only");
    assert_eq!(opened.corruption().map(|(seq, _)| seq), Some(2));
    assert_eq!(opened.size(), size, "nothing deleted");
    for seq in 0..size {
        opened.entry(seq).expect("every acknowledged entry is still there");
    }
    drop(opened);
    let db = raw_db(dir.path());
    assert_eq!(
        db.get_cf(db.cf_handle("state").expect("cf"), b"policy").expect("get"),
        None,
        "nothing written into the state"
    );
}

#[test]
fn a_genesis_record_after_seq_0_is_a_refused_record_and_the_audit_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    create(dir.path(), &keys).close().expect("close");
    let genesis_again = caseledger_verify::entry::Record::sign(
        ORIGIN,
        caseledger_verify::record::KIND_GENESIS,
        br#"{"origin":"x","node_key":"","administrators":[]}"#.to_vec(),
        &keys.node,
    );
    let at = force_append(dir.path(), genesis_again);
    let unknown = force_append(
        dir.path(),
        caseledger_verify::entry::Record::sign(ORIGIN, 0xbeef, b"{}".to_vec(), &keys.writer),
    );
    let report = audit(dir.path());
    assert!(report.first_error.is_none(), "{:?}", report.first_error);
    let found: Vec<_> = report.violations.iter().map(|v| (v.seq, v.rule.as_str())).collect();
    assert_eq!(found, [(at, "genesis"), (unknown, "unknown_kind")]);
}
