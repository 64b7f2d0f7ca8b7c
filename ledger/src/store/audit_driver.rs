//! The audit driver: feeds every stored entry, node and checkpoint to the
//! pure [`Auditor`], checking the next chunk's signatures on threads while
//! the current one is replayed.

use super::*;

/// Entries read and checked ahead of the replay at a time.
pub(super) const AUDIT_CHUNK_ENTRIES: usize = 4096;

/// Stored entries in key order: `(seq, bytes)`, `None` for a malformed key.
pub(super) type EntryChunk = Vec<(Option<u64>, Vec<u8>)>;

pub(super) fn read_entry_chunk(entries: &mut rocksdb::DBRawIterator<'_>) -> Result<EntryChunk> {
    let mut chunk = Vec::with_capacity(AUDIT_CHUNK_ENTRIES);
    while chunk.len() < AUDIT_CHUNK_ENTRIES && entries.valid() {
        let (Some(key), Some(value)) = (entries.key(), entries.value()) else {
            break;
        };
        chunk.push((decode_seq_key(key), value.to_vec()));
        entries.next();
    }
    entries.status().map_err(storage)?;
    Ok(chunk)
}

/// The signatures of `chunk` checked on `threads` threads with `keys` (the
/// signers' keys as far as the replay knew them when the chunk was read;
/// an entry whose signer was not known yet is left to the auditor).
pub(super) fn check_chunk(
    origin: Option<&str>,
    chunk: &EntryChunk,
    keys: &[Option<PublicKey>],
    threads: usize,
) -> Vec<Option<CheckedSignature>> {
    // Before the genesis entry is replayed the origin is unknown: the
    // auditor checks those entries itself.
    let Some(origin) = origin else {
        return vec![None; chunk.len()];
    };
    let part = chunk.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunk
            .chunks(part)
            .zip(keys.chunks(part))
            .map(|(entries, keys)| {
                scope.spawn(move || {
                    entries
                        .iter()
                        .zip(keys)
                        .map(|((_, bytes), key)| key.and_then(|key| CheckedSignature::of_entry(origin, bytes, key)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // A panicked checker leaves its entries to the auditor.
        handles
            .into_iter()
            .zip(chunk.chunks(part))
            .flat_map(|(handle, entries)| handle.join().unwrap_or_else(|_| vec![None; entries.len()]))
            .collect()
    })
}

/// The keys the replay knows now for the signers of `chunk`.
pub(super) fn signer_keys(auditor: &Auditor, chunk: &EntryChunk) -> Vec<Option<PublicKey>> {
    chunk
        .iter()
        .map(|(_, bytes)| {
            Entry::decode(bytes)
                .ok()
                .and_then(|e| auditor.signer_key(&e.record.signer))
        })
        .collect()
}

/// Feeds every stored entry, node and checkpoint to an [`Auditor`]. The
/// pure auditor checks nothing in parallel; this driver checks the
/// signatures of the next chunk of entries on `threads` threads while the
/// auditor replays the current one, and hands it the verdicts.
pub(super) fn audit_driver(
    ledger: &Ledger,
    node_key: PublicKey,
    threads: usize,
    progress: &dyn Fn(u64),
) -> Result<AuditReport> {
    let shared = &ledger.shared;
    let mut auditor = Auditor::new(node_key);
    if node_key != shared.node_key {
        auditor.fail(
            0,
            "node_key",
            "the ledger records a different node key than the one trusted",
        );
    }
    let checkpoints = ledger.checkpoints()?;
    let mut next_checkpoint = checkpoints.iter().peekable();
    let mut scan = ReadOptions::default();
    scan.fill_cache(false);
    scan.set_readahead_size(4 << 20);
    let mut entries = shared.db.raw_iterator_cf_opt(shared.cf(CF_ENTRIES), scan);
    let mut node_scan = ReadOptions::default();
    node_scan.fill_cache(false);
    let mut nodes = shared.db.raw_iterator_cf_opt(shared.cf(CF_NODES), node_scan);
    let mut disclosure_scan = ReadOptions::default();
    disclosure_scan.fill_cache(false);
    let mut disclosures = shared
        .db
        .raw_iterator_cf_opt(shared.cf(CF_DISCLOSURES), disclosure_scan);
    entries.seek_to_first();
    nodes.seek_to_first();
    disclosures.seek_to_first();
    let mut chunk = read_entry_chunk(&mut entries)?;
    let mut verdicts = check_chunk(auditor.origin(), &chunk, &signer_keys(&auditor, &chunk), threads);
    'replay: while !chunk.is_empty() && !auditor.failed() {
        let next = read_entry_chunk(&mut entries)?;
        let next_keys = signer_keys(&auditor, &next);
        let origin = auditor.origin().map(str::to_owned);
        let (stopped, next_verdicts) = std::thread::scope(|scope| {
            let checking = scope.spawn(|| check_chunk(origin.as_deref(), &next, &next_keys, threads));
            let mut stopped = false;
            for ((seq, bytes), checked) in chunk.iter().zip(verdicts.iter().copied()) {
                let Some(seq) = seq else {
                    auditor.fail(auditor.size(), "entry_missing", "malformed entry key");
                    stopped = true;
                    break;
                };
                // The disclosures stored beside it, read in the same
                // forward order (a stored value that is no JSON array of
                // strings is one unreadable disclosure: rule `disclosure`).
                let mut disclosed = Vec::new();
                let here = schema::seq_key(*seq);
                // A key that is no seq, or a seq passed: stored for no entry.
                if let Some(stray) = disclosures
                    .key()
                    .filter(|key| disclosures.valid() && (key.len() != here.len() || *key < &here[..]))
                {
                    auditor.fail(
                        *seq,
                        "disclosure",
                        format!(
                            "disclosures are stored under the key {}, which is no entry's seq",
                            hex::encode(stray)
                        ),
                    );
                    stopped = true;
                    break;
                }
                if disclosures.valid() && disclosures.key() == Some(&here[..]) {
                    let value = disclosures.value().unwrap_or_default();
                    disclosed = serde_json::from_slice(value)
                        .unwrap_or_else(|_| vec![String::from_utf8_lossy(value).into_owned()]);
                    disclosures.next();
                }
                let Some(completed) = auditor.push_checked_entry(*seq, bytes, disclosed, checked) else {
                    stopped = true;
                    break;
                };
                for node in &completed {
                    let expected_key = schema::node_key(node.0, node.1);
                    let stored = (nodes.valid() && nodes.key() == Some(&expected_key[..]))
                        .then(|| nodes.value().and_then(|v| <Hash>::try_from(v).ok()))
                        .flatten();
                    auditor.check_stored_node(node, stored.as_ref());
                    if nodes.valid() && nodes.key() == Some(&expected_key[..]) {
                        nodes.next();
                    }
                }
                while let Some((size, note)) = next_checkpoint.peek() {
                    if *size > auditor.size() {
                        break;
                    }
                    if *size < auditor.size() {
                        auditor.fail(
                            size.saturating_sub(1),
                            "checkpoint_size",
                            format!("checkpoint key {size} is out of order"),
                        );
                    } else {
                        let proofs = |m, n| merkle::consistency_proof(&SharedNodes(shared), m, n);
                        auditor.check_checkpoint(note, Some(&proofs));
                    }
                    next_checkpoint.next();
                }
                if auditor.size().is_multiple_of(4096) {
                    progress(auditor.size());
                }
                if auditor.failed() {
                    stopped = true;
                    break;
                }
            }
            (stopped, checking.join().unwrap_or_else(|_| vec![None; next.len()]))
        });
        if stopped {
            break 'replay;
        }
        chunk = next;
        verdicts = next_verdicts;
    }
    disclosures.status().map_err(storage)?;
    // Disclosures of no entry (an open writer may be adding some now).
    if !auditor.failed() && ledger.writer.is_none() && disclosures.valid() {
        let stray = disclosures.key().and_then(decode_seq_key);
        auditor.fail(
            auditor.size(),
            "disclosure",
            format!("disclosures are stored for entry {stray:?}, which the ledger does not hold"),
        );
    }
    if !auditor.failed() {
        let mut end = stored_end(shared, next_checkpoint.next().map(|(size, _)| *size), nodes.valid())?;
        // An open writer's undo record is its own business; a folder at
        // rest has none after a clean close.
        if ledger.writer.is_some() {
            end.pending = None;
        }
        auditor.check_end(&end);
    }
    if !auditor.failed() {
        auditor.check_stored_facts(&shared.meta.origin, &shared.node_key);
        auditor.compare_table(DerivedTable::Keys, stored_table(shared, CF_KEYS)?);
        auditor.compare_table(DerivedTable::State, stored_table(shared, CF_STATE)?);
    }
    progress(auditor.size());
    Ok(auditor.finish())
}

/// Every key and value of a column family, in key order.
pub(super) fn stored_table(shared: &Shared, cf: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    shared
        .db
        .iterator_cf(shared.cf(cf), IteratorMode::Start)
        .map(|item| item.map(|(k, v)| (k.into_vec(), v.into_vec())).map_err(storage))
        .collect()
}

/// What the store says of the ledger's end, for [`Auditor::check_end`].
pub(super) fn stored_end(shared: &Shared, leftover_checkpoint: Option<u64>, leftover_node: bool) -> Result<StoredEnd> {
    let head: Option<Head> = read_json(&shared.db, shared.cf(CF_META), META_HEAD, "head")?;
    let pending = shared
        .db
        .get_cf(shared.cf(CF_META), META_PENDING)
        .map_err(storage)?
        .map(|bytes| match serde_json::from_slice::<PendingGroup>(&bytes) {
            Ok(group) => format!("entries {} to {}", group.first_seq, group.size.saturating_sub(1)),
            Err(_) => "an unreadable pending record".to_owned(),
        });
    Ok(StoredEnd {
        head: head.map(|head| StoredHead {
            size: head.size,
            last_hash: head.last_hash(),
            root: head.root(),
            last_timestamp_ms: head.last_timestamp_ms,
            checkpoint_size: head.checkpoint_size,
        }),
        leftover_checkpoint,
        leftover_node,
        pending,
    })
}
