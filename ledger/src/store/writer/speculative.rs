//! Speculative sync and its undo: a group that makes no checkpoint and
//! changes no key is synced while its signatures are being verified, with
//! an undo record in its batch; a failed signature undoes it with a second
//! synced batch (or the next writable open does, after a crash).

use rocksdb::WriteBatch;

use super::*;
use crate::store::schema::*;
use crate::store::verify::Verdict;
use crate::store::Shared;
use crate::{Error, Result};

impl Writer {
    /// Syncs `built` while the verifier threads check its signatures, with
    /// the derived-state gate held and an undo record in the batch; undoes
    /// it if a signature fails. True if every signature held and the group
    /// is committed.
    pub(super) fn write_while_verifying(
        &mut self,
        mut built: Built,
        admission: &Admission,
        verdict: Verdict,
        appends: &mut [Pending],
    ) -> Result<bool> {
        let gate = self.shared.state_gate.write().unwrap_or_else(|p| p.into_inner());
        let undo = self.undo_record(&built, admission, appends)?;
        built.batch.put_cf(
            self.shared.cf(CF_META),
            META_PENDING,
            serde_json::to_vec(&undo).expect("serialisable"),
        );
        self.sync(std::mem::take(&mut built.batch))?;
        if self
            .options
            .after_speculative_write
            .as_ref()
            .is_some_and(|hook| (hook.0)())
        {
            return Err(Error::Poisoned(
                "halted after a speculative write (test failpoint)".into(),
            ));
        }
        if !verdict.wait() {
            // The group is applied: a full disk now is no stall but a stop.
            self.sync(undo_batch(&self.shared, &undo, &self.head()))
                .map_err(|e| Error::Storage(e.to_string()))?;
            return Ok(false);
        }
        drop(gate);
        self.finish(built, appends);
        Ok(true)
    }

    /// How to undo `built`: the head and the derived state before it.
    pub(super) fn undo_record(
        &self,
        built: &Built,
        admission: &Admission,
        appends: &[Pending],
    ) -> Result<PendingGroup> {
        let cf = self.shared.cf(CF_STATE);
        let mut state = Vec::with_capacity(admission.state.len());
        for key in admission.state.keys() {
            let before = self
                .shared
                .db
                .get_cf(cf, key.as_bytes())
                .map_err(|e| Error::Storage(e.into_string()))?;
            state.push((key.clone(), before.map(hex::encode)));
        }
        Ok(PendingGroup {
            first_seq: built.first_seq,
            size: built.frontier.size(),
            last_timestamp_ms: self.state.last_timestamp_ms,
            state,
            request_signatures: appends
                .iter()
                .filter(|p| p.outcome.is_none())
                .filter_map(|p| p.authorization.as_ref())
                .map(RequestSignature::new)
                .collect(),
        })
    }
}

/// The batch that undoes a group written while its signatures were being
/// checked: its entries and Merkle nodes removed (both are keyed by seq or
/// last leaf, so two range deletions), the derived state and the head
/// before the group (`head`) put back, the pending record cleared.
pub(crate) fn undo_batch(shared: &Shared, undo: &PendingGroup, head: &Head) -> WriteBatch {
    let mut batch = WriteBatch::default();
    batch.delete_range_cf(shared.cf(CF_ENTRIES), seq_key(undo.first_seq), seq_key(undo.size));
    batch.delete_range_cf(shared.cf(CF_DISCLOSURES), seq_key(undo.first_seq), seq_key(undo.size));
    batch.delete_range_cf(shared.cf(CF_NODES), node_key(0, undo.first_seq), node_key(0, undo.size));
    for (key, before) in &undo.state {
        match before.as_deref().map(hex::decode) {
            Some(Ok(value)) => batch.put_cf(shared.cf(CF_STATE), key.as_bytes(), value),
            _ => batch.delete_cf(shared.cf(CF_STATE), key.as_bytes()),
        }
    }
    batch.put_cf(
        shared.cf(CF_META),
        META_HEAD,
        serde_json::to_vec(head).expect("serialisable"),
    );
    batch.delete_cf(shared.cf(CF_META), META_PENDING);
    batch
}
