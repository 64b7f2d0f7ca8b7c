//! The auditor: replays a ledger entry by entry and re-checks everything.
//!
//! Pure: it is fed entry bytes, stored Merkle nodes and signed checkpoints by
//! a driver (the store's [`crate::store::Ledger::audit`], or any other reader)
//! and does no I/O itself. Signatures are checked in batches on worker
//! threads while the caller keeps feeding entries; the first failure by
//! sequence number wins, whichever check found it.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use caseledger_keys::{note, PublicKey, Signature};
use serde::Serialize;

use crate::checkpoint::Checkpoint;
use crate::entry::Entry;
use crate::funds::Outcome;
use crate::hash::{to_hex, Hash};
use crate::merkle::{self, CompletedNode, Frontier};
use crate::registry::{admit_record, Admitted, Registry, RuleError};
use crate::state::{MemoryState, Overlay};

/// Violations listed in a report; more are counted, not listed.
pub const VIOLATIONS_LISTED_MAX: usize = 1000;

/// Signatures handed to a worker at a time (each checked alone).
pub const SIGNATURE_BATCH_ENTRIES: usize = 256;
/// Batches queued ahead of the workers before the feeder waits.
const QUEUED_BATCHES_MAX: usize = 4;

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
    pub detail: String,
}

/// The outcome of an audit; serialises to the `verify --json` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Integrity intact and every rule held.
    pub ok: bool,
    pub entries: u64,
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
}

struct SignatureJob {
    seqs: Vec<u64>,
    messages: Vec<Vec<u8>>,
    signatures: Vec<Signature>,
    keys: Vec<PublicKey>,
}

impl SignatureJob {
    fn new() -> Self {
        Self {
            seqs: Vec::with_capacity(SIGNATURE_BATCH_ENTRIES),
            messages: Vec::with_capacity(SIGNATURE_BATCH_ENTRIES),
            signatures: Vec::with_capacity(SIGNATURE_BATCH_ENTRIES),
            keys: Vec::with_capacity(SIGNATURE_BATCH_ENTRIES),
        }
    }

    /// The first sequence number whose signature is bad, if any.
    fn first_bad(&self) -> Option<u64> {
        (0..self.seqs.len())
            .find(|&i| self.keys[i].verify_raw(&self.messages[i], &self.signatures[i]).is_err())
            .map(|i| self.seqs[i])
    }
}

/// Verifies signature batches on worker threads.
struct SignaturePool {
    jobs: Option<mpsc::SyncSender<SignatureJob>>,
    workers: Vec<JoinHandle<Option<u64>>>,
    current: SignatureJob,
    verified: u64,
    inline_failure: Option<u64>,
}

impl SignaturePool {
    fn new(threads: usize) -> Self {
        let (jobs, receiver) = mpsc::sync_channel::<SignatureJob>(QUEUED_BATCHES_MAX);
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = (0..threads.max(1))
            .map(|_| {
                let receiver = Arc::clone(&receiver);
                std::thread::spawn(move || {
                    let mut first_bad: Option<u64> = None;
                    loop {
                        let job = match receiver.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => break,
                        };
                        let Ok(job) = job else { break };
                        if let Some(seq) = job.first_bad() {
                            first_bad = Some(first_bad.map_or(seq, |s| s.min(seq)));
                        }
                    }
                    first_bad
                })
            })
            .collect();
        Self {
            jobs: Some(jobs),
            workers,
            current: SignatureJob::new(),
            verified: 0,
            inline_failure: None,
        }
    }

    fn push(&mut self, seq: u64, message: Vec<u8>, signature: Signature, key: PublicKey) {
        self.current.seqs.push(seq);
        self.current.messages.push(message);
        self.current.signatures.push(signature);
        self.current.keys.push(key);
        if self.current.seqs.len() >= SIGNATURE_BATCH_ENTRIES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let job = std::mem::replace(&mut self.current, SignatureJob::new());
        if job.seqs.is_empty() {
            return;
        }
        self.verified += job.seqs.len() as u64;
        let job = match &self.jobs {
            Some(jobs) => match jobs.send(job) {
                Ok(()) => return,
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        // The workers are gone (one panicked): verify here instead.
        if let Some(seq) = job.first_bad() {
            self.inline_failure = Some(self.inline_failure.map_or(seq, |s| s.min(seq)));
        }
    }

    /// Waits for every batch and returns the first bad sequence number.
    fn finish(mut self) -> Option<u64> {
        self.flush();
        drop(self.jobs.take());
        let mut first_bad = self.inline_failure;
        for worker in self.workers.drain(..) {
            // A worker that panicked verified nothing: count it as a failure
            // at seq 0 rather than passing signatures nobody checked.
            let result = worker.join().unwrap_or(Some(0));
            if let Some(seq) = result {
                first_bad = Some(first_bad.map_or(seq, |s| s.min(seq)));
            }
        }
        first_bad
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
    signatures: SignaturePool,
    checkpoints: u64,
    last_checkpoint: Option<Checkpoint>,
    state: MemoryState,
    violations: Vec<Violation>,
    violations_total: u64,
    sms_confirmations_verified: u64,
    account_confirmations_verified: u64,
}

impl Auditor {
    /// An auditor that trusts nothing but `node_key`.
    pub fn new(node_key: PublicKey, signature_threads: usize) -> Self {
        Self {
            registry: Registry::new(node_key),
            tree: Frontier::new(),
            prev_hash: [0; 32],
            last_timestamp_ms: 0,
            first_error: None,
            signatures: SignaturePool::new(signature_threads),
            checkpoints: 0,
            last_checkpoint: None,
            state: MemoryState::default(),
            violations: Vec::new(),
            violations_total: 0,
            sms_confirmations_verified: 0,
            account_confirmations_verified: 0,
        }
    }

    /// Records a broken case-fund rule; the replay goes on.
    pub fn violate(&mut self, seq: u64, rule: &str, detail: impl Into<String>) {
        self.violations_total += 1;
        if self.violations.len() < VIOLATIONS_LISTED_MAX {
            self.violations.push(Violation {
                seq,
                rule: rule.to_owned(),
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

    pub fn last_hash(&self) -> Hash {
        self.prev_hash
    }

    /// The registry as replayed so far.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Whether a check has failed (signature batches still in flight aside).
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
            Ok(entry) => entry,
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
        let mut overlay = Overlay::new(&self.state);
        let admitted = match admit_record(&mut self.registry, &mut overlay, seq, entry.timestamp_ms, &entry.record) {
            Ok((admitted, Outcome::New)) => {
                let changes = overlay.into_changes();
                self.state.apply(changes);
                if entry.record.kind == crate::funds::model::KIND_APPROVAL_SIGNED {
                    let statement: Option<crate::funds::model::ApprovalSigned> =
                        serde_json::from_slice(&entry.record.payload).ok();
                    if statement.is_some_and(|s| s.sms.is_some()) {
                        self.sms_confirmations_verified += 1;
                    }
                }
                if entry.record.kind == crate::funds::model::KIND_ACCOUNT_CONFIRMED {
                    let confirmed: Option<crate::funds::model::AccountConfirmed> =
                        serde_json::from_slice(&entry.record.payload).ok();
                    if confirmed.is_some_and(|c| c.sms.is_some()) {
                        self.account_confirmations_verified += 1;
                    }
                }
                admitted
            }
            Ok((admitted, Outcome::Duplicate(original))) => {
                self.violate(
                    seq,
                    "duplicate_request",
                    format!("repeats the record at seq {original}"),
                );
                admitted
            }
            // A case-fund rule broken by a record forced into storage: the
            // record has no effect and the replay goes on to find the rest.
            Err(RuleError::Rule { rule, detail }) => {
                self.violate(seq, rule, detail);
                match self
                    .registry
                    .info(&entry.record.signer)
                    .and_then(|i| i.public_key.key().ok())
                {
                    Some(key) => Admitted {
                        key,
                        changed: Vec::new(),
                    },
                    None => {
                        self.fail(seq, "unknown_key", "signer of a refused record is unknown");
                        return None;
                    }
                }
            }
            Err(rule) => {
                self.fail(seq, rule.check(), rule.to_string());
                return None;
            }
        };
        self.signatures.push(
            seq,
            Entry::signed_message_of(bytes),
            entry.record.signature,
            admitted.key,
        );
        let leaf = Entry::hash_of(bytes);
        self.prev_hash = leaf;
        self.last_timestamp_ms = entry.timestamp_ms;
        Some(self.tree.push(leaf))
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
    /// origin, the root, and consistency with the previous checkpoint using
    /// `consistency_proof(previous_size, size)` from the store.
    pub fn check_checkpoint(
        &mut self,
        signed: &str,
        consistency_proof: impl FnOnce(u64, u64) -> crate::Result<Vec<Hash>>,
    ) {
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
        if let Some(previous) = self.last_checkpoint.take() {
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

    /// Waits for the signature workers and reports.
    pub fn finish(self) -> AuditReport {
        let entries = self.size();
        let bad_signature = self.signatures.finish();
        let mut first_error = self.first_error;
        if let Some(seq) = bad_signature {
            if first_error.as_ref().is_none_or(|f| seq < f.seq) {
                first_error = Some(Finding {
                    seq,
                    check: "signature".into(),
                    detail: "record signature does not verify with the signer's registered key".into(),
                });
            }
        }
        let rules_ok = self.violations_total == 0;
        let cases = crate::funds::views::totals(&self.state).map_or(0, |t| t.cases);
        AuditReport {
            ok: first_error.is_none() && rules_ok,
            entries,
            checkpoints: self.checkpoints,
            first_error,
            rules_ok,
            cases,
            violations_total: self.violations_total,
            violations: self.violations,
            sms_confirmations_verified: self.sms_confirmations_verified,
            account_confirmations_verified: self.account_confirmations_verified,
        }
    }
}
