//! Notifications to applicants, derived from the records that cause them.
//!
//! Each is a derived object `outbox/<seq, 20 digits>/<n>` written by the
//! rules in the same WriteBatch as its entry, so a crash can never lose one
//! nor leave one for a record that was not written, and the auditor's replay
//! reproduces every one of them. Whether it was delivered is kept apart
//! (the service's delivery state), since that is not part of the chain.

use serde::{Deserialize, Serialize};

use super::model::*;
use super::Objects;
use crate::registry::RuleError;

/// What happened, for the message template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    ReceiptArrived,
    AccountRegistered,
    AccountChanged,
    StepApproved,
    StepRejected,
    Paid,
    PaymentReturned,
    DelayApproved,
    DelayEnded,
}

/// One message to send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable id, passed to providers so a retry is not a second message.
    pub id: String,
    pub seq: u64,
    pub event: Event,
    pub case_number: String,
    /// Whose phone: `applicant/<case>/<applicant id>`.
    pub recipient: String,
    pub amount_fen: Option<u64>,
    pub account_masked: Option<String>,
    /// For an approval step's notice: which step of how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepOf>,
}

/// An approval step's place in its chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOf {
    /// 1-based.
    pub step: u32,
    /// Steps of the chain.
    pub of: u32,
}

pub fn outbox_key(seq: u64, n: usize) -> String {
    format!("outbox/{seq:020}/{n}")
}

pub fn applicant_contact(case_number: &str, applicant_id: &str) -> String {
    format!("applicant/{case_number}/{applicant_id}")
}

/// What one notice says, for every applicant it goes to.
pub(super) struct Notice<'a> {
    pub event: Event,
    pub case_number: &'a str,
    pub amount_fen: Option<u64>,
    pub account_masked: Option<String>,
    /// An approval step's place in the chain.
    pub step: Option<StepOf>,
}

/// Queues `notice` for each of `applicant_ids` of its case.
pub(super) fn queue(
    objects: &mut Objects,
    seq: u64,
    notice: &Notice,
    applicant_ids: &[String],
) -> Result<(), RuleError> {
    let already = objects.view.changes_under(&format!("outbox/{seq:020}/"));
    for (n, applicant_id) in applicant_ids.iter().enumerate() {
        let n = already + n;
        let notification = Notification {
            id: format!("n{seq}-{n}"),
            seq,
            event: notice.event,
            case_number: notice.case_number.to_owned(),
            recipient: applicant_contact(notice.case_number, applicant_id),
            amount_fen: notice.amount_fen,
            account_masked: notice.account_masked.clone(),
            step: notice.step,
        };
        objects.put(outbox_key(seq, n), &notification);
    }
    Ok(())
}

/// Everyone who should hear of money arriving on a case.
pub(super) fn applicants(case: &CaseState) -> Vec<String> {
    case.applicants.iter().map(|a| a.applicant_id.clone()).collect()
}

/// The applicant paid through `account`.
pub(super) fn payee(objects: &Objects, account_id: &str) -> Result<(String, String), RuleError> {
    let account: AccountState = objects.need(&super::account_key(account_id), "unknown_account", "the account")?;
    Ok((account.applicant_id, account.account_number_masked))
}
