//! Opening and recovery: what a writable open checks and settles before
//! the writer starts (docs/FORMAT.md §8, §8c, §8d): a group a crash left
//! pending, the head against the stored entries, nodes and checkpoints,
//! the checkpoint kept beside the database, and the derived tables against
//! the node's seal or a replay.

use super::*;

/// The last stored entry key below `bound`, if any.
pub(super) fn last_entry_below(shared: &Shared, bound: u64) -> Result<Option<u64>> {
    let mut iter = shared.db.raw_iterator_cf(shared.cf(CF_ENTRIES));
    if bound == 0 {
        return Ok(None);
    }
    iter.seek_for_prev(seq_key(bound - 1));
    iter.status().map_err(storage)?;
    Ok(if iter.valid() {
        iter.key().and_then(decode_seq_key)
    } else {
        None
    })
}

/// Settles a group the writer synced but whose signatures it had not
/// finished checking when the process stopped: keeps it if every signature
/// holds, undoes it otherwise (none of it was acknowledged or shown).
pub(super) fn settle_pending_group(shared: &Shared) -> Result<()> {
    let meta_cf = shared.cf(CF_META);
    let Some(pending) = read_json::<PendingGroup>(&shared.db, meta_cf, META_PENDING, "pending group")? else {
        return Ok(());
    };
    let head: Head = read_json(&shared.db, meta_cf, META_HEAD, "head")?
        .ok_or_else(|| integrity(0, "head", "the head record is missing"))?;
    // A checkpoint is never made while a group is pending (a checkpoint's
    // group clears the record): entries a checkpoint covers were
    // acknowledged, and nothing acknowledged is undone.
    if pending.first_seq < head.checkpoint_size {
        return Err(integrity(
            pending.first_seq,
            "pending_group",
            format!(
                "the pending group {}..{} is covered by the checkpoint of size {}; it is not undone",
                pending.first_seq, pending.size, head.checkpoint_size
            ),
        ));
    }
    if pending.size != head.size || pending.first_seq >= pending.size || pending.first_seq == 0 {
        return Err(integrity(
            pending.first_seq,
            "pending_group",
            format!(
                "the pending group {}..{} does not end at the head ({} entries)",
                pending.first_seq, pending.size, head.size
            ),
        ));
    }
    let registry = load_registry(shared)?;
    let mut valid = pending.request_signatures.iter().all(|s| s.holds(&registry));
    let checked = if valid { pending.first_seq..pending.size } else { 0..0 };
    for seq in checked {
        let entry = shared
            .db
            .get_cf(shared.cf(CF_ENTRIES), seq_key(seq))
            .map_err(storage)?
            .and_then(|bytes| Entry::decode(&bytes).ok());
        let signed = entry.and_then(|e| {
            let key = registry.public_key(&e.record.signer)?;
            Some(e.record.verify(&shared.meta.origin, &key).is_ok())
        });
        if signed != Some(true) {
            valid = false;
            break;
        }
    }
    let batch = if valid {
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_cf(meta_cf, META_PENDING);
        batch
    } else {
        writer::undo_batch(shared, &pending, &head_before(shared, &pending, &head)?)
    };
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    shared.db.write_opt(batch, &sync).map_err(storage)
}

/// The head as it was before `pending`, rebuilt from storage.
pub(super) fn head_before(shared: &Shared, pending: &PendingGroup, head: &Head) -> Result<Head> {
    let seq = pending.first_seq - 1;
    let bytes = shared
        .db
        .get_cf(shared.cf(CF_ENTRIES), seq_key(seq))
        .map_err(storage)?
        .ok_or_else(|| integrity(seq, "entry_missing", "the entry before the pending group is missing"))?;
    let frontier = Frontier::load(&SharedNodes(shared), pending.first_seq)?;
    Ok(Head::new(
        &frontier,
        &Entry::hash_of(&bytes),
        pending.last_timestamp_ms,
        head.checkpoint_size,
    ))
}

/// Before the node acts on the derived tables (`keys`, `state`), they are
/// checked (docs/FORMAT.md §8d): against the node's seal of its clean close
/// if it sealed this size, else against a replay of the whole chain. The
/// seal is then removed, so a later unclean stop leaves none.
pub(super) fn check_derived_tables(shared: &Arc<Shared>, node: &Identity, size: u64, options: &Options) -> Result<()> {
    let meta = shared.cf(CF_META);
    let seal: Option<state_seal::StateSeal> = read_json(&shared.db, meta, META_STATE_SEAL, "state seal")?;
    match &seal {
        Some(seal) if seal.size == size => {
            if state_seal::mac(&shared.db, node, size)? != seal.mac {
                return Err(integrity(
                    size.saturating_sub(1),
                    "state_seal",
                    "the derived tables (keys, state) are not those the node sealed at its clean close",
                ));
            }
        }
        _ if size == 0 => {}
        _ => {
            let replayed = Ledger {
                shared: Arc::clone(shared),
                mode: Mode::ReadOnly,
                writer: None,
                node: None,
            };
            let report = audit_driver(&replayed, shared.node_key, options.verify_threads.max(1), &|_| {})?;
            if let Some(error) = report.first_error {
                return Err(integrity(error.seq, &error.check, error.detail));
            }
            // Tables that differ from the replay, or a record no writer
            // admitted (written behind the node's back): the node neither
            // acts on it nor vouches for it with a checkpoint. (Entries a
            // crash left without a checkpoint are not a finding here.)
            let found = report.violations.iter().find(|v| v.rule != "uncheckpointed");
            if let Some(v) = found {
                return Err(integrity(v.seq, &v.rule, v.detail.clone()));
            }
        }
    }
    if seal.is_some() {
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        shared.db.delete_cf_opt(meta, META_STATE_SEAL, &sync).map_err(storage)?;
    }
    Ok(())
}

/// The writer's starting state, checked against storage on open.
pub(crate) struct WriterState {
    pub registry: Registry,
    pub frontier: Frontier,
    pub last_hash: Hash,
    pub last_timestamp_ms: u64,
    pub last_checkpoint: Option<Checkpoint>,
    /// The thread map of the stored derived state (set by
    /// [`with_thread_map`] once the tables are checked).
    pub threads: ThreadMap,
}

/// Builds the thread map from the checked derived state. If the newest
/// checkpoint covers every entry, its thread-map root must be the map's,
/// and it becomes the checkpoint bundles prove against.
pub(super) fn with_thread_map(shared: &Shared, mut state: WriterState) -> Result<WriterState> {
    let mut heads = Vec::new();
    let prefix = caseledger_verify::threads::HEAD_PREFIX;
    let mode = IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward);
    for item in shared.db.iterator_cf(shared.cf(CF_STATE), mode) {
        let (key, value) = item.map_err(storage)?;
        if !key.starts_with(prefix.as_bytes()) {
            break;
        }
        heads.push((String::from_utf8_lossy(&key).into_owned(), value.into_vec()));
    }
    let size = state.frontier.size();
    state.threads =
        caseledger_verify::threads::map_of(heads).map_err(|e| integrity(size.saturating_sub(1), "threads", e))?;
    if let Some(checkpoint) = state.last_checkpoint.as_ref().filter(|c| c.size == size) {
        if checkpoint.threads != state.threads.root() {
            return Err(integrity(
                size - 1,
                "checkpoint_threads",
                "the newest checkpoint's thread-map root is not the stored threads'",
            ));
        }
        let note = read_checkpoint_note(shared, size)?;
        shared.publish_checkpoint_threads(CheckpointThreads {
            size,
            note,
            map: state.threads.clone(),
        });
    }
    Ok(state)
}

fn read_checkpoint_note(shared: &Shared, size: u64) -> Result<String> {
    let bytes = shared
        .db
        .get_cf(shared.cf(CF_CHECKPOINTS), seq_key(size))
        .map_err(storage)?
        .ok_or_else(|| {
            integrity(
                size.saturating_sub(1),
                "checkpoint_missing",
                "the newest checkpoint is not stored",
            )
        })?;
    String::from_utf8(bytes).map_err(|_| {
        integrity(
            size.saturating_sub(1),
            "checkpoint_signature",
            "checkpoint is not UTF-8",
        )
    })
}

/// Cheap integrity checks on open: O(log n) reads, no replay.
pub(super) fn check_on_open(shared: &Shared) -> Result<WriterState> {
    let meta_cf = shared.cf(CF_META);
    let head: Head = read_json(&shared.db, meta_cf, META_HEAD, "head")?
        .ok_or_else(|| integrity(0, "head", "the head record is missing"))?;
    let size = head.size;
    let last_seq = size.saturating_sub(1);
    // Nothing may be stored beyond the head.
    if let Some(beyond) = last_entry_below(shared, u64::MAX)? {
        if beyond >= size {
            return Err(integrity(
                size,
                "extra_entry",
                format!("entry {beyond} is stored beyond the head ({size} entries)"),
            ));
        }
    }
    let mut last_hash = [0; 32];
    if size > 0 {
        let last = last_entry_below(shared, size)?;
        if last != Some(size - 1) {
            let first_missing = last.map_or(0, |s| s + 1);
            return Err(integrity(
                first_missing,
                "entry_missing",
                format!("the head says {size} entries but entry {first_missing} onwards is missing"),
            ));
        }
        let bytes = shared
            .db
            .get_cf(shared.cf(CF_ENTRIES), seq_key(size - 1))
            .map_err(storage)?
            .ok_or_else(|| integrity(last_seq, "entry_missing", "last entry vanished"))?;
        last_hash = Entry::hash_of(&bytes);
        if Some(last_hash) != head.last_hash() {
            return Err(integrity(last_seq, "head", "the last entry's hash is not the head's"));
        }
    }
    let frontier = head
        .frontier()
        .ok_or_else(|| integrity(last_seq, "head", "the stored frontier is malformed"))?;
    if Some(frontier.root()) != head.root() {
        return Err(integrity(
            last_seq,
            "head",
            "the head's root does not match its frontier",
        ));
    }
    let stored_frontier = Frontier::load(&SharedNodes(shared), size)?;
    if stored_frontier != frontier {
        return Err(integrity(
            last_seq,
            "merkle_node",
            "stored Merkle nodes do not match the head",
        ));
    }
    let mut last_checkpoint = check_last_checkpoint(shared, &head)?;
    // The checkpoint the node last signed, kept beside the database: the
    // ledger must still hold it (a lost write-ahead log would have taken
    // the database's own copy with the entries).
    let had_checkpoint = last_checkpoint.is_some();
    let kept = std::iter::once(signed_checkpoint::path_in(&shared.path)).chain(shared.kept_copy.clone());
    for path in kept {
        match signed_checkpoint::read(&path, &shared.meta.origin, shared.node_key)? {
            Some((checkpoint, _)) => {
                signed_checkpoint::check(&SharedNodes(shared), size, &checkpoint)?;
                if last_checkpoint.as_ref().is_none_or(|c| c.size < checkpoint.size) {
                    last_checkpoint = Some(checkpoint);
                }
            }
            // Written with the genesis checkpoint and never removed: gone,
            // it was taken (with the entries it would have shown lost).
            None if had_checkpoint => {
                return Err(integrity(
                    0,
                    "checkpoint_missing",
                    format!(
                        "{} is missing although the ledger holds signed checkpoints",
                        path.display()
                    ),
                ))
            }
            None => {}
        }
    }
    // Before genesis the registry is empty and waits for the genesis entry.
    let registry = if size == 0 {
        Registry::new(shared.node_key)
    } else {
        load_registry(shared)?
    };
    Ok(WriterState {
        registry,
        frontier,
        last_hash,
        last_timestamp_ms: head.last_timestamp_ms,
        last_checkpoint,
        threads: ThreadMap::new(),
    })
}

pub(super) fn check_last_checkpoint(shared: &Shared, head: &Head) -> Result<Option<Checkpoint>> {
    let mut iter = shared.db.raw_iterator_cf(shared.cf(CF_CHECKPOINTS));
    iter.seek_to_last();
    iter.status().map_err(storage)?;
    if !iter.valid() {
        if head.checkpoint_size != 0 {
            return Err(integrity(
                head.checkpoint_size - 1,
                "checkpoint_missing",
                "the head names a checkpoint that is not stored",
            ));
        }
        return Ok(None);
    }
    let size = iter
        .key()
        .and_then(decode_seq_key)
        .ok_or_else(|| Error::Storage("bad checkpoint key".into()))?;
    let seq = size.saturating_sub(1);
    if size != head.checkpoint_size {
        return Err(integrity(
            seq,
            "checkpoint_missing",
            format!(
                "newest checkpoint has size {size}, the head says {}",
                head.checkpoint_size
            ),
        ));
    }
    if size > head.size {
        return Err(integrity(
            head.size,
            "entry_missing",
            format!("a checkpoint covers {size} entries but the head has {}", head.size),
        ));
    }
    let note = std::str::from_utf8(iter.value().unwrap_or_default())
        .map_err(|_| integrity(seq, "checkpoint_signature", "checkpoint is not UTF-8"))?;
    let verifier = note::Verifier::new(&shared.meta.origin, shared.node_key)?;
    let checkpoint =
        Checkpoint::open(note, &verifier).map_err(|e| integrity(seq, "checkpoint_signature", e.to_string()))?;
    if checkpoint.size != size || checkpoint.root != merkle::root_at(&SharedNodes(shared), size)? {
        return Err(integrity(
            seq,
            "checkpoint_root",
            format!("checkpoint of size {size} does not match the stored tree"),
        ));
    }
    Ok(Some(checkpoint))
}
