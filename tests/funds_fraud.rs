//! The frauds of DOMAIN.md, forced into RocksDB directly by someone who
//! controls the server and holds an insider's key: each is correctly chained
//! and signed, so only the rules catch it, and the auditor's replay does,
//! at the right seq with the right rule.

mod common;

use std::path::Path;

use caseledger::court::{sign, CaseRecords, Staff};
use caseledger_ledger::store::Ledger;
use caseledger_verify::funds::model::*;
use common::*;

const CASE: &str = "(2022)苏02执9号";
const AMOUNT: u64 = 2_000_000;

/// A closed court ledger: a case with a confirmed account, ¥80,000
/// received, and a pending ¥20,000 disbursement "d-1".
fn setup(dir: &Path) -> Staff {
    let (ledger, staff) = court_with_case(dir, 21, CASE, 1, 8_000_000);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger.append_one(case.request("d-1", "acct-1", AMOUNT)).expect("setup");
    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "clean before the fraud: {:?}", report.violations);
    ledger.close().expect("close");
    staff
}

fn caught(dir: &Path, seq: u64, rule: &str) {
    let report = audit(dir);
    assert!(
        report.first_error.is_none(),
        "integrity is intact: {:?}",
        report.first_error
    );
    assert!(!report.ok && !report.rules_ok);
    assert!(
        report.violations.iter().any(|v| v.seq == seq && v.rule == rule),
        "expected {rule} at {seq}, got {:?}",
        report.violations
    );
}

#[test]
fn fake_payee_account_in_another_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let mut fake =
        serde_json::from_slice::<AccountRegistered>(&case.account("acct-fake", 1, "6222111122223333").payload)
            .expect("json");
    fake.account_name = "法官的亲戚".into();
    let seq = force_append(
        dir.path(),
        sign(ORIGIN, KIND_ACCOUNT_REGISTERED, &fake, &staff.officers[0].identity),
    );
    caught(dir.path(), seq, "payee");
}

#[test]
fn disbursement_to_an_account_that_is_not_the_applicants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let seq = force_append(dir.path(), case.request("d-fake", "acct-unknown", 1_000_000));
    caught(dir.path(), seq, "unknown_account");
}

#[test]
fn forged_approval_by_the_requesting_officer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let forged = case.approval(
        ORIGIN,
        "d-1",
        "acct-1",
        AMOUNT,
        1,
        Role::BureauHead,
        Decision::Approve,
        &staff.officers[0],
    );
    let seq = force_append(dir.path(), forged);
    caught(dir.path(), seq, "role");
}

#[test]
fn the_bureau_head_signing_the_finance_step_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    {
        let ledger = Ledger::open(dir.path(), clock(), options()).expect("open");
        let first = case.approval(
            ORIGIN,
            "d-1",
            "acct-1",
            AMOUNT,
            1,
            Role::BureauHead,
            Decision::Approve,
            &staff.bureau_head,
        );
        ledger.append_one(first).expect("bureau head signs step 1");
        ledger.close().expect("close");
    }
    let second = case.approval(
        ORIGIN,
        "d-1",
        "acct-1",
        AMOUNT,
        2,
        Role::Finance,
        Decision::Approve,
        &staff.bureau_head,
    );
    let seq = force_append(dir.path(), second);
    caught(dir.path(), seq, "role");
}

#[test]
fn payment_without_the_approvals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let seq = force_append(dir.path(), case.payment("d-1", "PAY-EARLY", "acct-1", AMOUNT));
    caught(dir.path(), seq, "status");
}

#[test]
fn overdraft_forced_past_the_balance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let seq = force_append(dir.path(), case.request("d-big", "acct-1", 7_000_000));
    caught(dir.path(), seq, "balance");
}

#[test]
fn account_switched_without_the_applicants_confirmation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    {
        let ledger = Ledger::open(dir.path(), clock(), options()).expect("open");
        ledger
            .append_one(case.account("acct-switch", 1, "6222000077776666"))
            .expect("change registered");
        ledger.close().expect("close");
    }
    let seq = force_append(dir.path(), case.request("d-switch", "acct-switch", 1_000));
    caught(dir.path(), seq, "account");
}

#[test]
fn a_balance_edited_in_the_stored_view_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path());
    {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("state").expect("state");
        let key = format!("case/{CASE}");
        let mut case: CaseState =
            serde_json::from_slice(&db.get_cf(cf, &key).expect("get").expect("case")).expect("json");
        case.available_fen += 100_000_000;
        db.put_cf(cf, &key, serde_json::to_vec(&case).expect("json"))
            .expect("put");
    }
    let report = audit(dir.path());
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.rule == "derived_state" && v.detail.contains(CASE)),
        "{:?}",
        report.violations
    );
    assert!(!report.ok);
}

#[test]
fn the_payer_books_the_money_as_returned_to_pay_it_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 22, CASE, 1, 8_000_000);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let mut records = vec![case.request("d-1", "acct-1", AMOUNT)];
    records.extend(case.approvals(ORIGIN, "d-1", "acct-1", AMOUNT, &[Role::BureauHead, Role::Finance]));
    records.push(case.payment("d-1", "PAY-1", "acct-1", AMOUNT));
    ledger.append(records).expect("paid");
    ledger.close().expect("close");
    // Finance, who paid, says the money came back (it did not).
    let returned = PaymentReturned {
        request_id: "return-1".into(),
        disbursement_id: "d-1".into(),
        bank_reference: "PAY-1".into(),
        credit_reference: "CREDIT-FAKE".into(),
        amount_fen: AMOUNT,
        account_id: "acct-1".into(),
        reason: "退回".into(),
    };
    let seq = force_append(
        dir.path(),
        sign(ORIGIN, KIND_PAYMENT_RETURNED, &returned, &staff.finance.identity),
    );
    caught(dir.path(), seq, "second_person");
}
