//! Each thread of a bundle holds only entries about it (docs/FORMAT.md
//! §7a, check 9): an approval in a disbursement's thread names that
//! disbursement, a payment in a case's thread pays a disbursement
//! requested in it, a key line's entries name its keys. Without this, whoever
//! signs checkpoints could show one disbursement's true approvals and
//! payment as another's, under a thread map of their own.

use std::collections::{BTreeMap, BTreeSet};

use caseledger_keys::KeyId;

use super::applicant::Proven;
use crate::entry::Entry;
use crate::funds::model::*;
use crate::record::{self, Genesis, KeyCoSigned, KeyRegistered, KeyRevoked, KeyRotated};
use crate::threads::Thread;

fn payload<T: serde::de::DeserializeOwned>(entry: &Entry) -> Result<T, String> {
    serde_json::from_slice(&entry.record.payload).map_err(|e| format!("entry {}: {e}", entry.seq))
}

fn belongs(entry: &Entry, thread: &Thread, ok: bool) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!(
            "entry {} ({}) is not about the {} thread it is shown in",
            entry.seq,
            record::kind_name(entry.record.kind),
            thread.name().join(" ")
        ))
    }
}

/// Every thread's entries are about it, and no payment's bank reference
/// is used twice.
pub(crate) fn check(proven: &Proven) -> Result<(), String> {
    for thread in proven.threads.keys() {
        let entries = proven.thread(thread);
        match thread {
            Thread::Policy => policy(thread, &entries)?,
            Thread::Case(number) => case(thread, number, &entries)?,
            Thread::Applicant {
                case_number,
                applicant_id,
            } => applicant(thread, case_number, applicant_id, &entries)?,
            Thread::Receipt(reference) => receipt(thread, reference, &entries)?,
            Thread::Disbursement(id) => disbursement(thread, id, &entries)?,
            Thread::KeyLine(first) => key_line(thread, first, &entries)?,
        }
    }
    let mut payments: BTreeMap<String, u64> = BTreeMap::new();
    for entry in proven
        .entries
        .values()
        .filter(|e| e.record.kind == KIND_DISBURSEMENT_PAID)
    {
        let paid: DisbursementPaid = payload(entry)?;
        if let Some(earlier) = payments.insert(paid.bank_reference.clone(), entry.seq) {
            return Err(format!(
                "entries {earlier} and {} record one bank payment ({}) twice",
                entry.seq, paid.bank_reference
            ));
        }
    }
    Ok(())
}

fn policy(thread: &Thread, entries: &[&Entry]) -> Result<(), String> {
    for entry in entries {
        belongs(
            entry,
            thread,
            matches!(entry.record.kind, KIND_POLICY_SET | KIND_POLICY_APPROVED),
        )?;
    }
    Ok(())
}

fn case(thread: &Thread, number: &str, entries: &[&Entry]) -> Result<(), String> {
    // The case's money and disbursements, as the thread has shown them so far.
    let mut receipts = BTreeSet::new();
    let mut disbursements = BTreeSet::new();
    for entry in entries {
        let ok = match entry.record.kind {
            KIND_CASE_OPENED => payload::<CaseOpened>(entry)?.case_number == number,
            KIND_RECEIPT_RECORDED => {
                let recorded: ReceiptRecorded = payload(entry)?;
                receipts.insert(recorded.bank_reference);
                recorded.case_number.as_deref() == Some(number)
            }
            KIND_RECEIPT_CLAIMED => payload::<ReceiptClaimed>(entry)?.case_number == number,
            KIND_RECEIPT_CLAIM_DECIDED => {
                let decided: ReceiptClaimDecided = payload(entry)?;
                if decided.decision == Decision::Approve {
                    receipts.insert(decided.bank_reference);
                }
                decided.case_number == number
            }
            KIND_DELAY_APPROVED => receipts.contains(&payload::<DelayApproved>(entry)?.bank_reference),
            KIND_DELAY_ENDED => receipts.contains(&payload::<DelayEnded>(entry)?.bank_reference),
            KIND_DISBURSEMENT_REQUESTED => {
                let requested: DisbursementRequested = payload(entry)?;
                disbursements.insert(requested.disbursement_id);
                requested.case_number == number
            }
            KIND_DISBURSEMENT_PAID => disbursements.contains(&payload::<DisbursementPaid>(entry)?.disbursement_id),
            KIND_PAYMENT_RETURNED => disbursements.contains(&payload::<PaymentReturned>(entry)?.disbursement_id),
            KIND_DISBURSEMENT_CANCELLED => {
                disbursements.contains(&payload::<DisbursementCancelled>(entry)?.disbursement_id)
            }
            _ => false,
        };
        belongs(entry, thread, ok)?;
    }
    Ok(())
}

fn applicant(thread: &Thread, number: &str, applicant_id: &str, entries: &[&Entry]) -> Result<(), String> {
    let mut accounts = BTreeSet::new();
    let mut codes = BTreeSet::new();
    for entry in entries {
        let ok = match entry.record.kind {
            KIND_ACCOUNT_REGISTERED => {
                let registered: AccountRegistered = payload(entry)?;
                accounts.insert(registered.account_id);
                registered.case_number == number && registered.applicant_id == applicant_id
            }
            KIND_ACCOUNT_CONFIRMED => accounts.contains(&payload::<AccountConfirmed>(entry)?.account_id),
            KIND_ACCOUNT_CHANGE_APPROVED => accounts.contains(&payload::<AccountChangeApproved>(entry)?.account_id),
            KIND_APPLICANT_CODE_ISSUED => {
                let issued: ApplicantCodeIssued = payload(entry)?;
                codes.insert(issued.code_hash);
                issued.case_number == number && issued.applicant_id == applicant_id
            }
            KIND_APPLICANT_CODE_REVOKED => codes.contains(&payload::<ApplicantCodeRevoked>(entry)?.code_hash),
            KIND_DISBURSEMENT_REQUESTED => {
                let requested: DisbursementRequested = payload(entry)?;
                requested.case_number == number && accounts.contains(&requested.account_id)
            }
            _ => false,
        };
        belongs(entry, thread, ok)?;
    }
    Ok(())
}

fn receipt(thread: &Thread, reference: &str, entries: &[&Entry]) -> Result<(), String> {
    for entry in entries {
        let named = match entry.record.kind {
            KIND_RECEIPT_RECORDED => Some(payload::<ReceiptRecorded>(entry)?.bank_reference),
            KIND_RECEIPT_CLAIMED => Some(payload::<ReceiptClaimed>(entry)?.bank_reference),
            KIND_RECEIPT_CLAIM_DECIDED => Some(payload::<ReceiptClaimDecided>(entry)?.bank_reference),
            KIND_DELAY_APPROVED => Some(payload::<DelayApproved>(entry)?.bank_reference),
            KIND_DELAY_ENDED => Some(payload::<DelayEnded>(entry)?.bank_reference),
            _ => None,
        };
        belongs(entry, thread, named.as_deref() == Some(reference))?;
    }
    Ok(())
}

fn disbursement(thread: &Thread, id: &str, entries: &[&Entry]) -> Result<(), String> {
    for entry in entries {
        let named = match entry.record.kind {
            KIND_DISBURSEMENT_REQUESTED => Some(payload::<DisbursementRequested>(entry)?.disbursement_id),
            KIND_APPROVAL_SIGNED => Some(payload::<ApprovalSigned>(entry)?.disbursement_id),
            KIND_DISBURSEMENT_PAID => Some(payload::<DisbursementPaid>(entry)?.disbursement_id),
            KIND_PAYMENT_RETURNED => Some(payload::<PaymentReturned>(entry)?.disbursement_id),
            KIND_DISBURSEMENT_CANCELLED => Some(payload::<DisbursementCancelled>(entry)?.disbursement_id),
            _ => None,
        };
        belongs(entry, thread, named.as_deref() == Some(id))?;
    }
    Ok(())
}

fn key_id(text: &str) -> Result<KeyId, String> {
    KeyId::from_hex(text).map_err(|e| e.to_string())
}

fn key_line(thread: &Thread, first: &KeyId, entries: &[&Entry]) -> Result<(), String> {
    // The keys of the line so far: the first, then each rotated to.
    let mut keys: BTreeSet<KeyId> = BTreeSet::new();
    for (n, entry) in entries.iter().enumerate() {
        let ok = match entry.record.kind {
            record::KIND_GENESIS if n == 0 => {
                let genesis: Genesis = payload(entry)?;
                let listed = genesis
                    .administrators
                    .iter()
                    .filter_map(|a| a.public_key.key().ok())
                    .any(|key| key.key_id() == *first);
                keys.insert(*first);
                listed
            }
            record::KIND_KEY_REGISTERED if n == 0 => {
                let registered: KeyRegistered = payload(entry)?;
                keys.insert(*first);
                registered.public_key.key().is_ok_and(|key| key.key_id() == *first)
            }
            record::KIND_KEY_ROTATED => {
                let rotated: KeyRotated = payload(entry)?;
                let from_line = keys.contains(&key_id(&rotated.key_id)?);
                keys.extend(rotated.public_key.key().ok().map(|key| key.key_id()));
                from_line
            }
            record::KIND_KEY_REVOKED => keys.contains(&key_id(&payload::<KeyRevoked>(entry)?.key_id)?),
            record::KIND_KEY_CO_SIGNED => keys.contains(&key_id(&payload::<KeyCoSigned>(entry)?.key_id)?),
            _ => false,
        };
        belongs(entry, thread, ok)?;
    }
    Ok(())
}
