//! The node's latest signed checkpoint, kept beside the database in a small
//! file of its own (`checkpoint.latest`, docs/FORMAT.md §8c) that a lost or
//! damaged RocksDB write-ahead log cannot take with it.
//!
//! The writer replaces it, synced, after every group that signs a
//! checkpoint. Opening a ledger for writing checks the ledger against it:
//! a ledger shorter than the checkpoint the node signed, or with another
//! root at that size, lost acknowledged entries or was rewritten, and is
//! opened refusing writes; the node then never signs a checkpoint
//! inconsistent with one it signed before. `verify` checks it too.

use std::fs;
use std::path::{Path, PathBuf};

use caseledger_keys::{note, PublicKey};
use caseledger_verify::checkpoint::Checkpoint;
use caseledger_verify::merkle::{Frontier, NodeSource};

use crate::{Error, Result};

/// File name of the latest signed checkpoint, in the ledger folder.
pub const LATEST_CHECKPOINT_FILE: &str = "checkpoint.latest";

/// Where the latest signed checkpoint of the ledger in `folder` is kept.
pub fn path_in(folder: &Path) -> PathBuf {
    folder.join(LATEST_CHECKPOINT_FILE)
}

/// The second copy of the kept checkpoint beside a node key file kept
/// outside the ledger folder `folder` (`<node key file>.checkpoint`): whoever
/// holds only the ledger folder (a database copy, a backup) cannot roll
/// both back. `None` when the node key lives in the folder.
pub fn copy_beside(node_key: &Path, folder: &Path) -> Option<PathBuf> {
    let key_folder = node_key.parent()?;
    let same = match (key_folder.canonicalize(), folder.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => key_folder == folder,
    };
    if same {
        return None;
    }
    let mut name = node_key.file_name()?.to_os_string();
    name.push(".checkpoint");
    Some(node_key.with_file_name(name))
}

/// Replaces the file at `path` with `note`, durably
/// ([`super::storage::replace_file`]).
pub fn write(path: &Path, note: &str) -> Result<()> {
    write_through(&super::storage::RocksStorage, path, note)
}

/// [`write`] through the writer's seam to the disk. A full disk is
/// [`Error::OutOfSpace`].
pub(super) fn write_through(storage: &dyn super::storage::Storage, path: &Path, note: &str) -> Result<()> {
    storage.replace_file(path, note.as_bytes()).map_err(|e| match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            Error::OutOfSpace(format!("writing {}: {e}", path.display()))
        }
        _ => Error::Storage(format!("writing {}: {e}", path.display())),
    })
}

/// The checkpoint kept at `path`, if there is one, verified with the node
/// key under `origin`. An unreadable or badly signed file is an integrity
/// failure (check `checkpoint_signature`): someone changed it.
pub fn read(path: &Path, origin: &str, node_key: PublicKey) -> Result<Option<(Checkpoint, String)>> {
    let bad = |detail: String| Error::Integrity {
        seq: 0,
        check: "checkpoint_signature".into(),
        detail: format!("{}: {detail}", path.display()),
    };
    let text = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(format!("unreadable: {e}"))),
    };
    let text = String::from_utf8(text).map_err(|_| bad("not UTF-8".into()))?;
    let verifier = note::Verifier::new(origin, node_key)?;
    let checkpoint = Checkpoint::open(&text, &verifier).map_err(|e| bad(e.to_string()))?;
    Ok(Some((checkpoint, text)))
}

/// Checks a ledger of `size` entries (its perfect subtrees in `nodes`)
/// against a checkpoint the node signed: it holds at least that many
/// entries (else `checkpoint_lost`, at the first lost seq) and has the
/// checkpoint's root at that size (else `checkpoint_root`).
pub fn check(nodes: &dyn NodeSource, size: u64, checkpoint: &Checkpoint) -> Result<()> {
    if checkpoint.size > size {
        return Err(Error::Integrity {
            seq: size,
            check: "checkpoint_lost".into(),
            detail: format!(
                "the node signed a checkpoint of {} entries, the ledger holds {size}: acknowledged entries \
                 {size} to {} are lost (a damaged or deleted write-ahead log, or an old backup)",
                checkpoint.size,
                checkpoint.size - 1
            ),
        });
    }
    if checkpoint.size == 0 {
        return Ok(());
    }
    let root = Frontier::load(nodes, checkpoint.size)?.root();
    if root != checkpoint.root {
        return Err(Error::Integrity {
            seq: checkpoint.size - 1,
            check: "checkpoint_root".into(),
            detail: format!(
                "the ledger's first {} entries are not those of the checkpoint the node signed",
                checkpoint.size
            ),
        });
    }
    Ok(())
}
