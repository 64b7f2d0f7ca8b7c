//! A full disk (issue 15, item 3), met by the real service on a real file
//! system: the ledger lives on a tmpfs of its own, shrunk to what it holds
//! while receipts are being written, then grown again as an operator frees
//! space. While the disk is full every write answers 503 "disk full" and
//! stores nothing, `/readyz` is 503 with that reason and
//! `caseledger_writes_stalled_disk_full` is 1; once space is back the
//! writer resumes by itself (no restart), and nothing acknowledged is ever
//! lost: not after the resume, and not after a SIGKILL in the middle of a
//! stall followed by a restart.
//!
//! Mounting needs root, as CI runs; the test fails (it does not skip)
//! where it cannot mount.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use caseledger::court::{CaseRecords, Staff};
use caseledger::service::client::Client;
use caseledger_ledger::store::Ledger;
use caseledger_verify::funds::model::{ReceiptRecorded, KIND_RECEIPT_RECORDED};
use common::Serve;

/// Size of the tmpfs when there is room (RocksDB resumes only once the
/// free space covers its write buffers).
const ROOMY: &str = "1g";

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path) -> Self {
        std::fs::create_dir_all(path).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={ROOMY}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(mounted.success(), "mounting a tmpfs needs root (CI runs as root)");
        Tmpfs(path.to_owned())
    }

    fn resize(&self, size: &str) {
        let remounted = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(remounted.success(), "remount to {size}");
    }

    /// Leaves `room` bytes free beyond what is stored now.
    fn fill_up(&self, room: u64) {
        let used = self.used();
        self.resize(&format!("{}k", (used + room).div_ceil(1024)));
    }

    fn used(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=used", "-B1"])
            .arg(&self.0)
            .output()
            .expect("df");
        let text = String::from_utf8(out.stdout).expect("utf8");
        text.lines().nth(1).expect("a line").trim().parse().expect("bytes")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// `/readyz`: status and body.
fn ready(address: &str) -> (u16, String) {
    let mut answer = agent().get(&format!("{address}/readyz")).call().expect("readyz");
    let status = answer.status().as_u16();
    (status, answer.body_mut().read_to_string().expect("body"))
}

fn metric(address: &str, name: &str) -> String {
    let mut answer = agent().get(&format!("{address}/metrics")).call().expect("metrics");
    let text = answer.body_mut().read_to_string().expect("metrics");
    text.lines()
        .find(|line| line.starts_with(name))
        .unwrap_or_else(|| panic!("{name} in {text}"))
        .to_owned()
}

/// Writes receipts numbered from `*next` until one is refused for want of
/// space (at most `tries`); the acknowledged ones go into `acknowledged`.
/// Returns the refusal's body, if there was one.
fn write_until_full(
    finance: &Client,
    case: &CaseRecords,
    next: &mut u64,
    tries: u64,
    acknowledged: &mut BTreeSet<String>,
) -> Option<serde_json::Value> {
    for _ in 0..tries {
        let reference = format!("BANK-{next}");
        *next += 1;
        let (status, body) = finance.write(&[case.receipt(&reference, 100)]).expect("write");
        match status {
            201 => {
                acknowledged.insert(reference);
            }
            503 => return Some(body),
            other => panic!("{other}: {body}"),
        }
    }
    None
}

/// Waits (a hang guard, not a timing assumption: RocksDB looks at the free
/// space every five seconds) until `/readyz` says ready.
fn until_ready(address: &str) {
    let began = Instant::now();
    loop {
        let (status, body) = ready(address);
        if status == 200 {
            return;
        }
        assert!(began.elapsed() < Duration::from_secs(180), "never resumed: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The bank references of the receipts stored in the ledger at `data`, and
/// its audit clean.
fn stored_receipts(data: &Path) -> Vec<String> {
    let ledger = Ledger::open_read_only(data).expect("open");
    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "{:?}", report.first_finding());
    (0..ledger.size())
        .map(|seq| ledger.entry(seq).expect("entry"))
        .filter(|entry| entry.record.kind == KIND_RECEIPT_RECORDED)
        .map(|entry| {
            serde_json::from_slice::<ReceiptRecorded>(&entry.record.payload)
                .expect("receipt")
                .bank_reference
        })
        .collect()
}

fn assert_full(address: &str, refusal: Option<serde_json::Value>) {
    let refusal = refusal.expect("a write refused once the disk filled");
    assert!(
        refusal["detail"].as_str().is_some_and(|d| d.contains("disk is full")),
        "{refusal}"
    );
    let (status, body) = ready(address);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("disk is full"), "{body}");
    assert_eq!(
        metric(address, "caseledger_writes_stalled_disk_full"),
        "caseledger_writes_stalled_disk_full 1"
    );
    let health = agent().get(&format!("{address}/healthz")).call().expect("healthz");
    assert_eq!(health.status().as_u16(), 200, "the process is alive");
}

/// A court served from a fresh tmpfs, with `reserve` bytes of free space
/// kept; its staff enrolled and one case opened.
fn court_on_tmpfs(dir: &Path, seed: u64, reserve: &str) -> (Tmpfs, PathBuf, Staff, Serve) {
    let disk = Tmpfs::mount(&dir.join("disk"));
    let data = disk.0.join("ledger");
    let staff = Staff::from_seed(seed, "court.example/full");
    common::init_court(dir, &data, &staff);
    let serve = Serve::start(
        &data,
        &[
            ("CASELEDGER_CHECKPOINT_EVERY_ENTRIES", "16"),
            ("CASELEDGER_FREE_SPACE_MIN_BYTES", reserve),
        ],
    );
    common::set_up_staff(&serve.address, &staff);
    let clerk = Client::new(&serve.address, staff.filing_clerk.identity.clone());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    assert_eq!(clerk.write_numbered(&[case.open_request(1)]).expect("open").0, 201);
    (disk, data, staff, serve)
}

const CASE: &str = "(2026)苏02执31号";

/// The service starts again on the ledger and takes writes; after its
/// clean stop every acknowledged receipt is stored once and the audit is
/// clean.
fn nothing_acknowledged_lost(data: &Path, staff: &Staff, acknowledged: &mut BTreeSet<String>, next: &mut u64) {
    let mut serve = Serve::start(data, &[]);
    let (status, body) = ready(&serve.address);
    assert_eq!(status, 200, "{body}");
    let finance = Client::new(&serve.address, staff.finance.identity.clone());
    let case = CaseRecords::new(staff, &staff.officers[0], CASE);
    assert!(write_until_full(&finance, &case, next, 5, acknowledged).is_none());
    assert!(serve.terminate().success());
    let stored = stored_receipts(data);
    let distinct: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(distinct.len(), stored.len(), "no receipt twice");
    let missing: Vec<_> = acknowledged.difference(&distinct).collect();
    assert!(missing.is_empty(), "acknowledged and lost: {missing:?}");
}

/// The disk really full (no reserve kept): RocksDB fails the write, the
/// writer stalls, RocksDB and the writer recover by themselves once the
/// file system has room, and a SIGKILL after that loses nothing.
#[test]
fn a_disk_that_fills_up_stops_writes_cleanly_and_they_resume_once_space_is_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (disk, data, staff, mut serve) = court_on_tmpfs(dir.path(), 31, "0");
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let finance = Client::new(&serve.address, staff.finance.identity.clone());
    let mut acknowledged = BTreeSet::new();
    let mut next = 0;
    assert!(write_until_full(&finance, &case, &mut next, 20, &mut acknowledged).is_none());

    // The disk fills while receipts come in.
    disk.fill_up(96 * 1024);
    let refusal = write_until_full(&finance, &case, &mut next, 5_000, &mut acknowledged);
    assert_full(&serve.address, refusal);
    let (status, _) = finance.write(&[case.receipt("BANK-while-full", 100)]).expect("write");
    assert_eq!(status, 503, "still full");

    // Space is freed: the writer resumes by itself.
    disk.resize(ROOMY);
    until_ready(&serve.address);
    assert_eq!(
        metric(&serve.address, "caseledger_writes_stalled_disk_full"),
        "caseledger_writes_stalled_disk_full 0"
    );
    assert!(write_until_full(&finance, &case, &mut next, 20, &mut acknowledged).is_none());
    serve.kill();
    nothing_acknowledged_lost(&data, &staff, &mut acknowledged, &mut next);
}

/// With the reserve kept (the default), the writer stalls before RocksDB
/// meets a full disk, `/readyz` says so before any write fails, and the
/// private writes beside the ledger keep the reserve too: a SIGKILL in the
/// middle of the stall leaves a log that opens whole, with every
/// acknowledged entry.
#[test]
fn the_free_space_reserve_stalls_writes_before_the_disk_is_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reserve = 8u64 << 20;
    let (disk, data, staff, mut serve) = court_on_tmpfs(dir.path(), 32, &reserve.to_string());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let finance = Client::new(&serve.address, staff.finance.identity.clone());
    let mut acknowledged = BTreeSet::new();
    let mut next = 0;
    assert!(write_until_full(&finance, &case, &mut next, 20, &mut acknowledged).is_none());

    // Below the reserve: /readyz says so before any write fails.
    disk.fill_up(reserve - (1 << 20));
    let (status, body) = ready(&serve.address);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("disk is full"), "{body}");
    let refusal = write_until_full(&finance, &case, &mut next, 5_000, &mut acknowledged);
    assert_full(&serve.address, refusal);
    // Writes beside the ledger (a member's phone on file) keep the reserve
    // too: RocksDB never meets the full disk in the middle of a record.
    let admin = Client::new(&serve.address, staff.administrator.identity.clone());
    let head = &staff.bureau_head;
    let contact = serde_json::json!({"member_id": head.member_id, "phone": head.phone});
    let (status, body) = admin
        .post_json("/v1/contacts/members", &serde_json::to_vec(&contact).expect("json"))
        .expect("post");
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("disk is full")),
        "{body}"
    );
    serve.kill();
    disk.resize(ROOMY);
    nothing_acknowledged_lost(&data, &staff, &mut acknowledged, &mut next);
}

/// The SMS worker while the disk is below the reserve: it cannot record an
/// attempt, so it sends nothing (rather than sending on every pass and
/// recording nothing); once space is back, each notification goes out
/// once.
#[test]
fn the_sms_worker_sends_nothing_it_cannot_record() {
    use caseledger::service::sms::{Deliverer, DeliveryOptions};
    use std::sync::Arc;

    let dir = tempfile::tempdir().expect("tempdir");
    let disk = Tmpfs::mount(&dir.path().join("disk"));
    let (ledger, staff, notification) = common::case_with_a_notification(&disk.0.join("ledger"), 33, CASE);
    let provider = Arc::new(common::SentIds::default());
    let options = DeliveryOptions {
        per_phone_per_minute: 100,
        ..DeliveryOptions::default()
    };
    let mut worker = Deliverer::new(Arc::clone(&ledger), provider.clone(), staff.commitment_key, options);

    disk.fill_up(caseledger_ledger::store::FREE_SPACE_MIN_BYTES - (1 << 20));
    for pass in 0..3 {
        let refused = worker
            .run_once(common::CLOCK_START_MS + pass)
            .expect_err("nothing recorded");
        assert!(format!("{refused:#}").contains("disk is full"), "{refused:#}");
    }
    assert!(provider.ids().is_empty(), "nothing sent that could not be recorded");

    disk.resize(ROOMY);
    assert_eq!(worker.run_once(common::CLOCK_START_MS + 10).expect("pass").sent, 1);
    assert_eq!(worker.run_once(common::CLOCK_START_MS + 20).expect("pass").sent, 0);
    assert_eq!(provider.ids(), vec![notification.id]);
}

/// The kept checkpoint's second copy lives beside the node key, on another
/// file system here: when that one fills up, writes stall too (a smaller
/// reserve, 1 MiB, as the copy needs only kilobytes), and resume once it
/// has room.
#[test]
fn a_full_node_key_folder_stalls_writes_until_it_has_room() {
    use caseledger_ledger::store::{Options, COPY_FOLDER_RESERVE_BYTES};
    let dir = tempfile::tempdir().expect("tempdir");
    let key_disk = Tmpfs::mount(&dir.path().join("keys"));
    let keys = common::Keys::new();
    let node_key = key_disk.0.join("node.key");
    caseledger_keys::files::write_private_key(&node_key, &keys.node).expect("node key");
    let options = Options {
        node_key_path: Some(node_key),
        ..common::options()
    };
    let ledger = Ledger::create(
        &dir.path().join("ledger"),
        common::ORIGIN,
        &keys.node,
        &[
            ("admin".to_owned(), keys.admin.public_key()),
            ("co-admin".to_owned(), keys.co_admin.public_key()),
        ],
        common::clock(),
        options,
    )
    .expect("create");
    ledger
        .append(common::registered(&keys, &keys.writer, "writer", false))
        .expect("writer");
    ledger
        .append_one(common::note(&keys.writer, 1))
        .expect("room everywhere");

    key_disk.fill_up(COPY_FOLDER_RESERVE_BYTES / 2);
    assert!(matches!(
        ledger.space_left(),
        Err(caseledger_ledger::Error::OutOfSpace(_))
    ));
    let refused = ledger.append_one(common::note(&keys.writer, 2));
    assert!(
        matches!(refused, Err(caseledger_ledger::Error::OutOfSpace(_))),
        "{refused:?}"
    );
    assert!(ledger.stalled().is_some());

    key_disk.resize(ROOMY);
    ledger.append_one(common::note(&keys.writer, 3)).expect("resumed");
    assert!(ledger.stalled().is_none());
    ledger.close().expect("close");
}
