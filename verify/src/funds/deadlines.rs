//! Money held back: the deadline findings of an audit (法发〔2017〕6号,
//! Art. 10). They are not refusals (late money must still be booked and
//! paid) and not integrity failures; the audit lists them apart, so that
//! the court's discipline inspectors see every receipt paid late, still
//! unpaid past its due date, left unclaimed, or booked late.
//!
//! A case's money is fungible: its payments settle its receipts oldest
//! first (by arrival, then by seq). A receipt is settled by the payment
//! that covers its last fen; returned payments settle nothing.

use serde::{Deserialize, Serialize};

use super::disbursement_key;
use super::model::*;
use crate::state::{MemoryState, StateRead as _};

/// One receipt's deadline finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineFinding {
    /// Seq of the receipt's `receipt_recorded` entry.
    pub seq: u64,
    pub bank_reference: String,
    pub case_number: Option<String>,
    /// `paid_late`, `overdue`, `unclaimed` or `late_booking`.
    pub finding: String,
    pub detail: String,
}

fn read<T: serde::de::DeserializeOwned>(state: &MemoryState, key: &str) -> Option<T> {
    state
        .get(key)
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

fn days(ms: u64) -> u64 {
    ms.div_ceil(DAY_MS)
}

/// Every deadline finding in `state` as of `as_of_ms` (the ledger's own
/// clock: the newest entry's timestamp), in receipt seq order.
pub fn findings(state: &MemoryState, as_of_ms: u64) -> Vec<DeadlineFinding> {
    let mut out = Vec::new();
    let receipts: Vec<ReceiptState> = state
        .0
        .range("receipt/".to_owned()..)
        .take_while(|(key, _)| key.starts_with("receipt/"))
        .filter_map(|(_, bytes)| serde_json::from_slice(bytes).ok())
        .collect();
    for receipt in &receipts {
        if receipt.booked_late {
            out.push(finding(
                receipt,
                "late_booking",
                format!(
                    "value date {}, booked {} days later",
                    receipt.value_date,
                    days(receipt.recorded_ms.saturating_sub(receipt.arrival_ms))
                ),
            ));
        }
        if receipt.case_number.is_none() && as_of_ms > receipt.due_ms {
            out.push(finding(
                receipt,
                "unclaimed",
                format!(
                    "unidentified and unclaimed {} days past its claim deadline",
                    days(as_of_ms - receipt.due_ms)
                ),
            ));
        }
    }
    let cases: Vec<CaseState> = state
        .0
        .range("case/".to_owned()..)
        .take_while(|(key, _)| key.starts_with("case/"))
        .filter_map(|(_, bytes)| serde_json::from_slice(bytes).ok())
        .collect();
    for case in &cases {
        out.extend(case_findings(state, case, as_of_ms));
    }
    out.sort_by(|a, b| a.seq.cmp(&b.seq).then_with(|| a.finding.cmp(&b.finding)));
    out
}

fn finding(receipt: &ReceiptState, name: &str, detail: String) -> DeadlineFinding {
    DeadlineFinding {
        seq: receipt.recorded_seq,
        bank_reference: receipt.bank_reference.clone(),
        case_number: receipt.case_number.clone(),
        finding: name.to_owned(),
        detail,
    }
}

/// Settles receipts of `amounts` fen (oldest first) with `payments`
/// (`(paid_ms, fen)`, in time order): for each receipt, when the payment
/// that covered its last fen was made, and how many fen are still owed.
pub fn settle(amounts: &[u64], payments: &[(u64, u64)]) -> Vec<(Option<u64>, u64)> {
    let mut payments = payments.iter().copied();
    let mut current: Option<(u64, u64)> = payments.next();
    let mut out = Vec::with_capacity(amounts.len());
    for amount in amounts {
        let mut owed = *amount;
        let mut settled_ms = None;
        while owed > 0 {
            let Some((paid_ms, left)) = current.as_mut() else { break };
            let used = owed.min(*left);
            owed -= used;
            *left -= used;
            if owed == 0 {
                settled_ms = Some(*paid_ms);
            }
            if *left == 0 {
                current = payments.next();
            }
        }
        out.push((settled_ms, owed));
    }
    out
}

/// A case's receipts settled oldest first by its payments.
fn case_findings(state: &MemoryState, case: &CaseState, as_of_ms: u64) -> Vec<DeadlineFinding> {
    let mut receipts: Vec<ReceiptState> = case
        .receipts
        .iter()
        .filter_map(|r| read(state, &super::receipt_key(r)))
        .collect();
    receipts.sort_by_key(|r| (r.arrival_ms, r.recorded_seq));
    let mut payments: Vec<(u64, u64)> = case
        .disbursements
        .iter()
        .filter_map(|d| read::<DisbursementState>(state, &disbursement_key(d)))
        .filter(|d| d.status == DisbursementStatus::Paid)
        .filter_map(|d| d.paid_ms.map(|paid| (paid, d.amount_fen)))
        .collect();
    payments.sort_unstable();
    let amounts: Vec<u64> = receipts.iter().map(|r| r.amount_fen).collect();
    let mut out = Vec::new();
    for (receipt, (settled_ms, owed)) in receipts.iter().zip(settle(&amounts, &payments)) {
        match settled_ms {
            Some(paid_ms) if paid_ms > receipt.due_ms => out.push(finding(
                receipt,
                "paid_late",
                format!("paid out {} days after its due date", days(paid_ms - receipt.due_ms)),
            )),
            Some(_) => {}
            None if as_of_ms > receipt.due_ms => out.push(finding(
                receipt,
                "overdue",
                format!(
                    "{} of its fen still unpaid {} days past its due date{}",
                    owed,
                    days(as_of_ms - receipt.due_ms),
                    if receipt.delayed {
                        " (after an approved delay)"
                    } else {
                        ""
                    }
                ),
            )),
            None => {}
        }
    }
    out
}
