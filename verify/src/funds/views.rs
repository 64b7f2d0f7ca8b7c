//! Reading the derived state: a case's view, receipt deadlines, pending
//! steps, and the court-wide reconciliation the auditor checks.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::model::*;
use super::{case_key, disbursement_key, receipt_key, POLICY_KEY, TOTALS_KEY};
use crate::state::{MemoryState, StateRead};

fn read<T: DeserializeOwned>(state: &dyn StateRead, key: &str) -> Option<T> {
    state
        .get(key)
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

pub fn totals(state: &dyn StateRead) -> Option<Totals> {
    read(state, TOTALS_KEY)
}

pub fn policy(state: &dyn StateRead) -> Option<PolicySet> {
    read(state, POLICY_KEY)
}

/// Where a receipt stands against its deadline at `now_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineStatus {
    OnTime,
    NearDue,
    Overdue,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReceiptView {
    pub receipt: ReceiptState,
    pub age_days: u64,
    pub deadline: DeadlineStatus,
}

pub fn receipt_view(receipt: ReceiptState, near_due_days: u32, now_ms: u64) -> ReceiptView {
    let deadline = if now_ms > receipt.due_ms {
        DeadlineStatus::Overdue
    } else if now_ms.saturating_add(u64::from(near_due_days) * DAY_MS) > receipt.due_ms {
        DeadlineStatus::NearDue
    } else {
        DeadlineStatus::OnTime
    };
    ReceiptView {
        age_days: now_ms.saturating_sub(receipt.recorded_ms) / DAY_MS,
        deadline,
        receipt,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CaseView {
    pub case: CaseState,
    pub receipts: Vec<ReceiptView>,
    pub disbursements: Vec<DisbursementState>,
}

/// Everything about one case, with receipt deadlines as of `now_ms`.
pub fn case_view(state: &dyn StateRead, case_number: &str, now_ms: u64) -> Option<CaseView> {
    let case: CaseState = read(state, &case_key(case_number))?;
    let near_due_days = policy(state).map_or(5, |p| p.near_due_days);
    let receipts = case
        .receipts
        .iter()
        .filter_map(|r| read(state, &receipt_key(r)))
        .map(|r| receipt_view(r, near_due_days, now_ms))
        .collect();
    let disbursements = case
        .disbursements
        .iter()
        .filter_map(|d| read(state, &disbursement_key(d)))
        .collect();
    Some(CaseView {
        case,
        receipts,
        disbursements,
    })
}

fn all<'a, T: DeserializeOwned + 'a>(state: &'a MemoryState, prefix: &'a str) -> impl Iterator<Item = T> + 'a {
    state
        .0
        .range(prefix.to_owned()..)
        .take_while(move |(k, _)| k.starts_with(prefix))
        .filter_map(|(_, v)| serde_json::from_slice(v).ok())
}

/// The reconciliation: Σ(case available + reserved) + unidentified receipts
/// = all receipts + returns − all payments, each side summed from the
/// objects themselves, and both equal to the running totals.
pub fn reconcile(state: &MemoryState) -> Result<(), String> {
    let cases: Vec<CaseState> = all(state, "case/").collect();
    let receipts: Vec<ReceiptState> = all(state, "receipt/").collect();
    let disbursements: Vec<DisbursementState> = all(state, "disbursement/").collect();
    let held: u128 = cases
        .iter()
        .map(|c| u128::from(c.available_fen) + u128::from(c.reserved_fen))
        .sum();
    let unidentified: u128 = receipts
        .iter()
        .filter(|r| r.case_number.is_none())
        .map(|r| u128::from(r.amount_fen))
        .sum();
    let received: u128 = receipts.iter().map(|r| u128::from(r.amount_fen)).sum();
    let amount_with = |statuses: &[DisbursementStatus]| -> u128 {
        disbursements
            .iter()
            .filter(|d| statuses.contains(&d.status))
            .map(|d| u128::from(d.amount_fen))
            .sum()
    };
    let returns = amount_with(&[DisbursementStatus::Returned]);
    let payments = amount_with(&[DisbursementStatus::Paid, DisbursementStatus::Returned]);
    if held + unidentified + payments != received + returns {
        return Err(format!(
            "cases hold {held} fen and {unidentified} fen is unidentified, but receipts {received} + returns {returns} - payments {payments} fen"
        ));
    }
    let totals = totals(state).unwrap_or_default();
    let sums = (
        u128::from(totals.receipts_fen),
        u128::from(totals.returns_fen),
        u128::from(totals.payments_fen),
        u128::from(totals.unidentified_fen),
        cases.len() as u64,
    );
    if sums != (received, returns, payments, unidentified, totals.cases) {
        return Err("the running totals do not match the objects".into());
    }
    Ok(())
}
