//! Helpers shared by the integration tests: a ledger in a temp dir with
//! known keys, signed demo records, and raw RocksDB access for tampering.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use caseledger_keys::Identity;
use caseledger_ledger::store::{Clock, Ledger, Options, COLUMN_FAMILIES, DB_DIR};
use caseledger_verify::entry::Record;
use caseledger_verify::record::{self, DemoNote, KeyRegistered, KeyText};

pub mod edges;
pub mod forgery;
pub mod tsa;
pub mod webdriver;

pub const ORIGIN: &str = "test.caseledger.local/ledger";

/// A clock the test moves by hand.
#[derive(Default)]
pub struct TestClock(pub AtomicU64);

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct Keys {
    pub node: Identity,
    pub admin: Identity,
    pub writer: Identity,
    pub other: Identity,
    /// The second administrator of the genesis entry: co-signs registrations.
    pub co_admin: Identity,
}

impl Keys {
    pub fn new() -> Self {
        Self {
            node: Identity::from_seed([1; 32]),
            admin: Identity::from_seed([2; 32]),
            writer: Identity::from_seed([3; 32]),
            other: Identity::from_seed([4; 32]),
            co_admin: Identity::from_seed([5; 32]),
        }
    }
}

/// 2026-11-21 00:00 China Standard Time: the day after the value date of
/// `CaseRecords::receipt` (2026-11-20), so receipts are booked the day
/// their money arrived.
pub const CLOCK_START_MS: u64 = 1_795_190_400_000;

pub fn clock() -> Arc<TestClock> {
    Arc::new(TestClock(AtomicU64::new(CLOCK_START_MS)))
}

/// Options of the tests' ledgers: small checkpoint intervals; a demo
/// ledger (so that demo notes are admitted) when made by [`create`], not
/// when made by [`court`].
pub fn options() -> Options {
    Options {
        checkpoint_every_entries: 16,
        checkpoint_every_ms: 60_000,
        demo_ledger: true,
        ..Options::default()
    }
}

/// The size of a ledger made by [`create`]: its first free seq.
pub const CREATED: u64 = 3;

/// Creates a ledger with `keys.admin` and `keys.co_admin` as administrators
/// and `keys.writer` registered and co-signed (entries 0 to 2).
pub fn create(dir: &Path, keys: &Keys) -> Ledger {
    let ledger = Ledger::create(
        dir,
        ORIGIN,
        &keys.node,
        &[
            ("admin".to_owned(), keys.admin.public_key()),
            ("co-admin".to_owned(), keys.co_admin.public_key()),
        ],
        clock(),
        options(),
    )
    .expect("create ledger");
    ledger
        .append(registered(keys, &keys.writer, "writer", false))
        .expect("register writer");
    ledger
}

/// `key` registered by `keys.admin` and co-signed by `keys.co_admin`.
pub fn registered(keys: &Keys, key: &Identity, name: &str, administrator: bool) -> Vec<Record> {
    vec![
        register(&keys.admin, key, name, administrator),
        co_sign(&keys.co_admin, key, name, administrator),
    ]
}

/// `co_signer`'s co-signature of the registration of non-member `key`.
pub fn co_sign(co_signer: &Identity, key: &Identity, name: &str, administrator: bool) -> Record {
    let payload = caseledger_verify::record::KeyCoSigned {
        key_id: key.public_key().key_id().to_hex(),
        name: name.to_owned(),
        administrator,
        member_id: None,
        role: None,
        phone_masked: None,
    };
    Record::sign(
        ORIGIN,
        record::KIND_KEY_CO_SIGNED,
        serde_json::to_vec(&payload).expect("json"),
        co_signer,
    )
}

pub fn register(admin: &Identity, key: &Identity, name: &str, administrator: bool) -> Record {
    let payload = KeyRegistered {
        name: name.to_owned(),
        public_key: KeyText::from_key(&key.public_key()),
        administrator,
        member: None,
    };
    Record::sign(
        ORIGIN,
        record::KIND_KEY_REGISTERED,
        serde_json::to_vec(&payload).expect("json"),
        admin,
    )
}

pub fn note(writer: &Identity, number: u64) -> Record {
    let payload = DemoNote {
        number,
        text: format!("note number {number} with some words to make it longer than a few bytes"),
    };
    Record::sign(
        ORIGIN,
        record::KIND_DEMO_NOTE,
        serde_json::to_vec(&payload).expect("json"),
        writer,
    )
}

/// Appends `count` notes signed by `writer`, one append per note.
pub fn fill(ledger: &Ledger, writer: &Identity, count: u64) {
    for n in 0..count {
        ledger.append_one(note(writer, n)).expect("append note");
    }
}

/// Runs `work(t)` on `threads` threads at once and returns what each gave,
/// in thread order.
pub fn concurrently<T: Send>(threads: u64, work: impl Fn(u64) -> T + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = (0..threads).map(|t| scope.spawn(move || work(t))).collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    })
}

/// Opens the ledger's RocksDB directly, as an attacker with disk access would.
pub fn raw_db(dir: &Path) -> rocksdb::DB {
    let mut options = rocksdb::Options::default();
    options.create_if_missing(false);
    rocksdb::DB::open_cf(&options, dir.join(DB_DIR), COLUMN_FAMILIES).expect("open raw db")
}

pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// A court ledger: genesis with the staff administrator, every member
/// enrolled, the example policy in force.
pub fn court(dir: &Path, seed: u64) -> (Ledger, caseledger::court::Staff) {
    court_with_clock(dir, seed, clock())
}

/// [`court`] with the test's own clock.
pub fn court_with_clock(dir: &Path, seed: u64, clock: Arc<TestClock>) -> (Ledger, caseledger::court::Staff) {
    let staff = caseledger::court::Staff::from_seed(seed, ORIGIN);
    let ledger = Ledger::create(
        dir,
        ORIGIN,
        &Identity::from_seed([1; 32]),
        &staff.genesis_administrators(),
        clock,
        Options {
            demo_ledger: false,
            ..options()
        },
    )
    .expect("create court ledger");
    ledger
        .append(staff.setup_records())
        .expect("enrol staff and set policy");
    (ledger, staff)
}

/// A court ledger (staff from `seed`) with case `case_number` opened for
/// `applicants` applicants, account "acct-1" (applicant 1) confirmed, and
/// `received_fen` received under bank reference "BANK-1".
pub fn court_with_case(
    dir: &Path,
    seed: u64,
    case_number: &str,
    applicants: u32,
    received_fen: u64,
) -> (Ledger, caseledger::court::Staff) {
    let (ledger, staff) = court(dir, seed);
    let case = caseledger::court::CaseRecords::new(&staff, &staff.officers[0], case_number);
    ledger
        .append(
            [
                case.open(applicants),
                case.account("acct-1", 1, "6222000011110001"),
                vec![case.confirm("acct-1"), case.receipt("BANK-1", received_fen)],
            ]
            .concat(),
        )
        .expect("case with money");
    (ledger, staff)
}

/// Appends one record and returns the rule it broke, if it was refused by one.
pub fn refused_rule(ledger: &Ledger, record: Record) -> String {
    match ledger.append_one(record) {
        Err(caseledger_ledger::Error::Rejected { source, .. }) => source.check().to_owned(),
        other => panic!("expected a rule refusal, got {other:?}"),
    }
}

/// Appends `record` directly into RocksDB behind the writer's back, as a
/// compromised server would (it holds the node key, seed 1 in the tests):
/// correctly chained, Merkle nodes, a checkpoint signed by the node key and
/// the head updated, but no rule checked and no derived state changed. The
/// ledger must be closed. Returns the seq it was written at.
pub fn force_append(dir: &Path, record: Record) -> u64 {
    use caseledger_ledger::store::Head;
    use caseledger_verify::entry::Entry;
    let db = raw_db(dir);
    let meta = db.cf_handle("meta").expect("meta");
    let head: Head = serde_json::from_slice(&db.get_cf(meta, b"head").expect("get").expect("head")).expect("json");
    let mut frontier = head.frontier().expect("frontier");
    let entry = Entry {
        seq: head.size,
        timestamp_ms: head.last_timestamp_ms,
        prev_hash: head.last_hash().expect("hash"),
        record,
    };
    let bytes = entry.encode();
    let leaf = caseledger_verify::hash::leaf_hash(&bytes);
    db.put_cf(db.cf_handle("entries").expect("cf"), seq_key(entry.seq), &bytes)
        .expect("put entry");
    let disclosures = db.cf_handle("disclosures").expect("cf");
    if !entry.record.disclosures.is_empty() {
        db.put_cf(
            disclosures,
            seq_key(entry.seq),
            serde_json::to_vec(&entry.record.disclosures).expect("json"),
        )
        .expect("put disclosures");
    }
    let nodes = db.cf_handle("nodes").expect("cf");
    for (level, index, hash) in frontier.push(leaf) {
        let mut key = (((index + 1) << level) - 1).to_be_bytes().to_vec();
        key.push(level as u8);
        db.put_cf(nodes, key, hash).expect("put node");
    }
    let ledger_meta: serde_json::Value =
        serde_json::from_slice(&db.get_cf(meta, b"ledger").expect("get").expect("meta")).expect("json");
    let origin = ledger_meta["origin"].as_str().expect("origin");
    // The insider's checkpoint commits to the thread map the entries
    // produce (as the node's replay computes it), not the stored one.
    let mut auditor = caseledger_verify::audit::Auditor::new(Identity::from_seed([1; 32]).public_key());
    for item in db.iterator_cf(db.cf_handle("entries").expect("cf"), rocksdb::IteratorMode::Start) {
        let (key, value) = item.expect("read");
        let disclosed: Vec<String> = db
            .get_cf(disclosures, &key)
            .expect("get")
            .map(|bytes| serde_json::from_slice(&bytes).expect("json"))
            .unwrap_or_default();
        auditor.push_disclosed_entry(
            u64::from_be_bytes(key[..8].try_into().expect("seq key")),
            &value,
            disclosed,
        );
    }
    let threads = auditor.threads_root();
    let checkpoint = caseledger_verify::checkpoint::Checkpoint {
        origin: origin.to_owned(),
        size: frontier.size(),
        root: frontier.root(),
        threads,
    };
    let signer = caseledger_keys::note::Signer::new(origin, Identity::from_seed([1; 32])).expect("signer");
    db.put_cf(
        db.cf_handle("checkpoints").expect("cf"),
        seq_key(frontier.size()),
        checkpoint.sign(&signer).expect("sign"),
    )
    .expect("put checkpoint");
    let new_head = Head::new(&frontier, &leaf, head.last_timestamp_ms, frontier.size());
    db.put_cf(meta, b"head", serde_json::to_vec(&new_head).expect("json"))
        .expect("put head");
    entry.seq
}

/// Appends records in one batch and returns the rule that refused it.
pub fn refused_batch(ledger: &Ledger, records: Vec<Record>) -> String {
    match ledger.append(records) {
        Err(caseledger_ledger::Error::Rejected { source, .. }) => source.check().to_owned(),
        other => panic!("expected a rule refusal, got {other:?}"),
    }
}

/// The service's state over `ledger` (256 KiB bodies, 5 s timeout), with
/// the staff's commitment key.
pub fn service_state(ledger: Ledger, staff: &caseledger::court::Staff) -> caseledger::service::AppState {
    caseledger::service::AppState::new(Arc::new(ledger), 256 * 1024, std::time::Duration::from_secs(5))
        .with_commitment_key(staff.commitment_key)
}

/// Audits a closed ledger folder read-only.
pub fn audit(dir: &Path) -> caseledger_verify::audit::AuditReport {
    Ledger::open_read_only(dir)
        .expect("open read-only")
        .audit(None, 2, &|_| {})
        .expect("audit runs")
}

/// A court ledger (node key from seed 1) whose policy v2 requires SMS codes
/// for every approval step and account confirmation.
pub fn court_requiring_sms(dir: &Path, seed: u64, clock: Arc<TestClock>) -> (Ledger, caseledger::court::Staff) {
    let (ledger, staff) = court_with_clock(dir, seed, clock);
    let mut policy = caseledger::court::example_policy("policy-2", 2);
    policy.sms_confirmation_required = true;
    ledger
        .append(staff.policy_records(&policy))
        .expect("policy requiring SMS");
    (ledger, staff)
}

/// An SMS provider that keeps every (phone, text) it is given.
#[derive(Default)]
pub struct Phone(pub std::sync::Mutex<Vec<(String, String)>>);

impl caseledger::service::sms::SmsProvider for Phone {
    fn send(&self, message: &caseledger::service::sms::Message) -> Result<String, caseledger::service::sms::SendError> {
        self.0
            .lock()
            .expect("lock")
            .push((message.to.clone(), message.text.clone()));
        Ok(message.id.clone())
    }
}

/// One request through the router (`oneshot`): status and JSON body
/// (`Null` when the body is not JSON).
pub async fn send(
    state: &caseledger::service::AppState,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> (axum::http::StatusCode, serde_json::Value) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let mut request = axum::http::Request::builder().method(method).uri(target);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = caseledger::service::app(state.clone())
        .oneshot(request.body(axum::body::Body::from(body)).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// A runtime like the service's on this machine: 2 workers, with timers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime")
}

/// Polls `future` once, as a runtime does when a task first runs.
pub fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::pin::Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

/// Runs `future` to completion, failing the test instead of hanging if it
/// is never answered.
pub fn wait<F: Future>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output {
    runtime
        .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(20), future).await })
        .expect("answered within 20 s")
}

/// `signer`'s signature of a request `message`, for `Ledger::append_authorized`.
pub fn authorization(signer: &Identity, message: &[u8]) -> caseledger_ledger::store::Authorization {
    caseledger_ledger::store::Authorization {
        signer: signer.public_key().key_id(),
        message: message.to_vec(),
        signature: signer.sign_raw(message),
    }
}

/// A `caseledger serve` child on 127.0.0.1 (logging at `warn`, with
/// `envs`), killed if the test ends without stopping it.
pub struct Serve {
    pub child: std::process::Child,
    /// `http://127.0.0.1:<port>`, as printed by `serve`.
    pub address: String,
    /// The lines it prints after its address (SMS on the console provider).
    pub lines: std::sync::mpsc::Receiver<String>,
    /// What it logged on stderr (printed if the test fails).
    pub log: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Serve {
    pub fn start(data: &Path, envs: &[(&str, &str)]) -> Self {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("CASELEDGER_LOG", "warn")
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            use std::io::Read as _;
            let mut buffer = [0u8; 8192];
            while let Ok(n @ 1..) = stderr.read(&mut buffer) {
                kept.lock().expect("log").extend_from_slice(&buffer[..n]);
            }
        });
        // Keep draining stdout so the child never blocks on a full pipe.
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let mut serve = Self {
            child,
            address: String::new(),
            lines,
            log,
        };
        serve.address = loop {
            let line = serve
                .lines
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("serve printed its address");
            if let Some(rest) = line.strip_prefix("caseledger listening on ") {
                break rest.trim().to_owned();
            }
        };
        serve
    }

    /// SIGTERM (graceful shutdown); returns how it exited.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        self.child.wait().expect("wait")
    }

    /// SIGTERM, and the exit status if it exits within `limit` (a bound on
    /// a hang, not a timing: the test fails rather than waits for ever).
    #[allow(dead_code)]
    pub fn terminate_within(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL, and the child reaped.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Serve {
    /// What it logged so far.
    #[allow(dead_code)]
    pub fn logged(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().expect("log")).into_owned()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- serve's log ---\n{}", self.logged());
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The live audit of `ledger` passes and covers every entry.
pub fn audit_ok(ledger: &Ledger) {
    let report = ledger.audit(None, 2, &|_| {}).expect("audit runs");
    assert!(report.ok, "audit failed: {:?}", report.first_error);
    assert_eq!(report.entries, ledger.size());
}

/// `record` with a signature its signer made over other bytes.
pub fn forged(mut record: Record, signer: &Identity) -> Record {
    record.signature = Record::sign(ORIGIN, record.kind, b"other bytes".to_vec(), signer).signature;
    record
}

/// Pauses the writer right after a speculative write (the derived-state
/// gate held) until the test lets it go on to the verdict. A test that
/// fails while the writer is paused must not leave it waiting (the
/// ledger's drop would wait for the writer for ever): hold
/// [`Pause::release_on_drop`]'s guard, declared after the ledger, so that
/// it is dropped first and lets the writer go.
pub struct Pause {
    state: Arc<PauseState>,
}

struct PauseState {
    step: std::sync::Mutex<PauseStep>,
    changed: std::sync::Condvar,
    remaining: AtomicU64,
}

#[derive(Default)]
struct PauseStep {
    paused: bool,
    resumed: bool,
    /// Let go for good: no more pauses, none waits.
    released: bool,
}

/// Lets the writer go for good when dropped (see [`Pause`]).
pub struct PauseRelease(Arc<PauseState>);

impl Drop for PauseRelease {
    fn drop(&mut self) {
        let mut step = self.0.step.lock().unwrap_or_else(|p| p.into_inner());
        step.released = true;
        self.0.changed.notify_all();
    }
}

/// Waits on a pause's condition; a bound that only a hang reaches (not a
/// loaded machine) turns a hang into a failure.
fn wait_for(state: &PauseState, what: &str, done: impl Fn(&PauseStep) -> bool) {
    let bound = std::time::Duration::from_secs(600);
    let step = state.step.lock().unwrap_or_else(|p| p.into_inner());
    let (step, timeout) = state
        .changed
        .wait_timeout_while(step, bound, |step| !done(step) && !step.released)
        .unwrap_or_else(|p| p.into_inner());
    drop(step);
    assert!(!timeout.timed_out(), "{what}: nothing happened in ten minutes");
}

impl Pause {
    /// Pauses the first `times` speculative writes.
    pub fn new(times: u64) -> Self {
        Self {
            state: Arc::new(PauseState {
                step: std::sync::Mutex::new(PauseStep::default()),
                changed: std::sync::Condvar::new(),
                remaining: AtomicU64::new(times),
            }),
        }
    }

    /// Ledger options with this pause as the speculative-write hook.
    pub fn options(&self) -> Options {
        let state = Arc::clone(&self.state);
        Options {
            after_speculative_write: Some(caseledger_ledger::store::TestHook(Arc::new(move || {
                let pausing = state
                    .remaining
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if pausing {
                    {
                        let mut step = state.step.lock().unwrap_or_else(|p| p.into_inner());
                        step.paused = true;
                        state.changed.notify_all();
                    }
                    wait_for(&state, "the test never resumed the writer", |step| step.resumed);
                    let mut step = state.step.lock().unwrap_or_else(|p| p.into_inner());
                    step.paused = false;
                    step.resumed = false;
                }
                false
            }))),
            ..options()
        }
    }

    /// A guard that lets the writer go for good when dropped.
    pub fn release_on_drop(&self) -> PauseRelease {
        PauseRelease(Arc::clone(&self.state))
    }

    /// Waits until the writer has paused.
    pub fn wait_paused(&self) {
        wait_for(&self.state, "the writer never paused", |step| step.paused);
    }

    /// Lets the paused writer go on.
    pub fn resume(&self) {
        let mut step = self.state.step.lock().unwrap_or_else(|p| p.into_inner());
        step.resumed = true;
        self.state.changed.notify_all();
    }
}

/// A signed `POST /v1/records` of records with the numbers they mask in
/// clear (empty for records without numbers), by `signer`.
pub async fn write_numbered(
    state: &caseledger::service::AppState,
    signer: &Identity,
    records: &[(Record, Vec<String>)],
) -> (axum::http::StatusCode, serde_json::Value) {
    let body = caseledger::service::client::write_body_numbered(records);
    let headers = caseledger::service::client::sign_request(
        signer,
        caseledger::service::DEFAULT_AUTHORITY,
        "POST",
        "/v1/records",
        &body,
    );
    send(state, "POST", "/v1/records", &headers, body).await
}

/// Opens `case` for `applicants` applicants through the service, as the
/// filing clerk does (their phones in clear, kept as contacts); asserts it
/// was written.
pub async fn open_case(
    state: &caseledger::service::AppState,
    case: &caseledger::court::CaseRecords<'_>,
    applicants: u32,
) {
    let (status, body) = write_numbered(
        state,
        &case.staff.filing_clerk.identity,
        &[case.open_request(applicants)],
    )
    .await;
    assert_eq!(
        status,
        axum::http::StatusCode::CREATED,
        "opening {}: {body}",
        case.case_number
    );
}

/// Registers account `account_id` of applicant `applicant` with `number`
/// through the service, as the case's officer does; the response.
pub async fn register_account(
    state: &caseledger::service::AppState,
    case: &caseledger::court::CaseRecords<'_>,
    account_id: &str,
    applicant: u32,
    number: &str,
) -> (axum::http::StatusCode, serde_json::Value) {
    write_numbered(
        state,
        &case.officer.identity,
        &[case.account_request(account_id, applicant, number)],
    )
    .await
}

/// `caseledger init` of a court folder `data` whose genesis names `staff`'s
/// two administrators (their public keys written into `dir`).
pub fn init_court(dir: &Path, data: &Path, staff: &caseledger::court::Staff) {
    let first = dir.join("admin.pub");
    let second = dir.join("admin-2.pub");
    caseledger_keys::files::write_public_key(&first, &staff.administrator.identity.public_key()).expect("key");
    caseledger_keys::files::write_public_key(&second, &staff.co_administrator.identity.public_key()).expect("key");
    let init = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["init", "--origin", &staff.origin, "--data"])
        .arg(data)
        .arg("--admin-key")
        .arg(&first)
        .arg("--second-admin-key")
        .arg(&second)
        .output()
        .expect("init");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
}

/// `staff` enrolled and the example policy put in force through the
/// service at `address`, each request sent by whom it belongs to: the
/// administrator's enrolments and policy proposal, the second
/// administrator's co-signatures, the court leader's policy co-signature.
pub fn set_up_staff(address: &str, staff: &caseledger::court::Staff) {
    use caseledger::service::client::Client;
    let setup = staff.setup_requests();
    let (status, body) = Client::new(address, staff.administrator.identity.clone())
        .write_numbered(&setup.administrator)
        .expect("enrolments");
    assert_eq!(status, 201, "{body}");
    let (status, body) = Client::new(address, staff.co_administrator.identity.clone())
        .write_numbered(&setup.co_administrator)
        .expect("co-signatures");
    assert_eq!(status, 201, "{body}");
    let (status, body) = Client::new(address, staff.court_leader.identity.clone())
        .write(&[setup.court_leader])
        .expect("policy in force");
    assert_eq!(status, 201, "{body}");
}

/// Starts `serve` on `data` and waits for it to exit, with its exit status
/// and standard error; a hang guard kills it after a minute (it must
/// refuse to start on the ledger in `data`, not serve it).
pub fn serve_exit(data: &Path) -> (std::process::ExitStatus, String) {
    serve_exit_with(data, &[])
}

/// [`serve_exit`] with `envs` set.
pub fn serve_exit_with(data: &Path, envs: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    use std::time::{Duration, Instant};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("CASELEDGER_LOG", "info")
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start serve");
    let began = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if began.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("serve started on a damaged ledger instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("stderr");
    (status, stderr)
}

/// An SMS provider that takes every message and records its id.
#[derive(Default)]
pub struct SentIds(pub std::sync::Mutex<Vec<String>>);

impl SentIds {
    pub fn ids(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

impl caseledger::service::sms::SmsProvider for SentIds {
    fn send(&self, message: &caseledger::service::sms::Message) -> Result<String, caseledger::service::sms::SendError> {
        self.0.lock().expect("lock").push(message.id.clone());
        Ok(format!("provider-{}", message.id))
    }
}

/// The court of `seed` in `dir` with case `case_number` opened and one
/// receipt of ¥1,234.56: one notification to applicant 1, whose phone is
/// on file.
pub fn case_with_a_notification(
    dir: &Path,
    seed: u64,
    case_number: &str,
) -> (
    Arc<Ledger>,
    caseledger::court::Staff,
    caseledger_verify::funds::notify::Notification,
) {
    use caseledger::court::CaseRecords;
    let (ledger, staff) = court(dir, seed);
    let case = CaseRecords::new(&staff, &staff.officers[0], case_number);
    ledger
        .append([case.open(1), vec![case.receipt("BANK-1", 123_456)]].concat())
        .expect("case and receipt");
    let (_, first) = ledger.outbox_from("", 1).expect("outbox").remove(0);
    caseledger::service::sms::put_contact(&ledger, &first.recipient, &CaseRecords::applicant_phone(1))
        .expect("contact");
    (Arc::new(ledger), staff, first)
}

/// A Python venv with `requirement` (a pinned PyPI package) installed, made
/// once per build folder under `CARGO_TARGET_TMPDIR` as `name`; returns its
/// folder.
pub fn python_venv(name: &str, requirement: &str) -> std::path::PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let marker = venv.join(".installed");
    if !marker.exists() {
        let made = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv");
        assert!(made.success(), "making the venv {name}");
        let installed = std::process::Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", requirement])
            .status()
            .expect("pip");
        assert!(installed.success(), "installing {requirement}");
        std::fs::write(&marker, requirement).expect("marker");
    }
    venv
}
