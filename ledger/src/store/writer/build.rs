//! Building a group: its entries, Merkle nodes, derived state, head and
//! (when due) signed checkpoint as one batch, not yet written; and
//! publishing what a written group changed.

use std::collections::HashMap;

use rocksdb::WriteBatch;

use super::*;
use crate::store::schema::*;
use crate::store::{read_node, Appended, CheckpointThreads, Published, Shared};
use crate::{Error, Result};
use caseledger_verify::checkpoint::Checkpoint;
use caseledger_verify::entry::Entry;
use caseledger_verify::hash::Hash;
use caseledger_verify::merkle::{self, NodeSource};
use caseledger_verify::thread_map::ThreadMap;

/// Nodes written by the current group, in front of the stored ones.
pub(super) struct NodeOverlay<'a> {
    pending: &'a HashMap<(u32, u64), Hash>,
    shared: &'a Shared,
}

impl NodeSource for NodeOverlay<'_> {
    fn perfect_node(&self, level: u32, index: u64) -> caseledger_verify::Result<Hash> {
        match self.pending.get(&(level, index)) {
            Some(hash) => Ok(*hash),
            None => Ok(read_node(self.shared, level, index)?),
        }
    }
}

impl Writer {
    /// The head as stored now.
    pub(super) fn head(&self) -> Head {
        let covered = self.state.last_checkpoint.as_ref().map_or(0, |c| c.size);
        Head::new(
            &self.state.frontier,
            &self.state.last_hash,
            self.state.last_timestamp_ms,
            covered,
        )
    }

    /// Builds the batch of the admitted records (and of a checkpoint if
    /// due), without writing it. `None` if there is nothing to write.
    pub(super) fn build(
        &self,
        appends: &[Pending],
        admission: &Admission,
        timestamp_ms: u64,
        force_checkpoint: bool,
    ) -> Result<Option<Built>> {
        let shared = &self.shared;
        let mut batch = WriteBatch::default();
        let mut frontier = self.state.frontier.clone();
        let first_seq = frontier.size();
        let mut last_hash = self.state.last_hash;
        let mut pending_nodes = HashMap::new();
        let mut accepted = Vec::new();
        for (position, pending) in appends.iter().enumerate() {
            if pending.outcome.is_some() {
                continue;
            }
            let request_first = frontier.size();
            let mut seqs = Vec::with_capacity(pending.records.len());
            for (record, duplicate) in pending.records.iter().zip(&pending.duplicates) {
                if let Some(original) = duplicate {
                    seqs.push(*original);
                    continue;
                }
                seqs.push(frontier.size());
                let entry = Entry {
                    seq: frontier.size(),
                    timestamp_ms,
                    prev_hash: last_hash,
                    record: record.clone(),
                };
                let bytes = entry.encode();
                last_hash = Entry::hash_of(&bytes);
                batch.put_cf(shared.cf(CF_ENTRIES), seq_key(entry.seq), &bytes);
                if !record.disclosures.is_empty() {
                    batch.put_cf(
                        shared.cf(CF_DISCLOSURES),
                        seq_key(entry.seq),
                        serde_json::to_vec(&record.disclosures).expect("strings serialise"),
                    );
                }
                for (level, index, hash) in frontier.push(last_hash) {
                    batch.put_cf(shared.cf(CF_NODES), node_key(level, index), hash);
                    pending_nodes.insert((level, index), hash);
                }
            }
            let count = frontier.size() - request_first;
            let request_first = if count == 0 {
                seqs.first().copied().unwrap_or(request_first)
            } else {
                request_first
            };
            accepted.push((
                position,
                Appended {
                    first_seq: request_first,
                    count,
                    seqs,
                },
            ));
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
        let mut threads = self.state.threads.clone();
        caseledger_verify::threads::apply_changes(&mut threads, &admission.state).map_err(|e| Error::Integrity {
            seq: frontier.size().saturating_sub(1),
            check: "threads".into(),
            detail: e,
        })?;
        let covered = self.state.last_checkpoint.as_ref().map_or(0, |c| c.size);
        let uncovered = frontier.size() - covered;
        let checkpoint = if uncovered > 0 && (force_checkpoint || uncovered >= self.options.checkpoint_every_entries) {
            let overlay = NodeOverlay {
                pending: &pending_nodes,
                shared,
            };
            let (checkpoint, note) = self.sign_checkpoint(&overlay, &frontier, &threads)?;
            batch.put_cf(shared.cf(CF_CHECKPOINTS), seq_key(checkpoint.size), note.as_bytes());
            Some((checkpoint, note))
        } else {
            None
        };
        if accepted.is_empty() && checkpoint.is_none() {
            return Ok(None);
        }
        let checkpoint_size = checkpoint.as_ref().map_or(covered, |(c, _)| c.size);
        // The head's timestamp is the last entry's: a group that adds no
        // entry (a checkpoint alone, retries) leaves it, so the auditor can
        // hold the head to the entries.
        let timestamp_ms = if frontier.size() > first_seq {
            timestamp_ms
        } else {
            self.state.last_timestamp_ms
        };
        let head = Head::new(&frontier, &last_hash, timestamp_ms, checkpoint_size);
        batch.put_cf(
            shared.cf(CF_META),
            META_HEAD,
            serde_json::to_vec(&head).expect("serialisable"),
        );
        Ok(Some(Built {
            batch,
            first_seq,
            frontier,
            last_hash,
            timestamp_ms,
            checkpoint,
            checkpoint_size,
            accepted,
            threads,
        }))
    }

    /// After the batch is durable and every signature verified: the state
    /// moves on, readers see the new size and callers hear about it.
    pub(super) fn finish(&mut self, built: Built, appends: &mut [Pending]) {
        self.state.frontier = built.frontier;
        self.state.last_hash = built.last_hash;
        self.state.last_timestamp_ms = built.timestamp_ms;
        self.state.threads = built.threads;
        if let Some((checkpoint, note)) = built.checkpoint {
            self.shared.publish_checkpoint_threads(CheckpointThreads {
                size: checkpoint.size,
                note: note.clone(),
                map: self.state.threads.clone(),
            });
            self.state.last_checkpoint = Some(checkpoint);
            self.last_checkpoint_note = Some(note);
            self.last_checkpoint_ms = self.clock.now_ms();
        }
        self.publish(built.checkpoint_size);
        for (position, appended) in built.accepted {
            appends[position].outcome = Some(Ok(appended));
        }
    }

    /// Signs a checkpoint of `frontier`, after proving it consistent with the
    /// previous one: the ledger never signs two inconsistent checkpoints.
    pub(super) fn sign_checkpoint(
        &self,
        nodes: &dyn NodeSource,
        frontier: &merkle::Frontier,
        threads: &ThreadMap,
    ) -> Result<(Checkpoint, String)> {
        let checkpoint = Checkpoint {
            origin: self.shared.meta.origin.clone(),
            size: frontier.size(),
            root: frontier.root(),
            threads: threads.root(),
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

    pub(super) fn publish(&self, checkpoint_size: u64) {
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

/// A group's batch, built but not yet written, and the state it leads to.
pub(super) struct Built {
    pub(super) batch: WriteBatch,
    pub(super) first_seq: u64,
    pub(super) frontier: merkle::Frontier,
    pub(super) last_hash: Hash,
    pub(super) timestamp_ms: u64,
    pub(super) checkpoint: Option<(Checkpoint, String)>,
    pub(super) checkpoint_size: u64,
    /// (position in the group, result) of every request going ahead.
    pub(super) accepted: Vec<(usize, Appended)>,
    /// The thread map after the group.
    pub(super) threads: ThreadMap,
}
