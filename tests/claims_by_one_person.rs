//! The third attack round on the controls, kept as tests: one person
//! re-enrolled under another member id is still one person (a phone belongs
//! to one member id for good), so they cannot decide their own claim of an
//! unidentified receipt; a retry or a second record cannot borrow the node's
//! commitment to numbers.

mod common;

use caseledger::court::{sign, CaseRecords, Person, Staff};
use caseledger_ledger::store::Ledger;
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::*;
use caseledger_verify::record::{KeyRevoked, KIND_KEY_REVOKED};
use common::*;

const CASE: &str = "(2022)苏02执9号";
const NEW_CASE: &str = "(2022)苏02执10号";
const UNIDENTIFIED: &str = "BANK-U1";
const UNIDENTIFIED_FEN: u64 = 77_700;

fn revoke(staff: &Staff, who: &Person, request: &str) -> Record {
    let payload = KeyRevoked {
        key_id: who.identity.public_key().key_id().to_hex(),
        reason: format!("role change {request}"),
    };
    sign(ORIGIN, KIND_KEY_REVOKED, &payload, &staff.administrator.identity)
}

/// Money finance could not assign to a case, then `by`'s claim of it for
/// [`CASE`]: pending, nothing moved.
fn claim(staff: &Staff, ledger: &Ledger, by: &Person) {
    let case = CaseRecords::new(staff, &staff.officers[0], CASE);
    ledger
        .append(vec![
            case.unidentified_receipt(UNIDENTIFIED, UNIDENTIFIED_FEN, "2026-11-20"),
            case.claim(UNIDENTIFIED, by),
        ])
        .expect("an unidentified receipt, claimed");
}

fn decided(by: &Person) -> Record {
    let decided = ReceiptClaimDecided {
        request_id: "decided-1".into(),
        bank_reference: UNIDENTIFIED.into(),
        case_number: CASE.into(),
        decision: Decision::Approve,
    };
    sign(ORIGIN, KIND_RECEIPT_CLAIM_DECIDED, &decided, &by.identity)
}

/// The case officer claims an unidentified receipt for their case; the
/// administrator revokes the officer's key and enrols the same person (same
/// phone) as a fund manager: under a new member id it is refused (a phone
/// belongs to one member id for good); under the same member id it goes in,
/// and the claimant still cannot decide their own claim (`second_person`).
/// Forced into storage, the re-enrolment under a new id is a violation.
#[test]
fn the_claimant_reenrolled_as_fund_manager_cannot_decide_their_own_claim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 21, CASE, 1, 8_000_000);
    let officer = staff.officers[0].clone();
    claim(&staff, &ledger, &officer);
    let revoked = revoke(&staff, &officer, "officer-to-fund-manager");
    ledger.append_one(revoked).expect("revoked");
    let new_id = Person::new([77; 32], "fm-77", &officer.name, Role::FundManager, &officer.phone);
    let new_id_enrolment = staff.enrol(&new_id);
    assert_eq!(refused_batch(&ledger, new_id_enrolment.clone()), "phone_of_member");
    let same_id = Person::new(
        [79; 32],
        &officer.member_id,
        &officer.name,
        Role::FundManager,
        &officer.phone,
    );
    ledger
        .append(staff.enrol(&same_id))
        .expect("the same member id with a new role");
    assert_eq!(refused_rule(&ledger, decided(&same_id)), "second_person");
    drop(ledger);
    let seqs: Vec<u64> = new_id_enrolment
        .into_iter()
        .map(|record| force_append(dir.path(), record))
        .collect();
    // [numbers_committed, key_registered, key_co_signed]: the registration.
    let seq = seqs[1];
    let report = audit(dir.path());
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.seq == seq && v.rule == "phone_of_member"),
        "{:?}",
        report.violations
    );
}

/// The other way round: a fund manager's claim, the same person re-enrolled
/// as bureau head under a new member id: refused.
#[test]
fn the_fund_manager_reenrolled_as_bureau_head_cannot_decide_their_own_claim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 21, CASE, 1, 8_000_000);
    let fm = staff.fund_manager.clone();
    claim(&staff, &ledger, &fm);
    ledger.append_one(revoke(&staff, &fm, "fm-to-head")).expect("revoked");
    let same_person = Person::new([78; 32], "bh-78", &fm.name, Role::BureauHead, &fm.phone);
    assert_eq!(refused_batch(&ledger, staff.enrol(&same_person)), "phone_of_member");
    let same_id = Person::new([80; 32], &fm.member_id, &fm.name, Role::BureauHead, &fm.phone);
    ledger
        .append(staff.enrol(&same_id))
        .expect("the same member id with a new role");
    assert_eq!(refused_rule(&ledger, decided(&same_id)), "second_person");
}

/// A retry with other numbers, and a second record without its numbers,
/// borrow no commitment and write nothing.
#[tokio::test]
async fn retries_and_borrowed_commitments_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 21, CASE, 1, 8_000_000);
    let state = service_state(ledger, &staff);
    let case = CaseRecords::new(&staff, &staff.officers[0], NEW_CASE);
    let (open, phones) = case.open_request(1);
    let (s, b) = write_numbered(&state, &staff.filing_clerk.identity, &[(open.clone(), phones)]).await;
    assert_eq!(s, axum::http::StatusCode::CREATED, "{b}");
    let (s, b) = write_numbered(
        &state,
        &staff.filing_clerk.identity,
        &[(open, vec!["13800000000".into()])],
    )
    .await;
    assert!(s == axum::http::StatusCode::OK && b["written"] == 0, "retry: {s} {b}");
    let other = CaseRecords::new(&staff, &staff.officers[0], "(2022)苏02执11号");
    let (a, pa) = other.open_request(1);
    let third = CaseRecords::new(&staff, &staff.officers[0], "(2022)苏02执12号");
    let (c, _) = third.open_request(1);
    let (s, b) = write_numbered(&state, &staff.filing_clerk.identity, &[(a, pa), (c, vec![])]).await;
    assert!(!s.is_success(), "second case without numbers: {s} {b}");
}
