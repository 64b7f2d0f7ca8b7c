//! Who gets paid, and who must approve it (issue 14, items 4 to 6):
//! an applicant has one payable account at a time, any second registration
//! is a change for the bureau head, one account number belongs to one
//! applicant of a case, masks and commitments have their form, and
//! splitting a payment (across requests, or by parking one) does not skip
//! approvers. Each is refused when written, and named by `verify` at the
//! right seq when forced into storage behind the service.

mod common;

use std::sync::atomic::Ordering;

use caseledger::commitments::COMMITMENT_ACCOUNT;
use caseledger::court::{sign, CaseRecords, Staff};
use caseledger_ledger::store::Ledger;
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::*;
use common::*;

const CASE: &str = "(2026)苏02执77号";

fn account(ledger: &Ledger, id: &str) -> AccountState {
    serde_json::from_slice(
        &ledger
            .state_object(&format!("account/{id}"))
            .expect("read")
            .expect("exists"),
    )
    .expect("json")
}

fn disbursement(ledger: &Ledger, id: &str) -> DisbursementState {
    serde_json::from_slice(
        &ledger
            .state_object(&format!("disbursement/{id}"))
            .expect("read")
            .expect("exists"),
    )
    .expect("json")
}

/// The case officer's cancellation of `disbursement_id`.
fn cancelled(staff: &Staff, disbursement_id: &str) -> Record {
    let payload = DisbursementCancelled {
        request_id: format!("cancel-{disbursement_id}"),
        disbursement_id: disbursement_id.into(),
        reason: "重新申请".into(),
    };
    caseledger::court::sign_revealed(
        ORIGIN,
        KIND_DISBURSEMENT_CANCELLED,
        &payload,
        &staff.officers[0].identity,
    )
}

fn change_approved(staff: &Staff, account_id: &str) -> Record {
    let payload = AccountChangeApproved {
        request_id: format!("change-approved-{account_id}"),
        account_id: account_id.into(),
    };
    sign(
        ORIGIN,
        KIND_ACCOUNT_CHANGE_APPROVED,
        &payload,
        &staff.bureau_head.identity,
    )
}

/// A case with applicant 1 and ¥500,000 received, no account yet.
fn case_without_account(dir: &std::path::Path, seed: u64) -> (Ledger, Staff) {
    let (ledger, staff) = court(dir, seed);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append([case.open(2), vec![case.receipt("BANK-1", 50_000_000)]].concat())
        .expect("case");
    (ledger, staff)
}

#[test]
fn a_second_account_registered_while_the_first_is_pending_is_a_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = case_without_account(dir.path(), 51);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append(
            [
                case.account("acct-1", 1, "6222000011110001"),
                case.account("acct-2", 1, "6222000011110002"),
            ]
            .concat(),
        )
        .expect("two registrations");
    let second = account(&ledger, "acct-2");
    assert_eq!(second.replaces.as_deref(), Some("acct-1"));
    assert!(!second.change_approved, "the bureau head must approve it");
    // Both confirmed by the applicant: only the first becomes payable.
    ledger
        .append(vec![case.confirm("acct-1"), case.confirm("acct-2")])
        .expect("confirmed");
    assert_eq!(account(&ledger, "acct-1").status, AccountStatus::Active);
    assert_eq!(account(&ledger, "acct-2").status, AccountStatus::Pending);
    assert_eq!(
        refused_rule(&ledger, case.request("d-2", "acct-2", 1_000_000)),
        "account"
    );
    // A disbursement to the first account, then the change is approved:
    // the old account is superseded, and nothing is approved or paid to it.
    ledger
        .append_one(case.request("d-1", "acct-1", 1_000_000))
        .expect("to acct-1");
    ledger
        .append_one(change_approved(&staff, "acct-2"))
        .expect("change approved");
    assert_eq!(account(&ledger, "acct-1").status, AccountStatus::Superseded);
    assert_eq!(account(&ledger, "acct-2").status, AccountStatus::Active);
    let step = |n, role, signer| case.approval(ORIGIN, "d-1", "acct-1", 1_000_000, n, role, Decision::Approve, signer);
    assert_eq!(
        refused_rule(&ledger, step(1, Role::BureauHead, &staff.bureau_head)),
        "account"
    );
    assert_eq!(
        refused_rule(&ledger, case.request("d-3", "acct-1", 1_000_000)),
        "account"
    );
    ledger
        .append_one(case.request("d-4", "acct-2", 1_000_000))
        .expect("to the new account");
    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
}

#[test]
fn an_approved_change_supersedes_a_pending_account_for_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = case_without_account(dir.path(), 52);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append(
            [
                case.account("acct-1", 1, "6222000011110001"),
                case.account("acct-2", 1, "6222000011110002"),
                vec![change_approved(&staff, "acct-2"), case.confirm("acct-2")],
            ]
            .concat(),
        )
        .expect("the change first");
    assert_eq!(account(&ledger, "acct-2").status, AccountStatus::Active);
    assert_eq!(account(&ledger, "acct-1").status, AccountStatus::Superseded);
    // The first account cannot come back by a late confirmation.
    assert_eq!(refused_rule(&ledger, case.confirm("acct-1")), "account");
    // Applicant 2's accounts are apart: their first needs no approval.
    ledger
        .append(
            [
                case.account("acct-3", 2, "6222000011110003"),
                vec![case.confirm("acct-3")],
            ]
            .concat(),
        )
        .expect("applicant 2");
    assert_eq!(account(&ledger, "acct-3").status, AccountStatus::Active);
}

#[test]
fn forced_payments_and_confirmations_to_a_superseded_account_are_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = case_without_account(dir.path(), 53);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let mut setup = case.account("acct-1", 1, "6222000011110001");
    setup.extend([case.confirm("acct-1"), case.request("d-1", "acct-1", 1_000_000)]);
    setup.extend(case.approvals(ORIGIN, "d-1", "acct-1", 1_000_000, &[Role::BureauHead, Role::Finance]));
    setup.extend(case.account("acct-2", 1, "6222000011110002"));
    setup.extend([case.confirm("acct-2"), change_approved(&staff, "acct-2")]);
    setup.extend(case.account("acct-3", 1, "6222000011110003"));
    ledger.append(setup).expect("d-1 approved, then the account changed");
    assert_eq!(disbursement(&ledger, "d-1").status, DisbursementStatus::Approved);
    let payment = case.payment("d-1", "PAY-1", "acct-1", 1_000_000);
    assert_eq!(refused_rule(&ledger, payment.clone()), "account");
    ledger.close().expect("close");
    // Paying the old account; confirming it again; paying a second account
    // the bureau head never approved.
    let paid = force_append(dir.path(), payment);
    let again = AccountConfirmed {
        request_id: "reconfirm-acct-1".into(),
        account_id: "acct-1".into(),
        sms: None,
        confirmation: Some("in-person-again".into()),
    };
    let again = sign(ORIGIN, KIND_ACCOUNT_CONFIRMED, &again, &staff.officers[0].identity);
    let reconfirmed = force_append(dir.path(), again);
    let unapproved = force_append(dir.path(), case.request("d-9", "acct-3", 1_000_000));
    let report = audit(dir.path());
    for seq in [paid, reconfirmed, unapproved] {
        assert!(
            report.violations.iter().any(|v| v.seq == seq && v.rule == "account"),
            "seq {seq}: {:?}",
            report.violations
        );
    }
}

/// Tiers: below ¥100,000 the bureau head and finance; from ¥100,000 the
/// fund manager, bureau head, court leader and finance.
fn tiered_court(dir: &std::path::Path, seed: u64) -> (Ledger, Staff, std::sync::Arc<TestClock>) {
    let clock = clock();
    let (ledger, staff) = court_with_clock(dir, seed, clock.clone());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append(
            [
                case.open(2),
                case.account("acct-1", 1, "6222000011110001"),
                vec![case.confirm("acct-1")],
                case.account("acct-2", 2, "6222000011110002"),
                vec![case.confirm("acct-2"), case.receipt("BANK-1", 100_000_000)],
            ]
            .concat(),
        )
        .expect("case");
    (ledger, staff, clock)
}

const JUST_BELOW: u64 = 9_999_999; // ¥99,999.99

#[test]
fn splitting_a_payment_does_not_skip_approvers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff, _clock) = tiered_court(dir.path(), 54);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let long = vec![Role::FundManager, Role::BureauHead, Role::CourtLeader, Role::Finance];
    let short = vec![Role::BureauHead, Role::Finance];
    ledger
        .append_one(case.request("d-1", "acct-1", JUST_BELOW))
        .expect("first half");
    assert_eq!(disbursement(&ledger, "d-1").chain, short);
    ledger
        .append_one(case.request("d-2", "acct-1", JUST_BELOW))
        .expect("second half");
    let second = disbursement(&ledger, "d-2");
    assert_eq!(second.chain, long, "the split reaches the court leader");
    assert_eq!(second.tier_basis_fen, 2 * JUST_BELOW);
    // Another applicant's disbursement is apart.
    ledger
        .append_one(case.request("d-3", "acct-2", JUST_BELOW))
        .expect("applicant 2");
    assert_eq!(disbursement(&ledger, "d-3").chain, short);
    // A cancelled one no longer counts.
    ledger.append_one(cancelled(&staff, "d-2")).expect("cancelled");
    ledger.append_one(case.request("d-4", "acct-1", 1_000)).expect("small");
    // d-1 and d-4 (not the cancelled d-2): ¥100,009.99 reaches the long chain.
    assert_eq!(disbursement(&ledger, "d-4").tier_basis_fen, JUST_BELOW + 1_000);
    assert_eq!(disbursement(&ledger, "d-4").chain, long);
    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
}

#[test]
fn a_forced_step_that_skips_the_tier_of_a_split_is_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff, _clock) = tiered_court(dir.path(), 55);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append(vec![
            case.request("d-1", "acct-1", JUST_BELOW),
            case.request("d-2", "acct-1", JUST_BELOW),
        ])
        .expect("split");
    // The bureau head signs d-2's first step as if the short chain held.
    let skipped = case.approval(
        ORIGIN,
        "d-2",
        "acct-1",
        JUST_BELOW,
        1,
        Role::BureauHead,
        Decision::Approve,
        &staff.bureau_head,
    );
    assert_eq!(refused_rule(&ledger, skipped.clone()), "step_order");
    ledger.close().expect("close");
    let seq = force_append(dir.path(), skipped);
    let report = audit(dir.path());
    assert!(
        report.violations.iter().any(|v| v.seq == seq && v.rule == "step_order"),
        "{:?}",
        report.violations
    );
}

#[test]
fn one_account_number_belongs_to_one_applicant_of_a_case() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = case_without_account(dir.path(), 56);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append(
            [
                case.account("acct-1", 1, "6222000099990001"),
                vec![case.confirm("acct-1")],
            ]
            .concat(),
        )
        .expect("applicant 1");
    // The same number under applicant 2 would pay one creditor as two,
    // each below the tier of the whole.
    let twin = case.account("acct-2", 2, "6222000099990001");
    let size = ledger.size();
    assert_eq!(common::refused_batch(&ledger, twin.clone()), "payee");
    assert_eq!(ledger.size(), size, "nothing written");
    // The same applicant may register it again (a change back).
    ledger
        .append(case.account("acct-3", 1, "6222000099990001"))
        .expect("applicant 1 again");
    ledger.close().expect("close");
    // The node's commitment, then the officer's registration.
    let seqs: Vec<u64> = twin
        .into_iter()
        .map(|record| force_append(dir.path(), record))
        .collect();
    let seq = seqs[1];
    let report = audit(dir.path());
    assert!(
        report.violations.iter().any(|v| v.seq == seq && v.rule == "payee"),
        "{:?}",
        report.violations
    );
}

#[test]
fn masks_and_commitments_that_are_not_one_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = case_without_account(dir.path(), 57);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    // The officer's registration with the mask `mask` (and the commitment
    // `given`, which only the node makes), after the node's commitment
    // `node` (its HMAC of the number when `None`).
    let with = |mask: &str, given: &str, node: Option<&str>| -> Vec<Record> {
        let (record, numbers) = case.account_request("acct-x", 1, "6222000011110001");
        let mut payload: AccountRegistered = serde_json::from_slice(&record.payload).expect("json");
        payload.account_number_masked = mask.into();
        payload.account_number_commitment = given.into();
        payload.request_id = format!("account-{mask}-{}-{}", given.len(), node.map_or(0, str::len));
        let record = sign(ORIGIN, KIND_ACCOUNT_REGISTERED, &payload, &staff.officers[0].identity);
        let mut records = staff.committed(record, COMMITMENT_ACCOUNT, &numbers);
        if let Some(node) = node {
            let mut numbers: NumbersCommitted = serde_json::from_slice(&records[0].payload).expect("json");
            numbers.commitments = vec![node.to_owned()];
            records[0] = sign(ORIGIN, KIND_NUMBERS_COMMITTED, &numbers, &staff.node);
        }
        records
    };
    let good = "ab".repeat(32);
    let size = ledger.size();
    for bad in [
        with("zz", "", None),
        with("****000", "", None),
        with("6222000011110001", "", None),
        with("****0001", "", Some("zz")),
        with("****0001", "", Some(&"AB".repeat(32))),
    ] {
        assert_eq!(common::refused_batch(&ledger, bad), "payload");
    }
    // A commitment is the node's to make, never the officer's to give,
    // even one of the right form.
    for given in [good.as_str(), "zz"] {
        assert_eq!(
            common::refused_batch(&ledger, with("****0001", given, None)),
            "commitment"
        );
    }
    assert_eq!(ledger.size(), size, "nothing written");
    ledger.close().expect("close");
    let force = |records: Vec<Record>| -> Vec<u64> {
        records
            .into_iter()
            .map(|record| force_append(dir.path(), record))
            .collect()
    };
    let bad_mask = force(with("zz", "", None))[1];
    let bad_node = force(with("****0001", "", Some("zz")))[0];
    let given = force(with("****0001", &good, None))[1];
    let report = audit(dir.path());
    for (seq, rule) in [(bad_mask, "payload"), (bad_node, "payload"), (given, "commitment")] {
        assert!(
            report.violations.iter().any(|v| v.seq == seq && v.rule == rule),
            "{rule} at {seq}: {:?}",
            report.violations
        );
    }
}

#[test]
fn a_request_left_open_counts_however_old_and_a_payment_by_its_date() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff, clock) = tiered_court(dir.path(), 58);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let long = vec![Role::FundManager, Role::BureauHead, Role::CourtLeader, Role::Finance];
    ledger
        .append_one(case.request("d-1", "acct-1", JUST_BELOW))
        .expect("parked");
    clock.0.fetch_add(31 * DAY_MS, Ordering::SeqCst);
    ledger
        .append_one(case.request("d-2", "acct-1", JUST_BELOW))
        .expect("a month later");
    assert_eq!(disbursement(&ledger, "d-2").chain, long, "d-1 is still open: it counts");
    // Paid today, d-1 counts for 30 days from its payment.
    ledger
        .append(case.approvals(ORIGIN, "d-1", "acct-1", JUST_BELOW, &[Role::BureauHead, Role::Finance]))
        .expect("d-1 approved");
    ledger
        .append_one(case.payment("d-1", "PAY-1", "acct-1", JUST_BELOW))
        .expect("d-1 paid");
    ledger.append_one(cancelled(&staff, "d-2")).expect("d-2 cancelled");
    clock.0.fetch_add(29 * DAY_MS, Ordering::SeqCst);
    ledger
        .append_one(case.request("d-3", "acct-1", JUST_BELOW))
        .expect("29 days after the payment");
    assert_eq!(disbursement(&ledger, "d-3").chain, long);
    ledger.append_one(cancelled(&staff, "d-3")).expect("d-3 cancelled");
    // Beyond the window from its payment, d-1 no longer counts.
    clock.0.fetch_add(2 * DAY_MS, Ordering::SeqCst);
    ledger
        .append_one(case.request("d-4", "acct-1", JUST_BELOW))
        .expect("31 days after the payment");
    assert_eq!(
        disbursement(&ledger, "d-4").chain,
        vec![Role::BureauHead, Role::Finance]
    );
    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
}
