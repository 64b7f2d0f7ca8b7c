//! The normal case-fund flow end to end through the store: a case is opened,
//! the applicant's account registered and confirmed, money arrives, the
//! officer requests a disbursement, each role approves in order, finance
//! pays; the derived state follows every step and the audit replays it.

mod common;

use caseledger::court::CaseRecords;
use caseledger_ledger::store::Ledger;
use caseledger_verify::funds::model::*;
use caseledger_verify::funds::views::{self, DeadlineStatus};
use common::*;

const CASE: &str = "(2023)苏02执123号";

fn case_view(ledger: &Ledger, now_ms: u64) -> views::CaseView {
    ledger.case_view(CASE, now_ms).expect("read").expect("case exists")
}

#[test]
fn a_disbursement_from_filing_to_payment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 1);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger.append(case.open(2)).expect("open case");
    ledger
        .append(case.account("acct-1", 1, "6222020200112233445"))
        .expect("register account");
    let error = ledger
        .append_one(case.request("d-1", "acct-1", 1_000))
        .expect_err("unconfirmed account");
    assert!(error.to_string().contains("not active"), "{error}");
    ledger.append_one(case.confirm("acct-1")).expect("confirm account");
    ledger
        .append_one(case.receipt("BANK-0001", 5_000_000))
        .expect("receipt");
    ledger
        .append_one(case.receipt("BANK-0002", 1_500_000))
        .expect("receipt");

    let view = case_view(&ledger, 0);
    assert_eq!(
        (view.case.available_fen, view.case.received_fen),
        (6_500_000, 6_500_000)
    );

    // ¥40,000 is below ¥100,000: bureau head, then finance.
    ledger
        .append_one(case.request("d-1", "acct-1", 4_000_000))
        .expect("request");
    let view = case_view(&ledger, 0);
    assert_eq!(
        (view.case.available_fen, view.case.reserved_fen),
        (2_500_000, 4_000_000)
    );
    assert_eq!(view.disbursements[0].chain, vec![Role::BureauHead, Role::Finance]);
    assert_eq!(
        ledger.pending_steps(Role::BureauHead).expect("pending"),
        vec!["d-1".to_owned()]
    );

    let approvals = case.approvals(ORIGIN, "d-1", "acct-1", 4_000_000, &[Role::BureauHead, Role::Finance]);
    for approval in approvals {
        ledger.append_one(approval).expect("approval");
    }
    assert!(ledger.pending_steps(Role::BureauHead).expect("pending").is_empty());
    let view = case_view(&ledger, 0);
    assert_eq!(view.disbursements[0].status, DisbursementStatus::Approved);
    ledger
        .append_one(case.payment("d-1", "PAY-0001", "acct-1", 4_000_000))
        .expect("payment");

    let now = ledger.entry(ledger.size() - 1).expect("entry").timestamp_ms;
    let view = case_view(&ledger, now);
    assert_eq!(view.disbursements[0].status, DisbursementStatus::Paid);
    assert_eq!(
        (view.case.available_fen, view.case.reserved_fen, view.case.paid_fen),
        (2_500_000, 0, 4_000_000)
    );
    assert_eq!(view.receipts.len(), 2);
    assert_eq!(view.receipts[0].deadline, DeadlineStatus::OnTime);
    let later = case_view(&ledger, now + 26 * DAY_MS);
    assert_eq!(later.receipts[0].deadline, DeadlineStatus::NearDue);
    let overdue = case_view(&ledger, now + 31 * DAY_MS);
    assert_eq!(overdue.receipts[0].deadline, DeadlineStatus::Overdue);

    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(
        report.ok && report.rules_ok,
        "{:?} {:?}",
        report.first_error,
        report.violations
    );
    assert_eq!(report.cases, 1);
}

#[test]
fn large_amounts_take_the_long_chain_and_a_rejection_releases_the_money() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 2);
    let case = CaseRecords::new(&staff, &staff.officers[1], CASE);
    ledger
        .append(
            [
                case.open(1),
                case.account("acct-1", 1, "6222000011112222"),
                vec![case.confirm("acct-1")],
            ]
            .concat(),
        )
        .expect("case and account");
    ledger.append_one(case.receipt("BANK-1", 50_000_000)).expect("receipt");
    ledger
        .append_one(case.request("big", "acct-1", 20_000_000))
        .expect("request ¥200,000");
    let chain = [Role::FundManager, Role::BureauHead, Role::CourtLeader, Role::Finance];
    assert_eq!(case_view(&ledger, 0).disbursements[0].chain, chain.to_vec());
    ledger
        .append_one(case.approval(
            ORIGIN,
            "big",
            "acct-1",
            20_000_000,
            1,
            Role::FundManager,
            Decision::Approve,
            &staff.fund_manager,
        ))
        .expect("fund manager");
    ledger
        .append_one(case.approval(
            ORIGIN,
            "big",
            "acct-1",
            20_000_000,
            2,
            Role::BureauHead,
            Decision::Reject,
            &staff.bureau_head,
        ))
        .expect("bureau head rejects");
    let view = case_view(&ledger, 0);
    assert_eq!(view.disbursements[0].status, DisbursementStatus::Rejected);
    assert_eq!((view.case.available_fen, view.case.reserved_fen), (50_000_000, 0));
    let late = case.approval(
        ORIGIN,
        "big",
        "acct-1",
        20_000_000,
        3,
        Role::CourtLeader,
        Decision::Approve,
        &staff.court_leader,
    );
    assert_eq!(refused_rule(&ledger, late), "status");
    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
}

#[test]
fn retries_return_the_first_result_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 3);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let first = ledger.append(case.open(1)).expect("open").seqs;
    let size = ledger.size();
    assert_eq!(ledger.append(case.open(1)).expect("retry").seqs, first);
    assert_eq!(ledger.size(), size, "the retried opening wrote nothing");
    let receipt = ledger.append_one(case.receipt("BANK-9", 100)).expect("receipt");
    // The same bank reference recorded again (another request id) returns the original receipt.
    let mut again = serde_json::from_slice::<ReceiptRecorded>(&case.receipt("BANK-9", 100).payload).expect("json");
    again.request_id = "another-request".into();
    let again = caseledger::court::sign(ORIGIN, KIND_RECEIPT_RECORDED, &again, &staff.finance.identity);
    assert_eq!(ledger.append_one(again).expect("same reference"), receipt);
    assert_eq!(ledger.size(), size + 1, "only the first receipt was written");
    assert_eq!(case_view(&ledger, 0).case.received_fen, 100);
}

#[test]
fn unidentified_receipts_are_claimed_into_a_case() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 4);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger.append(case.open(1)).expect("open");
    let unknown = ReceiptRecorded {
        request_id: "r-unknown".into(),
        bank_reference: "BANK-U1".into(),
        amount_fen: 77_700,
        payer: "不明付款人".into(),
        value_date: "2026-11-21".into(),
        channel: Channel::OnlineSeizure,
        case_number: None,
    };
    ledger
        .append_one(caseledger::court::sign(
            ORIGIN,
            KIND_RECEIPT_RECORDED,
            &unknown,
            &staff.finance.identity,
        ))
        .expect("unidentified receipt");
    assert_eq!(ledger.unidentified_receipts().expect("list").len(), 1);
    let claim = ReceiptClaimed {
        request_id: "claim-1".into(),
        bank_reference: "BANK-U1".into(),
        case_number: CASE.into(),
    };
    ledger
        .append_one(caseledger::court::sign(
            ORIGIN,
            KIND_RECEIPT_CLAIMED,
            &claim,
            &staff.fund_manager.identity,
        ))
        .expect("claim");
    // A claim alone moves nothing: a second person decides it.
    assert_eq!(ledger.unidentified_receipts().expect("list").len(), 1);
    assert_eq!(case_view(&ledger, 0).case.available_fen, 0);
    let decided = ReceiptClaimDecided {
        request_id: "claim-1-decided".into(),
        bank_reference: "BANK-U1".into(),
        case_number: CASE.into(),
        decision: Decision::Approve,
    };
    ledger
        .append_one(caseledger::court::sign(
            ORIGIN,
            KIND_RECEIPT_CLAIM_DECIDED,
            &decided,
            &staff.bureau_head.identity,
        ))
        .expect("the bureau head approves the fund manager's claim");
    assert!(ledger.unidentified_receipts().expect("list").is_empty());
    assert_eq!(case_view(&ledger, 0).case.available_fen, 77_700);
    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
}

#[test]
fn delays_cancellations_returns_and_key_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court_with_case(dir.path(), 5, CASE, 1, 9_000_000);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let recorded = case_view(&ledger, 0).receipts[0].receipt.due_ms;
    let delay = DelayApproved {
        request_id: "delay-1".into(),
        bank_reference: "BANK-1".into(),
        reason: DelayReason::FrozenForAnotherCase,
        text: None,
        new_due_date: "2027-01-31".into(),
    };
    assert_eq!(
        refused_rule(
            &ledger,
            caseledger::court::sign(ORIGIN, KIND_DELAY_APPROVED, &delay, &staff.officers[0].identity)
        ),
        "role"
    );
    ledger
        .append_one(caseledger::court::sign(
            ORIGIN,
            KIND_DELAY_APPROVED,
            &delay,
            &staff.bureau_head.identity,
        ))
        .expect("delay");
    let receipt = &case_view(&ledger, 0).receipts[0].receipt;
    assert!(receipt.delayed && receipt.due_ms > recorded);

    // The freeze is lifted: payment is due within 10 days of that record.
    let ended = DelayEnded {
        request_id: "delay-1-ended".into(),
        bank_reference: "BANK-1".into(),
        text: "另案冻结已解除".into(),
    };
    let sign_ended =
        |who: &caseledger::court::Person| caseledger::court::sign(ORIGIN, KIND_DELAY_ENDED, &ended, &who.identity);
    assert_eq!(
        refused_rule(&ledger, sign_ended(&staff.officers[1])),
        "role",
        "not this case's officer"
    );
    let seq = ledger.append_one(sign_ended(&staff.officers[0])).expect("delay ended");
    let ended_at = ledger.entry(seq).expect("entry").timestamp_ms;
    let receipt = &case_view(&ledger, 0).receipts[0].receipt;
    assert!(!receipt.delayed);
    assert_eq!(receipt.due_ms, ended_at + DELAY_ENDED_DAYS * DAY_MS);
    let mut again = ended.clone();
    again.request_id = "delay-1-ended-again".into();
    assert_eq!(
        refused_rule(
            &ledger,
            caseledger::court::sign(ORIGIN, KIND_DELAY_ENDED, &again, &staff.bureau_head.identity)
        ),
        "delay",
        "a receipt that is not delayed has no delay to end"
    );

    // Cancel a pending request: the money is available again.
    ledger
        .append_one(case.request("d-1", "acct-1", 1_000_000))
        .expect("request");
    let cancel = DisbursementCancelled {
        request_id: "cancel-1".into(),
        disbursement_id: "d-1".into(),
        reason: "申请撤回".into(),
    };
    ledger
        .append_one(caseledger::court::sign_revealed(
            ORIGIN,
            KIND_DISBURSEMENT_CANCELLED,
            &cancel,
            &staff.officers[0].identity,
        ))
        .expect("cancel");
    assert_eq!(case_view(&ledger, 0).case.available_fen, 9_000_000);

    // The bureau head rotates keys: the old key signs nothing, the new one signs the step.
    let new_key = caseledger_keys::Identity::from_seed([99; 32]);
    let rotation = caseledger_verify::record::KeyRotated {
        key_id: staff.bureau_head.identity.public_key().key_id().to_hex(),
        public_key: caseledger_verify::record::KeyText::from_key(&new_key.public_key()),
    };
    ledger
        .append_one(caseledger::court::sign(
            ORIGIN,
            caseledger_verify::record::KIND_KEY_ROTATED,
            &rotation,
            &staff.administrator.identity,
        ))
        .expect("rotate");
    ledger
        .append_one(case.request("d-2", "acct-1", 2_000_000))
        .expect("request");
    let old = case.approval(
        ORIGIN,
        "d-2",
        "acct-1",
        2_000_000,
        1,
        Role::BureauHead,
        Decision::Approve,
        &staff.bureau_head,
    );
    assert_eq!(refused_rule(&ledger, old.clone()), "revoked_key");
    let mut rotated = staff.bureau_head.clone();
    rotated.identity = new_key;
    let step = case.approval(
        ORIGIN,
        "d-2",
        "acct-1",
        2_000_000,
        1,
        Role::BureauHead,
        Decision::Approve,
        &rotated,
    );
    // Not before a second person co-signs the rotation.
    assert_eq!(refused_rule(&ledger, step.clone()), "key_co_signature");
    // The rotation keeps the registration's member fields, so the
    // co-signer restates the first registration's digests, and gives the
    // member's phone for the node to check, as at enrolment.
    let mut restated =
        caseledger_verify::record::KeyCoSigned::of(&staff.bureau_head.registration()).expect("a valid key");
    restated.key_id = rotated.identity.public_key().key_id().to_hex();
    let co_signature = caseledger::court::sign(
        ORIGIN,
        caseledger_verify::record::KIND_KEY_CO_SIGNED,
        &restated,
        &staff.co_administrator.identity,
    );
    assert_eq!(refused_rule(&ledger, co_signature.clone()), "co_signature_phone");
    ledger
        .append(staff.committed(
            co_signature,
            caseledger::commitments::COMMITMENT_PHONE,
            std::slice::from_ref(&staff.bureau_head.phone),
        ))
        .expect("the second administrator co-signs the rotation");
    ledger.append_one(step).expect("the new key signs as the same member");
    let finance = case.approval(
        ORIGIN,
        "d-2",
        "acct-1",
        2_000_000,
        2,
        Role::Finance,
        Decision::Approve,
        &staff.finance,
    );
    ledger.append_one(finance).expect("finance");
    ledger
        .append_one(case.payment("d-2", "PAY-2", "acct-1", 2_000_000))
        .expect("pay");

    // The bank bounces the payment: the money comes back to the case.
    let returned = PaymentReturned {
        request_id: "return-1".into(),
        disbursement_id: "d-2".into(),
        bank_reference: "PAY-2".into(),
        credit_reference: "CREDIT-2".into(),
        amount_fen: 2_000_000,
        account_id: "acct-1".into(),
        reason: "收款账户已销户".into(),
    };
    let by = |person: &caseledger::court::Person, payload: &PaymentReturned| {
        caseledger::court::sign_revealed(ORIGIN, KIND_PAYMENT_RETURNED, payload, &person.identity)
    };
    // Not by whoever paid; not another amount or account; not a credit
    // reference already booked as a receipt.
    assert_eq!(refused_rule(&ledger, by(&staff.finance, &returned)), "second_person");
    let less = PaymentReturned {
        amount_fen: 1_000_000,
        ..returned.clone()
    };
    assert_eq!(
        refused_rule(&ledger, by(&staff.fund_manager, &less)),
        "payment_mismatch"
    );
    let reused = PaymentReturned {
        credit_reference: "BANK-1".into(),
        ..returned.clone()
    };
    assert_eq!(
        refused_rule(&ledger, by(&staff.fund_manager, &reused)),
        "duplicate_reference"
    );
    ledger.append_one(by(&staff.fund_manager, &returned)).expect("return");
    // The credit cannot be booked again as a receipt.
    let again = caseledger::court::sign(
        ORIGIN,
        KIND_RECEIPT_RECORDED,
        &ReceiptRecorded {
            request_id: "receipt-credit-2".into(),
            bank_reference: "CREDIT-2".into(),
            amount_fen: 2_000_000,
            payer: "银行退回".into(),
            value_date: "2026-11-20".into(),
            channel: Channel::Transfer,
            case_number: None,
        },
        &staff.finance.identity,
    );
    assert_eq!(refused_rule(&ledger, again.clone()), "duplicate_reference");
    let view = case_view(&ledger, 0);
    assert_eq!(
        (view.case.available_fen, view.case.paid_fen, view.case.returned_fen),
        (9_000_000, 2_000_000, 2_000_000)
    );
    let report = ledger.audit(None, 2, &|_| {}).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
}

#[test]
fn pending_steps_per_member_and_receipts_due() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, staff) = court(dir.path(), 6);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    ledger
        .append(
            [
                case.open(1),
                case.account("acct-1", 1, "6222000011110001"),
                vec![
                    case.confirm("acct-1"),
                    case.receipt("BANK-1", 30_000_000),
                    case.request("big", "acct-1", 20_000_000),
                ],
            ]
            .concat(),
        )
        .expect("setup");
    let fund = &staff.fund_manager;
    assert_eq!(
        ledger
            .pending_steps_for(Role::FundManager, &fund.member_id)
            .expect("pending"),
        vec!["big".to_owned()]
    );
    let approvals = case.approvals(ORIGIN, "big", "acct-1", 20_000_000, &[Role::FundManager]);
    ledger.append(approvals).expect("fund manager approves");
    assert!(ledger
        .pending_steps_for(Role::FundManager, &fund.member_id)
        .expect("pending")
        .is_empty());
    let head = &staff.bureau_head;
    assert_eq!(
        ledger
            .pending_steps_for(Role::BureauHead, &head.member_id)
            .expect("pending"),
        vec!["big".to_owned()]
    );

    let recorded = ledger.entry(ledger.size() - 1).expect("entry").timestamp_ms;
    assert!(ledger.receipts_due(recorded).expect("due").is_empty());
    let near = ledger.receipts_due(recorded + 27 * DAY_MS).expect("due");
    assert_eq!(near.len(), 1);
    assert_eq!(near[0].deadline, DeadlineStatus::NearDue);
    let overdue = ledger.receipts_due(recorded + 40 * DAY_MS).expect("due");
    assert_eq!(
        (overdue[0].deadline, overdue[0].age_days),
        (DeadlineStatus::Overdue, 40)
    );
}
