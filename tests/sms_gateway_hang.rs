//! An SMS gateway that accepts and never answers does not stall the HTTP
//! service (issue 15, item 4): codes are handed to the provider on blocking
//! threads, never on the async runtime's workers. Here more code requests
//! than the runtime has workers hang on the gateway at once, and the
//! service still answers `/healthz` and reads while they wait; once the
//! gateway goes away, each code request ends with a clear 503.

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;

use caseledger::court::{CaseRecords, Staff};
use caseledger::service::client::Client;
use common::Serve;

/// Connections a gateway holds unanswered.
type Held = std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>;

/// A gateway that reads each request and never answers; tells `seen` the
/// body of each and holds the connection open (in `held`).
fn silent_gateway(seen: mpsc::Sender<String>) -> (String, Held) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let held: Held = Default::default();
    let holding = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (seen, holding) = (seen.clone(), holding.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut length = 0usize;
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok() {
                    let _ = seen.send(String::from_utf8_lossy(&body).into_owned());
                }
                holding.lock().expect("lock").push(stream);
            });
        }
    });
    (format!("http://{address}/sms"), held)
}

#[test]
fn a_gateway_that_never_answers_does_not_stall_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ledger");
    let staff = Staff::from_seed(23, "court.example/hang");
    common::init_court(dir.path(), &data, &staff);
    std::fs::write(data.join("commitment.key"), hex::encode(staff.commitment_key)).expect("commitment key");
    let case = CaseRecords::new(&staff, &staff.officers[0], "(2026)苏02执23号");
    {
        let mut serve = Serve::start(&data, &[]);
        common::set_up_staff(&serve.address, &staff);
        let clerk = Client::new(&serve.address, staff.filing_clerk.identity.clone());
        assert_eq!(clerk.write_numbered(&[case.open_request(1)]).expect("open").0, 201);
        assert!(serve.terminate().success());
    }
    let (seen_tx, seen) = mpsc::channel();
    let (url, held) = silent_gateway(seen_tx);
    let serve = Serve::start(
        &data,
        &[
            ("CASELEDGER_SMS_PROVIDER", "webhook"),
            ("CASELEDGER_SMS_WEBHOOK_URL", &url),
            ("CASELEDGER_SMS_WEBHOOK_SECRET", "a-secret"),
            // Far beyond the test: only the gateway's end releases them.
            ("CASELEDGER_SMS_TIMEOUT_MS", "600000"),
        ],
    );
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let requests: Vec<_> = (0..workers + 2)
        .map(|_| {
            let officer = Client::new(&serve.address, staff.officers[0].identity.clone());
            let case_number = case.case_number.clone();
            std::thread::spawn(move || {
                officer
                    .issue_applicant_code(&case_number, "applicant-1")
                    .expect("answer")
            })
        })
        .collect();
    // Every code request is at the gateway, waiting.
    let mut waiting = 0;
    while waiting < workers + 2 {
        let body = seen
            .recv_timeout(std::time::Duration::from_secs(300))
            .expect("the code requests reach the gateway");
        if body.contains("applicant-code-") {
            waiting += 1;
        }
    }
    // The service answers meanwhile (the bound only turns a stall into a
    // failure; an answer takes milliseconds).
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    for _ in 0..5 {
        let health = agent
            .get(&format!("{}/healthz", serve.address))
            .call()
            .expect("healthz");
        assert_eq!(health.status().as_u16(), 200);
    }
    let checkpoint = agent
        .get(&format!("{}/v1/checkpoint", serve.address))
        .call()
        .expect("checkpoint");
    assert_eq!(checkpoint.status().as_u16(), 200);
    assert!(
        requests.iter().all(|r| !r.is_finished()),
        "the code requests still wait"
    );
    // The gateway hangs up: each code request ends, clearly.
    for stream in held.lock().expect("lock").drain(..) {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    for request in requests {
        let (status, body) = request.join().expect("request");
        assert_eq!(status, 503, "{body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("could not be sent"),
            "{body}"
        );
    }
}
