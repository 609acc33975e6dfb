//! Merkle trees: roots equal blake3 over the laid-out leaves, every leaf proves, forgeries fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use agora_protocols::merkle::{self, MerkleProof, MerkleTree, ProofError};
use proptest::prelude::*;

fn leaves(n: usize) -> Vec<[u8; 32]> {
    (0..n as u64)
        .map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes())
        .collect()
}

fn check_all_leaves(n: usize, step: usize) {
    let leaves = leaves(n);
    let tree = MerkleTree::new(leaves.clone());
    let expected = blake3::derive_key(merkle::CONTEXT, leaves.as_flattened());
    assert_eq!(
        tree.tree_hash(),
        expected,
        "tree hash of {n} leaves is blake3 over them"
    );
    assert_ne!(tree.root(), expected, "the root also commits to the count");
    let mut indices: Vec<usize> = (0..n).step_by(step).collect();
    indices.push(n - 1);
    for i in indices {
        let proof = tree.prove(i).expect("leaf exists");
        proof
            .verify(&tree.root(), &leaves[i])
            .unwrap_or_else(|e| panic!("leaf {i} of {n}: {e}"));
        let bytes = proof.to_bytes().unwrap();
        assert!(bytes.len() <= merkle::MAX_PROOF_LEN);
        assert_eq!(MerkleProof::from_bytes(&bytes).unwrap(), proof);
    }
    assert!(tree.prove(n).is_none());
}

#[test]
fn every_leaf_of_every_tree_up_to_257_leaves_proves() {
    for n in 1..=257 {
        check_all_leaves(n, 1);
    }
}

#[test]
fn multi_block_trees_prove_their_leaves() {
    // The tree keeps one chaining value per 8192 leaves; these sizes cover whole blocks, partial
    // last blocks and levels with an odd node.
    for n in [
        8192,
        8193,
        16_384,
        16_385,
        3 * 8192 - 1,
        3 * 8192 + 33,
        5 * 8192 + 1,
        12 * 8192 + 5,
    ] {
        check_all_leaves(n, 331);
    }
}

#[test]
fn proofs_are_logarithmic_in_size() {
    let small = MerkleTree::new(leaves(64)).prove(0).unwrap();
    let large = MerkleTree::new(leaves(1 << 16)).prove(12_345).unwrap();
    // 2^16 leaves = 2^11 chunks: 11 siblings, and one chunk of 32 leaves.
    assert_eq!(large.siblings.len(), 11);
    assert_eq!(large.chunk.len(), 32);
    assert_eq!(small.siblings.len(), 1);
}

#[test]
fn empty_tree_has_the_empty_root() {
    let tree = MerkleTree::new(Vec::new());
    assert!(tree.is_empty());
    assert_eq!(tree.root(), merkle::empty_root());
    assert!(tree.prove(0).is_none());
}

#[test]
fn forged_proofs_fail() {
    for n in [1usize, 2, 33, 100, 257, 5000] {
        let leaves = leaves(n);
        let tree = MerkleTree::new(leaves.clone());
        let root = tree.root();
        let i = n / 2;
        let proof = tree.prove(i).unwrap();
        let leaf = leaves[i];

        // another leaf value
        let mut other = leaf;
        other[0] ^= 1;
        assert!(proof.verify(&root, &other).is_err());
        // another root
        let mut bad_root = root;
        bad_root[31] ^= 0x80;
        assert_eq!(proof.verify(&bad_root, &leaf), Err(ProofError::Mismatch));
        // a flipped bit in any sibling
        for s in 0..proof.siblings.len() {
            let mut forged = proof.clone();
            forged.siblings[s][7] ^= 4;
            assert!(forged.verify(&root, &leaf).is_err(), "sibling {s} of {n}");
        }
        // a flipped bit in a neighbouring leaf of the chunk
        if proof.chunk.len() > 1 {
            let mut forged = proof.clone();
            let j = (i % 32 + 1) % forged.chunk.len();
            forged.chunk[j][3] ^= 1;
            assert!(forged.verify(&root, &leaf).is_err());
        }
        // claiming another position or another count
        let mut forged = proof.clone();
        forged.leaf_index = (forged.leaf_index + 1) % n as u64;
        if n > 1 {
            assert!(forged.verify(&root, &leaf).is_err());
        }
        let mut forged = proof.clone();
        forged.leaf_count += 1;
        assert!(forged.verify(&root, &leaf).is_err());
        let mut forged = proof.clone();
        forged.leaf_count = 0;
        assert!(forged.verify(&root, &leaf).is_err());
        // a dropped or an extra sibling
        let mut forged = proof.clone();
        forged.siblings.push([0; 32]);
        assert!(forged.verify(&root, &leaf).is_err());
        if !proof.siblings.is_empty() {
            let mut forged = proof.clone();
            forged.siblings.pop();
            assert!(forged.verify(&root, &leaf).is_err());
        }
    }
}

#[test]
fn every_flipped_bit_of_an_encoded_proof_is_refused() {
    let leaves = leaves(300);
    let tree = MerkleTree::new(leaves.clone());
    let bytes = tree.prove(123).unwrap().to_bytes().unwrap();
    for bit in 0..bytes.len() * 8 {
        let mut forged = bytes.clone();
        forged[bit / 8] ^= 1 << (bit % 8);
        let ok = MerkleProof::from_bytes(&forged)
            .map(|p| p.verify(&tree.root(), &leaves[123]).is_ok())
            .unwrap_or(false);
        assert!(!ok, "bit {bit} flipped still verifies");
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_proof_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(proof) = MerkleProof::from_bytes(&bytes) {
            let _ = proof.verify(&[0u8; 32], &[0u8; 32]);
        }
    }

    #[test]
    fn random_proof_fields_never_panic_verification(
        count in any::<u64>(),
        index in any::<u64>(),
        chunk_len in 0usize..40,
        siblings in 0usize..70,
    ) {
        let proof = MerkleProof {
            version: merkle::PROOF_VERSION,
            leaf_count: count,
            leaf_index: index,
            chunk: vec![[1u8; 32]; chunk_len],
            siblings: vec![[2u8; 32]; siblings],
        };
        prop_assert!(proof.verify(&[0u8; 32], &[1u8; 32]).is_err());
    }
}
