//! The writer: group commit of appends and checkpoints.
//!
//! Callers queue their records; the first caller in line becomes the leader
//! (as in LevelDB's write queue), takes everything queued (up to
//! `batch_entries_max` entries), checks every record against the key
//! registry and the rules, hands all signatures to the verifier threads
//! (each checked alone with the one signature rule), writes one synced
//! `WriteBatch`, and
//! answers the group only once both the sync and the verification have
//! succeeded; then the next caller in line leads. One fsync serves every
//! caller of the group, and a lone caller commits
//! its own record without handing it to another thread (waking an idle
//! thread costs tens of µs on a virtual machine). A timer thread queues
//! time-based checkpoints.
//!
//! When the group makes no checkpoint and changes no key, the batch is
//! synced while its signatures are being verified, so that a lone caller
//! waits for about one fsync instead of a verification and then an fsync.
//! Such a batch carries a [`PendingGroup`] record saying how to undo it, and
//! the derived-state gate is held until the verdict: readers see neither its
//! entries (the published size moves only after the verdict) nor its derived
//! state. If a signature fails, the group is undone with a second synced
//! batch and the valid requests are committed again; if the process dies
//! first, opening the ledger for writing checks the group's signatures and
//! undoes it then. Nothing unverified is ever acknowledged or shown.

//!
//! Files: `queue.rs` (the group-commit queue, leaders, the timer thread),
//! this file (admitting, verifying and committing a group), `build.rs`
//! (a group's batch and publishing it), `speculative.rs` (sync while
//! verifying, and the undo), `disk_full.rs` (stall and resume).

mod build;
mod disk_full;
mod queue;
mod speculative;

use std::sync::Arc;

use caseledger_keys::{note, KeyId, PublicKey};
use rocksdb::WriteBatch;

use super::schema::*;
use super::verify::{Ahead, Claim, Outcome as AheadOutcome, VerifyPool, Work};
use super::{Appended, Authorization, Clock, Options, Shared, WriterState};
use crate::{Error, Result};
use caseledger_verify::admission::admit_record;
use caseledger_verify::entry::Record;
use caseledger_verify::funds::Outcome;
use caseledger_verify::registry::Registry;
use caseledger_verify::state::Overlay;

use build::Built;
use disk_full::STALL_RETRY_MS;
pub(super) use queue::lock;
pub use queue::AppendFuture;
pub(crate) use queue::Handle;
use queue::{Answer, Command, Slot};
pub(crate) use speculative::undo_batch;

struct Writer {
    shared: Arc<Shared>,
    state: WriterState,
    signer: note::Signer,
    clock: Arc<dyn Clock>,
    pool: VerifyPool,
    options: Options,
    last_checkpoint_ms: u64,
    last_checkpoint_note: Option<String>,
    poisoned: Option<String>,
    /// Set while the disk is full (see [`Writer::stall`]).
    stalled: Option<String>,
    /// A signed checkpoint stored in the ledger whose kept file could not
    /// be written for want of space: written before anything else.
    unkept: Option<String>,
    /// A batch was handed to the disk during the current group: after a
    /// failure, what reached the disk is unknown unless it was not.
    attempted_write: std::cell::Cell<bool>,
}

/// One caller's request inside a group, and what became of it.
struct Pending {
    /// Its place in the group.
    position: usize,
    records: Vec<Record>,
    /// The request's own signature, checked with the records' signatures.
    authorization: Option<Authorization>,
    /// Its signatures' check by a verifier thread ahead of the group.
    ahead: Option<Arc<Ahead>>,
    /// Its signer's key, found on admission.
    authorization_key: Option<PublicKey>,
    /// Per record: `Some(seq)` when it repeats the record already at `seq`.
    duplicates: Vec<Option<u64>>,
    /// Every signature of the request has been checked on its own (after a
    /// failed group verification).
    verified: bool,
    /// `None` while the request is still going ahead.
    outcome: Option<Result<Appended>>,
    keys: Vec<PublicKey>,
}

impl Pending {
    /// The keys of its signatures, in the order of its ahead check.
    fn expected_keys(&self) -> Vec<PublicKey> {
        self.authorization_key.iter().chain(&self.keys).copied().collect()
    }

    /// Whether the request's own signature (if any) verifies, checked alone.
    fn authorization_holds(&self) -> bool {
        match (&self.authorization, &self.authorization_key) {
            (None, _) => true,
            (Some(authorization), Some(key)) => {
                key.verify_raw(&authorization.message, &authorization.signature).is_ok()
            }
            (Some(_), None) => false,
        }
    }
}

/// What admitting a group produced: the registry after it, the keys it
/// changed, and the derived-state changes to write with the entries.
struct Admission {
    registry: Registry,
    changed: Vec<KeyId>,
    state: std::collections::BTreeMap<String, Option<Vec<u8>>>,
}

impl Writer {
    /// Commits a group of queued commands; one answer per command, in order.
    fn commit_commands(&mut self, group: Vec<(Arc<Slot>, Command)>) -> Vec<Answer> {
        let mut appends = Vec::new();
        let mut checkpoints = Vec::new();
        let mut force_checkpoint = false;
        for (position, (_, command)) in group.into_iter().enumerate() {
            match command {
                Command::Append(records, authorization, ahead) => appends.push(Pending {
                    position,
                    records,
                    authorization,
                    ahead,
                    authorization_key: None,
                    duplicates: Vec::new(),
                    verified: false,
                    outcome: None,
                    keys: Vec::new(),
                }),
                Command::Checkpoint => checkpoints.push(position),
                Command::Tick => {
                    force_checkpoint = true;
                    checkpoints.push(position);
                }
            }
        }
        self.commit_group(appends, checkpoints, force_checkpoint)
    }

    fn uncheckpointed(&self) -> u64 {
        let covered = self.state.last_checkpoint.as_ref().map_or(0, |c| c.size);
        self.state.frontier.size() - covered
    }

    /// When a time-based checkpoint is due (clock ms); `None` if nothing
    /// waits. While the disk is full, the tick comes every
    /// [`STALL_RETRY_MS`] to try again.
    fn checkpoint_due_ms(&self) -> Option<u64> {
        if self.poisoned.is_some() {
            return None;
        }
        if self.stalled.is_some() {
            return Some(self.clock.now_ms() + STALL_RETRY_MS);
        }
        if self.uncheckpointed() == 0 {
            return None;
        }
        Some(self.last_checkpoint_ms + self.options.checkpoint_every_ms)
    }

    /// Checks every record against the registry and the case-fund rules, in
    /// order, as it will be written. Requests already refused are skipped.
    fn admit(&self, appends: &mut [Pending], timestamp_ms: u64) -> Admission {
        let mut registry = self.state.registry.clone();
        let mut changed = Vec::new();
        let mut seq = self.state.frontier.size();
        let base = super::SharedState(&self.shared);
        let mut overlay = Overlay::new(&base);
        for pending in appends.iter_mut().filter(|p| p.outcome.is_none()) {
            if let Some(authorization) = &pending.authorization {
                pending.authorization_key = registry.public_key(&authorization.signer);
                if pending.authorization_key.is_none() {
                    pending.outcome = Some(Err(Error::BadRequestSignature));
                    continue;
                }
            }
            // Only records that change the registry need a way back.
            let changes_keys = pending
                .records
                .iter()
                .any(|r| caseledger_verify::record::changes_registry(r.kind));
            let snapshot = changes_keys.then(|| registry.clone());
            let mark = overlay.mark();
            let mut keys = Vec::with_capacity(pending.records.len());
            let mut duplicates = Vec::with_capacity(pending.records.len());
            let mut request_changes = Vec::new();
            let mut next = seq;
            for (index, record) in pending.records.iter().enumerate() {
                match admit_record(&mut registry, &mut overlay, next, timestamp_ms, record) {
                    Ok((admitted, outcome)) => {
                        keys.push(admitted.key);
                        request_changes.extend(admitted.changed);
                        match outcome {
                            Outcome::New => {
                                duplicates.push(None);
                                next += 1;
                            }
                            Outcome::Duplicate(original) => duplicates.push(Some(original)),
                        }
                    }
                    Err(source) => {
                        // A request or a record that is not what its signer
                        // signed is refused as such, before any rule speaks
                        // about it.
                        let error = if !pending.authorization_holds() {
                            Error::BadRequestSignature
                        } else if let Some(index) =
                            first_bad_signature(&self.shared.meta.origin, &registry, &pending.records)
                        {
                            Error::BadSignature { index }
                        } else {
                            Error::Rejected { index, source }
                        };
                        pending.outcome = Some(Err(error));
                        break;
                    }
                }
            }
            if pending.outcome.is_some() {
                if let Some(snapshot) = snapshot {
                    registry = snapshot;
                }
                overlay.rollback(mark);
                continue;
            }
            seq = next;
            pending.keys = keys;
            pending.duplicates = duplicates;
            changed.extend(request_changes);
        }
        Admission {
            registry,
            changed,
            state: overlay.into_changes(),
        }
    }

    /// Every signature of the requests still going ahead that has not been
    /// checked on its own yet, and the ahead checks of such requests still
    /// running. Requests checked ahead with the keys admission found are
    /// left out.
    fn unverified(origin: &str, appends: &[Pending]) -> (Work, Vec<Arc<AheadOutcome>>) {
        let mut work = Work::default();
        let mut running: Vec<Arc<AheadOutcome>> = Vec::new();
        for pending in appends.iter().filter(|p| p.outcome.is_none() && !p.verified) {
            if let Some(ahead) = pending
                .ahead
                .as_ref()
                .filter(|a| a.work().keys == pending.expected_keys())
            {
                match ahead.claim() {
                    Claim::Valid => {}
                    Claim::Running(outcome) => {
                        if !running.iter().any(|o| Arc::ptr_eq(o, &outcome)) {
                            running.push(outcome);
                        }
                    }
                    Claim::Verify => work.extend_from(ahead.work()),
                }
                continue;
            }
            push_request(
                &mut work,
                origin,
                pending.authorization.as_ref().zip(pending.authorization_key),
                pending.records.iter().zip(pending.keys.iter().copied()),
            );
        }
        (work, running)
    }

    /// After a failed group verification: checks each request's signatures
    /// one by one, refuses the requests with a bad one and marks the others
    /// verified.
    fn refuse_bad_signatures(origin: &str, appends: &mut [Pending]) {
        for pending in appends.iter_mut().filter(|p| p.outcome.is_none() && !p.verified) {
            if !pending.authorization_holds() {
                pending.outcome = Some(Err(Error::BadRequestSignature));
                continue;
            }
            let bad = pending
                .records
                .iter()
                .zip(&pending.keys)
                .position(|(record, key)| record.verify(origin, key).is_err());
            match bad {
                Some(index) => pending.outcome = Some(Err(Error::BadSignature { index })),
                None => pending.verified = true,
            }
        }
    }

    /// Refuses every later write, and says why to whoever asks the ledger
    /// (`/readyz` answers 503).
    fn poison(&mut self, reason: String) {
        *lock(&self.shared.poisoned) = Some(reason.clone());
        self.poisoned = Some(reason);
    }

    /// Commits the appends (and a checkpoint if asked or due); returns the
    /// answers of the appends and of the checkpoint requests at
    /// `checkpoints`, in group order.
    fn commit_group(
        &mut self,
        mut appends: Vec<Pending>,
        checkpoints: Vec<usize>,
        force_checkpoint: bool,
    ) -> Vec<Answer> {
        if self.poisoned.is_none() {
            // Stopped from outside (an integrity failure found by a reader).
            self.poisoned = lock(&self.shared.poisoned).clone();
        }
        self.attempted_write.set(false);
        if self.poisoned.is_none() && self.resume() {
            self.attempted_write.set(false);
            let timestamp_ms = self.clock.now_ms().max(self.state.last_timestamp_ms);
            let want_checkpoint = force_checkpoint || !checkpoints.is_empty();
            let committed = self
                .space_left()
                .and_then(|()| self.commit(&mut appends, timestamp_ms, want_checkpoint));
            match committed {
                Ok(admission) => {
                    if !admission.changed.is_empty() {
                        self.shared.publish_keys(&admission.registry);
                    }
                    self.state.registry = admission.registry;
                }
                Err(Error::OutOfSpace(reason)) => self.stall(reason),
                Err(e) if !self.attempted_write.get() => {
                    // Failed before anything was written (a read of a
                    // Merkle node, say): the group is refused, the writer
                    // goes on.
                    for pending in appends.iter_mut().filter(|p| p.outcome.is_none()) {
                        pending.outcome = Some(Err(Error::Storage(e.to_string())));
                    }
                }
                Err(e) => self.poison(format!(
                    "commit failed, writes refused until the ledger is reopened: {e}"
                )),
            }
        }
        let mut answers: Vec<Option<Answer>> = Vec::new();
        answers.resize_with(appends.len() + checkpoints.len(), || None);
        for pending in appends {
            let answer = match (&self.poisoned, pending.outcome) {
                (_, Some(outcome @ Err(_))) => outcome,
                (Some(reason), _) => Err(Error::Poisoned(reason.clone())),
                (None, None) if self.stalled.is_some() => {
                    Err(Error::OutOfSpace(self.stalled.clone().unwrap_or_default()))
                }
                (None, Some(outcome)) => outcome,
                (None, None) => Err(Error::Poisoned("internal: request left without an answer".into())),
            };
            answers[pending.position] = Some(Answer::Append(answer));
        }
        for position in checkpoints {
            let answer = match (&self.poisoned, &self.last_checkpoint_note) {
                (Some(reason), _) => Err(Error::Poisoned(reason.clone())),
                (None, _) if self.stalled.is_some() => Err(Error::OutOfSpace(self.stalled.clone().unwrap_or_default())),
                (None, Some(note)) => Ok(note.clone()),
                (None, None) => Err(Error::InvalidArgument(
                    "the ledger is empty; there is nothing to checkpoint".into(),
                )),
            };
            answers[position] = Some(Answer::Checkpoint(answer));
        }
        answers
            .into_iter()
            .map(|a| a.expect("one answer per command"))
            .collect()
    }

    /// Admits, verifies and writes the group; sets each request's outcome
    /// once its entries are durable and verified. Requests with a bad
    /// signature are refused and the rest committed without them.
    fn commit(&mut self, appends: &mut [Pending], timestamp_ms: u64, force_checkpoint: bool) -> Result<Admission> {
        let admission = self.admit(appends, timestamp_ms);
        let (work, running) = Self::unverified(&self.shared.meta.origin, appends);
        let verdict = self.pool.submit(work, running);
        let built = self.build(appends, &admission, timestamp_ms, force_checkpoint)?;
        // Only a group that adds entries is written before its verdict:
        // its undo record then names them.
        let speculate = verdict.is_pending()
            && admission.changed.is_empty()
            && built
                .as_ref()
                .is_some_and(|b| b.checkpoint.is_none() && b.frontier.size() > b.first_seq);
        let valid = match built {
            Some(built) if speculate => self.write_while_verifying(built, &admission, verdict, appends)?,
            Some(built) => {
                let valid = verdict.wait();
                if valid {
                    self.write_verified(built, appends)?;
                }
                valid
            }
            None => verdict.wait(),
        };
        if valid {
            return Ok(admission);
        }
        // Someone sent a bad signature: refuse them and commit the rest
        // again (a refused key registration changes what follows).
        Self::refuse_bad_signatures(&self.shared.meta.origin, appends);
        self.commit(appends, timestamp_ms, force_checkpoint)
    }

    /// Syncs a group whose signatures are all verified.
    fn write_verified(&mut self, mut built: Built, appends: &mut [Pending]) -> Result<()> {
        built.batch.delete_cf(self.shared.cf(CF_META), META_PENDING);
        self.sync(std::mem::take(&mut built.batch))?;
        // The checkpoint is kept where a lost write-ahead log cannot take
        // it, before anyone hears of the group.
        let unkept = built.checkpoint.as_ref().map(|(_, note)| note.clone());
        let kept = unkept.as_deref().map_or(Ok(()), |note| self.keep_checkpoint(note));
        self.finish(built, appends);
        match kept {
            Ok(()) => Ok(()),
            Err(Error::OutOfSpace(reason)) => {
                // The group is durable and the writer's state follows it,
                // but no one is told until its checkpoint is kept: the
                // requests are answered "disk full" (a retry finds its
                // records stored) and the writer stalls until the file is
                // written ([`Writer::resume`]).
                for pending in appends.iter_mut() {
                    if matches!(pending.outcome, Some(Ok(_))) {
                        pending.outcome = None;
                    }
                }
                self.unkept = unkept;
                self.stall(reason);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the kept checkpoint file(s) (docs/FORMAT.md §8c).
    fn keep_checkpoint(&self, note: &str) -> Result<()> {
        let storage = self.options.storage.as_ref();
        super::signed_checkpoint::write_through(storage, &super::signed_checkpoint::path_in(&self.shared.path), note)?;
        if let Some(copy) = &self.shared.kept_copy {
            super::signed_checkpoint::write_through(storage, copy, note)?;
        }
        Ok(())
    }

    /// Writes `batch` and syncs the log. A full disk is
    /// [`Error::OutOfSpace`]: nothing of the batch was applied.
    fn sync(&self, batch: WriteBatch) -> Result<()> {
        self.attempted_write.set(true);
        self.options
            .storage
            .write_synced(&self.shared.db, batch)
            .map_err(|text| {
                if crate::store::storage::is_out_of_space(&text) {
                    Error::OutOfSpace(text)
                } else {
                    Error::Storage(text)
                }
            })
    }
}

/// Adds the signatures of one request to `work`: the request's own first,
/// then its records', each with its signer's key (the order of
/// [`Pending::expected_keys`]).
fn push_request<'a>(
    work: &mut Work,
    origin: &str,
    authorization: Option<(&Authorization, PublicKey)>,
    records: impl Iterator<Item = (&'a Record, PublicKey)>,
) {
    if let Some((authorization, key)) = authorization {
        work.messages.push(authorization.message.clone());
        work.signatures.push(authorization.signature);
        work.keys.push(key);
    }
    for (record, key) in records {
        work.messages.push(record.signed_message(origin));
        work.signatures.push(record.signature);
        work.keys.push(key);
    }
}

/// The first record whose signature, as a record of the ledger named
/// `origin`, fails against its signer's key in `registry` (records of
/// unknown signers are skipped).
fn first_bad_signature(origin: &str, registry: &Registry, records: &[Record]) -> Option<usize> {
    records.iter().position(|record| {
        registry
            .public_key(&record.signer)
            .is_some_and(|key| record.verify(origin, &key).is_err())
    })
}
