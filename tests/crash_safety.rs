//! Crash safety: a child process appends continuously (single entries and
//! batches from several threads) and prints every acknowledged sequence
//! number; the test SIGKILLs it at random moments over several rounds, and
//! after each kill every acknowledged entry must be there and the ledger
//! must open writable and verify.
//!
//! The child is this same test binary, started with `CRASH_CHILD_DIR` set.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use caseledger_ledger::store::Ledger;
use caseledger_verify::entry::Entry;
use common::*;
use rand::Rng as _;

const CHILD_ENV: &str = "CRASH_CHILD_DIR";
const ROUNDS: usize = 6;

/// Runs only as the child: appends until killed.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let keys = Arc::new(Keys::new());
    let ledger = Arc::new(Ledger::open(Path::new(&dir), clock(), options()).expect("child opens ledger"));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let ledger = Arc::clone(&ledger);
            let keys = Arc::clone(&keys);
            std::thread::spawn(move || {
                for i in 0.. {
                    let batch: Vec<_> = (0..1 + (i % 3) * t).map(|k| note(&keys.writer, i * 10 + k)).collect();
                    let appended = ledger.append(batch).expect("append");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {} {}", appended.first_seq, appended.count).expect("stdout");
                    out.flush().expect("flush");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("appender");
    }
}

fn run_child_and_kill(dir: &Path, run_for: Duration) -> Vec<(u64, u64)> {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["crash_child", "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| {
                let mut parts = line.strip_prefix("ack ")?.split(' ');
                Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
            })
            .collect::<Vec<(u64, u64)>>()
    });
    let started = Instant::now();
    std::thread::sleep(run_for);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let acks = reader.join().expect("reader");
    assert!(started.elapsed() >= run_for);
    acks
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    create(dir.path(), &Keys::new()).close().expect("close");
    let mut rng = rand::thread_rng();
    let mut total_acked = 0;
    for round in 0..ROUNDS {
        let acks = run_child_and_kill(dir.path(), Duration::from_millis(rng.gen_range(150..600)));
        total_acked += acks.len();
        eprintln!("round {round}: {} acknowledged appends before SIGKILL", acks.len());
        let ledger = Ledger::open(dir.path(), clock(), options()).expect("reopen after kill");
        assert!(
            ledger.corruption().is_none(),
            "round {round}: {:?}",
            ledger.corruption()
        );
        for (first, count) in &acks {
            for seq in *first..first + count {
                let bytes = ledger
                    .entry_bytes(seq)
                    .unwrap_or_else(|e| panic!("round {round}: acked {seq} lost: {e}"));
                assert_eq!(Entry::decode(&bytes).expect("decode").seq, seq);
            }
        }
        let report = ledger.audit(None, 2, &|_| {}).expect("audit");
        assert!(report.ok, "round {round}: {:?}", report.first_error);
        ledger.close().expect("close");
    }
    assert!(total_acked > 0, "the child never acknowledged anything");
}
