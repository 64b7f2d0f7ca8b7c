//! Issue 16's attack round on the applicant bundle, as regressions: an
//! operator holding the node key signs checkpoints over thread maps of
//! their own and fills threads with the court's genuine entries, or forks
//! the ledger from its genesis; an honest ledger's bundle must still
//! verify after a rejected claim and a change of policy.

mod common;

use caseledger::court::{example_policy, sign, CaseRecords};
use caseledger_ledger::store::Ledger;
use caseledger_verify::funds::model::*;
use caseledger_verify::threads::Thread;
use common::forgery::node_sets_thread;
use common::*;

const CASE: &str = "(2026)苏02执1601号";
const CASE_B: &str = "(2026)苏02执1602号";

fn seqs(ledger: &Ledger, thread: &Thread) -> Vec<u64> {
    ledger.thread_seqs(thread, ledger.size()).expect("seqs")
}

/// F1. With the node key and the court's genuine entries only, the
/// operator puts d-1's approvals and payment in the thread of d-2
/// (requested, never approved, never paid) under a thread map of their
/// own: d-2 would show paid. Each entry names its disbursement, so the
/// bundle is refused.
#[test]
fn another_disbursements_entries_in_a_thread_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 161, CASE, 1, 6_000_000);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append_one(case.request("d-1", "acct-1", 1_000_000))
        .expect("d-1");
    ledger
        .append_one(case.request("d-2", "acct-1", 1_000_000))
        .expect("d-2");
    for approval in case.approvals(ORIGIN, "d-1", "acct-1", 1_000_000, &[Role::BureauHead, Role::Finance]) {
        ledger.append_one(approval).expect("approval");
    }
    ledger
        .append_one(case.payment("d-1", "PAY-1", "acct-1", 1_000_000))
        .expect("pay d-1");
    let (code, issue) = case.applicant_code(1);
    ledger.append_one(issue).expect("code");
    let node = ledger.node_key();
    let mut bundle = ledger.applicant_bundle(&code).expect("bundle").expect("code");
    let honest = bundle.verify(&node).expect("honest bundle");
    assert_eq!(honest.paid_to_applicant_fen, 1_000_000);

    let d1 = seqs(&ledger, &Thread::Disbursement("d-1".into()));
    let d2 = seqs(&ledger, &Thread::Disbursement("d-2".into()));
    assert_eq!(d2.len(), 1, "d-2 is only requested");
    let mut forged_d2 = vec![d2[0]];
    forged_d2.extend(&d1[1..]); // d-1's two approvals and its payment
    node_sets_thread(&mut bundle, &ledger, &[(Thread::Disbursement("d-2".into()), forged_d2)]);
    let refused = bundle.verify(&node).expect_err("d-1's entries in d-2's thread");
    assert!(
        refused.contains("is not about the disbursement d-2 thread"),
        "{refused}"
    );
    // The ledger's own state: d-2 pending.
    let view = ledger.case_view(CASE, 0).expect("read").expect("case");
    let stored = view
        .disbursements
        .iter()
        .find(|d| d.disbursement_id == "d-2")
        .expect("stored d-2");
    assert_eq!(stored.status, DisbursementStatus::Pending);
}

/// F1b. A payment of another case (its `disbursement_paid` names no case)
/// put in this case's thread by the node-key holder would count as this
/// case's money paid out: it pays no disbursement requested in this case's
/// thread, so the bundle is refused.
#[test]
fn another_cases_payment_in_a_case_thread_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 162, CASE, 1, 6_000_000);
    let other = CaseRecords::new(&staff, &staff.officers[0], CASE_B);
    ledger
        .append(
            [
                other.open(1),
                other.account("acct-b1", 1, "6222000099990001"),
                vec![
                    other.confirm("acct-b1"),
                    other.receipt("BANK-B", 5_000_000),
                    other.request("db-1", "acct-b1", 4_000_000),
                ],
                other.approvals(ORIGIN, "db-1", "acct-b1", 4_000_000, &[Role::BureauHead, Role::Finance]),
                vec![other.payment("db-1", "PAY-B", "acct-b1", 4_000_000)],
            ]
            .concat(),
        )
        .expect("the other case");
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let (code, issue) = case.applicant_code(1);
    ledger.append_one(issue).expect("code");
    let node = ledger.node_key();
    let mut bundle = ledger.applicant_bundle(&code).expect("bundle").expect("code");
    let honest = bundle.verify(&node).expect("honest");
    assert_eq!((honest.paid_out_fen, honest.held_fen), (0, 6_000_000));
    let pay_b = *seqs(&ledger, &Thread::Disbursement("db-1".into())).last().expect("pay");
    let mut case_seqs = seqs(&ledger, &Thread::Case(CASE.into()));
    case_seqs.push(pay_b);
    case_seqs.sort_unstable();
    // Finance's key line is already in the bundle (finance recorded BANK-1).
    node_sets_thread(&mut bundle, &ledger, &[(Thread::Case(CASE.into()), case_seqs)]);
    let refused = bundle.verify(&node).expect_err("another case's payment");
    assert!(
        refused.contains("(disbursement_paid) is not about the case"),
        "{refused}"
    );
}

/// F2. The node-key holder builds a second ledger (same origin, same node
/// key, administrators and staff of their own). Its bundle carries its own
/// genesis, whose hash the report gives: pinned beside the node key (the
/// page pins the one it is served with; `verify-bundle --genesis` the one
/// the court publishes), this fork is refused. A second history grown from
/// the *same* genesis is not (FORMAT §7a check 10): that needs checkpoints
/// seen before, or witnesses.
#[test]
fn a_fork_from_another_genesis_is_told_apart_by_its_genesis_hash() {
    let real_dir = tempfile::tempdir().expect("tempdir");
    let (real, _staff) = court_with_case(real_dir.path(), 163, CASE, 1, 6_000_000);
    let fake_dir = tempfile::tempdir().expect("tempdir");
    // Another staff (other keys), same node seed [1;32] and origin.
    let (fake, fake_staff) = court_with_case(fake_dir.path(), 999, CASE, 1, 90_000_000);
    let case = CaseRecords::new(&fake_staff, &fake_staff.officers[0], CASE);
    let (code, issue) = case.applicant_code(1);
    fake.append_one(issue).expect("code");
    let bundle = fake.applicant_bundle(&code).expect("bundle").expect("code");
    let report = bundle
        .verify(&real.node_key())
        .expect("the node key alone does not tell the fork apart");
    let real_genesis = hex::encode(caseledger_verify::hash::leaf_hash(
        &real.entry_bytes(0).expect("genesis"),
    ));
    assert_ne!(report.genesis_hash, real_genesis, "the report names the fork's genesis");
    // The command line, given the court's published genesis hash, refuses it.
    let file = fake_dir.path().join("bundle.json");
    std::fs::write(&file, serde_json::to_vec(&bundle).expect("json")).expect("write");
    let key = fake_dir.path().join("node.pub");
    std::fs::write(&key, real.node_key().to_spki_pem().expect("pem")).expect("write key");
    let run = |genesis: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
            .arg("verify-bundle")
            .arg(&file)
            .arg("--key")
            .arg(&key)
            .args(["--genesis", genesis])
            .output()
            .expect("verify-bundle")
    };
    let out = run(&real_genesis);
    let words = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{words}");
    assert!(
        words.contains("FAILED") && words.contains(&report.genesis_hash),
        "{words}"
    );
    let out = run(&report.genesis_hash.to_uppercase());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert_ne!(
        fake_staff.bureau_head.identity.public_key(),
        _staff.bureau_head.identity.public_key()
    );
}

/// F3 (honest ledger). A receipt claimed for case A and rejected, then
/// claimed for case B and approved after a policy change that lengthened
/// the deadline (10 -> 30 days), then delayed before the writer's deadline:
/// case A's bundle holds the receipt's thread (its rejected claim) and must
/// keep the deadline as the writer does (claim deadline while unidentified,
/// pay-out deadline from the approving decision, for any case).
#[test]
fn a_rejected_claim_and_a_policy_change_leave_an_honest_bundle_verifying() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clk = clock();
    let (ledger, staff) = court_with_clock(dir.path(), 164, clk.clone());
    let a = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let b = CaseRecords::new(&staff, &staff.officers[0], CASE_B);
    let mut v2 = example_policy("policy-2", 2);
    v2.deadline_days = 10;
    let v3 = example_policy("policy-3", 3); // 30 days again
    ledger
        .append(
            [
                a.open(1),
                a.account("acct-1", 1, "6222000011110001"),
                vec![a.confirm("acct-1"), a.receipt("BANK-A", 1_000_000)],
                b.open(1),
                staff.policy_records(&v2),
                vec![b.unidentified_receipt("UNID", 2_000_000, "2026-11-20")],
                staff.policy_records(&v3),
            ]
            .concat(),
        )
        .expect("setup");
    let claim = |case: &str, id: &str| {
        sign(
            ORIGIN,
            KIND_RECEIPT_CLAIMED,
            &ReceiptClaimed {
                request_id: id.into(),
                bank_reference: "UNID".into(),
                case_number: case.into(),
            },
            &staff.officers[0].identity,
        )
    };
    let decide = |case: &str, id: &str, decision: Decision| {
        sign(
            ORIGIN,
            KIND_RECEIPT_CLAIM_DECIDED,
            &ReceiptClaimDecided {
                request_id: id.into(),
                bank_reference: "UNID".into(),
                case_number: case.into(),
                decision,
            },
            &staff.fund_manager.identity,
        )
    };
    ledger.append_one(claim(CASE, "claim-a")).expect("claim for A");
    ledger
        .append_one(decide(CASE, "decide-a", Decision::Reject))
        .expect("rejected");
    ledger.append_one(claim(CASE_B, "claim-b")).expect("claim for B");
    ledger
        .append_one(decide(CASE_B, "decide-b", Decision::Approve))
        .expect("approved");
    // Day 20 after arrival: past the 10 days in force at the recording,
    // within the 30 in force at B's approval (the writer's deadline).
    clk.0
        .store(CLOCK_START_MS + 19 * DAY_MS, std::sync::atomic::Ordering::SeqCst);
    ledger
        .append_one(sign(
            ORIGIN,
            KIND_DELAY_APPROVED,
            &DelayApproved {
                request_id: "delay-unid".into(),
                bank_reference: "UNID".into(),
                reason: DelayReason::FrozenForAnotherCase,
                text: None,
                new_due_date: "2027-01-10".into(),
            },
            &staff.bureau_head.identity,
        ))
        .expect("the writer admits the delay: B's deadline has not passed");
    let (code, issue) = a.applicant_code(1);
    ledger.append_one(issue).expect("code");
    let node = ledger.node_key();
    let bundle = ledger.applicant_bundle(&code).expect("bundle").expect("code");
    let report = bundle.verify(&node).expect("case A's honest bundle verifies");
    assert!(
        report.receipts.iter().all(|r| r.bank_reference != "UNID"),
        "B's money is not A's"
    );
    // Case B's own bundle is fine; the ledger audits clean.
    let (code_b, issue_b) = b.applicant_code(1);
    ledger.append_one(issue_b).expect("code b");
    ledger
        .applicant_bundle(&code_b)
        .expect("bundle")
        .expect("code")
        .verify(&node)
        .expect("B verifies");
    audit_ok(&ledger);
}

/// G2a (second attack round). A request names the policy version it is
/// made under: refused when it names another than the one in force (and
/// named by `verify` when forced into storage), so the node-key holder
/// cannot drop a later policy (one that shortened the deadline) from the
/// policy thread of a bundle that holds a request made under it.
#[test]
fn a_request_names_its_policy_so_a_dropped_policy_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 165, CASE, 1, 6_000_000);
    let mut v2 = example_policy("policy-2", 2);
    v2.deadline_days = 10;
    ledger.append(staff.policy_records(&v2)).expect("policy v2");
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    // Written: a request naming policy 1 while 2 is in force is refused.
    assert_eq!(
        refused_rule(&ledger, case.request("d-1", "acct-1", 1_000_000)),
        "policy"
    );
    let case = case.under_policy(2);
    ledger
        .append_one(case.request("d-1", "acct-1", 1_000_000))
        .expect("request under v2");
    let (code, issue) = case.applicant_code(1);
    ledger.append_one(issue).expect("code");
    let node = ledger.node_key();
    let mut bundle = ledger.applicant_bundle(&code).expect("bundle").expect("code");
    let honest = bundle.verify(&node).expect("honest");
    assert_eq!((honest.deadline_days, honest.disbursements[0].policy_version), (10, 2));
    // The node-key holder leaves policy 2 (its proposal and approval, the
    // tail of the policy thread) out: the request still names it.
    let policy = seqs(&ledger, &Thread::Policy);
    node_sets_thread(
        &mut bundle,
        &ledger,
        &[(Thread::Policy, policy[..policy.len() - 2].to_vec())],
    );
    let shown: std::collections::BTreeSet<u64> = bundle.threads.iter().flat_map(|t| t.seqs.clone()).collect();
    bundle.entries.retain(|e| shown.contains(&e.seq));
    let refused = bundle.verify(&node).expect_err("a policy left out");
    assert!(refused.contains("names a policy version"), "{refused}");

    // Forced into storage behind the service: `verify` names it.
    ledger.close().expect("close");
    let forced = force_append(
        dir.path(),
        CaseRecords::new(&staff, &staff.officers[0], CASE).request("d-2", "acct-1", 500_000),
    );
    let report = audit(dir.path());
    assert!(
        report.violations.iter().any(|v| v.seq == forced && v.rule == "policy"),
        "{:?}",
        report.violations
    );
}
