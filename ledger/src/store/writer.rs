//! The writer thread: group commit of appends and checkpoints.
//!
//! Callers hand their records over a channel and block on a reply. The
//! writer takes everything queued (up to `batch_entries_max` entries), checks
//! every record against the key registry, verifies all signatures in one
//! batch spread over the verify threads, writes one synced `WriteBatch`, and
//! only then replies. One fsync and one batch verification serve every
//! caller of the group.

use std::collections::HashMap;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use caseledger_keys::{note, verify_batch, KeyId, PublicKey, Signature};
use rocksdb::{WriteBatch, WriteOptions};

use super::schema::*;
use super::{read_node, Appended, Clock, Options, Published, Shared, WriterState};
use crate::checkpoint::Checkpoint;
use crate::entry::{Entry, Record};
use crate::funds::Outcome;
use crate::hash::Hash;
use crate::merkle::{self, NodeSource};
use crate::registry::{admit_record, Registry};
use crate::state::Overlay;
use crate::{Error, Result};

/// Below this many signatures a group is verified on the writer thread alone.
const PARALLEL_VERIFY_MIN: usize = 16;

enum Command {
    Append {
        records: Vec<Record>,
        preverified: bool,
        reply: mpsc::SyncSender<Result<Appended>>,
    },
    Checkpoint {
        reply: mpsc::SyncSender<Result<String>>,
    },
}

impl Command {
    fn entries(&self) -> usize {
        match self {
            Command::Append { records, .. } => records.len(),
            Command::Checkpoint { .. } => 0,
        }
    }
}

/// The caller's side of the writer thread.
pub(crate) struct Handle {
    sender: mpsc::Sender<Command>,
    thread: JoinHandle<()>,
}

fn stopped() -> Error {
    Error::Poisoned("the writer thread has stopped".into())
}

impl Handle {
    pub(crate) fn start(
        shared: Arc<Shared>,
        state: WriterState,
        signer: note::Signer,
        clock: Arc<dyn Clock>,
        options: Options,
    ) -> Self {
        let (sender, receiver) = mpsc::channel();
        let last_checkpoint_ms = clock.now_ms();
        let last_checkpoint_note = state
            .last_checkpoint
            .as_ref()
            .and_then(|c| {
                shared
                    .db
                    .get_cf(shared.cf(CF_CHECKPOINTS), seq_key(c.size))
                    .ok()
                    .flatten()
            })
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let writer = Writer {
            shared,
            state,
            signer,
            clock,
            options,
            last_checkpoint_ms,
            last_checkpoint_note,
            poisoned: None,
        };
        let thread = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer.run(receiver))
            .expect("spawning the writer thread");
        Self { sender, thread }
    }

    pub(crate) fn append(&self, records: Vec<Record>, preverified: bool) -> Result<Appended> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.sender
            .send(Command::Append {
                records,
                preverified,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }

    pub(crate) fn checkpoint(&self) -> Result<String> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.sender.send(Command::Checkpoint { reply }).map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }

    pub(crate) fn stop(self) -> Result<()> {
        drop(self.sender);
        self.thread
            .join()
            .map_err(|_| Error::Poisoned("the writer thread panicked".into()))
    }
}

struct Writer {
    shared: Arc<Shared>,
    state: WriterState,
    signer: note::Signer,
    clock: Arc<dyn Clock>,
    options: Options,
    last_checkpoint_ms: u64,
    last_checkpoint_note: Option<String>,
    poisoned: Option<String>,
}

/// One caller's request inside a group, and what became of it.
struct Pending {
    records: Vec<Record>,
    /// Per record: `Some(seq)` when it repeats the record already at `seq`.
    duplicates: Vec<Option<u64>>,
    /// Signatures already checked by the caller against the same keys.
    preverified: bool,
    reply: mpsc::SyncSender<Result<Appended>>,
    /// `None` while the request is still going ahead.
    outcome: Option<Result<Appended>>,
    keys: Vec<PublicKey>,
}

/// What admitting a group produced: the registry after it, the keys it
/// changed, and the derived-state changes to write with the entries.
struct Admission {
    registry: Registry,
    changed: Vec<KeyId>,
    state: std::collections::BTreeMap<String, Option<Vec<u8>>>,
}

/// Nodes written by the current group, in front of the stored ones.
struct NodeOverlay<'a> {
    pending: &'a HashMap<(u32, u64), Hash>,
    shared: &'a Shared,
}

impl NodeSource for NodeOverlay<'_> {
    fn perfect_node(&self, level: u32, index: u64) -> Result<Hash> {
        match self.pending.get(&(level, index)) {
            Some(hash) => Ok(*hash),
            None => read_node(self.shared, level, index),
        }
    }
}

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<Command>) {
        loop {
            let first = match self.checkpoint_due_in() {
                Some(Duration::ZERO) => {
                    self.commit_group(Vec::new(), Vec::new(), true);
                    continue;
                }
                Some(wait) => match receiver.recv_timeout(wait) {
                    Ok(command) => command,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match receiver.recv() {
                    Ok(command) => command,
                    Err(_) => break,
                },
            };
            let mut entries = first.entries();
            let mut group = vec![first];
            while entries < self.options.batch_entries_max {
                match receiver.try_recv() {
                    Ok(command) => {
                        entries += command.entries();
                        group.push(command);
                    }
                    Err(_) => break,
                }
            }
            let mut appends = Vec::new();
            let mut checkpoint_replies = Vec::new();
            for command in group {
                match command {
                    Command::Append {
                        records,
                        preverified,
                        reply,
                    } => appends.push(Pending {
                        records,
                        duplicates: Vec::new(),
                        preverified,
                        reply,
                        outcome: None,
                        keys: Vec::new(),
                    }),
                    Command::Checkpoint { reply } => checkpoint_replies.push(reply),
                }
            }
            self.commit_group(appends, checkpoint_replies, false);
        }
        // A clean shutdown leaves every entry covered by a checkpoint.
        if self.uncheckpointed() > 0 {
            self.commit_group(Vec::new(), Vec::new(), true);
        }
    }

    fn uncheckpointed(&self) -> u64 {
        let covered = self.state.last_checkpoint.as_ref().map_or(0, |c| c.size);
        self.state.frontier.size() - covered
    }

    /// How long until a time-based checkpoint is due; `None` if nothing waits.
    fn checkpoint_due_in(&self) -> Option<Duration> {
        if self.uncheckpointed() == 0 || self.poisoned.is_some() {
            return None;
        }
        let due = self.last_checkpoint_ms + self.options.checkpoint_every_ms;
        Some(Duration::from_millis(due.saturating_sub(self.clock.now_ms())))
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
            // Only records that change the registry need a way back.
            let changes_keys = pending.records.iter().any(|r| crate::record::changes_registry(r.kind));
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
                        pending.outcome = Some(Err(Error::Rejected { index, source }));
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

    /// Admits and verifies the group; returns the resulting registry and
    /// changed keys. Refused requests get their outcome set.
    fn admit_and_verify(&self, appends: &mut [Pending], timestamp_ms: u64) -> Admission {
        let admission = self.admit(appends, timestamp_ms);
        let live: Vec<&Pending> = appends
            .iter()
            .filter(|p| p.outcome.is_none() && !p.preverified)
            .collect();
        let mut messages = Vec::new();
        let mut signatures = Vec::new();
        let mut keys = Vec::new();
        for pending in &live {
            for (record, key) in pending.records.iter().zip(&pending.keys) {
                messages.push(record.signed_message());
                signatures.push(record.signature);
                keys.push(*key);
            }
        }
        if verify_parallel(&messages, &signatures, &keys, self.options.verify_threads) {
            return admission;
        }
        // Someone sent a bad signature: find whose, refuse them, and admit
        // the rest again (a refused key registration changes what follows).
        for pending in appends.iter_mut().filter(|p| p.outcome.is_none() && !p.preverified) {
            let bad = pending
                .records
                .iter()
                .zip(&pending.keys)
                .position(|(record, key)| key.verify_raw(&record.signed_message(), &record.signature).is_err());
            if let Some(index) = bad {
                pending.outcome = Some(Err(Error::BadSignature { index }));
            }
        }
        self.admit(appends, timestamp_ms)
    }

    fn commit_group(
        &mut self,
        mut appends: Vec<Pending>,
        checkpoint_replies: Vec<mpsc::SyncSender<Result<String>>>,
        force_checkpoint: bool,
    ) {
        if let Some(reason) = &self.poisoned {
            for pending in appends {
                let _ = pending.reply.send(Err(Error::Poisoned(reason.clone())));
            }
            for reply in checkpoint_replies {
                let _ = reply.send(Err(Error::Poisoned(reason.clone())));
            }
            return;
        }
        let timestamp_ms = self.clock.now_ms().max(self.state.last_timestamp_ms);
        let admission = self.admit_and_verify(&mut appends, timestamp_ms);
        let want_checkpoint = force_checkpoint || !checkpoint_replies.is_empty();
        let result = self.write(&mut appends, &admission, timestamp_ms, want_checkpoint);
        match result {
            Ok(()) => {
                if !admission.changed.is_empty() {
                    self.shared.publish_keys(&admission.registry);
                }
                self.state.registry = admission.registry;
            }
            Err(e) => {
                let reason = format!("commit failed, writes refused until the ledger is reopened: {e}");
                self.poisoned = Some(reason.clone());
                for pending in appends.iter_mut().filter(|p| p.outcome.is_none()) {
                    pending.outcome = Some(Err(Error::Poisoned(reason.clone())));
                }
            }
        }
        for pending in appends {
            let answer = pending
                .outcome
                .unwrap_or_else(|| Err(Error::Poisoned("internal: request left without an answer".into())));
            let _ = pending.reply.send(answer);
        }
        for reply in checkpoint_replies {
            let answer = match (&self.poisoned, &self.last_checkpoint_note) {
                (Some(reason), _) => Err(Error::Poisoned(reason.clone())),
                (None, Some(note)) => Ok(note.clone()),
                (None, None) => Err(Error::InvalidArgument(
                    "the ledger is empty; there is nothing to checkpoint".into(),
                )),
            };
            let _ = reply.send(answer);
        }
    }

    /// Writes the admitted records (and a checkpoint if due) in one synced
    /// batch, then updates the in-memory state and sets each accepted
    /// request's outcome. Nothing is answered before the sync returns.
    fn write(
        &mut self,
        appends: &mut [Pending],
        admission: &Admission,
        timestamp_ms: u64,
        force_checkpoint: bool,
    ) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let mut batch = WriteBatch::default();
        let mut frontier = self.state.frontier.clone();
        let mut last_hash = self.state.last_hash;
        let mut pending_nodes = HashMap::new();
        let mut accepted = Vec::new();
        for (position, pending) in appends.iter_mut().enumerate() {
            if pending.outcome.is_some() {
                continue;
            }
            let first_seq = frontier.size();
            let mut seqs = Vec::with_capacity(pending.records.len());
            let duplicates = std::mem::take(&mut pending.duplicates);
            for (record, duplicate) in std::mem::take(&mut pending.records).into_iter().zip(duplicates) {
                if let Some(original) = duplicate {
                    seqs.push(original);
                    continue;
                }
                seqs.push(frontier.size());
                let entry = Entry {
                    seq: frontier.size(),
                    timestamp_ms,
                    prev_hash: last_hash,
                    record,
                };
                let bytes = entry.encode();
                last_hash = Entry::hash_of(&bytes);
                batch.put_cf(shared.cf(CF_ENTRIES), seq_key(entry.seq), &bytes);
                for (level, index, hash) in frontier.push(last_hash) {
                    batch.put_cf(shared.cf(CF_NODES), node_key(level, index), hash);
                    pending_nodes.insert((level, index), hash);
                }
            }
            let count = frontier.size() - first_seq;
            let first_seq = if count == 0 {
                seqs.first().copied().unwrap_or(first_seq)
            } else {
                first_seq
            };
            accepted.push((position, Appended { first_seq, count, seqs }));
        }
        for id in &admission.changed {
            if let Some(info) = admission.registry.info(id) {
                batch.put_cf(
                    shared.cf(CF_KEYS),
                    id.0,
                    serde_json::to_vec(info).expect("serialisable"),
                );
            }
        }
        for (key, value) in &admission.state {
            match value {
                Some(value) => batch.put_cf(shared.cf(CF_STATE), key.as_bytes(), value),
                None => batch.delete_cf(shared.cf(CF_STATE), key.as_bytes()),
            }
        }
        let covered = self.state.last_checkpoint.as_ref().map_or(0, |c| c.size);
        let uncovered = frontier.size() - covered;
        let checkpoint = if uncovered > 0 && (force_checkpoint || uncovered >= self.options.checkpoint_every_entries) {
            let overlay = NodeOverlay {
                pending: &pending_nodes,
                shared: &shared,
            };
            let (checkpoint, note) = self.sign_checkpoint(&overlay, &frontier)?;
            batch.put_cf(shared.cf(CF_CHECKPOINTS), seq_key(checkpoint.size), note.as_bytes());
            Some((checkpoint, note))
        } else {
            None
        };
        let checkpoint_size = checkpoint.as_ref().map_or(covered, |(c, _)| c.size);
        let head = Head::new(&frontier, &last_hash, timestamp_ms, checkpoint_size);
        batch.put_cf(
            shared.cf(CF_META),
            META_HEAD,
            serde_json::to_vec(&head).expect("serialisable"),
        );
        if accepted.is_empty() && checkpoint.is_none() {
            return Ok(());
        }
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        shared
            .db
            .write_opt(batch, &sync)
            .map_err(|e| Error::Storage(e.into_string()))?;
        // Durable: now the state moves on and callers hear about it.
        self.state.frontier = frontier;
        self.state.last_hash = last_hash;
        self.state.last_timestamp_ms = timestamp_ms;
        if let Some((checkpoint, note)) = checkpoint {
            self.state.last_checkpoint = Some(checkpoint);
            self.last_checkpoint_note = Some(note);
            self.last_checkpoint_ms = self.clock.now_ms();
        }
        self.publish(checkpoint_size);
        for (position, appended) in accepted {
            appends[position].outcome = Some(Ok(appended));
        }
        Ok(())
    }

    /// Signs a checkpoint of `frontier`, after proving it consistent with the
    /// previous one: the ledger never signs two inconsistent checkpoints.
    fn sign_checkpoint(&self, nodes: &dyn NodeSource, frontier: &merkle::Frontier) -> Result<(Checkpoint, String)> {
        let checkpoint = Checkpoint {
            origin: self.shared.meta.origin.clone(),
            size: frontier.size(),
            root: frontier.root(),
        };
        if let Some(previous) = &self.state.last_checkpoint {
            let proof = merkle::consistency_proof(nodes, previous.size, checkpoint.size)?;
            merkle::verify_consistency(previous.size, checkpoint.size, &proof, &previous.root, &checkpoint.root)
                .map_err(|e| Error::Integrity {
                    seq: checkpoint.size - 1,
                    check: "checkpoint_consistency".into(),
                    detail: format!(
                        "refusing to sign a checkpoint inconsistent with size {}: {e}",
                        previous.size
                    ),
                })?;
        }
        let note = checkpoint
            .sign(&self.signer)
            .map_err(|e| Error::Storage(e.to_string()))?;
        Ok((checkpoint, note))
    }

    fn publish(&self, checkpoint_size: u64) {
        let published = Published {
            size: self.state.frontier.size(),
            root: self.state.frontier.root(),
            checkpoint_size,
        };
        match self.shared.published.write() {
            Ok(mut guard) => *guard = published,
            Err(poisoned) => *poisoned.into_inner() = published,
        }
    }
}

/// Verifies all signatures, split over `threads` batch verifications.
fn verify_parallel(messages: &[Vec<u8>], signatures: &[Signature], keys: &[PublicKey], threads: usize) -> bool {
    let verify = |range: std::ops::Range<usize>| {
        let refs: Vec<&[u8]> = messages[range.clone()].iter().map(Vec::as_slice).collect();
        match refs.len() {
            0 => true,
            1 => keys[range.start].verify_raw(refs[0], &signatures[range.start]).is_ok(),
            _ => verify_batch(&refs, &signatures[range.clone()], &keys[range]).is_ok(),
        }
    };
    let n = messages.len();
    if n < PARALLEL_VERIFY_MIN || threads <= 1 {
        return verify(0..n);
    }
    // The writer thread verifies the first chunk itself and spawns helpers
    // for the rest.
    let chunk = n.div_ceil(threads);
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (chunk..n)
            .step_by(chunk)
            .map(|start| {
                let range = start..(start + chunk).min(n);
                scope.spawn(move || verify(range))
            })
            .collect();
        let own = verify(0..chunk);
        helpers.into_iter().all(|h| h.join().unwrap_or(false)) && own
    })
}
