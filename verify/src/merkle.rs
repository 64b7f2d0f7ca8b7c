//! The RFC 6962 / RFC 9162 Merkle tree: incremental roots, proof building
//! from stored perfect subtrees, and pure proof verification.
//!
//! A *perfect node* `(level, index)` is the root of the perfect subtree over
//! leaves `[index << level, (index + 1) << level)`. The store keeps every
//! perfect node, so any subtree hash, root or proof needs O(log n) reads.

use std::collections::BTreeMap;

use crate::hash::{empty_root, node_hash, Hash};
use crate::Result;

/// Where proof building reads perfect nodes from (the store, or memory in tests).
pub trait NodeSource {
    fn perfect_node(&self, level: u32, index: u64) -> Result<Hash>;
}

/// The largest power of two strictly smaller than `n` (n >= 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The reference definition MTH(D[n]) of RFC 6962 §2.1, over leaf hashes.
/// Recursive and slow: for tests and as the specification.
pub fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

/// The right edge of the tree: the roots of the perfect subtrees that make up
/// a tree of `size` leaves, largest first. Enough to append and to compute
/// the root without reading anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

/// A perfect node completed by an append: (level, index, hash).
pub type CompletedNode = (u32, u64, Hash);

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from its parts; `nodes.len()` must equal the number
    /// of set bits in `size`.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Self> {
        (nodes.len() == size.count_ones() as usize).then_some(Self { size, nodes })
    }

    /// Reads the frontier of a tree of `size` leaves from a node source.
    pub fn load(source: &dyn NodeSource, size: u64) -> Result<Self> {
        let mut nodes = Vec::with_capacity(size.count_ones() as usize);
        let mut begin = 0u64;
        for level in (0..64u32).rev() {
            if size & (1u64 << level) != 0 {
                nodes.push(source.perfect_node(level, begin >> level)?);
                begin += 1u64 << level;
            }
        }
        Ok(Self { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends a leaf and returns every perfect node it completes, the leaf
    /// itself first, in increasing level.
    pub fn push(&mut self, leaf: Hash) -> Vec<CompletedNode> {
        let index = self.size;
        let mut completed = vec![(0, index, leaf)];
        let mut hash = leaf;
        let mut level = 0u32;
        while (index >> level) & 1 == 1 {
            let left = self.nodes.pop().expect("frontier has a node for every set bit of size");
            hash = node_hash(&left, &hash);
            level += 1;
            completed.push((level, index >> level, hash));
        }
        self.nodes.push(hash);
        self.size += 1;
        completed
    }

    /// MTH of the whole tree.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(last) => iter.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}

/// Computes subtree hashes from perfect nodes, remembering each range so
/// that a proof reads every node at most once.
struct SubtreeHasher<'a> {
    source: &'a dyn NodeSource,
    memo: BTreeMap<(u64, u64), Hash>,
}

impl<'a> SubtreeHasher<'a> {
    fn new(source: &'a dyn NodeSource) -> Self {
        Self {
            source,
            memo: BTreeMap::new(),
        }
    }

    /// MTH(D[begin:end]) for a range that appears in RFC 6962 recursions.
    fn hash(&mut self, begin: u64, end: u64) -> Result<Hash> {
        let n = end - begin;
        if n.is_power_of_two() && begin.is_multiple_of(n) {
            let level = n.trailing_zeros();
            return self.source.perfect_node(level, begin >> level);
        }
        if let Some(hash) = self.memo.get(&(begin, end)) {
            return Ok(*hash);
        }
        let k = split_point(n);
        let hash = node_hash(&self.hash(begin, begin + k)?, &self.hash(begin + k, end)?);
        self.memo.insert((begin, end), hash);
        Ok(hash)
    }

    fn path(&mut self, leaf: u64, begin: u64, end: u64, out: &mut Vec<Hash>) -> Result<()> {
        let n = end - begin;
        if n <= 1 {
            return Ok(());
        }
        let k = split_point(n);
        if leaf < begin + k {
            self.path(leaf, begin, begin + k, out)?;
            out.push(self.hash(begin + k, end)?);
        } else {
            self.path(leaf, begin + k, end, out)?;
            out.push(self.hash(begin, begin + k)?);
        }
        Ok(())
    }

    fn subproof(&mut self, m: u64, begin: u64, end: u64, complete: bool, out: &mut Vec<Hash>) -> Result<()> {
        let n = end - begin;
        if m == n {
            if !complete {
                out.push(self.hash(begin, end)?);
            }
            return Ok(());
        }
        let k = split_point(n);
        if m <= k {
            self.subproof(m, begin, begin + k, complete, out)?;
            out.push(self.hash(begin + k, end)?);
        } else {
            self.subproof(m - k, begin + k, end, false, out)?;
            out.push(self.hash(begin, begin + k)?);
        }
        Ok(())
    }
}

/// MTH of the tree of the first `size` leaves.
pub fn root_at(source: &dyn NodeSource, size: u64) -> Result<Hash> {
    if size == 0 {
        return Ok(empty_root());
    }
    SubtreeHasher::new(source).hash(0, size)
}

/// The inclusion proof PATH(leaf, D[size]) of RFC 6962 §2.1.1.
pub fn inclusion_proof(source: &dyn NodeSource, leaf: u64, size: u64) -> Result<Vec<Hash>> {
    if leaf >= size {
        return Err(crate::Error::InvalidArgument(format!(
            "leaf index {leaf} is not below tree size {size}"
        )));
    }
    let mut out = Vec::new();
    SubtreeHasher::new(source).path(leaf, 0, size, &mut out)?;
    Ok(out)
}

/// The consistency proof PROOF(m, D[n]) of RFC 6962 §2.1.2.
pub fn consistency_proof(source: &dyn NodeSource, m: u64, n: u64) -> Result<Vec<Hash>> {
    if m == 0 || m > n {
        return Err(crate::Error::InvalidArgument(format!(
            "consistency proof needs 0 < first size ({m}) <= second size ({n})"
        )));
    }
    let mut out = Vec::new();
    SubtreeHasher::new(source).subproof(m, 0, n, true, &mut out)?;
    Ok(out)
}

/// Why a proof did not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("proof has the wrong number of hashes")]
    WrongLength,
    #[error("computed root does not match")]
    RootMismatch,
    #[error("first size {first} is larger than second size {second}")]
    SizesOutOfOrder { first: u64, second: u64 },
    #[error("a consistency proof from the empty tree proves nothing")]
    EmptyFirstTree,
    #[error("sizes are equal but the proof is not empty")]
    NonEmptyProofForEqualSizes,
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2). Pure: SHA-256 only.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &[u8],
) -> std::result::Result<(), ProofError> {
    let computed = root_from_inclusion(leaf_hash, index, size, proof)?;
    if computed[..] != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The root that an inclusion proof implies.
pub fn root_from_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> std::result::Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    Ok(r)
}

/// Verifies a consistency proof between two roots (RFC 9162 §2.1.4.2).
/// Roots are taken as bytes: a root of the wrong length simply never matches.
/// A proof from the empty tree is refused: it would prove nothing.
pub fn verify_consistency(
    first: u64,
    second: u64,
    proof: &[Hash],
    first_root: &[u8],
    second_root: &[u8],
) -> std::result::Result<(), ProofError> {
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    if first == 0 {
        return Err(ProofError::EmptyFirstTree);
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::NonEmptyProofForEqualSizes);
        }
        return if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let first_root_hash: Hash = first_root.try_into().map_err(|_| ProofError::RootMismatch)?;
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(&first_root_hash);
    }
    path.extend(proof.iter());
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*path[0], *path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr[..] != *first_root || sr[..] != *second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Perfect nodes held in memory: for tests, benchmarks and the auditor.
#[derive(Default)]
pub struct MemoryTree {
    frontier: Frontier,
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, leaf: Hash) {
        for (level, index, hash) in self.frontier.push(leaf) {
            let level = level as usize;
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            debug_assert_eq!(self.levels[level].len() as u64, index);
            self.levels[level].push(hash);
        }
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

impl NodeSource for MemoryTree {
    fn perfect_node(&self, level: u32, index: u64) -> Result<Hash> {
        self.levels
            .get(level as usize)
            .and_then(|nodes| nodes.get(index as usize))
            .copied()
            .ok_or_else(|| crate::Error::InvalidArgument(format!("no node at level {level} index {index}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn frontier_root_matches_naive_root() {
        let all = leaves(70);
        let mut tree = MemoryTree::new();
        for (i, leaf) in all.iter().enumerate() {
            assert_eq!(tree.root(), naive_root(&all[..i]));
            tree.push(*leaf);
            for size in 1..=tree.size() {
                assert_eq!(root_at(&tree, size).expect("root"), naive_root(&all[..size as usize]));
            }
        }
    }

    #[test]
    fn proofs_verify_for_all_small_trees() {
        let all = leaves(33);
        let mut tree = MemoryTree::new();
        all.iter().for_each(|leaf| tree.push(*leaf));
        for n in 1..=33u64 {
            let root = root_at(&tree, n).expect("root");
            for i in 0..n {
                let proof = inclusion_proof(&tree, i, n).expect("proof");
                verify_inclusion(&all[i as usize], i, n, &proof, &root).expect("inclusion");
            }
            for m in 1..=n {
                let proof = consistency_proof(&tree, m, n).expect("proof");
                let first = root_at(&tree, m).expect("root");
                verify_consistency(m, n, &proof, &first, &root).expect("consistency");
            }
        }
    }

    #[test]
    fn frontier_load_matches_pushes() {
        let mut tree = MemoryTree::new();
        leaves(45).into_iter().for_each(|leaf| tree.push(leaf));
        let loaded = Frontier::load(&tree, 45).expect("load");
        assert_eq!(loaded, tree.frontier);
        assert!(Frontier::from_parts(45, loaded.nodes().to_vec()).is_some());
        assert!(Frontier::from_parts(47, loaded.nodes().to_vec()).is_none());
    }
}
