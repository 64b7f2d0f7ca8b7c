//! Threads: for the policy, every case, every applicant of a case, every
//! receipt, every disbursement and every line of keys, the list of entries
//! that concern it (docs/FORMAT.md §3c). Admission appends each new entry
//! to its threads in the derived state; every checkpoint carries the root
//! of the [`ThreadMap`] of their digests. So a bundle that shows a thread
//! proves it shows *all* of it as of its checkpoint: an entry left out, at
//! the end as well as in the middle, changes the digest and the map proof
//! fails.
//!
//! Which threads an entry joins:
//!
//! | record | threads |
//! |---|---|
//! | genesis | key line of each administrator |
//! | key registered | its new key's line |
//! | key rotated, revoked, co-signed | the line of the key named |
//! | policy set, policy approved | policy |
//! | case opened | case |
//! | account registered, confirmed, change approved | applicant |
//! | applicant code issued, revoked | applicant |
//! | receipt recorded | receipt; case if it names one |
//! | receipt claimed, claim decided | receipt; the case it names |
//! | delay approved, delay ended | receipt; its case if it has one |
//! | disbursement requested | disbursement; case; applicant |
//! | approval signed | disbursement |
//! | paid, returned, cancelled | disbursement; case |
//! | SMS, challenge, phone and commitment records, demo notes | none |

use caseledger_keys::KeyId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::entry::Record;
use crate::funds::model::*;
use crate::hash::Hash;
use crate::record::{self, Genesis, KeyCoSigned, KeyRegistered, KeyRevoked, KeyRotated};
use crate::registry::RuleError;
use crate::state::{Overlay, StateRead};
use crate::thread_map::ThreadMap;

/// A thread, by what it is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Thread {
    Policy,
    Case(String),
    Applicant {
        case_number: String,
        applicant_id: String,
    },
    Receipt(String),
    Disbursement(String),
    /// A line of keys: the first key and every key rotated from it, named
    /// by the first key's id.
    KeyLine(KeyId),
}

impl Thread {
    /// The thread's name: its kind, then what it is about.
    pub fn name(&self) -> Vec<String> {
        match self {
            Thread::Policy => vec!["policy".into()],
            Thread::Case(n) => vec!["case".into(), n.clone()],
            Thread::Applicant {
                case_number,
                applicant_id,
            } => vec!["applicant".into(), case_number.clone(), applicant_id.clone()],
            Thread::Receipt(r) => vec!["receipt".into(), r.clone()],
            Thread::Disbursement(d) => vec!["disbursement".into(), d.clone()],
            Thread::KeyLine(k) => vec!["key".into(), k.to_hex()],
        }
    }

    pub fn from_name(name: &[String]) -> Result<Self, String> {
        let parts: Vec<&str> = name.iter().map(String::as_str).collect();
        Ok(match parts.as_slice() {
            ["policy"] => Thread::Policy,
            ["case", n] => Thread::Case((*n).to_owned()),
            ["applicant", n, a] => Thread::Applicant {
                case_number: (*n).to_owned(),
                applicant_id: (*a).to_owned(),
            },
            ["receipt", r] => Thread::Receipt((*r).to_owned()),
            ["disbursement", d] => Thread::Disbursement((*d).to_owned()),
            ["key", k] => Thread::KeyLine(KeyId::from_hex(k).map_err(|e| e.to_string())?),
            _ => return Err(format!("{name:?} is not a thread name")),
        })
    }

    /// `SHA-256("caseledger/thread/v1" || for each part of the name:
    /// u32 big-endian length || UTF-8 bytes)`.
    pub fn key(&self) -> Hash {
        let mut hasher = Sha256::new();
        hasher.update(b"caseledger/thread/v1");
        for part in self.name() {
            hasher.update((part.len() as u32).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        hasher.finalize().into()
    }
}

/// The running hash after `seq` joins a thread whose running hash was
/// `previous`: `SHA-256(0x02 || previous || u64 big-endian seq)`. It starts
/// at the thread's key.
pub fn chain_step(previous: &Hash, seq: u64) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x02]);
    hasher.update(previous);
    hasher.update(seq.to_be_bytes());
    hasher.finalize().into()
}

/// The value the map holds for a thread of `count` entries with running
/// hash `chain`: `SHA-256(0x03 || u64 big-endian count || chain)`.
pub fn thread_value(count: u64, chain: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x03]);
    hasher.update(count.to_be_bytes());
    hasher.update(chain);
    hasher.finalize().into()
}

/// The map value of `thread` holding exactly `seqs`, in order.
pub fn value_of(thread: &Thread, seqs: &[u64]) -> Hash {
    let chain = seqs.iter().fold(thread.key(), |chain, seq| chain_step(&chain, *seq));
    thread_value(seqs.len() as u64, &chain)
}

/// A thread's head, kept in the derived state under [`head_key`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadHead {
    pub name: Vec<String>,
    pub count: u64,
    /// Hex running hash after the last entry.
    pub chain: String,
    pub last_seq: u64,
}

impl ThreadHead {
    pub fn value(&self) -> Result<Hash, String> {
        let chain: Hash = hex::decode(&self.chain)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("a thread head's chain is not 32 bytes of hex")?;
        Ok(thread_value(self.count, &chain))
    }
}

/// Prefix of the thread heads in the derived state.
pub const HEAD_PREFIX: &str = "thread/";
/// Prefix of the thread members in the derived state.
pub const MEMBER_PREFIX: &str = "thread_entry/";

pub fn head_key(key: &Hash) -> String {
    format!("{HEAD_PREFIX}{}", hex::encode(key))
}

/// A member of a thread: `thread_entry/<key hex>/<seq, 20 digits>`, empty
/// value; a prefix scan lists the thread's entries in seq order.
pub fn member_key(key: &Hash, seq: u64) -> String {
    format!("{MEMBER_PREFIX}{}/{seq:020}", hex::encode(key))
}

pub fn members_prefix(key: &Hash) -> String {
    format!("{MEMBER_PREFIX}{}/", hex::encode(key))
}

/// The key line a key belongs to: `keyline/<key id hex>` holds the hex id
/// of the line's first key.
pub fn keyline_key(id: &KeyId) -> String {
    format!("keyline/{}", id.to_hex())
}

fn rule(name: &'static str, detail: impl Into<String>) -> RuleError {
    RuleError::Rule {
        rule: name,
        detail: detail.into(),
    }
}

fn get<T: serde::de::DeserializeOwned>(state: &Overlay, key: &str) -> Result<Option<T>, RuleError> {
    match state.get(key).map_err(|e| rule("storage", e.to_string()))? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| rule("storage", format!("derived object {key} unreadable: {e}"))),
    }
}

fn need<T: serde::de::DeserializeOwned>(state: &Overlay, key: &str) -> Result<T, RuleError> {
    get(state, key)?.ok_or_else(|| rule("storage", format!("{key} does not exist")))
}

fn payload<T: serde::de::DeserializeOwned>(record: &Record) -> Result<T, RuleError> {
    serde_json::from_slice(&record.payload).map_err(|e| rule("payload", e.to_string()))
}

fn line_of(state: &Overlay, id: &KeyId) -> Result<Thread, RuleError> {
    let first: String = need(state, &keyline_key(id))?;
    KeyId::from_hex(&first)
        .map(Thread::KeyLine)
        .map_err(|e| rule("storage", e.to_string()))
}

fn set_line(state: &mut Overlay, id: &KeyId, line: &KeyId) {
    state.put(
        keyline_key(id),
        serde_json::to_vec(&line.to_hex()).expect("a string serialises"),
    );
}

fn applicant_of_account(state: &Overlay, account_id: &str) -> Result<Thread, RuleError> {
    let account: AccountState = need(state, &crate::funds::account_key(account_id))?;
    Ok(Thread::Applicant {
        case_number: account.case_number,
        applicant_id: account.applicant_id,
    })
}

fn case_of_disbursement(state: &Overlay, id: &str) -> Result<Thread, RuleError> {
    let disbursement: DisbursementState = need(state, &crate::funds::disbursement_key(id))?;
    Ok(Thread::Case(disbursement.case_number))
}

/// The threads the admitted record at `seq` joins, read from the state
/// after the record's own effects; records the key lines of new keys.
fn threads_of(state: &mut Overlay, record: &Record) -> Result<Vec<Thread>, RuleError> {
    Ok(match record.kind {
        record::KIND_GENESIS => {
            let genesis: Genesis = payload(record)?;
            let mut lines = Vec::new();
            for admin in &genesis.administrators {
                let id = admin.public_key.key().map_err(|e| rule("payload", e))?.key_id();
                set_line(state, &id, &id);
                lines.push(Thread::KeyLine(id));
            }
            lines
        }
        record::KIND_KEY_REGISTERED => {
            let registered: KeyRegistered = payload(record)?;
            let id = registered.public_key.key().map_err(|e| rule("payload", e))?.key_id();
            set_line(state, &id, &id);
            vec![Thread::KeyLine(id)]
        }
        record::KIND_KEY_ROTATED => {
            let rotated: KeyRotated = payload(record)?;
            let old = KeyId::from_hex(&rotated.key_id).map_err(|e| rule("payload", e.to_string()))?;
            let line = line_of(state, &old)?;
            let new = rotated.public_key.key().map_err(|e| rule("payload", e))?.key_id();
            if let Thread::KeyLine(first) = &line {
                set_line(state, &new, first);
            }
            vec![line]
        }
        record::KIND_KEY_REVOKED => {
            let revoked: KeyRevoked = payload(record)?;
            vec![line_of(state, &revoked.key_id().map_err(|e| rule("payload", e))?)?]
        }
        record::KIND_KEY_CO_SIGNED => {
            let co_signed: KeyCoSigned = payload(record)?;
            let id = KeyId::from_hex(&co_signed.key_id).map_err(|e| rule("payload", e.to_string()))?;
            vec![line_of(state, &id)?]
        }
        KIND_POLICY_SET | KIND_POLICY_APPROVED => vec![Thread::Policy],
        KIND_CASE_OPENED => vec![Thread::Case(payload::<CaseOpened>(record)?.case_number)],
        KIND_ACCOUNT_REGISTERED => {
            let registered: AccountRegistered = payload(record)?;
            vec![Thread::Applicant {
                case_number: registered.case_number,
                applicant_id: registered.applicant_id,
            }]
        }
        KIND_ACCOUNT_CONFIRMED => vec![applicant_of_account(
            state,
            &payload::<AccountConfirmed>(record)?.account_id,
        )?],
        KIND_ACCOUNT_CHANGE_APPROVED => {
            vec![applicant_of_account(
                state,
                &payload::<AccountChangeApproved>(record)?.account_id,
            )?]
        }
        KIND_APPLICANT_CODE_ISSUED => {
            let issued: ApplicantCodeIssued = payload(record)?;
            vec![Thread::Applicant {
                case_number: issued.case_number,
                applicant_id: issued.applicant_id,
            }]
        }
        KIND_APPLICANT_CODE_REVOKED => {
            let revoked: ApplicantCodeRevoked = payload(record)?;
            let code: ApplicantCodeState = need(state, &format!("code/{}", revoked.code_hash))?;
            vec![Thread::Applicant {
                case_number: code.case_number,
                applicant_id: code.applicant_id,
            }]
        }
        KIND_RECEIPT_RECORDED => {
            let recorded: ReceiptRecorded = payload(record)?;
            let mut threads = vec![Thread::Receipt(recorded.bank_reference)];
            threads.extend(recorded.case_number.map(Thread::Case));
            threads
        }
        KIND_RECEIPT_CLAIMED => {
            let claimed: ReceiptClaimed = payload(record)?;
            vec![
                Thread::Receipt(claimed.bank_reference),
                Thread::Case(claimed.case_number),
            ]
        }
        KIND_RECEIPT_CLAIM_DECIDED => {
            let decided: ReceiptClaimDecided = payload(record)?;
            vec![
                Thread::Receipt(decided.bank_reference),
                Thread::Case(decided.case_number),
            ]
        }
        KIND_DELAY_APPROVED | KIND_DELAY_ENDED => {
            let reference = if record.kind == KIND_DELAY_APPROVED {
                payload::<DelayApproved>(record)?.bank_reference
            } else {
                payload::<DelayEnded>(record)?.bank_reference
            };
            let receipt: ReceiptState = need(state, &crate::funds::receipt_key(&reference))?;
            let mut threads = vec![Thread::Receipt(reference)];
            threads.extend(receipt.case_number.map(Thread::Case));
            threads
        }
        KIND_DISBURSEMENT_REQUESTED => {
            let requested: DisbursementRequested = payload(record)?;
            vec![
                Thread::Disbursement(requested.disbursement_id),
                Thread::Case(requested.case_number),
                applicant_of_account(state, &requested.account_id)?,
            ]
        }
        KIND_APPROVAL_SIGNED => vec![Thread::Disbursement(payload::<ApprovalSigned>(record)?.disbursement_id)],
        KIND_DISBURSEMENT_PAID | KIND_PAYMENT_RETURNED | KIND_DISBURSEMENT_CANCELLED => {
            let id = match record.kind {
                KIND_DISBURSEMENT_PAID => payload::<DisbursementPaid>(record)?.disbursement_id,
                KIND_PAYMENT_RETURNED => payload::<PaymentReturned>(record)?.disbursement_id,
                _ => payload::<DisbursementCancelled>(record)?.disbursement_id,
            };
            let case = case_of_disbursement(state, &id)?;
            vec![Thread::Disbursement(id), case]
        }
        _ => Vec::new(),
    })
}

/// Appends the admitted record at `seq` to its threads (heads and members
/// in `state`).
pub fn append(state: &mut Overlay, seq: u64, record: &Record) -> Result<(), RuleError> {
    let mut threads = threads_of(state, record)?;
    threads.sort();
    threads.dedup();
    for thread in threads {
        let key = thread.key();
        let head: Option<ThreadHead> = get(state, &head_key(&key))?;
        let (count, chain) = match head {
            Some(head) => {
                let chain: Hash = hex::decode(&head.chain)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| rule("storage", "a thread head's chain is not 32 bytes of hex"))?;
                (head.count, chain)
            }
            None => (0, key),
        };
        let head = ThreadHead {
            name: thread.name(),
            count: count + 1,
            chain: hex::encode(chain_step(&chain, seq)),
            last_seq: seq,
        };
        state.put(head_key(&key), serde_json::to_vec(&head).expect("a head serialises"));
        state.put(member_key(&key, seq), Vec::new());
    }
    Ok(())
}

/// Sets in `map` the thread heads among `changes` (derived-state changes
/// in key order, `None` for a removal: heads are never removed).
pub fn apply_changes<'a>(
    map: &mut ThreadMap,
    changes: impl IntoIterator<Item = (&'a String, &'a Option<Vec<u8>>)>,
) -> Result<(), String> {
    for (key, value) in changes {
        let Some(hex_key) = key.strip_prefix(HEAD_PREFIX) else {
            continue;
        };
        let thread_key: Hash = hex::decode(hex_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("{key} is not a thread head key"))?;
        let value = value.as_ref().ok_or_else(|| format!("thread head {key} was removed"))?;
        let head: ThreadHead = serde_json::from_slice(value).map_err(|e| format!("{key}: {e}"))?;
        map.set(thread_key, head.value()?);
    }
    Ok(())
}

/// The map of every thread head in `state` (keys and values under
/// [`HEAD_PREFIX`], in any order).
pub fn map_of(heads: impl IntoIterator<Item = (String, Vec<u8>)>) -> Result<ThreadMap, String> {
    let mut map = ThreadMap::new();
    for (key, value) in heads {
        apply_changes(&mut map, [(&key, &Some(value))])?;
    }
    Ok(map)
}

/// The seqs of `thread` in `state` as of a ledger of `size` entries, read
/// through `members` (a prefix scan of [`members_prefix`]).
pub fn seqs_before(member_keys: impl IntoIterator<Item = String>, size: u64) -> Result<Vec<u64>, String> {
    let mut seqs = Vec::new();
    for key in member_keys {
        let seq: u64 = key
            .rsplit('/')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{key} is not a thread member key"))?;
        if seq < size {
            seqs.push(seq);
        }
    }
    Ok(seqs)
}

/// The head of `thread` as stored, if it has one.
pub fn head(state: &dyn StateRead, thread: &Thread) -> crate::Result<Option<ThreadHead>> {
    Ok(state
        .get(&head_key(&thread.key()))?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_keys_are_unambiguous() {
        let threads = [
            Thread::Policy,
            Thread::Case("(2026)京0105执1234号".into()),
            Thread::Applicant {
                case_number: "a/b".into(),
                applicant_id: "c".into(),
            },
            Thread::Applicant {
                case_number: "a".into(),
                applicant_id: "b/c".into(),
            },
            Thread::Receipt("R1".into()),
            Thread::Disbursement("R1".into()),
            Thread::KeyLine(KeyId([7; 32])),
        ];
        let keys: std::collections::HashSet<Hash> = threads.iter().map(Thread::key).collect();
        assert_eq!(keys.len(), threads.len());
        for thread in &threads {
            assert_eq!(&Thread::from_name(&thread.name()).expect("parses"), thread);
        }
        assert!(Thread::from_name(&["case".into()]).is_err());
    }

    #[test]
    fn a_thread_value_commits_to_every_seq_in_order() {
        let thread = Thread::Case("C".into());
        let all = value_of(&thread, &[3, 5, 9]);
        assert_ne!(all, value_of(&thread, &[3, 5]));
        assert_ne!(all, value_of(&thread, &[3, 9]));
        assert_ne!(all, value_of(&thread, &[5, 3, 9]));
        assert_ne!(all, value_of(&Thread::Case("D".into()), &[3, 5, 9]));
        let chain = chain_step(&chain_step(&chain_step(&thread.key(), 3), 5), 9);
        assert_eq!(all, thread_value(3, &chain));
    }
}
