//! The writer's narrow seam to the disk: the synced batches it writes, the
//! entries and Merkle nodes it and the readers rely on, and the kept
//! checkpoint file. [`RocksStorage`] is the real thing; tests put a
//! [`Storage`] in [`super::Options::storage`] that injects faults from a
//! seed (a refused write for want of space, a failed sync after the batch
//! was applied, a crash before or after a write, a failed read), so that a
//! fault found once replays.
//!
//! Everything else the store does (opening and recovery, the audit, the
//! private tables, the state seal) goes to RocksDB directly.

use std::path::Path;

use rocksdb::{ColumnFamily, WriteBatch, WriteOptions, DB};

/// What the writer does to the disk. Errors are RocksDB's (or the file
/// system's) words: a full disk says "No space left" (the writer then
/// stalls rather than stops).
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Writes `batch` atomically and syncs the write-ahead log; `Ok` only
    /// once it is durable.
    fn write_synced(&self, db: &DB, batch: WriteBatch) -> Result<(), String>;

    /// Reads one value of an entry or a Merkle node.
    fn get(&self, db: &DB, cf: &ColumnFamily, key: &[u8]) -> Result<Option<Vec<u8>>, String>;

    /// Replaces the small file at `path` with `bytes`, durably.
    fn replace_file(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()>;
}

/// RocksDB and the file system, as they are.
#[derive(Debug)]
pub struct RocksStorage;

impl Storage for RocksStorage {
    fn write_synced(&self, db: &DB, batch: WriteBatch) -> Result<(), String> {
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        db.write_opt(batch, &sync).map_err(rocksdb::Error::into_string)
    }

    fn get(&self, db: &DB, cf: &ColumnFamily, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        db.get_cf(cf, key).map_err(rocksdb::Error::into_string)
    }

    fn replace_file(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        replace_file(path, bytes)
    }
}

/// [`crate::Error::OutOfSpace`] when the file system of `path` has less
/// than `reserve` bytes free (0: no reserve). If the free space cannot be
/// read, the write itself finds out.
pub fn space_left(path: &Path, reserve: u64) -> crate::Result<()> {
    if reserve == 0 {
        return Ok(());
    }
    let Ok(stat) = rustix::fs::statvfs(path) else {
        return Ok(());
    };
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free < reserve {
        return Err(crate::Error::OutOfSpace(format!(
            "{free} bytes free on the ledger's file system, below the {reserve} kept in reserve"
        )));
    }
    Ok(())
}

/// Whether a storage error's words say the disk (or the quota) is full.
pub fn is_out_of_space(text: &str) -> bool {
    text.contains("No space left") || text.contains("Space limit") || text.contains("quota exceeded")
}

/// Replaces the file at `path` with `bytes`, durably: a synced temporary
/// file renamed over it, then the folder synced.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let temporary = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    if let Some(folder) = path.parent() {
        std::fs::File::open(folder)?.sync_all()?;
    }
    Ok(())
}
