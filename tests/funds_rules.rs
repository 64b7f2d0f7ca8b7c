//! Each case-fund rule refuses at write time with its stable rule name, and
//! a refused record changes nothing.

mod common;

use std::sync::Arc;

use caseledger::commitments::COMMITMENT_ACCOUNT;
use caseledger::court::{sign, CaseRecords, Staff};
use caseledger_ledger::store::Ledger;
use caseledger_verify::funds::model::*;
use caseledger_verify::record::{self, KeyRevoked};
use common::*;

const CASE: &str = "(2024)苏02执77号";
const AMOUNT: u64 = 3_000_000;

/// A case with one confirmed account, ¥50,000 received and a pending
/// ¥30,000 disbursement "d-1" (chain: bureau head, finance).
fn ready(dir: &std::path::Path) -> (Ledger, Staff) {
    let (ledger, staff) = court_with_case(dir, 11, CASE, 2, 5_000_000);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger.append_one(case.request("d-1", "acct-1", AMOUNT)).expect("setup");
    (ledger, staff)
}

fn unchanged(ledger: &Ledger, size: u64) {
    assert_eq!(ledger.size(), size, "a refused record wrote nothing");
}

#[test]
fn overdraft_is_refused_even_when_two_requests_race() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = ready(dir.path());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let size = ledger.size();
    assert_eq!(
        refused_rule(&ledger, case.request("d-2", "acct-1", 2_000_001)),
        "balance"
    );
    unchanged(&ledger, size);
    // ¥20,000 is left: two concurrent requests of ¥15,000 cannot both pass.
    let ledger = Arc::new(ledger);
    let racers: Vec<_> = ["d-a", "d-b"]
        .into_iter()
        .map(|id| {
            let ledger = Arc::clone(&ledger);
            let record = case.request(id, "acct-1", 1_500_000);
            std::thread::spawn(move || ledger.append_one(record).is_ok())
        })
        .collect();
    let passed = racers
        .into_iter()
        .filter(|_| true)
        .map(|h| h.join().expect("thread"))
        .filter(|ok| *ok)
        .count();
    assert_eq!(passed, 1, "exactly one of the racing requests is accepted");
    let view = ledger.case_view(CASE, 0).expect("read").expect("case");
    assert_eq!((view.case.available_fen, view.case.reserved_fen), (500_000, 4_500_000));
}

#[test]
fn steps_follow_the_chain_in_order_by_the_right_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = ready(dir.path());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let size = ledger.size();
    let approve =
        |step, role, signer| case.approval(ORIGIN, "d-1", "acct-1", AMOUNT, step, role, Decision::Approve, signer);
    // Finance cannot sign before the bureau head.
    assert_eq!(
        refused_rule(&ledger, approve(2, Role::Finance, &staff.finance)),
        "step_order"
    );
    assert_eq!(
        refused_rule(&ledger, approve(1, Role::Finance, &staff.finance)),
        "step_order"
    );
    // The court leader cannot sign the bureau head's step.
    assert_eq!(
        refused_rule(&ledger, approve(1, Role::BureauHead, &staff.court_leader)),
        "role"
    );
    // A statement naming another amount or payee is not this disbursement.
    let wrong_amount = case.approval(
        ORIGIN,
        "d-1",
        "acct-1",
        AMOUNT + 1,
        1,
        Role::BureauHead,
        Decision::Approve,
        &staff.bureau_head,
    );
    assert_eq!(refused_rule(&ledger, wrong_amount), "statement");
    let other_ledger = case.approval(
        "other.ledger/x",
        "d-1",
        "acct-1",
        AMOUNT,
        1,
        Role::BureauHead,
        Decision::Approve,
        &staff.bureau_head,
    );
    assert_eq!(refused_rule(&ledger, other_ledger), "statement");
    unchanged(&ledger, size);
    let seq = ledger
        .append_one(approve(1, Role::BureauHead, &staff.bureau_head))
        .expect("bureau head");
    let size = ledger.size();
    assert_eq!(
        ledger
            .append_one(approve(1, Role::BureauHead, &staff.bureau_head))
            .expect("retry"),
        seq
    );
    unchanged(&ledger, size);
    // The same step signed again as a new request is refused: no step twice.
    let mut again = serde_json::from_slice::<ApprovalSigned>(&approve(1, Role::BureauHead, &staff.bureau_head).payload)
        .expect("json");
    again.request_id = "second-try".into();
    assert_eq!(
        refused_rule(
            &ledger,
            sign(ORIGIN, KIND_APPROVAL_SIGNED, &again, &staff.bureau_head.identity)
        ),
        "step_order"
    );
}

#[test]
fn separation_of_duties() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 12);
    // One person signs at most one step: a chain that names the same role
    // twice cannot be completed by the one member holding it.
    let admin = &staff.administrator.identity;
    let mut policy = caseledger::court::example_policy("policy-2", 2);
    policy.tiers[0].chain = vec![Role::BureauHead, Role::BureauHead, Role::Finance];
    ledger.append(staff.policy_records(&policy)).expect("policy v2");
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE).under_policy(2);
    ledger
        .append(
            [
                case.open(1),
                case.account("acct-1", 1, "6222000011110001"),
                vec![
                    case.confirm("acct-1"),
                    case.receipt("BANK-1", 5_000_000),
                    case.request("d-1", "acct-1", AMOUNT),
                ],
            ]
            .concat(),
        )
        .expect("setup");
    let approve =
        |step, role, signer| case.approval(ORIGIN, "d-1", "acct-1", AMOUNT, step, role, Decision::Approve, signer);
    ledger
        .append_one(approve(1, Role::BureauHead, &staff.bureau_head))
        .expect("first step");
    assert_eq!(
        refused_rule(&ledger, approve(2, Role::BureauHead, &staff.bureau_head)),
        "signed_twice"
    );
    // The requester is always the case's officer, and a policy that puts the
    // officer role into a chain is refused, so no requester holds a step.
    let mut officer_policy = caseledger::court::example_policy("policy-3", 3);
    officer_policy.tiers[0].chain = vec![Role::Officer, Role::Finance];
    assert_eq!(
        refused_rule(&ledger, sign(ORIGIN, KIND_POLICY_SET, &officer_policy, admin)),
        "policy"
    );
}

#[test]
fn the_requester_cannot_approve_even_with_an_approver_role() {
    // The requesting officer signing the bureau head's step is refused.
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 13);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append(
            [
                case.open(1),
                case.account("acct-1", 1, "6222000011110001"),
                vec![case.confirm("acct-1")],
            ]
            .concat(),
        )
        .expect("setup");
    ledger.append_one(case.receipt("BANK-1", 5_000_000)).expect("receipt");
    ledger
        .append_one(case.request("d-1", "acct-1", AMOUNT))
        .expect("request");
    let officer_as_head = case.approval(
        ORIGIN,
        "d-1",
        "acct-1",
        AMOUNT,
        1,
        Role::BureauHead,
        Decision::Approve,
        &staff.officers[0],
    );
    assert_eq!(refused_rule(&ledger, officer_as_head), "role");
}

#[test]
fn revoked_and_wrong_role_keys_sign_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = ready(dir.path());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    // Finance records receipts; an officer may not.
    let mut receipt = serde_json::from_slice::<ReceiptRecorded>(&case.receipt("BANK-2", 100).payload).expect("json");
    receipt.request_id = "r-officer".into();
    assert_eq!(
        refused_rule(
            &ledger,
            sign(ORIGIN, KIND_RECEIPT_RECORDED, &receipt, &staff.officers[0].identity)
        ),
        "role"
    );
    // Another officer is not this case's officer.
    let other = CaseRecords::new(&staff, &staff.officers[1], CASE);
    assert_eq!(refused_rule(&ledger, other.request("d-9", "acct-1", 100)), "role");
    let revoke = KeyRevoked {
        key_id: staff.bureau_head.identity.public_key().key_id().to_hex(),
        reason: "transferred".into(),
    };
    ledger
        .append_one(sign(
            ORIGIN,
            record::KIND_KEY_REVOKED,
            &revoke,
            &staff.administrator.identity,
        ))
        .expect("revoke bureau head");
    let approval = case.approval(
        ORIGIN,
        "d-1",
        "acct-1",
        AMOUNT,
        1,
        Role::BureauHead,
        Decision::Approve,
        &staff.bureau_head,
    );
    assert_eq!(refused_rule(&ledger, approval), "revoked_key");
}

#[test]
fn the_payee_is_a_confirmed_account_of_the_cases_applicant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = ready(dir.path());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let size = ledger.size();
    // An account for someone who is not an applicant.
    let (record, numbers) = case.account_request("acct-x", 1, "6222999900001111");
    let mut stranger = serde_json::from_slice::<AccountRegistered>(&record.payload).expect("json");
    stranger.applicant_id = "applicant-99".into();
    stranger.request_id = "acct-stranger".into();
    let stranger = sign(ORIGIN, KIND_ACCOUNT_REGISTERED, &stranger, &staff.officers[0].identity);
    assert_eq!(
        common::refused_batch(&ledger, staff.committed(stranger, COMMITMENT_ACCOUNT, &numbers)),
        "payee"
    );
    // An account in another name.
    let (record, numbers) = case.account_request("acct-y", 1, "6222999900002222");
    let mut other_name = serde_json::from_slice::<AccountRegistered>(&record.payload).expect("json");
    other_name.account_name = "假收款人".into();
    let other_name = sign(
        ORIGIN,
        KIND_ACCOUNT_REGISTERED,
        &other_name,
        &staff.officers[0].identity,
    );
    assert_eq!(
        common::refused_batch(&ledger, staff.committed(other_name, COMMITMENT_ACCOUNT, &numbers)),
        "payee"
    );
    unchanged(&ledger, size);
    // A registered but unconfirmed account cannot be paid.
    ledger
        .append(case.account("acct-2", 2, "6222000011110002"))
        .expect("second applicant's account");
    assert_eq!(refused_rule(&ledger, case.request("d-2", "acct-2", 100)), "account");
}

#[test]
fn an_account_change_needs_confirmation_and_the_bureau_heads_approval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = ready(dir.path());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append(case.account("acct-new", 1, "6222000099998888"))
        .expect("change registered");
    ledger.append_one(case.confirm("acct-new")).expect("applicant confirms");
    assert_eq!(
        refused_rule(&ledger, case.request("d-2", "acct-new", 100)),
        "account",
        "not approved yet"
    );
    let approval = AccountChangeApproved {
        request_id: "change-1".into(),
        account_id: "acct-new".into(),
    };
    assert_eq!(
        refused_rule(
            &ledger,
            sign(
                ORIGIN,
                KIND_ACCOUNT_CHANGE_APPROVED,
                &approval,
                &staff.officers[0].identity
            )
        ),
        "role"
    );
    ledger
        .append_one(sign(
            ORIGIN,
            KIND_ACCOUNT_CHANGE_APPROVED,
            &approval,
            &staff.bureau_head.identity,
        ))
        .expect("bureau head approves");
    ledger
        .append_one(case.request("d-2", "acct-new", 100))
        .expect("the new account is the payee now");
    assert_eq!(
        refused_rule(&ledger, case.request("d-3", "acct-1", 100)),
        "account",
        "the old account is superseded"
    );
}

#[test]
fn bank_references_are_unique_and_payments_match_the_approval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = ready(dir.path());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let mut conflicting =
        serde_json::from_slice::<ReceiptRecorded>(&case.receipt("BANK-1", 5_000_000).payload).expect("json");
    conflicting.request_id = "r-conflict".into();
    conflicting.amount_fen = 9_999;
    assert_eq!(
        refused_rule(
            &ledger,
            sign(ORIGIN, KIND_RECEIPT_RECORDED, &conflicting, &staff.finance.identity)
        ),
        "duplicate_reference"
    );
    assert_eq!(
        refused_rule(&ledger, case.payment("d-1", "PAY-1", "acct-1", AMOUNT)),
        "status",
        "not approved yet"
    );
    for approval in case.approvals(ORIGIN, "d-1", "acct-1", AMOUNT, &[Role::BureauHead, Role::Finance]) {
        ledger.append_one(approval).expect("approve");
    }
    assert_eq!(
        refused_rule(&ledger, case.payment("d-1", "PAY-1", "acct-1", AMOUNT + 1)),
        "payment_mismatch"
    );
    ledger
        .append(case.account("acct-2", 2, "6222000011110002"))
        .expect("account");
    ledger.append_one(case.confirm("acct-2")).expect("confirm");
    assert_eq!(
        refused_rule(&ledger, case.payment("d-1", "PAY-1", "acct-2", AMOUNT)),
        "payment_mismatch"
    );
    ledger
        .append_one(case.payment("d-1", "PAY-1", "acct-1", AMOUNT))
        .expect("pay");
    assert_eq!(
        refused_rule(&ledger, case.payment("d-1", "PAY-2", "acct-1", AMOUNT)),
        "status",
        "nothing after payment"
    );
    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
}

#[test]
fn bad_amounts_and_case_numbers_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 14);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger.append(case.open(1)).expect("open");
    assert_eq!(refused_rule(&ledger, case.receipt("BANK-0", 0)), "amount");
    assert_eq!(
        refused_rule(&ledger, case.receipt("BANK-BIG", 10_000_000_001)),
        "amount"
    );
    let bad = CaseRecords::new(&staff, &staff.officers[0], "2023-123");
    assert_eq!(common::refused_batch(&ledger, bad.open(1)), "case_number");
    // Fractional or negative amounts are not even valid payloads.
    let text = String::from_utf8(case.receipt("BANK-F", 100).payload)
        .expect("utf8")
        .replace("\"amount_fen\":100", "\"amount_fen\":1.5");
    let record = caseledger_verify::entry::Record::sign(
        ORIGIN,
        KIND_RECEIPT_RECORDED,
        text.into_bytes(),
        &staff.finance.identity,
    );
    assert_eq!(refused_rule(&ledger, record), "payload");
}

/// One person never loosens the money rules (issue 14 item 8): a policy
/// is only proposed by an administrator and is in force once a court
/// leader, holding another key, co-signs it; and some floors no signature
/// lowers: every chain has the bureau head and finance, SMS stays required
/// once on, the per-record ceiling and the 30-day deadline hold.
#[test]
fn a_policy_needs_a_second_person_and_keeps_its_floors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 14);
    let admin = &staff.administrator.identity;
    let in_force = |ledger: &Ledger| -> u32 {
        serde_json::from_slice::<PolicySet>(&ledger.state_object("policy").expect("read").expect("policy"))
            .expect("json")
            .version
    };
    let proposal = |policy: &PolicySet| sign(ORIGIN, KIND_POLICY_SET, policy, admin);
    let approval = |version: u32, proposed: &PolicySet, by: &caseledger::court::Person| {
        use sha2::Digest as _;
        let payload = PolicyApproved {
            request_id: format!("approve-{version}-{}-{}", by.member_id, proposed.request_id),
            version,
            proposal_sha256: hex::encode(sha2::Sha256::digest(&proposal(proposed).payload)),
        };
        sign(ORIGIN, KIND_POLICY_APPROVED, &payload, &by.identity)
    };
    // Floors.
    let mut unbounded = caseledger::court::example_policy("p-max", 2);
    unbounded.amount_max_fen = u64::MAX;
    let mut no_head = caseledger::court::example_policy("p-head", 2);
    no_head.tiers[0].chain = vec![Role::FundManager, Role::Finance];
    let mut slow = caseledger::court::example_policy("p-slow", 2);
    slow.deadline_days = 60;
    for loose in [&unbounded, &no_head, &slow] {
        assert_eq!(refused_rule(&ledger, proposal(loose)), "policy", "{loose:?}");
    }
    // A one-step chain without SMS, proposed alone, is not in force.
    let mut v2 = caseledger::court::example_policy("p-2", 2);
    v2.sms_confirmation_required = true;
    ledger.append_one(proposal(&v2)).expect("proposed");
    assert_eq!(in_force(&ledger), 1, "a proposal alone changes nothing");
    // Only a court leader co-signs it.
    assert_eq!(refused_rule(&ledger, approval(2, &v2, &staff.bureau_head)), "role");
    assert_eq!(refused_rule(&ledger, approval(3, &v2, &staff.court_leader)), "policy");
    // The co-signature names the proposal it approves: a proposal swapped
    // in after the court leader read another is not put in force.
    let mut swapped = v2.clone();
    swapped.request_id = "p-2-swapped".into();
    swapped.near_due_days = 1;
    ledger.append_one(proposal(&swapped)).expect("a second proposal of v2");
    assert_eq!(refused_rule(&ledger, approval(2, &v2, &staff.court_leader)), "policy");
    let mut again = v2.clone();
    again.request_id = "p-2-again".into();
    ledger.append_one(proposal(&again)).expect("proposed again");
    ledger
        .append_one(approval(2, &again, &staff.court_leader))
        .expect("co-signed");
    assert_eq!(in_force(&ledger), 2);
    // SMS, once required, stays required.
    let mut off = caseledger::court::example_policy("p-3", 3);
    off.sms_confirmation_required = false;
    assert_eq!(refused_rule(&ledger, proposal(&off)), "policy");
    // (An administrator cannot also hold the court leader's role: the
    // registry refuses a member whose role and flag disagree.)
    let mut v3 = caseledger::court::example_policy("p-3b", 3);
    v3.sms_confirmation_required = true;
    ledger.append_one(proposal(&v3)).expect("proposed");
    let by_head = approval(3, &v3, &staff.bureau_head);
    assert_eq!(refused_rule(&ledger, by_head.clone()), "role");
    // Forced behind the writer: named by verify.
    ledger.close().expect("close");
    let forced_head = force_append(dir.path(), by_head);
    let forced_loose = force_append(dir.path(), proposal(&unbounded));
    let report = audit(dir.path());
    for (seq, rule) in [(forced_head, "role"), (forced_loose, "policy")] {
        assert!(
            report.violations.iter().any(|v| v.seq == seq && v.rule == rule),
            "{rule} at {seq}: {:?}",
            report.violations
        );
    }
}
