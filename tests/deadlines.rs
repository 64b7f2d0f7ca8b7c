//! Money held back (issue 14, item 9): the 30-day clock starts when the
//! money arrives (its value date), not when it is booked; a value date in
//! the future and a delay beyond the policy's limit are refused; and the
//! audit lists every receipt paid late, unpaid past its due date, left
//! unclaimed or booked late, as findings apart from integrity failures.

mod common;

use std::sync::atomic::Ordering;

use caseledger::court::{sign, CaseRecords, Staff};
use caseledger_ledger::store::Ledger;
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::*;
use common::*;

const CASE: &str = "(2026)苏02执66号";

fn receipt(staff: &Staff, reference: &str, amount_fen: u64, value_date: &str, case: Option<&str>) -> Record {
    let payload = ReceiptRecorded {
        request_id: format!("receipt-{reference}"),
        bank_reference: reference.into(),
        amount_fen,
        payer: "被执行人公司".into(),
        value_date: value_date.into(),
        channel: Channel::Transfer,
        case_number: case.map(str::to_owned),
    };
    sign(ORIGIN, KIND_RECEIPT_RECORDED, &payload, &staff.finance.identity)
}

fn delay(staff: &Staff, reference: &str, new_due_date: &str) -> Record {
    let payload = DelayApproved {
        request_id: format!("delay-{reference}-{new_due_date}"),
        bank_reference: reference.into(),
        reason: DelayReason::FrozenForAnotherCase,
        text: None,
        new_due_date: new_due_date.into(),
    };
    sign(ORIGIN, KIND_DELAY_APPROVED, &payload, &staff.bureau_head.identity)
}

fn stored_receipt(ledger: &Ledger, reference: &str) -> ReceiptState {
    serde_json::from_slice(
        &ledger
            .state_object(&format!("receipt/{reference}"))
            .expect("read")
            .expect("exists"),
    )
    .expect("json")
}

/// A court (clock at 2026-11-21 00:00 CST) with a case whose applicant 1
/// has a confirmed account.
fn court_with_account(dir: &std::path::Path, seed: u64) -> (Ledger, Staff, std::sync::Arc<TestClock>) {
    let clock = clock();
    let (ledger, staff) = court_with_clock(dir, seed, clock.clone());
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
        .expect("case");
    (ledger, staff, clock)
}

#[test]
fn the_clock_starts_at_the_value_date_and_the_future_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff, _clock) = court_with_account(dir.path(), 71);
    // 2026-11-20 00:00 CST is 2026-11-19 16:00 UTC; due 30 days later.
    let arrival = 1_795_104_000_000;
    ledger
        .append_one(receipt(&staff, "B-1", 100_000, "2026-11-20", Some(CASE)))
        .expect("booked the next day");
    let booked = stored_receipt(&ledger, "B-1");
    assert_eq!(booked.arrival_ms, arrival);
    assert_eq!(booked.due_ms, arrival + 30 * DAY_MS, "from arrival, not booking");
    assert!(!booked.booked_late);
    // Money from 2020 is not "on time" because it was booked today.
    ledger
        .append_one(receipt(&staff, "B-old", 100_000, "2020-01-02", Some(CASE)))
        .expect("booked years late");
    let old = stored_receipt(&ledger, "B-old");
    assert!(old.booked_late && old.due_ms < booked.arrival_ms);
    // Tomorrow's money cannot be booked today.
    let size = ledger.size();
    assert_eq!(
        refused_rule(&ledger, receipt(&staff, "B-future", 100_000, "2026-11-22", Some(CASE))),
        "value_date"
    );
    assert_eq!(ledger.size(), size);
}

#[test]
fn a_delay_is_bounded_by_the_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff, _clock) = court_with_account(dir.path(), 72);
    ledger
        .append_one(receipt(&staff, "B-1", 100_000, "2026-11-20", Some(CASE)))
        .expect("receipt");
    assert_eq!(refused_rule(&ledger, delay(&staff, "B-1", "9999-12-31")), "delay");
    // 90 days from 2026-11-21 is 2027-02-19: the end of 02-18 is inside.
    assert_eq!(refused_rule(&ledger, delay(&staff, "B-1", "2027-02-19")), "delay");
    ledger
        .append_one(delay(&staff, "B-1", "2027-02-18"))
        .expect("within 90 days");
}

#[test]
fn the_audit_lists_money_held_back_apart_from_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff, clock) = court_with_account(dir.path(), 73);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append(vec![
            // Due 2026-12-20: paid on day 40 (late).
            receipt(&staff, "B-late", 300_000, "2026-11-20", Some(CASE)),
            // Due 2026-12-20, delayed to 2027-01-31: not overdue on day 40.
            receipt(&staff, "B-delayed", 200_000, "2026-11-20", Some(CASE)),
            delay(&staff, "B-delayed", "2027-01-31"),
            // An unidentified receipt nobody claims (3 days).
            receipt(&staff, "B-unknown", 50_000, "2026-11-20", None),
            // Booked 10 days after it arrived.
            receipt(&staff, "B-booked-late", 100_000, "2026-11-11", Some(CASE)),
        ])
        .expect("receipts");
    clock.0.fetch_add(40 * DAY_MS, Ordering::SeqCst);
    // The oldest money first: B-booked-late (arrived 11-11, 100,000) and
    // B-late (300,000) are settled by this payment of 400,000, on day 40.
    ledger
        .append_one(case.request("d-1", "acct-1", 400_000))
        .expect("request");
    ledger
        .append(case.approvals(ORIGIN, "d-1", "acct-1", 400_000, &[Role::BureauHead, Role::Finance]))
        .expect("approved");
    ledger
        .append_one(case.payment("d-1", "PAY-1", "acct-1", 400_000))
        .expect("paid");
    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "findings are not failures: {:?}", report.violations);
    let found: Vec<(&str, &str)> = report
        .deadline_findings
        .iter()
        .map(|f| (f.bank_reference.as_str(), f.finding.as_str()))
        .collect();
    let mut expected = vec![
        ("B-booked-late", "late_booking"),
        ("B-booked-late", "paid_late"),
        ("B-late", "paid_late"),
        ("B-unknown", "unclaimed"),
    ];
    expected.sort();
    let mut got = found.clone();
    got.sort();
    assert_eq!(got, expected, "{:?}", report.deadline_findings);
    assert_eq!(report.deadline_findings_total, 4);
    // 100 days on, the delayed receipt's new date has passed too.
    clock.0.fetch_add(60 * DAY_MS, Ordering::SeqCst);
    ledger
        .append_one(receipt(&staff, "B-next", 1, "2027-03-01", Some(CASE)))
        .expect("a later entry moves the ledger's clock");
    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(
        report
            .deadline_findings
            .iter()
            .any(|f| f.bank_reference == "B-delayed" && f.finding == "overdue"),
        "{:?}",
        report.deadline_findings
    );
}

/// Receipts and delays forced behind the service: `verify` names the
/// broken rule at the right seq.
#[test]
fn forced_future_value_dates_and_endless_delays_are_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff, _clock) = court_with_account(dir.path(), 74);
    ledger
        .append_one(receipt(&staff, "B-1", 100_000, "2026-11-20", Some(CASE)))
        .expect("receipt");
    ledger.close().expect("close");
    let future = force_append(
        dir.path(),
        receipt(&staff, "B-future", 100_000, "2030-01-01", Some(CASE)),
    );
    let endless = force_append(dir.path(), delay(&staff, "B-1", "9999-12-31"));
    let report = audit(dir.path());
    for (seq, rule) in [(future, "value_date"), (endless, "delay")] {
        assert!(
            report.violations.iter().any(|v| v.seq == seq && v.rule == rule),
            "{rule} at {seq}: {:?}",
            report.violations
        );
    }
}

/// A delay is decided before the deadline passes (the second attack
/// round: a delay approved afterwards erased paid-late and overdue
/// findings), and only for money of a case.
#[test]
fn a_delay_after_the_deadline_or_for_unidentified_money_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff, clock) = court_with_account(dir.path(), 75);
    ledger
        .append(vec![
            receipt(&staff, "B-1", 100_000, "2026-11-20", Some(CASE)),
            receipt(&staff, "B-unknown", 100_000, "2026-11-20", None),
        ])
        .expect("receipts");
    assert_eq!(refused_rule(&ledger, delay(&staff, "B-unknown", "2026-12-31")), "delay");
    clock.0.fetch_add(40 * DAY_MS, Ordering::SeqCst);
    let late = delay(&staff, "B-1", "2027-02-01");
    assert_eq!(refused_rule(&ledger, late.clone()), "delay");
    // An entry on day 40 moves the ledger's own clock, which the forced
    // record takes.
    ledger
        .append_one(receipt(&staff, "B-2", 100_000, "2026-12-30", Some(CASE)))
        .expect("day 40");
    ledger.close().expect("close");
    let seq = force_append(dir.path(), late);
    let report = audit(dir.path());
    assert!(
        report.violations.iter().any(|v| v.seq == seq && v.rule == "delay"),
        "{:?}",
        report.violations
    );
    assert!(
        report.deadline_findings.iter().any(|f| f.bank_reference == "B-1"),
        "the forced delay erases nothing: {:?}",
        report.deadline_findings
    );
}
