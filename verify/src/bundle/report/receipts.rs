//! One receipt's thread: recorded, claimed and decided, delayed; its
//! deadline kept as the writer keeps it.

use super::policies::Policies;
use super::{member_of, payload, person, require, DelayReport, Proven, ReceiptReport};
use crate::funds::model::*;
use crate::funds::{parse_date, start_of_day_cst};
use crate::threads::Thread;

/// One receipt's thread: recorded, claimed and decided, delayed.
pub(super) fn receipt(
    proven: &Proven,
    reference: &str,
    case_number: &str,
    policies: &Policies,
) -> Result<Option<ReceiptReport>, String> {
    let entries = proven.thread(&Thread::Receipt(reference.to_owned()));
    let (first, rest) = entries
        .split_first()
        .ok_or_else(|| format!("the thread of receipt {reference} is empty"))?;
    require(
        first,
        first.record.kind == KIND_RECEIPT_RECORDED,
        "a receipt's thread starts with its recording",
    )?;
    let recorded: ReceiptRecorded = payload(first)?;
    let (_, member) = member_of(&proven.keys, first)?;
    require(
        first,
        matches!(member.role, Role::Finance | Role::FundManager),
        "money is recorded by finance or the fund manager",
    )?;
    let arrival_ms = parse_date(&recorded.value_date)
        .and_then(start_of_day_cst)
        .map_err(|e| format!("entry {}: {e}", first.seq))?;
    // As the writer keeps it: the pay-out deadline of the policy in force
    // for money of a case, the claim deadline while unidentified, and the
    // pay-out deadline again from an approving decision (for any case).
    let deadline = |seq: u64| u64::from(policies.at(seq).map_or(30, |p| p.deadline_days)) * DAY_MS;
    let claim_deadline = |seq: u64| u64::from(policies.at(seq).map_or(3, |p| p.unidentified_claim_days)) * DAY_MS;
    let mut ours = recorded.case_number.as_deref() == Some(case_number);
    let mut assigned = recorded.case_number.is_some();
    let first_due = if assigned {
        deadline(first.seq)
    } else {
        claim_deadline(first.seq)
    };
    let mut report = ReceiptReport {
        bank_reference: recorded.bank_reference.clone(),
        amount_fen: recorded.amount_fen,
        payer: recorded.payer.clone(),
        value_date: recorded.value_date.clone(),
        recorded_seq: first.seq,
        recorded_ms: first.timestamp_ms,
        arrival_ms,
        due_ms: arrival_ms.saturating_add(first_due),
        delays: Vec::new(),
        settled_ms: None,
        owed_fen: recorded.amount_fen,
    };
    let mut claimed_by: Option<(String, String)> = None;
    for entry in rest {
        let (signer, member) = member_of(&proven.keys, entry)?;
        match entry.record.kind {
            KIND_RECEIPT_CLAIMED => {
                let claim: ReceiptClaimed = payload(entry)?;
                claimed_by = Some((claim.case_number, member.member_id.clone()));
            }
            KIND_RECEIPT_CLAIM_DECIDED => {
                let decided: ReceiptClaimDecided = payload(entry)?;
                let (claimed_for, claimant) = claimed_by
                    .take()
                    .ok_or_else(|| format!("entry {}: a decision without a claim", entry.seq))?;
                require(
                    entry,
                    claimed_for == decided.case_number && claimant != member.member_id,
                    "a claim is decided by a second person, for the case it names",
                )?;
                if decided.decision == Decision::Approve {
                    require(entry, !assigned, "the money already belonged to a case")?;
                    assigned = true;
                    ours = decided.case_number == case_number;
                    report.due_ms = arrival_ms.saturating_add(deadline(entry.seq));
                }
            }
            KIND_DELAY_APPROVED => {
                let delay: DelayApproved = payload(entry)?;
                require(
                    entry,
                    member.role == Role::BureauHead,
                    "a delay is approved by the bureau head",
                )?;
                require(entry, assigned, "an unidentified receipt is claimed, not delayed")?;
                require(
                    entry,
                    entry.timestamp_ms <= report.due_ms,
                    "a delay approved after the deadline had passed",
                )?;
                let due_ms = parse_date(&delay.new_due_date)
                    .and_then(|day| start_of_day_cst(day + 1))
                    .map_err(|e| format!("entry {}: {e}", entry.seq))?;
                require(entry, due_ms > report.due_ms, "a delay moves the due date later")?;
                report.due_ms = due_ms;
                report.delays.push(DelayReport {
                    seq: entry.seq,
                    at_ms: entry.timestamp_ms,
                    reason: Some(delay.reason),
                    text: delay.text,
                    new_due_date: Some(delay.new_due_date),
                    by: person(signer, member),
                });
            }
            KIND_DELAY_ENDED => {
                let ended: DelayEnded = payload(entry)?;
                report.due_ms = report
                    .due_ms
                    .min(entry.timestamp_ms.saturating_add(DELAY_ENDED_DAYS * DAY_MS));
                report.delays.push(DelayReport {
                    seq: entry.seq,
                    at_ms: entry.timestamp_ms,
                    reason: None,
                    text: Some(ended.text),
                    new_due_date: None,
                    by: person(signer, member),
                });
            }
            _ => return Err(format!("entry {} does not belong in a receipt's thread", entry.seq)),
        }
    }
    Ok(ours.then_some(report))
}
