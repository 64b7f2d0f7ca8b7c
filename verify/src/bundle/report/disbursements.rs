//! The applicant's disbursements: the tier the policy gives, each step,
//! the payment, return or cancellation.

use super::accounts::Account;
use super::policies::Policies;
use super::{member_of, payload, person, plus, require, DisbursementReport, EventReport, Proven, StepReport};
use crate::entry::Entry;
use crate::funds::model::*;
use crate::threads::Thread;

/// The status of a disbursement, step by step.
pub(super) struct Progress {
    pub(super) report: DisbursementReport,
    requester: String,
    signers: Vec<String>,
    paid_by: Option<String>,
}

pub(super) fn disbursement(
    proven: &Proven,
    id: &str,
    officer: &str,
    accounts: &[Account],
    policies: &Policies,
    earlier: &[Progress],
) -> Result<Progress, String> {
    let entries = proven.thread(&Thread::Disbursement(id.to_owned()));
    let (first, rest) = entries
        .split_first()
        .ok_or_else(|| format!("the thread of disbursement {id} is empty"))?;
    require(
        first,
        first.record.kind == KIND_DISBURSEMENT_REQUESTED,
        "a disbursement's thread starts with its request",
    )?;
    let request: DisbursementRequested = payload(first)?;
    let (requester, member) = member_of(&proven.keys, first)?;
    require(
        first,
        member.role == Role::Officer && member.member_id == officer,
        "a disbursement is requested by the case's officer",
    )?;
    let account = accounts
        .iter()
        .find(|a| a.registered.account_id == request.account_id)
        .ok_or_else(|| format!("entry {}: the payee account is not the applicant's", first.seq))?;
    require(
        first,
        account.active_at(first.seq),
        "the payee account was not the applicant's payable account when the request was made",
    )?;
    let policy = policies
        .at(first.seq)
        .ok_or_else(|| format!("entry {}: no policy was in force", first.seq))?;
    // The officer signed the version in force: a policy thread that ends
    // before it (a later policy left out) does not reach it.
    require(
        first,
        policy.version == request.policy_version,
        "the request names a policy version the bundle's policy thread does not have in force",
    )?;
    // The tier counts the applicant's open disbursements and those paid
    // within the split window, as of the request.
    let since = first
        .timestamp_ms
        .saturating_sub(u64::from(policy.split_window_days) * DAY_MS);
    let mut basis = request.amount_fen;
    for other in earlier {
        if counts_toward_tier(other, first.seq, since) {
            basis = plus(basis, other.report.amount_fen)?;
        }
    }
    let chain = policy
        .tiers
        .iter()
        .rev()
        .find(|t| basis >= t.from_fen)
        .map(|t| t.chain.clone())
        .ok_or_else(|| format!("entry {}: no tier of the policy covers the amount", first.seq))?;
    let mut progress = Progress {
        report: DisbursementReport {
            disbursement_id: id.to_owned(),
            amount_fen: request.amount_fen,
            reason: request.reason.clone(),
            bank: account.registered.bank.clone(),
            account_number_masked: account.registered.account_number_masked.clone(),
            account_name: account.registered.account_name.clone(),
            requested_seq: first.seq,
            requested_ms: first.timestamp_ms,
            requested_by: person(requester, member),
            policy_version: policy.version,
            waiting_for: chain.first().copied(),
            chain,
            steps: Vec::new(),
            status: DisbursementStatus::Pending,
            paid: None,
            returned: None,
            cancelled: None,
        },
        requester: member.member_id.clone(),
        signers: vec![member.member_id.clone()],
        paid_by: None,
    };
    for entry in rest {
        progress.apply(proven, entry, &request, policy)?;
    }
    progress.report.waiting_for = (progress.report.status == DisbursementStatus::Pending)
        .then(|| progress.report.chain.get(progress.report.steps.len()).copied())
        .flatten();
    Ok(progress)
}

impl Progress {
    fn apply(
        &mut self,
        proven: &Proven,
        entry: &Entry,
        request: &DisbursementRequested,
        policy: &PolicySet,
    ) -> Result<(), String> {
        let (signer, member) = member_of(&proven.keys, entry)?;
        let report = &mut self.report;
        let event = |detail: String| EventReport {
            seq: entry.seq,
            at_ms: entry.timestamp_ms,
            by: person(signer, member),
            detail,
        };
        match entry.record.kind {
            KIND_APPROVAL_SIGNED => {
                let statement: ApprovalSigned = payload(entry)?;
                let step = report.steps.len() as u32 + 1;
                let role = report.chain.get(report.steps.len()).copied();
                require(
                    entry,
                    report.status == DisbursementStatus::Pending,
                    "an approval of a disbursement that is not pending",
                )?;
                require(
                    entry,
                    statement.origin == proven.origin
                        && statement.amount_fen == request.amount_fen
                        && statement.account_id == request.account_id
                        && statement.case_number == request.case_number
                        && statement.step == step
                        && Some(statement.role) == role
                        && member.role == statement.role,
                    "the approval does not match the request, its step or the role the policy names",
                )?;
                require(
                    entry,
                    !self.signers.contains(&member.member_id),
                    "one person signed two steps of one disbursement",
                )?;
                require(
                    entry,
                    !policy.sms_confirmation_required || statement.sms_code.is_some(),
                    "the approver did not confirm with the code sent to their phone",
                )?;
                self.signers.push(member.member_id.clone());
                report.steps.push(StepReport {
                    step,
                    role: member.role,
                    name: signer.name.clone(),
                    decision: statement.decision,
                    seq: entry.seq,
                    at_ms: entry.timestamp_ms,
                    sms_confirmed: statement.sms_code.is_some(),
                });
                if statement.decision == Decision::Reject {
                    report.status = DisbursementStatus::Rejected;
                } else if report.steps.len() == report.chain.len() {
                    report.status = DisbursementStatus::Approved;
                }
            }
            KIND_DISBURSEMENT_PAID => {
                let paid: DisbursementPaid = payload(entry)?;
                require(
                    entry,
                    report.status == DisbursementStatus::Approved
                        && member.role == Role::Finance
                        && paid.amount_fen == request.amount_fen
                        && paid.account_id == request.account_id,
                    "only finance pays, exactly the approved amount to the approved account, after every step",
                )?;
                report.status = DisbursementStatus::Paid;
                self.paid_by = Some(member.member_id.clone());
                report.paid = Some(event(paid.bank_reference));
            }
            KIND_PAYMENT_RETURNED => {
                let returned: PaymentReturned = payload(entry)?;
                let paid_reference = report.paid.as_ref().map(|p| p.detail.as_str());
                require(
                    entry,
                    report.status == DisbursementStatus::Paid
                        && matches!(member.role, Role::Finance | Role::FundManager)
                        && self.paid_by.as_deref() != Some(member.member_id.as_str())
                        && paid_reference == Some(returned.bank_reference.as_str())
                        && returned.amount_fen == request.amount_fen
                        && returned.account_id == request.account_id,
                    "a return is of the payment, booked by another finance member",
                )?;
                report.status = DisbursementStatus::Returned;
                report.returned = Some(event(returned.reason));
            }
            KIND_DISBURSEMENT_CANCELLED => {
                let cancelled: DisbursementCancelled = payload(entry)?;
                require(
                    entry,
                    matches!(
                        report.status,
                        DisbursementStatus::Pending | DisbursementStatus::Approved
                    ) && (member.member_id == self.requester || member.role == Role::BureauHead),
                    "a pending or approved disbursement is cancelled by its requester or the bureau head",
                )?;
                report.status = DisbursementStatus::Cancelled;
                report.cancelled = Some(event(cancelled.reason));
            }
            _ => {
                return Err(format!(
                    "entry {} does not belong in a disbursement's thread",
                    entry.seq
                ))
            }
        }
        Ok(())
    }
}

/// Whether an earlier disbursement counted toward the tier of a request
/// at `seq`: open then (pending or approved), or paid then at or after
/// `since`.
fn counts_toward_tier(progress: &Progress, seq: u64, since: u64) -> bool {
    let report = &progress.report;
    let before = |event: &Option<EventReport>| event.as_ref().is_some_and(|e| e.seq < seq);
    if before(&report.cancelled) || before(&report.returned) {
        return false;
    }
    if report
        .steps
        .iter()
        .any(|s| s.seq < seq && s.decision == Decision::Reject)
    {
        return false;
    }
    match &report.paid {
        Some(paid) if paid.seq < seq => paid.at_ms >= since,
        _ => true,
    }
}
