//! The auditor: replays a ledger entry by entry and re-checks everything.
//!
//! Pure: it is fed entry bytes, stored Merkle nodes and signed checkpoints by
//! a driver (the store's `Ledger::audit`, `verify-export`, or any other
//! reader) and does no I/O itself. Each entry's signature is checked in
//! chain order, by the auditor or, ahead of it, by the driver
//! ([`CheckedSignature`]): a driver that has cores to spare checks a run
//! of entries in parallel and hands the verdicts in.

use caseledger_keys::{note, KeyId, PublicKey};
use serde::Serialize;

use crate::admission::{admit_record, signing_origin};
use crate::checkpoint::Checkpoint;
use crate::entry::Entry;
use crate::funds::Outcome;
use crate::hash::{to_hex, Hash};
use crate::merkle::{self, CompletedNode, Frontier};
use crate::registry::Registry;
use crate::state::{MemoryState, Overlay};
use crate::thread_map::ThreadMap;

/// Violations listed in a report; more are counted, not listed.
pub const VIOLATIONS_LISTED_MAX: usize = 1000;

/// Why the checkpoint `note` of `size` lacks `quorum` cosignatures by
/// `witnesses` (FORMAT §6b), if it does: fewer verify, or one that names a
/// known witness does not verify.
pub fn quorum_problem(
    size: u64,
    note: &str,
    witnesses: &[caseledger_keys::cosignature::Witness],
    quorum: usize,
) -> Option<String> {
    if quorum == 0 {
        return None;
    }
    match caseledger_keys::cosignature::cosignatures(note, witnesses) {
        Ok(found) if found.len() >= quorum => None,
        Ok(found) => Some(format!(
            "the checkpoint of size {size} has {} of the {quorum} cosignatures required{}",
            found.len(),
            if found.is_empty() {
                String::new()
            } else {
                format!(
                    " (by {})",
                    found.iter().map(|c| c.witness.as_str()).collect::<Vec<_>>().join(", ")
                )
            }
        )),
        Err(e) => Some(format!("the checkpoint of size {size}: {e}")),
    }
}

impl AuditReport {
    /// Adds a violation found after the replay (a checkpoint without its
    /// quorum of cosignatures).
    pub fn add_violation(&mut self, seq: u64, rule: &str, detail: String) {
        self.ok = false;
        self.rules_ok = false;
        self.violations_total += 1;
        if self.violations.len() < VIOLATIONS_LISTED_MAX {
            self.violations.push(Violation {
                seq,
                rule: rule.to_owned(),
                signer: None,
                detail,
            });
        }
    }
}

/// The first check that failed, located to a sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub seq: u64,
    pub check: String,
    pub detail: String,
}

/// A broken case-fund rule found by replaying the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub seq: u64,
    pub rule: String,
    /// Hex key id of the record's signer, for a refused record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    pub detail: String,
}

/// The outcome of an audit; serialises to the `verify --json` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Integrity intact and every rule held.
    pub ok: bool,
    pub entries: u64,
    /// Hex root of the Merkle tree of the entries replayed.
    pub root: String,
    pub checkpoints: u64,
    /// The first integrity failure (hash chain, signature, key, checkpoint).
    pub first_error: Option<Finding>,
    /// Every case-fund rule held on replay, derived state and reconciliation included.
    pub rules_ok: bool,
    pub cases: u64,
    pub violations_total: u64,
    pub violations: Vec<Violation>,
    /// Approval steps whose SMS code matched the node's prior commitment.
    pub sms_confirmations_verified: u64,
    /// Applicant account confirmations whose SMS code matched the node's
    /// prior commitment.
    pub account_confirmations_verified: u64,
    /// Money held back, as of `deadlines_as_of_ms` (the newest entry's
    /// timestamp): receipts paid late, unpaid past their due date, left
    /// unclaimed, or booked late (docs/FORMAT.md §3g). Findings, not
    /// failures: they do not change `ok`. At most 1,000 listed.
    pub deadline_findings_total: u64,
    pub deadline_findings: Vec<crate::funds::deadlines::DeadlineFinding>,
    pub deadlines_as_of_ms: u64,
}

impl AuditReport {
    /// The earliest finding by seq, integrity failure or violation, as
    /// `(seq, check or rule)`; at one seq the violation (it names what is
    /// wrong with the record itself).
    pub fn first_finding(&self) -> Option<(u64, &str)> {
        let error = self.first_error.as_ref().map(|f| (f.seq, f.check.as_str()));
        let violation = self
            .violations
            .iter()
            .map(|v| (v.seq, v.rule.as_str()))
            .min_by_key(|v| v.0);
        match (error, violation) {
            (Some(e), Some(v)) if v.0 <= e.0 => Some(v),
            (Some(e), _) => Some(e),
            (None, v) => v,
        }
    }
}

/// Makes the consistency proof between two tree sizes, from a store.
pub type ConsistencyProofs<'a> = &'a dyn Fn(u64, u64) -> crate::Result<Vec<Hash>>;

/// What the store says of the end of the ledger, for [`Auditor::check_end`].
#[derive(Clone, Debug, Default)]
pub struct StoredEnd {
    /// The store's head record: `None` if it is missing.
    pub head: Option<StoredHead>,
    /// The size of a checkpoint stored beyond the last entry, if any.
    pub leftover_checkpoint: Option<u64>,
    /// Whether Merkle nodes are stored beyond the last entry.
    pub leftover_node: bool,
    /// The store's record of a group synced before its signatures were
    /// checked, if one is left (in words).
    pub pending: Option<String>,
}

/// The head record: the size and the last hash and root it claims.
#[derive(Clone, Debug)]
pub struct StoredHead {
    pub size: u64,
    pub last_hash: Option<Hash>,
    pub root: Option<Hash>,
    pub last_timestamp_ms: u64,
    /// The size of the newest checkpoint it names.
    pub checkpoint_size: u64,
}

/// A table the store derives from the entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DerivedTable {
    /// The key registry (key id → key info JSON).
    Keys,
    /// The case-fund state (object key → JSON).
    State,
}

/// A signature checked before the replay reached its entry, by whoever
/// drives the audit (on other threads, say): the key it was checked with
/// and the verdict of the one signature rule. A key id is derived from its
/// key, so the verdict is a fact whatever the registry says of the key by
/// then; the auditor uses it only if the replay names the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckedSignature {
    pub key: PublicKey,
    pub valid: bool,
}

impl CheckedSignature {
    /// Checks the signature of the entry `bytes` of the ledger named
    /// `origin` with `key`; `None` if the bytes are not an entry.
    pub fn of_entry(origin: &str, bytes: &[u8], key: PublicKey) -> Option<Self> {
        let entry = Entry::decode(bytes).ok()?;
        let valid = key
            .verify_raw(&Entry::signed_message_of(origin, bytes), &entry.record.signature)
            .is_ok();
        Some(Self { key, valid })
    }
}

/// Replays a ledger. Feed entries in order with [`Auditor::push_entry`],
/// compare stored Merkle nodes with [`Auditor::check_stored_node`], and call
/// [`Auditor::check_checkpoint`] when the replayed size reaches a checkpoint.
pub struct Auditor {
    registry: Registry,
    tree: Frontier,
    prev_hash: Hash,
    last_timestamp_ms: u64,
    first_error: Option<Finding>,
    checkpoints: u64,
    last_checkpoint: Option<Checkpoint>,
    state: MemoryState,
    /// The thread map of the replayed state (§3c).
    threads: ThreadMap,
    violations: Vec<Violation>,
    violations_total: u64,
    sms_confirmations_verified: u64,
    account_confirmations_verified: u64,
}

impl Auditor {
    /// An auditor that trusts nothing but `node_key`.
    pub fn new(node_key: PublicKey) -> Self {
        Self {
            registry: Registry::new(node_key),
            tree: Frontier::new(),
            prev_hash: [0; 32],
            last_timestamp_ms: 0,
            first_error: None,
            checkpoints: 0,
            last_checkpoint: None,
            state: MemoryState::default(),
            threads: ThreadMap::new(),
            violations: Vec::new(),
            violations_total: 0,
            sms_confirmations_verified: 0,
            account_confirmations_verified: 0,
        }
    }

    /// Records a broken rule found by the driver; the replay goes on.
    /// Requires `quorum` cosignatures by `witnesses` (FORMAT §6b) on the
    /// checkpoint note of `size`: violation `checkpoint_quorum` at its
    /// last seq if it has fewer, or a cosignature that does not verify.
    pub fn require_quorum(
        &mut self,
        size: u64,
        note: &str,
        witnesses: &[caseledger_keys::cosignature::Witness],
        quorum: usize,
    ) {
        if let Some(detail) = quorum_problem(size, note, witnesses, quorum) {
            self.violate(size.saturating_sub(1), "checkpoint_quorum", detail);
        }
    }

    pub fn violate(&mut self, seq: u64, rule: &str, detail: impl Into<String>) {
        self.violate_by(seq, rule, None, detail);
    }

    /// Records a refused record (or another broken rule) at `seq`, signed
    /// by `signer`; the replay goes on.
    pub fn violate_by(&mut self, seq: u64, rule: &str, signer: Option<KeyId>, detail: impl Into<String>) {
        self.violations_total += 1;
        if self.violations.len() < VIOLATIONS_LISTED_MAX {
            self.violations.push(Violation {
                seq,
                rule: rule.to_owned(),
                signer: signer.map(|id| id.to_hex()),
                detail: detail.into(),
            });
        }
    }

    /// The derived state the replay produced.
    pub fn state(&self) -> &MemoryState {
        &self.state
    }

    /// Entries replayed so far.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The root of the replayed thread map (§3c).
    pub fn threads_root(&self) -> Hash {
        self.threads.root()
    }

    pub fn last_hash(&self) -> Hash {
        self.prev_hash
    }

    /// The registry as replayed so far.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The key the replay will check a signature by `signer` with, as far
    /// as the registry is replayed now (for drivers that check ahead).
    pub fn signer_key(&self, signer: &KeyId) -> Option<PublicKey> {
        self.registry.public_key(signer)
    }

    /// The ledger's origin, once the genesis entry is replayed (record
    /// signatures cover it).
    pub fn origin(&self) -> Option<&str> {
        self.registry.origin()
    }

    /// Whether an integrity check has failed (the audit stops there).
    pub fn failed(&self) -> bool {
        self.first_error.is_some()
    }

    /// Records a failure found by the driver (gaps, head mismatches).
    pub fn fail(&mut self, seq: u64, check: &str, detail: impl Into<String>) {
        if self.first_error.is_none() {
            self.first_error = Some(Finding {
                seq,
                check: check.to_owned(),
                detail: detail.into(),
            });
        }
    }

    /// Replays the entry stored under `seq`. Returns the Merkle nodes it
    /// completes, or `None` if a check failed (the audit stops there).
    pub fn push_entry(&mut self, seq: u64, bytes: &[u8]) -> Option<Vec<CompletedNode>> {
        self.push_checked_entry(seq, bytes, Vec::new(), None)
    }

    /// [`Auditor::push_entry`] with the disclosures stored beside the
    /// entry (docs/FORMAT.md §3j).
    pub fn push_disclosed_entry(
        &mut self,
        seq: u64,
        bytes: &[u8],
        disclosures: Vec<String>,
    ) -> Option<Vec<CompletedNode>> {
        self.push_checked_entry(seq, bytes, disclosures, None)
    }

    /// [`Auditor::push_disclosed_entry`] with the entry's signature checked
    /// ahead (used if it was checked with the key the replay names).
    pub fn push_checked_entry(
        &mut self,
        seq: u64,
        bytes: &[u8],
        disclosures: Vec<String>,
        checked: Option<CheckedSignature>,
    ) -> Option<Vec<CompletedNode>> {
        if self.failed() {
            return None;
        }
        if seq != self.size() {
            self.fail(
                self.size(),
                "entry_missing",
                format!("expected entry {}, found {seq} next", self.size()),
            );
            return None;
        }
        let entry = match Entry::decode(bytes) {
            Ok(mut entry) => {
                entry.record.disclosures = disclosures;
                entry
            }
            Err(e) => {
                self.fail(seq, "entry_decode", e.to_string());
                return None;
            }
        };
        if entry.seq != seq {
            self.fail(
                seq,
                "entry_seq",
                format!("entry stored at {seq} says it is entry {}", entry.seq),
            );
            return None;
        }
        if entry.prev_hash != self.prev_hash {
            self.fail(
                seq,
                "hash_chain",
                format!(
                    "prev_hash {} is not the hash of entry {}",
                    to_hex(&entry.prev_hash),
                    seq.wrapping_sub(1)
                ),
            );
            return None;
        }
        if entry.timestamp_ms < self.last_timestamp_ms {
            self.fail(seq, "timestamp_order", "timestamp is earlier than the previous entry's");
            return None;
        }
        self.judge(seq, &entry, checked);
        let leaf = Entry::hash_of(bytes);
        self.prev_hash = leaf;
        self.last_timestamp_ms = entry.timestamp_ms;
        Some(self.tree.push(leaf))
    }

    /// Judges the record of an entry whose place in the chain is sound:
    /// its signature first, then admission (registry and case-fund rules).
    /// A refused record is a violation with its seq, rule and signer; it
    /// has no effect on the registry or the state, and the replay goes on.
    /// Only a refused genesis stops the audit (nothing after it can be
    /// judged).
    fn judge(&mut self, seq: u64, entry: &Entry, checked: Option<CheckedSignature>) {
        let record = &entry.record;
        let signer = record.signer;
        let origin = signing_origin(&self.registry, record);
        if let (Some(key), Some(origin)) = (self.registry.public_key(&signer), origin) {
            let valid = match checked {
                Some(checked) if checked.key == key => checked.valid,
                _ => record.verify(&origin, &key).is_ok(),
            };
            if !valid && seq == 0 {
                return self.fail(
                    seq,
                    "genesis",
                    "the genesis entry's signature does not verify with the node key",
                );
            }
            if !valid {
                return self.violate_by(
                    seq,
                    "signature",
                    Some(signer),
                    "record signature does not verify with the signer's registered key",
                );
            }
        }
        let mut overlay = Overlay::new(&self.state);
        match admit_record(&mut self.registry, &mut overlay, seq, entry.timestamp_ms, record) {
            Ok((_, Outcome::New)) => {
                let changes = overlay.into_changes();
                if let Err(e) = crate::threads::apply_changes(&mut self.threads, &changes) {
                    return self.fail(seq, "threads", e);
                }
                self.state.apply(changes);
                self.count_confirmations(record);
            }
            Ok((_, Outcome::Duplicate(original))) => self.violate_by(
                seq,
                "duplicate_request",
                Some(signer),
                format!("repeats the record at seq {original}"),
            ),
            // Nothing after a refused genesis can be judged: the registry
            // and the origin come from it. A genesis record elsewhere is a
            // refused record like any other.
            Err(refused) if seq == 0 => self.fail(seq, "genesis", refused.to_string()),
            Err(refused) => self.violate_by(seq, refused.check(), Some(signer), refused.to_string()),
        }
    }

    fn count_confirmations(&mut self, record: &crate::entry::Record) {
        use crate::funds::model::{AccountConfirmed, ApprovalSigned, KIND_ACCOUNT_CONFIRMED, KIND_APPROVAL_SIGNED};
        if record.kind == KIND_APPROVAL_SIGNED {
            let statement: Option<ApprovalSigned> = serde_json::from_slice(&record.payload).ok();
            if statement.is_some_and(|s| s.sms_code.is_some()) {
                self.sms_confirmations_verified += 1;
            }
        }
        if record.kind == KIND_ACCOUNT_CONFIRMED {
            let confirmed: Option<AccountConfirmed> = serde_json::from_slice(&record.payload).ok();
            if confirmed.is_some_and(|c| c.sms.is_some()) {
                self.account_confirmations_verified += 1;
            }
        }
    }

    /// Compares a node the replay computed with the one the store holds.
    pub fn check_stored_node(&mut self, computed: &CompletedNode, stored: Option<&Hash>) {
        let (level, index, hash) = computed;
        let seq = ((index + 1) << level) - 1;
        let check = if *level == 0 { "leaf_hash" } else { "merkle_node" };
        match stored {
            Some(stored) if stored == hash => {}
            Some(_) => self.fail(
                seq,
                check,
                format!("stored node (level {level}, index {index}) differs from the entries"),
            ),
            None => self.fail(
                seq,
                check,
                format!("stored node (level {level}, index {index}) is missing"),
            ),
        }
    }

    /// Checks a signed checkpoint of the current size: the node signature, the
    /// origin, the root, and, if the driver has a store that makes proofs,
    /// consistency with the previous checkpoint using
    /// `consistency_proof(previous_size, size)` (the replay computes every
    /// checkpoint's root from the entries, so two checkpoints it accepts are
    /// consistent anyway; the proof checks the store's proof-making).
    pub fn check_checkpoint(&mut self, signed: &str, consistency_proof: Option<ConsistencyProofs<'_>>) {
        if self.failed() {
            return;
        }
        let size = self.size();
        let seq = size.saturating_sub(1);
        let Some(origin) = self.registry.origin().map(str::to_owned) else {
            self.fail(seq, "checkpoint_signature", "checkpoint before the genesis entry");
            return;
        };
        let verifier = match note::Verifier::new(&origin, self.registry.node_key()) {
            Ok(verifier) => verifier,
            Err(e) => return self.fail(seq, "checkpoint_signature", e.to_string()),
        };
        let checkpoint = match Checkpoint::open(signed, &verifier) {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                return self.fail(
                    seq,
                    "checkpoint_signature",
                    format!("checkpoint at tree size {size}: {e}"),
                )
            }
        };
        if checkpoint.size != size {
            return self.fail(
                seq,
                "checkpoint_size",
                format!("checkpoint stored for size {size} says size {}", checkpoint.size),
            );
        }
        if checkpoint.root != self.root() {
            return self.fail(
                seq,
                "checkpoint_root",
                format!("checkpoint at tree size {size} has a root the entries do not produce"),
            );
        }
        if checkpoint.threads != self.threads.root() {
            return self.fail(
                seq,
                "checkpoint_threads",
                format!("checkpoint at tree size {size} has a thread-map root the entries do not produce"),
            );
        }
        if let (Some(previous), Some(consistency_proof)) = (self.last_checkpoint.take(), consistency_proof) {
            let verified = consistency_proof(previous.size, size)
                .map_err(|e| e.to_string())
                .and_then(|proof| {
                    merkle::verify_consistency(previous.size, size, &proof, &previous.root, &checkpoint.root)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = verified {
                return self.fail(
                    seq,
                    "checkpoint_consistency",
                    format!(
                        "checkpoints at sizes {} and {size} are not consistent: {e}",
                        previous.size
                    ),
                );
            }
        }
        self.checkpoints += 1;
        self.last_checkpoint = Some(checkpoint);
    }

    /// After the last entry: what the store says of the ledger's end must
    /// agree with the replay (call only if the replay did not stop).
    pub fn check_end(&mut self, end: &StoredEnd) {
        let size = self.size();
        let Some(head) = &end.head else {
            return self.fail(size, "head", "the head record is missing");
        };
        if head.size > size {
            self.fail(
                size,
                "entry_missing",
                format!("the head says {} entries but only {size} are stored", head.size),
            );
        } else if let Some(checkpoint_size) = end.leftover_checkpoint {
            self.fail(
                size,
                "entry_missing",
                format!("a checkpoint covers {checkpoint_size} entries but only {size} are stored"),
            );
        } else if head.size < size {
            self.fail(
                head.size,
                "extra_entry",
                format!("{size} entries are stored but the head says {}", head.size),
            );
        } else if head.last_hash != Some(self.last_hash()) || head.root != Some(self.root()) {
            self.fail(
                size.saturating_sub(1),
                "head",
                "the head's last hash or root does not match the entries",
            );
        } else if head.last_timestamp_ms != self.last_timestamp_ms {
            // The writer stamps new entries no earlier than the head: a
            // head moved into the future would re-date every later entry.
            self.fail(
                size.saturating_sub(1),
                "head",
                "the head's timestamp is not the last entry's",
            );
        } else if head.checkpoint_size != self.last_checkpoint.as_ref().map_or(0, |c| c.size) {
            self.fail(
                size.saturating_sub(1),
                "head",
                "the head does not name the newest checkpoint",
            );
        } else if end.leftover_node {
            self.fail(size, "merkle_node", "Merkle nodes are stored beyond the last entry");
        } else if size == 0 {
            self.fail(0, "entry_missing", "the ledger has no genesis entry");
        } else if let Some(pending) = &end.pending {
            // A clean close leaves none; the next writable open would keep
            // or undo these entries, so nothing about them is settled.
            self.violate(
                size.saturating_sub(1),
                "pending_group",
                format!("a group synced before its signatures were checked is not settled: {pending}"),
            );
        }
    }

    /// Compares a derived table the store keeps beside the entries (and
    /// that the service reads to authorize requests or to compute money)
    /// with what the replay produced, entry by entry: every key missing,
    /// extra or different is a violation of rule `derived_keys` or
    /// `derived_state` at the last seq. `stored` must be in byte order of
    /// its keys (RocksDB's).
    pub fn compare_table(&mut self, table: DerivedTable, stored: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) {
        let replayed: Vec<(Vec<u8>, Vec<u8>)> = match table {
            DerivedTable::Keys => self
                .registry
                .keys()
                .map(|(id, info)| (id.0.to_vec(), serde_json::to_vec(info).unwrap_or_default()))
                .collect(),
            DerivedTable::State => self
                .state
                .0
                .iter()
                .map(|(key, value)| (key.as_bytes().to_vec(), value.clone()))
                .collect(),
        };
        let (rule, show): (&str, fn(&[u8]) -> String) = match table {
            DerivedTable::Keys => ("derived_keys", |key| format!("key {}", hex::encode(key))),
            DerivedTable::State => ("derived_state", |key| String::from_utf8_lossy(key).into_owned()),
        };
        let last_seq = self.size().saturating_sub(1);
        let mut replayed = replayed.into_iter().peekable();
        let mut stored = stored.into_iter().peekable();
        loop {
            let detail = match (stored.peek(), replayed.peek()) {
                (None, None) => break,
                (Some((key, value)), Some((k, v))) if key == k => {
                    let differs = value != v;
                    let detail = differs.then(|| format!("stored {} differs from the replay", show(key)));
                    stored.next();
                    replayed.next();
                    match detail {
                        Some(detail) => detail,
                        None => continue,
                    }
                }
                (Some((key, _)), Some((k, _))) if key > k => {
                    let detail = format!("{} is missing from the stored table", show(k));
                    replayed.next();
                    detail
                }
                (None, Some((k, _))) => {
                    let detail = format!("{} is missing from the stored table", show(k));
                    replayed.next();
                    detail
                }
                (Some((key, _)), _) => {
                    let detail = format!("stored {} is not produced by the replay", show(key));
                    stored.next();
                    detail
                }
            };
            self.violate(last_seq, rule, detail);
        }
    }

    /// Compares the facts the store keeps about the ledger (its origin and
    /// node key, read on every open) with the genesis entry.
    pub fn check_stored_facts(&mut self, origin: &str, node_key: &PublicKey) {
        let last_seq = self.size().saturating_sub(1);
        if self.registry.origin().is_some_and(|o| o != origin) {
            self.violate(last_seq, "stored_meta", "the stored origin is not the genesis entry's");
        }
        if *node_key != self.registry.node_key() {
            self.violate(
                last_seq,
                "stored_meta",
                "the stored node key is not the genesis entry's",
            );
        }
    }

    /// The report.
    pub fn finish(mut self) -> AuditReport {
        if !self.failed() {
            // Entries no checkpoint covers are not vouched for by the node
            // key: dropped, re-dated or invented, nothing would show it.
            let covered = self.last_checkpoint.as_ref().map_or(0, |c| c.size);
            if covered < self.size() {
                self.violate(
                    covered,
                    "uncheckpointed",
                    format!(
                        "entries {covered} to {} are not covered by a checkpoint signed by the node key",
                        self.size() - 1
                    ),
                );
            }
            if let Err(detail) = crate::funds::views::reconcile(&self.state) {
                let last_seq = self.size().saturating_sub(1);
                self.violate(last_seq, "reconciliation", detail);
            }
        }
        let entries = self.size();
        let root = to_hex(&self.root());
        let first_error = self.first_error;
        let rules_ok = self.violations_total == 0;
        let cases = crate::funds::views::totals(&self.state).map_or(0, |t| t.cases);
        let mut deadline_findings = crate::funds::deadlines::findings(&self.state, self.last_timestamp_ms);
        let deadline_findings_total = deadline_findings.len() as u64;
        deadline_findings.truncate(VIOLATIONS_LISTED_MAX);
        AuditReport {
            ok: first_error.is_none() && rules_ok,
            entries,
            root,
            checkpoints: self.checkpoints,
            first_error,
            rules_ok,
            cases,
            violations_total: self.violations_total,
            violations: self.violations,
            sms_confirmations_verified: self.sms_confirmations_verified,
            account_confirmations_verified: self.account_confirmations_verified,
            deadline_findings_total,
            deadline_findings,
            deadlines_as_of_ms: self.last_timestamp_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_listed_up_to_the_bound_and_all_counted() {
        let node = caseledger_keys::Identity::from_seed([1; 32]);
        let mut auditor = Auditor::new(node.public_key());
        let total = VIOLATIONS_LISTED_MAX as u64 + 5;
        for seq in 0..total {
            auditor.violate(seq, "some_rule", "detail");
        }
        let report = auditor.finish();
        assert_eq!(report.violations.len(), VIOLATIONS_LISTED_MAX);
        assert_eq!(report.violations_total, total);
        assert_eq!(
            report.violations.last().map(|v| v.seq),
            Some(VIOLATIONS_LISTED_MAX as u64 - 1)
        );
        assert!(!report.ok && !report.rules_ok);
    }
}
