//! The thread map: a sparse Merkle tree over 256-bit thread keys, whose
//! root every checkpoint carries (docs/FORMAT.md §3c). A leaf binds a
//! thread key to the digest of the thread's entries; a proof of one leaf
//! is the list of sibling hashes from the root down to it.
//!
//! Hashing (SHA-256, one prefix byte per kind of node):
//!
//! ```text
//! empty subtree        = 32 zero bytes
//! leaf(key, value)     = SHA-256(0x00 || key || value)
//! inner(left, right)   = SHA-256(0x01 || left || right)
//! ```
//!
//! A subtree holding exactly one leaf hashes as that leaf, at whatever
//! depth; a subtree holding two or more is an inner node whose children
//! split on the key's bit at its depth (bit 0 is the most significant bit
//! of byte 0; 0 goes left). So the root is a function of the set of
//! leaves alone, and a proof is about as long as log2 of the number of
//! threads.
//!
//! The tree is persistent: an update copies the path it changes and
//! shares the rest, so keeping the map as of a checkpoint costs nothing.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::hash::Hash;

/// The hash of an empty subtree, and the root of an empty map.
pub const EMPTY: Hash = [0; 32];
/// Longest proof: one sibling per bit of the key.
pub const PROOF_MAX: usize = 256;

const LEAF_PREFIX: u8 = 0x00;
const INNER_PREFIX: u8 = 0x01;

/// `SHA-256(0x00 || key || value)`.
pub fn leaf_hash(key: &Hash, value: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(key);
    hasher.update(value);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn inner_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([INNER_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Bit `depth` of `key`, most significant bit of byte 0 first.
fn bit(key: &Hash, depth: usize) -> bool {
    (key[depth / 8] >> (7 - depth % 8)) & 1 == 1
}

#[derive(Debug)]
enum Node {
    Leaf {
        key: Hash,
        value: Hash,
        hash: Hash,
    },
    Inner {
        left: Option<Arc<Node>>,
        right: Option<Arc<Node>>,
        hash: Hash,
    },
}

impl Node {
    fn hash(&self) -> Hash {
        match self {
            Node::Leaf { hash, .. } | Node::Inner { hash, .. } => *hash,
        }
    }

    fn leaf(key: Hash, value: Hash) -> Arc<Node> {
        Arc::new(Node::Leaf {
            key,
            value,
            hash: leaf_hash(&key, &value),
        })
    }

    fn inner(left: Option<Arc<Node>>, right: Option<Arc<Node>>) -> Arc<Node> {
        let side = |node: &Option<Arc<Node>>| node.as_ref().map_or(EMPTY, |n| n.hash());
        let hash = inner_hash(&side(&left), &side(&right));
        Arc::new(Node::Inner { left, right, hash })
    }
}

/// Sets `key` to `value` in the subtree `node` at `depth`; returns the new
/// subtree (the old one is untouched).
fn insert(node: Option<&Arc<Node>>, key: Hash, value: Hash, depth: usize) -> Arc<Node> {
    match node.map(|n| (n, n.as_ref())) {
        None => Node::leaf(key, value),
        Some((_, Node::Leaf { key: existing, .. })) if *existing == key => Node::leaf(key, value),
        Some((leaf, Node::Leaf { key: existing, .. })) => {
            // Two leaves in one subtree: split on this depth's bit. The
            // keys differ, so some depth below 256 separates them.
            let existing_goes_right = bit(existing, depth);
            let (mut left, mut right) = (None, None);
            if existing_goes_right {
                right = Some(Arc::clone(leaf));
            } else {
                left = Some(Arc::clone(leaf));
            }
            if bit(&key, depth) {
                right = Some(insert(right.as_ref(), key, value, depth + 1));
            } else {
                left = Some(insert(left.as_ref(), key, value, depth + 1));
            }
            Node::inner(left, right)
        }
        Some((_, Node::Inner { left, right, .. })) => {
            if bit(&key, depth) {
                Node::inner(left.clone(), Some(insert(right.as_ref(), key, value, depth + 1)))
            } else {
                Node::inner(Some(insert(left.as_ref(), key, value, depth + 1)), right.clone())
            }
        }
    }
}

/// The map of thread keys to thread digests.
#[derive(Clone, Debug, Default)]
pub struct ThreadMap {
    root: Option<Arc<Node>>,
    len: usize,
}

impl ThreadMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of threads.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The root hash ([`EMPTY`] for no threads).
    pub fn root(&self) -> Hash {
        self.root.as_ref().map_or(EMPTY, |n| n.hash())
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &Hash) -> Option<Hash> {
        let mut node = self.root.as_ref();
        let mut depth = 0;
        while let Some(current) = node {
            match current.as_ref() {
                Node::Leaf { key: k, value, .. } => return (k == key).then_some(*value),
                Node::Inner { left, right, .. } => {
                    node = if bit(key, depth) { right.as_ref() } else { left.as_ref() };
                    depth += 1;
                }
            }
        }
        None
    }

    /// Sets `key` to `value`.
    pub fn set(&mut self, key: Hash, value: Hash) {
        if self.get(&key).is_none() {
            self.len += 1;
        }
        self.root = Some(insert(self.root.as_ref(), key, value, 0));
    }

    /// The proof that `key` holds its value: sibling hashes from the root
    /// down. `None` if the map has no such key.
    pub fn proof(&self, key: &Hash) -> Option<Vec<Hash>> {
        let mut siblings = Vec::new();
        let mut node = self.root.as_ref();
        let mut depth = 0;
        while let Some(current) = node {
            match current.as_ref() {
                Node::Leaf { key: k, .. } => return (k == key).then_some(siblings),
                Node::Inner { left, right, .. } => {
                    let side = |n: &Option<Arc<Node>>| n.as_ref().map_or(EMPTY, |n| n.hash());
                    if bit(key, depth) {
                        siblings.push(side(left));
                        node = right.as_ref();
                    } else {
                        siblings.push(side(right));
                        node = left.as_ref();
                    }
                    depth += 1;
                }
            }
        }
        None
    }
}

/// Why a thread-map proof failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapProofError {
    #[error("the proof has {0} hashes, more than a 256-bit key allows")]
    TooLong(usize),
    #[error("the proof does not lead to the map root")]
    RootMismatch,
}

/// The root that `proof` (siblings from the root down) gives for `key`
/// holding `value`.
pub fn root_from_proof(key: &Hash, value: &Hash, proof: &[Hash]) -> Result<Hash, MapProofError> {
    if proof.len() > PROOF_MAX {
        return Err(MapProofError::TooLong(proof.len()));
    }
    let mut hash = leaf_hash(key, value);
    for (depth, sibling) in proof.iter().enumerate().rev() {
        hash = if bit(key, depth) {
            inner_hash(sibling, &hash)
        } else {
            inner_hash(&hash, sibling)
        };
    }
    Ok(hash)
}

/// Checks that `key` holds `value` in the map with root `root`.
pub fn verify_proof(key: &Hash, value: &Hash, proof: &[Hash], root: &Hash) -> Result<(), MapProofError> {
    if root_from_proof(key, value, proof)? == *root {
        Ok(())
    } else {
        Err(MapProofError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Hash {
        Sha256::digest(i.to_be_bytes()).into()
    }

    /// The root from first principles: recursion over the sorted leaves.
    fn reference_root(leaves: &[(Hash, Hash)], depth: usize) -> Hash {
        match leaves {
            [] => EMPTY,
            [(k, v)] => leaf_hash(k, v),
            _ => {
                let (left, right): (Vec<_>, Vec<_>) = leaves.iter().partition(|(k, _)| !bit(k, depth));
                inner_hash(&reference_root(&left, depth + 1), &reference_root(&right, depth + 1))
            }
        }
    }

    #[test]
    fn root_is_a_function_of_the_leaves_and_every_proof_holds() {
        let mut map = ThreadMap::new();
        assert_eq!(map.root(), EMPTY);
        let mut leaves = Vec::new();
        for i in 0..300u32 {
            let (k, v) = (key(i), key(i + 10_000));
            map.set(k, v);
            leaves.push((k, v));
        }
        // Updates in place, in another order.
        for i in (0..300u32).step_by(7) {
            let v = key(i + 20_000);
            map.set(key(i), v);
            leaves.iter_mut().find(|(k, _)| *k == key(i)).expect("present").1 = v;
        }
        assert_eq!(map.len(), 300);
        assert_eq!(map.root(), reference_root(&leaves, 0));
        for (k, v) in &leaves {
            let proof = map.proof(k).expect("present");
            assert!(proof.len() < 40, "a proof is about log2(n) long");
            verify_proof(k, v, &proof, &map.root()).expect("proof holds");
            assert_eq!(
                verify_proof(k, &key(1), &proof, &map.root()),
                Err(MapProofError::RootMismatch)
            );
        }
        assert!(map.proof(&key(5000)).is_none());
    }

    #[test]
    fn an_old_copy_keeps_its_root() {
        let mut map = ThreadMap::new();
        map.set(key(1), key(2));
        let before = map.clone();
        let root = map.root();
        map.set(key(3), key(4));
        map.set(key(1), key(5));
        assert_eq!(before.root(), root);
        assert_eq!(before.get(&key(1)), Some(key(2)));
        assert_eq!(map.get(&key(1)), Some(key(5)));
        assert_eq!(before.len(), 1);
    }

    #[test]
    fn a_single_leaf_is_the_root_and_keys_sharing_a_long_prefix_split_deep() {
        let mut map = ThreadMap::new();
        let a = [0u8; 32];
        let mut b = [0u8; 32];
        b[31] = 1; // differs in the last bit only
        map.set(a, key(1));
        assert_eq!(map.root(), leaf_hash(&a, &key(1)));
        assert_eq!(map.proof(&a), Some(vec![]));
        map.set(b, key(2));
        let proof = map.proof(&b).expect("present");
        assert_eq!(proof.len(), 256);
        verify_proof(&b, &key(2), &proof, &map.root()).expect("holds");
        let mut too_long = proof.clone();
        too_long.push(EMPTY);
        assert_eq!(
            verify_proof(&b, &key(2), &too_long, &map.root()),
            Err(MapProofError::TooLong(257))
        );
    }
}
