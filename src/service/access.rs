//! Who may read which entry: one rule for a member's reads of the ledger,
//! as for the whole export (auditors and administrators read everything).
//!
//! A member reads the entries of the cases they work on: an officer their
//! own cases; finance and the fund manager, who book and pay every case's
//! money, any case; the bureau head, who approves account changes and
//! delays court-wide, any case; a court leader the cases with a
//! disbursement whose chain names the court leader. An entry that
//! concerns no case (keys, policies) is read by its signer, auditors and
//! administrators only.

use caseledger_verify::entry::Record;
use caseledger_verify::funds::model::*;
use caseledger_verify::registry::KeyInfo;
use serde::de::DeserializeOwned;

use super::problem::ApiError;
use super::AppState;

fn object<T: DeserializeOwned>(state: &AppState, key: &str) -> Result<Option<T>, ApiError> {
    Ok(state
        .ledger
        .state_object(key)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

/// The case an entry's record concerns, if any: named in its payload, or
/// through its disbursement, account, receipt or applicant code.
fn case_of(state: &AppState, record: &Record) -> Result<Option<CaseState>, ApiError> {
    use caseledger_verify::funds::{account_key, case_key, disbursement_key, receipt_key};
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&record.payload) else {
        return Ok(None);
    };
    let field = |name: &str| payload.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let number = if let Some(number) = field("case_number") {
        Some(number)
    } else if let Some(id) = field("disbursement_id") {
        object::<DisbursementState>(state, &disbursement_key(&id))?.map(|d| d.case_number)
    } else if let Some(id) = field("account_id") {
        object::<AccountState>(state, &account_key(&id))?.map(|a| a.case_number)
    } else if let Some(reference) = field("bank_reference") {
        object::<ReceiptState>(state, &receipt_key(&reference))?.and_then(|r| r.case_number)
    } else if let Some(hash) = field("code_hash") {
        object::<ApplicantCodeState>(state, &format!("code/{hash}"))?.map(|c| c.case_number)
    } else {
        None
    };
    match number {
        Some(number) => object(state, &case_key(&number)),
        None => Ok(None),
    }
}

/// Whether the member holding `info` may read an entry with `record`.
pub(super) fn may_read(state: &AppState, info: &KeyInfo, record: &Record) -> Result<bool, ApiError> {
    let role = info.member.as_ref().map(|m| m.role);
    if info.administrator || role == Some(Role::Auditor) {
        return Ok(true);
    }
    let own = info.public_key.key().is_ok_and(|key| key.key_id() == record.signer);
    if own {
        return Ok(true);
    }
    let (Some(member), Some(case)) = (info.member.as_ref(), case_of(state, record)?) else {
        return Ok(false);
    };
    Ok(match member.role {
        Role::Officer => case.officer_member_id == member.member_id,
        // The filing division reads what it filed (its own entries).
        Role::FilingClerk => false,
        Role::Finance | Role::FundManager | Role::BureauHead => true,
        Role::CourtLeader => {
            let mut names_leader = false;
            for id in &case.disbursements {
                let disbursement: Option<DisbursementState> =
                    object(state, &caseledger_verify::funds::disbursement_key(id))?;
                names_leader |= disbursement.is_some_and(|d| d.chain.contains(&Role::CourtLeader));
            }
            names_leader
        }
        Role::Auditor | Role::Administrator => true,
    })
}
