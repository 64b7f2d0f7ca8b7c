//! A witness at another institution (C2SP tlog-witness, tlog-cosignature
//! v1): it cosigns each checkpoint of a court's ledger that extends the
//! last one it cosigned, answers the spec's status codes otherwise, keeps
//! its state across restarts, and refuses to run without it. Driven with a
//! real ledger's checkpoints and consistency proofs, through the witness's
//! own checks and through a real `caseledger witness` process on loopback.

mod common;

use std::io::BufRead as _;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger::witness::{Answer, Log, Witness};
use caseledger_keys::cosignature::{cosignatures, Witness as WitnessKey};
use caseledger_keys::{note, Identity};
use caseledger_ledger::store::Ledger;
use caseledger_verify::checkpoint::Checkpoint;
use common::*;

const NAME: &str = "witness.procuratorate.example/w1";

/// The court's log as a witness is configured with it.
fn log_of(ledger: &Ledger) -> Log {
    let verifier = note::Verifier::new(ledger.origin(), ledger.node_key()).expect("verifier");
    Log::parse(&format!("{}={verifier}", ledger.origin())).expect("log")
}

/// An `add-checkpoint` body: old size, proof lines, empty line, checkpoint.
fn request(old: u64, proof: &[[u8; 32]], checkpoint: &str) -> String {
    let mut body = format!("old {old}\n");
    for hash in proof {
        body.push_str(&BASE64.encode(hash));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(checkpoint);
    body
}

/// The ledger grown by `n` demo-free records (a policy proposal each is
/// enough to move the tree) and its new checkpoint.
fn grow(ledger: &Ledger, staff: &caseledger::court::Staff, n: u32) -> (u64, String) {
    for i in 0..n {
        let case = caseledger::court::CaseRecords::new(
            staff,
            &staff.officers[0],
            &format!("(2026)苏02执{}号", 900 + ledger.size() + u64::from(i)),
        );
        ledger.append(case.open(1)).expect("a case");
    }
    let note = ledger.checkpoint_now().expect("checkpoint");
    (ledger.size(), note)
}

/// A checkpoint of `size` with `root`, signed by the node key (seed 1): what
/// an operator who forks the ledger signs.
fn forged(ledger: &Ledger, size: u64, root: [u8; 32]) -> String {
    let checkpoint = Checkpoint {
        origin: ledger.origin().to_owned(),
        size,
        root,
        threads: [0; 32],
    };
    let signer = note::Signer::new(ledger.origin(), Identity::from_seed([1; 32])).expect("signer");
    checkpoint.sign(&signer).expect("sign")
}

fn cosigned_by(witness: &Witness, note: &str, answer: &Answer) -> u64 {
    let Answer::Cosigned(line) = answer else {
        panic!("expected a cosignature, got {answer:?}");
    };
    let found = cosignatures(&format!("{note}{line}"), &[witness.cosigner().witness().clone()]).expect("verifies");
    assert_eq!(found.len(), 1, "{line}");
    found[0].timestamp
}

#[test]
fn a_witness_cosigns_a_growing_log_and_nothing_that_does_not_extend_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(&dir.path().join("ledger"), 91);
    caseledger::witness::init(&dir.path().join("witness"), NAME).expect("init");
    let witness = Witness::open(&dir.path().join("witness"), vec![log_of(&ledger)])
        .expect("open")
        .with_clock(|| 1_795_190_400);

    // First contact: old size 0, no proof.
    let (first, note1) = grow(&ledger, &staff, 1);
    let answer = witness.add_checkpoint(&request(0, &[], &note1));
    assert_eq!(cosigned_by(&witness, &note1, &answer), 1_795_190_400);
    // The same request again (a replay): 409 with the size it knows.
    assert_eq!(
        witness.add_checkpoint(&request(0, &[], &note1)),
        Answer::Conflict(first)
    );

    // Grown, with the consistency proof from the size it cosigned.
    let (second, note2) = grow(&ledger, &staff, 2);
    let proof = ledger.consistency_proof(first, second).expect("proof");
    cosigned_by(
        &witness,
        &note2,
        &witness.add_checkpoint(&request(first, &proof, &note2)),
    );
    // Reordered: the older request arrives after the newer.
    let older = ledger.consistency_proof(first, second).expect("proof");
    assert_eq!(
        witness.add_checkpoint(&request(first, &older, &note2)),
        Answer::Conflict(second)
    );
    // A smaller tree after a larger one.
    assert!(matches!(
        witness.add_checkpoint(&request(second, &[], &note1)),
        Answer::BadRequest(_)
    ));
    // The same size again with its own root: cosigned again; another root
    // of that size (a fork the operator signs): 422.
    cosigned_by(&witness, &note2, &witness.add_checkpoint(&request(second, &[], &note2)));
    let fork = forged(&ledger, second, [7; 32]);
    assert!(matches!(
        witness.add_checkpoint(&request(second, &[], &fork)),
        Answer::Unprocessable(_)
    ));
    // A larger fork, with a true proof of the real tree: 422.
    let (third, _) = grow(&ledger, &staff, 1);
    let proof = ledger.consistency_proof(second, third).expect("proof");
    let fork = forged(&ledger, third, [8; 32]);
    assert!(matches!(
        witness.add_checkpoint(&request(second, &proof, &fork)),
        Answer::Unprocessable(_)
    ));
    // A proof with a hash changed: 422.
    let real = ledger.checkpoint_now().expect("checkpoint");
    let mut bad = proof.clone();
    bad[0][0] ^= 1;
    assert!(matches!(
        witness.add_checkpoint(&request(second, &bad, &real)),
        Answer::Unprocessable(_)
    ));
    cosigned_by(
        &witness,
        &real,
        &witness.add_checkpoint(&request(second, &proof, &real)),
    );

    // Not the log's key, not a known log, not a request: 403, 404, 400.
    let stranger = note::Signer::new(ledger.origin(), Identity::from_seed([66; 32])).expect("signer");
    let text = real.split("\n\n").next().expect("text").to_owned() + "\n";
    let by_stranger = stranger.sign(&text).expect("sign");
    assert!(matches!(
        witness.add_checkpoint(&request(third, &[], &by_stranger)),
        Answer::Forbidden(_)
    ));
    let other_log = note::Signer::new("other.court.example/ledger", Identity::from_seed([1; 32])).expect("signer");
    let other = other_log
        .sign(&text.replacen(ledger.origin(), "other.court.example/ledger", 1))
        .expect("sign");
    assert!(matches!(
        witness.add_checkpoint(&request(0, &[], &other)),
        Answer::UnknownLog(_)
    ));
    for malformed in [
        "".to_owned(),
        format!("old 01\n\n{real}"),
        format!("old x\n\n{real}"),
        format!("old {third}\nnot base64!\n\n{real}"),
        format!("AAAA\n\n{real}"),
        request(third, &vec![[0; 32]; 64], &real),
    ] {
        assert!(
            matches!(witness.add_checkpoint(&malformed), Answer::BadRequest(_)),
            "{malformed:?}"
        );
    }
    // What it cosigned last, with the log's signature and its own.
    let latest = witness.latest(ledger.origin()).expect("latest");
    assert!(latest.starts_with(&real));
    note::open(
        &latest,
        &[note::Verifier::new(ledger.origin(), ledger.node_key()).expect("v")],
    )
    .expect("log signature");
    assert_eq!(
        cosignatures(&latest, &[witness.cosigner().witness().clone()])
            .expect("cosigned")
            .len(),
        1
    );
}

#[test]
fn an_empty_tree_has_the_empty_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, _) = court(&dir.path().join("ledger"), 92);
    caseledger::witness::init(&dir.path().join("witness"), NAME).expect("init");
    let witness = Witness::open(&dir.path().join("witness"), vec![log_of(&ledger)]).expect("open");
    let empty: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(b"").into();
    assert!(matches!(
        witness.add_checkpoint(&request(0, &[], &forged(&ledger, 0, [9; 32]))),
        Answer::Unprocessable(_)
    ));
    assert!(matches!(
        witness.add_checkpoint(&request(0, &[], &forged(&ledger, 0, empty))),
        Answer::Cosigned(_)
    ));
    // From size 0, a proof is refused.
    let note = ledger.checkpoint_now().expect("checkpoint");
    assert!(matches!(
        witness.add_checkpoint(&request(0, &[[1; 32]], &note)),
        Answer::Unprocessable(_)
    ));
}

#[test]
fn a_witness_remembers_across_restarts_and_refuses_to_run_without_its_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(&dir.path().join("ledger"), 93);
    let folder = dir.path().join("witness");
    caseledger::witness::init(&folder, NAME).expect("init");
    let (size, note) = grow(&ledger, &staff, 1);
    {
        let witness = Witness::open(&folder, vec![log_of(&ledger)]).expect("open");
        assert!(matches!(
            witness.add_checkpoint(&request(0, &[], &note)),
            Answer::Cosigned(_)
        ));
    }
    // Restarted: it knows the size it cosigned.
    let witness = Witness::open(&folder, vec![log_of(&ledger)]).expect("reopen");
    assert_eq!(witness.add_checkpoint(&request(0, &[], &note)), Answer::Conflict(size));
    drop(witness);
    // Its state deleted: it refuses to run rather than cosign afresh, and
    // it is not made again in place.
    std::fs::remove_file(folder.join("state.json")).expect("delete the state");
    let Err(refused) = Witness::open(&folder, vec![log_of(&ledger)]) else {
        panic!("a witness without its state runs");
    };
    assert!(refused.to_string().contains("missing"), "{refused:#}");
    let Err(again) = caseledger::witness::init(&folder, NAME) else {
        panic!("a witness made again in place");
    };
    assert!(again.to_string().contains("already holds a witness"), "{again:#}");
    // Another key's state is refused too.
    let other = dir.path().join("other");
    caseledger::witness::init(&other, NAME).expect("init");
    std::fs::copy(other.join("state.json"), folder.join("state.json")).expect("copy");
    let Err(refused) = Witness::open(&folder, vec![log_of(&ledger)]) else {
        panic!("a witness without its state runs");
    };
    assert!(refused.to_string().contains("another key"), "{refused:#}");
}

/// `caseledger witness` on 127.0.0.1, its address read from its output.
struct Process {
    child: std::process::Child,
    address: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `command` started with its standard output read until a line holds
/// `marker`; what follows the marker is the address.
fn spawn_listening(command: &mut std::process::Command, marker: &str) -> Process {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let address = loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the process printed its address");
        if let Some(rest) = line.split(marker).nth(1) {
            break rest.trim().to_owned();
        }
    };
    Process { child, address }
}

fn start(folder: &Path, log: &str) -> Process {
    spawn_listening(
        std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
            .args(["witness", "--listen", "127.0.0.1:0", "--log", log, "--data"])
            .arg(folder),
        " listening on ",
    )
}

fn post(address: &str, body: &str) -> (u16, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent
        .post(&format!("{address}/add-checkpoint"))
        .send(body.as_bytes())
        .expect("post");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        response.status().as_u16(),
        content_type,
        response.body_mut().read_to_string().expect("body"),
    )
}

#[test]
fn a_witness_process_speaks_tlog_witness_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(&dir.path().join("ledger"), 94);
    let folder = dir.path().join("witness");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["witness-init", "--name", NAME, "--data"])
        .arg(&folder)
        .output()
        .expect("witness-init");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    let key_text = printed
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{NAME}+")))
        .expect("the witness's key");
    let witness_key = WitnessKey::parse(key_text).expect("a witness key");
    let log = format!(
        "{}={}",
        ledger.origin(),
        note::Verifier::new(ledger.origin(), ledger.node_key()).expect("verifier")
    );
    let process = start(&folder, &log);
    let (size, note) = grow(&ledger, &staff, 1);
    let (status, _, line) = post(&process.address, &request(0, &[], &note));
    assert_eq!(status, 200, "{line}");
    assert_eq!(
        cosignatures(&format!("{note}{line}"), std::slice::from_ref(&witness_key))
            .expect("verifies")
            .len(),
        1
    );
    let (status, content_type, body) = post(&process.address, &request(0, &[], &note));
    assert_eq!(
        (status, content_type.as_str(), body),
        (409, "text/x.tlog.size", format!("{size}\n"))
    );
    let (status, _, _) = post(&process.address, "old 0\n");
    assert_eq!(status, 400);
    // The monitoring endpoint serves the cosigned checkpoint.
    let origin_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(ledger.origin().as_bytes()));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut latest = agent
        .get(&format!("{}/{origin_hash}/checkpoint", process.address))
        .call()
        .expect("get");
    assert_eq!(latest.status().as_u16(), 200);
    let latest = latest.body_mut().read_to_string().expect("body");
    assert_eq!(latest, format!("{note}{line}"));
    let missing = agent
        .get(&format!("{}/{}/checkpoint", process.address, "0".repeat(64)))
        .call()
        .expect("get");
    assert_eq!(missing.status().as_u16(), 404);
    // Killed and restarted: it still knows the size it cosigned.
    drop(process);
    let process = start(&folder, &log);
    let (status, _, body) = post(&process.address, &request(0, &[], &note));
    assert_eq!((status, body), (409, format!("{size}\n")));
    // Without its state the process refuses to start.
    drop(process);
    std::fs::remove_file(folder.join("state.json")).expect("delete");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["witness", "--listen", "127.0.0.1:0", "--log", &log, "--data"])
        .arg(&folder)
        .output()
        .expect("witness");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to run"));
}

/// `caseledger serve` with `config` (TOML), its address read from its output.
fn serve_with(config: &Path) -> Process {
    spawn_listening(
        std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
            .args(["serve", "--config"])
            .arg(config)
            .env("CASELEDGER_LOG", "error"),
        "caseledger listening on ",
    )
}

/// The node's newest checkpoint, once `done` holds of it (size, the
/// `Caseledger-Witnessed` header), with its cosignatures; a minute at most.
fn checkpoint_when(address: &str, done: &dyn Fn(u64, &str) -> bool) -> (u64, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut response = agent
            .get(&format!("{address}/v1/checkpoint"))
            .call()
            .expect("checkpoint");
        let witnessed = response
            .headers()
            .get("caseledger-witnessed")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let note = response.body_mut().read_to_string().expect("body");
        let size: u64 = note.lines().nth(1).and_then(|l| l.parse().ok()).unwrap_or(0);
        if done(size, &witnessed) {
            return (size, witnessed, note);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {witnessed:?} at size {size}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A node, three witnesses and a quorum of two: every checkpoint is
/// cosigned; with one witness down the quorum holds; with two down the node
/// still writes and says its checkpoints lack the quorum; the witnesses
/// back, they catch up with one consistency proof each.
#[test]
fn a_node_gets_its_checkpoints_cosigned_by_a_quorum_of_witnesses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = caseledger::court::Staff::from_seed(95, ORIGIN);
    let data = dir.path().join("data");
    init_court(dir.path(), &data, &staff);
    let node_key = caseledger_keys::files::read_public_key(&data.join("node.pub")).expect("node key");
    let log = format!("{ORIGIN}={}", note::Verifier::new(ORIGIN, node_key).expect("verifier"));
    let mut witnesses = Vec::new();
    let mut keys = Vec::new();
    for n in 1..=3 {
        let folder = dir.path().join(format!("witness-{n}"));
        let cosigner = caseledger::witness::init(&folder, &format!("witness-{n}.example/w")).expect("init");
        keys.push(cosigner.witness().clone());
        witnesses.push((folder.clone(), start(&folder, &log)));
    }
    let listed: String = witnesses
        .iter()
        .zip(&keys)
        .map(|((_, process), key)| format!("[[witnesses]]\nkey = \"{key}\"\nurl = \"{}\"\n", process.address))
        .collect();
    // And a time-stamp authority (openssl ts behind loopback HTTP).
    let tsa_dir = dir.path().join("tsa");
    common::tsa::make_tsa(&tsa_dir);
    let tsa_url = common::tsa::serve_tsa(&tsa_dir);
    let config = dir.path().join("caseledger.toml");
    std::fs::write(
        &config,
        format!(
            "data = \"{}\"\nlisten = \"127.0.0.1:0\"\nwitness_quorum = 2\nwitness_poll_ms = 50\n\
             checkpoint_every_ms = 100\nfree_space_min_bytes = 0\ntsa_url = \"{tsa_url}\"\n{listed}",
            data.display()
        ),
    )
    .expect("config");
    let node = serve_with(&config);
    set_up_staff(&node.address, &staff);
    let clerk = caseledger::service::client::Client::new(&node.address, staff.filing_clerk.identity.clone());
    let open = |n: u32| {
        let case = caseledger::court::CaseRecords::new(&staff, &staff.officers[0], &format!("(2026)苏02执{n}号"));
        let (status, body) = clerk.write_numbered(&[case.open_request(1)]).expect("open");
        assert_eq!(status, 201, "{body}");
    };
    open(1);
    let verified = |note: &str| cosignatures(note, &keys).expect("cosignatures verify").len();
    let (size, witnessed, note) = checkpoint_when(&node.address, &|_, w| w.starts_with("3 of 3"));
    assert!(witnessed.ends_with("quorum 2 reached"), "{witnessed}");
    assert_eq!(verified(&note), 3);

    // One witness down: the next checkpoint still reaches the quorum.
    witnesses.remove(0);
    open(2);
    let (grown, witnessed, note) = checkpoint_when(&node.address, &|s, w| s > size && w.starts_with("2 of 3"));
    assert!(
        witnessed.ends_with("reached") && !witnessed.ends_with("not reached"),
        "{witnessed}"
    );
    assert_eq!(verified(&note), 2);

    // Two down: writes go on, the checkpoint is published without the quorum.
    witnesses.remove(0);
    open(3);
    let (third, witnessed, _) = checkpoint_when(&node.address, &|s, w| s > grown && w.starts_with("1 of 3"));
    assert!(witnessed.ends_with("quorum 2 not reached"), "{witnessed}");
    // And another one after it: the checkpoint of `third` stays without
    // its quorum for good.
    open(4);
    let (fourth, _, _) = checkpoint_when(&node.address, &|s, w| s > third && w.starts_with("1 of 3"));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let ready = agent
        .get(&format!("{}/readyz", node.address))
        .call()
        .expect("readyz")
        .body_mut()
        .read_to_string()
        .expect("body");
    assert!(
        ready.starts_with("ready") && ready.contains("witness witness-1.example/w: cosigned"),
        "{ready}"
    );

    // Back: each catches up from the size it cosigned to the newest.
    let back: Vec<Process> = (1..=2)
        .map(|n| start(&dir.path().join(format!("witness-{n}")), &log))
        .collect();
    assert_eq!(back.len(), 2);
    // (Restarted on new ports: the node is told again.)
    drop(node);
    let listed: String = back
        .iter()
        .chain(witnesses.iter().map(|(_, p)| p))
        .zip(&keys)
        .map(|(process, key)| format!("[[witnesses]]\nkey = \"{key}\"\nurl = \"{}\"\n", process.address))
        .collect();
    std::fs::write(
        &config,
        format!(
            "data = \"{}\"\nlisten = \"127.0.0.1:0\"\nwitness_quorum = 2\nwitness_poll_ms = 50\n\
             checkpoint_every_ms = 100\nfree_space_min_bytes = 0\ntsa_url = \"{tsa_url}\"\n{listed}",
            data.display()
        ),
    )
    .expect("config");
    let node = serve_with(&config);
    let (newest, witnessed, note) = checkpoint_when(&node.address, &|s, w| s >= fourth && w.starts_with("3 of 3"));
    assert!(witnessed.ends_with("quorum 2 reached"), "{witnessed}");
    assert_eq!(verified(&note), 3);
    // The same checkpoint is time-stamped; openssl accepts the stamp for
    // its text.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let stamp = loop {
        let mut response = agent
            .get(&format!("{}/v1/checkpoints/{newest}/timestamp", node.address))
            .call()
            .expect("timestamp");
        if response.status().as_u16() == 200 {
            break response.body_mut().read_to_vec().expect("stamp");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no time-stamp of checkpoint {newest}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let text = note.split("\n\n").next().expect("body").to_owned() + "\n";
    assert!(common::tsa::openssl_verifies(&tsa_dir, &stamp, &text));
    drop(node);

    // Offline, the verifiers require the quorum of the witnesses they trust.
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
            .args(args)
            .output()
            .expect("caseledger");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let node_pub = data.join("node.pub");
    let (node_pub, data_path) = (node_pub.to_str().expect("path"), data.to_str().expect("path"));
    let (code, printed) = run(&["proof", "--data", data_path, "--seq", "3"]);
    assert_eq!(code, Some(0), "{printed}");
    let proof_file = dir.path().join("proof.json");
    std::fs::write(&proof_file, &printed).expect("proof");
    let proof_path = proof_file.to_str().expect("path");
    let key_args: Vec<String> = keys
        .iter()
        .flat_map(|k| ["--witness".to_owned(), k.to_string()])
        .collect();
    let with_keys = |base: &[&str], quorum: &str| -> (Option<i32>, String) {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(key_args.iter().map(String::as_str));
        args.extend(["--quorum", quorum]);
        run(&args)
    };
    let (code, printed) = with_keys(&["verify-proof", proof_path, "--key", node_pub], "2");
    assert_eq!(code, Some(0), "{printed}");
    assert_eq!(printed.matches("cosigned by witness").count(), 3, "{printed}");
    // The operator's fork of the same size, signed with the node key: no
    // witness cosigned it (their lines do not verify on it), so it fails.
    let node_signer = note::Signer::new(
        ORIGIN,
        caseledger_keys::files::read_private_key(&data.join("node.key")).expect("node key"),
    )
    .expect("signer");
    let mut bundle: serde_json::Value = serde_json::from_str(&printed_proof(&proof_file)).expect("json");
    let original = bundle["checkpoint"].as_str().expect("checkpoint").to_owned();
    let body: Vec<&str> = original.split("\n\n").next().expect("body").lines().collect();
    let forked_body = format!("{}\n{}\n{}\n{}\n", body[0], body[1], BASE64.encode([5u8; 32]), body[3]);
    let forked = node_signer.sign(&forked_body).expect("sign");
    for fork in [
        forked.clone(),
        format!(
            "{forked}{}",
            original
                .split_once("\n\n")
                .expect("sigs")
                .1
                .lines()
                .skip(1)
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        ),
    ] {
        bundle["checkpoint"] = serde_json::json!(fork);
        std::fs::write(&proof_file, bundle.to_string()).expect("fork");
        let (code, printed) = with_keys(&["verify-proof", proof_path, "--key", node_pub], "2");
        assert_eq!(code, Some(1), "{printed}");
    }
    // `verify --quorum 2` names the checkpoints made before the witnesses
    // cosigned (or while two were down), and not the newest.
    let (code, printed) = with_keys(&["verify", "--data", data_path, "--json"], "2");
    assert_eq!(code, Some(1), "{printed}");
    let report: serde_json::Value = serde_json::from_str(&printed).expect("json");
    let lacking: Vec<u64> = report["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .filter(|v| v["rule"] == "checkpoint_quorum")
        .map(|v| v["seq"].as_u64().expect("seq") + 1)
        .collect();
    assert!(lacking.contains(&third), "cosigned by one witness only: {lacking:?}");
    // The export carries the cosignatures: verify-export says the same.
    let export = dir.path().join("export.ndjson");
    let (code, printed) = run(&["export", "--data", data_path, "--out", export.to_str().expect("path")]);
    assert_eq!(code, Some(0), "{printed}");
    let (code, printed) = with_keys(
        &[
            "verify-export",
            export.to_str().expect("path"),
            "--key",
            node_pub,
            "--json",
        ],
        "2",
    );
    assert_eq!(code, Some(1), "{printed}");
    let exported: serde_json::Value = serde_json::from_str(&printed).expect("json");
    let lacking_in_export: Vec<u64> = exported["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .filter(|v| v["rule"] == "checkpoint_quorum")
        .map(|v| v["seq"].as_u64().expect("seq") + 1)
        .collect();
    assert_eq!(lacking_in_export, lacking, "{printed}");
    assert!(!lacking.contains(&newest) && !lacking.contains(&grown), "{lacking:?}");
    assert!(report["first_error"].is_null(), "{printed}");
}

fn printed_proof(path: &Path) -> String {
    std::fs::read_to_string(path).expect("proof")
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The operator restores an old backup and grows a different history past
/// the size the witness cosigned: the witness answers 409 (it knows a
/// larger tree), then 422 (the new tree does not extend it); and
/// `verify --against` the checkpoint cosigned earlier names the fork.
#[test]
fn an_old_backup_grown_differently_is_refused_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger_dir = dir.path().join("ledger");
    let (ledger, staff) = court(&ledger_dir, 96);
    caseledger::witness::init(&dir.path().join("witness"), NAME).expect("init");
    let witness = Witness::open(&dir.path().join("witness"), vec![log_of(&ledger)]).expect("open");
    let (first, note1) = grow(&ledger, &staff, 1);
    assert!(matches!(
        witness.add_checkpoint(&request(0, &[], &note1)),
        Answer::Cosigned(_)
    ));
    ledger.close().expect("close");
    // The backup, taken now.
    copy_folder(&ledger_dir, &dir.path().join("backup"));
    let ledger = Ledger::open(&ledger_dir, clock(), options()).expect("reopen");
    let (second, note2) = grow(&ledger, &staff, 2);
    let proof = ledger.consistency_proof(first, second).expect("proof");
    let Answer::Cosigned(line) = witness.add_checkpoint(&request(first, &proof, &note2)) else {
        panic!("the true history is cosigned");
    };
    let saved = dir.path().join("saved-checkpoint");
    std::fs::write(&saved, format!("{note2}{line}")).expect("save");
    ledger.close().expect("close");

    // Restored, and grown with other records past `second`.
    std::fs::remove_dir_all(&ledger_dir).expect("remove");
    copy_folder(&dir.path().join("backup"), &ledger_dir);
    let restored = Ledger::open(&ledger_dir, clock(), options()).expect("restored");
    let other = caseledger::court::CaseRecords::new(&staff, &staff.officers[1], "(2026)苏02执700号");
    restored.append(other.open(2)).expect("other records");
    let (forked, fork_note) = grow(&restored, &staff, 2);
    assert!(forked > second);
    // The witness knows `second`: 409; from there, no proof of the fork holds.
    assert_eq!(
        witness.add_checkpoint(&request(0, &[], &fork_note)),
        Answer::Conflict(second)
    );
    let fork_proof = restored.consistency_proof(second, forked).expect("proof");
    assert!(matches!(
        witness.add_checkpoint(&request(second, &fork_proof, &fork_note)),
        Answer::Unprocessable(_)
    ));
    restored.close().expect("close");
    // `verify --against` the checkpoint the witness cosigned names the fork.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["verify", "--json", "--data"])
        .arg(&ledger_dir)
        .arg("--against")
        .arg(&saved)
        .output()
        .expect("verify");
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let error = &report["first_error"];
    assert_eq!(error["seq"], second - 1, "{report}");
    assert_eq!(error["check"], "checkpoint_root", "{report}");
}

/// Between the node and its witness, a relay that puts a line of the
/// witness's name, which does not verify, before the real cosignature:
/// the node keeps the line that verifies, and the checkpoint is witnessed.
#[test]
fn the_node_keeps_the_cosignature_that_verifies_not_the_first_line_named_so() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = caseledger::court::Staff::from_seed(98, ORIGIN);
    let data = dir.path().join("data");
    init_court(dir.path(), &data, &staff);
    let node_key = caseledger_keys::files::read_public_key(&data.join("node.pub")).expect("node key");
    let log = format!("{ORIGIN}={}", note::Verifier::new(ORIGIN, node_key).expect("verifier"));
    let folder = dir.path().join("witness");
    let key = caseledger::witness::init(&folder, NAME)
        .expect("init")
        .witness()
        .clone();
    let witness = start(&folder, &log);
    let relay = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let relay_address = relay.local_addr().expect("address");
    let upstream = witness.address.clone();
    std::thread::spawn(move || {
        for stream in relay.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let (status, _, answer) = post(&upstream, &String::from_utf8_lossy(&body));
            let answer = if status == 200 {
                format!("\u{2014} {NAME} {}\n{answer}", BASE64.encode([0u8; 76]))
            } else {
                answer
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    let config = dir.path().join("caseledger.toml");
    std::fs::write(
        &config,
        format!(
            "data = \"{}\"\nlisten = \"127.0.0.1:0\"\nwitness_quorum = 1\nwitness_poll_ms = 50\n\
             checkpoint_every_ms = 100\nfree_space_min_bytes = 0\n\
             [[witnesses]]\nkey = \"{key}\"\nurl = \"http://{relay_address}\"\n",
            data.display()
        ),
    )
    .expect("config");
    let node = serve_with(&config);
    let (_, witnessed, note) = checkpoint_when(&node.address, &|_, w| w.starts_with("1 of 1"));
    assert!(witnessed.ends_with("quorum 1 reached"), "{witnessed}");
    assert_eq!(
        cosignatures(&note, std::slice::from_ref(&key)).expect("verifies").len(),
        1
    );
}

/// A client that sends half its headers and nothing more is cut off (the
/// witness's header-read timeout), and others are served meanwhile.
#[test]
fn a_slow_client_does_not_hold_the_witness() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(&dir.path().join("ledger"), 99);
    let folder = dir.path().join("witness");
    caseledger::witness::init(&folder, NAME).expect("init");
    let log = format!(
        "{}={}",
        ledger.origin(),
        note::Verifier::new(ledger.origin(), ledger.node_key()).expect("verifier")
    );
    let process = start(&folder, &log);
    let host = process.address.trim_start_matches("http://").to_owned();
    let mut slow = std::net::TcpStream::connect(&host).expect("connect");
    slow.write_all(b"POST /add-checkpoint HTTP/1.1\r\nHost: w\r\n")
        .expect("half the headers");
    // Meanwhile a whole request is answered.
    let (_, note) = grow(&ledger, &staff, 1);
    let (status, _, body) = post(&process.address, &request(0, &[], &note));
    assert_eq!(status, 200, "{body}");
    // The slow one is closed by the witness (well before this read's own limit).
    slow.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("timeout");
    let mut answer = Vec::new();
    let read = slow.read_to_end(&mut answer);
    assert!(read.is_ok(), "the witness closed the connection: {read:?}");
}

/// Witnesses vouch for a checkpoint's size and root, not its thread map:
/// the operator can have them cosign a checkpoint of the true tree whose
/// thread map leaves entries out. An auditor who takes the witness's
/// checkpoint (`GET <origin hash>/checkpoint`) and runs
/// `verify --against` on the court's ledger finds it.
#[test]
fn a_cosigned_checkpoint_with_a_forged_thread_map_is_named_by_verify_against() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger_dir = dir.path().join("ledger");
    let (ledger, staff) = court(&ledger_dir, 94);
    caseledger::witness::init(&dir.path().join("witness"), NAME).expect("init");
    let witness = Witness::open(&dir.path().join("witness"), vec![log_of(&ledger)])
        .expect("open")
        .with_clock(|| 1_795_190_400);
    let (size, true_note) = grow(&ledger, &staff, 2);
    let root = ledger.root_at(size).expect("root");
    let forged_map = forged(&ledger, size, root);
    assert_ne!(forged_map, true_note);
    let answer = witness.add_checkpoint(&request(0, &[], &forged_map));
    let Answer::Cosigned(line) = answer else {
        panic!("the witness checks size and root only: {answer:?}");
    };
    ledger.close().expect("close");
    let against = |note: &str| {
        let saved = dir.path().join("witnessed-checkpoint");
        std::fs::write(&saved, note).expect("save");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
            .args(["verify", "--json", "--data"])
            .arg(&ledger_dir)
            .arg("--against")
            .arg(&saved)
            .output()
            .expect("verify");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        (out.status.code(), report)
    };
    let (code, report) = against(&true_note);
    assert_eq!(code, Some(0), "{report}");
    let (code, report) = against(&format!("{forged_map}{line}"));
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["first_error"]["seq"], size - 1, "{report}");
    assert_eq!(report["first_error"]["check"], "checkpoint_threads", "{report}");
}
