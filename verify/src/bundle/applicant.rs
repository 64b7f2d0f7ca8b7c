//! The applicant bundle (docs/FORMAT.md §7a): every thread that concerns
//! one applicant's money, each proven complete against the thread-map root
//! of one node-signed checkpoint, and every entry of those threads with
//! its inclusion proof against the same checkpoint.
//!
//! The threads it must hold: the policy; the case; the applicant; each
//! disbursement the applicant's thread requests; each receipt the case's
//! thread names; and the key line of every key that signed an entry of
//! any of them (closed under the administrators and co-signers of those
//! lines). Leave out an entry of a thread, or a whole thread, and the
//! bundle fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use caseledger_keys::{note, KeyId, PublicKey};
use serde::{Deserialize, Serialize};

use super::decode_hash;
use super::report::{self, CaseReport};
use super::signers::{signing_keys, verified, Signer};
use crate::checkpoint::Checkpoint;
use crate::disclosure;
use crate::entry::Entry;
use crate::funds::model::*;
use crate::merkle;
use crate::thread_map;
use crate::threads::{value_of, Thread};

/// Value of [`ApplicantBundle::format`].
pub const APPLICANT_BUNDLE_FORMAT: &str = "caseledger-applicant-bundle/v2";

/// One entry with its inclusion proof against the bundle's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenEntry {
    pub seq: u64,
    /// Entry bytes as stored and hashed, base64.
    pub entry: String,
    pub inclusion_proof: Vec<String>,
    /// Disclosures of values the entry conceals that are the applicant's
    /// own (docs/FORMAT.md §3j): their own party of the case's filing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disclosures: Vec<String>,
}

/// One thread, whole, with its proof against the checkpoint's thread map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenThread {
    /// The thread's name ([`Thread::name`]).
    pub name: Vec<String>,
    /// Every entry of the thread below the checkpoint's size, in order.
    pub seqs: Vec<u64>,
    /// Sibling hashes from the map root down (base64).
    pub map_proof: Vec<String>,
}

/// What an applicant gets with their verification code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicantBundle {
    pub format: String,
    pub case_number: String,
    pub applicant_id: String,
    pub tree_size: u64,
    /// The node-signed checkpoint of `tree_size` entries.
    pub checkpoint: String,
    pub threads: Vec<ProvenThread>,
    pub entries: Vec<ProvenEntry>,
    /// The time-stamp authority's RFC 3161 answer (DER, standard base64)
    /// for the checkpoint, when the court has one (FORMAT §6c).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// The verified contents of a bundle, for the report.
pub(crate) struct Proven {
    pub origin: String,
    pub tree_size: u64,
    /// The checkpoint's Merkle root.
    pub root: crate::hash::Hash,
    pub node_key: PublicKey,
    pub entries: BTreeMap<u64, Entry>,
    pub threads: BTreeMap<Thread, Vec<u64>>,
    pub keys: HashMap<KeyId, Signer>,
}

impl Proven {
    /// The entries of `thread` in order (empty if the bundle lacks it;
    /// [`ApplicantBundle::verify`] has made sure every needed one is there).
    pub fn thread(&self, thread: &Thread) -> Vec<&Entry> {
        self.threads
            .get(thread)
            .map(|seqs| seqs.iter().filter_map(|s| self.entries.get(s)).collect())
            .unwrap_or_default()
    }
}

fn payload<T: serde::de::DeserializeOwned>(entry: &Entry) -> Result<T, String> {
    serde_json::from_slice(&entry.record.payload).map_err(|e| format!("entry {}: {e}", entry.seq))
}

impl ApplicantBundle {
    /// Checks everything offline with the node's public key: the
    /// checkpoint's signature, every entry's inclusion, every thread's
    /// completeness, every signature and key, and the case's rules; returns
    /// what the bundle proves.
    pub fn verify(&self, node_key: &PublicKey) -> Result<CaseReport, String> {
        self.verify_witnessed(node_key, &[], 0)
    }

    /// [`ApplicantBundle::verify`], and the checkpoint must carry at least
    /// `quorum` cosignatures of `witnesses` (FORMAT §6b): the report names
    /// those that cosigned it, and when.
    pub fn verify_witnessed(
        &self,
        node_key: &PublicKey,
        witnesses: &[caseledger_keys::cosignature::Witness],
        quorum: usize,
    ) -> Result<CaseReport, String> {
        let proven = self.prove(node_key)?;
        let mut report = report::build(&proven, &self.case_number, &self.applicant_id)?;
        if let Some(answer) = &self.timestamp {
            let answer = BASE64
                .decode(answer)
                .map_err(|e| format!("the checkpoint's time-stamp: {e}"))?;
            // The stamp is not signed by the node: besides being of this
            // checkpoint, its time must be plausible without a clock, not
            // before the newest entry the bundle proves in the checkpoint
            // (FORMAT §6c). (Not after "now" is for verifiers with a clock:
            // `timestamp::check_not_future`.)
            let newest = proven.entries.values().map(|e| e.timestamp_ms).max().unwrap_or(0);
            let stamped = crate::timestamp::check_of_checkpoint_after(&answer, &self.checkpoint, newest)
                .map_err(|e| format!("the checkpoint's time-stamp: {e}"))?;
            report.time_stamped_ms = Some(stamped.gen_time_ms);
        }
        let found = caseledger_keys::cosignature::cosignatures(&self.checkpoint, witnesses)
            .map_err(|e| format!("the checkpoint's cosignatures: {e}"))?;
        if found.len() < quorum {
            return Err(format!(
                "the checkpoint is cosigned by {} of the {quorum} witnesses required: the ledger's state is not vouched for by other institutions",
                found.len()
            ));
        }
        report.witnessed_by = found
            .into_iter()
            .map(|c| report::Vouched {
                witness: c.witness,
                at_ms: c.timestamp.saturating_mul(1000),
            })
            .collect();
        Ok(report)
    }

    fn prove(&self, node_key: &PublicKey) -> Result<Proven, String> {
        if self.format != APPLICANT_BUNDLE_FORMAT {
            return Err(format!("unknown bundle format {:?}", self.format));
        }
        let origin = Checkpoint::origin_of(&self.checkpoint).ok_or("checkpoint has no origin line")?;
        let verifier = note::Verifier::new(origin, *node_key).map_err(|e| e.to_string())?;
        let checkpoint = Checkpoint::open(&self.checkpoint, &verifier).map_err(|e| e.to_string())?;
        if checkpoint.size != self.tree_size {
            return Err("the checkpoint is not for the bundle's tree size".into());
        }
        let mut entries = BTreeMap::new();
        let mut signed: BTreeMap<u64, Entry> = BTreeMap::new();
        let mut disclosed: Vec<(u64, u16, &Vec<String>)> = Vec::new();
        for proven in &self.entries {
            let bytes = BASE64
                .decode(&proven.entry)
                .map_err(|e| format!("entry {}: {e}", proven.seq))?;
            let entry = Entry::decode(&bytes).map_err(|e| format!("entry {}: {e}", proven.seq))?;
            let proof = proven
                .inclusion_proof
                .iter()
                .map(|h| decode_hash(h))
                .collect::<Result<Vec<_>, _>>()?;
            if entry.seq != proven.seq {
                return Err(format!("entry {} claims to be {}", proven.seq, entry.seq));
            }
            merkle::verify_inclusion(
                &Entry::hash_of(&bytes),
                entry.seq,
                checkpoint.size,
                &proof,
                &checkpoint.root,
            )
            .map_err(|e| format!("entry {} is not in the checkpointed ledger: {e}", entry.seq))?;
            if !proven.disclosures.is_empty() {
                disclosed.push((proven.seq, entry.record.kind, &proven.disclosures));
            }
            // Read with what it discloses; signatures are checked on
            // the entry as signed.
            let readable = disclosure::readable_payload(
                entry.record.kind,
                &entry.record.payload,
                &proven.disclosures,
                disclosure::Reader::Bundle,
            )
            .map_err(|e| format!("entry {}: {}", proven.seq, e.detail()))?;
            let mut read = entry.clone();
            if let Some(payload) = readable {
                read.record.payload = payload;
            }
            if signed.insert(entry.seq, entry).is_some() {
                return Err(format!("entry {} is in the bundle twice", proven.seq));
            }
            entries.insert(read.seq, read);
        }
        let mut threads = BTreeMap::new();
        for proven in &self.threads {
            let thread = Thread::from_name(&proven.name)?;
            let proof = proven
                .map_proof
                .iter()
                .map(|h| decode_hash(h))
                .collect::<Result<Vec<_>, _>>()?;
            thread_map::verify_proof(
                &thread.key(),
                &value_of(&thread, &proven.seqs),
                &proof,
                &checkpoint.threads,
            )
            .map_err(|_| {
                format!(
                    "the {} thread is not whole: the checkpoint's thread map holds other entries for it",
                    proven.name.join(" ")
                )
            })?;
            if proven.seqs.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("the {} thread is not in ledger order", proven.name.join(" ")));
            }
            if let Some(missing) = proven.seqs.iter().find(|s| !entries.contains_key(s)) {
                return Err(format!(
                    "entry {missing} of the {} thread is not in the bundle",
                    proven.name.join(" ")
                ));
            }
            if threads.insert(thread, proven.seqs.clone()).is_some() {
                return Err(format!("the {} thread is in the bundle twice", proven.name.join(" ")));
            }
        }
        if !entries.contains_key(&0) {
            return Err("the bundle lacks the ledger's genesis entry".into());
        }
        let in_threads: BTreeSet<u64> = threads.values().flatten().copied().collect();
        if let Some(stray) = entries.keys().find(|s| !in_threads.contains(s)) {
            return Err(format!("entry {stray} belongs to no thread of the bundle"));
        }
        // The keys: every key line's entries, replayed in ledger order.
        let key_entries: BTreeMap<u64, Entry> = threads
            .iter()
            .filter(|(t, _)| matches!(t, Thread::KeyLine(_)))
            .flat_map(|(_, seqs)| seqs.iter())
            .filter_map(|s| entries.get(s).map(|e| (*s, e.clone())))
            .collect();
        let keys = signing_keys(&key_entries, &signed, &checkpoint.origin, node_key)?;
        let proven = Proven {
            origin: checkpoint.origin,
            tree_size: checkpoint.size,
            root: checkpoint.root,
            node_key: *node_key,
            entries,
            threads,
            keys,
        };
        proven.require_threads(&self.case_number, &self.applicant_id)?;
        proven.require_own_disclosures(&self.case_number, &self.applicant_id, &disclosed)?;
        super::membership::check(&proven)?;
        for entry in signed.values() {
            if entry.seq == 0 {
                continue; // the genesis, checked with the node key
            }
            if entry.record.signer == node_key.key_id() {
                entry
                    .record
                    .verify(&proven.origin, node_key)
                    .map_err(|_| format!("entry {}: the node's signature does not verify", entry.seq))?;
            } else if crate::record::changes_registry(entry.record.kind) {
                // Checked by signing_keys against the administrators.
            } else {
                verified(entry, &proven.keys, &proven.origin)?;
            }
        }
        Ok(proven)
    }
}

impl Proven {
    /// The bundle discloses what is the applicant's own and nothing else
    /// (§3j): their party in the case's filing (once), and the reasons of
    /// their own disbursements' requests, returns and cancellations. A
    /// bundle that shows anyone else's is refused, whoever made it.
    fn require_own_disclosures(
        &self,
        case_number: &str,
        applicant_id: &str,
        disclosed: &[(u64, u16, &Vec<String>)],
    ) -> Result<(), String> {
        let applicant = Thread::Applicant {
            case_number: case_number.to_owned(),
            applicant_id: applicant_id.to_owned(),
        };
        let mut own_disbursements = BTreeSet::new();
        for entry in self.thread(&applicant) {
            if entry.record.kind == KIND_DISBURSEMENT_REQUESTED {
                let request: DisbursementRequested = payload(entry)?;
                let thread = Thread::Disbursement(request.disbursement_id);
                own_disbursements.extend(self.threads.get(&thread).into_iter().flatten().copied());
            }
        }
        let mut party_shown = false;
        for (seq, kind, disclosures) in disclosed {
            let own = match *kind {
                KIND_CASE_OPENED => {
                    disclosures.len() == 1
                        && !std::mem::replace(&mut party_shown, true)
                        && serde_json::from_str::<(String, Applicant)>(&disclosures[0])
                            .is_ok_and(|(_, a)| a.applicant_id == applicant_id)
                }
                kind => crate::disclosure::conceals_reason(kind) && own_disbursements.contains(seq),
            };
            if !own {
                return Err(format!(
                    "entry {seq}: a bundle discloses the applicant's own party and disbursements, nothing else"
                ));
            }
        }
        Ok(())
    }

    /// Every thread the bundle must hold is there.
    fn require_threads(&self, case_number: &str, applicant_id: &str) -> Result<(), String> {
        let need = |thread: Thread, why: &str| -> Result<(), String> {
            if self.threads.contains_key(&thread) {
                Ok(())
            } else {
                Err(format!(
                    "the bundle lacks the {} thread ({why})",
                    thread.name().join(" ")
                ))
            }
        };
        need(Thread::Policy, "the rules in force")?;
        let case = Thread::Case(case_number.to_owned());
        need(case.clone(), "the case")?;
        let applicant = Thread::Applicant {
            case_number: case_number.to_owned(),
            applicant_id: applicant_id.to_owned(),
        };
        need(applicant.clone(), "the applicant")?;
        for entry in self.thread(&applicant) {
            if entry.record.kind == KIND_DISBURSEMENT_REQUESTED {
                let request: DisbursementRequested = payload(entry)?;
                need(
                    Thread::Disbursement(request.disbursement_id),
                    "a disbursement to the applicant",
                )?;
            }
        }
        for entry in self.thread(&case) {
            let reference = match entry.record.kind {
                KIND_RECEIPT_RECORDED => payload::<ReceiptRecorded>(entry)?.bank_reference,
                KIND_RECEIPT_CLAIMED => payload::<ReceiptClaimed>(entry)?.bank_reference,
                _ => continue,
            };
            need(Thread::Receipt(reference), "money the case received")?;
        }
        // Every signer's key line, whole: a key known from the genesis
        // alone would hide its revocation.
        for entry in self.entries.values() {
            let signer = entry.record.signer;
            if entry.seq == 0 || signer == self.node_key.key_id() {
                continue;
            }
            let line = self.keys.get(&signer).map(|s| Thread::KeyLine(s.line));
            if !line.is_some_and(|line| self.threads.contains_key(&line)) {
                return Err(format!(
                    "entry {} is signed by a key whose key line the bundle lacks",
                    entry.seq
                ));
            }
        }
        Ok(())
    }
}
