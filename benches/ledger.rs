//! Ledger benchmarks, each next to the raw limit it is judged against,
//! measured in the same run (see BENCHMARKS.md for figures and targets).
//!
//! `cargo bench --bench ledger` runs everything; the 1M-entry ledger used by
//! the verify, proof and open benchmarks is made once with `caseledger demo`
//! and kept under the cargo target folder (`CASELEDGER_BENCH_ENTRIES`
//! changes its size).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use caseledger::court::{demo_case_history, Staff};
use caseledger_keys::{Identity, Signature};
use caseledger_ledger::store::{Ledger, Options, SystemClock};
use caseledger_verify::entry::{Entry, Record};
use caseledger_verify::record::{self, KeyRegistered, KeyText};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// The allocator of the `caseledger` binary (src/main.rs), so that the
/// figures are those of the service.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PAYLOAD_BYTES: usize = 300;

fn payload(n: u64) -> Vec<u8> {
    let mut text = format!("{{\"number\":{n},\"text\":\"");
    while text.len() < PAYLOAD_BYTES - 2 {
        text.push('x');
    }
    text.push_str("\"}");
    text.into_bytes()
}

struct Fixture {
    _dir: tempfile::TempDir,
    ledger: Arc<Ledger>,
    /// 64 registered writers, one per appender where the appenders should
    /// not share a key.
    writers: Vec<Identity>,
}

impl Fixture {
    /// The writer of the benchmarks whose appenders share one key.
    fn writer(&self) -> &Identity {
        &self.writers[0]
    }
}

fn fixture() -> Fixture {
    fixture_in(tempfile::tempdir().expect("tempdir"))
}

/// Origin of the benchmark ledgers.
const ORIGIN: &str = "bench.caseledger.local/ledger";

fn fixture_in(dir: tempfile::TempDir) -> Fixture {
    let node = Identity::from_seed([1; 32]);
    let admin = Identity::from_seed([2; 32]);
    let co_admin = Identity::from_seed([255; 32]);
    let writers: Vec<Identity> = (0..64u8).map(|i| Identity::from_seed([i + 3; 32])).collect();
    let ledger = Ledger::create(
        dir.path(),
        ORIGIN,
        &node,
        &[
            ("admin".into(), admin.public_key()),
            ("co-admin".into(), co_admin.public_key()),
        ],
        Arc::new(SystemClock),
        Options {
            demo_ledger: true,
            ..Options::default()
        },
    )
    .expect("create");
    for (n, writer) in writers.iter().enumerate() {
        let registration = KeyRegistered {
            name: format!("writer {n}"),
            public_key: KeyText::from_key(&writer.public_key()),
            administrator: false,
            member: None,
        };
        let co_signature = serde_json::to_vec(&record::KeyCoSigned::of(&registration).expect("key")).expect("json");
        let bytes = serde_json::to_vec(&registration).expect("json");
        ledger
            .append(vec![
                Record::sign(ORIGIN, record::KIND_KEY_REGISTERED, bytes, &admin),
                Record::sign(ORIGIN, record::KIND_KEY_CO_SIGNED, co_signature, &co_admin),
            ])
            .expect("register");
    }
    Fixture {
        _dir: dir,
        ledger: Arc::new(ledger),
        writers,
    }
}

fn signed(writer: &Identity, count: usize) -> Vec<Record> {
    (0..count as u64)
        .map(|n| Record::sign(ORIGIN, record::KIND_DEMO_NOTE, payload(n), writer))
        .collect()
}

/// Raw limit 1: a synced RocksDB WriteBatch of `count` entry-sized values.
fn raw_rocksdb(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    let db = rocksdb::DB::open(&options, dir.path()).expect("open");
    let entry_bytes = sample_entry_bytes();
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    let mut group = c.benchmark_group("raw");
    let mut key = 0u64;
    for count in [1usize, 1024] {
        group.throughput(Throughput::Elements(count as u64));
        group.bench_with_input(
            BenchmarkId::new("rocksdb_synced_writebatch", count),
            &count,
            |b, &count| {
                b.iter(|| {
                    let mut batch = rocksdb::WriteBatch::default();
                    for _ in 0..count {
                        key += 1;
                        batch.put(key.to_be_bytes(), &entry_bytes);
                    }
                    db.write_opt(batch, &sync).expect("write");
                })
            },
        );
    }
    group.finish();
}

fn sample_entry_bytes() -> Vec<u8> {
    let writer = Identity::from_seed([3; 32]);
    Entry {
        seq: 1,
        timestamp_ms: 0,
        prev_hash: [0; 32],
        record: Record::sign(ORIGIN, record::KIND_DEMO_NOTE, payload(0), &writer),
    }
    .encode()
}

/// `verify` over `messages` split evenly across all cores.
fn on_all_cores(messages: &[Vec<u8>], verify: impl Fn(std::ops::Range<usize>) + Sync) {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = messages.len().div_ceil(threads);
    std::thread::scope(|scope| {
        for start in (0..messages.len()).step_by(chunk) {
            let end = (start + chunk).min(messages.len());
            let verify = &verify;
            scope.spawn(move || verify(start..end));
        }
    });
}

/// Raw limit 2: the one signature rule (`verify_strict`, through
/// `PublicKey::verify_raw`) over 1,024 signatures on all cores.
fn raw_ed25519(c: &mut Criterion) {
    let writer = Identity::from_seed([3; 32]);
    let records = signed(&writer, 1024);
    let messages: Vec<Vec<u8>> = records.iter().map(|r| r.signed_message(ORIGIN)).collect();
    let signatures: Vec<Signature> = records.iter().map(|r| r.signature).collect();
    let key = writer.public_key();
    let mut group = c.benchmark_group("raw");
    group.throughput(Throughput::Elements(1024));
    group.bench_function("ed25519_verify_strict_all_cores/1024", |b| {
        b.iter(|| {
            on_all_cores(&messages, |range| {
                for i in range {
                    key.verify_raw(&messages[i], &signatures[i]).expect("valid")
                }
            })
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("ed25519_verify_single", |b| {
        b.iter(|| {
            writer
                .public_key()
                .verify_raw(&messages[0], &signatures[0])
                .expect("valid")
        })
    });
    group.finish();
}

fn durable_append(c: &mut Criterion) {
    let fixture = fixture();
    let mut group = c.benchmark_group("append");
    for batch in [1usize, 64, 1024] {
        let pool = signed(fixture.writer(), batch * 64);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("durable_batch", batch), &batch, |b, &batch| {
            let mut next = 0usize;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = (next % 64) * batch;
                    next += 1;
                    let records = pool[start..start + batch].to_vec();
                    let began = Instant::now();
                    fixture.ledger.append(records).expect("append");
                    total += began.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

/// `clients` threads, each appending its own pre-signed records one at a
/// time; the time from the start barrier until all are done.
fn run_clients(fixture: &Arc<Fixture>, pools: &[Vec<Record>]) -> Duration {
    let barrier = Arc::new(Barrier::new(pools.len() + 1));
    let handles: Vec<_> = pools
        .iter()
        .cloned()
        .map(|pool| {
            let fixture = Arc::clone(fixture);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                for record in pool {
                    fixture.ledger.append_one(record).expect("append");
                }
            })
        })
        .collect();
    barrier.wait();
    let began = Instant::now();
    handles.into_iter().for_each(|h| h.join().expect("client"));
    began.elapsed()
}

/// `pools.len()` async appenders, tasks on a 2-worker runtime as in
/// `caseledger serve`, each appending its records one at a time.
fn run_tasks(runtime: &tokio::runtime::Runtime, fixture: &Fixture, pools: &[Vec<Record>]) -> Duration {
    let began = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = pools
            .iter()
            .cloned()
            .map(|pool| {
                let ledger = Arc::clone(&fixture.ledger);
                tokio::spawn(async move {
                    for record in pool {
                        ledger.append_async(vec![record]).await.expect("append");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
    });
    began.elapsed()
}

fn concurrent_append(c: &mut Criterion) {
    let on_disk = Arc::new(fixture());
    // The same ledger on tmpfs, where fsync costs nothing: the CPU-bound
    // ceiling of 64 appenders on this machine, for comparison.
    let in_memory = Arc::new(fixture_in(tempfile::tempdir_in("/dev/shm").expect("tmpfs tempdir")));
    let mut group = c.benchmark_group("append");
    group.sample_size(20);
    for (name, fixture, clients) in [
        ("single_entry_clients", &on_disk, 1usize),
        ("single_entry_clients", &on_disk, 64),
        ("single_entry_clients_tmpfs", &in_memory, 64),
    ] {
        let per_client = 2048 / clients;
        let pools: Vec<Vec<Record>> = (0..clients).map(|_| signed(fixture.writer(), per_client)).collect();
        group.throughput(Throughput::Elements((clients * per_client) as u64));
        group.bench_with_input(BenchmarkId::new(name, clients), &clients, |b, _| {
            b.iter_custom(|iters| (0..iters).map(|_| run_clients(fixture, &pools)).sum())
        });
    }
    // The same 64 appenders as async tasks (`Ledger::append_async`, as the
    // HTTP handlers append): no OS thread per appender to wake.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    for (name, fixture) in [
        ("single_entry_tasks", &on_disk),
        ("single_entry_tasks_tmpfs", &in_memory),
    ] {
        let pools: Vec<Vec<Record>> = (0..64).map(|_| signed(fixture.writer(), 2048 / 64)).collect();
        group.throughput(Throughput::Elements(2048));
        group.bench_with_input(BenchmarkId::new(name, 64), &64, |b, _| {
            b.iter_custom(|iters| (0..iters).map(|_| run_tasks(&runtime, fixture, &pools)).sum())
        });
    }
    // The same 64 tasks with the service's self-audit (paced, one thread)
    // running again and again beside them (the service runs it hourly by
    // default): the most it can cost the append path (issue 15: ≤ 10 %).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let auditing = {
        let (ledger, stop) = (Arc::clone(&on_disk.ledger), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let report = caseledger::service::self_audit::paced_audit(&ledger).expect("self-audit");
                assert!(report.ok, "the self-audit passes");
            }
        })
    };
    let pools: Vec<Vec<Record>> = (0..64).map(|_| signed(on_disk.writer(), 2048 / 64)).collect();
    group.bench_with_input(BenchmarkId::new("single_entry_tasks_self_audit", 64), &64, |b, _| {
        b.iter_custom(|iters| (0..iters).map(|_| run_tasks(&runtime, &on_disk, &pools)).sum())
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    auditing.join().expect("self-audit thread");
    // 64 appenders with 64 keys: no two signatures of a batch share a key,
    // so batch verification cannot count a key once for several of them.
    let pools: Vec<Vec<Record>> = on_disk.writers.iter().map(|w| signed(w, 2048 / 64)).collect();
    group.bench_with_input(BenchmarkId::new("single_entry_tasks_64_keys", 64), &64, |b, _| {
        b.iter_custom(|iters| (0..iters).map(|_| run_tasks(&runtime, &on_disk, &pools)).sum())
    });
    group.finish();
}

fn single_put_vs_append(c: &mut Criterion) {
    let fixture = fixture();
    let pool = signed(fixture.writer(), 4096);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    let db = rocksdb::DB::open(&options, dir.path()).expect("open");
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    let entry_bytes = sample_entry_bytes();
    let mut group = c.benchmark_group("latency");
    // Back to back in one group so both see the same disk.
    let mut key = 0u64;
    group.bench_function("raw_synced_put", |b| {
        b.iter(|| {
            key += 1;
            db.put_opt(key.to_be_bytes(), &entry_bytes, &sync).expect("put")
        })
    });
    let mut next = 0usize;
    group.bench_function("append_one_entry", |b| {
        b.iter(|| {
            next += 1;
            fixture
                .ledger
                .append_one(pool[next % pool.len()].clone())
                .expect("append")
        })
    });
    group.finish();
}

/// A large demo ledger kept between runs, made with the `caseledger` binary.
fn big_ledger() -> PathBuf {
    let entries: u64 = std::env::var("CASELEDGER_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // v3: records bound to their origin (issue 13), co-signed key
    // registrations (issue 14); a ledger of another format would not verify.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-ledger-v3-{entries}"));
    let done = dir.join("complete");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let started = Instant::now();
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
            .args(["demo", "--entries", &entries.to_string(), "--seed", "1", "--data"])
            .arg(&dir)
            .status()
            .expect("run caseledger demo");
        assert!(status.success(), "demo failed");
        std::fs::write(&done, b"").expect("mark complete");
        eprintln!(
            "made a {entries}-entry ledger in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    dir
}

fn big_ledger_benches(c: &mut Criterion) {
    let dir = big_ledger();
    let mut group = c.benchmark_group("big");
    group.sample_size(10);
    group.bench_function("open_writable_and_close", |b| {
        b.iter(|| {
            let ledger = Ledger::open(&dir, Arc::new(SystemClock), Options::default()).expect("open");
            assert!(ledger.corruption().is_none());
            ledger.close().expect("close")
        })
    });
    let ledger = Ledger::open_read_only(&dir).expect("open");
    let size = ledger.size();
    let mut seq = 12_345u64;
    group.bench_function("inclusion_proof_build", |b| {
        b.iter(|| {
            seq = (seq * 6_364_136_223_846_793_005 + 1) % size;
            ledger.inclusion_proof(seq, size).expect("proof")
        })
    });
    group.throughput(Throughput::Elements(size));
    group.measurement_time(Duration::from_secs(60));
    group.bench_function("full_verify", |b| {
        b.iter(|| {
            let report = ledger.audit(None, 2, &|_| {}).expect("audit");
            assert!(report.ok, "{:?}", report.first_error);
        })
    });
    group.finish();
}

criterion_group!(
    name = raw;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = raw_rocksdb, raw_ed25519
);
criterion_group!(
    name = append;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = durable_append, concurrent_append, single_put_vs_append
);
/// A court ledger in a temporary folder: the demo staff enrolled and the
/// example policy (version 1) in force.
fn court_ledger() -> (tempfile::TempDir, Staff, Ledger) {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = Staff::from_seed(1, ORIGIN);
    let node = Identity::from_seed([1; 32]);
    let ledger = Ledger::create(
        dir.path(),
        ORIGIN,
        &node,
        &staff.genesis_administrators(),
        Arc::new(SystemClock),
        Options::default(),
    )
    .expect("create");
    ledger.append(staff.setup_records()).expect("staff");
    (dir, staff, ledger)
}

/// The case-fund write path: every record checked against the key registry
/// and the case-fund rules, its derived state written in the same batch.
fn funds_write(c: &mut Criterion) {
    let (_dir, staff, ledger) = court_ledger();
    let origin = ledger.origin().to_owned();
    let mut next_case = 1u64;
    let mut take_cases = |count: u64| {
        let records: Vec<Record> = (next_case..next_case + count)
            .flat_map(|n| demo_case_history(&staff, &origin, n, 1, 1))
            .collect();
        next_case += count;
        records
    };
    let mut group = c.benchmark_group("funds");
    let batch = take_cases(32);
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("rule_checked_write_batched_32_cases", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let records = take_cases(32);
                let began = Instant::now();
                ledger.append(records).expect("append");
                total += began.elapsed();
            }
            total
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("rule_checked_write_single", |b| {
        b.iter_custom(|iters| {
            let mut records = Vec::new();
            while (records.len() as u64) < iters {
                records.extend(take_cases(1));
            }
            let began = Instant::now();
            for record in records.into_iter().take(iters as usize) {
                // A case cut short is fine: the records that follow are refused
                // or accepted by the same rules and cost the same path.
                let _ = ledger.append_one(record);
            }
            began.elapsed()
        })
    });
    group.finish();
}

/// A demo ledger of case histories kept between runs.
fn case_ledger() -> PathBuf {
    let cases: u64 = std::env::var("CASELEDGER_BENCH_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    // v6: issue 16 checkpoints carry the thread map (v5: issue 14 records:
    // co-signed policy, code openings, value dates, cases by the filing
    // clerk with the node's commitments, claims decided, co-signed key
    // registrations).
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-cases-v7-{cases}"));
    let done = dir.join("complete");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let started = Instant::now();
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
            .args(["demo", "--cases", &cases.to_string(), "--seed", "1", "--data"])
            .arg(&dir)
            .status()
            .expect("run caseledger demo");
        assert!(status.success(), "demo failed");
        std::fs::write(&done, b"").expect("mark complete");
        eprintln!("made a {cases}-case ledger in {:.1} s", started.elapsed().as_secs_f64());
    }
    dir
}

fn funds_audit(c: &mut Criterion) {
    let dir = case_ledger();
    let ledger = Ledger::open_read_only(&dir).expect("open");
    let mut group = c.benchmark_group("funds");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    group.throughput(Throughput::Elements(ledger.size()));
    group.bench_function("audit_replay_with_rules", |b| {
        b.iter(|| {
            let report = ledger.audit(None, 2, &|_| {}).expect("audit");
            assert!(
                report.ok && report.cases >= 100_000,
                "{:?} {:?}",
                report.first_error,
                report.violations
            );
        })
    });
    group.finish();
}

/// The applicant's check of a case with 50 paid payments (request, two
/// approvals and a payment each), natively: the browser's figure
/// (BENCHMARKS.md, `tests/browser_page.rs`) is judged against it, and
/// against `verify_strict` on its 218 signatures (`raw/ed25519`).
fn applicant_bundle_verify(c: &mut Criterion) {
    use caseledger::court::CaseRecords;
    use caseledger_verify::funds::model::Role;
    let (_dir, staff, ledger) = court_ledger();
    let case = CaseRecords::new(&staff, &staff.officers[0], "(2026)苏02执50号");
    let mut records = [case.open(1), case.account("acct-1", 1, "6222000011110001")].concat();
    records.push(case.confirm("acct-1"));
    records.push(case.receipt("BANK-1", 10_000_000));
    for n in 0..50 {
        let id = format!("d-{n:02}");
        records.push(case.request(&id, "acct-1", 100_000));
        records.extend(case.approvals(ORIGIN, &id, "acct-1", 100_000, &[Role::BureauHead, Role::Finance]));
        records.push(case.payment(&id, &format!("PAY-{n:02}"), "acct-1", 100_000));
    }
    for record in records {
        ledger.append_one(record).expect("append");
    }
    let (code, issue) = case.applicant_code(1);
    ledger.append_one(issue).expect("code");
    let bundle = ledger.applicant_bundle(&code).expect("bundle").expect("known code");
    let key = ledger.node_key();
    let mut group = c.benchmark_group("applicant");
    group.throughput(Throughput::Elements(bundle.entries.len() as u64));
    group.bench_function("bundle_verify_50_payments", |b| {
        b.iter(|| {
            let report = bundle.verify(&key).expect("verifies");
            assert_eq!(report.disbursements.len(), 50);
        })
    });
    group.finish();
}

criterion_group!(big, big_ledger_benches);
criterion_group!(funds, funds_write, funds_audit, applicant_bundle_verify);
criterion_main!(raw, append, big, funds);
