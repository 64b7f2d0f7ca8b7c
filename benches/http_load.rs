//! Signed writes over HTTP: a `caseledger serve` process on 127.0.0.1 and
//! 1, 16 and 64 concurrent member clients, each sending signed single-record
//! writes (RFC 9421 request signature, Ed25519 record signature) one after
//! another. Prints requests per second and p50/p99 latency, beside the
//! durable-append rate of the same records without HTTP in the same run.
//!
//! Run: `cargo bench --bench http_load` (about 1 minute).

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use caseledger::court::{sign, Staff};
use caseledger::service::client::Client;
use caseledger_keys::Identity;
use caseledger_ledger::entry::Record;
use caseledger_ledger::funds::model::{Channel, ReceiptRecorded, KIND_RECEIPT_RECORDED};
use caseledger_ledger::store::{Ledger, Options, SystemClock};

const SECONDS_PER_RUN: u64 = 8;

fn receipt(finance: &Identity, client: usize, n: u64) -> Record {
    let payload = ReceiptRecorded {
        request_id: format!("load-{client}-{n}"),
        bank_reference: format!("LOAD-{client}-{n}"),
        amount_fen: 100 + n,
        payer: "负载测试".into(),
        value_date: "2026-11-26".into(),
        channel: Channel::Transfer,
        case_number: None,
    };
    sign(KIND_RECEIPT_RECORDED, &payload, finance)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

fn run(address: &str, finance: &Identity, clients: usize, offset: usize) -> (f64, Duration, Duration) {
    let barrier = Arc::new(Barrier::new(clients));
    let deadline = Duration::from_secs(SECONDS_PER_RUN);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let client = Client::new(address, finance.clone());
            let finance = finance.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let started = Instant::now();
                let mut latencies = Vec::new();
                let mut n = 0;
                while started.elapsed() < deadline {
                    let record = receipt(&finance, offset + c, n);
                    let began = Instant::now();
                    let (status, body) = client.write(&[record]).expect("request");
                    assert_eq!(status, 201, "{body}");
                    latencies.push(began.elapsed());
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<Duration> = handles.into_iter().flat_map(|h| h.join().expect("client")).collect();
    all.sort();
    (
        all.len() as f64 / SECONDS_PER_RUN as f64,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // nothing to list; cargo test --benches runs us with --test
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = Staff::from_seed(1);
    let admin_key = dir.path().join("admin.key");
    caseledger_keys::files::write_private_key(&admin_key, &staff.administrator.identity).expect("key");
    let data = dir.path().join("ledger");
    let init = Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["init", "--origin", "load.caseledger.local/ledger", "--data"])
        .arg(&data)
        .arg("--admin-key")
        .arg(&admin_key)
        .output()
        .expect("init");
    assert!(init.status.success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("CASELEDGER_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let address = loop {
        let line = lines.next().expect("address").expect("line");
        if let Some(rest) = line.strip_prefix("caseledger listening on ") {
            break rest.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let admin = Client::new(&address, staff.administrator.identity.clone());
    let (status, _) = admin.write(&staff.setup_records()).expect("staff");
    assert_eq!(status, 201);

    println!("signed single-record writes over HTTP ({SECONDS_PER_RUN} s each):");
    println!("| clients | writes/s | p50 | p99 |");
    for (i, clients) in [1usize, 16, 64].into_iter().enumerate() {
        let (rate, p50, p99) = run(&address, &staff.finance.identity, clients, i * 1000);
        println!(
            "| {clients} | {rate:.0} | {:.2} ms | {:.2} ms |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();

    // The same records appended without HTTP, 64 threads, same run.
    let ledger = Arc::new(Ledger::open(&data, Arc::new(SystemClock), Options::default()).expect("reopen"));
    let barrier = Arc::new(Barrier::new(64));
    let started = Instant::now();
    let handles: Vec<_> = (0..64)
        .map(|c| {
            let ledger = Arc::clone(&ledger);
            let finance = staff.finance.identity.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut n = 0u64;
                while started.elapsed() < Duration::from_secs(SECONDS_PER_RUN) {
                    ledger.append_one(receipt(&finance, 9000 + c, n)).expect("append");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    println!(
        "same records, 64 threads calling Ledger::append_one directly: {:.0}/s",
        total as f64 / SECONDS_PER_RUN as f64
    );
}
