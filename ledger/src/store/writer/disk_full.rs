//! A full disk: the writer stalls instead of stopping (nothing of the
//! refused write was applied), keeps a reserve of free space so that
//! RocksDB never meets a full disk in the middle of a log record, and
//! resumes by itself once there is room again.

use rocksdb::WriteBatch;

use super::*;
use crate::store::schema::*;
use crate::{Error, Result};

/// How often a writer stalled by a full disk tries again without being asked.
pub(super) const STALL_RETRY_MS: u64 = 1000;

impl Writer {
    /// Waits for space after a synced write failed for want of it. Nothing
    /// of that write was applied (RocksDB applies a batch only after its
    /// log record is written and synced) and the writer's state is still
    /// what is stored; RocksDB, in its error state until then, recovers by
    /// itself once there is room (its `SstFileManager` polls the free space
    /// every five seconds), and [`Writer::resume`] finds out.
    pub(super) fn stall(&mut self, reason: String) {
        if self.stalled.is_none() {
            tracing::error!(%reason, "the disk is full: writes wait until space is freed");
        }
        *lock(&self.shared.stalled) = Some(reason.clone());
        self.stalled = Some(reason);
    }

    /// [`Error::OutOfSpace`] when the ledger's file system has less free
    /// space than the reserve ([`crate::store::storage::space_left`]).
    pub(super) fn space_left(&self) -> Result<()> {
        self.shared.space_left(self.options.free_space_min_bytes)
    }

    /// After a stall: whether writes go through again. A synced empty
    /// batch tells whether RocksDB accepts writes; before the writer goes
    /// on, the stored head must still be its own (else it stops: what
    /// reached the disk is not what it knows).
    pub(super) fn resume(&mut self) -> bool {
        let Some(reason) = self.stalled.clone() else {
            return true;
        };
        if let Err(Error::OutOfSpace(now)) = self.space_left() {
            self.stall(now);
            return false;
        }
        if let Some(note) = self.unkept.clone() {
            match self.keep_checkpoint(&note) {
                Ok(()) => self.unkept = None,
                Err(Error::OutOfSpace(now)) => {
                    self.stall(now);
                    return false;
                }
                Err(e) => {
                    self.poison(format!(
                        "after a full disk ({reason}), keeping the checkpoint failed: {e}"
                    ));
                    return false;
                }
            }
        }
        match self.sync(WriteBatch::default()) {
            Ok(()) => {}
            Err(Error::OutOfSpace(now)) => {
                self.stall(now);
                return false;
            }
            Err(e) => {
                self.poison(format!("after a full disk ({reason}), storage failed: {e}"));
                return false;
            }
        }
        let stored: Result<Option<Head>> =
            crate::store::read_json(&self.shared.db, self.shared.cf(CF_META), META_HEAD, "head");
        match stored {
            Ok(Some(head)) if head == self.head() => {
                tracing::warn!("space was freed: writes resume");
                *lock(&self.shared.stalled) = None;
                self.stalled = None;
                true
            }
            other => {
                self.poison(format!(
                    "after a full disk, the stored head is not the writer's ({}); writes refused until the ledger is reopened",
                    match other {
                        Ok(Some(head)) => format!("stored size {}", head.size),
                        Ok(None) => "no stored head".to_owned(),
                        Err(e) => e.to_string(),
                    }
                ));
                false
            }
        }
    }
}
