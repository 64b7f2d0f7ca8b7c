//! What an insider holding the node key (seed [1; 32] in the tests) can do
//! to an applicant's bundle: add entries with true inclusion proofs, and
//! sign a checkpoint of the same tree whose thread map says what they like.

use std::collections::BTreeMap;

use base64::Engine as _;
use caseledger_ledger::store::Ledger;
use caseledger_verify::bundle::{ApplicantBundle, ProvenEntry, ProvenThread};
use caseledger_verify::checkpoint::Checkpoint;
use caseledger_verify::threads::{value_of, Thread};

use super::ORIGIN;

/// `seq` added to `bundle` with a true inclusion proof against its checkpoint.
pub fn push_proven(bundle: &mut ApplicantBundle, ledger: &Ledger, seq: u64) {
    if bundle.entries.iter().any(|e| e.seq == seq) {
        return;
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let proof = ledger.inclusion_proof(seq, bundle.tree_size).expect("proof");
    bundle.entries.push(ProvenEntry {
        seq,
        entry: b64.encode(ledger.entry_bytes(seq).expect("entry")),
        inclusion_proof: proof.iter().map(|h| b64.encode(h)).collect(),
        disclosures: Vec::new(),
    });
    bundle.entries.sort_by_key(|e| e.seq);
}

/// The node-key holder (seed [1;32]) sets `thread` to exactly `seqs`, signs
/// a checkpoint of the SAME tree (same size and root) with a thread map that
/// says so, and re-proves every thread of the bundle against it.
pub fn node_sets_thread(bundle: &mut ApplicantBundle, ledger: &Ledger, changes: &[(Thread, Vec<u64>)]) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let size = bundle.tree_size;
    let mut map = ledger.thread_map_at(size).expect("thread map");
    let mut threads: BTreeMap<Thread, Vec<u64>> = bundle
        .threads
        .iter()
        .map(|t| (Thread::from_name(&t.name).expect("name"), t.seqs.clone()))
        .collect();
    for (thread, seqs) in changes {
        threads.insert(thread.clone(), seqs.clone());
        for seq in seqs {
            push_proven(bundle, ledger, *seq);
        }
    }
    for (thread, seqs) in &threads {
        map.set(thread.key(), value_of(thread, seqs));
    }
    let note =
        caseledger_keys::note::Signer::new(ORIGIN, caseledger_keys::Identity::from_seed([1; 32])).expect("signer");
    let mut checkpoint = Checkpoint::parse_body(&bundle.checkpoint).expect("checkpoint");
    checkpoint.threads = map.root();
    bundle.checkpoint = checkpoint.sign(&note).expect("sign");
    bundle.threads = threads
        .iter()
        .map(|(thread, seqs)| ProvenThread {
            name: thread.name(),
            seqs: seqs.clone(),
            map_proof: map
                .proof(&thread.key())
                .expect("in the map")
                .iter()
                .map(|h| b64.encode(h))
                .collect(),
        })
        .collect();
}
