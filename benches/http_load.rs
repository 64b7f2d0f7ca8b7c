//! Signed writes over HTTP: a `caseledger serve` process on 127.0.0.1 and
//! 1, 16 and 64 concurrent member clients, each sending signed single-record
//! writes (RFC 9421 request signature, Ed25519 record signature) one after
//! another. Prints requests per second and p50/p99 latency, beside the
//! durable-append rate of the same kind of records without HTTP in the same
//! run: with 64 threads and record signatures only, and with 64 tasks and
//! each record's request signature verified with it, as the service does.
//!
//! Each client signs its records and requests before the clock starts, as a
//! load generator on another machine would: on this one the clients share
//! the server's 2 cores, and signing two signatures per write would take
//! their CPU from the server. The direct appends are pre-signed the same way.
//!
//! Run: `cargo bench --bench http_load` (about 1 minute).

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use caseledger::court::{sign, Staff};
use caseledger::service::client::{authority_of, sign_request, write_body, Client};
use caseledger::service::httpsig::{self, RequestParts};
use caseledger_keys::Identity;
use caseledger_ledger::store::{Authorization, Ledger, Options, SystemClock};
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::{Channel, ReceiptRecorded, KIND_RECEIPT_RECORDED};

/// The allocator of the `caseledger` binary (src/main.rs), so that the
/// figures are those of the service.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Writes per run, spread over the clients (about 5 s at the rates seen).
const WRITES_PER_RUN: usize = 32_768;

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
    sign("load.caseledger.local/ledger", KIND_RECEIPT_RECORDED, &payload, finance)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

/// A request body and its signature headers.
type Signed = (Vec<u8>, Vec<(String, String)>);

/// One client's requests, signed now.
fn presigned(authority: &str, finance: &Identity, client: usize, count: usize) -> Vec<Signed> {
    (0..count as u64)
        .map(|n| {
            let body = write_body(&[receipt(finance, client, n)]);
            let headers = sign_request(finance, authority, "POST", "/v1/records", &body);
            (body, headers)
        })
        .collect()
}

/// CPU time (user + system) used so far by process `pid`, every thread.
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name (which is in parentheses): utime and
    // stime are the 12th and 13th, in clock ticks.
    let fields: Vec<u64> = stat[stat.rfind(')').expect("stat") + 2..]
        .split(' ')
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Duration::from_secs_f64((fields[11] + fields[12]) as f64 / ticks as f64)
}

/// Server CPU per write, in µs.
fn per_write_us(cpu: Duration, writes: usize) -> f64 {
    cpu.as_secs_f64() * 1e6 / writes as f64
}

/// Rate, p50, p99, and the server's CPU per write.
fn run(
    address: &str,
    server: &str,
    finance: &Identity,
    clients: usize,
    offset: usize,
) -> (f64, Duration, Duration, f64) {
    let per_client = WRITES_PER_RUN / clients;
    let barrier = Arc::new(Barrier::new(clients + 1));
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let client = Client::new(address, finance.clone());
            let requests = presigned(&authority_of(address), finance, offset + c, per_client);
            let barrier = Arc::clone(&barrier);
            std::thread::Builder::new()
                .name(format!("load-client-{c}"))
                .spawn(move || {
                    barrier.wait();
                    requests
                        .iter()
                        .map(|(body, headers)| {
                            let began = Instant::now();
                            let (status, answer) =
                                client.post_presigned("/v1/records", body, headers).expect("request");
                            assert_eq!(status, 201, "{answer}");
                            began.elapsed()
                        })
                        .collect::<Vec<Duration>>()
                })
                .expect("client thread")
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let cpu_before = cpu_time(server);
    let mut all: Vec<Duration> = handles.into_iter().flat_map(|h| h.join().expect("client")).collect();
    let elapsed = started.elapsed();
    let cpu = cpu_time(server) - cpu_before;
    all.sort();
    (
        all.len() as f64 / elapsed.as_secs_f64(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        per_write_us(cpu, all.len()),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // nothing to list; cargo test --benches runs us with --test
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = Staff::from_seed(1, "load.caseledger.local/ledger");
    let admin_key = dir.path().join("admin.pub");
    caseledger_keys::files::write_public_key(&admin_key, &staff.administrator.identity.public_key()).expect("key");
    let second_admin_key = dir.path().join("admin-2.pub");
    caseledger_keys::files::write_public_key(&second_admin_key, &staff.co_administrator.identity.public_key())
        .expect("key");
    let data = dir.path().join("ledger");
    let init = Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["init", "--origin", "load.caseledger.local/ledger", "--data"])
        .arg(&data)
        .arg("--admin-key")
        .arg(&admin_key)
        .arg("--second-admin-key")
        .arg(&second_admin_key)
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
    let setup = staff.setup_requests();
    let admin = Client::new(&address, staff.administrator.identity.clone());
    let (status, _) = admin.write_numbered(&setup.administrator).expect("staff");
    assert_eq!(status, 201);
    let co_admin = Client::new(&address, staff.co_administrator.identity.clone());
    let (status, _) = co_admin.write_numbered(&setup.co_administrator).expect("co-signatures");
    assert_eq!(status, 201);
    let leader = Client::new(&address, staff.court_leader.identity.clone());
    let (status, _) = leader.write(&[setup.court_leader]).expect("policy in force");
    assert_eq!(status, 201);

    println!("signed single-record writes over HTTP ({WRITES_PER_RUN} per run, pre-signed):");
    println!("| clients | writes/s | p50 | p99 | server CPU per write |");
    let server = child.id().to_string();
    // `cargo bench --bench http_load -- 64` runs only the given client counts.
    let only: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    for (i, clients) in [1usize, 16, 64].into_iter().enumerate() {
        if !only.is_empty() && !only.contains(&clients) {
            continue;
        }
        let (rate, p50, p99, cpu) = run(&address, &server, &staff.finance.identity, clients, i * 1000);
        println!(
            "| {clients} | {rate:.0} | {:.2} ms | {:.2} ms | {cpu:.0} µs |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    if only.is_empty() || only.contains(&64) {
        wrk_writes(&address, &server, &staff.finance.identity);
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();

    // The same kind of records appended without HTTP, 64 threads, same run.
    let ledger = Arc::new(Ledger::open(&data, Arc::new(SystemClock), Options::default()).expect("reopen"));
    let barrier = Arc::new(Barrier::new(65));
    let handles: Vec<_> = (0..64)
        .map(|c| {
            let ledger = Arc::clone(&ledger);
            let records: Vec<Record> = (0..(WRITES_PER_RUN / 64) as u64)
                .map(|n| receipt(&staff.finance.identity, 9000 + c, n))
                .collect();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                for record in records {
                    ledger.append_one(record).expect("append");
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    handles.into_iter().for_each(|h| h.join().expect("thread"));
    println!(
        "same kind of records, pre-signed, 64 threads calling Ledger::append_one directly: {:.0}/s",
        WRITES_PER_RUN as f64 / started.elapsed().as_secs_f64()
    );

    // What the service's durable append does for each write, without HTTP:
    // 64 tasks on a 2-worker runtime (as `serve`), each record with the
    // signature of a request (a signature base of the size HTTP sends),
    // verified with the group. This is the limit HTTP writes are held to.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let finance = &staff.finance.identity;
    let work: Vec<Vec<(Record, Authorization)>> = (0..64)
        .map(|c| {
            (0..(WRITES_PER_RUN / 64) as u64)
                .map(|n| {
                    let record = receipt(finance, 19_000 + c, n);
                    let body = write_body(std::slice::from_ref(&record));
                    let headers = sign_request(
                        finance,
                        caseledger::service::DEFAULT_AUTHORITY,
                        "POST",
                        "/v1/records",
                        &body,
                    );
                    (record, request_authorization(finance, &headers, &body))
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let cpu_before = cpu_time("self");
    runtime.block_on(async {
        let tasks: Vec<_> = work
            .into_iter()
            .map(|writes| {
                let ledger = Arc::clone(&ledger);
                tokio::spawn(async move {
                    for (record, authorization) in writes {
                        ledger
                            .append_authorized(vec![record], Some(authorization))
                            .await
                            .expect("append");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
    });
    let elapsed = started.elapsed();
    let cpu = cpu_time("self") - cpu_before;
    println!(
        "same records with their request signatures, 64 tasks calling Ledger::append_authorized directly: {:.0}/s, {:.0} µs CPU per write",
        WRITES_PER_RUN as f64 / elapsed.as_secs_f64(),
        per_write_us(cpu, WRITES_PER_RUN)
    );
}

/// Requests the wrk run may send (about 5 s at the rates seen).
const WRK_REQUESTS: usize = 80_000;

/// 64 connections from `wrk` (a C load generator on 2 threads, far lighter
/// than the client threads above) sending pre-signed writes, when `wrk` is
/// installed (Debian package `wrk`).
fn wrk_writes(address: &str, server: &str, finance: &Identity) {
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("wrk is not installed: the wrk line is skipped (apt-get install wrk)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("requests.tsv");
    let mut lines = String::new();
    for (body, headers) in presigned(&authority_of(address), finance, 50_000, WRK_REQUESTS) {
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .expect("header")
        };
        let body = String::from_utf8(body).expect("JSON");
        assert!(!body.contains(['\t', '\n']), "one request per line");
        lines.push_str(&format!(
            "{}\t{}\t{}\t{body}\n",
            get("content-digest"),
            get("signature-input"),
            get("signature")
        ));
    }
    std::fs::write(&file, lines).expect("requests file");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/wrk/records.lua");
    let cpu_before = cpu_time(server);
    let output = Command::new("wrk")
        .args(["-t2", "-c64", "-d4s", "--latency", "-s", script, address])
        .env("REQUESTS", &file)
        .env("THREADS", "2")
        .output()
        .expect("wrk");
    let cpu = cpu_time(server) - cpu_before;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wrk failed: {text}");
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
            .unwrap_or_else(|| panic!("no {prefix} in wrk's output: {text}"))
    };
    assert_eq!(field("refused"), "0", "every write must be answered 201: {text}");
    assert_eq!(field("ran_out"), "0", "wrk ran out of pre-signed requests: {text}");
    let sent: usize = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.parse().ok())
        .expect("request count");
    let rate: f64 = field("Requests/sec:").parse().expect("rate");
    // wrk prints latencies as e.g. `4.31ms` or `850.12us`.
    let latency = |p: &str| field(p).replace("ms", " ms").replace("us", " µs");
    println!(
        "| 64, wrk -t2 -c64 -d4s | {rate:.0} | {} | {} | {:.0} µs |",
        latency("50%"),
        latency("99%"),
        per_write_us(cpu, sent)
    );
}

/// The request signature the service hands to the ledger for a request
/// signed with `headers`: its signature base and signature.
fn request_authorization(signer: &Identity, headers: &[(String, String)], body: &[u8]) -> Authorization {
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let parts = RequestParts {
        method: "POST",
        authority: caseledger::service::DEFAULT_AUTHORITY,
        path: "/v1/records",
        query: None,
        content_digest: get("content-digest"),
    };
    let key = signer.public_key();
    let unverified = httpsig::check(
        &parts,
        body,
        get("signature-input"),
        get("signature"),
        now_unix(),
        |id| (*id == key.key_id()).then_some(key),
    )
    .expect("well-formed request");
    Authorization {
        signer: unverified.key_id,
        message: unverified.base.into_bytes(),
        signature: unverified.signature,
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
