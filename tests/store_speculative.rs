//! Groups synced while their signatures are still being verified: a bad
//! signature undoes the group at once, or after a crash on the next
//! writable open, and leaves neither entries, Merkle nodes nor derived state
//! behind; a valid group survives the crash.

mod common;

use std::path::Path;
use std::sync::Arc;

use caseledger::court::CaseRecords;
use caseledger_ledger::store::{Ledger, Options, TestHook};
use caseledger_ledger::Error;
use common::*;

const CASE: &str = "(2024)苏02执88号";

fn halting() -> Options {
    Options {
        after_speculative_write: Some(TestHook(Arc::new(|| true))),
        ..options()
    }
}

/// What is stored beyond `size`: entries, Merkle nodes (keyed by last
/// leaf) and whether a pending-group record is left.
fn stored_beyond(dir: &Path, size: u64) -> (usize, usize, bool) {
    let db = raw_db(dir);
    let count_from = |cf: &str, from: Vec<u8>| {
        db.iterator_cf(
            db.cf_handle(cf).expect("cf"),
            rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward),
        )
        .count()
    };
    let entries = count_from("entries", seq_key(size).to_vec());
    let nodes = count_from("nodes", seq_key(size).to_vec());
    let pending = db
        .get_cf(db.cf_handle("meta").expect("meta"), b"pending")
        .expect("get")
        .is_some();
    (entries, nodes, pending)
}

#[test]
fn a_bad_signature_is_undone_without_a_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    let (size, root) = (ledger.size(), ledger.root());
    let refused = ledger
        .append_one(forged(note(&keys.writer, 1), &keys.writer))
        .expect_err("bad signature");
    assert!(matches!(refused, Error::BadSignature { index: 0 }), "{refused}");
    assert_eq!((ledger.size(), ledger.root()), (size, root));
    let seq = ledger.append_one(note(&keys.writer, 2)).expect("next append");
    assert_eq!(seq, size, "the refused record's place is taken by the next one");
    ledger.close().expect("close");
    assert_eq!(stored_beyond(dir.path(), size + 1), (0, 0, false));
    let report = audit(dir.path());
    assert!(report.ok, "{:?}", report.first_error);
    assert_eq!(report.entries, size + 1);
}

#[test]
fn valid_requests_grouped_with_forged_ones_are_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    let writer = &keys.writer;
    let results = concurrently(16, |t| {
        let mut accepted = Vec::new();
        let mut refused = 0;
        for i in 0..30u64 {
            let record = note(writer, t * 1000 + i);
            if t % 4 == 0 && i % 3 == 0 {
                let answer = ledger.append_one(forged(record, writer));
                assert!(matches!(answer, Err(Error::BadSignature { index: 0 })), "{answer:?}");
                refused += 1;
            } else {
                accepted.push(ledger.append_one(record).expect("valid append"));
            }
        }
        (accepted, refused)
    });
    let refused: usize = results.iter().map(|(_, bad)| bad).sum();
    let mut seqs: Vec<u64> = results.into_iter().flat_map(|(accepted, _)| accepted).collect();
    seqs.sort_unstable();
    assert_eq!(refused, 4 * 10);
    assert_eq!(seqs, (CREATED..CREATED + 16 * 30 - 40).collect::<Vec<u64>>());
    audit_ok(&ledger);
}

#[test]
fn a_forged_case_fund_record_leaves_derived_state_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 13, CASE, 1, 5_000_000);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let (size, state) = (ledger.size(), ledger.state_objects("").expect("state"));
    let request = forged(case.request("d-1", "acct-1", 1_000_000), &staff.officers[0].identity);
    assert!(matches!(ledger.append_one(request), Err(Error::BadSignature { .. })));
    assert_eq!(ledger.size(), size);
    assert_eq!(
        ledger.state_objects("").expect("state"),
        state,
        "derived state unchanged"
    );
    // The genuine request still goes through and reserves the money.
    ledger
        .append_one(case.request("d-1", "acct-1", 1_000_000))
        .expect("genuine request");
    let view = ledger.case_view(CASE, 0).expect("read").expect("case");
    assert_eq!(
        (view.case.available_fen, view.case.reserved_fen),
        (4_000_000, 1_000_000)
    );
}

#[test]
fn after_a_crash_mid_verification_a_valid_group_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    create(dir.path(), &keys).close().expect("close");
    let ledger = Ledger::open(dir.path(), clock(), halting()).expect("open");
    let size = ledger.size();
    let stopped = ledger.append_one(note(&keys.writer, 7)).expect_err("halted");
    assert!(matches!(stopped, Error::Poisoned(_)), "{stopped}");
    drop(ledger);
    // The entry, its leaf node and the subtrees it completes.
    let nodes = 1 + size.trailing_ones() as usize;
    assert_eq!(
        stored_beyond(dir.path(), size),
        (1, nodes, true),
        "written, not settled"
    );

    let reopened = Ledger::open(dir.path(), clock(), options()).expect("reopen");
    assert!(reopened.corruption().is_none());
    assert_eq!(reopened.size(), size + 1, "every signature held: the group stays");
    assert_eq!(reopened.entry(size).expect("entry").record, note(&keys.writer, 7));
    reopened.close().expect("close");
    assert!(!stored_beyond(dir.path(), 0).2, "the pending record is cleared");
    let report = audit(dir.path());
    assert!(report.ok, "{:?}", report.first_error);
}

#[test]
fn after_a_crash_mid_verification_a_forged_group_is_undone_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 13, CASE, 1, 5_000_000);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger.close().expect("close");
    let ledger = Ledger::open(dir.path(), clock(), halting()).expect("open");
    let (size, root, state) = (ledger.size(), ledger.root(), ledger.state_objects("").expect("state"));
    let request = forged(case.request("d-1", "acct-1", 1_000_000), &staff.officers[0].identity);
    assert!(matches!(ledger.append_one(request), Err(Error::Poisoned(_))));
    drop(ledger);
    assert_eq!(
        stored_beyond(dir.path(), size).0,
        1,
        "the forged entry reached the disk"
    );
    // Read-only, nothing is settled: the audit names the forged entry.
    let report = audit(dir.path());
    assert!(!report.ok);
    assert_eq!(report.first_finding().expect("a finding"), (size, "signature"));

    let reopened = Ledger::open(dir.path(), clock(), options()).expect("reopen");
    assert!(reopened.corruption().is_none());
    assert_eq!((reopened.size(), reopened.root()), (size, root));
    assert_eq!(
        reopened.state_objects("").expect("state"),
        state,
        "derived state restored"
    );
    reopened
        .append_one(case.request("d-1", "acct-1", 1_000_000))
        .expect("the genuine request after the undo");
    reopened.close().expect("close");
    assert_eq!(stored_beyond(dir.path(), size + 1), (0, 0, false));
    let report = audit(dir.path());
    assert!(report.ok, "{:?}", report.first_error);
}

#[test]
fn after_a_crash_mid_verification_request_signatures_are_checked_again_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    create(dir.path(), &keys).close().expect("close");
    let runtime = runtime();
    let size = CREATED;
    for (genuine, kept) in [(true, size + 1), (false, size + 1)] {
        let ledger = Ledger::open(dir.path(), clock(), halting()).expect("open");
        let mut signed = authorization(&keys.writer, b"POST /v1/records");
        if !genuine {
            signed.signature = keys.writer.sign_raw(b"POST /v1/elsewhere");
        }
        let record = note(&keys.writer, 7 + u64::from(genuine));
        let stopped = wait(&runtime, ledger.append_authorized(vec![record], Some(signed))).expect_err("halted");
        assert!(matches!(stopped, Error::Poisoned(_)), "{stopped}");
        drop(ledger);
        assert!(stored_beyond(dir.path(), 0).2, "written, not settled");
        // Every record signature holds: only the request signature decides.
        let reopened = Ledger::open(dir.path(), clock(), options()).expect("reopen");
        assert!(reopened.corruption().is_none());
        assert_eq!(reopened.size(), kept, "genuine: {genuine}");
        reopened.close().expect("close");
        assert!(!stored_beyond(dir.path(), 0).2, "the pending record is cleared");
    }
    let report = audit(dir.path());
    assert!(report.ok, "{:?}", report.first_error);
    assert_eq!(report.entries, size + 1);
}

#[test]
fn readers_never_see_the_derived_state_of_a_group_being_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 13, CASE, 1, 5_000_000);
    ledger.close().expect("close");
    // The writer pauses after syncing the forged group until the test
    // lets it go on to the verdict.
    let pause = Pause::new(1);
    let ledger = Arc::new(Ledger::open(dir.path(), clock(), pause.options()).expect("open"));
    // Dropped before the ledger: a failure never leaves the writer paused.
    let _release = pause.release_on_drop();
    let before = ledger.state_objects("").expect("state");
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let request = forged(case.request("d-1", "acct-1", 1_000_000), &staff.officers[0].identity);
    let appender = {
        let ledger = Arc::clone(&ledger);
        std::thread::spawn(move || ledger.append_one(request))
    };
    pause.wait_paused();
    // The forged request's reservation is on disk now; a reader started
    // here must wait for the verdict and then see the state without it.
    let (started, reading) = std::sync::mpsc::channel();
    let reader = {
        let ledger = Arc::clone(&ledger);
        std::thread::spawn(move || {
            started.send(()).expect("signal");
            (
                ledger.state_objects("").expect("state"),
                ledger.outbox_from("", 1000).expect("outbox").len(),
            )
        })
    };
    reading.recv().expect("reader started");
    std::thread::sleep(std::time::Duration::from_millis(50));
    pause.resume();
    assert!(matches!(
        appender.join().expect("appender"),
        Err(Error::BadSignature { .. })
    ));
    let (seen, outbox) = reader.join().expect("reader");
    let keys = |state: &[(String, Vec<u8>)]| state.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert!(
        seen == before,
        "the reader saw state of the forged group: keys {:?}, before {:?}",
        keys(&seen),
        keys(&before)
    );
    assert_eq!(outbox, ledger.outbox_from("", 1000).expect("outbox").len());
}
