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

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::applicant::Proven;
use super::signers::Signer;
use crate::entry::Entry;
use crate::funds::deadlines::settle;
use crate::funds::model::*;
use crate::funds::{parse_date, start_of_day_cst};
use crate::threads::Thread;

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

fn payload<T: serde::de::DeserializeOwned>(entry: &Entry) -> Result<T, String> {
    serde_json::from_slice(&entry.record.payload).map_err(|e| format!("entry {}: {e}", entry.seq))
}

fn plus(a: u64, b: u64) -> Result<u64, String> {
    a.checked_add(b).ok_or_else(|| "an amount overflows".to_owned())
}

/// The court member who signed `entry`.
fn member_of<'k>(
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

fn person(signer: &Signer, member: &Member) -> Person {
    Person {
        name: signer.name.clone(),
        role: member.role,
    }
}

fn require(entry: &Entry, ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("entry {}: {what}", entry.seq))
    }
}

/// The policies in force, each from the seq of its approval.
struct Policies(Vec<(u64, PolicySet)>);

impl Policies {
    fn read(proven: &Proven) -> Result<Self, String> {
        let mut proposed: Option<(PolicySet, String, caseledger_keys::KeyId)> = None;
        let mut in_force: Vec<(u64, PolicySet)> = Vec::new();
        for entry in proven.thread(&Thread::Policy) {
            match entry.record.kind {
                KIND_POLICY_SET => {
                    let signer = proven.keys.get(&entry.record.signer);
                    require(
                        entry,
                        signer.is_some_and(|s| s.administrator),
                        "a policy is set by an administrator",
                    )?;
                    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&entry.record.payload));
                    proposed = Some((payload(entry)?, sha, entry.record.signer));
                }
                KIND_POLICY_APPROVED => {
                    let approved: PolicyApproved = payload(entry)?;
                    let (_, member) = member_of(&proven.keys, entry)?;
                    let (policy, sha, proposer) = proposed
                        .take()
                        .ok_or_else(|| format!("entry {}: no policy awaits approval", entry.seq))?;
                    let expected = in_force.last().map_or(1, |(_, p)| p.version + 1);
                    require(
                        entry,
                        member.role == Role::CourtLeader
                            && proposer != entry.record.signer
                            && approved.version == policy.version
                            && approved.proposal_sha256 == sha
                            && approved.version == expected,
                        "a policy is put in force by a court leader other than its proposer, for the proposal and version awaiting it",
                    )?;
                    in_force.push((entry.seq, policy));
                }
                _ => return Err(format!("entry {} does not belong in the policy thread", entry.seq)),
            }
        }
        Ok(Self(in_force))
    }

    /// The policy in force at `seq`.
    fn at(&self, seq: u64) -> Option<&PolicySet> {
        self.0.iter().rev().find(|(from, _)| *from < seq).map(|(_, p)| p)
    }
}

/// One payee account of the applicant, as its thread made it.
struct Account {
    registered: AccountRegistered,
    seq: u64,
    replaces: bool,
    confirmed: bool,
    change_approved: bool,
    /// Seqs from which it was payable, and until which (exclusive).
    active_from: Option<u64>,
    active_until: Option<u64>,
}

impl Account {
    fn active_at(&self, seq: u64) -> bool {
        self.active_from.is_some_and(|from| from < seq) && self.active_until.is_none_or(|until| seq < until)
    }
}

/// Replays the applicant's accounts: registered by the case's officer in
/// the applicant's name; payable once confirmed by the applicant and, if
/// it changes an earlier one, approved by the bureau head; superseding
/// every account before it.
fn accounts(
    proven: &Proven,
    applicant: &Thread,
    name: &str,
    officer: &str,
    policies: &Policies,
) -> Result<Vec<Account>, String> {
    let mut accounts: Vec<Account> = Vec::new();
    for entry in proven.thread(applicant) {
        match entry.record.kind {
            KIND_ACCOUNT_REGISTERED => {
                let registered: AccountRegistered = payload(entry)?;
                let (_, member) = member_of(&proven.keys, entry)?;
                require(
                    entry,
                    member.member_id == officer,
                    "an account is registered by the case's officer",
                )?;
                require(
                    entry,
                    registered.account_name == name,
                    "the account is not in the applicant's name",
                )?;
                let replaces = accounts.iter().any(|a| a.active_until.is_none());
                accounts.push(Account {
                    registered,
                    seq: entry.seq,
                    replaces,
                    confirmed: false,
                    change_approved: false,
                    active_from: None,
                    active_until: None,
                });
            }
            KIND_ACCOUNT_CONFIRMED | KIND_ACCOUNT_CHANGE_APPROVED => {
                let id = if entry.record.kind == KIND_ACCOUNT_CONFIRMED {
                    let confirmed: AccountConfirmed = payload(entry)?;
                    if entry.record.signer == proven.node_key.key_id() {
                        require(
                            entry,
                            confirmed.sms.is_some(),
                            "the node records a confirmation only with the applicant's code",
                        )?;
                    } else {
                        let (_, member) = member_of(&proven.keys, entry)?;
                        let sms_required = policies.at(entry.seq).is_some_and(|p| p.sms_confirmation_required);
                        require(
                            entry,
                            member.member_id == officer && !sms_required && confirmed.sms.is_none(),
                            "the applicant confirms with the code sent to their phone, or (where the policy allows) the case's officer records it",
                        )?;
                    }
                    confirmed.account_id
                } else {
                    let (_, member) = member_of(&proven.keys, entry)?;
                    require(
                        entry,
                        member.role == Role::BureauHead,
                        "an account change is approved by the bureau head",
                    )?;
                    payload::<AccountChangeApproved>(entry)?.account_id
                };
                let index = accounts
                    .iter()
                    .position(|a| a.registered.account_id == id)
                    .ok_or_else(|| format!("entry {}: the account is not the applicant's", entry.seq))?;
                let account = &mut accounts[index];
                let waiting = account.active_from.is_none() && account.active_until.is_none();
                if entry.record.kind == KIND_ACCOUNT_CONFIRMED {
                    require(
                        entry,
                        waiting && !account.confirmed,
                        "the account is not waiting for confirmation",
                    )?;
                    account.confirmed = true;
                } else {
                    require(
                        entry,
                        waiting && account.replaces && !account.change_approved,
                        "the account is not a change waiting for approval",
                    )?;
                    account.change_approved = true;
                }
                if account.confirmed && (account.change_approved || !account.replaces) && account.active_from.is_none()
                {
                    account.active_from = Some(entry.seq);
                    let seq = account.seq;
                    for other in accounts.iter_mut().take(index) {
                        if other.active_until.is_none() && other.seq < seq {
                            other.active_until = Some(entry.seq + 1);
                        }
                    }
                }
            }
            KIND_APPLICANT_CODE_ISSUED | KIND_APPLICANT_CODE_REVOKED | KIND_DISBURSEMENT_REQUESTED => {}
            _ => return Err(format!("entry {} does not belong in the applicant's thread", entry.seq)),
        }
    }
    Ok(accounts)
}

/// The status of a disbursement, step by step.
struct Progress {
    report: DisbursementReport,
    requester: String,
    signers: Vec<String>,
    paid_by: Option<String>,
}

fn disbursement(
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

/// One receipt's thread: recorded, claimed and decided, delayed.
fn receipt(
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

impl CaseReport {
    /// What the report proves, in plain English sentences (the command
    /// line's output).
    pub fn statements(&self) -> Vec<String> {
        use super::yuan;
        let mut out = vec![
            format!(
                "Ledger {:?}: all {} entries in {} threads below are whole and in its checkpoint of {} entries, signed by its node key.",
                self.origin, self.entries, self.threads, self.tree_size
            ),
            format!(
                "Case {} was filed by {} (filing clerk) with {} as an applicant{}.",
                self.case_number,
                self.filed_by.name,
                self.applicant_name,
                self.officer
                    .as_ref()
                    .map(|o| format!("; its officer is {}", o.name))
                    .unwrap_or_default()
            ),
            format!(
                "The case received {} in {} arrivals; {} was paid out; the court holds {}.",
                yuan(self.received_fen),
                self.receipts.len(),
                yuan(self.paid_out_fen),
                yuan(self.held_fen)
            ),
        ];
        for r in &self.receipts {
            let mut line = format!(
                "{} from {} arrived on {} (entry {}), due for payment by {}",
                yuan(r.amount_fen),
                r.payer,
                r.value_date,
                r.recorded_seq,
                crate::text::date_cst(r.due_ms.saturating_sub(1))
            );
            match r.settled_ms {
                Some(ms) => line.push_str(&format!(", paid out on {}", crate::text::date_cst(ms))),
                None => line.push_str(&format!(", {} of it not yet paid out", yuan(r.owed_fen))),
            }
            for delay in &r.delays {
                match &delay.new_due_date {
                    Some(date) => line.push_str(&format!(
                        "; delayed to {date} by {} ({})",
                        delay.by.name,
                        delay.by.role.as_str()
                    )),
                    None => line.push_str(&format!("; delay ended by {}", delay.by.name)),
                }
            }
            line.push('.');
            out.push(line);
        }
        for d in &self.disbursements {
            let mut text = format!(
                "Disbursement {}: {} to {} account {} ({}), requested by {} (officer) at entry {} under policy {}",
                d.disbursement_id,
                yuan(d.amount_fen),
                d.bank,
                d.account_number_masked,
                d.account_name,
                d.requested_by.name,
                d.requested_seq,
                d.policy_version
            );
            for step in &d.steps {
                let verb = if step.decision == Decision::Approve {
                    "approved"
                } else {
                    "REJECTED"
                };
                text.push_str(&format!(
                    ", {verb} by {} ({}) as step {} at entry {}",
                    step.name,
                    step.role.as_str(),
                    step.step,
                    step.seq
                ));
            }
            if let Some(paid) = &d.paid {
                text.push_str(&format!(
                    ", paid by finance ({}) at entry {} with bank reference {}",
                    paid.by.name, paid.seq, paid.detail
                ));
            }
            if let Some(returned) = &d.returned {
                text.push_str(&format!(", RETURNED at entry {}: {}", returned.seq, returned.detail));
            }
            if let Some(cancelled) = &d.cancelled {
                text.push_str(&format!(", CANCELLED at entry {}: {}", cancelled.seq, cancelled.detail));
            }
            if let Some(role) = d.waiting_for {
                text.push_str(&format!(", waiting for the {}", role.as_str()));
            }
            text.push('.');
            out.push(text);
        }
        out
    }
}
