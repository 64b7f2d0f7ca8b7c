//! The one signature rule (docs/FORMAT.md §2) at its edges: every signature
//! and key of `tests/data/ed25519-edges.json` is judged by the keys crate,
//! OpenSSL and Python `cryptography`, and the same edges, made over the
//! exact bytes of records and requests, are pushed through
//! `Ledger::append` (alone and in a group with another member's entries),
//! `POST /v1/records` and the auditor. Whatever the ledger accepts, OpenSSL
//! accepts.

mod common;

use std::path::{Path, PathBuf};

use caseledger_keys::{Identity, PublicKey, Signature};
use caseledger_ledger::store::Ledger;
use caseledger_ledger::Error;
use caseledger_verify::entry::Record;
use caseledger_verify::record::{self, KeyRegistered, KeyRotated, KeyText};
use common::edges::{self, SignatureEdge, KEY_EDGES, SIGNATURE_EDGES};
use common::*;
use serde::{Deserialize, Serialize};

const VECTORS: &str = "tests/data/ed25519-edges.json";
const SEED: [u8; 32] = [0x42; 32];
const MESSAGE: &[u8] = b"caseledger/v1/ledger-record\0an edge-case vector";

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Vectors {
    comment: String,
    vectors: Vec<Vector>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Vector {
    name: String,
    /// Hex of the 32-byte public key.
    public_key: String,
    /// Hex of the signed message.
    message: String,
    /// Hex of the 64-byte signature `R ‖ s`.
    signature: String,
    /// The key rule: caseledger registers this key.
    key_valid: bool,
    /// The one signature rule (strict RFC 8032): caseledger accepts it.
    accepted: bool,
    /// `[s]B = R + [k]A` holds, `s` reduced.
    cofactorless_equation: bool,
    /// `[8][s]B = [8]R + [8][k]A` holds (what a batch equation checks).
    cofactored_equation: bool,
    /// `openssl pkeyutl -verify -rawin` (OpenSSL 3) accepts it.
    openssl: bool,
}

fn vectors_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(VECTORS)
}

fn arr32(bytes: &[u8]) -> [u8; 32] {
    bytes.try_into().expect("32 bytes")
}

fn arr64(bytes: &[u8]) -> [u8; 64] {
    bytes.try_into().expect("64 bytes")
}

/// The rule as the keys crate applies it.
fn accepted_by_keys(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> (bool, bool) {
    match PublicKey::from_bytes(key) {
        Ok(public) => (
            true,
            public.verify_raw(message, &Signature::from_bytes(signature)).is_ok(),
        ),
        Err(_) => (false, false),
    }
}

fn vector(name: &str, key: [u8; 32], signature: [u8; 64], openssl: bool) -> Vector {
    let (key_valid, accepted) = accepted_by_keys(&key, MESSAGE, &signature);
    Vector {
        name: name.to_owned(),
        public_key: hex::encode(key),
        message: hex::encode(MESSAGE),
        signature: hex::encode(signature),
        key_valid,
        accepted,
        cofactorless_equation: edges::cofactorless_holds(&key, MESSAGE, &signature),
        cofactored_equation: edges::cofactored_holds(&key, MESSAGE, &signature),
        openssl,
    }
}

/// The vectors as the edges make them, with the given OpenSSL verdicts
/// (OpenSSL is asked separately, in its own test).
fn made(openssl: &dyn Fn(&str) -> bool) -> Vectors {
    let key = edges::public_key(&SEED);
    let mut vectors: Vec<Vector> = SIGNATURE_EDGES
        .iter()
        .map(|&edge| {
            vector(
                edge.name(),
                key,
                edges::sign(&SEED, MESSAGE, edge),
                openssl(edge.name()),
            )
        })
        .collect();
    for edge in KEY_EDGES {
        let (key, signature) = edges::weak_key_signature(edge, &SEED, MESSAGE);
        vectors.push(vector(edge.name(), key, signature, openssl(edge.name())));
    }
    Vectors {
        comment: "Ed25519 edge cases for caseledger's one signature rule (docs/FORMAT.md §2). \
                  `accepted` is the rule; every accepted vector also verifies with OpenSSL."
            .into(),
        vectors,
    }
}

fn on_disk() -> Vectors {
    let text = std::fs::read_to_string(vectors_path()).expect("read the vectors");
    serde_json::from_str(&text).expect("vectors JSON")
}

#[test]
fn the_vectors_on_disk_are_what_the_edges_make() {
    let disk = on_disk();
    let openssl = |name: &str| disk.vectors.iter().find(|v| v.name == name).is_some_and(|v| v.openssl);
    let made = made(&openssl);
    if std::env::var_os("CASELEDGER_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&made).expect("json") + "\n";
        std::fs::write(vectors_path(), text).expect("write vectors");
    }
    assert_eq!(made, disk, "set CASELEDGER_WRITE_VECTORS=1 to rewrite {VECTORS}");
}

#[test]
fn each_vector_gets_its_verdict_from_the_keys_crate() {
    let disk = on_disk();
    assert_eq!(disk.vectors.len(), SIGNATURE_EDGES.len() + KEY_EDGES.len());
    for v in &disk.vectors {
        let key = arr32(&hex::decode(&v.public_key).expect("hex"));
        let signature = arr64(&hex::decode(&v.signature).expect("hex"));
        let message = hex::decode(&v.message).expect("hex");
        let (key_valid, accepted) = accepted_by_keys(&key, &message, &signature);
        assert_eq!((key_valid, accepted), (v.key_valid, v.accepted), "{}", v.name);
        assert_eq!(
            edges::cofactorless_holds(&key, &message, &signature),
            v.cofactorless_equation,
            "{}",
            v.name
        );
        // What the rule accepts, every equation accepts.
        if v.accepted {
            assert!(
                v.cofactorless_equation && v.cofactored_equation && v.openssl,
                "{}",
                v.name
            );
        }
    }
    // The file holds the edges that matter: only honest is accepted; one
    // is accepted by a batch equation and refused by the rule; one is
    // accepted by OpenSSL and refused by the rule (a small-order R).
    let accepted: Vec<&str> = disk
        .vectors
        .iter()
        .filter(|v| v.accepted)
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(accepted, ["honest"]);
    let named = |name: &str| disk.vectors.iter().find(|v| v.name == name).expect("vector");
    assert!(named("r_plus_order_8_point_by_key_holder").cofactored_equation);
    assert!(named("r_of_order_8").cofactored_equation);
    assert!(named("r_identity_small_order").cofactorless_equation);
    assert!(named("a_with_order_8_component").cofactorless_equation);
    for edge in KEY_EDGES {
        assert!(!named(edge.name()).key_valid, "{}", edge.name());
    }
}

/// SubjectPublicKeyInfo DER of a raw Ed25519 key (RFC 8410).
fn spki_der(key: &[u8]) -> Vec<u8> {
    let mut der = hex::decode("302a300506032b6570032100").expect("hex");
    der.extend_from_slice(key);
    der
}

fn openssl_verifies(dir: &Path, key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    std::fs::write(dir.join("key.der"), spki_der(key)).expect("write");
    std::fs::write(dir.join("message"), message).expect("write");
    std::fs::write(dir.join("signature"), signature).expect("write");
    let output = std::process::Command::new("openssl")
        .args([
            "pkeyutl",
            "-verify",
            "-pubin",
            "-keyform",
            "DER",
            "-inkey",
            "key.der",
            "-rawin",
            "-in",
            "message",
            "-sigfile",
            "signature",
        ])
        .current_dir(dir)
        .output()
        .expect("run openssl (installed by .ci/run)");
    let text = String::from_utf8_lossy(&output.stdout);
    match (
        output.status.success(),
        text.contains("Signature Verified Successfully"),
    ) {
        (true, true) => true,
        (false, false) => false,
        other => panic!(
            "openssl answered {other:?}: {text} {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

#[test]
fn openssl_gives_each_vector_the_verdict_the_file_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    for v in on_disk().vectors {
        let verdict = openssl_verifies(
            dir.path(),
            &hex::decode(&v.public_key).expect("hex"),
            &hex::decode(&v.message).expect("hex"),
            &hex::decode(&v.signature).expect("hex"),
        );
        assert_eq!(verdict, v.openssl, "{}", v.name);
    }
}

/// Runs Python `cryptography` (OpenSSL underneath, another loader) on
/// every vector; returns the names it accepts.
fn python_accepts(vectors: &[Vector]) -> Vec<String> {
    let script = r#"
import json, sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
for v in json.load(sys.stdin):
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(v["public_key"]))
        key.verify(bytes.fromhex(v["signature"]), bytes.fromhex(v["message"]))
        print(v["name"])
    except (InvalidSignature, ValueError):
        pass
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run python3 (cryptography installed by .ci/run)");
    let input = serde_json::to_vec(vectors).expect("json");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &input).expect("write");
    let output = child.wait_with_output().expect("python");
    assert!(output.status.success(), "python failed");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn python_cryptography_accepts_what_the_rule_accepts() {
    let vectors = on_disk().vectors;
    let accepted = python_accepts(&vectors);
    for v in &vectors {
        assert_eq!(accepted.contains(&v.name), v.openssl, "{}", v.name);
    }
}

/// `record` with a signature of its own bytes by the key of `seed`, at `edge`.
fn at_edge(mut record: Record, seed: &[u8; 32], edge: SignatureEdge) -> Record {
    record.signature = Signature::from_bytes(&edges::sign(seed, &record.signed_message(ORIGIN), edge));
    record
}

#[test]
fn the_ledger_accepts_only_honest_signatures_alone_and_in_a_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    ledger
        .append(registered(&keys, &keys.other, "other", false))
        .expect("register other");
    let seed = keys.writer.seed();
    for (n, edge) in SIGNATURE_EDGES.into_iter().enumerate() {
        let size = ledger.size();
        let record = at_edge(note(&keys.writer, n as u64), &seed, edge);
        let answer = ledger.append_one(record.clone());
        let grouped = ledger.append(vec![note(&keys.other, 100 + n as u64), record]);
        if edge == SignatureEdge::Honest {
            answer.expect("honest alone");
            // The same record again is a second entry (notes carry no request id).
            grouped.expect("honest in a group");
            assert_eq!(ledger.size(), size + 3);
        } else {
            assert!(
                matches!(answer, Err(Error::BadSignature { index: 0 })),
                "{edge:?}: {answer:?}"
            );
            assert!(
                matches!(grouped, Err(Error::BadSignature { index: 1 })),
                "{edge:?}: {grouped:?}"
            );
            assert_eq!(ledger.size(), size, "{edge:?}: nothing written");
        }
    }
    audit_ok(&ledger);
}

#[test]
fn an_edge_signature_sharing_a_group_with_another_members_entry_is_refused_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    ledger
        .append(registered(&keys, &keys.other, "other", false))
        .expect("register other");
    ledger.close().expect("close");
    let runtime = runtime();
    for edge in SIGNATURE_EDGES.into_iter().filter(|e| *e != SignatureEdge::Honest) {
        // The writer pauses after the first group; the other member's
        // record and the edge queue behind it and form the next group.
        let pause = Pause::new(1);
        let ledger = Ledger::open(dir.path(), clock(), pause.options()).expect("open");
        // Dropped before the ledger: a failure never leaves the writer paused.
        let _release = pause.release_on_drop();
        let size = ledger.size();
        let mut leading = ledger.append_async(vec![note(&keys.writer, 1)]);
        assert!(poll_once(&mut leading).is_pending());
        pause.wait_paused();
        let mut honest = ledger.append_async(vec![note(&keys.other, 2)]);
        assert!(poll_once(&mut honest).is_pending());
        let mut edged = ledger.append_async(vec![at_edge(note(&keys.writer, 3), &keys.writer.seed(), edge)]);
        assert!(poll_once(&mut edged).is_pending());
        pause.resume();
        wait(&runtime, &mut leading).expect("leading append");
        let seq = wait(&runtime, &mut honest)
            .expect("the other member's append")
            .first_seq;
        let refused = wait(&runtime, &mut edged);
        assert!(
            matches!(refused, Err(Error::BadSignature { index: 0 })),
            "{edge:?}: {refused:?}"
        );
        assert_eq!(seq, size + 1);
        assert_eq!(ledger.size(), size + 2);
        audit_ok(&ledger);
        ledger.close().expect("close");
    }
}

#[test]
fn an_edge_signature_forced_into_storage_is_reported_by_the_auditor_at_its_seq() {
    for edge in SIGNATURE_EDGES.into_iter().filter(|e| *e != SignatureEdge::Honest) {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = Keys::new();
        let ledger = create(dir.path(), &keys);
        fill(&ledger, &keys.writer, 3);
        ledger.close().expect("close");
        let seq = force_append(dir.path(), at_edge(note(&keys.writer, 9), &keys.writer.seed(), edge));
        let report = audit(dir.path());
        assert!(report.first_error.is_none(), "{edge:?}: {:?}", report.first_error);
        let violations: Vec<_> = report
            .violations
            .iter()
            .map(|v| (v.seq, v.rule.as_str(), v.signer.clone()))
            .collect();
        assert_eq!(
            violations,
            [(seq, "signature", Some(keys.writer.public_key().key_id().to_hex()))],
            "{edge:?}"
        );
    }
}

fn registration_of(admin: &Identity, key: &[u8; 32]) -> Record {
    let payload = KeyRegistered {
        name: "weak".into(),
        public_key: KeyText(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key)),
        administrator: false,
        member: None,
    };
    Record::sign(
        ORIGIN,
        record::KIND_KEY_REGISTERED,
        serde_json::to_vec(&payload).expect("json"),
        admin,
    )
}

fn rotation_to(admin: &Identity, old: &Identity, key: &[u8; 32]) -> Record {
    let payload = KeyRotated {
        key_id: old.public_key().key_id().to_hex(),
        public_key: KeyText(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key)),
    };
    Record::sign(
        ORIGIN,
        record::KIND_KEY_ROTATED,
        serde_json::to_vec(&payload).expect("json"),
        admin,
    )
}

#[test]
fn weak_keys_are_refused_at_genesis_registration_and_rotation() {
    use caseledger_verify::record::{Genesis, GenesisKey};
    use caseledger_verify::registry::Registry;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let ledger = create(dir.path(), &keys);
    let size = ledger.size();
    for edge in KEY_EDGES {
        let (key, _) = edges::weak_key_signature(edge, &SEED, MESSAGE);
        assert!(PublicKey::from_bytes(&key).is_err(), "{edge:?}");
        assert_eq!(
            refused_rule(&ledger, registration_of(&keys.admin, &key)),
            "record_payload",
            "{edge:?}"
        );
        assert_eq!(
            refused_rule(&ledger, rotation_to(&keys.admin, &keys.writer, &key)),
            "record_payload",
            "{edge:?}"
        );
        let genesis = Genesis {
            origin: ORIGIN.into(),
            node_key: KeyText::from_key(&keys.node.public_key()),
            administrators: vec![GenesisKey {
                name: "weak".into(),
                public_key: KeyText(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key)),
            }],
            demo: false,
        };
        let record = Record::sign(
            ORIGIN,
            record::KIND_GENESIS,
            serde_json::to_vec(&genesis).expect("json"),
            &keys.node,
        );
        let refused = Registry::new(keys.node.public_key())
            .admit(0, &record)
            .expect_err("weak administrator at genesis");
        assert!(refused.to_string().contains("key"), "{edge:?}: {refused}");
    }
    // A point with a second, non-canonical encoding (y = p + 3).
    let mut y_plus_p = [0xff; 32];
    y_plus_p[0] = 0xf0;
    y_plus_p[31] = 0x7f;
    let refused = PublicKey::from_bytes(&y_plus_p).expect_err("non-canonical");
    assert!(refused.to_string().contains("canonical"), "{refused}");
    assert_eq!(ledger.size(), size, "nothing written");
    audit_ok(&ledger);
}

#[test]
fn a_weak_key_registration_forced_into_storage_is_reported_by_the_auditor() {
    for edge in KEY_EDGES {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = Keys::new();
        create(dir.path(), &keys).close().expect("close");
        let (key, _) = edges::weak_key_signature(edge, &SEED, MESSAGE);
        let seq = force_append(dir.path(), registration_of(&keys.admin, &key));
        let report = audit(dir.path());
        assert!(!report.ok, "{edge:?}");
        assert!(report.first_error.is_none(), "{edge:?}: {:?}", report.first_error);
        let reported = report
            .violations
            .into_iter()
            .map(|v| (v.seq, v.rule))
            .collect::<Vec<_>>();
        assert_eq!(reported, [(seq, "record_payload".to_owned())], "{edge:?}");
    }
}

/// Service fixture: a court ledger behind the router.
fn service(dir: &Path) -> (caseledger::service::AppState, caseledger::court::Staff) {
    let (ledger, staff) = common::court(dir, 41);
    let state = service_state(ledger, &staff);
    (state, staff)
}

/// The request-signature headers of `headers` with the signature replaced
/// by one of the same signature base at `edge`.
fn request_at_edge(
    headers: Vec<(String, String)>,
    seed: &[u8; 32],
    body: &[u8],
    edge: SignatureEdge,
) -> Vec<(String, String)> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .expect("header")
    };
    let params = header("signature-input")
        .strip_prefix("sig1=")
        .expect("label")
        .to_owned();
    let mut base = String::new();
    base.push_str(&format!(
        "\"@method\": POST\n\"@authority\": {}\n\"@path\": /v1/records\n",
        caseledger::service::DEFAULT_AUTHORITY
    ));
    if !body.is_empty() {
        base.push_str(&format!("\"content-digest\": {}\n", header("content-digest")));
    }
    base.push_str(&format!("\"@signature-params\": {params}"));
    let signature = edges::sign(seed, base.as_bytes(), edge);
    let value = format!(
        "sig1=:{}:",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, signature)
    );
    headers
        .into_iter()
        .map(|(name, v)| {
            if name == "signature" {
                (name, value.clone())
            } else {
                (name, v)
            }
        })
        .collect()
}

#[tokio::test]
async fn post_records_accepts_only_honest_record_and_request_signatures() {
    use caseledger::court::CaseRecords;
    use caseledger::service::client::{sign_request, write_body, write_body_numbered};
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, staff) = service(dir.path());
    let finance = &staff.finance.identity;
    let case = CaseRecords::new(&staff, &staff.officers[0], "(2023)苏02执123号");
    let (status, body) = {
        let body = write_body_numbered(&[case.open_request(1)]);
        let headers = sign_request(
            &staff.filing_clerk.identity,
            caseledger::service::DEFAULT_AUTHORITY,
            "POST",
            "/v1/records",
            &body,
        );
        send(&state, "POST", "/v1/records", &headers, body).await
    };
    assert_eq!(status.as_u16(), 201, "{body}");
    let size = state.ledger.size();
    for (n, edge) in SIGNATURE_EDGES.into_iter().enumerate() {
        // The receipt's record signature at the edge, the request honest.
        let record = at_edge(case.receipt(&format!("BANK-R{n}"), 1_000), &finance.seed(), edge);
        let body = write_body(&[record]);
        let headers = sign_request(
            finance,
            caseledger::service::DEFAULT_AUTHORITY,
            "POST",
            "/v1/records",
            &body,
        );
        let (status, answer) = send(&state, "POST", "/v1/records", &headers, body).await;
        // The request signature at the edge, the record honest.
        let body = write_body(&[case.receipt(&format!("BANK-Q{n}"), 1_000)]);
        let headers = request_at_edge(
            sign_request(
                finance,
                caseledger::service::DEFAULT_AUTHORITY,
                "POST",
                "/v1/records",
                &body,
            ),
            &finance.seed(),
            &body,
            edge,
        );
        let (request_status, request_answer) = send(&state, "POST", "/v1/records", &headers, body).await;
        if edge == SignatureEdge::Honest {
            assert_eq!(status.as_u16(), 201, "{answer}");
            assert_eq!(request_status.as_u16(), 201, "{request_answer}");
        } else {
            assert_eq!(status.as_u16(), 422, "{edge:?}: {answer}");
            assert_eq!(answer["rule"], "signature", "{edge:?}: {answer}");
            assert_eq!(request_status.as_u16(), 401, "{edge:?}: {request_answer}");
            assert_eq!(
                request_answer["type"], "urn:caseledger:problem:bad-signature",
                "{edge:?}: {request_answer}"
            );
        }
    }
    assert_eq!(state.ledger.size(), size + 2, "only the honest writes");
    audit_ok(&state.ledger);
}

#[test]
fn every_entry_the_ledger_accepted_verifies_with_openssl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, _staff) = court_with_case(dir.path(), 7, "(2023)苏02执7号", 1, 5_000_000);
    let work = tempfile::tempdir().expect("tempdir");
    let registry = ledger.registry().expect("registry");
    for seq in 0..ledger.size() {
        let entry = ledger.entry(seq).expect("entry");
        let key = registry.public_key(&entry.record.signer).expect("signer known");
        assert!(
            openssl_verifies(
                work.path(),
                &key.to_bytes(),
                &entry.record.signed_message(ORIGIN),
                &entry.record.signature.to_bytes()
            ),
            "entry {seq}"
        );
    }
}
