//! The frauds of DOMAIN.md, forced into RocksDB directly by someone who
//! controls the server and holds an insider's key: each is correctly chained
//! and signed, so only the rules catch it, and the auditor's replay does,
//! at the right seq with the right rule.

mod common;

use std::path::Path;

use caseledger::commitments::{commitment, mask, COMMITMENT_ACCOUNT, COMMITMENT_PHONE};
use caseledger::court::{sign, CaseRecords, Person, Staff};
use caseledger_ledger::store::Ledger;
use caseledger_verify::entry::Record;
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

/// Everything a write could change: the chain, every derived object and
/// the key registry.
fn snapshot(ledger: &Ledger) -> (u64, caseledger_verify::hash::Hash, Vec<(String, Vec<u8>)>, String) {
    let registry = ledger.registry().expect("registry");
    let keys: Vec<String> = registry
        .keys()
        .map(|(id, info)| format!("{} {info:?}", id.to_hex()))
        .collect();
    (
        ledger.size(),
        ledger.root(),
        ledger.state_objects("").expect("state"),
        keys.join("\n"),
    )
}

/// Opens the closed ledger in `dir`, checks that `records` (one batch) are
/// refused by `rule` and change nothing, and closes it again.
fn refused_unchanged(dir: &Path, records: Vec<Record>, rule: &str) {
    let ledger = Ledger::open(dir, clock(), options()).expect("open");
    let before = snapshot(&ledger);
    match ledger.append(records) {
        Err(caseledger_ledger::Error::Rejected { source, .. }) => assert_eq!(source.check(), rule, "{source}"),
        other => panic!("expected the rule {rule}, got {other:?}"),
    }
    assert!(snapshot(&ledger) == before, "a refused write changed nothing");
    ledger.close().expect("close");
}

/// Forces `records` into storage one after another; their seqs.
fn force_all(dir: &Path, records: Vec<Record>) -> Vec<u64> {
    records.into_iter().map(|record| force_append(dir, record)).collect()
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
    let (record, numbers) = case.account_request("acct-fake", 1, "6222111122223333");
    let mut fake = serde_json::from_slice::<AccountRegistered>(&record.payload).expect("json");
    fake.account_name = "法官的亲戚".into();
    let fake = sign(ORIGIN, KIND_ACCOUNT_REGISTERED, &fake, &staff.officers[0].identity);
    // The node's commitment to the number, then the officer's record.
    let seqs = force_all(dir.path(), staff.committed(fake, COMMITMENT_ACCOUNT, &numbers));
    caught(dir.path(), seqs[1], "payee");
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
            .append(case.account("acct-switch", 1, "6222000077776666"))
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
        caseledger::court::sign_revealed(ORIGIN, KIND_PAYMENT_RETURNED, &returned, &staff.finance.identity),
    );
    caught(dir.path(), seq, "second_person");
}

// ---- who files a case, whose phones, and who moves an unidentified receipt ----

/// Another case of the court, for the filings below.
const NEW_CASE: &str = "(2022)苏02执10号";

/// The filing clerk's `case_opened` of [`NEW_CASE`] (one applicant)
/// changed by `change` and signed by `signer`, and the applicant's phone.
fn opened_by(staff: &Staff, signer: &Person, change: &dyn Fn(&mut CaseOpened)) -> (Record, Vec<String>) {
    let case = CaseRecords::new(staff, &staff.officers[0], NEW_CASE);
    let (record, phones) = case.open_request(1);
    let mut payload: CaseOpened = caseledger::court::revealed(&record);
    change(&mut payload);
    (
        caseledger::court::sign_revealed(ORIGIN, KIND_CASE_OPENED, &payload, &signer.identity),
        phones,
    )
}

/// The case's officer files the case (and so its applicants) themselves.
fn opened_by_the_officer(staff: &Staff) -> Vec<Record> {
    let (record, phones) = opened_by(staff, &staff.officers[0], &|_| {});
    staff.committed(record, COMMITMENT_PHONE, &phones)
}

#[test]
fn the_cases_officer_cannot_open_a_case() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    refused_unchanged(dir.path(), opened_by_the_officer(&staff), "role");
    // The same filing by the clerk is accepted.
    let case = CaseRecords::new(&staff, &staff.officers[0], NEW_CASE);
    let ledger = Ledger::open(dir.path(), clock(), options()).expect("open");
    ledger.append(case.open(1)).expect("filed by the clerk");
    assert!(ledger.case_view(NEW_CASE, 0).expect("read").is_some());
}

#[test]
fn a_case_opened_by_its_officer_forced_into_storage_is_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    let seqs = force_all(dir.path(), opened_by_the_officer(&staff));
    caught(dir.path(), seqs[1], "role");
}

/// The clerk files an applicant whose phone is the officer's: the node
/// commits to the number the request gave.
fn applicant_with_the_officers_phone(staff: &Staff) -> Vec<Record> {
    let phone = staff.officers[0].phone.clone();
    let (record, _) = opened_by(staff, &staff.filing_clerk, &|p| {
        p.applicants[0].phone_masked = mask(&phone);
    });
    staff.committed(record, COMMITMENT_PHONE, &[phone])
}

#[test]
fn an_applicant_with_a_members_phone_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    refused_unchanged(dir.path(), applicant_with_the_officers_phone(&staff), "phone_of_member");
}

#[test]
fn an_applicant_with_a_members_phone_forced_into_storage_is_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    let seqs = force_all(dir.path(), applicant_with_the_officers_phone(&staff));
    caught(dir.path(), seqs[1], "phone_of_member");
}

/// The clerk's `case_opened` carrying the applicant's phone commitment
/// itself, with no node record before it.
fn opened_with_its_own_commitment(staff: &Staff) -> Record {
    let key = staff.commitment_key;
    let (record, _) = opened_by(staff, &staff.filing_clerk, &|p| {
        p.applicants[0].phone_commitment = commitment(&key, COMMITMENT_PHONE, &CaseRecords::applicant_phone(1));
    });
    record
}

#[test]
fn a_case_opened_without_the_nodes_commitment_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    refused_unchanged(dir.path(), vec![opened_with_its_own_commitment(&staff)], "commitment");
    // Nor without any commitment at all.
    let (bare, phones) = opened_by(&staff, &staff.filing_clerk, &|_| {});
    refused_unchanged(dir.path(), vec![bare.clone()], "commitment");
    // Nor with the clerk's commitment after the node's.
    refused_unchanged(
        dir.path(),
        staff.committed(opened_with_its_own_commitment(&staff), COMMITMENT_PHONE, &phones),
        "commitment",
    );
    // Nor with the node's commitment to another record.
    let other = CaseRecords::new(&staff, &staff.officers[0], "(2022)苏02执11号").open(1);
    refused_unchanged(dir.path(), vec![other[0].clone(), bare], "commitment");
}

#[test]
fn a_case_opened_without_the_nodes_commitment_forced_into_storage_is_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    let seq = force_append(dir.path(), opened_with_its_own_commitment(&staff));
    caught(dir.path(), seq, "commitment");
}

const UNIDENTIFIED: &str = "BANK-U1";
const UNIDENTIFIED_FEN: u64 = 77_700;

/// Money finance could not assign to a case, then the case officer's
/// claim of it for their own case ([`CASE`]): pending, nothing moved.
fn claimed_by_the_officer(dir: &Path, staff: &Staff) {
    let ledger = Ledger::open(dir, clock(), options()).expect("open");
    let case = CaseRecords::new(staff, &staff.officers[0], CASE);
    ledger
        .append(vec![
            case.unidentified_receipt(UNIDENTIFIED, UNIDENTIFIED_FEN, "2026-11-20"),
            case.claim(UNIDENTIFIED, &staff.officers[0]),
        ])
        .expect("the officer claims it for their case");
    assert_eq!(ledger.unidentified_receipts().expect("list").len(), 1, "pending");
    ledger.close().expect("close");
}

fn claim_decided(by: &Person, request_id: &str) -> Record {
    let decided = ReceiptClaimDecided {
        request_id: request_id.into(),
        bank_reference: UNIDENTIFIED.into(),
        case_number: CASE.into(),
        decision: Decision::Approve,
    };
    sign(ORIGIN, KIND_RECEIPT_CLAIM_DECIDED, &decided, &by.identity)
}

#[test]
fn an_officer_cannot_decide_their_own_claim_of_a_receipt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    claimed_by_the_officer(dir.path(), &staff);
    refused_unchanged(
        dir.path(),
        vec![claim_decided(&staff.officers[0], "decided-by-officer")],
        "second_person",
    );
    // The bureau head decides the fund manager's claims, not an officer's.
    refused_unchanged(
        dir.path(),
        vec![claim_decided(&staff.bureau_head, "decided-by-head")],
        "role",
    );
    let ledger = Ledger::open(dir.path(), clock(), options()).expect("open");
    let available = ledger
        .case_view(CASE, 0)
        .expect("read")
        .expect("case")
        .case
        .available_fen;
    ledger
        .append_one(claim_decided(&staff.fund_manager, "decided-by-fund-manager"))
        .expect("the fund manager approves the officer's claim");
    assert!(ledger.unidentified_receipts().expect("list").is_empty());
    let view = ledger.case_view(CASE, 0).expect("read").expect("case");
    assert_eq!(view.case.available_fen, available + UNIDENTIFIED_FEN);
    assert!(view.receipts.iter().any(|r| r.receipt.bank_reference == UNIDENTIFIED));
    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
}

#[test]
fn a_self_decided_claim_forced_into_storage_is_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    claimed_by_the_officer(dir.path(), &staff);
    let seq = force_append(dir.path(), claim_decided(&staff.officers[0], "decided-by-officer"));
    caught(dir.path(), seq, "second_person");
}

/// A new officer enrolled with the phone of applicant 1 of [`CASE`], and
/// one enrolled with the phone of another member.
fn enrolments_with_taken_phones(staff: &Staff) -> [Vec<Record>; 2] {
    let applicants = Person::new(
        [91; 32],
        "officer-9",
        "钱承办",
        Role::Officer,
        &CaseRecords::applicant_phone(1),
    );
    let members = Person::new([92; 32], "officer-8", "冯承办", Role::Officer, &staff.officers[1].phone);
    [staff.enrol(&applicants), staff.enrol(&members)]
}

#[test]
fn a_member_is_not_enrolled_with_an_applicants_or_another_members_phone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    for enrolment in enrolments_with_taken_phones(&staff) {
        refused_unchanged(dir.path(), enrolment, "phone_of_member");
    }
}

#[test]
fn members_enrolled_with_taken_phones_forced_into_storage_are_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    let [applicants, members] = enrolments_with_taken_phones(&staff);
    // [numbers_committed, key_registered, key_co_signed]: the registration.
    let applicants = force_all(dir.path(), applicants)[1];
    let members = force_all(dir.path(), members)[1];
    caught(dir.path(), applicants, "phone_of_member");
    caught(dir.path(), members, "phone_of_member");
}

/// An officer enrolled with a phone commitment the administrator made up
/// (not the node's from the number in clear): the administrator could then
/// let the officer's real phone pass as an applicant's (third attack round,
/// finding B).
fn enrolment_with_a_made_up_commitment(staff: &Staff) -> Record {
    let officer = Person::new([93; 32], "officer-93", "陈承办", Role::Officer, "13912345678");
    let (record, _) = officer.enrolment_request(ORIGIN, &staff.administrator.identity);
    let mut payload: caseledger_verify::record::KeyRegistered = caseledger::court::revealed(&record);
    payload.member.as_mut().expect("member").phone_commitment = "ab".repeat(32);
    caseledger::court::sign_revealed(
        ORIGIN,
        caseledger_verify::record::KIND_KEY_REGISTERED,
        &payload,
        &staff.administrator.identity,
    )
}

#[test]
fn an_enrolment_that_gives_its_own_phone_commitment_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    let made_up = enrolment_with_a_made_up_commitment(&staff);
    refused_unchanged(dir.path(), vec![made_up.clone()], "commitment");
    // Not even behind a node commitment to the real number.
    let real = vec!["13912345678".to_owned()];
    refused_unchanged(
        dir.path(),
        staff.committed(made_up, COMMITMENT_PHONE, &real),
        "commitment",
    );
    // Without any commitment, and with the node's: the second goes in.
    let officer = Person::new([93; 32], "officer-93", "陈承办", Role::Officer, "13912345678");
    let (bare, _) = officer.enrolment_request(ORIGIN, &staff.administrator.identity);
    refused_unchanged(dir.path(), vec![bare], "commitment");
    let ledger = Ledger::open(dir.path(), clock(), options()).expect("open");
    ledger
        .append(staff.enrol(&officer))
        .expect("enrolled with the node's commitment");
}

#[test]
fn an_enrolment_with_a_made_up_commitment_forced_into_storage_is_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    let seq = force_append(dir.path(), enrolment_with_a_made_up_commitment(&staff));
    caught(dir.path(), seq, "commitment");
}

/// An officer's own applicant code (the all-zero one, which they could
/// then use as the applicant): codes are drawn and recorded by the node.
fn officers_chosen_code(staff: &Staff) -> Record {
    let payload = ApplicantCodeIssued {
        request_id: "code-by-officer".into(),
        case_number: CASE.into(),
        applicant_id: "applicant-1".into(),
        code_hash: applicant_code_hash(&"0".repeat(32)),
        requested_by: staff.officers[0].member_id.clone(),
        expires_ms: None,
    };
    caseledger::court::sign_revealed(
        ORIGIN,
        KIND_APPLICANT_CODE_ISSUED,
        &payload,
        &staff.officers[0].identity,
    )
}

#[test]
fn an_officer_cannot_record_an_applicant_code_of_their_choosing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    refused_unchanged(dir.path(), vec![officers_chosen_code(&staff)], "not_authorized");
    // The node's record naming another officer as the one who asked: refused.
    let (_, mut issued) = CaseRecords::new(&staff, &staff.officers[1], CASE).applicant_code(1);
    let payload: ApplicantCodeIssued = caseledger::court::revealed(&issued);
    issued = caseledger::court::sign_revealed(ORIGIN, KIND_APPLICANT_CODE_ISSUED, &payload, &staff.node);
    refused_unchanged(dir.path(), vec![issued], "role");
}

#[test]
fn an_officers_chosen_code_forced_into_storage_is_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    let seq = force_append(dir.path(), officers_chosen_code(&staff));
    caught(dir.path(), seq, "not_authorized");
}

/// The node's record of a code that would open the bundle for ever (or for
/// more than 400 days): refused at write time, and named by `verify` if
/// forced into storage.
fn everlasting_code(staff: &Staff) -> Record {
    let (_, issued) = CaseRecords::new(staff, &staff.officers[0], CASE).applicant_code(1);
    let mut payload: ApplicantCodeIssued = caseledger::court::revealed(&issued);
    payload.expires_ms = Some(u64::MAX);
    caseledger::court::sign_revealed(ORIGIN, KIND_APPLICANT_CODE_ISSUED, &payload, &staff.node)
}

#[test]
fn a_code_that_never_expires_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    refused_unchanged(dir.path(), vec![everlasting_code(&staff)], "code_expiry");
    // 400 days is the limit.
    let (_, issued) = CaseRecords::new(&staff, &staff.officers[0], CASE).applicant_code(1);
    let mut payload: ApplicantCodeIssued = caseledger::court::revealed(&issued);
    payload.expires_ms = Some(CLOCK_START_MS + 401 * 86_400_000);
    let too_long = caseledger::court::sign_revealed(ORIGIN, KIND_APPLICANT_CODE_ISSUED, &payload, &staff.node);
    refused_unchanged(dir.path(), vec![too_long], "code_expiry");
}

#[test]
fn a_code_that_never_expires_forced_into_storage_is_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = setup(dir.path());
    let seq = force_append(dir.path(), everlasting_code(&staff));
    caught(dir.path(), seq, "code_expiry");
}
