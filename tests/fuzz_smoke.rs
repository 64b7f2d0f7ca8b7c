//! A bounded, deterministic run of every fuzz target (`fuzz/targets.rs`) on
//! stable: each seed in `fuzz/seeds/<target>/` as it is, then mutated a
//! fixed number of times (bit flips, truncations, insertions, splices) with
//! a fixed RNG seed. The coverage-guided runs use cargo-fuzz on nightly
//! (README.md, "Fuzzing"); this one keeps the targets compiling and catches
//! the plain crashes in every test run.
//!
//! `CASELEDGER_WRITE_FUZZ_SEEDS=1` rewrites the seeds from a real court
//! ledger (entries, records, checkpoints, bundles, an export, request
//! signatures).

mod common;

use std::path::{Path, PathBuf};

use caseledger::service::httpsig;
use rand::{Rng as _, SeedableRng as _};

#[path = "../fuzz/targets.rs"]
mod targets;

/// Mutations run per seed and target.
const MUTATIONS_PER_SEED: usize = 1000;

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target)
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(seeds_dir(target))
        .unwrap_or_else(|e| panic!("fuzz/seeds/{target}: {e}"))
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).expect("read seed")).collect()
}

fn mutate(rng: &mut rand::rngs::StdRng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        match rng.gen_range(0..5) {
            0 if !data.is_empty() => {
                let i = rng.gen_range(0..data.len());
                data[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if !data.is_empty() => {
                let len = rng.gen_range(0..data.len());
                data.truncate(len);
            }
            2 => {
                let i = rng.gen_range(0..=data.len());
                let byte = [0u8, b'"', b'{', b'}', b'\n', b',', 0xff, b'9'][rng.gen_range(0..8)];
                data.insert(i, byte);
            }
            3 if !other.is_empty() && !data.is_empty() => {
                let at = rng.gen_range(0..data.len());
                let from = rng.gen_range(0..other.len());
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            _ if !data.is_empty() => {
                let i = rng.gen_range(0..data.len());
                data[i] = rng.gen();
            }
            _ => data.push(rng.gen()),
        }
    }
    data
}

fn run(target: &str, body: &dyn Fn(&[u8])) {
    let seeds = seeds(target);
    assert!(!seeds.is_empty(), "fuzz/seeds/{target} is empty");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for (i, seed) in seeds.iter().enumerate() {
        body(seed);
        let other = &seeds[(i + 1) % seeds.len()];
        for _ in 0..MUTATIONS_PER_SEED {
            body(&mutate(&mut rng, seed, other));
        }
    }
}

#[test]
fn entry() {
    run("entry", &targets::entry);
}

#[test]
fn records() {
    let fixture = targets::Fixture::new();
    let setup = fixture.setup();
    run("records", &|data| targets::records(&fixture, &setup, data));
}

#[test]
fn checkpoint() {
    run("checkpoint", &targets::checkpoint);
}

#[test]
fn bundle() {
    run("bundle", &targets::bundle);
}

#[test]
fn export() {
    run("export", &targets::export);
}

#[test]
fn request_signature() {
    run("request_signature", &targets::request_signature);
}

/// The seeds reach deep: the records seed of a whole disbursement replays
/// with no violation, so mutations start from records the rules accept.
#[test]
fn the_records_seed_of_a_disbursement_is_accepted_whole() {
    let fixture = targets::Fixture::new();
    let seed = std::fs::read(seeds_dir("records").join("disbursement")).expect("seed");
    let report = replay_records(&fixture, &seed);
    assert!(report.ok, "{:?} {:?}", report.first_error, report.violations);
    assert!(report.cases >= 1);
}

fn replay_records(fixture: &targets::Fixture, data: &[u8]) -> caseledger_verify::audit::AuditReport {
    use caseledger_verify::entry::{Entry, Record};
    let mut records = fixture.setup();
    let mut rest = data;
    while rest.len() >= 4 {
        let kind = targets::KINDS[usize::from(rest[0]) % targets::KINDS.len()];
        let signer = usize::from(rest[1]) % (fixture.members.len() + 1);
        let length = usize::from(u16::from_be_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        let identity = fixture.members.get(signer).map_or(&fixture.node, |m| &m.0);
        // The payload, then its disclosures after NUL bytes (as the target reads them).
        let mut parts = rest[4..4 + length].split(|b| *b == 0);
        let payload = parts.next().unwrap_or_default().to_vec();
        let disclosures = parts.map(|d| String::from_utf8_lossy(d).into_owned()).collect();
        records.push(Record::sign(targets::ORIGIN, kind, payload, identity).with_disclosures(disclosures));
        rest = &rest[4 + length..];
    }
    let mut auditor = caseledger_verify::audit::Auditor::new(fixture.node.public_key());
    let mut prev_hash = [0u8; 32];
    for (seq, record) in records.into_iter().enumerate() {
        let disclosures = record.disclosures.clone();
        let bytes = Entry {
            seq: seq as u64,
            timestamp_ms: 1_795_190_400_000 + seq as u64 * 60_000,
            prev_hash,
            record,
        }
        .encode();
        prev_hash = Entry::hash_of(&bytes);
        auditor.push_disclosed_entry(seq as u64, &bytes, disclosures);
    }
    let checkpoint = caseledger_verify::checkpoint::Checkpoint {
        origin: targets::ORIGIN.into(),
        size: auditor.size(),
        root: auditor.root(),
        threads: auditor.threads_root(),
    };
    let signer = caseledger_keys::note::Signer::new(targets::ORIGIN, fixture.node.clone()).expect("signer");
    auditor.check_checkpoint(&checkpoint.sign(&signer).expect("sign"), None);
    auditor.finish()
}

#[test]
fn write_seeds() {
    if std::env::var_os("CASELEDGER_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    use caseledger::court::CaseRecords;
    use caseledger_verify::funds::model::Role;
    let dir = tempfile::tempdir().expect("tempdir");
    let case_number = "(2024)苏02执99号";
    let (ledger, staff) = common::court_with_case(dir.path(), 99, case_number, 1, 9_000_000);
    let case = CaseRecords::new(&staff, &staff.officers[0], case_number);
    ledger
        .append_one(case.request("d-1", "acct-1", 3_000_000))
        .expect("request");
    for approval in case.approvals(
        common::ORIGIN,
        "d-1",
        "acct-1",
        3_000_000,
        &[Role::BureauHead, Role::Finance],
    ) {
        ledger.append_one(approval).expect("approval");
    }
    let (code, issue) = case.applicant_code(1);
    ledger.append_one(issue).expect("code");
    ledger
        .append_one(case.payment("d-1", "PAY-1", "acct-1", 3_000_000))
        .expect("payment");
    ledger.checkpoint_now().expect("checkpoint");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        std::fs::create_dir_all(seeds_dir(target)).expect("mkdir");
        std::fs::write(seeds_dir(target).join(name), bytes).expect("write seed");
    };
    for seq in [0, 1, ledger.size() - 1] {
        write(
            "entry",
            &format!("entry-{seq}"),
            &ledger.entry_bytes(seq).expect("entry"),
        );
    }
    // The case's records after the court's setup, re-encoded for the
    // records target: kind index, signer index (by member id), payload.
    let mut records = Vec::new();
    let setup = staff.setup_records().len() as u64 + 1;
    for seq in setup..ledger.size() {
        let entry = ledger.entry(seq).expect("entry");
        let Some(kind) = targets::KINDS.iter().position(|k| *k == entry.record.kind) else {
            continue;
        };
        let member = ledger
            .keys()
            .info(&entry.record.signer)
            .and_then(|info| info.member.clone())
            .map(|m| m.member_id);
        let signer = member
            .as_deref()
            .and_then(targets::Fixture::index_of)
            .unwrap_or(targets::MEMBERS.len());
        // The payload, then each disclosure after a NUL byte.
        let mut body = entry.record.payload.clone();
        for disclosure in &entry.record.disclosures {
            body.push(0);
            body.extend_from_slice(disclosure.as_bytes());
        }
        records.push(kind as u8);
        records.push(signer as u8);
        records.extend_from_slice(&(body.len() as u16).to_be_bytes());
        records.extend_from_slice(&body);
    }
    write("records", "disbursement", &records);
    let (_, note) = ledger.latest_checkpoint().expect("read").expect("checkpoint");
    write("checkpoint", "latest", note.as_bytes());
    let proof = ledger.proof_bundle(3).expect("proof bundle");
    write("bundle", "proof", &serde_json::to_vec(&proof).expect("json"));
    let applicant = ledger.applicant_bundle(&code).expect("bundle").expect("known code");
    write("bundle", "applicant", &serde_json::to_vec(&applicant).expect("json"));
    let mut export = String::new();
    ledger
        .export(0, ledger.size(), &mut |line| {
            export.push_str(&line.to_json());
            export.push('\n');
            Ok(())
        })
        .expect("export");
    write("export", "court", export.as_bytes());
    let body = caseledger::service::client::write_body(&[case.receipt("BANK-SEED", 1_000)]);
    let headers = httpsig::sign(
        &caseledger_keys::Identity::from_seed([3; 32]),
        "POST",
        "court.example",
        "/v1/records",
        None,
        &body,
        1_764_115_200,
        "seed-nonce-0123456789",
    );
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .expect(name)
    };
    let mut request = Vec::new();
    for field in [
        get("signature-input").into_bytes(),
        get("signature").into_bytes(),
        get("content-digest").into_bytes(),
        b"/v1/records".to_vec(),
    ] {
        request.extend_from_slice(&field);
        request.push(0);
    }
    request.push(0);
    request.extend_from_slice(&body);
    write("request_signature", "post-records", &request);
}
