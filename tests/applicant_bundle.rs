//! An applicant's bundle judges records as the auditor does: a genesis
//! record is the node's entry 0 and nothing else. A database insider who
//! forces a second genesis-kind record into the ledger (naming an
//! administrator of their own) and hands it to the applicant with a true
//! inclusion proof does not get its keys believed.

mod common;

use caseledger::court::CaseRecords;
use caseledger_ledger::store::Ledger;
use caseledger_verify::bundle::ApplicantBundle;
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::Role;
use caseledger_verify::record::{self, Genesis, GenesisKey, KeyText};
use caseledger_verify::threads::Thread;
use common::forgery::{node_sets_thread, push_proven};
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
    push_proven(&mut bundle, &ledger, seq);
    let refused = bundle.verify(&node).expect_err("an entry in no thread");
    assert!(refused.contains("belongs to no thread"), "{refused}");
    // The insider holds the node key: they put the record in a thread of
    // its own (a key line of their administrator) and sign a checkpoint
    // whose thread map says so. The bundle still refuses the genesis.
    let insider_line = Thread::KeyLine(insider.public_key().key_id());
    forge_threads(&mut bundle, &ledger, &[(insider_line, seq)]);
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

/// What an insider with the node key can do to a bundle: add `additions`
/// (thread, seq) to its threads (a thread not in it is taken whole from
/// the ledger first) under a thread map of their own.
fn forge_threads(bundle: &mut ApplicantBundle, ledger: &Ledger, additions: &[(Thread, u64)]) {
    let mut changed: std::collections::BTreeMap<Thread, Vec<u64>> = std::collections::BTreeMap::new();
    for (thread, seq) in additions {
        let seqs = changed.entry(thread.clone()).or_insert_with(|| {
            bundle
                .threads
                .iter()
                .find(|t| t.name == thread.name())
                .map(|t| t.seqs.clone())
                .unwrap_or_else(|| ledger.thread_seqs(thread, bundle.tree_size).expect("seqs"))
        });
        if !seqs.contains(seq) {
            seqs.push(*seq);
            seqs.sort_unstable();
        }
    }
    let changes: Vec<(Thread, Vec<u64>)> = changed.into_iter().collect();
    node_sets_thread(bundle, ledger, &changes);
}

/// Fourth attack round, second pass, finding A1: the court revokes the
/// bureau head's and finance's keys; approvals and a payment by them are
/// forced into storage afterwards. `verify` names them `revoked_key`; the
/// applicant's bundle carries the revocations and refuses them too (it
/// once believed revoked keys). Approvals made before a revocation still
/// verify.
#[test]
fn an_applicant_bundle_refuses_what_revoked_keys_signed_after_their_revocation() {
    use caseledger::court::sign;
    use caseledger_verify::record::{KeyRevoked, KIND_KEY_REVOKED};
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 171, CASE, 1, 6_000_000);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append_one(case.request("d-1", "acct-1", 1_000_000))
        .expect("request");
    let (code, issue) = case.applicant_code(1);
    ledger.append_one(issue).expect("code");
    let revoke = |who: &caseledger::court::Person| {
        let payload = KeyRevoked {
            key_id: who.identity.public_key().key_id().to_hex(),
            reason: "dismissed".into(),
        };
        sign(ORIGIN, KIND_KEY_REVOKED, &payload, &staff.administrator.identity)
    };
    // A revocation after an honest approval leaves the approval good.
    let approvals = case.approvals(ORIGIN, "d-1", "acct-1", 1_000_000, &[Role::BureauHead, Role::Finance]);
    ledger.append_one(approvals[0].clone()).expect("bureau head");
    ledger.append_one(revoke(&staff.bureau_head)).expect("revoked");
    let node = ledger.node_key();
    let bundle = ledger.applicant_bundle(&code).expect("bundle").expect("known code");
    bundle.verify(&node).expect("approved before the revocation");
    // Finance's key revoked, then its approval and a payment forced in.
    ledger.append_one(revoke(&staff.finance)).expect("revoked");
    assert_eq!(refused_rule(&ledger, approvals[1].clone()), "revoked_key");
    ledger.close().expect("close");
    let forced = [
        force_append(dir.path(), approvals[1].clone()),
        force_append(dir.path(), case.payment("d-1", "PAY-1", "acct-1", 1_000_000)),
    ];
    let report = audit(dir.path());
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.seq == forced[0] && v.rule == "revoked_key"),
        "{:?}",
        report.violations
    );
    let ledger = Ledger::open_read_only(dir.path()).expect("open");
    let mut bundle = ledger.applicant_bundle(&code).expect("bundle").expect("known code");
    // The insider adds the forced entries and finance's key entries, all
    // with true inclusion proofs.
    let registry = ledger.registry().expect("registry");
    let finance = registry
        .info(&staff.finance.identity.public_key().key_id())
        .expect("registered");
    let key_entries = [Some(finance.registered_seq), finance.co_signed_seq, finance.revoked_seq];
    for seq in key_entries.into_iter().flatten().chain(forced) {
        push_proven(&mut bundle, &ledger, seq);
    }
    let refused = bundle.verify(&node).expect_err("entries in no thread");
    assert!(refused.contains("belongs to no thread"), "{refused}");
    // With the node key, the insider also writes the forced entries into
    // the disbursement's and the case's threads and adds finance's key
    // line: the revocation in that line still refuses them.
    let finance_line = Thread::KeyLine(staff.finance.identity.public_key().key_id());
    let line = ledger.thread_seqs(&finance_line, bundle.tree_size).expect("line");
    assert_eq!(line, key_entries.into_iter().flatten().collect::<Vec<_>>());
    let disbursement = Thread::Disbursement("d-1".into());
    let case_thread = Thread::Case(CASE.into());
    forge_threads(
        &mut bundle,
        &ledger,
        &[
            (finance_line, line[0]),
            (disbursement.clone(), forced[0]),
            (disbursement, forced[1]),
            (case_thread, forced[1]),
        ],
    );
    let refused = bundle.verify(&node).expect_err("signed after its key was revoked");
    assert!(refused.contains("revoked"), "{refused}");
}
