//! `Ledger::append_async`: the group commit for async callers (the HTTP
//! handlers), led by the ledger's writer thread, beside blocking callers;
//! and `append_authorized`, whose request signatures are verified with the
//! group's batch.

mod common;

use std::sync::Arc;

use caseledger_ledger::store::{Ledger, Options};
use caseledger_ledger::Error;
use common::*;

#[test]
fn async_and_blocking_appenders_share_commits_and_get_distinct_seqs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Arc::new(Keys::new());
    let ledger = Arc::new(create(dir.path(), &keys));
    let runtime = runtime();
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            let (ledger, keys) = (Arc::clone(&ledger), Arc::clone(&keys));
            runtime.spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..8 {
                    let appended = ledger
                        .append_async(vec![note(&keys.writer, t * 1000 + i)])
                        .await
                        .expect("async append");
                    assert_eq!(appended.count, 1);
                    seqs.push(appended.first_seq);
                }
                seqs
            })
        })
        .collect();
    // Blocking callers at the same time, leading groups of their own.
    let mut seqs: Vec<u64> = concurrently(8, |t| {
        (0..8u64)
            .map(|i| {
                ledger
                    .append_one(note(&keys.writer, 900_000 + t * 1000 + i))
                    .expect("append")
            })
            .collect::<Vec<u64>>()
    })
    .concat();
    for task in tasks {
        seqs.extend(wait(&runtime, task).expect("task"));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (CREATED..CREATED + 64 * 8 + 8 * 8).collect::<Vec<u64>>());
    audit_ok(&ledger);
}

#[test]
fn async_refusals_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    let (size, root) = (ledger.size(), ledger.root());
    let runtime = runtime();

    let empty = wait(&runtime, ledger.append_async(Vec::new())).expect_err("empty");
    assert!(matches!(empty, Error::InvalidArgument(_)), "{empty}");
    let mut forged = note(&keys.writer, 1);
    forged.payload[5] ^= 1;
    let bad = wait(&runtime, ledger.append_async(vec![note(&keys.writer, 2), forged])).expect_err("forged");
    assert!(matches!(bad, Error::BadSignature { index: 1 }), "{bad}");
    let unknown = wait(&runtime, ledger.append_async(vec![note(&keys.other, 3)])).expect_err("unknown key");
    assert!(matches!(unknown, Error::Rejected { index: 0, .. }), "{unknown}");
    assert_eq!((ledger.size(), ledger.root()), (size, root));
    ledger.close().expect("close");

    let read_only = Ledger::open_read_only(dir.path()).expect("read-only open");
    let refused = wait(&runtime, read_only.append_async(vec![note(&keys.writer, 4)])).expect_err("read-only");
    assert!(matches!(refused, Error::ReadOnly), "{refused}");
    assert_eq!((read_only.size(), read_only.root()), (size, root));
}

#[test]
fn a_dropped_async_append_is_still_committed_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    let mut dropped = ledger.append_async(vec![note(&keys.writer, 1)]);
    assert!(poll_once(&mut dropped).is_pending(), "queued, not yet durable");
    drop(dropped);
    // Queued after it: answered only once the dropped one is written.
    let later = wait(&runtime(), ledger.append_async(vec![note(&keys.writer, 2)])).expect("later append");
    assert_eq!(later.first_seq, CREATED + 1);
    assert_eq!(
        ledger.entry(CREATED).expect("the dropped one").record,
        note(&keys.writer, 1)
    );
    audit_ok(&ledger);
}

#[test]
fn closing_the_ledger_answers_every_queued_async_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    let mut queued: Vec<_> = (0..32)
        .map(|n| ledger.append_async(vec![note(&keys.writer, n)]))
        .collect();
    for future in &mut queued {
        assert!(poll_once(future).is_pending());
    }
    ledger.close().expect("close");
    let runtime = runtime();
    let mut seqs: Vec<u64> = queued
        .into_iter()
        .map(|future| wait(&runtime, future).expect("answered before the close").first_seq)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (CREATED..CREATED + 32).collect::<Vec<u64>>());
    let reopened = Ledger::open(dir.path(), clock(), Options::default()).expect("reopen");
    assert_eq!(reopened.size(), CREATED + 32);
    let late = wait(&runtime, reopened.append_async(vec![note(&keys.writer, 99)])).expect("append after reopen");
    assert_eq!(late.first_seq, CREATED + 32);
    audit_ok(&reopened);
}

#[test]
fn a_bad_request_signature_refuses_the_request_before_any_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    let (size, root) = (ledger.size(), ledger.root());
    let runtime = runtime();
    let mut forged = authorization(&keys.writer, b"POST /v1/records");
    forged.message = b"POST /v1/other".to_vec();
    let refused = wait(
        &runtime,
        ledger.append_authorized(vec![note(&keys.writer, 1)], Some(forged.clone())),
    )
    .expect_err("forged request signature");
    assert!(matches!(refused, Error::BadRequestSignature), "{refused}");
    // Also when a rule would refuse the record (its key is not registered).
    let refused = wait(
        &runtime,
        ledger.append_authorized(vec![note(&keys.other, 2)], Some(forged)),
    )
    .expect_err("forged, and refused by a rule");
    assert!(matches!(refused, Error::BadRequestSignature), "{refused}");
    let unknown = wait(
        &runtime,
        ledger.append_authorized(
            vec![note(&keys.writer, 3)],
            Some(authorization(&keys.other, b"request")),
        ),
    )
    .expect_err("request signed by an unregistered key");
    assert!(matches!(unknown, Error::BadRequestSignature), "{unknown}");
    assert_eq!((ledger.size(), ledger.root()), (size, root));

    let appended = wait(
        &runtime,
        ledger.append_authorized(
            vec![note(&keys.writer, 4)],
            Some(authorization(&keys.writer, b"request")),
        ),
    )
    .expect("genuine request");
    assert_eq!(appended.first_seq, size);
    audit_ok(&ledger);
}

#[test]
fn requests_grouped_with_forged_request_signatures_are_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Arc::new(Keys::new());
    let ledger = Arc::new(create(dir.path(), &keys));
    let runtime = runtime();
    let tasks: Vec<_> = (0..48u64)
        .map(|t| {
            let (ledger, keys) = (Arc::clone(&ledger), Arc::clone(&keys));
            runtime.spawn(async move {
                let message = format!("request {t}").into_bytes();
                let mut signed = authorization(&keys.writer, &message);
                if t % 4 == 0 {
                    signed.signature = keys.writer.sign_raw(b"another request");
                }
                let answer = ledger
                    .append_authorized(vec![note(&keys.writer, t)], Some(signed))
                    .await;
                (t, answer)
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        match wait(&runtime, task).expect("task") {
            (t, Err(Error::BadRequestSignature)) if t % 4 == 0 => {}
            (t, Ok(appended)) if t % 4 != 0 => seqs.push(appended.first_seq),
            (t, answer) => panic!("request {t}: {answer:?}"),
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (CREATED..CREATED + 36).collect::<Vec<u64>>());
    audit_ok(&ledger);
}

#[test]
fn requests_queued_behind_a_group_are_checked_ahead_and_a_forgery_among_them_is_refused_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Arc::new(Keys::new());
    create(dir.path(), &keys).close().expect("close");
    // The writer pauses after syncing the first group until the test has
    // queued the others behind it.
    let pause = Pause::new(1);
    let ledger = Ledger::open(dir.path(), clock(), pause.options()).expect("open");
    // Dropped before the ledger: a failure never leaves the writer paused.
    let _release = pause.release_on_drop();
    let size = ledger.size();
    let runtime = runtime();
    let mut leading = ledger.append_async(vec![note(&keys.writer, 1)]);
    assert!(poll_once(&mut leading).is_pending());
    pause.wait_paused();
    // 16 requests queue while the group is being committed; the fifth is
    // forged. The seventh wakes an idle verifier thread (a parked one is
    // woken for every 8 queued checks, the first group's included), which
    // checks them from the front: the forgery falls in its first batch.
    let mut queued: Vec<_> = (0..16u64)
        .map(|i| {
            let record = note(&keys.writer, 100 + i);
            let record = if i == 4 { forged(record, &keys.writer) } else { record };
            let mut future = ledger.append_async(vec![record]);
            assert!(poll_once(&mut future).is_pending());
            future
        })
        .collect();
    // A bound only a hang reaches, not a loaded machine.
    let bound = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while ledger.signatures_checked_ahead() < 7 {
        assert!(
            std::time::Instant::now() < bound,
            "queued requests were not checked ahead"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    pause.resume();
    wait(&runtime, &mut leading).expect("first append");
    for (i, future) in queued.iter_mut().enumerate() {
        let outcome = wait(&runtime, future);
        if i == 4 {
            assert!(matches!(outcome, Err(Error::BadSignature { index: 0 })), "{outcome:?}");
        } else {
            outcome.expect("genuine append");
        }
    }
    assert_eq!(ledger.size(), size + 16);
    audit_ok(&ledger);
}

/// A test that fails while the writer is paused does not hang: the
/// release guard, dropped before the ledger, lets the writer finish so
/// that the ledger's drop returns (issue 15: a failed test once deadlocked
/// in `Drop` and would have held CI for 90 minutes).
#[test]
fn a_test_failing_while_the_writer_is_paused_does_not_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    create(dir.path(), &keys).close().expect("close");
    let failed = std::panic::catch_unwind(|| {
        let pause = Pause::new(1);
        let ledger = Ledger::open(dir.path(), clock(), pause.options()).expect("open");
        let _release = pause.release_on_drop();
        let mut leading = ledger.append_async(vec![note(&keys.writer, 1)]);
        assert!(poll_once(&mut leading).is_pending());
        pause.wait_paused();
        panic!("a failure while the writer is paused");
    });
    assert!(failed.is_err());
    // The paused group went on to its verdict and was committed.
    let ledger = Ledger::open(dir.path(), clock(), options()).expect("reopen");
    assert_eq!(ledger.size(), CREATED + 1);
    audit_ok(&ledger);
}
