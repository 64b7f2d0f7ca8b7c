//! Appending through the store: rules and signatures enforced before anything
//! is written, atomic batches, group commit under concurrency, checkpoints,
//! proofs, and the single-writer lock.

mod common;

use std::sync::Arc;

use caseledger_ledger::store::{Ledger, Options, SystemClock};
use caseledger_ledger::Error;
use caseledger_verify::entry::Record;
use caseledger_verify::merkle;
use caseledger_verify::record::{self, KeyRevoked};
use caseledger_verify::registry::RuleError;
use common::*;

#[test]
fn appends_are_numbered_chained_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    assert_eq!(
        ledger.size(),
        CREATED,
        "genesis, the writer registration and its co-signature"
    );
    let appended = ledger
        .append((0..5).map(|n| note(&keys.writer, n)).collect())
        .expect("batch");
    assert_eq!((appended.first_seq, appended.count), (CREATED, 5));
    let entry = ledger.entry(4).expect("entry 4");
    assert_eq!(entry.seq, 4);
    assert_eq!(
        entry.prev_hash,
        caseledger_verify::hash::leaf_hash(&ledger.entry_bytes(3).expect("entry 3"))
    );
    let root = ledger.root();
    ledger.close().expect("close");
    let reopened = Ledger::open(dir.path(), clock(), options()).expect("reopen");
    assert!(reopened.corruption().is_none());
    assert_eq!((reopened.size(), reopened.root()), (CREATED + 5, root));
    reopened
        .append_one(note(&keys.writer, 99))
        .expect("append after reopen");
    audit_ok(&reopened);
}

#[test]
fn refused_records_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    let size = ledger.size();
    let root = ledger.root();

    let unknown = ledger.append_one(note(&keys.other, 1)).expect_err("unknown key");
    assert!(
        matches!(
            unknown,
            Error::Rejected {
                index: 0,
                source: RuleError::UnknownKey(_)
            }
        ),
        "{unknown}"
    );

    let mut forged = note(&keys.writer, 2);
    forged.payload[5] ^= 1;
    let bad = ledger.append_one(forged.clone()).expect_err("bad signature");
    assert!(matches!(bad, Error::BadSignature { index: 0 }), "{bad}");

    let not_admin = ledger
        .append_one(register(&keys.writer, &keys.other, "x", false))
        .expect_err("not admin");
    assert!(
        matches!(
            not_admin,
            Error::Rejected {
                source: RuleError::NotAuthorized(_),
                ..
            }
        ),
        "{not_admin}"
    );

    // One bad record refuses the whole batch.
    let batch = vec![note(&keys.writer, 3), note(&keys.writer, 4), forged];
    assert!(matches!(ledger.append(batch), Err(Error::BadSignature { index: 2 })));

    let node_signed = Record::sign(ORIGIN, record::KIND_DEMO_NOTE, b"{}".to_vec(), &keys.node);
    assert!(matches!(ledger.append_one(node_signed), Err(Error::Rejected { .. })));

    assert_eq!((ledger.size(), ledger.root()), (size, root), "nothing was written");
    audit_ok(&ledger);
}

#[test]
fn revoked_keys_sign_nothing_and_registrations_apply_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    // Registration and first use in one batch: the key is usable from the next entry.
    ledger
        .append(vec![
            register(&keys.admin, &keys.other, "other", false),
            co_sign(&keys.co_admin, &keys.other, "other", false),
            note(&keys.other, 1),
        ])
        .expect("register then use");
    let revoke = KeyRevoked {
        key_id: keys.other.public_key().key_id().to_hex(),
        reason: "left the court".into(),
    };
    let revocation = Record::sign(
        ORIGIN,
        record::KIND_KEY_REVOKED,
        serde_json::to_vec(&revoke).expect("json"),
        &keys.admin,
    );
    ledger.append_one(revocation.clone()).expect("revoke");
    let error = ledger.append_one(note(&keys.other, 2)).expect_err("revoked");
    assert!(
        matches!(
            error,
            Error::Rejected {
                source: RuleError::RevokedKey { .. },
                ..
            }
        ),
        "{error}"
    );
    assert!(ledger.append_one(revocation).is_err(), "revoking twice is refused");
    let second_admin = KeyRevoked {
        key_id: keys.co_admin.public_key().key_id().to_hex(),
        reason: "left the court".into(),
    };
    ledger
        .append_one(Record::sign(
            ORIGIN,
            record::KIND_KEY_REVOKED,
            serde_json::to_vec(&second_admin).expect("json"),
            &keys.admin,
        ))
        .expect("one of two administrators may be revoked");
    let last_admin = KeyRevoked {
        key_id: keys.admin.public_key().key_id().to_hex(),
        reason: "oops".into(),
    };
    let record = Record::sign(
        ORIGIN,
        record::KIND_KEY_REVOKED,
        serde_json::to_vec(&last_admin).expect("json"),
        &keys.admin,
    );
    assert!(
        ledger.append_one(record).is_err(),
        "the last administrator cannot be revoked"
    );
    audit_ok(&ledger);
}

#[test]
fn concurrent_appenders_share_commits_and_get_distinct_sequence_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    let mut seqs: Vec<u64> = concurrently(16, |t| {
        (0..40u64)
            .map(|i| ledger.append_one(note(&keys.writer, t * 1000 + i)).expect("append"))
            .collect::<Vec<u64>>()
    })
    .concat();
    seqs.sort_unstable();
    assert_eq!(seqs, (CREATED..CREATED + 640).collect::<Vec<u64>>());
    audit_ok(&ledger);
}

#[test]
fn checkpoints_every_n_entries_and_on_demand_are_consistent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    fill(&ledger, &keys.writer, 40);
    let sizes: Vec<u64> = ledger.checkpoints().expect("list").iter().map(|(s, _)| *s).collect();
    // Genesis checkpoint at 1, then one each time 16 entries are uncovered.
    assert_eq!(sizes, vec![1, 17, 33]);
    let on_demand = ledger.checkpoint_now().expect("checkpoint");
    assert!(on_demand.starts_with(&format!("{ORIGIN}\n43\n")), "{on_demand}");
    assert_eq!(
        ledger.checkpoint_now().expect("again"),
        on_demand,
        "no new checkpoint without new entries"
    );
    let all = ledger.checkpoints().expect("list");
    for pair in all.windows(2) {
        let (m, n) = (pair[0].0, pair[1].0);
        let proof = ledger.consistency_proof(m, n).expect("proof");
        let (rm, rn) = (ledger.root_at(m).expect("root"), ledger.root_at(n).expect("root"));
        merkle::verify_consistency(m, n, &proof, &rm, &rn).expect("consistent");
    }
}

#[test]
fn time_based_checkpoint_covers_a_quiet_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let options = Options {
        checkpoint_every_entries: 1000,
        checkpoint_every_ms: 50,
        ..Options::default()
    };
    let ledger = Ledger::create(
        dir.path(),
        ORIGIN,
        &keys.node,
        &[("admin".into(), keys.admin.public_key())],
        Arc::new(SystemClock),
        options,
    )
    .expect("create");
    ledger
        .append_one(register(&keys.admin, &keys.writer, "writer", false))
        .expect("append");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ledger.latest_checkpoint().expect("read").map(|(s, _)| s) != Some(2) {
        assert!(std::time::Instant::now() < deadline, "no timed checkpoint within 10 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn proof_bundles_verify_for_every_entry_and_fail_when_altered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    fill(&ledger, &keys.writer, 20);
    let node = keys.node.public_key();
    for seq in 0..ledger.size() {
        let bundle = ledger.proof_bundle(seq).expect("bundle");
        let proven = bundle.verify(&node).expect("verifies");
        assert_eq!(proven.entry.seq, seq);
    }
    let bundle = ledger.proof_bundle(5).expect("bundle");
    let mut wrong_index = bundle.clone();
    wrong_index.leaf_index = 6;
    assert!(wrong_index.verify(&node).is_err());
    let mut wrong_size = bundle.clone();
    wrong_size.tree_size += 1;
    assert!(wrong_size.verify(&node).is_err());
    let mut other_entry = bundle.clone();
    other_entry.entry = ledger.proof_bundle(6).expect("bundle").entry;
    assert!(other_entry.verify(&node).is_err());
    assert!(bundle.verify(&keys.admin.public_key()).is_err(), "wrong node key");
}

#[test]
fn a_second_writer_is_refused_while_readers_may_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    let error = Ledger::open(dir.path(), clock(), options())
        .err()
        .expect("second writer refused");
    assert!(matches!(error, Error::Locked { .. }), "{error}");
    assert!(error.to_string().contains("already open for writing"));
    let reader = Ledger::open_read_only(dir.path()).expect("reader");
    assert_eq!(reader.size(), ledger.size());
    assert!(matches!(reader.append_one(note(&keys.writer, 1)), Err(Error::ReadOnly)));
}
