//! The `caseledger` binary end to end: demo, verify (text and JSON, exit
//! codes), proof and verify-proof, the single-writer lock across processes,
//! and OpenSSL checking our signatures with our exported public key.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use caseledger_verify::entry::Entry;
use serde_json::Value;

fn caseledger(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(args)
        .output()
        .expect("run caseledger")
}

fn demo(dir: &Path, entries: u64) -> Output {
    let out = caseledger(&[
        "demo",
        "--data",
        dir.to_str().expect("utf8"),
        "--entries",
        &entries.to_string(),
        "--seed",
        "7",
    ]);
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn verify_json(dir: &Path) -> (i32, Value) {
    let out = caseledger(&["verify", "--data", dir.to_str().expect("utf8"), "--json"]);
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(stdout.trim().lines().count(), 1, "exactly one JSON object: {stdout}");
    (
        out.status.code().expect("exit code"),
        serde_json::from_str(&stdout).expect("json"),
    )
}

#[test]
fn demo_then_verify_reports_an_intact_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    demo(dir.path(), 300);
    demo(dir.path(), 50); // the same seed adds to the same ledger
    let (code, report) = verify_json(dir.path());
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    // genesis + 4 writer registrations, each co-signed, + 350 notes
    assert_eq!(report["entries"], 359);
    assert!(report["checkpoints"].as_u64().expect("number") >= 2);
    assert_eq!(report["first_error"], Value::Null);
    let text = caseledger(&["verify", "--data", dir.path().to_str().expect("utf8")]);
    assert!(String::from_utf8_lossy(&text.stdout).starts_with("OK: 359 entries"));
}

#[test]
fn verify_exits_1_on_tampering_and_2_on_io_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    demo(dir.path(), 100);
    {
        let db = common::raw_db(dir.path());
        let cf = db.cf_handle("entries").expect("cf");
        let mut bytes = db.get_cf(cf, common::seq_key(60)).expect("get").expect("entry");
        bytes[120] ^= 0x40;
        db.put_cf(cf, common::seq_key(60), bytes).expect("put");
    }
    let (code, report) = verify_json(dir.path());
    assert_eq!(code, 1);
    assert_eq!(report["ok"], false);
    assert_eq!(report["first_error"]["seq"], 60);
    assert!(report["first_error"]["check"].is_string());

    let missing = caseledger(&["verify", "--data", "/nonexistent/ledger", "--json"]);
    assert_eq!(missing.status.code(), Some(2));
    let usage = caseledger(&["verify"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn proof_bundle_verifies_offline_and_fails_when_altered() {
    let dir = tempfile::tempdir().expect("tempdir");
    demo(dir.path(), 40);
    let data = dir.path().to_str().expect("utf8");
    let out = caseledger(&["proof", "--data", data, "--seq", "17"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bundle_path = dir.path().join("bundle.json");
    std::fs::write(&bundle_path, &out.stdout).expect("write bundle");
    let key = dir.path().join("node.pub");
    let ok = caseledger(&[
        "verify-proof",
        bundle_path.to_str().expect("utf8"),
        "--key",
        key.to_str().expect("utf8"),
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("entry 17"));

    let mut bundle: Value = serde_json::from_slice(&out.stdout).expect("json");
    bundle["leaf_index"] = 18.into();
    std::fs::write(&bundle_path, serde_json::to_vec(&bundle).expect("json")).expect("write");
    let bad = caseledger(&[
        "verify-proof",
        bundle_path.to_str().expect("utf8"),
        "--key",
        key.to_str().expect("utf8"),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let no_key = caseledger(&[
        "verify-proof",
        bundle_path.to_str().expect("utf8"),
        "--key",
        "/nonexistent",
    ]);
    assert_eq!(no_key.status.code(), Some(2));
}

#[test]
fn a_second_process_cannot_open_the_ledger_for_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    demo(dir.path(), 5);
    let holder = caseledger_ledger::store::Ledger::open(
        dir.path(),
        std::sync::Arc::new(caseledger_ledger::store::SystemClock),
        Default::default(),
    )
    .expect("first writer");
    let out = caseledger(&[
        "demo",
        "--data",
        dir.path().to_str().expect("utf8"),
        "--entries",
        "1",
        "--seed",
        "7",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already open for writing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Readers are not blocked by the writer.
    let (code, _) = verify_json(dir.path());
    assert_eq!(code, 0);
    drop(holder);
}

#[test]
fn openssl_verifies_a_record_signature_with_our_pem_key() {
    if Command::new("openssl").arg("version").output().is_err() {
        panic!("openssl is required for this test (.ci/run installs it)");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    demo(dir.path(), 1);
    // Entry 0, the genesis, is signed by the node key exported as node.pub.
    let out = caseledger(&["proof", "--data", dir.path().to_str().expect("utf8"), "--seq", "0"]);
    let bundle: Value = serde_json::from_slice(&out.stdout).expect("json");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(bundle["entry"].as_str().expect("entry"))
        .expect("base64");
    let entry = Entry::decode(&bytes).expect("decode");
    // The record signature covers the ledger's origin, the checkpoint's first line.
    let origin = bundle["checkpoint"]
        .as_str()
        .and_then(|note| note.lines().next())
        .expect("origin")
        .to_owned();
    let message = dir.path().join("message.bin");
    let signature = dir.path().join("signature.bin");
    std::fs::write(&message, Entry::signed_message_of(&origin, &bytes)).expect("write");
    std::fs::write(&signature, entry.record.signature.to_bytes()).expect("write");
    let check = |msg: &Path| {
        Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
            .arg(dir.path().join("node.pub"))
            .arg("-in")
            .arg(msg)
            .arg("-sigfile")
            .arg(&signature)
            .output()
            .expect("openssl")
    };
    let good = check(&message);
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stdout));
    let altered = dir.path().join("altered.bin");
    let mut changed = Entry::signed_message_of(&origin, &bytes);
    changed[40] ^= 1;
    std::fs::write(&altered, changed).expect("write");
    assert!(
        !check(&altered).status.success(),
        "openssl must reject an altered message"
    );
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_can_read() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("officer.key");
    let out = caseledger(&["keygen", "--out", path.to_str().expect("utf8")]);
    assert!(out.status.success());
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(std::fs::read_to_string(dir.path().join("officer.key.pub"))
        .expect("pub")
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let again = caseledger(&["keygen", "--out", path.to_str().expect("utf8")]);
    assert_eq!(again.status.code(), Some(2), "an existing key is never overwritten");
}

#[test]
fn demo_cases_write_a_rule_checked_history_that_verify_replays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8");
    let out = caseledger(&["demo", "--data", data, "--cases", "40", "--seed", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = caseledger(&["demo", "--data", data, "--cases", "5", "--entries", "7", "--seed", "3"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let (code, report) = verify_json(dir.path());
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["rules_ok"], true);
    assert_eq!(report["cases"], 45);
    assert_eq!(report["violations"], serde_json::json!([]));
    assert!(
        report["sms_confirmations_verified"].as_u64().expect("count") > 20,
        "every demo step is confirmed by SMS: {report}"
    );
    assert_eq!(
        report["account_confirmations_verified"], 45,
        "every demo account is confirmed by the applicant's code: {report}"
    );
    let text = caseledger(&["verify", "--data", data]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!(
            "{} approval steps, 45 account confirmations",
            report["sms_confirmations_verified"]
        )),
        "{text}"
    );
    let none = caseledger(&["demo", "--data", data]);
    assert_eq!(none.status.code(), Some(2), "demo needs --entries or --cases");
}

/// The longest run of consecutive ASCII digits in `text`.
fn longest_digit_run(text: &str) -> usize {
    text.split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

#[test]
fn report_prints_a_case_as_a_person_reads_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8");
    let out = caseledger(&["demo", "--data", data, "--cases", "10", "--seed", "7"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Case 1 is paid in full through its chain; case 8 is rejected at step 1.
    let ledger = caseledger_ledger::store::Ledger::open_read_only(dir.path()).expect("open");
    let view = ledger.case_view("(2025)苏02执1号", 0).expect("read").expect("case 1");
    drop(ledger);
    let out = caseledger(&["report", "--data", data, "--case", "(2025)苏02执1号"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf8");
    let balance = format!(
        "Balance: {} available, {} reserved",
        caseledger_verify::bundle::yuan(view.case.available_fen),
        caseledger_verify::bundle::yuan(view.case.reserved_fen)
    );
    assert!(text.contains(&balance), "{balance} in\n{text}");
    assert!(text.contains(&format!(
        "{} paid out",
        caseledger_verify::bundle::yuan(view.case.paid_fen)
    )));
    for expected in [
        "account A1 registered by officer-",
        "account A1 confirmed by the applicant with the code sent to their phone",
        "step 1 of D1 approved by",
        "confirmed with the code sent to their phone",
        "D1 paid ¥",
        ": paid",
        "****",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from\n{text}");
    }
    // History: the case's entries only, one line each.
    let history = text.split("History (").nth(1).expect("a history");
    assert!(!history.contains("D2") && !history.contains("A2 "), "{history}");
    // No full phone or account number anywhere (they are 11 and 19 digits).
    assert!(longest_digit_run(&text) < 9, "{text}");

    let out = caseledger(&["report", "--data", data, "--case", "(2025)苏02执8号"]);
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(text.contains("REJECTED") && text.contains(": rejected"), "{text}");

    let out = caseledger(&["report", "--data", data, "--case", "(2025)苏02执99号"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no case (2025)苏02执99号"));
}

/// Everything in a data folder is its owner's only (issue 14 item 13): the
/// folder and RocksDB's folders 0700, every file 0600 or tighter, keys
/// included, whatever the caller's umask; a folder made looser before is
/// tightened by `init`.
#[test]
fn a_data_folder_and_its_files_are_its_owners_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let parent = tempfile::tempdir().expect("tempdir");
    let data = parent.path().join("court");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let output = caseledger(&[
        "init",
        "--data",
        data.to_str().expect("utf8"),
        "--origin",
        "court.example/ledger",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let demo_dir = parent.path().join("demo");
    assert!(demo(&demo_dir, 50).status.success());
    let mut seen = 0;
    let mut stack = vec![data, demo_dir];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", path.display());
        seen += 1;
        if meta.is_dir() {
            stack.extend(
                std::fs::read_dir(&path)
                    .expect("read dir")
                    .map(|e| e.expect("entry").path()),
            );
        }
    }
    assert!(seen > 10, "RocksDB's files were looked at too ({seen})");
}

/// The node and commitment keys can live outside the data folder
/// (`node_key_file`, `commitment_key_file`): a first start writes them
/// there (0600) and none into the folder; a restart reads them from there;
/// a restart without them cannot sign and does not start.
#[test]
fn the_keys_can_live_outside_the_data_folder() {
    use std::os::unix::fs::PermissionsExt as _;
    let parent = tempfile::tempdir().expect("tempdir");
    let data = parent.path().join("court");
    let keys = parent.path().join("keys");
    std::fs::create_dir(&keys).expect("mkdir");
    let node_key = keys.join("node.key");
    let commitment_key = keys.join("commitment.key");
    let envs = [
        ("CASELEDGER_NODE_KEY_FILE", node_key.to_str().expect("utf8")),
        ("CASELEDGER_COMMITMENT_KEY_FILE", commitment_key.to_str().expect("utf8")),
    ];
    let mut serve = common::Serve::start(&data, &envs);
    assert!(serve.terminate().success());
    for key in [&node_key, &commitment_key] {
        let mode = std::fs::metadata(key).expect("key written").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    for name in ["node.key", "commitment.key"] {
        assert!(!data.join(name).exists(), "{name} in the data folder");
    }
    let before = std::fs::read(&commitment_key).expect("read");
    let mut serve = common::Serve::start(&data, &envs);
    assert!(
        serve.terminate().success(),
        "a restart reads the keys from where they are"
    );
    assert_eq!(
        std::fs::read(&commitment_key).expect("read"),
        before,
        "the same commitment key"
    );
    // Without the node key the service does not start (and makes no new one).
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("CASELEDGER_LOG", "warn")
        .output()
        .expect("serve");
    assert!(!output.status.success(), "started without its node key");
    assert!(!data.join("node.key").exists());
    // Nor without its commitment key (never a new one for an old ledger).
    std::fs::remove_file(&commitment_key).expect("remove");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("CASELEDGER_LOG", "warn")
        .env("CASELEDGER_NODE_KEY_FILE", &node_key)
        .env("CASELEDGER_COMMITMENT_KEY_FILE", &commitment_key)
        .output()
        .expect("serve");
    assert!(!output.status.success(), "started without its commitment key");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("commitment key"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!commitment_key.exists(), "no new commitment key made");
}

/// `verify --against FILE` checks the ledger against a checkpoint saved
/// earlier: a later ledger that extends it passes; a ledger with other
/// entries at that size (`checkpoint_root`) or fewer of them
/// (`checkpoint_lost`) fails, and says which.
#[test]
fn verify_against_a_checkpoint_saved_earlier() {
    let parent = tempfile::tempdir().expect("tempdir");
    let first = parent.path().join("first");
    demo(&first, 50);
    let saved = parent.path().join("saved-checkpoint");
    std::fs::copy(
        first.join(caseledger_ledger::store::signed_checkpoint::LATEST_CHECKPOINT_FILE),
        &saved,
    )
    .expect("save the checkpoint");
    demo(&first, 20);
    let against = |dir: &Path| {
        let out = caseledger(&[
            "verify",
            "--json",
            "--data",
            dir.to_str().expect("utf8"),
            "--key",
            first.join("node.pub").to_str().expect("utf8"),
            "--against",
            saved.to_str().expect("utf8"),
        ]);
        let report: Value = serde_json::from_slice(&out.stdout).expect("json");
        (out.status.code(), report)
    };
    let (code, report) = against(&first);
    assert_eq!((code, &report["ok"]), (Some(0), &Value::Bool(true)), "{report}");
    // The same demo seed (same node key and origin) written again: other
    // timestamps, so other entries at the saved size.
    let other = parent.path().join("other");
    demo(&other, 50);
    let (code, report) = against(&other);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["first_error"]["check"], "checkpoint_root", "{report}");
    let shorter = parent.path().join("shorter");
    demo(&shorter, 10);
    let (code, report) = against(&shorter);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["first_error"]["check"], "checkpoint_lost", "{report}");
}

/// The small faults an operator met (issue 18): a public key given as
/// `--key`, a missing file, a node that does not answer, output cut short
/// by `head`.
#[test]
fn command_line_faults_say_what_is_wrong_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("member.key");
    let out = caseledger(&["keygen", "--out", key.to_str().expect("utf8")]);
    assert!(out.status.success());
    let public = dir.path().join("member.key.pub");
    let client = |key: &Path, url: &str| {
        caseledger(&[
            "client",
            "--url",
            url,
            "--key",
            key.to_str().expect("utf8"),
            "get",
            "/v1/steps/pending",
        ])
    };
    // A public key where the private one is needed.
    let out = client(&public, "http://127.0.0.1:9");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("holds a public key") && !said.contains("chmod"), "{said}");
    // A missing file: its reason once.
    let out = client(&dir.path().join("missing.key"), "http://127.0.0.1:9");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(said.matches("No such file").count(), 1, "{said}");
    // A node that does not answer: the URL is named.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let out = client(&key, &url);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains(&format!("GET {url}/v1/steps/pending")), "{said}");
    // `export | head -1`: ends quietly when the reader goes.
    let data = dir.path().join("ledger");
    demo(&data, 3000);
    let mut export = Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["export", "--data", data.to_str().expect("utf8")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("export");
    {
        use std::io::BufRead as _;
        let mut first = String::new();
        std::io::BufReader::new(export.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("a line");
        assert!(first.starts_with('{'), "{first}");
    }
    let out = export.wait_with_output().expect("export");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("panicked") && !said.contains("Broken pipe"), "{said}");
}

/// `demo --staff-keys DIR` writes the demo court's staff keys (0600), named
/// in `staff.txt`, and they are the keys its ledger knows as active.
#[test]
fn a_demo_ledger_comes_with_its_staff_keys() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ledger");
    let keys = dir.path().join("staff-keys");
    let out = caseledger(&[
        "demo",
        "--data",
        data.to_str().expect("utf8"),
        "--cases",
        "1",
        "--seed",
        "5",
        "--staff-keys",
        keys.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = std::fs::read_to_string(keys.join("staff.txt")).expect("staff.txt");
    let ledger = caseledger_ledger::store::Ledger::open_read_only(&data).expect("ledger");
    let registry = ledger.keys();
    let mut files = 0;
    for line in listing.lines().filter(|l| !l.starts_with('#')) {
        let file = line.split(',').next().expect("file");
        let path = keys.join(file);
        let mode = std::fs::metadata(&path).expect("key file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
        let identity = caseledger_keys::files::read_private_key(&path).expect("a private key");
        let info = registry
            .info(&identity.public_key().key_id())
            .unwrap_or_else(|| panic!("{file} is not a key of the ledger"));
        assert!(info.is_active(), "{file}");
        files += 1;
    }
    assert!(files >= 8, "{listing}");
    // And the commitment key its staff's commitments were made with, so
    // that `serve` serves it.
    let key = data.join("commitment.key");
    assert_eq!(
        std::fs::metadata(&key).expect("commitment.key").permissions().mode() & 0o777,
        0o600
    );
}

/// docs/CONFIG.md is what `caseledger config-reference` prints (run
/// `caseledger config-reference > docs/CONFIG.md` after changing the
/// configuration), and the systemd example starts what exists.
#[test]
fn the_configuration_reference_is_generated_from_the_code() {
    let out = caseledger(&["config-reference"]);
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).expect("utf8");
    let kept =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/CONFIG.md")).expect("CONFIG.md");
    assert_eq!(
        kept, printed,
        "docs/CONFIG.md is stale: caseledger config-reference > docs/CONFIG.md"
    );
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/caseledger.service")).expect("unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/caseledger serve --config "));
    assert!(unit.contains("RestartPreventExitStatus=3"));
}
