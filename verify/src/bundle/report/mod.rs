//! What a verified applicant bundle proves, as data a page or a terminal
//! renders: the case, every arrival of its money with its deadline, what
//! was paid out, and each of the applicant's disbursements as a timeline.
//!
//! Built by checking the bundle's threads with this crate's own reading
//! of the case-fund rules that matter to an applicant (an independent
//! check, not a replay of the writer's state): the policy in force and
//! its approval chain for the amount, the case's officer as requester,
//! distinct approvers with the roles the chain names, the payee account
//! active (confirmed and, for a change, approved) when requested, payment
//! by finance of exactly what was approved.
//!
//! Files: this one (the report's types and `build`), `policies.rs`,
//! `accounts.rs`, `disbursements.rs`, `receipts.rs` (one thread kind
//! each), `statements.rs` (the report in English sentences).

mod accounts;
mod disbursements;
mod policies;
mod receipts;
mod statements;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::applicant::Proven;
use super::signers::Signer;
use crate::entry::Entry;
use crate::funds::deadlines::settle;
use crate::funds::model::*;
use crate::threads::Thread;
use accounts::accounts;
use disbursements::{disbursement, Progress};
use policies::Policies;
use receipts::receipt;

/// A court member as the applicant sees them: name and role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelayReport {
    pub seq: u64,
    pub at_ms: u64,
    /// `None` for the end of a delay.
    pub reason: Option<DelayReason>,
    pub text: Option<String>,
    /// The approved new due date (`YYYY-MM-DD`, China Standard Time).
    pub new_due_date: Option<String>,
    pub by: Person,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptReport {
    pub bank_reference: String,
    pub amount_fen: u64,
    pub payer: String,
    pub value_date: String,
    pub recorded_seq: u64,
    pub recorded_ms: u64,
    /// The start of the value date (China Standard Time): deadlines count from it.
    pub arrival_ms: u64,
    /// When the money must be paid out (after any delay).
    pub due_ms: u64,
    pub delays: Vec<DelayReport>,
    /// When the payment that covered its last fen was made (payments
    /// settle the case's receipts oldest first).
    pub settled_ms: Option<u64>,
    /// Fen of it not yet paid out.
    pub owed_fen: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    pub step: u32,
    pub role: Role,
    pub name: String,
    pub decision: Decision,
    pub seq: u64,
    pub at_ms: u64,
    /// The approver confirmed with a code sent to their phone.
    pub sms_confirmed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventReport {
    pub seq: u64,
    pub at_ms: u64,
    pub by: Person,
    /// The bank reference of a payment; the reason of a return or cancellation.
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisbursementReport {
    pub disbursement_id: String,
    pub amount_fen: u64,
    pub reason: String,
    pub bank: String,
    pub account_number_masked: String,
    pub account_name: String,
    pub requested_seq: u64,
    pub requested_ms: u64,
    pub requested_by: Person,
    pub policy_version: u32,
    /// The roles that must approve, in order (the policy's tier for the amount).
    pub chain: Vec<Role>,
    pub steps: Vec<StepReport>,
    pub status: DisbursementStatus,
    /// The role whose step is awaited, while pending.
    pub waiting_for: Option<Role>,
    pub paid: Option<EventReport>,
    pub returned: Option<EventReport>,
    pub cancelled: Option<EventReport>,
}

/// A witness that cosigned the bundle's checkpoint (FORMAT §6b).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vouched {
    /// The witness's name (its key's name).
    pub witness: String,
    /// When it cosigned (ms since the epoch, from its cosignature).
    pub at_ms: u64,
}

/// Everything a verified bundle proves about the applicant's money.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseReport {
    pub origin: String,
    /// Hex hash of the ledger's genesis entry (its RFC 6962 leaf hash).
    /// Pinned (the page pins the one it is served with; `verify-bundle
    /// --genesis` the one the court publishes), it refuses a second ledger
    /// the node-key holder started with other administrators. It does not
    /// tell apart a second history grown from the same genesis (the same
    /// signed records replayed at other times, some left out): only
    /// checkpoints the applicant saw before, or witnesses, do (FORMAT §7a).
    pub genesis_hash: String,
    /// The witnesses the verifier trusts that cosigned the checkpoint, and
    /// when (empty when it was given none).
    #[serde(default)]
    pub witnessed_by: Vec<Vouched>,
    /// The time the court's time-stamp authority gave the checkpoint (ms
    /// since the epoch), when the bundle carries its answer. The answer is
    /// bound to the checkpoint here; the TSA's signature on it is checked
    /// with its certificate (`verify-bundle --tsa-ca`, `openssl ts -verify`).
    #[serde(default)]
    pub time_stamped_ms: Option<u64>,
    /// Entries of the ledger the checkpoint covers.
    pub tree_size: u64,
    /// The checkpoint's Merkle root (standard base64): with `tree_size`,
    /// what a verifier keeps to check later bundles are consistent with it.
    pub root: String,
    /// The newest entry's time among the bundle's: the report is as of it.
    pub as_of_ms: u64,
    pub entries: u64,
    pub threads: u64,
    pub case_number: String,
    pub applicant_id: String,
    pub applicant_name: String,
    /// The filing clerk who filed the case.
    pub filed_by: Person,
    /// The case's officer (执行法官), when a key of theirs signed an entry
    /// of the bundle.
    pub officer: Option<Person>,
    /// Money the case received (arrivals recorded for it or claimed into it).
    pub received_fen: u64,
    /// Money paid out of the case to all its applicants, returns deducted.
    pub paid_out_fen: u64,
    /// Money the court still holds for the case.
    pub held_fen: u64,
    /// Of `paid_out_fen`, paid to this applicant.
    pub paid_to_applicant_fen: u64,
    /// The case's policy deadline, days from arrival to payment.
    pub deadline_days: u32,
    pub receipts: Vec<ReceiptReport>,
    pub disbursements: Vec<DisbursementReport>,
}

pub(super) fn payload<T: serde::de::DeserializeOwned>(entry: &Entry) -> Result<T, String> {
    serde_json::from_slice(&entry.record.payload).map_err(|e| format!("entry {}: {e}", entry.seq))
}

pub(super) fn plus(a: u64, b: u64) -> Result<u64, String> {
    a.checked_add(b).ok_or_else(|| "an amount overflows".to_owned())
}

/// The court member who signed `entry`.
pub(super) fn member_of<'k>(
    keys: &'k HashMap<caseledger_keys::KeyId, Signer>,
    entry: &Entry,
) -> Result<(&'k Signer, &'k Member), String> {
    let signer = keys
        .get(&entry.record.signer)
        .ok_or_else(|| format!("entry {} is not signed by a court member's key", entry.seq))?;
    let member = signer
        .member
        .as_ref()
        .ok_or_else(|| format!("entry {} is not signed by a court member's key", entry.seq))?;
    Ok((signer, member))
}

pub(super) fn person(signer: &Signer, member: &Member) -> Person {
    Person {
        name: signer.name.clone(),
        role: member.role,
    }
}

pub(super) fn require(entry: &Entry, ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("entry {}: {what}", entry.seq))
    }
}

/// Builds the report of a proven bundle for the applicant of the case.
pub(crate) fn build(proven: &Proven, case_number: &str, applicant_id: &str) -> Result<CaseReport, String> {
    let case_thread = proven.thread(&Thread::Case(case_number.to_owned()));
    let (opening, case_rest) = case_thread.split_first().ok_or("the case's thread is empty")?;
    require(
        opening,
        opening.record.kind == KIND_CASE_OPENED,
        "a case's thread starts with its filing",
    )?;
    let opened: CaseOpened = payload(opening)?;
    require(
        opening,
        opened.case_number == case_number,
        "the filing is of another case",
    )?;
    let (clerk_key, clerk_member) = member_of(&proven.keys, opening)?;
    require(
        opening,
        clerk_member.role == Role::FilingClerk,
        "a case is filed by the filing division",
    )?;
    // The officer by name, if a key of theirs signed anything here.
    let officer = proven.keys.values().find_map(|signer| {
        signer
            .member
            .as_ref()
            .filter(|m| m.member_id == opened.officer_member_id && m.role == Role::Officer)
            .map(|m| person(signer, m))
    });
    let applicant = opened
        .applicants
        .iter()
        .find(|a| a.applicant_id == applicant_id)
        .ok_or("the applicant is not an applicant of the case")?;
    let policies = Policies::read(proven)?;
    let applicant_thread = Thread::Applicant {
        case_number: case_number.to_owned(),
        applicant_id: applicant_id.to_owned(),
    };
    let accounts = accounts(
        proven,
        &applicant_thread,
        &applicant.name,
        &opened.officer_member_id,
        &policies,
    )?;
    let mut own: Vec<Progress> = Vec::new();
    for entry in proven.thread(&applicant_thread) {
        if entry.record.kind == KIND_DISBURSEMENT_REQUESTED {
            let request: DisbursementRequested = payload(entry)?;
            let next = disbursement(
                proven,
                &request.disbursement_id,
                &opened.officer_member_id,
                &accounts,
                &policies,
                &own,
            )?;
            own.push(next);
        }
    }
    // The case's money: every arrival, every payment and return.
    let mut references = Vec::new();
    let mut payments: Vec<(u64, u64)> = Vec::new();
    let mut paid_out: u64 = 0;
    let mut returned: u64 = 0;
    let mut paid: HashMap<String, (u64, u64)> = HashMap::new();
    for entry in case_rest {
        match entry.record.kind {
            KIND_RECEIPT_RECORDED => references.push(payload::<ReceiptRecorded>(entry)?.bank_reference),
            KIND_RECEIPT_CLAIMED => references.push(payload::<ReceiptClaimed>(entry)?.bank_reference),
            KIND_RECEIPT_CLAIM_DECIDED | KIND_DELAY_APPROVED | KIND_DELAY_ENDED => {}
            KIND_DISBURSEMENT_REQUESTED | KIND_DISBURSEMENT_CANCELLED => {}
            KIND_DISBURSEMENT_PAID => {
                let (_, member) = member_of(&proven.keys, entry)?;
                require(entry, member.role == Role::Finance, "only finance pays")?;
                let p: DisbursementPaid = payload(entry)?;
                paid_out = plus(paid_out, p.amount_fen)?;
                paid.insert(p.disbursement_id, (entry.timestamp_ms, p.amount_fen));
            }
            KIND_PAYMENT_RETURNED => {
                let r: PaymentReturned = payload(entry)?;
                returned = plus(returned, r.amount_fen)?;
                paid.remove(&r.disbursement_id);
            }
            _ => return Err(format!("entry {} does not belong in the case's thread", entry.seq)),
        }
    }
    references.dedup();
    let mut receipts = Vec::new();
    for reference in &references {
        if let Some(receipt) = receipt(proven, reference, case_number, &policies)? {
            if !receipts
                .iter()
                .any(|r: &ReceiptReport| r.bank_reference == receipt.bank_reference)
            {
                receipts.push(receipt);
            }
        }
    }
    receipts.sort_by_key(|r| (r.arrival_ms, r.recorded_seq));
    payments.extend(paid.values().copied());
    payments.sort_unstable();
    let amounts: Vec<u64> = receipts.iter().map(|r| r.amount_fen).collect();
    for (receipt, (settled_ms, owed)) in receipts.iter_mut().zip(settle(&amounts, &payments)) {
        receipt.settled_ms = settled_ms;
        receipt.owed_fen = owed;
    }
    let received = receipts.iter().try_fold(0u64, |sum, r| plus(sum, r.amount_fen))?;
    let paid_out_fen = paid_out
        .checked_sub(returned)
        .ok_or("more money came back than was paid")?;
    let held_fen = received
        .checked_sub(paid_out_fen)
        .ok_or("the case paid out more money than it received")?;
    let paid_to_applicant_fen = own
        .iter()
        .filter(|p| p.report.status == DisbursementStatus::Paid)
        .try_fold(0u64, |sum, p| plus(sum, p.report.amount_fen))?;
    let genesis = proven
        .entries
        .get(&0)
        .ok_or("the bundle lacks the ledger's genesis entry")?;
    Ok(CaseReport {
        origin: proven.origin.clone(),
        genesis_hash: hex::encode(Entry::hash_of(&genesis.encode())),
        witnessed_by: Vec::new(),
        time_stamped_ms: None,
        tree_size: proven.tree_size,
        root: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, proven.root),
        as_of_ms: proven.entries.values().map(|e| e.timestamp_ms).max().unwrap_or(0),
        entries: proven.entries.len() as u64,
        threads: proven.threads.len() as u64,
        case_number: opened.case_number.clone(),
        applicant_id: applicant_id.to_owned(),
        applicant_name: applicant.name.clone(),
        filed_by: person(clerk_key, clerk_member),
        officer,
        received_fen: received,
        paid_out_fen,
        held_fen,
        paid_to_applicant_fen,
        deadline_days: policies.at(proven.tree_size).map_or(30, |p| p.deadline_days),
        receipts,
        disbursements: own.into_iter().map(|p| p.report).collect(),
    })
}
