//! The applicant's payee accounts, replayed from the applicant's thread.

use super::policies::Policies;
use super::{member_of, payload, require, Proven};
use crate::funds::model::*;
use crate::threads::Thread;

/// One payee account of the applicant, as its thread made it.
pub(super) struct Account {
    pub(super) registered: AccountRegistered,
    seq: u64,
    replaces: bool,
    confirmed: bool,
    change_approved: bool,
    /// Seqs from which it was payable, and until which (exclusive).
    active_from: Option<u64>,
    active_until: Option<u64>,
}

impl Account {
    pub(super) fn active_at(&self, seq: u64) -> bool {
        self.active_from.is_some_and(|from| from < seq) && self.active_until.is_none_or(|until| seq < until)
    }
}

/// Replays the applicant's accounts: registered by the case's officer in
/// the applicant's name; payable once confirmed by the applicant and, if
/// it changes an earlier one, approved by the bureau head; superseding
/// every account before it.
pub(super) fn accounts(
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
