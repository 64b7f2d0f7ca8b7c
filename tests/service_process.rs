//! `caseledger serve` as a real process on 127.0.0.1: it creates its ledger
//! on first start, answers over HTTP, and on SIGTERM finishes, closes the
//! ledger cleanly (the next open finds it intact) and exits 0.

mod common;

use common::Serve;

use std::process::Command;
use std::sync::Arc;

use caseledger_keys::files;
use caseledger_ledger::store::{Ledger, Options, SystemClock};
use caseledger_verify::checkpoint::Checkpoint;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

#[test]
fn serve_answers_and_shuts_down_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ledger");
    let mut serve = Serve::start(&data, &[]);
    let address = serve.address.clone();
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

    let status = serve.terminate();
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
    let mut serve = Serve::start(&data, &[]);
    let second = Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .expect("second serve");
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains("already open for writing"));
    let status = serve.terminate();
    assert!(status.success(), "serve exits 0 after SIGTERM: {status:?}");
}

#[test]
fn sigterm_as_soon_as_the_address_is_printed_is_a_clean_shutdown() {
    // The signal handlers must be in place before `serve` announces its
    // address; otherwise SIGTERM takes its default action and kills it.
    for round in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut serve = Serve::start(&dir.path().join("ledger"), &[]);
        let status = serve.terminate();
        assert!(
            status.success(),
            "round {round}: serve exits 0 after SIGTERM: {status:?}"
        );
    }
}

/// Sends a signed write of `records` to a running service.
/// Records, each with the numbers it masks in clear.
type Numbered = Vec<(caseledger_verify::entry::Record, Vec<String>)>;

/// Records without numbers in clear.
fn plain(records: Vec<caseledger_verify::entry::Record>) -> Numbered {
    records.into_iter().map(|r| (r, Vec::new())).collect()
}

fn post_records(
    agent: &ureq::Agent,
    address: &str,
    signer: &caseledger_keys::Identity,
    records: &[(caseledger_verify::entry::Record, Vec<String>)],
) -> (u16, serde_json::Value) {
    let body = caseledger::service::client::write_body_numbered(records);
    let mut request = agent
        .post(&format!("{address}/v1/records"))
        .header("content-type", "application/json");
    for (name, value) in caseledger::service::client::sign_request(
        signer,
        &caseledger::service::client::authority_of(address),
        "POST",
        "/v1/records",
        &body,
    ) {
        request = request.header(&name, &value);
    }
    let mut response = request.send(&body[..]).expect("post");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

#[test]
fn a_full_disbursement_over_http_then_the_applicant_verifies_offline() {
    use caseledger::court::{CaseRecords, Staff};
    use caseledger_verify::funds::model::{Decision, Role};

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ledger");
    // A court set up with `init`, its staff enrolled over HTTP by the administrator.
    let staff = Staff::from_seed(51, "wxzy.court.example/case-funds");
    common::init_court(dir.path(), &data, &staff);
    let mut serve = Serve::start(&data, &[]);
    let address = serve.address.clone();
    let agent = agent();
    let origin = "wxzy.court.example/case-funds";
    common::set_up_staff(&address, &staff);

    let officer = &staff.officers[0];
    let case = CaseRecords::new(&staff, officer, "(2026)苏02执8号");
    let steps: Vec<(&caseledger_keys::Identity, Numbered)> = vec![
        // The filing clerk opens the case with the applicant's phone in clear.
        (&staff.filing_clerk.identity, vec![case.open_request(1)]),
        (
            &officer.identity,
            vec![
                case.account_request("acct-1", 1, "6222000011119876"),
                (case.confirm("acct-1"), Vec::new()),
            ],
        ),
        (&staff.finance.identity, plain(vec![case.receipt("BANK-8", 3_000_000)])),
        (&officer.identity, plain(vec![case.request("d-8", "acct-1", 2_500_000)])),
        (
            &staff.bureau_head.identity,
            plain(vec![case.approval(
                origin,
                "d-8",
                "acct-1",
                2_500_000,
                1,
                Role::BureauHead,
                Decision::Approve,
                &staff.bureau_head,
            )]),
        ),
        (
            &staff.finance.identity,
            plain(vec![case.approval(
                origin,
                "d-8",
                "acct-1",
                2_500_000,
                2,
                Role::Finance,
                Decision::Approve,
                &staff.finance,
            )]),
        ),
        (
            &staff.finance.identity,
            plain(vec![case.payment("d-8", "PAY-8", "acct-1", 2_500_000)]),
        ),
    ];
    for (n, (signer, records)) in steps.iter().enumerate() {
        let (status, body) = post_records(&agent, &address, signer, records);
        assert_eq!(status, 201, "{body}");
        if n == 3 {
            // The bureau head asks what waits for them, with the command-line client.
            let key = dir.path().join("head.key");
            caseledger_keys::files::write_private_key(&key, &staff.bureau_head.identity).expect("key file");
            let out = Command::new(env!("CARGO_BIN_EXE_caseledger"))
                .args([
                    "client",
                    "--url",
                    &address,
                    "--key",
                    key.to_str().expect("utf8"),
                    "get",
                    "/v1/steps/pending",
                ])
                .output()
                .expect("client");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(String::from_utf8_lossy(&out.stdout).contains("d-8"));
        }
    }
    // The officer asks for the applicant's code; the node draws it and the
    // (console) provider shows the SMS to the applicant's phone only.
    let officer_client = caseledger::service::client::Client::new(&address, officer.identity.clone());
    let (status, body) = officer_client
        .issue_applicant_code("(2026)苏02执8号", "applicant-1")
        .expect("issue");
    assert_eq!(status, 201, "{body}");
    let code = loop {
        let line = serve
            .lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("an SMS");
        if line.starts_with("[SMS applicant-code-") {
            assert!(line.contains("****0001"), "to the applicant: {line}");
            // The link in the SMS carries the code.
            let (_, after) = line.split_once("/v1/verify#c=").expect("the link with the code");
            break after
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect::<String>();
        }
    };
    // The applicant, with the code from the SMS and nothing else.
    let mut response = agent
        .get(&format!("{address}/v1/verify/{code}"))
        .call()
        .expect("verify");
    assert_eq!(response.status(), 200);
    let text = response.body_mut().read_to_string().expect("body");
    let bundle_file = dir.path().join("bundle.json");
    std::fs::write(&bundle_file, &text).expect("write bundle");
    let status = serve.terminate();
    assert!(status.success(), "serve exits 0 after SIGTERM: {status:?}");

    let out = Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .arg("verify-bundle")
        .arg(&bundle_file)
        .arg("--key")
        .arg(data.join("node.pub"))
        .output()
        .expect("verify-bundle");
    let words = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{words}");
    assert!(
        words.contains("¥25,000.00") && words.contains("****9876") && words.contains("paid by finance"),
        "{words}"
    );
    let verify = Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .arg("verify")
        .arg("--data")
        .arg(&data)
        .arg("--json")
        .output()
        .expect("verify");
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// A client that sends half its headers is closed after the header-read
/// timeout; one that trickles its body gets 408 after the request timeout;
/// neither holds a shutdown past its grace period.
#[test]
fn slow_clients_are_closed_and_cannot_hold_a_shutdown() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ledger");
    let connect = |serve: &Serve| {
        let stream = std::net::TcpStream::connect(serve.address.trim_start_matches("http://")).expect("connect");
        // Bounds the test, not the server: it must close well before.
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .expect("timeout");
        stream
    };
    {
        let mut serve = Serve::start(
            &data,
            &[
                ("CASELEDGER_HEADER_READ_TIMEOUT_MS", "300"),
                ("CASELEDGER_REQUEST_TIMEOUT_MS", "1000"),
            ],
        );
        let mut slow_headers = connect(&serve);
        slow_headers
            .write_all(b"GET /v1/checkpoint HTTP/1.1\r\nHost: x\r\n")
            .expect("half the headers");
        let mut slow_body = connect(&serve);
        slow_body
            .write_all(
                b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"rec",
            )
            .expect("headers and a little body");
        // Meanwhile others are answered.
        let health = agent()
            .get(&format!("{}/healthz", serve.address))
            .call()
            .expect("healthz");
        assert_eq!(health.status(), 200);
        let mut answer = Vec::new();
        let read = slow_headers.read_to_end(&mut answer);
        assert!(read.is_ok(), "closed after the header-read timeout: {read:?}");
        let mut answer = Vec::new();
        let read = slow_body.read_to_end(&mut answer);
        assert!(read.is_ok(), "closed after the request timeout: {read:?}");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
        let status = serve.terminate_within(std::time::Duration::from_secs(60));
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
    }
    // With a header-read timeout of ten minutes, a half-sent request and an
    // idle kept-alive connection are closed at the end of the grace period.
    let mut serve = Serve::start(
        &data,
        &[
            ("CASELEDGER_HEADER_READ_TIMEOUT_MS", "600000"),
            ("CASELEDGER_SHUTDOWN_GRACE_MS", "500"),
        ],
    );
    let mut slow_headers = connect(&serve);
    slow_headers
        .write_all(b"GET /v1/checkpoint HTTP/1.1\r\nHost: x\r\n")
        .expect("half the headers");
    let mut kept_alive = connect(&serve);
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("a request");
    let mut first = [0u8; 12];
    kept_alive.read_exact(&mut first).expect("answered");
    assert_eq!(&first, b"HTTP/1.1 200");
    let status = serve.terminate_within(std::time::Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "serve exits within its grace period: {status:?}"
    );
    let mut rest = Vec::new();
    assert!(slow_headers.read_to_end(&mut rest).is_ok());
    let ledger = Ledger::open(&data, Arc::new(SystemClock), Options::default()).expect("reopen after shutdown");
    assert!(ledger.corruption().is_none());
}

/// One client cannot hold every connection slot: beyond
/// `connections_per_client_max` from one address, a connection is closed
/// at once, unanswered, while the slots of other clients stay free; a slot
/// given back serves again.
#[test]
fn one_client_holds_at_most_its_share_of_connections() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ledger");
    let mut serve = Serve::start(
        &data,
        &[
            ("CASELEDGER_CONNECTIONS_PER_CLIENT_MAX", "2"),
            ("CASELEDGER_HEADER_READ_TIMEOUT_MS", "600000"),
        ],
    );
    let connect = || {
        let stream = std::net::TcpStream::connect(serve.address.trim_start_matches("http://")).expect("connect");
        // Bounds the test, not the server.
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .expect("timeout");
        stream
    };
    let ask = |stream: &mut std::net::TcpStream| {
        // A whole request: refused connections are closed unanswered.
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut first = [0u8; 12];
        match stream.read(&mut first) {
            Ok(12) => String::from_utf8_lossy(&first).into_owned(),
            Ok(n) => format!("{n} bytes"),
            Err(error) => format!("{:?}", error.kind()),
        }
    };
    // Two idle connections, trickling nothing: the client's share.
    let mut held = [connect(), connect()];
    held[0]
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .expect("half the headers");
    held[1]
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .expect("half the headers");
    // A third from the same address is closed without an answer (once the
    // server has taken both held ones: bounded retries until it refuses).
    let refused = (0..200).find_map(|_| {
        let answer = ask(&mut connect());
        if answer == "HTTP/1.1 200" {
            std::thread::sleep(std::time::Duration::from_millis(10));
            None
        } else {
            Some(answer)
        }
    });
    assert!(
        refused
            .as_deref()
            .is_some_and(|a| a == "0 bytes" || a == "ConnectionReset"),
        "a third connection was served: {refused:?}"
    );
    let metrics = agent_get_text(&serve, &mut held);
    assert!(
        metrics.contains("caseledger_connections_refused_total{reason=\"per_client\"}"),
        "{metrics}"
    );
    // One held connection given back: a new one is served again.
    drop(held);
    let served = (0..200).any(|_| {
        let answer = ask(&mut connect());
        answer == "HTTP/1.1 200" || {
            std::thread::sleep(std::time::Duration::from_millis(10));
            false
        }
    });
    assert!(served, "a slot given back serves again");
    assert!(serve.terminate().success());
}

/// `/metrics` read on one of the client's own held connections (a new one
/// would be refused): the held half-request is completed first.
fn agent_get_text(serve: &Serve, held: &mut [std::net::TcpStream; 2]) -> String {
    use std::io::{Read as _, Write as _};
    let _ = serve;
    let stream = &mut held[0];
    stream.write_all(b"\r\n").expect("finish the held request's headers");
    // The answer to the held /healthz, then /metrics on the same connection.
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("metrics");
    let mut text = Vec::new();
    stream.read_to_end(&mut text).expect("read");
    String::from_utf8_lossy(&text).into_owned()
}
