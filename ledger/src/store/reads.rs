//! Reads of entries, checkpoints and proofs: every byte as stored, with
//! the checks that keep a changed entry from being served as genuine.

use super::*;

impl Ledger {
    /// The stored bytes of entry `seq`.
    pub fn entry_bytes(&self, seq: u64) -> Result<Vec<u8>> {
        if seq >= self.size() {
            return Err(Error::NotFound(format!(
                "entry {seq} (the ledger has {} entries)",
                self.size()
            )));
        }
        self.shared
            .storage
            .get(&self.shared.db, self.shared.cf(CF_ENTRIES), &seq_key(seq))
            .map_err(Error::Storage)?
            .ok_or_else(|| Error::Integrity {
                seq,
                check: "entry_missing".into(),
                detail: "entry is below the head but not stored".into(),
            })
    }

    /// The stored bytes of entry `seq`, checked against the Merkle tree the
    /// node built as it wrote (its inclusion proof leads to the current
    /// root): an entry changed behind the node's back is never served as
    /// genuine. A failure is an integrity failure (`leaf_hash`) that also
    /// stops every later write ([`Ledger::fail`]).
    pub fn verified_entry_bytes(&self, seq: u64) -> Result<Vec<u8>> {
        let published = self.published();
        if seq >= published.size {
            return Err(Error::NotFound(format!(
                "entry {seq} (the ledger has {} entries)",
                published.size
            )));
        }
        let bytes = self.entry_bytes(seq)?;
        let proof = merkle::inclusion_proof(self, seq, published.size)?;
        let leaf = caseledger_verify::hash::leaf_hash(&bytes);
        if let Err(e) = merkle::verify_inclusion(&leaf, seq, published.size, &proof, &published.root) {
            let detail = format!("the stored entry is not the one the node wrote: {e}");
            self.fail(&format!("integrity failure at seq {seq}: leaf_hash: {detail}"));
            return Err(integrity(seq, "leaf_hash", detail));
        }
        Ok(bytes)
    }

    /// Stops every later write with `reason` (an integrity failure found
    /// while serving); `/readyz` then answers 503 with it. The first
    /// reason stays.
    pub fn fail(&self, reason: &str) {
        let mut poisoned = self.shared.poisoned.lock().unwrap_or_else(|p| p.into_inner());
        if poisoned.is_none() {
            *poisoned = Some(reason.to_owned());
        }
    }

    /// Reads every value of every table once, each block's checksum
    /// checked (RocksDB checks a block when it reads it; an open reads only
    /// the head's): [`Error::Damaged`] at the first block that fails.
    /// `pace` is called every 4,096 values. Returns the values read.
    pub fn scan_tables(&self, pace: &dyn Fn(u64)) -> Result<u64> {
        let mut read = 0u64;
        for name in COLUMN_FAMILIES {
            let mut options = ReadOptions::default();
            options.fill_cache(false);
            options.set_verify_checksums(true);
            for item in self
                .shared
                .db
                .iterator_cf_opt(self.shared.cf(name), options, IteratorMode::Start)
            {
                item.map_err(storage)?;
                read += 1;
                if read.is_multiple_of(4096) {
                    pace(read);
                }
            }
        }
        Ok(read)
    }

    /// Calls `visit` with every entry from `from` to the head, in order, in
    /// one forward scan (for reports; the audit has its own).
    pub fn scan_entries(&self, from: u64, visit: &mut dyn FnMut(Entry) -> Result<()>) -> Result<()> {
        let size = self.size();
        let mut scan = ReadOptions::default();
        scan.fill_cache(false);
        scan.set_readahead_size(4 << 20);
        let mut entries = self.shared.db.raw_iterator_cf_opt(self.shared.cf(CF_ENTRIES), scan);
        entries.seek(seq_key(from));
        let mut expected = from;
        while expected < size {
            let (Some(key), Some(value)) = (entries.key(), entries.value()) else {
                entries.status().map_err(storage)?;
                break;
            };
            if decode_seq_key(key) != Some(expected) {
                break;
            }
            let mut entry = Entry::decode(value).map_err(|e| Error::Integrity {
                seq: expected,
                check: "entry_decode".into(),
                detail: e.to_string(),
            })?;
            entry.record.disclosures = self.disclosures(expected)?;
            visit(entry)?;
            expected += 1;
            entries.next();
        }
        if expected < size {
            return Err(Error::Integrity {
                seq: expected,
                check: "entry_missing".into(),
                detail: "entry is below the head but not stored".into(),
            });
        }
        Ok(())
    }

    /// Calls `visit` with the export lines (docs/FORMAT.md, "Export") of
    /// the entries `from..end` and of every checkpoint of a size in
    /// `from + 1..=end`, each right after the entry that completes it.
    pub fn export(&self, from: u64, end: u64, visit: &mut dyn FnMut(ExportLine) -> Result<()>) -> Result<()> {
        let checkpoints = self.checkpoints()?;
        let mut checkpoints = checkpoints
            .into_iter()
            .filter(|(size, _)| *size > from && *size <= end)
            .peekable();
        let result = self.scan_entries(from, &mut |entry| {
            if entry.seq >= end {
                return Err(Error::NotFound("end of the export".into()));
            }
            let seq = entry.seq;
            visit(ExportLine::Entry {
                seq,
                bytes: entry.encode(),
                disclosures: entry.record.disclosures,
            })?;
            while let Some((size, note)) = checkpoints.next_if(|(size, _)| *size == seq + 1) {
                let note = self.cosigned_note(size, &note)?;
                visit(ExportLine::Checkpoint { size, note })?;
            }
            Ok(())
        });
        match result {
            Err(Error::NotFound(detail)) if detail == "end of the export" => Ok(()),
            other => other,
        }
    }

    /// The entry `seq`, decoded.
    pub fn entry(&self, seq: u64) -> Result<Entry> {
        let bytes = self.entry_bytes(seq)?;
        let mut entry = Entry::decode(&bytes).map_err(|e| Error::Integrity {
            seq,
            check: "entry_decode".into(),
            detail: e.to_string(),
        })?;
        entry.record.disclosures = self.disclosures(seq)?;
        Ok(entry)
    }

    /// The disclosures stored beside entry `seq` (docs/FORMAT.md §3j);
    /// empty for an entry that has none.
    pub fn disclosures(&self, seq: u64) -> Result<Vec<String>> {
        let stored = self
            .shared
            .db
            .get_cf(self.shared.cf(CF_DISCLOSURES), seq_key(seq))
            .map_err(storage)?;
        match stored {
            None => Ok(Vec::new()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Integrity {
                seq,
                check: "disclosure".into(),
                detail: format!("the stored disclosures are not a JSON array of strings: {e}"),
            }),
        }
    }

    /// The signed checkpoint of exactly `size` entries, if one was made.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<String>> {
        let value = self
            .shared
            .db
            .get_cf(self.shared.cf(CF_CHECKPOINTS), seq_key(size))
            .map_err(storage)?;
        value
            .map(|bytes| String::from_utf8(bytes).map_err(|_| Error::Storage("checkpoint is not UTF-8".into())))
            .transpose()
    }

    /// Keeps a witness's cosignature line of the checkpoint of `size`. Not
    /// synced: it competes with no acknowledged write for the disk, and a
    /// line lost with the machine is asked for again (a witness cosigns
    /// the size it holds again). The line is checked by whoever reads it,
    /// with the witness's key: it proves itself.
    pub fn add_cosignature(&self, size: u64, witness: &str, line: &str) -> Result<()> {
        let mut key = seq_key(size).to_vec();
        key.extend_from_slice(witness.as_bytes());
        self.shared
            .db
            .put_cf(self.shared.cf(CF_COSIGNATURES), key, line.as_bytes())
            .map_err(storage)
    }

    /// Keeps the RFC 3161 answer of the time-stamp authority for the
    /// checkpoint of `size` (synced). Refused unless it is a granted
    /// time-stamp of that stored checkpoint's text (FORMAT §6c); the TSA's
    /// signature is checked by whoever relies on it.
    pub fn add_timestamp(&self, size: u64, response: &[u8]) -> Result<()> {
        let note = self
            .checkpoint_at(size)?
            .ok_or_else(|| Error::NotFound(format!("no checkpoint of size {size}")))?;
        let newest = self.entry(size.saturating_sub(1))?.timestamp_ms;
        caseledger_verify::timestamp::check_of_checkpoint_after(response, &note, newest)
            .map_err(|e| Error::InvalidArgument(format!("the time-stamp of checkpoint {size}: {e}")))?;
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        self.shared
            .db
            .put_cf_opt(self.shared.cf(CF_TIMESTAMPS), seq_key(size), response, &sync)
            .map_err(storage)
    }

    /// Every time-stamp kept, by checkpoint size.
    pub fn timestamps(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self
            .shared
            .db
            .iterator_cf(self.shared.cf(CF_TIMESTAMPS), IteratorMode::Start)
        {
            let (key, value) = item.map_err(storage)?;
            let size = decode_seq_key(&key).ok_or_else(|| Error::Storage("bad time-stamp key".into()))?;
            out.push((size, value.to_vec()));
        }
        Ok(out)
    }

    /// The time-stamp kept for the checkpoint of `size`, if any.
    pub fn timestamp_at(&self, size: u64) -> Result<Option<Vec<u8>>> {
        self.shared
            .db
            .get_cf(self.shared.cf(CF_TIMESTAMPS), seq_key(size))
            .map_err(storage)
    }

    /// The checkpoint `note` of `size` with the cosignature lines kept for
    /// it appended (unchecked here: a verifier checks those of the
    /// witnesses it knows and ignores the rest).
    pub fn cosigned_note(&self, size: u64, note: &str) -> Result<String> {
        let mut cosigned = note.to_owned();
        for (_, line) in self.cosignatures_at(size)? {
            cosigned.push_str(&line);
        }
        Ok(cosigned)
    }

    /// The cosignature lines kept for the checkpoint of `size`, by witness
    /// name.
    pub fn cosignatures_at(&self, size: u64) -> Result<Vec<(String, String)>> {
        let prefix = seq_key(size);
        let mode = IteratorMode::From(&prefix, rocksdb::Direction::Forward);
        let mut lines = Vec::new();
        for item in self.shared.db.iterator_cf(self.shared.cf(CF_COSIGNATURES), mode) {
            let (key, value) = item.map_err(storage)?;
            if !key.starts_with(&prefix) {
                break;
            }
            lines.push((
                String::from_utf8_lossy(&key[8..]).into_owned(),
                String::from_utf8_lossy(&value).into_owned(),
            ));
        }
        Ok(lines)
    }

    /// The newest signed checkpoint: (size, note).
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>> {
        let size = self.published().checkpoint_size;
        if size == 0 {
            return Ok(None);
        }
        Ok(self.checkpoint_at(size)?.map(|note| (size, note)))
    }

    /// Every checkpoint, oldest first: (size, note).
    pub fn checkpoints(&self) -> Result<Vec<(u64, String)>> {
        let cf = self.shared.cf(CF_CHECKPOINTS);
        let mut out = Vec::new();
        for item in self.shared.db.iterator_cf(cf, IteratorMode::Start) {
            let (key, value) = item.map_err(storage)?;
            let size = decode_seq_key(&key).ok_or_else(|| Error::Storage("bad checkpoint key".into()))?;
            out.push((size, String::from_utf8_lossy(&value).into_owned()));
        }
        Ok(out)
    }

    /// Inclusion proof of entry `seq` in the tree of `size` entries.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>> {
        self.check_size(size)?;
        Ok(merkle::inclusion_proof(self, seq, size)?)
    }

    /// Consistency proof from `first` to `second` entries.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>> {
        self.check_size(second)?;
        Ok(merkle::consistency_proof(self, first, second)?)
    }

    /// Merkle root of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash> {
        self.check_size(size)?;
        Ok(merkle::root_at(self, size)?)
    }

    fn check_size(&self, size: u64) -> Result<()> {
        let current = self.size();
        if size > current {
            return Err(Error::InvalidArgument(format!(
                "tree size {size} is beyond the ledger's {current} entries"
            )));
        }
        Ok(())
    }

    /// A proof bundle for entry `seq` against the newest checkpoint. If that
    /// checkpoint does not cover the entry yet, a writable ledger makes one.
    pub fn proof_bundle(&self, seq: u64) -> Result<ProofBundle> {
        let entry = self.entry_bytes(seq)?;
        let (size, note) = match self.latest_checkpoint()? {
            Some((size, note)) if size > seq => (size, note),
            _ if matches!(self.mode, Mode::Writable) => {
                let note = self.checkpoint_now()?;
                let size = Checkpoint::parse_body(&note)
                    .map_err(|e| Error::Storage(e.to_string()))?
                    .size;
                (size, note)
            }
            _ => {
                return Err(Error::NotFound(format!(
                    "no checkpoint covers entry {seq} yet; open the ledger for writing to make one"
                )))
            }
        };
        let proof = self.inclusion_proof(seq, size)?;
        let note = self.cosigned_note(size, &note)?;
        Ok(ProofBundle::new(&entry, seq, size, &proof, note))
    }
}
