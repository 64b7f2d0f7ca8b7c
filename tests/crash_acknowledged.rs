//! Nothing acknowledged is ever undone (issue 13): a member's record at the
//! edge of the signature rule (R plus a point of order 8, which a batch
//! equation accepted and recovery refused) is refused; then a group holding
//! two members' records and a request signature, synced while its
//! signatures were still being checked (so its `pending` undo record stays
//! on disk after the answer), is acknowledged. Then the
//! process is SIGKILLed at each stage after the answer: with the undo
//! record still on disk, in the middle of the next speculative group, and
//! after the next group cleared it. Each time, reopening keeps the
//! acknowledged group, seqs and all.
//!
//! The child is this same test binary, started with `ACK_CHILD_DIR` and
//! `ACK_CHILD_STAGE` set.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use caseledger_keys::Signature;
use caseledger_ledger::store::{Ledger, Options, TestHook};
use caseledger_verify::entry::Record;
use common::edges::{self, SignatureEdge};
use common::*;

const DIR_ENV: &str = "ACK_CHILD_DIR";
const STAGE_ENV: &str = "ACK_CHILD_STAGE";
/// Groups the child tries before giving up on a speculative one.
const TRIES_MAX: u64 = 50;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("stdout");
    out.flush().expect("flush");
}

/// The records of try `n`: one by the writer, one by the other member.
fn group(keys: &Keys, n: u64) -> Vec<Record> {
    vec![note(&keys.writer, 1000 + n), note(&keys.other, 2000 + n)]
}

/// The writer's record at the edge: R plus a point of order 8.
fn edge_record(keys: &Keys, n: u64) -> Record {
    let mut record = note(&keys.writer, 3000 + n);
    record.signature = Signature::from_bytes(&edges::sign(
        &keys.writer.seed(),
        &record.signed_message(ORIGIN),
        SignatureEdge::RPlusTorsion,
    ));
    record
}

/// Runs only as the child: gets a speculative group acknowledged, then
/// goes on to the stage and waits to be killed.
#[test]
fn ack_child() {
    let (Ok(dir), Ok(stage)) = (std::env::var(DIR_ENV), std::env::var(STAGE_ENV)) else {
        return;
    };
    let keys = Keys::new();
    // Speculative writes seen; once armed (stage "next_paused", after the
    // acknowledgement), the hook holds the writer inside the next one.
    let speculative = Arc::new(AtomicU64::new(0));
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hook = {
        let speculative = Arc::clone(&speculative);
        let armed = Arc::clone(&armed);
        TestHook(Arc::new(move || {
            speculative.fetch_add(1, Ordering::SeqCst);
            if armed.load(Ordering::SeqCst) {
                say("paused");
                loop {
                    std::thread::park();
                }
            }
            false
        }))
    };
    let options = Options {
        // No checkpoint in between: a checkpoint group is never speculative.
        checkpoint_every_entries: 1_000_000,
        checkpoint_every_ms: 3_600_000,
        after_speculative_write: Some(hook),
        ..options()
    };
    let ledger = Arc::new(Ledger::open(Path::new(&dir), clock(), options).expect("child opens"));
    let runtime = runtime();
    for n in 0..TRIES_MAX {
        let refused = wait(&runtime, ledger.append_async(vec![edge_record(&keys, n)]));
        assert!(
            matches!(refused, Err(caseledger_ledger::Error::BadSignature { index: 0 })),
            "{refused:?}"
        );
        say("refused edge");
        let before = speculative.load(Ordering::SeqCst);
        let message = format!("request {n}").into_bytes();
        let honest = ledger.append_authorized(group(&keys, n), Some(authorization(&keys.writer, &message)));
        let appended = wait(&runtime, honest).expect("the honest request");
        // Written while its signatures were being checked, and kept: its
        // undo record stays on disk until the next group's write.
        if speculative.load(Ordering::SeqCst) > before {
            say(&format!("acked {} {} {n}", appended.first_seq, appended.count));
            break;
        }
    }
    match stage.as_str() {
        "acked" => {}
        "next_paused" => {
            // The hook parks the writer in the next speculative write
            // ("paused" is printed from there); a group checked ahead of
            // its write is not speculative, so append until one is.
            armed.store(true, Ordering::SeqCst);
            let ledger = Arc::clone(&ledger);
            std::thread::spawn(move || {
                for n in 0..TRIES_MAX {
                    ledger
                        .append_one(note(&Keys::new().writer, 9_000 + n))
                        .expect("next append");
                }
            });
        }
        "next_cleared" => {
            // A key registration is never speculative: its write clears
            // the undo record of the acknowledged group.
            ledger
                .append_one(register(
                    &keys.admin,
                    &caseledger_keys::Identity::from_seed([60; 32]),
                    "w2",
                    false,
                ))
                .expect("registration");
            say("cleared");
        }
        other => panic!("unknown stage {other}"),
    }
    loop {
        std::thread::park();
    }
}

/// Starts the child at `stage`, reads until it printed `last`, SIGKILLs
/// it, and returns the acknowledged (first seq, count, try).
fn run_stage(dir: &Path, stage: &str, last: &str) -> (u64, u64, u64) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["ack_child", "--exact", "--nocapture", "--test-threads", "1"])
        .env(DIR_ENV, dir)
        .env(STAGE_ENV, stage)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let child_guard = KillOnDrop(&mut child);
    let stdout = child_guard.0.stdout.take().expect("stdout");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let mut acked = None;
    loop {
        // A generous bound so a broken child fails the test instead of hanging it.
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("stage {stage}: the child stopped before {last:?}"));
        if let Some(rest) = line.strip_prefix("acked ") {
            let numbers: Vec<u64> = rest.split(' ').map(|n| n.parse().expect("number")).collect();
            acked = Some((numbers[0], numbers[1], numbers[2]));
        }
        if line == last || (last == "acked" && line.starts_with("acked ")) {
            break;
        }
    }
    drop(child_guard);
    acked.unwrap_or_else(|| panic!("stage {stage}: no speculative group in {TRIES_MAX} tries"))
}

/// SIGKILLs the child when the test is done with it, or fails.
struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pending_record_stored(dir: &Path) -> bool {
    let db = raw_db(dir);
    db.get_cf(db.cf_handle("meta").expect("meta"), b"pending")
        .expect("get")
        .is_some()
}

#[test]
fn an_acknowledged_group_survives_sigkill_at_every_stage() {
    if std::env::var(DIR_ENV).is_ok() {
        return;
    }
    let keys = Keys::new();
    for (stage, last, undo_record_left) in [
        ("acked", "acked", true),
        ("next_paused", "paused", true),
        ("next_cleared", "cleared", false),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = create(dir.path(), &keys);
        ledger
            .append(registered(&keys, &keys.other, "other", false))
            .expect("register other");
        ledger.close().expect("close");
        let (first_seq, count, n) = run_stage(dir.path(), stage, last);
        assert_eq!(count, 2, "{stage}");
        assert_eq!(
            pending_record_stored(dir.path()),
            undo_record_left,
            "{stage}: the undo record on disk at the kill"
        );
        let reopened = Ledger::open(dir.path(), clock(), options()).expect("reopen after SIGKILL");
        assert!(reopened.corruption().is_none(), "{stage}: {:?}", reopened.corruption());
        let expected = group(&keys, n);
        for (i, record) in expected.iter().enumerate() {
            let seq = first_seq + i as u64;
            assert_eq!(
                &reopened.entry(seq).expect("acknowledged entry kept").record,
                record,
                "{stage}: seq {seq}"
            );
        }
        assert!(reopened.size() >= first_seq + count, "{stage}");
        let report = reopened.audit(None, 2, &|_| {}).expect("audit");
        assert!(report.ok, "{stage}: {:?} {:?}", report.first_error, report.violations);
        // The seqs are not given to anything else: the next append goes after.
        let next = reopened.append_one(note(&keys.writer, 77_777)).expect("append");
        assert!(next >= first_seq + count, "{stage}");
        reopened.close().expect("close");
    }
}
