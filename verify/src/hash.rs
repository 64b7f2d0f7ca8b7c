//! SHA-256 hashing of entries and Merkle nodes (RFC 6962 / RFC 9162 §2.1).

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Byte prepended to an entry before hashing it as a Merkle leaf.
pub const RFC6962_LEAF_HASH_PREFIX: u8 = 0x00;
/// Byte prepended to two child hashes before hashing them as a Merkle node.
pub const RFC6962_NODE_HASH_PREFIX: u8 = 0x01;

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Leaf hash of an entry. It is also the entry's hash in the hash chain: the
/// next entry's `prev_hash` is this value.
pub fn leaf_hash(entry_bytes: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([RFC6962_LEAF_HASH_PREFIX]);
    hasher.update(entry_bytes);
    hasher.finalize().into()
}

/// Interior node hash.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([RFC6962_NODE_HASH_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Hash as lower-case hex, for messages.
pub fn to_hex(hash: &Hash) -> String {
    hex::encode(hash)
}
