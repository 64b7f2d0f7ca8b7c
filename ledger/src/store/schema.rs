//! How the ledger lays out its data in RocksDB column families.
//!
//! | column family | key                                   | value                         |
//! |---------------|---------------------------------------|-------------------------------|
//! | `entries`     | seq (u64 BE)                          | entry bytes, as hashed        |
//! | `timestamps`  | tree size (u64 BE)                    | the TSA's RFC 3161 TimeStampResp (DER) for the checkpoint of that size |
//! | `cosignatures` | tree size (u64 BE) ‖ witness name | a witness's cosignature line of the checkpoint of that size (FORMAT §6b), as it answered |
//! | `disclosures` | seq (u64 BE)                          | the entry's disclosures (§3j), JSON array of strings; only for entries that have some |
//! | `nodes`       | last leaf index (u64 BE) ‖ level (u8) | perfect Merkle node (32 B)    |
//! | `checkpoints` | tree size (u64 BE)                    | signed checkpoint note (UTF-8)|
//! | `keys`        | key id (32 B)                         | [`KeyInfo`] JSON              |
//! | `meta`        | `ledger`, `head`, `pending`           | [`LedgerMeta`], [`Head`], [`PendingGroup`] JSON |
//! | `state`       | object key (`case/…`, `receipt/…`)    | derived object JSON           |
//!
//! Nodes are keyed by their last leaf so that they sort in the order a
//! replay completes them: the auditor compares them with one forward scan.

use serde::{Deserialize, Serialize};

use caseledger_verify::hash::Hash;
use caseledger_verify::merkle::Frontier;

pub const CF_ENTRIES: &str = "entries";
pub const CF_NODES: &str = "nodes";
pub const CF_CHECKPOINTS: &str = "checkpoints";
pub const CF_KEYS: &str = "keys";
pub const CF_META: &str = "meta";
pub const CF_STATE: &str = "state";
pub const CF_DISCLOSURES: &str = "disclosures";
pub const CF_COSIGNATURES: &str = "cosignatures";
pub const CF_TIMESTAMPS: &str = "timestamps";
pub const COLUMN_FAMILIES: [&str; 9] = [
    CF_ENTRIES,
    CF_NODES,
    CF_CHECKPOINTS,
    CF_KEYS,
    CF_META,
    CF_STATE,
    CF_DISCLOSURES,
    CF_COSIGNATURES,
    CF_TIMESTAMPS,
];

pub const META_LEDGER: &[u8] = b"ledger";
pub const META_HEAD: &[u8] = b"head";
pub const META_PENDING: &[u8] = b"pending";
/// The node's seal over the derived tables at a clean close (`state_seal`).
pub const META_STATE_SEAL: &[u8] = b"state_seal";

/// Version of this storage layout.
pub const STORAGE_VERSION: u32 = 1;

pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub fn decode_seq_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// Key of the perfect node (level, index).
pub fn node_key(level: u32, index: u64) -> [u8; 9] {
    let last_leaf = ((index + 1) << level) - 1;
    let mut key = [0u8; 9];
    key[..8].copy_from_slice(&last_leaf.to_be_bytes());
    key[8] = level as u8;
    key
}

/// Facts fixed at creation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerMeta {
    pub storage_version: u32,
    pub origin: String,
    /// Node public key, standard base64.
    pub node_key: String,
}

/// The head: written in the same batch as every append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub size: u64,
    /// Hex leaf hash of the last entry (zeros for an empty ledger).
    pub last_hash: String,
    /// Hex root of the tree of `size` entries.
    pub root: String,
    /// Hex roots of the perfect subtrees on the right edge, largest first.
    pub frontier: Vec<String>,
    pub last_timestamp_ms: u64,
    /// Size of the newest checkpoint (0 when there is none).
    pub checkpoint_size: u64,
}

fn hex_hash(text: &str) -> Option<Hash> {
    hex::decode(text).ok()?.try_into().ok()
}

impl Head {
    pub fn new(frontier: &Frontier, last_hash: &Hash, last_timestamp_ms: u64, checkpoint_size: u64) -> Self {
        Self {
            size: frontier.size(),
            last_hash: hex::encode(last_hash),
            root: hex::encode(frontier.root()),
            frontier: frontier.nodes().iter().map(hex::encode).collect(),
            last_timestamp_ms,
            checkpoint_size,
        }
    }

    pub fn last_hash(&self) -> Option<Hash> {
        hex_hash(&self.last_hash)
    }

    pub fn root(&self) -> Option<Hash> {
        hex_hash(&self.root)
    }

    pub fn frontier(&self) -> Option<Frontier> {
        let nodes = self.frontier.iter().map(|h| hex_hash(h)).collect::<Option<Vec<_>>>()?;
        Frontier::from_parts(self.size, nodes)
    }
}

/// Written in the same batch as a group whose signatures were still being
/// checked while the batch was synced (see the storage contract in
/// `store/mod.rs`): what it takes to undo the group if a signature fails,
/// here or, after a crash, when the ledger is next opened for writing.
/// Every later batch replaces or deletes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingGroup {
    /// Seq of the group's first entry (the size before it).
    pub first_seq: u64,
    /// Size after the group. The head before it is rebuilt from the stored
    /// nodes, entry `first_seq - 1` and `last_timestamp_ms`; the group never
    /// makes a checkpoint.
    pub size: u64,
    /// The head's `last_timestamp_ms` before the group.
    pub last_timestamp_ms: u64,
    /// Every derived-state key the group wrote, with its value before the
    /// group (hex), `None` where there was none.
    pub state: Vec<(String, Option<String>)>,
    /// The signatures of the group's requests that are checked but not
    /// stored in entries (HTTP request signatures), so that the group can
    /// be checked again after a crash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_signatures: Vec<RequestSignature>,
}

/// A request signature in a [`PendingGroup`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSignature {
    /// Key id of the signer, hex.
    pub signer: String,
    /// The signed message, base64.
    pub message: String,
    /// The Ed25519 signature, base64.
    pub signature: String,
}

impl RequestSignature {
    pub fn new(authorization: &super::Authorization) -> Self {
        use base64::Engine as _;
        let base64 = base64::engine::general_purpose::STANDARD;
        Self {
            signer: authorization.signer.to_hex(),
            message: base64.encode(&authorization.message),
            signature: base64.encode(authorization.signature.to_bytes()),
        }
    }

    /// Whether it verifies under the key `registry` has for its signer.
    pub fn holds(&self, registry: &caseledger_verify::registry::Registry) -> bool {
        use base64::Engine as _;
        let base64 = base64::engine::general_purpose::STANDARD;
        let key = caseledger_keys::KeyId::from_hex(&self.signer)
            .ok()
            .and_then(|id| registry.public_key(&id));
        let message = base64.decode(&self.message).ok();
        let signature = base64
            .decode(&self.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| caseledger_keys::Signature::from_bytes(&b));
        match (key, message, signature) {
            (Some(key), Some(message), Some(signature)) => key.verify_raw(&message, &signature).is_ok(),
            _ => false,
        }
    }
}
