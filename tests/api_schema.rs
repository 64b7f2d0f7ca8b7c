//! The API against its own OpenAPI document, driven by a schema-based
//! generator: schemathesis (PyPI, pinned, in a venv made once per build
//! folder) runs every operation of a served demo ledger with schema-valid
//! and schema-invalid input, and checks every answer: no server error, no
//! status or content type the document does not list, every body of the
//! schema it names, schema-valid input accepted and invalid input refused.
//!
//! Members' requests are signed (RFC 9421) by a small signing proxy in
//! front of `serve`: schemathesis sends the signature headers the document
//! declares with two placeholder values, and the proxy replaces exactly
//! those with a real signature by a demo staff key chosen by the path (an
//! administrator for administration, an approver for steps, an officer
//! otherwise). Requests with the headers missing or other values (the
//! checks that authentication is not ignored) go through as they are and
//! must be refused.
//!
//! Bounded and deterministic: a fixed seed, a fixed number of examples per
//! operation, one worker, no example database.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use caseledger_keys::Identity;
use common::Serve;

const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// The placeholders the proxy replaces with a real signature.
const SIGNATURE_PLACEHOLDER: &str = "sig1=:cmVwbGFjZWQgYnkgdGhlIHByb3h5:";
const SIGNATURE_INPUT_PLACEHOLDER: &str = "sig1=(\"replaced-by-the-proxy\")";

/// The schemathesis command, from a venv made once per build folder.
fn schemathesis() -> PathBuf {
    common::python_venv("venv-schemathesis-4.32.5", SCHEMATHESIS).join("bin/st")
}

/// What the proxy saw: requests signed, and of those how many `serve`
/// answered 2xx (the signatures are real: some must pass).
#[derive(Default)]
struct Seen {
    signed: AtomicU64,
    signed_ok: AtomicU64,
    unsigned: AtomicU64,
}

/// The staff key that signs a request for `path`.
fn signer_for<'a>(keys: &'a [(String, Identity)], path: &str) -> &'a Identity {
    let wanted = if [
        "/v1/contacts",
        "/v1/notifications",
        "/v1/audit",
        "/v1/export",
        "/v1/members",
    ]
    .iter()
    .any(|p| path.starts_with(p))
    {
        "admin-1"
    } else if path.starts_with("/v1/disbursements/") && path.contains("/steps/") {
        "head-1"
    } else {
        "officer-1"
    };
    &keys.iter().find(|(id, _)| id == wanted).expect("a demo key").1
}

/// Reads one HTTP/1.1 request (headers, then a `Content-Length` body):
/// the request line and headers as sent, and the body.
/// A request as read: its line, its headers (names in lower case), its body.
type Request = (String, Vec<(String, String)>, Vec<u8>);

fn read_request(stream: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    stream.read_line(&mut line).ok()?;
    let request_line = line.trim_end().to_owned();
    if request_line.is_empty() {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).ok()?;
    Some((request_line, headers, body))
}

/// One connection: the request re-signed (when it carries signature
/// headers) and sent to `serve` on a connection of its own; the answer
/// copied back byte for byte; then both closed.
fn proxy_one(client: TcpStream, serve: &str, keys: &[(String, Identity)], seen: &Seen) {
    let mut reader = BufReader::new(client.try_clone().expect("clone"));
    let Some((request_line, headers, body)) = read_request(&mut reader) else {
        return;
    };
    let mut parts = request_line.splitn(3, ' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let value = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let signed = value("signature") == Some(SIGNATURE_PLACEHOLDER)
        && value("signature-input") == Some(SIGNATURE_INPUT_PLACEHOLDER);
    let mut out = format!("{request_line}\r\nhost: {serve}\r\nconnection: close\r\n");
    for (name, value) in &headers {
        let dropped = ["host", "connection", "content-length", "transfer-encoding"];
        let replaced = ["signature", "signature-input", "content-digest"];
        let kept = !(dropped.contains(&name.as_str()) || signed && replaced.contains(&name.as_str()));
        if kept {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    if signed {
        seen.signed.fetch_add(1, Ordering::SeqCst);
        let path = target.split('?').next().unwrap_or(target);
        for (name, value) in
            caseledger::service::client::sign_request(signer_for(keys, path), serve, method, target, &body)
        {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    } else {
        seen.unsigned.fetch_add(1, Ordering::SeqCst);
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut upstream = TcpStream::connect(serve).expect("connect to serve");
    upstream.write_all(out.as_bytes()).expect("forward");
    upstream.write_all(&body).expect("forward body");
    let mut answer = Vec::new();
    let _ = upstream.read_to_end(&mut answer);
    if signed && answer.starts_with(b"HTTP/1.1 2") {
        seen.signed_ok.fetch_add(1, Ordering::SeqCst);
    }
    let mut client = client;
    let _ = client.write_all(&answer);
}

/// Starts the signing proxy for `serve` (`127.0.0.1:port`); returns its
/// address.
fn start_proxy(serve: String, keys: Vec<(String, Identity)>, seen: Arc<Seen>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let keys = Arc::new(keys);
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let (serve, keys, seen) = (serve.clone(), Arc::clone(&keys), Arc::clone(&seen));
            std::thread::spawn(move || proxy_one(client, &serve, &keys, &seen));
        }
    });
    address
}

/// The demo staff keys by member id, as `demo --staff-keys` wrote them.
fn staff_keys(folder: &Path) -> Vec<(String, Identity)> {
    let listing = std::fs::read_to_string(folder.join("staff.txt")).expect("staff.txt");
    listing
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(", ").collect();
            let identity = caseledger_keys::files::read_private_key(&folder.join(fields.first()?)).ok()?;
            Some(((*fields.get(2)?).to_owned(), identity))
        })
        .collect()
}

/// What the checks may not see as a failure, and why (each one a
/// constraint between parameters that a JSON schema cannot state).
const CONFIG: &str = r#"
# GET /v1/proofs/inclusion needs seq < size, /v1/proofs/consistency
# first <= second: each value alone is schema-valid, the pair is refused
# with 400. (A size beyond the ledger is 404: no tree of that size.)
[[operations]]
include-path-regex = "^/v1/proofs/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "429"]

# POST /v1/records: a record's payload is JSON text in a string, its
# signature must cover it and the rules judge it: generated records are
# refused (400 for the form, 422 for a rule) however schema-valid.
[[operations]]
include-path = "/v1/records"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "422", "429"]
"#;

#[test]
fn every_operation_answers_as_its_openapi_document_says() {
    let st = schemathesis();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("demo");
    let keys = dir.path().join("keys");
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["demo", "--cases", "3", "--data"])
        .arg(&data)
        .arg("--staff-keys")
        .arg(&keys)
        .output()
        .expect("demo");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let mut serve = Serve::start(&data, &[]);
    let upstream = serve.address.trim_start_matches("http://").to_owned();
    let seen = Arc::new(Seen::default());
    let proxy = start_proxy(upstream, staff_keys(&keys), Arc::clone(&seen));
    // Another seed explores further (API_SCHEMA_SEED=N); the suite
    // runs the fixed one.
    let seed = std::env::var("API_SCHEMA_SEED").unwrap_or_else(|_| "20261128".into());
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let run = std::process::Command::new(&st)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("http://{proxy}/v1/openapi.json"))
        .args([
            "--checks",
            "all",
            "--max-examples",
            "30",
            "--seed",
            &seed,
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
            "--header",
            &format!("Signature: {SIGNATURE_PLACEHOLDER}"),
            "--header",
            &format!("Signature-Input: {SIGNATURE_INPUT_PLACEHOLDER}"),
            "--no-color",
        ])
        .current_dir(dir.path())
        .output()
        .expect("schemathesis");
    let printed = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "schemathesis found failures:\n{printed}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(printed.contains("Selected: 32/32"), "{printed}");
    // The run reached past authentication: real signatures passed, and
    // requests without them were sent (and refused, or the check fails).
    assert!(seen.signed.load(Ordering::SeqCst) > 100, "{printed}");
    assert!(
        seen.signed_ok.load(Ordering::SeqCst) > 0,
        "no signed request was accepted"
    );
    assert!(seen.unsigned.load(Ordering::SeqCst) > 0);
    assert!(serve.terminate().success());
}
