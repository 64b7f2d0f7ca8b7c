//! Approval steps confirmed by an SMS code: the node commits to the code
//! (salted, bound to origin, disbursement, case, amount, payee, step, role
//! and approver) before sending it; the approver's signed step reveals it;
//! the rules check it at write time and the audit checks it offline.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use caseledger::court::{sign, CaseRecords, Person, Staff};
use caseledger_ledger::store::Ledger;
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::*;
use common::*;

const CASE: &str = "(2026)苏02执3号";
const AMOUNT: u64 = 3_000_000;
const MINUTE_MS: u64 = 60_000;

struct Court {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    ledger: Ledger,
    staff: Staff,
    clock: Arc<TestClock>,
}

/// A court whose policy requires SMS confirmation, with a pending ¥30,000
/// disbursement "d-1" (bureau head, then finance).
fn court_with_sms() -> Court {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = common::clock();
    let (ledger, staff) = court_requiring_sms(dir.path(), 81, clock.clone());
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let registered = case.account("acct-1", 1, "6222000011110001");
    // The policy requires SMS: the applicant confirms the account with a code.
    let confirmation = caseledger::court::account_confirmation(
        &caseledger_keys::Identity::from_seed([1; 32]),
        ORIGIN,
        &registered,
        "135790",
        "ffeeddccbbaa99887766554433221100",
        clock.0.load(Ordering::SeqCst) + 30 * MINUTE_MS,
    );
    let mut records = vec![case.open(1), registered];
    records.extend(confirmation);
    records.extend([case.receipt("BANK-1", 5_000_000), case.request("d-1", "acct-1", AMOUNT)]);
    ledger.append(records).expect("setup");
    Court {
        path: dir.path().to_owned(),
        _dir: dir,
        ledger,
        staff,
        clock,
    }
}

fn disbursement(ledger: &Ledger) -> DisbursementState {
    serde_json::from_slice(&ledger.state_object("disbursement/d-1").expect("read").expect("exists")).expect("json")
}

/// The node's challenge for `step` to `member`, committing to `code` for
/// `amount` (normally the disbursement's).
fn challenge(court: &Court, step: u32, role: Role, member: &Person, code: &str, amount: u64) {
    let mut bound = disbursement(&court.ledger);
    bound.amount_fen = amount;
    let binding = sms_binding(ORIGIN, &bound, step, role, &member.member_id);
    let payload = SmsChallenge {
        request_id: format!("challenge-{step}-{}-{code}-{amount}", member.member_id),
        disbursement_id: "d-1".into(),
        step,
        member_id: member.member_id.clone(),
        commitment: sms_commitment("00112233445566778899aabbccddeeff", code, &binding),
        expires_ms: court.clock.0.load(Ordering::SeqCst) + 5 * MINUTE_MS,
    };
    let record = court
        .ledger
        .sign_as_node(KIND_SMS_CHALLENGE, serde_json::to_vec(&payload).expect("json"))
        .expect("node");
    court.ledger.append_one(record).expect("challenge");
}

fn step(court: &Court, step: u32, role: Role, member: &Person, reveal: Option<&str>, request: &str) -> Record {
    let case = CaseRecords::new(&court.staff, &court.staff.officers[0], CASE);
    let record = case.approval(ORIGIN, "d-1", "acct-1", AMOUNT, step, role, Decision::Approve, member);
    let mut statement: ApprovalSigned = serde_json::from_slice(&record.payload).expect("json");
    statement.request_id = request.into();
    statement.sms = reveal.map(|code| SmsReveal {
        code: code.into(),
        salt: "00112233445566778899aabbccddeeff".into(),
    });
    sign(ORIGIN, KIND_APPROVAL_SIGNED, &statement, &member.identity)
}

#[test]
fn the_right_code_signs_and_the_audit_counts_it() {
    let court = court_with_sms();
    let head = &court.staff.bureau_head;
    assert_eq!(
        refused_rule(&court.ledger, step(&court, 1, Role::BureauHead, head, None, "no-code")),
        "sms_confirmation"
    );
    challenge(&court, 1, Role::BureauHead, head, "482913", AMOUNT);
    court
        .ledger
        .append_one(step(&court, 1, Role::BureauHead, head, Some("482913"), "ok"))
        .expect("signed");
    // The code is single use: the finance step cannot reuse it.
    let finance = &court.staff.finance;
    assert_eq!(
        refused_rule(
            &court.ledger,
            step(&court, 2, Role::Finance, finance, Some("482913"), "reuse")
        ),
        "sms_confirmation"
    );
    challenge(&court, 2, Role::Finance, finance, "105577", AMOUNT);
    court
        .ledger
        .append_one(step(&court, 2, Role::Finance, finance, Some("105577"), "ok-2"))
        .expect("signed");
    let report = court.ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
    assert_eq!(report.sms_confirmations_verified, 2);
}

#[test]
fn wrong_expired_rebound_or_borrowed_codes_are_refused() {
    let court = court_with_sms();
    let head = &court.staff.bureau_head;
    let size = court.ledger.size();
    challenge(&court, 1, Role::BureauHead, head, "482913", AMOUNT);
    assert_eq!(
        refused_rule(
            &court.ledger,
            step(&court, 1, Role::BureauHead, head, Some("000000"), "wrong")
        ),
        "sms_confirmation"
    );
    // A code committed for another amount does not sign this one.
    challenge(&court, 1, Role::BureauHead, head, "777777", AMOUNT + 1);
    assert_eq!(
        refused_rule(
            &court.ledger,
            step(&court, 1, Role::BureauHead, head, Some("777777"), "amount")
        ),
        "sms_confirmation"
    );
    // Someone else cannot use the bureau head's code.
    let leader = &court.staff.court_leader;
    assert!(court
        .ledger
        .append_one(step(&court, 1, Role::BureauHead, leader, Some("777777"), "borrowed"))
        .is_err());
    // Expired: five minutes later the code is dead.
    challenge(&court, 1, Role::BureauHead, head, "246810", AMOUNT);
    court.clock.0.fetch_add(6 * MINUTE_MS, Ordering::SeqCst);
    assert_eq!(
        refused_rule(
            &court.ledger,
            step(&court, 1, Role::BureauHead, head, Some("246810"), "late")
        ),
        "sms_confirmation"
    );
    assert_eq!(court.ledger.size(), size + 3, "only the three challenges were written");
    // Only the node records challenges.
    let payload = serde_json::to_vec(&SmsChallenge {
        request_id: "forged-challenge".into(),
        disbursement_id: "d-1".into(),
        step: 1,
        member_id: head.member_id.clone(),
        commitment: "00".repeat(32),
        expires_ms: u64::MAX,
    })
    .expect("json");
    let forged = Record::sign(ORIGIN, KIND_SMS_CHALLENGE, payload, &court.staff.officers[0].identity);
    assert_eq!(refused_rule(&court.ledger, forged), "not_authorized");
}

#[test]
fn a_forged_reveal_written_behind_the_service_is_caught_by_verify() {
    let court = court_with_sms();
    let head = &court.staff.bureau_head;
    challenge(&court, 1, Role::BureauHead, head, "482913", AMOUNT);
    let forged = step(&court, 1, Role::BureauHead, head, Some("999999"), "forged");
    let Court {
        _dir: dir,
        ledger,
        path,
        ..
    } = court;
    ledger.close().expect("close the writer before writing behind its back");
    let ledger_path = path;
    let forged_seq = force_append(&ledger_path, forged);
    let report = audit(&ledger_path);
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.seq == forged_seq && v.rule == "sms_confirmation"),
        "{:?}",
        report.violations
    );
    assert_eq!(report.sms_confirmations_verified, 0);
    drop(dir);
}
