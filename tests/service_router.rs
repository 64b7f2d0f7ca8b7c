//! Router tests with `oneshot`: every public endpoint, problem+json errors,
//! and the OpenAPI document matching the routes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger::service::{app, AppState};
use caseledger_verify::checkpoint::Checkpoint;
use caseledger_verify::merkle;
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
    keys: common::Keys,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = common::Keys::new();
    let ledger = common::create(dir.path(), &keys);
    common::fill(&ledger, &keys.writer, 42 - common::CREATED);
    ledger.checkpoint_now().expect("checkpoint");
    let state = AppState::new(Arc::new(ledger), 64 * 1024, Duration::from_secs(5));
    Fixture { _dir: dir, state, keys }
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, String, Vec<u8>) {
    let response = app(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default();
    assert!(
        response.headers().contains_key("x-request-id"),
        "every response carries a request id"
    );
    let body = response.into_body().collect().await.expect("body").to_bytes().to_vec();
    (status, content_type, body)
}

fn problem_type(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).expect("problem json");
    value["type"].as_str().expect("type").to_owned()
}

/// A writer that failed a commit refuses every write until the ledger is
/// reopened: `/readyz` says so (503), so that a balancer stops sending
/// writes, instead of answering "ready" while every write fails.
#[tokio::test]
async fn a_poisoned_writer_makes_the_service_unready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = common::Keys::new();
    common::create(dir.path(), &keys).close().expect("close");
    // A failpoint fails the next speculative commit, as a failed sync would.
    let failing = caseledger_ledger::store::Options {
        after_speculative_write: Some(caseledger_ledger::store::TestHook(Arc::new(|| true))),
        ..common::options()
    };
    let ledger = caseledger_ledger::store::Ledger::open(dir.path(), common::clock(), failing).expect("open");
    let state = AppState::new(Arc::new(ledger), 64 * 1024, Duration::from_secs(5));
    assert_eq!(get(&state, "/readyz").await.0, StatusCode::OK);
    assert!(state.ledger.poisoned().is_none());
    let refused = state.ledger.append_one(common::note(&keys.writer, 1));
    assert!(
        matches!(refused, Err(caseledger_ledger::Error::Poisoned(_))),
        "{refused:?}"
    );
    let (status, _, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let problem: Value = serde_json::from_slice(&body).expect("problem json");
    assert!(
        problem["detail"].as_str().expect("detail").contains("writes refused"),
        "{problem}"
    );
    assert!(state.ledger.poisoned().is_some());
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let f = fixture();
    assert_eq!(get(&f.state, "/healthz").await.0, StatusCode::OK);
    assert_eq!(get(&f.state, "/readyz").await.0, StatusCode::OK);
    let _ = get(&f.state, "/v1/checkpoint").await;
    let (status, content_type, body) = get(&f.state, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"));
    let text = String::from_utf8(body).expect("utf8");
    assert!(text.contains("caseledger_http_requests_total"), "{text}");
    assert!(text.contains("caseledger_ledger_entries 42"), "{text}");
    // Described, latencies as histograms, counters there from the start,
    // and the process and build facts.
    for expected in [
        "# HELP caseledger_ledger_entries ",
        "# TYPE caseledger_http_request_seconds histogram",
        "caseledger_http_request_seconds_bucket{route=\"/v1/checkpoint\",le=\"0.005\"}",
        "# HELP caseledger_sms_dead_total ",
        "caseledger_sms_dead_total 0",
        "caseledger_build_info{version=\"",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert!(!text.contains("quantile="), "no summaries:\n{text}");
    // Every metric has its HELP line.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).expect("name");
        assert!(text.contains(&format!("# HELP {name} ")), "{name} has no HELP");
    }
}

#[tokio::test]
async fn checkpoint_and_proofs_verify_with_the_node_key() {
    let f = fixture();
    let (status, content_type, body) = get(&f.state, "/v1/checkpoint").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"));
    let note = String::from_utf8(body).expect("utf8");
    let verifier = caseledger_keys::note::Verifier::new(common::ORIGIN, f.keys.node.public_key()).expect("verifier");
    let checkpoint = Checkpoint::open(&note, &verifier).expect("signed by the node");
    assert_eq!(checkpoint.size, 42);

    let (status, _, body) = get(&f.state, "/v1/proofs/inclusion?seq=17&size=42").await;
    assert_eq!(status, StatusCode::OK);
    let proof: Value = serde_json::from_slice(&body).expect("json");
    let decode = |v: &Value| -> [u8; 32] {
        BASE64
            .decode(v.as_str().expect("string"))
            .expect("base64")
            .try_into()
            .expect("32 bytes")
    };
    let hashes: Vec<[u8; 32]> = proof["proof"].as_array().expect("array").iter().map(decode).collect();
    let leaf = caseledger_verify::hash::leaf_hash(&f.state.ledger.entry_bytes(17).expect("entry"));
    assert_eq!(decode(&proof["leaf_hash"]), leaf);
    merkle::verify_inclusion(&leaf, 17, 42, &hashes, &checkpoint.root).expect("inclusion");

    let (status, _, body) = get(&f.state, "/v1/proofs/consistency?first=17&second=42").await;
    assert_eq!(status, StatusCode::OK);
    let proof: Value = serde_json::from_slice(&body).expect("json");
    let hashes: Vec<[u8; 32]> = proof["proof"].as_array().expect("array").iter().map(decode).collect();
    let old_root = f.state.ledger.root_at(17).expect("root");
    merkle::verify_consistency(17, 42, &hashes, &old_root, &checkpoint.root).expect("consistency");
}

#[tokio::test]
async fn bad_requests_are_problem_documents() {
    let f = fixture();
    for uri in [
        "/v1/proofs/inclusion?seq=50&size=42",
        "/v1/proofs/inclusion?seq=-1&size=5",
        "/v1/proofs/inclusion?seq=1",
        "/v1/proofs/inclusion?seq=1&size=5&extra=1",
        "/v1/proofs/consistency?first=0&second=5",
        "/v1/proofs/consistency?first=9&second=5",
    ] {
        let (status, content_type, body) = get(&f.state, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(content_type, "application/problem+json", "{uri}");
        assert_eq!(problem_type(&body), "urn:caseledger:problem:bad-request", "{uri}");
    }
    // A tree the ledger has not grown to is not there: 404.
    for uri in [
        "/v1/proofs/inclusion?seq=1&size=99",
        "/v1/proofs/consistency?first=1&second=99",
    ] {
        let (status, content_type, body) = get(&f.state, uri).await;
        assert_eq!(
            (status, content_type.as_str()),
            (StatusCode::NOT_FOUND, "application/problem+json"),
            "{uri}"
        );
        assert!(String::from_utf8_lossy(&body).contains("no tree of size 99"), "{uri}");
    }
    let (status, content_type, body) = get(&f.state, "/v1/no-such-thing").await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );
    assert_eq!(problem_type(&body), "urn:caseledger:problem:not-found");
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_every_listed_route_answers() {
    let f = fixture();
    let (status, _, body) = get(&f.state, "/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let document: Value = serde_json::from_slice(&body).expect("json");
    assert!(document["openapi"].as_str().expect("version").starts_with("3."));
    let paths: Vec<String> = document["paths"].as_object().expect("paths").keys().cloned().collect();
    for expected in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/checkpoint",
        "/v1/proofs/inclusion",
        "/v1/proofs/consistency",
        "/v1/openapi.json",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} missing from the OpenAPI document"
        );
    }
    for path in &paths {
        let uri = match path.as_str() {
            "/v1/proofs/inclusion" => format!("{path}?seq=1&size=2"),
            "/v1/proofs/consistency" => format!("{path}?first=1&second=2"),
            _ => path
                .replace("{seq}", "1")
                .replace("{case_number}", "x")
                .replace("{code}", "abc")
                .replace("{id}", "d")
                .replace("{n}", "1"),
        };
        let method = document["paths"][path.as_str()]
            .as_object()
            .expect("item")
            .keys()
            .next()
            .expect("method")
            .to_uppercase();
        let response = app(f.state.clone())
            .oneshot(
                Request::builder()
                    .method(method.as_str())
                    .uri(&uri)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        let status = response.status();
        let body = response.into_body().collect().await.expect("body").to_bytes().to_vec();
        let routed = status != StatusCode::NOT_FOUND || !String::from_utf8_lossy(&body).contains("no route");
        assert!(routed, "{path} is documented but not routed");
    }
}

#[tokio::test]
async fn applicants_get_a_self_contained_page_to_type_their_code_into() {
    let f = fixture();
    let response = app(f.state.clone())
        .oneshot(Request::get("/v1/verify").body(Body::empty()).expect("request"))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(headers["content-security-policy"]
        .to_str()
        .expect("ascii")
        .contains("default-src 'self'"));
    assert!(headers["content-security-policy"]
        .to_str()
        .expect("ascii")
        .contains("frame-ancestors 'none'"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let body =
        String::from_utf8(response.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf8");
    assert!(body.contains("<form") && body.contains("查询码"), "{body}");
    // It asks this same server for /v1/verify/<code> and loads nothing from elsewhere.
    assert!(body.contains(r#"fetch(here + "/" + encodeURIComponent(code))"#));
    assert!(!body.contains("src=\"http") && !body.contains("href=\"http"));
    // The page checks the bundle itself with the verifier module it pins
    // (by SHA-256), compares the server's report with its own, and says in
    // words why a code opens nothing (each problem type it can meet); a
    // code in the link (`#c=`, never sent to a server) is checked at once.
    assert!(body.contains(&format!(
        r#"data-verifier-sha256="{}""#,
        caseledger::service::verifier_sha256()
    )));
    assert!(body.contains("canonical(stated) !== canonical(answer.report)"));
    assert!(
        body.contains("'wasm-unsafe-eval'")
            || headers["content-security-policy"]
                .to_str()
                .expect("ascii")
                .contains("'wasm-unsafe-eval'")
    );
    for refusal in [
        "code-mistyped",
        "code-malformed",
        "code-revoked",
        "code-expired",
        "not-found",
        "rate-limited",
    ] {
        assert!(body.contains(&format!("\"{refusal}\":")), "{refusal}");
    }
    assert!(body.contains(r#"new URLSearchParams(location.hash.slice(1)).get("c")"#));
    assert!(body.contains(r#"typed.normalize("NFKC")"#), "full-width input is read");
    assert!(!body.contains("pattern="), "no browser bubble in English");
    // The node key is pinned in the page, with the fingerprint an
    // applicant's SMS gives, and published at a stable address.
    let key = f.state.ledger.node_key();
    assert!(body.contains(&format!(r#"data-public-key="{}""#, key.to_base64())));
    assert!(body.contains(&key.key_id().fingerprint()));
    let (status, _, published) = get(&f.state, "/v1/node-key").await;
    assert_eq!(status, StatusCode::OK);
    let published: serde_json::Value = serde_json::from_slice(&published).expect("json");
    assert_eq!(published["public_key"], key.to_base64());
    assert_eq!(published["fingerprint"], key.key_id().fingerprint());
    assert_eq!(published["key_id"], key.key_id().to_hex());
    let verifier = caseledger_keys::note::Verifier::parse(published["note_verifier_key"].as_str().expect("string"))
        .expect("a note verifier key");
    assert_eq!(
        verifier.to_string(),
        published["note_verifier_key"].as_str().expect("string")
    );
    let (status, _, _) = get(&f.state, "/v1/verify/0123456789abcdef0123456789abcdef").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A Python venv with the OpenAPI validator (PyPI, pinned), made once per
/// build folder.
fn openapi_validator() -> std::path::PathBuf {
    common::python_venv("venv-openapi-spec-validator-0.9.0", "openapi-spec-validator==0.9.0").join("bin/python")
}

/// The document validates (openapi-spec-validator), describes the RFC 9421
/// request signatures on exactly the signed operations, and every error,
/// the framework's own included, is a problem document.
#[tokio::test]
async fn the_openapi_document_validates_and_every_error_is_a_problem() {
    let f = fixture();
    let (_, _, body) = get(&f.state, "/v1/openapi.json").await;
    let document: Value = serde_json::from_slice(&body).expect("json");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &body).expect("write");
    let checked = std::process::Command::new(openapi_validator())
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import OpenAPIV31SpecValidator\n\
             errors = [e.message for e in OpenAPIV31SpecValidator(json.load(open(sys.argv[1]))).iter_errors()]\n\
             print('\\n'.join(errors))\n\
             sys.exit(1 if errors else 0)",
        ])
        .arg(&file)
        .output()
        .expect("validator");
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["rfc9421_signature"]["name"], "Signature");
    assert_eq!(schemes["rfc9421_signature_input"]["name"], "Signature-Input");
    assert!(document["paths"]["/v1/records"]["post"]["security"].is_array());
    assert!(document["paths"]["/v1/verify/{code}"]["get"]["security"].is_null());
    for query in ["seq", "size"] {
        let parameter = document["paths"]["/v1/proofs/inclusion"]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == query)
            .cloned()
            .expect("parameter");
        assert_eq!(parameter["in"], "query", "{parameter}");
    }
    // The framework's refusals: a query that does not parse, a path
    // segment that is not a number, a method the route does not take.
    for (method, uri, status) in [
        ("GET", "/v1/proofs/inclusion?seq=x&size=2", StatusCode::BAD_REQUEST),
        ("GET", "/v1/proofs/inclusion?seq=1", StatusCode::BAD_REQUEST),
        ("GET", "/v1/checkpoints/not-a-size/timestamp", StatusCode::BAD_REQUEST),
        ("DELETE", "/v1/checkpoint", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let response = app(f.state.clone())
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(response.status(), status, "{method} {uri}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{method} {uri}"
        );
        let body = response.into_body().collect().await.expect("body").to_bytes();
        let problem: Value = serde_json::from_slice(&body).expect("a problem document");
        assert_eq!(problem["status"], status.as_u16(), "{problem}");
        assert!(problem["type"]
            .as_str()
            .expect("type")
            .starts_with("urn:caseledger:problem:"));
    }
    // The documented inclusion proof, by query, answers.
    let (status, _, _) = get(&f.state, "/v1/proofs/inclusion?seq=17&size=42").await;
    assert_eq!(status, StatusCode::OK);
}
