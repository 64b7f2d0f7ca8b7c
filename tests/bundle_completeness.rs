//! An applicant's bundle is complete (docs/FORMAT.md §5b, §7a): every
//! thread about the applicant's money is proven whole against the
//! checkpoint's thread map. A server that drops any one entry (a step, a
//! payment, a return, a cancellation, a delay, an arrival of money, a key
//! revocation...) or a whole thread is caught, offline and by the
//! command line; a checkpoint whose thread map the entries do not produce
//! is named by `verify`.

mod common;

use std::collections::BTreeSet;

use caseledger::court::{sign, CaseRecords, Staff};
use caseledger_ledger::store::Ledger;
use caseledger_verify::bundle::ApplicantBundle;
use caseledger_verify::entry::{Entry, Record};
use caseledger_verify::funds::model::*;
use caseledger_verify::record::kind_name;
use caseledger_verify::threads::Thread;
use common::*;

const CASE: &str = "(2026)苏02执77号";
const BIG: u64 = 10_000_000;

fn returned(staff: &Staff, id: &str, payment: &str, amount_fen: u64, account_id: &str) -> Record {
    let payload = PaymentReturned {
        request_id: format!("return-{id}"),
        disbursement_id: id.into(),
        bank_reference: payment.into(),
        credit_reference: format!("CR-{id}"),
        amount_fen,
        account_id: account_id.into(),
        reason: "账户已销户".into(),
    };
    caseledger::court::sign_revealed(ORIGIN, KIND_PAYMENT_RETURNED, &payload, &staff.fund_manager.identity)
}

fn cancelled(staff: &Staff, id: &str) -> Record {
    let payload = DisbursementCancelled {
        request_id: format!("cancel-{id}"),
        disbursement_id: id.into(),
        reason: "申请人撤回".into(),
    };
    caseledger::court::sign_revealed(
        ORIGIN,
        KIND_DISBURSEMENT_CANCELLED,
        &payload,
        &staff.officers[0].identity,
    )
}

/// A case with two applicants and every kind of entry an applicant's
/// money can have. Returns the ledger, the staff and applicant 1's code.
fn full_case(dir: &std::path::Path) -> (Ledger, Staff, String) {
    let (ledger, staff) = court(dir, 77);
    let case = CaseRecords::new(&staff, &staff.officers[0], CASE);
    let approve = |id: &str, account: &str, amount: u64| {
        case.approvals(ORIGIN, id, account, amount, &[Role::BureauHead, Role::Finance])
    };
    let (old_code, old_issue) = case.applicant_code(1);
    let mut records = [
        case.open(2),
        case.account("acct-1", 1, "6222000011110001"),
        vec![case.confirm("acct-1")],
        case.account("acct-2", 2, "6222000022220002"),
        vec![
            case.confirm("acct-2"),
            case.receipt("BANK-1", BIG),
            case.unidentified_receipt("UNID-1", 2_000_000, "2026-11-20"),
            case.claim("UNID-1", &staff.officers[0]),
            case.claim_decided("UNID-1", Decision::Approve, &staff.fund_manager),
            sign(
                ORIGIN,
                KIND_DELAY_APPROVED,
                &DelayApproved {
                    request_id: "delay-1".into(),
                    bank_reference: "BANK-1".into(),
                    reason: DelayReason::FrozenForAnotherCase,
                    text: None,
                    new_due_date: "2026-12-30".into(),
                },
                &staff.bureau_head.identity,
            ),
            sign(
                ORIGIN,
                KIND_DELAY_ENDED,
                &DelayEnded {
                    request_id: "delay-1-ended".into(),
                    bank_reference: "BANK-1".into(),
                    text: "另案冻结已解除".into(),
                },
                &staff.bureau_head.identity,
            ),
            // Paid.
            case.request("d-paid", "acct-1", 1_000_000),
        ],
        approve("d-paid", "acct-1", 1_000_000),
        vec![
            case.payment("d-paid", "PAY-1", "acct-1", 1_000_000),
            // Paid, then returned.
            case.request("d-ret", "acct-1", 500_000),
        ],
        approve("d-ret", "acct-1", 500_000),
        vec![
            case.payment("d-ret", "PAY-2", "acct-1", 500_000),
            returned(&staff, "d-ret", "PAY-2", 500_000, "acct-1"),
            // Cancelled.
            case.request("d-cancel", "acct-1", 200_000),
            cancelled(&staff, "d-cancel"),
            // Rejected at the first step.
            case.request("d-rej", "acct-1", 300_000),
            case.approval(
                ORIGIN,
                "d-rej",
                "acct-1",
                300_000,
                1,
                Role::BureauHead,
                Decision::Reject,
                &staff.bureau_head,
            ),
            // Waiting for finance.
            case.request("d-wait", "acct-1", 400_000),
            approve("d-wait", "acct-1", 400_000)[0].clone(),
            // The co-applicant's money.
            case.request("d-other", "acct-2", 700_000),
        ],
        approve("d-other", "acct-2", 700_000),
        vec![
            case.payment("d-other", "PAY-3", "acct-2", 700_000),
            old_issue,
            sign(
                ORIGIN,
                KIND_APPLICANT_CODE_REVOKED,
                &ApplicantCodeRevoked {
                    request_id: "revoke-old-code".into(),
                    code_hash: applicant_code_hash(&old_code),
                },
                &staff.officers[0].identity,
            ),
        ],
        // The applicant changes their account: approved by the bureau
        // head, confirmed, then paid into.
        case.account("acct-1b", 1, "6222000011110009"),
    ]
    .concat();
    records.push(sign(
        ORIGIN,
        KIND_ACCOUNT_CHANGE_APPROVED,
        &AccountChangeApproved {
            request_id: "change-acct-1b".into(),
            account_id: "acct-1b".into(),
        },
        &staff.bureau_head.identity,
    ));
    records.push(case.confirm("acct-1b"));
    records.push(case.request("d-new", "acct-1b", 100_000));
    // The bureau head leaves: their key is revoked after their steps.
    records.push(sign(
        ORIGIN,
        caseledger_verify::record::KIND_KEY_REVOKED,
        &caseledger_verify::record::KeyRevoked {
            key_id: staff.bureau_head.identity.public_key().key_id().to_hex(),
            reason: "调离".into(),
        },
        &staff.administrator.identity,
    ));
    for record in records {
        ledger.append_one(record).expect("every record of the case is admitted");
    }
    let (code, issue) = case.applicant_code(1);
    ledger.append_one(issue).expect("code");
    (ledger, staff, code)
}

fn kind_of(bundle: &ApplicantBundle, seq: u64) -> u16 {
    let entry = bundle.entries.iter().find(|e| e.seq == seq).expect("entry");
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &entry.entry).expect("base64");
    Entry::decode(&bytes).expect("decodes").record.kind
}

#[test]
fn the_report_matches_the_servers_state_and_hides_the_co_applicants_account() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, _staff, code) = full_case(dir.path());
    let node = ledger.node_key();
    let bundle = ledger.applicant_bundle(&code).expect("bundle").expect("known code");
    let report = bundle.verify(&node).expect("the whole bundle verifies");

    let view = ledger.case_view(CASE, 0).expect("read").expect("case");
    assert_eq!(report.received_fen, view.case.received_fen);
    assert_eq!(report.received_fen, BIG + 2_000_000);
    assert_eq!(report.held_fen, view.case.available_fen + view.case.reserved_fen);
    assert_eq!(report.paid_out_fen, 1_000_000 + 700_000, "the return is deducted");
    assert_eq!(report.paid_to_applicant_fen, 1_000_000);
    assert_eq!(report.applicant_name, "申请人1");
    for receipt in &report.receipts {
        let stored = view
            .receipts
            .iter()
            .find(|r| r.receipt.bank_reference == receipt.bank_reference)
            .expect("the server's receipt");
        assert_eq!(receipt.due_ms, stored.receipt.due_ms, "{}", receipt.bank_reference);
        assert_eq!(receipt.amount_fen, stored.receipt.amount_fen);
    }
    assert_eq!(report.receipts.len(), 2);
    let delays = &report
        .receipts
        .iter()
        .find(|r| r.bank_reference == "BANK-1")
        .expect("BANK-1")
        .delays;
    assert_eq!(delays.len(), 2, "the delay and its end");
    let mut statuses = Vec::new();
    for d in &report.disbursements {
        let stored = view
            .disbursements
            .iter()
            .find(|s| s.disbursement_id == d.disbursement_id)
            .expect("the server's disbursement");
        assert_eq!(d.status, stored.status, "{}", d.disbursement_id);
        assert_eq!(d.chain, stored.chain);
        assert_eq!(d.waiting_for, stored.next_role(), "{}", d.disbursement_id);
        statuses.push((d.disbursement_id.as_str(), d.status));
    }
    assert_eq!(
        statuses,
        [
            ("d-paid", DisbursementStatus::Paid),
            ("d-ret", DisbursementStatus::Returned),
            ("d-cancel", DisbursementStatus::Cancelled),
            ("d-rej", DisbursementStatus::Rejected),
            ("d-wait", DisbursementStatus::Pending),
            ("d-new", DisbursementStatus::Pending),
        ],
        "the applicant's own disbursements, not the co-applicant's"
    );
    let wait = report
        .disbursements
        .iter()
        .find(|d| d.disbursement_id == "d-wait")
        .expect("d-wait");
    assert_eq!(wait.waiting_for, Some(Role::Finance));
    let new = report
        .disbursements
        .iter()
        .find(|d| d.disbursement_id == "d-new")
        .expect("d-new");
    assert_eq!(new.account_number_masked, "****0009", "paid into the changed account");

    // The co-applicant's account and disbursement steps are not in it.
    let names: BTreeSet<Vec<String>> = bundle.threads.iter().map(|t| t.name.clone()).collect();
    assert!(!names.contains(&Thread::Disbursement("d-other".into()).name()));
    assert!(!names
        .iter()
        .any(|n| n.first().map(String::as_str) == Some("applicant") && n[2] == "applicant-2"));
    for entry in &bundle.entries {
        if kind_of(&bundle, entry.seq) == KIND_ACCOUNT_REGISTERED {
            let bytes =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &entry.entry).expect("base64");
            let account: AccountRegistered =
                serde_json::from_slice(&Entry::decode(&bytes).expect("entry").record.payload).expect("payload");
            assert_eq!(account.applicant_id, "applicant-1");
        }
    }
}

#[test]
fn every_entry_and_every_thread_left_out_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, _staff, code) = full_case(dir.path());
    let node = ledger.node_key();
    let bundle = ledger.applicant_bundle(&code).expect("bundle").expect("known code");
    bundle.verify(&node).expect("the whole bundle verifies");

    let mut kinds_dropped = BTreeSet::new();
    for (t, thread) in bundle.threads.iter().enumerate() {
        for (i, seq) in thread.seqs.iter().enumerate() {
            // Left out of the thread (and of the entries): not whole.
            let mut cut = bundle.clone();
            cut.threads[t].seqs.remove(i);
            cut.entries.retain(|e| {
                e.seq != *seq
                    || bundle
                        .threads
                        .iter()
                        .enumerate()
                        .any(|(u, other)| u != t && other.seqs.contains(seq))
            });
            let refused = cut.verify(&node).expect_err("an entry left out of its thread");
            assert!(
                refused.contains("not whole"),
                "seq {seq} of {:?}: {refused}",
                thread.name
            );
            // Left out of the entries only: the thread names it.
            let mut cut = bundle.clone();
            cut.entries.retain(|e| e.seq != *seq);
            let refused = cut.verify(&node).expect_err("an entry missing");
            assert!(refused.contains("not in the bundle"), "seq {seq}: {refused}");
            kinds_dropped.insert(kind_name(kind_of(&bundle, *seq)));
        }
        // The whole thread left out (with the entries only it holds).
        let mut cut = bundle.clone();
        cut.threads.remove(t);
        let kept: BTreeSet<u64> = cut.threads.iter().flat_map(|t| t.seqs.iter().copied()).collect();
        cut.entries.retain(|e| kept.contains(&e.seq));
        let refused = cut.verify(&node).expect_err("a thread left out");
        assert!(
            refused.contains("lacks")
                || refused.contains("not signed by a known administrator")
                || refused.contains("not registered"),
            "{:?}: {refused}",
            thread.name
        );
    }
    for kind in [
        "genesis",
        "key_registered",
        "key_co_signed",
        "key_revoked",
        "policy_set",
        "policy_approved",
        "case_opened",
        "account_registered",
        "account_confirmed",
        "account_change_approved",
        "receipt_recorded",
        "receipt_claimed",
        "receipt_claim_decided",
        "delay_approved",
        "delay_ended",
        "disbursement_requested",
        "approval_signed",
        "disbursement_paid",
        "payment_returned",
        "disbursement_cancelled",
        "applicant_code_issued",
        "applicant_code_revoked",
    ] {
        assert!(kinds_dropped.contains(kind), "no {kind} was dropped: {kinds_dropped:?}");
    }

    // The command line an applicant runs says so too.
    let mut cut = bundle.clone();
    let returns = cut
        .threads
        .iter()
        .position(|t| t.name == Thread::Disbursement("d-ret".into()).name())
        .expect("the returned disbursement's thread");
    cut.threads[returns].seqs.pop();
    let file = dir.path().join("cut.json");
    std::fs::write(&file, serde_json::to_vec(&cut).expect("json")).expect("write");
    let key = dir.path().join("node.pub");
    std::fs::write(&key, node.to_spki_pem().expect("pem")).expect("write key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caseledger"))
        .args(["verify-bundle"])
        .arg(&file)
        .arg("--key")
        .arg(&key)
        .output()
        .expect("run verify-bundle");
    let words = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{words}");
    assert!(words.contains("FAILED") && words.contains("not whole"), "{words}");
}

#[test]
fn a_checkpoint_whose_thread_map_the_entries_do_not_produce_is_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, _staff, _code) = full_case(dir.path());
    ledger.checkpoint_now().expect("checkpoint");
    let size = ledger.size();
    ledger.close().expect("close");
    {
        // The operator re-signs the newest checkpoint with a thread map
        // that leaves an entry out of a thread.
        let db = raw_db(dir.path());
        let cf = db.cf_handle("checkpoints").expect("cf");
        let note = String::from_utf8(db.get_cf(cf, seq_key(size)).expect("get").expect("checkpoint")).expect("utf8");
        let mut checkpoint = caseledger_verify::checkpoint::Checkpoint::parse_body(&note).expect("parses");
        checkpoint.threads[0] ^= 1;
        let signer =
            caseledger_keys::note::Signer::new(ORIGIN, caseledger_keys::Identity::from_seed([1; 32])).expect("signer");
        db.put_cf(cf, seq_key(size), checkpoint.sign(&signer).expect("sign"))
            .expect("put");
    }
    let report = audit(dir.path());
    let error = report.first_error.expect("an integrity failure");
    assert_eq!((error.seq, error.check.as_str()), (size - 1, "checkpoint_threads"));
    // And the node refuses to act on it.
    let ledger = Ledger::open(dir.path(), clock(), options()).expect("opens read-only");
    let (seq, detail) = ledger
        .corruption()
        .expect("a checkpoint over a false thread map is found on open");
    assert_eq!(seq, size - 1);
    assert!(detail.contains("checkpoint_threads"), "{detail}");
}

#[test]
fn a_thread_entry_removed_from_storage_is_named_by_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ledger, _staff, _code) = full_case(dir.path());
    let paid_seq = ledger
        .thread_seqs(&Thread::Disbursement("d-paid".into()), ledger.size())
        .expect("seqs")
        .last()
        .copied()
        .expect("the payment");
    ledger.close().expect("close");
    {
        // A database insider hides the payment from the case's thread.
        let db = raw_db(dir.path());
        let cf = db.cf_handle("state").expect("cf");
        let key = caseledger_verify::threads::member_key(&Thread::Case(CASE.into()).key(), paid_seq);
        assert!(db.get_cf(cf, &key).expect("get").is_some());
        db.delete_cf(cf, &key).expect("delete");
    }
    let report = audit(dir.path());
    assert!(report.first_error.is_none(), "{:?}", report.first_error);
    assert!(
        report.violations.iter().any(|v| v.rule == "derived_state"),
        "{:?}",
        report.violations
    );
    // The node does not build bundles from it: its seal no longer holds.
    let ledger = Ledger::open(dir.path(), clock(), options()).expect("opens read-only");
    let (_, detail) = ledger.corruption().expect("the edited thread is found on open");
    assert!(detail.contains("state_seal"), "{detail}");
}
