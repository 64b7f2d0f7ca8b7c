//! Property tests: proofs agree with a naive recomputation of the root, and
//! any single-bit change to a proof, a leaf or a root breaks verification.

use caseledger_verify::hash::{leaf_hash, Hash};
use caseledger_verify::merkle::{self, naive_root, MemoryTree};
use proptest::prelude::*;

fn tree(size: u64) -> (Vec<Hash>, MemoryTree) {
    let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    let mut tree = MemoryTree::new();
    leaves.iter().for_each(|leaf| tree.push(*leaf));
    (leaves, tree)
}

fn flip(hash: &Hash, bit: usize) -> Hash {
    let mut out = *hash;
    out[bit / 8 % 32] ^= 1 << (bit % 8);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn inclusion_proofs_match_naive_root(size in 1u64..600, pick in any::<u64>(), bit in 0usize..256, which in any::<usize>()) {
        let (leaves, tree) = tree(size);
        let index = pick % size;
        let root = naive_root(&leaves);
        prop_assert_eq!(merkle::root_at(&tree, size).unwrap(), root);
        let proof = merkle::inclusion_proof(&tree, index, size).unwrap();
        prop_assert_eq!(merkle::root_from_inclusion(&leaves[index as usize], index, size, &proof).unwrap(), root);
        // A flipped bit in the leaf, the root, or any proof hash must fail.
        prop_assert!(merkle::verify_inclusion(&flip(&leaves[index as usize], bit), index, size, &proof, &root).is_err());
        prop_assert!(merkle::verify_inclusion(&leaves[index as usize], index, size, &proof, &flip(&root, bit)).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let at = which % bad.len();
            bad[at] = flip(&bad[at], bit);
            prop_assert!(merkle::verify_inclusion(&leaves[index as usize], index, size, &bad, &root).is_err());
        }
    }

    #[test]
    fn consistency_proofs_match_naive_roots(second in 1u64..600, pick in any::<u64>(), bit in 0usize..256, which in any::<usize>()) {
        let (leaves, tree) = tree(second);
        let first = pick % second + 1;
        let first_root = naive_root(&leaves[..first as usize]);
        let second_root = naive_root(&leaves);
        let proof = merkle::consistency_proof(&tree, first, second).unwrap();
        prop_assert!(merkle::verify_consistency(first, second, &proof, &first_root, &second_root).is_ok());
        prop_assert!(merkle::verify_consistency(first, second, &proof, &flip(&first_root, bit), &second_root).is_err());
        prop_assert!(merkle::verify_consistency(first, second, &proof, &first_root, &flip(&second_root, bit)).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let at = which % bad.len();
            bad[at] = flip(&bad[at], bit);
            prop_assert!(merkle::verify_consistency(first, second, &bad, &first_root, &second_root).is_err());
        }
    }
}
