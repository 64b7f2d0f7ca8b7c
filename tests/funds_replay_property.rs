//! Property: for any history of case-fund requests (most of them refused),
//! replaying the chain reproduces the stored derived state exactly and the
//! money reconciles. The audit compares every stored object with its replay.

mod common;

use common::ORIGIN;

use caseledger::court::{sign, CaseRecords};
use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::*;
use proptest::prelude::*;

const CASES: [&str; 2] = ["(2023)苏02执1号", "(2023)苏02执2号"];

#[derive(Clone, Debug)]
struct Op {
    kind: u8,
    case: usize,
    pick: u8,
    amount: u64,
}

fn op() -> impl Strategy<Value = Op> {
    (0u8..18, 0usize..2, any::<u8>(), 1u64..3_000_000).prop_map(|(kind, case, pick, amount)| Op {
        kind,
        case,
        pick,
        amount,
    })
}

/// Each disbursement id has one amount, so statements and payments can match.
const AMOUNTS: [u64; 4] = [100_000, 700_000, 1_500_000, 12_000_000];
const SMALL_CHAIN: [Role; 2] = [Role::BureauHead, Role::Finance];
const LARGE_CHAIN: [Role; 4] = [Role::FundManager, Role::BureauHead, Role::CourtLeader, Role::Finance];

fn records(staff: &caseledger::court::Staff, op: &Op, n: usize) -> Vec<Record> {
    let officer = &staff.officers[op.case];
    let case = CaseRecords::new(staff, officer, CASES[op.case]);
    match op.kind {
        // The node's commitment to the numbers, then the member's record.
        0 => return case.open(2),
        1 => {
            return case.account(
                &format!("acct-{}-{}", op.case, op.pick % 3),
                u32::from(op.pick % 2) + 1,
                &format!("62220000{:08}", op.pick),
            )
        }
        6 => {
            // A claim of an unidentified receipt (by the fund manager or
            // the case's officer), then the second person's decision that
            // moves the money (or not).
            let bank_reference = format!("UNID-{}", op.pick % 3);
            let claim = ReceiptClaimed {
                request_id: format!("c-{n}"),
                bank_reference: bank_reference.clone(),
                case_number: CASES[op.case].into(),
            };
            let (claimant, decider) = if op.pick.is_multiple_of(2) {
                (&staff.fund_manager, &staff.bureau_head)
            } else {
                (officer, &staff.fund_manager)
            };
            let decided = ReceiptClaimDecided {
                request_id: format!("cd-{n}"),
                bank_reference,
                case_number: CASES[op.case].into(),
                decision: if op.amount.is_multiple_of(7) {
                    Decision::Reject
                } else {
                    Decision::Approve
                },
            };
            return vec![
                sign(ORIGIN, KIND_RECEIPT_CLAIMED, &claim, &claimant.identity),
                sign(ORIGIN, KIND_RECEIPT_CLAIM_DECIDED, &decided, &decider.identity),
            ];
        }
        _ => {}
    }
    if op.kind == 12 {
        // The whole chain, one step after another, by the right people.
        let which = usize::from(op.pick % 4);
        let chain: &[Role] = if AMOUNTS[which] >= 10_000_000 {
            &LARGE_CHAIN
        } else {
            &SMALL_CHAIN
        };
        let account = format!("acct-{}-0", op.case);
        return case.approvals(
            common::ORIGIN,
            &format!("d-{}-{which}", op.case),
            &account,
            AMOUNTS[which],
            chain,
        );
    }
    vec![record(staff, op, n)]
}

fn record(staff: &caseledger::court::Staff, op: &Op, n: usize) -> Record {
    let officer = &staff.officers[op.case];
    let case = CaseRecords::new(staff, officer, CASES[op.case]);
    let account = if op.pick.is_multiple_of(5) {
        format!("acct-{}-{}", op.case, op.pick % 3)
    } else {
        format!("acct-{}-0", op.case)
    };
    let which = usize::from(op.pick % 4);
    let disbursement = format!("d-{}-{which}", op.case);
    let amount = AMOUNTS[which];
    match op.kind {
        2 => case.confirm(&format!("acct-{}-{}", op.case, op.pick % 3)),
        3 | 4 => case.receipt(&format!("BANK-{n}"), op.amount),
        5 => {
            let receipt = ReceiptRecorded {
                request_id: format!("u-{n}"),
                bank_reference: format!("UNID-{}", op.pick % 3),
                amount_fen: op.amount,
                payer: "不明".into(),
                value_date: "2026-01-02".into(),
                channel: Channel::Cash,
                case_number: None,
            };
            sign(ORIGIN, KIND_RECEIPT_RECORDED, &receipt, &staff.finance.identity)
        }
        7 | 8 => case.request(&disbursement, &account, amount),
        9..=11 => {
            let chain: &[Role] = if amount >= 10_000_000 {
                &LARGE_CHAIN
            } else {
                &SMALL_CHAIN
            };
            let step = u32::from(op.pick / 4 % 4) + 1;
            let role = if op.amount.is_multiple_of(10) {
                LARGE_CHAIN[usize::from(op.pick) % 4]
            } else {
                chain[(step as usize - 1) % chain.len()]
            };
            let decision = if op.amount.is_multiple_of(13) {
                Decision::Reject
            } else {
                Decision::Approve
            };
            let record = case.approval(
                common::ORIGIN,
                &disbursement,
                &account,
                amount,
                step,
                role,
                decision,
                staff.by_role(role),
            );
            // Each attempt gets its own request id so that attempts are not retries.
            let mut statement: ApprovalSigned = serde_json::from_slice(&record.payload).expect("json");
            statement.request_id = format!("a-{n}");
            sign(ORIGIN, KIND_APPROVAL_SIGNED, &statement, &staff.by_role(role).identity)
        }
        13 => case.payment(&disbursement, &format!("PAY-{disbursement}"), &account, amount),
        14 => {
            let cancel = DisbursementCancelled {
                request_id: format!("x-{n}"),
                disbursement_id: disbursement,
                reason: "撤回".into(),
            };
            caseledger::court::sign_revealed(ORIGIN, KIND_DISBURSEMENT_CANCELLED, &cancel, &officer.identity)
        }
        16 => {
            // Receipts are BANK-<op index>: aim at an earlier op's.
            let delay = DelayApproved {
                request_id: format!("y-{n}"),
                bank_reference: format!("BANK-{}", usize::from(op.pick) % n.max(1)),
                reason: DelayReason::FrozenForAnotherCase,
                text: None,
                new_due_date: "2099-12-31".into(),
            };
            sign(ORIGIN, KIND_DELAY_APPROVED, &delay, &staff.bureau_head.identity)
        }
        17 => {
            let ended = DelayEnded {
                request_id: format!("z-{n}"),
                bank_reference: format!("BANK-{}", usize::from(op.pick) % n.max(1)),
                text: "冻结解除".into(),
            };
            sign(ORIGIN, KIND_DELAY_ENDED, &ended, &staff.bureau_head.identity)
        }
        _ => {
            let returned = PaymentReturned {
                request_id: format!("r-{n}"),
                bank_reference: format!("PAY-{disbursement}"),
                credit_reference: format!("CREDIT-{n}"),
                amount_fen: op.amount,
                account_id: "acct-1".into(),
                disbursement_id: disbursement,
                reason: "账户冻结".into(),
            };
            caseledger::court::sign_revealed(ORIGIN, KIND_PAYMENT_RETURNED, &returned, &staff.fund_manager.identity)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn replay_reproduces_the_stored_state(ops in prop::collection::vec(op(), 1..200), batch in 1usize..3) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ledger, staff) = common::court(dir.path(), 31);
        // A prelude that opens both cases with confirmed accounts and money,
        // so that the random part reaches requests, approvals and payments.
        let prelude = (0..2).flat_map(|case| {
            [0u8, 1, 2, 3, 4].into_iter().map(move |kind| Op { kind, case, pick: 0, amount: 2_500_000 })
        });
        let groups: Vec<Vec<Record>> = prelude
            .chain(ops.iter().cloned())
            .enumerate()
            .map(|(n, op)| records(&staff, &op, n))
            .collect();
        let prelude_records: usize = groups[..10].iter().map(Vec::len).sum();
        let records = groups.concat();
        let mut accepted = 0;
        let (prelude, rest) = records.split_at(prelude_records);
        ledger.append(prelude.to_vec()).expect("prelude");
        let random_from = ledger.size();
        for chunk in rest.chunks(batch) {
            // A batch with one refused record is refused whole; either way
            // nothing half-written may remain.
            if ledger.append(chunk.to_vec()).is_ok() {
                accepted += 1;
            }
        }
        let report = ledger.audit(None, 2, &|_| {}).expect("audit");
        prop_assert!(report.first_error.is_none(), "{:?}", report.first_error);
        prop_assert!(report.rules_ok, "after {accepted} accepted batches: {:?}", report.violations);
        if std::env::var("REPLAY_STATS").is_ok() {
            let kinds: Vec<String> = (0..ledger.size())
                .map(|seq| caseledger_verify::record::kind_name(ledger.entry(seq).expect("entry").record.kind).to_owned())
                .collect();
            eprintln!("batch {batch}: {} entries: {:?}", kinds.len(), kinds.iter().skip(random_from as usize).collect::<Vec<_>>());
        }
    }
}
