//! Known-answer vectors for every hashed or signed byte layout in
//! docs/FORMAT.md. The values are rebuilt from fixed keys and compared with
//! tests/data/format-vectors.json, and docs/FORMAT.md must quote them, so the
//! code, the golden file and the specification cannot drift apart.
//! Set CASELEDGER_WRITE_VECTORS=1 to rewrite the golden file after a
//! deliberate format change.

use caseledger_keys::{context, note, Identity};
use caseledger_verify::checkpoint::Checkpoint;
use caseledger_verify::entry::{Entry, Record};
use caseledger_verify::funds::model::{
    account_binding, account_code_commitment, applicant_code_hash, phone_binding, phone_code_commitment,
    sms_commitment, AccountState, AccountStatus, Applicant, Role, StepStatement,
};
use caseledger_verify::hash::{leaf_hash, node_hash};
use caseledger_verify::record;
use caseledger_verify::threads::{value_of, Thread};
use serde_json::{json, Value};

/// The origin of the vectors' ledger (record signatures cover it).
const ORIGIN: &str = "court.example/ledger";

fn vectors() -> Value {
    let seed: [u8; 32] = core::array::from_fn(|i| i as u8);
    let signer = Identity::from_seed(seed);
    let public = signer.public_key();
    let payload = br#"{"number":1,"text":"first demo note"}"#.to_vec();
    let record = Record::sign(ORIGIN, record::KIND_DEMO_NOTE, payload.clone(), &signer);
    let entry = Entry {
        seq: 5,
        timestamp_ms: 1_764_115_200_000,
        prev_hash: [0xab; 32],
        record,
    };
    let bytes = entry.encode();
    let leaf = leaf_hash(&bytes);
    let node_seed: [u8; 32] = [0x42; 32];
    let node = note::Signer::new("court.example/ledger", Identity::from_seed(node_seed)).expect("signer");
    let checkpoint = Checkpoint {
        origin: "court.example/ledger".into(),
        size: 6,
        root: node_hash(&leaf, &leaf),
        threads: thread_map_vector().root(),
    };
    let code_salt = "00112233445566778899aabbccddeeff";
    let step_binding = StepStatement {
        origin: "court.example/ledger",
        disbursement_id: "d-1",
        case_number: "(2023)苏02执123号",
        amount_fen: 4_000_000,
        account_id: "acct-1",
        step: 1,
        role: Role::BureauHead,
        member_id: "head-1",
    }
    .binding();
    let account = AccountState {
        account_id: "acct-1".into(),
        case_number: "(2023)苏02执123号".into(),
        applicant_id: "applicant-1".into(),
        bank: "中国工商银行无锡分行".into(),
        account_name: "申请人1".into(),
        account_number_masked: "****2222".into(),
        account_number_commitment: "ab".repeat(32),
        status: AccountStatus::Pending,
        confirmed: false,
        replaces: None,
        change_approved: true,
        registered_seq: 9,
    };
    let account_binding = account_binding("court.example/ledger", &account);
    let applicant = Applicant {
        applicant_id: "applicant-1".into(),
        name: "申请人1".into(),
        phone_masked: "****0001".into(),
        phone_commitment: "cd".repeat(32),
    };
    json!({
        "sms_code_salt": code_salt,
        "sms_code": "482913",
        "sms_step_binding": step_binding,
        "sms_step_commitment_hex": sms_commitment(code_salt, "482913", &step_binding),
        "account_binding": account_binding,
        "account_code_commitment_hex": account_code_commitment(code_salt, "482913", &account_binding),
        "phone_binding": phone_binding("court.example/ledger", "(2023)苏02执123号", &applicant),
        "phone_code_commitment_hex": phone_code_commitment(
            code_salt,
            "482913",
            &phone_binding("court.example/ledger", "(2023)苏02执123号", &applicant)
        ),
        "applicant_code": "0123456789abcdef0123456789abcdef",
        "applicant_code_hash_hex": applicant_code_hash("0123456789abcdef0123456789abcdef"),
        "applicant_code_random_hex": "00112233445566778899",
        "applicant_code_v2": caseledger_verify::funds::applicant_code::from_random([
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99
        ]),
        "applicant_code_v2_grouped": caseledger_verify::funds::applicant_code::grouped(
            &caseledger_verify::funds::applicant_code::from_random([
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99
            ])
        ),
        "applicant_code_v2_hash_hex": applicant_code_hash(&caseledger_verify::funds::applicant_code::from_random([
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99
        ])),
        "signer_seed_hex": hex::encode(seed),
        "signer_public_key_base64": public.to_base64(),
        "signer_key_id_hex": public.key_id().to_hex(),
        "record_context": context::LEDGER_RECORD,
        "record_origin": ORIGIN,
        "record_kind": record::KIND_DEMO_NOTE,
        "record_payload": String::from_utf8(payload).expect("utf8"),
        "record_signed_message_hex": hex::encode(entry.record.signed_message(ORIGIN)),
        "record_signature_hex": hex::encode(entry.record.signature.to_bytes()),
        "entry_seq": entry.seq,
        "entry_timestamp_ms": entry.timestamp_ms,
        "entry_prev_hash_hex": hex::encode(entry.prev_hash),
        "entry_bytes_hex": hex::encode(&bytes),
        "entry_leaf_hash_hex": hex::encode(leaf),
        "node_hash_of_leaf_leaf_hex": hex::encode(node_hash(&leaf, &leaf)),
        "node_seed_hex": hex::encode(node_seed),
        "node_verifier_key": node.verifier().to_string(),
        "thread_case_name": case_thread().name(),
        "thread_case_key_hex": hex::encode(case_thread().key()),
        "thread_case_seqs": [3, 5, 9],
        "thread_case_value_hex": hex::encode(value_of(&case_thread(), &[3, 5, 9])),
        "thread_policy_value_hex": hex::encode(value_of(&Thread::Policy, &[1, 2])),
        "thread_map_root_hex": hex::encode(thread_map_vector().root()),
        "thread_map_case_proof_hex": thread_map_vector()
            .proof(&case_thread().key())
            .expect("present")
            .iter()
            .map(hex::encode)
            .collect::<Vec<_>>(),
        "checkpoint_body": checkpoint.body(),
        "checkpoint_signed_note": checkpoint.sign(&node).expect("sign"),
    })
}

fn case_thread() -> Thread {
    Thread::Case("(2023)苏02执123号".into())
}

/// A thread map of two threads: the case's (entries 3, 5, 9) and the
/// policy's (entries 1, 2).
fn thread_map_vector() -> caseledger_verify::thread_map::ThreadMap {
    let mut map = caseledger_verify::thread_map::ThreadMap::new();
    map.set(case_thread().key(), value_of(&case_thread(), &[3, 5, 9]));
    map.set(Thread::Policy.key(), value_of(&Thread::Policy, &[1, 2]));
    map
}

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/format-vectors.json");
const FORMAT_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/FORMAT.md");

#[test]
fn format_vectors_match_the_golden_file() {
    let computed = vectors();
    if std::env::var("CASELEDGER_WRITE_VECTORS").is_ok() {
        let text = serde_json::to_string_pretty(&computed).expect("json") + "\n";
        std::fs::write(GOLDEN, text).expect("write golden file");
    }
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(GOLDEN).expect("golden file")).expect("json");
    assert_eq!(
        computed, golden,
        "the byte format changed; update docs/FORMAT.md and the golden file together"
    );
}

#[test]
fn format_md_quotes_the_vectors() {
    let computed = vectors();
    let format = std::fs::read_to_string(FORMAT_MD).expect("docs/FORMAT.md");
    for field in [
        "signer_key_id_hex",
        "record_signature_hex",
        "entry_bytes_hex",
        "entry_leaf_hash_hex",
        "node_verifier_key",
        "sms_step_commitment_hex",
        "account_code_commitment_hex",
        "phone_code_commitment_hex",
        "applicant_code_hash_hex",
        "applicant_code_v2_grouped",
        "applicant_code_v2_hash_hex",
        "thread_case_key_hex",
        "thread_case_value_hex",
        "thread_policy_value_hex",
        "thread_map_root_hex",
    ] {
        let value = computed[field].as_str().expect("string");
        assert!(
            format.contains(value),
            "docs/FORMAT.md does not quote {field} = {value}"
        );
    }
    for line in computed["checkpoint_signed_note"].as_str().expect("string").lines() {
        assert!(
            format.contains(line),
            "docs/FORMAT.md does not quote checkpoint line {line:?}"
        );
    }
    for context in context::ALL {
        assert!(
            format.contains(context),
            "docs/FORMAT.md does not list context {context}"
        );
    }
}
