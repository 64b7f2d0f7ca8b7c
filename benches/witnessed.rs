//! Cosigning must not slow appends (issue 17): durable appends of 64
//! records at a time, with no witness, and with three witnesses (real
//! `caseledger witness` routers on loopback, fed by the node's anchor
//! threads) cosigning every checkpoint the ledger makes meanwhile (one per
//! 256 entries). Side by side in one run; figures in BENCHMARKS.md.
//!
//! `cargo bench --bench witnessed`

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use caseledger::service::witnesses::{self, WitnessSetting, Witnessing};
use caseledger::witness::{Log, Witness};
use caseledger_keys::{note, Identity};
use caseledger_ledger::store::{Ledger, Options, SystemClock};
use caseledger_verify::entry::Record;
use caseledger_verify::record::{self, KeyRegistered, KeyText};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ORIGIN: &str = "bench.caseledger.local/witnessed";
const BATCH: usize = 64;

/// A demo ledger with one registered writer, checkpointing every 256 entries.
fn ledger(dir: &std::path::Path) -> (Ledger, Identity) {
    let (node, admin, co_admin, writer) = (
        Identity::from_seed([1; 32]),
        Identity::from_seed([2; 32]),
        Identity::from_seed([3; 32]),
        Identity::from_seed([4; 32]),
    );
    let options = Options {
        demo_ledger: true,
        checkpoint_every_entries: 256,
        checkpoint_every_ms: 60_000,
        ..Options::default()
    };
    let ledger = Ledger::create(
        dir,
        ORIGIN,
        &node,
        &[
            ("admin".into(), admin.public_key()),
            ("co-admin".into(), co_admin.public_key()),
        ],
        Arc::new(SystemClock),
        options,
    )
    .expect("create");
    let registration = KeyRegistered {
        name: "writer".into(),
        public_key: KeyText::from_key(&writer.public_key()),
        administrator: false,
        member: None,
    };
    let co_signed = record::KeyCoSigned::of(&registration).expect("key");
    ledger
        .append(vec![
            Record::sign(
                ORIGIN,
                record::KIND_KEY_REGISTERED,
                serde_json::to_vec(&registration).expect("json"),
                &admin,
            ),
            Record::sign(
                ORIGIN,
                record::KIND_KEY_CO_SIGNED,
                serde_json::to_vec(&co_signed).expect("json"),
                &co_admin,
            ),
        ])
        .expect("register");
    (ledger, writer)
}

fn notes(writer: &Identity, count: usize) -> Vec<Record> {
    (0..count as u64)
        .map(|n| {
            let payload = serde_json::json!({"number": n, "text": "x".repeat(260)});
            Record::sign(ORIGIN, record::KIND_DEMO_NOTE, payload.to_string().into_bytes(), writer)
        })
        .collect()
}

/// Three witnesses on loopback and the node's anchor threads feeding them.
struct Witnesses {
    _runtime: tokio::runtime::Runtime,
    _dirs: Vec<tempfile::TempDir>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    witnessing: Arc<Witnessing>,
}

impl Witnesses {
    fn start(ledger: &Arc<Ledger>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let verifier = note::Verifier::new(ORIGIN, ledger.node_key()).expect("verifier");
        let mut dirs = Vec::new();
        let mut settings = Vec::new();
        for n in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            caseledger::witness::init(dir.path(), &format!("witness-{n}.bench/w")).expect("init");
            let log = Log::parse(&format!("{ORIGIN}={verifier}")).expect("log");
            let witness = Witness::open(dir.path(), vec![log]).expect("open");
            let key = witness.cosigner().witness().to_string();
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("bind");
            let address = listener.local_addr().expect("address");
            runtime.spawn(async move {
                let _ = axum::serve(listener, caseledger::witness::http::router(Arc::new(witness))).await;
            });
            settings.push(WitnessSetting {
                key,
                url: format!("http://{address}"),
                label: None,
            });
            dirs.push(dir);
        }
        let witnessing = Arc::new(Witnessing::configured(&settings, 2).expect("witnesses"));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = witnesses::spawn(
            Arc::clone(ledger),
            Arc::clone(&witnessing),
            // The default `witness_poll_ms`.
            Duration::from_millis(500),
            Duration::from_secs(5),
            Arc::clone(&stop),
        );
        Self {
            _runtime: runtime,
            _dirs: dirs,
            stop,
            threads,
            witnessing,
        }
    }
}

impl Drop for Witnesses {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("witnessed");
    group.throughput(Throughput::Elements(BATCH as u64));
    for witnessed in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ledger, writer) = ledger(dir.path());
        let ledger = Arc::new(ledger);
        let witnesses = witnessed.then(|| Witnesses::start(&ledger));
        let pool = notes(&writer, BATCH * 64);
        let name = if witnessed { "three_witnesses" } else { "no_witness" };
        group.bench_with_input(BenchmarkId::new("durable_append_64", name), &BATCH, |b, &batch| {
            let mut next = 0usize;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = (next % 64) * batch;
                    next += 1;
                    let records = pool[start..start + batch].to_vec();
                    let began = Instant::now();
                    ledger.append(records).expect("append");
                    total += began.elapsed();
                }
                total
            })
        });
        if let Some(witnesses) = &witnesses {
            // The witnesses did cosign meanwhile (the figure is not of idle ones).
            let cosigned: Vec<u64> = witnesses
                .witnessing
                .snapshot()
                .values()
                .map(|s| s.cosigned_size)
                .collect();
            eprintln!(
                "witnesses cosigned up to sizes {cosigned:?} of {} entries",
                ledger.size()
            );
        }
        drop(witnesses);
    }
    group.finish();
}

criterion_group!(witnessed, appends);
criterion_main!(witnessed);
