//! Approval steps confirmed by an SMS code: the node commits to the code
//! (salted, bound to origin, disbursement, case, amount, payee, step, role
//! and approver) before sending it; the approver's signed step carries the
//! code; the node opens its commitment in the entry right before the step
//! (`sms_code_revealed`, same request); the rules check it at write time
//! and the audit checks it offline.

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
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE).under_policy(2);
    let registered = case.account("acct-1", 1, "6222000011110001");
    // The policy requires SMS: the applicant confirms the account with a code.
    let confirmation = caseledger::court::account_confirmation(
        &caseledger_keys::Identity::from_seed([1; 32]),
        ORIGIN,
        &registered,
        "135790",
        "ffeeddccbbaa99887766554433221100",
        &["c1".into(), "c2".into()],
        clock.0.load(Ordering::SeqCst) + 30 * MINUTE_MS,
    );
    let mut records = case.open(1);
    records.extend(case.phones_confirmed(1, clock.0.load(Ordering::SeqCst) + 30 * MINUTE_MS));
    records.extend(registered);
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
        commitment: sms_commitment(SALT, code, &binding),
        expires_ms: court.clock.0.load(Ordering::SeqCst) + 5 * MINUTE_MS,
    };
    let record = court
        .ledger
        .sign_as_node(KIND_SMS_CHALLENGE, serde_json::to_vec(&payload).expect("json"))
        .expect("node");
    court.ledger.append_one(record).expect("challenge");
}

const SALT: &str = "00112233445566778899aabbccddeeff";

fn step(court: &Court, step: u32, role: Role, member: &Person, code: Option<&str>, request: &str) -> Record {
    let case = CaseRecords::new(&court.staff, &court.staff.officers[0], CASE);
    let record = case.approval(ORIGIN, "d-1", "acct-1", AMOUNT, step, role, Decision::Approve, member);
    let mut statement: ApprovalSigned = serde_json::from_slice(&record.payload).expect("json");
    statement.request_id = request.into();
    statement.sms_code = code.map(str::to_owned);
    sign(ORIGIN, KIND_APPROVAL_SIGNED, &statement, &member.identity)
}

/// The node's opening of its commitment for `step` and `member` with
/// `code` (and the salt the challenges here use), for the step `approval`.
fn reveal(court: &Court, step: u32, member: &Person, code: &str, approval: &Record) -> Record {
    use sha2::Digest as _;
    let payload = SmsCodeRevealed {
        request_id: format!("revealed-{}", hex::encode(sha2::Sha256::digest(&approval.payload))),
        disbursement_id: "d-1".into(),
        step,
        member_id: member.member_id.clone(),
        code: code.into(),
        salt: SALT.into(),
        step_sha256: hex::encode(sha2::Sha256::digest(&approval.payload)),
    };
    court
        .ledger
        .sign_as_node(KIND_SMS_CODE_REVEALED, serde_json::to_vec(&payload).expect("json"))
        .expect("node")
}

/// The step with `code`, right after the node's opening, in one request,
/// as the service writes it.
fn confirmed_step(court: &Court, n: u32, role: Role, member: &Person, code: &str, request: &str) -> Vec<Record> {
    let approval = step(court, n, role, member, Some(code), request);
    vec![reveal(court, n, member, code, &approval), approval]
}

/// The rule that refused `records` (one request).
fn refused(court: &Court, records: Vec<Record>) -> (usize, String) {
    match court.ledger.append(records) {
        Err(caseledger_ledger::Error::Rejected { index, source }) => (index, source.check().to_owned()),
        other => panic!("expected a rule refusal, got {other:?}"),
    }
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
        .append(confirmed_step(&court, 1, Role::BureauHead, head, "482913", "ok"))
        .expect("signed");
    // The code is single use: the finance step cannot reuse it.
    let finance = &court.staff.finance;
    assert_eq!(
        refused(
            &court,
            confirmed_step(&court, 2, Role::Finance, finance, "482913", "reuse")
        )
        .1,
        "sms_confirmation"
    );
    challenge(&court, 2, Role::Finance, finance, "105577", AMOUNT);
    court
        .ledger
        .append(confirmed_step(&court, 2, Role::Finance, finance, "105577", "ok-2"))
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
    // The node's opening with a wrong code is refused, and so its request.
    assert_eq!(
        refused(
            &court,
            confirmed_step(&court, 1, Role::BureauHead, head, "000000", "wrong")
        ),
        (0, "sms_confirmation".into())
    );
    // A step whose code differs from the one the node opened with.
    let mut mismatched = confirmed_step(&court, 1, Role::BureauHead, head, "482913", "mismatch");
    mismatched[1] = step(&court, 1, Role::BureauHead, head, Some("482914"), "mismatch");
    assert_eq!(refused(&court, mismatched), (1, "sms_confirmation".into()));
    // The approver's code without the node's opening right before it: the
    // approver holds the key but cannot open the commitment.
    assert_eq!(
        refused_rule(
            &court.ledger,
            step(&court, 1, Role::BureauHead, head, Some("482913"), "alone")
        ),
        "sms_confirmation"
    );
    // An opening lets through only the step it was made for: written
    // apart (its salt now public), it does not let another step through,
    // even right after it.
    let intended = step(&court, 1, Role::BureauHead, head, Some("482913"), "intended");
    court
        .ledger
        .append_one(reveal(&court, 1, head, "482913", &intended))
        .expect("an opening alone is admitted");
    assert_eq!(
        refused_rule(
            &court.ledger,
            step(&court, 1, Role::BureauHead, head, Some("482913"), "another")
        ),
        "sms_confirmation"
    );
    // The node's opening names the step's code: a reveal for one step with
    // the code of another is refused when the step comes.
    challenge(&court, 1, Role::BureauHead, head, "135791", AMOUNT);
    let approval = step(&court, 1, Role::BureauHead, head, Some("135790"), "other-code");
    let opening = reveal(&court, 1, head, "135791", &approval);
    assert_eq!(refused(&court, vec![opening, approval]), (1, "sms_confirmation".into()));
    // A code committed for another amount does not sign this one.
    challenge(&court, 1, Role::BureauHead, head, "777777", AMOUNT + 1);
    assert_eq!(
        refused(
            &court,
            confirmed_step(&court, 1, Role::BureauHead, head, "777777", "amount")
        )
        .1,
        "sms_confirmation"
    );
    // Someone else cannot use the bureau head's code.
    let leader = &court.staff.court_leader;
    assert!(court
        .ledger
        .append(confirmed_step(
            &court,
            1,
            Role::BureauHead,
            leader,
            "777777",
            "borrowed"
        ))
        .is_err());
    // Expired: five minutes later the code is dead.
    challenge(&court, 1, Role::BureauHead, head, "246810", AMOUNT);
    court.clock.0.fetch_add(6 * MINUTE_MS, Ordering::SeqCst);
    assert_eq!(
        refused(
            &court,
            confirmed_step(&court, 1, Role::BureauHead, head, "246810", "late")
        )
        .1,
        "sms_confirmation"
    );
    assert_eq!(
        court.ledger.size(),
        size + 5,
        "only the four challenges and the lone opening were written"
    );
    // Only the node records challenges and opens them.
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
    let opening = reveal(
        &court,
        1,
        head,
        "246810",
        &step(&court, 1, Role::BureauHead, head, Some("246810"), "h"),
    );
    let by_head = Record::sign(ORIGIN, KIND_SMS_CODE_REVEALED, opening.payload, &head.identity);
    assert_eq!(refused_rule(&court.ledger, by_head), "not_authorized");
}

#[test]
fn the_old_step_that_carried_the_salt_is_refused() {
    // Before issue 14 an approver got the salt and revealed code and salt
    // in the step: the salt opened the public commitment to a search of
    // the million codes. That shape is refused now.
    let court = court_with_sms();
    let head = &court.staff.bureau_head;
    challenge(&court, 1, Role::BureauHead, head, "482913", AMOUNT);
    let record = step(&court, 1, Role::BureauHead, head, None, "old");
    let mut payload: serde_json::Value = serde_json::from_slice(&record.payload).expect("json");
    payload["sms"] = serde_json::json!({"code": "482913", "salt": SALT});
    let old = sign(ORIGIN, KIND_APPROVAL_SIGNED, &payload, &head.identity);
    assert_eq!(refused_rule(&court.ledger, old), "payload");
}

/// Steps forced into storage behind the service: `verify` reports each at
/// its seq with the rule it breaks.
#[test]
fn forged_steps_written_behind_the_service_are_caught_by_verify() {
    let court = court_with_sms();
    let head = &court.staff.bureau_head;
    challenge(&court, 1, Role::BureauHead, head, "482913", AMOUNT);
    // The approver's key with a guessed code and no opening by the node;
    // then a node opening with the wrong code and its step.
    let alone = step(&court, 1, Role::BureauHead, head, Some("999999"), "forged");
    let wrong = confirmed_step(&court, 1, Role::BureauHead, head, "999998", "forged-2");
    let Court {
        _dir: dir,
        ledger,
        path,
        ..
    } = court;
    ledger.close().expect("close the writer before writing behind its back");
    let ledger_path = path;
    let alone_seq = force_append(&ledger_path, alone);
    let [opening, step_2] = <[Record; 2]>::try_from(wrong).expect("two records");
    let opening_seq = force_append(&ledger_path, opening);
    let step_seq = force_append(&ledger_path, step_2);
    let report = audit(&ledger_path);
    for seq in [alone_seq, opening_seq, step_seq] {
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.seq == seq && v.rule == "sms_confirmation"),
            "seq {seq}: {:?}",
            report.violations
        );
    }
    assert_eq!(report.sms_confirmations_verified, 0);
    drop(dir);
}
