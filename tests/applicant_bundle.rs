//! An applicant's bundle judges records as the auditor does: a genesis
//! record is the node's entry 0 and nothing else. A database insider who
//! forces a second genesis-kind record into the ledger (naming an
//! administrator of their own) and hands it to the applicant with a true
//! inclusion proof does not get its keys believed.

mod common;

use base64::Engine as _;
use caseledger::court::CaseRecords;
use caseledger_ledger::store::Ledger;
use caseledger_verify::bundle::ProvenEntry;
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::Role;
use caseledger_verify::record::{self, Genesis, GenesisKey, KeyText};
use common::*;

const CASE: &str = "(2024)苏02执31号";

#[test]
fn a_second_genesis_in_an_applicant_bundle_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 33, CASE, 1, 6_000_000);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append_one(case.request("d-1", "acct-1", 1_000_000))
        .expect("request");
    for approval in case.approvals(ORIGIN, "d-1", "acct-1", 1_000_000, &[Role::BureauHead, Role::Finance]) {
        ledger.append_one(approval).expect("approval");
    }
    let (code, issue) = case.applicant_code(1);
    ledger.append_one(issue).expect("code");
    ledger.close().expect("close");

    // The insider's genesis-kind record, naming their own administrator.
    let insider = caseledger_keys::Identity::from_seed([66; 32]);
    let genesis = Genesis {
        origin: ORIGIN.into(),
        node_key: KeyText::from_key(&insider.public_key()),
        administrators: vec![GenesisKey {
            name: "insider".into(),
            public_key: KeyText::from_key(&insider.public_key()),
        }],
        demo: false,
    };
    let forged = Record::sign(
        ORIGIN,
        record::KIND_GENESIS,
        serde_json::to_vec(&genesis).expect("json"),
        &insider,
    );
    let seq = force_append(dir.path(), forged);

    let ledger = Ledger::open(dir.path(), clock(), options()).expect("open");
    let node = ledger.node_key();
    let mut bundle = ledger.applicant_bundle(&code).expect("bundle").expect("known code");
    bundle.verify(&node).expect("the genuine bundle verifies");
    // The forged entry is in the checkpointed tree: its proof is true.
    let proof = ledger.inclusion_proof(seq, bundle.tree_size).expect("proof");
    bundle.entries.push(ProvenEntry {
        seq,
        entry: base64::engine::general_purpose::STANDARD.encode(ledger.entry_bytes(seq).expect("entry")),
        inclusion_proof: proof
            .iter()
            .map(|h| base64::engine::general_purpose::STANDARD.encode(h))
            .collect(),
    });
    let refused = bundle.verify(&node).expect_err("a second genesis");
    assert!(refused.contains("genesis"), "{refused}");
    // The auditor refuses the same record at the same place.
    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(
        report.violations.iter().any(|v| v.seq == seq && v.rule == "genesis"),
        "{:?}",
        report.violations
    );
}
