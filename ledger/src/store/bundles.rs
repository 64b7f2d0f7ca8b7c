//! The applicant's bundle: every entry of their money with its inclusion
//! proof, the keys that signed them, and a signed checkpoint.

use super::*;

/// What a verification code opens.
#[derive(Debug)]
pub enum CodeLookup {
    /// No code with this hash was issued.
    Unknown,
    /// Revoked by the entry at `seq`.
    Revoked { seq: u64 },
    /// Expired at `expires_ms`.
    Expired { expires_ms: u64 },
    /// The applicant's bundle.
    Bundle(Box<caseledger_verify::bundle::ApplicantBundle>),
}

impl Ledger {
    /// The applicant bundle for a verification code (canonical form): every
    /// entry of the applicant's disbursements (request, steps, payment),
    /// the case filing and account registrations, and the genesis and key
    /// entries of every signer, each with an inclusion proof against one
    /// signed checkpoint. `Ok(None)` for an unknown or revoked code (codes
    /// do not expire here: [`Ledger::applicant_lookup`] says why a code
    /// opens nothing, as of a time).
    pub fn applicant_bundle(&self, code: &str) -> Result<Option<caseledger_verify::bundle::ApplicantBundle>> {
        Ok(match self.applicant_lookup(code, 0)? {
            CodeLookup::Bundle(bundle) => Some(*bundle),
            _ => None,
        })
    }

    /// What the code (canonical form) opens at `now_ms` (0: ignore expiry).
    pub fn applicant_lookup(&self, code: &str, now_ms: u64) -> Result<CodeLookup> {
        use caseledger_verify::funds::model::ApplicantCodeState;
        let hash = caseledger_verify::funds::model::applicant_code_hash(code);
        let read = |key: &str| -> Result<Option<Vec<u8>>> { self.state_object(key) };
        fn parse<T: serde::de::DeserializeOwned>(bytes: Vec<u8>) -> Result<T> {
            serde_json::from_slice(&bytes).map_err(|e| Error::Storage(e.to_string()))
        }
        let Some(code_state) = read(&format!("code/{hash}"))?
            .map(parse::<ApplicantCodeState>)
            .transpose()?
        else {
            return Ok(CodeLookup::Unknown);
        };
        if let Some(seq) = code_state.revoked_seq {
            return Ok(CodeLookup::Revoked { seq });
        }
        if let Some(expires_ms) = code_state.expires_ms.filter(|e| now_ms > 0 && *e <= now_ms) {
            return Ok(CodeLookup::Expired { expires_ms });
        }
        let bundle = self.applicant_bundle_of(&code_state.case_number, &code_state.applicant_id)?;
        Ok(CodeLookup::Bundle(Box::new(bundle)))
    }

    /// The bundle of every thread that concerns the applicant's money
    /// (docs/FORMAT.md §7b), proven against the newest checkpoint, which
    /// is first made to cover every entry.
    pub fn applicant_bundle_of(
        &self,
        case_number: &str,
        applicant_id: &str,
    ) -> Result<caseledger_verify::bundle::ApplicantBundle> {
        let snapshot = match self.shared.checkpoint_threads() {
            Some(snapshot) if snapshot.size >= self.size() => snapshot,
            _ if self.writer.is_some() => {
                self.checkpoint_now()?;
                self.shared
                    .checkpoint_threads()
                    .ok_or_else(|| Error::Storage("no checkpoint with its thread map".into()))?
            }
            // Read-only: the newest checkpoint, its map rebuilt from the state.
            _ => {
                let (size, note) = self
                    .latest_checkpoint()?
                    .ok_or_else(|| Error::Storage("the ledger has no checkpoint yet".into()))?;
                std::sync::Arc::new(crate::store::CheckpointThreads {
                    size,
                    note,
                    map: self.thread_map_at(size)?,
                })
            }
        };
        self.applicant_bundle_at(case_number, applicant_id, &snapshot)
    }

    /// The applicant's bundle as of the stored checkpoint of `size` (an
    /// older one the witnesses cosigned): every thread as of that size.
    pub fn applicant_bundle_as_of(
        &self,
        case_number: &str,
        applicant_id: &str,
        size: u64,
    ) -> Result<caseledger_verify::bundle::ApplicantBundle> {
        let note = self
            .checkpoint_at(size)?
            .ok_or_else(|| Error::NotFound(format!("no checkpoint of size {size}")))?;
        let snapshot = crate::store::CheckpointThreads {
            size,
            note,
            map: self.thread_map_at(size)?,
        };
        self.applicant_bundle_at(case_number, applicant_id, &snapshot)
    }

    fn applicant_bundle_at(
        &self,
        case_number: &str,
        applicant_id: &str,
        snapshot: &crate::store::CheckpointThreads,
    ) -> Result<caseledger_verify::bundle::ApplicantBundle> {
        use caseledger_verify::bundle::{ApplicantBundle, ProvenEntry, ProvenThread, APPLICANT_BUNDLE_FORMAT};
        use caseledger_verify::funds::model::{DisbursementRequested, ReceiptClaimed, ReceiptRecorded};
        use caseledger_verify::funds::model::{
            KIND_DISBURSEMENT_REQUESTED, KIND_RECEIPT_CLAIMED, KIND_RECEIPT_RECORDED,
        };
        use caseledger_verify::threads::Thread;
        let b64 = |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
        let size = snapshot.size;
        let node = self.shared.node_key.key_id();
        let mut threads: std::collections::BTreeMap<Thread, Vec<u64>> = std::collections::BTreeMap::new();
        let mut queue = vec![
            Thread::Policy,
            Thread::Case(case_number.to_owned()),
            Thread::Applicant {
                case_number: case_number.to_owned(),
                applicant_id: applicant_id.to_owned(),
            },
        ];
        let mut entries: std::collections::BTreeMap<u64, Entry> = std::collections::BTreeMap::new();
        while let Some(thread) = queue.pop() {
            if threads.contains_key(&thread) {
                continue;
            }
            let key = thread.key();
            let seqs = self.thread_seqs(&thread, size)?;
            let expected = snapshot.map.get(&key);
            let actual = (!seqs.is_empty()).then(|| caseledger_verify::threads::value_of(&thread, &seqs));
            if expected != actual {
                return Err(Error::Integrity {
                    seq: size.saturating_sub(1),
                    check: "threads".into(),
                    detail: format!(
                        "the stored {} thread is not the one the checkpoint commits to",
                        thread.name().join(" ")
                    ),
                });
            }
            for seq in &seqs {
                let entry = match entries.get(seq) {
                    Some(entry) => entry.clone(),
                    None => {
                        let entry = self.entry(*seq)?;
                        entries.insert(*seq, entry.clone());
                        entry
                    }
                };
                // Read as a bundle reads it (concealed reasons left so).
                let payload = &caseledger_verify::disclosure::readable_payload(
                    entry.record.kind,
                    &entry.record.payload,
                    &[],
                    caseledger_verify::disclosure::Reader::Bundle,
                )
                .ok()
                .flatten()
                .unwrap_or_else(|| entry.record.payload.clone());
                let follow = match (&thread, entry.record.kind) {
                    (Thread::Applicant { .. }, KIND_DISBURSEMENT_REQUESTED) => {
                        serde_json::from_slice::<DisbursementRequested>(payload)
                            .ok()
                            .map(|r| Thread::Disbursement(r.disbursement_id))
                    }
                    (Thread::Case(_), KIND_RECEIPT_RECORDED) => serde_json::from_slice::<ReceiptRecorded>(payload)
                        .ok()
                        .map(|r| Thread::Receipt(r.bank_reference)),
                    (Thread::Case(_), KIND_RECEIPT_CLAIMED) => serde_json::from_slice::<ReceiptClaimed>(payload)
                        .ok()
                        .map(|r| Thread::Receipt(r.bank_reference)),
                    _ => None,
                };
                queue.extend(follow);
                if *seq != 0 && entry.record.signer != node {
                    queue.push(self.key_line_of(&entry.record.signer)?);
                }
            }
            threads.insert(thread, seqs);
        }
        // The applicant's own disbursements: the only ones the bundle
        // holds whole (others' requests, payments and returns are in the
        // case's thread only).
        let own_disbursements: std::collections::BTreeSet<u64> = threads
            .iter()
            .filter(|(thread, _)| matches!(thread, Thread::Disbursement(_)))
            .flat_map(|(_, seqs)| seqs.iter().copied())
            .collect();
        let mut proven_threads = Vec::with_capacity(threads.len());
        for (thread, seqs) in threads {
            let proof = snapshot.map.proof(&thread.key()).ok_or_else(|| Error::Integrity {
                seq: size.saturating_sub(1),
                check: "threads".into(),
                detail: format!("the checkpoint's thread map has no {} thread", thread.name().join(" ")),
            })?;
            proven_threads.push(ProvenThread {
                name: thread.name(),
                seqs,
                map_proof: proof.iter().map(|h| b64(h)).collect(),
            });
        }
        let mut proven_entries = Vec::with_capacity(entries.len());
        for (seq, entry) in &entries {
            let proof = self.inclusion_proof(*seq, size)?;
            proven_entries.push(ProvenEntry {
                seq: *seq,
                entry: b64(&self.entry_bytes(*seq)?),
                inclusion_proof: proof.iter().map(|h| b64(h)).collect(),
                // The applicant's own values, nobody else's (§3j).
                disclosures: caseledger_verify::disclosure::applicants_own(
                    &entry.record,
                    applicant_id,
                    own_disbursements.contains(seq),
                ),
            });
        }
        Ok(ApplicantBundle {
            format: APPLICANT_BUNDLE_FORMAT.to_owned(),
            case_number: case_number.to_owned(),
            applicant_id: applicant_id.to_owned(),
            tree_size: size,
            // With the cosignatures its witnesses gave (FORMAT §6b).
            checkpoint: self.cosigned_note(size, &snapshot.note)?,
            threads: proven_threads,
            entries: proven_entries,
            // The TSA's answer for it, when it has one (FORMAT §6c).
            timestamp: self.timestamp_at(size)?.map(|answer| b64(&answer)),
        })
    }

    /// The key line of a key, as the derived state records it.
    fn key_line_of(&self, id: &caseledger_keys::KeyId) -> Result<caseledger_verify::threads::Thread> {
        let first = self
            .state_object(&caseledger_verify::threads::keyline_key(id))?
            .and_then(|bytes| serde_json::from_slice::<String>(&bytes).ok())
            .and_then(|hex| caseledger_keys::KeyId::from_hex(&hex).ok())
            .ok_or_else(|| Error::Storage(format!("key {} has no key line", id.short())))?;
        Ok(caseledger_verify::threads::Thread::KeyLine(first))
    }

    /// The thread map of the first `size` entries, from the stored thread
    /// heads (a thread that moved on since is recomputed from its members).
    pub fn thread_map_at(&self, size: u64) -> Result<caseledger_verify::thread_map::ThreadMap> {
        use caseledger_verify::threads::{self, ThreadHead};
        let mut map = caseledger_verify::thread_map::ThreadMap::new();
        for (key, value) in self.state_objects(threads::HEAD_PREFIX)? {
            let head: ThreadHead = serde_json::from_slice(&value).map_err(|e| Error::Storage(format!("{key}: {e}")))?;
            let thread = threads::Thread::from_name(&head.name).map_err(Error::Storage)?;
            let thread_key = thread.key();
            if head.last_seq < size {
                map.set(thread_key, head.value().map_err(Error::Storage)?);
                continue;
            }
            let seqs = self.thread_seqs(&thread, size)?;
            if !seqs.is_empty() {
                map.set(thread_key, threads::value_of(&thread, &seqs));
            }
        }
        Ok(map)
    }

    /// The entries of `thread` among the first `size` (the derived state's
    /// members of the thread, in seq order).
    pub fn thread_seqs(&self, thread: &caseledger_verify::threads::Thread, size: u64) -> Result<Vec<u64>> {
        let members = self
            .state_objects(&caseledger_verify::threads::members_prefix(&thread.key()))?
            .into_iter()
            .map(|(k, _)| k);
        caseledger_verify::threads::seqs_before(members, size).map_err(Error::Storage)
    }
}
