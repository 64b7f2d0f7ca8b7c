//! `caseledger serve` as a real process on 127.0.0.1: it creates its ledger
//! on first start, answers over HTTP, and on SIGTERM finishes, closes the
//! ledger cleanly (the next open finds it intact) and exits 0.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use caseledger_keys::files;
use caseledger_ledger::checkpoint::Checkpoint;
use caseledger_ledger::store::{Ledger, Options, SystemClock};

fn start(data: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("CASELEDGER_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        let line = lines.next().expect("serve printed its address").expect("utf8 line");
        if let Some(rest) = line.strip_prefix("caseledger listening on ") {
            break rest.trim().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, address)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    child.wait().expect("wait")
}

#[test]
fn serve_answers_and_shuts_down_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ledger");
    let (mut child, address) = start(&data);
    let agent = agent();
    let mut health = agent.get(&format!("{address}/healthz")).call().expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(health.body_mut().read_to_string().expect("body"), "ok");

    let mut response = agent
        .get(&format!("{address}/v1/checkpoint"))
        .call()
        .expect("checkpoint");
    assert_eq!(response.status(), 200);
    let note = response.body_mut().read_to_string().expect("body");
    let node = files::read_public_key(&data.join("node.pub")).expect("node.pub");
    let origin = Checkpoint::origin_of(&note).expect("origin").to_owned();
    let verifier = caseledger_keys::note::Verifier::new(&origin, node).expect("verifier");
    assert_eq!(Checkpoint::open(&note, &verifier).expect("signed by the node").size, 1);

    let missing = agent.get(&format!("{address}/v1/nothing")).call().expect("404");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers().get("content-type").expect("type"),
        "application/problem+json"
    );

    let status = terminate(&mut child);
    assert!(status.success(), "serve exits 0 after SIGTERM: {status:?}");
    let ledger = Ledger::open(&data, Arc::new(SystemClock), Options::default()).expect("reopen after shutdown");
    assert!(ledger.corruption().is_none());
    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "{:?}", report.first_error);
}

#[test]
fn a_second_serve_on_the_same_folder_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ledger");
    let (mut child, _) = start(&data);
    let second = Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .expect("second serve");
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains("already open for writing"));
    assert!(terminate(&mut child).success());
}
