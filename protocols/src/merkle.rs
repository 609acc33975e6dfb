//! Merkle trees over 32-byte leaves (receipt ids, weight-set ids), built from blake3's own tree.
//!
//! blake3 already hashes its input as a binary Merkle tree of 1 KiB chunks. Instead of hashing each
//! leaf and each pair separately (two million small hashes for a million leaves), the leaves are
//! laid end to end and the root is simply `blake3::derive_key(CONTEXT, leaves)`: the same SIMD-wide
//! code path as hashing the bytes once, and a root that anyone can recompute with any blake3
//! implementation. blake3's chunk and parent flags keep leaves and interior nodes apart, so there is
//! no second-preimage trick of the kind that plagued Bitcoin's tree.
//!
//! An inclusion proof names the leaf's chunk (its up to 32 neighbouring leaves) and the chaining
//! values of the sibling subtrees on the path to the root: at most 1 KiB plus 32 bytes per level,
//! `O(log n)`. It is checked with [`MerkleProof::verify`] from the root alone, without the tree.
//!
//! The leaf count fixes the tree's shape, and a path alone does not pin it down (a proof for leaf 5
//! of 100 leaves reads the same as one of 101). So the root that gets anchored is a commitment to
//! both: `derive_key(ROOT_CONTEXT, count as u64 LE || tree hash)`, where the tree hash is the blake3
//! hash of the leaves above. A proof that lies about the count leads to another root.

use crate::codec::{self, CodecError};
use blake3::hazmat::{
    ChainingValue, ContextKey, HasherExt, Mode, hash_derive_key_context, merge_subtrees_non_root,
    merge_subtrees_root,
};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// The derive-key context that separates Agora Merkle roots from every other blake3 use.
pub const CONTEXT: &str = "agora 2026-11 merkle v1";
/// The derive-key context of the root commitment over (leaf count, tree hash).
pub const ROOT_CONTEXT: &str = "agora 2026-11 merkle root v1";
/// Bytes in one leaf.
pub const LEAF_LEN: usize = 32;
/// Leaves in one blake3 chunk.
pub const LEAVES_PER_CHUNK: usize = blake3::CHUNK_LEN / LEAF_LEN;
/// The most leaves a tree (and so a proof) may claim: 2^40, far beyond any epoch.
pub const MAX_LEAVES: u64 = 1 << 40;
/// Chunks whose subtree chaining value the tree keeps, so a proof needs at most this many chunks
/// re-hashed. A power of two, which keeps every block a whole blake3 subtree.
const BLOCK_CHUNKS: u64 = 256;
/// Most siblings a valid proof can have (one per level of a tree of [`MAX_LEAVES`] leaves).
const MAX_SIBLINGS: usize = 64;
/// Largest encoded proof accepted.
pub const MAX_PROOF_LEN: usize = 8 + 8 + 8 + LEAVES_PER_CHUNK * LEAF_LEN + 8 + MAX_SIBLINGS * 32;

const CHUNK: u64 = blake3::CHUNK_LEN as u64;

fn context_key() -> &'static ContextKey {
    static KEY: OnceLock<ContextKey> = OnceLock::new();
    KEY.get_or_init(|| hash_derive_key_context(CONTEXT))
}

fn mode() -> Mode<'static> {
    Mode::DeriveKeyMaterial(context_key())
}

fn hasher() -> blake3::Hasher {
    blake3::Hasher::new_from_context_key(context_key())
}

/// The chaining value of a whole subtree that starts `offset` bytes into the input.
/// `offset` is always a multiple of the chunk length and `bytes` never longer than the subtree the
/// offset allows: both follow from splitting at powers of two, as every caller here does.
fn subtree_cv(offset: u64, bytes: &[u8]) -> ChainingValue {
    let mut hasher = hasher();
    hasher.set_input_offset(offset);
    hasher.update(bytes);
    hasher.finalize_non_root()
}

/// Chunks needed for `leaves` leaves.
fn chunk_count(leaves: u64) -> u64 {
    leaves.div_ceil(LEAVES_PER_CHUNK as u64)
}

/// The split blake3 uses: the left subtree holds the largest power of two of chunks below `len`.
fn left_len(len: u64) -> u64 {
    debug_assert!(len > 1);
    1 << (63 - (len - 1).leading_zeros())
}

/// The root of the empty tree.
pub fn empty_root() -> [u8; 32] {
    commit(0, hasher().finalize().as_bytes())
}

/// The root commitment over a tree of `leaf_count` leaves whose blake3 tree hash is `tree_hash`.
fn commit(leaf_count: u64, tree_hash: &[u8; 32]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(ROOT_CONTEXT);
    hasher.update(&leaf_count.to_le_bytes());
    hasher.update(tree_hash);
    *hasher.finalize().as_bytes()
}

/// A tree that can answer inclusion proofs. Building it costs about as much as hashing the leaves
/// once; it keeps the leaves and one chaining value per 256 chunks (8192 leaves).
#[derive(Debug, Clone)]
pub struct MerkleTree {
    leaves: Vec<[u8; LEAF_LEN]>,
    /// `levels[0]` holds one chaining value per block of [`BLOCK_CHUNKS`] chunks; each next level
    /// pairs the one below (an odd last node moves up unchanged). Empty for trees of one block.
    levels: Vec<Vec<ChainingValue>>,
    tree_hash: [u8; 32],
    root: [u8; 32],
}

impl MerkleTree {
    /// Builds the tree over `leaves` in order.
    pub fn new(leaves: Vec<[u8; LEAF_LEN]>) -> Self {
        let bytes = leaves.as_flattened();
        let block_bytes = (BLOCK_CHUNKS * CHUNK) as usize;
        if bytes.len() <= block_bytes {
            let tree_hash = *hasher().update(bytes).finalize().as_bytes();
            return Self {
                root: commit(leaves.len() as u64, &tree_hash),
                leaves,
                levels: Vec::new(),
                tree_hash,
            };
        }
        let blocks: Vec<ChainingValue> = bytes
            .chunks(block_bytes)
            .enumerate()
            .map(|(index, block)| subtree_cv(index as u64 * block_bytes as u64, block))
            .collect();
        let mut levels = vec![blocks];
        let mut tree_hash = [0u8; 32];
        // More than one block, so every level down to the root has at least two nodes.
        while let Some(level) = levels.last() {
            if level.len() <= 2 {
                if let [left, right] = level.as_slice() {
                    tree_hash = *merge_subtrees_root(left, right, mode()).as_bytes();
                }
                break;
            }
            let next: Vec<ChainingValue> = level
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => merge_subtrees_non_root(left, right, mode()),
                    // An odd last node moves up unchanged, as in blake3's own tree.
                    _ => pair.first().copied().unwrap_or_default(),
                })
                .collect();
            levels.push(next);
        }
        Self {
            root: commit(leaves.len() as u64, &tree_hash),
            leaves,
            levels,
            tree_hash,
        }
    }

    /// The root to anchor: a commitment to the leaf count and the tree hash.
    pub fn root(&self) -> [u8; 32] {
        self.root
    }

    /// The blake3 tree hash: `blake3::derive_key(CONTEXT, leaves laid end to end)`.
    pub fn tree_hash(&self) -> [u8; 32] {
        self.tree_hash
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The leaves in order.
    pub fn leaves(&self) -> &[[u8; LEAF_LEN]] {
        &self.leaves
    }

    /// The inclusion proof of leaf `index`, or `None` when there is no such leaf.
    pub fn prove(&self, index: usize) -> Option<MerkleProof> {
        let leaf_count = self.leaves.len() as u64;
        let index64 = index as u64;
        if index64 >= leaf_count {
            return None;
        }
        let chunks = chunk_count(leaf_count);
        let chunk = index64 / LEAVES_PER_CHUNK as u64;
        let first_leaf = (chunk as usize) * LEAVES_PER_CHUNK;
        let last_leaf = (first_leaf + LEAVES_PER_CHUNK).min(self.leaves.len());
        let bytes = self.leaves.as_flattened();

        // Inside the leaf's block: walk down from the block's range to the chunk, hashing siblings.
        let block = chunk / BLOCK_CHUNKS;
        let (mut start, mut end) = if self.levels.is_empty() {
            (0, chunks)
        } else {
            let start = block * BLOCK_CHUNKS;
            (start, (start + BLOCK_CHUNKS).min(chunks))
        };
        let mut top_down = Vec::new();
        while end - start > 1 {
            let mid = start + left_len(end - start);
            let (sibling_start, sibling_end) = if chunk < mid {
                let range = (mid, end);
                end = mid;
                range
            } else {
                let range = (start, mid);
                start = mid;
                range
            };
            let from = (sibling_start * CHUNK) as usize;
            let to = ((sibling_end * CHUNK) as usize).min(bytes.len());
            top_down.push(subtree_cv(sibling_start * CHUNK, bytes.get(from..to)?));
        }
        let mut siblings: Vec<[u8; 32]> = top_down.into_iter().rev().collect();

        // Above the block: the stored levels, skipping levels where the node moved up alone.
        let mut position = block as usize;
        for level in &self.levels {
            let sibling = if position.is_multiple_of(2) {
                level.get(position + 1)
            } else {
                level.get(position - 1)
            };
            if let Some(cv) = sibling {
                siblings.push(*cv);
            }
            position /= 2;
        }
        Some(MerkleProof {
            version: PROOF_VERSION,
            leaf_count,
            leaf_index: index64,
            chunk: self.leaves.get(first_leaf..last_leaf)?.to_vec(),
            siblings,
        })
    }
}

/// Format version of [`MerkleProof`].
pub const PROOF_VERSION: u16 = 1;

/// Why a proof was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    /// The bytes could not be decoded.
    #[error("cannot decode proof: {0}")]
    Codec(#[from] CodecError),
    /// The proof's shape does not fit its leaf count and index.
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    /// The proof is well formed but leads to another root or another leaf.
    #[error("proof does not match the root")]
    Mismatch,
}

/// Proof that a leaf sits at an index of a tree with a given root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerkleProof {
    /// Format version, [`PROOF_VERSION`].
    pub version: u16,
    /// Leaves in the tree: fixes the tree's shape.
    pub leaf_count: u64,
    /// Position of the proven leaf.
    pub leaf_index: u64,
    /// Every leaf of the proven leaf's chunk, in order.
    pub chunk: Vec<[u8; LEAF_LEN]>,
    /// Chaining values of the sibling subtrees, from the chunk up to the root.
    pub siblings: Vec<[u8; 32]>,
}

impl MerkleProof {
    /// Checks that `leaf` is leaf number `self.leaf_index` of the tree whose root is `root`.
    pub fn verify(&self, root: &[u8; 32], leaf: &[u8; LEAF_LEN]) -> Result<(), ProofError> {
        if self.version != PROOF_VERSION {
            return Err(ProofError::Malformed("unsupported proof version"));
        }
        if self.leaf_count == 0 || self.leaf_count > MAX_LEAVES {
            return Err(ProofError::Malformed("leaf count out of range"));
        }
        if self.leaf_index >= self.leaf_count {
            return Err(ProofError::Malformed("leaf index past the leaf count"));
        }
        let per_chunk = LEAVES_PER_CHUNK as u64;
        let chunks = chunk_count(self.leaf_count);
        let chunk = self.leaf_index / per_chunk;
        let expected_chunk_len = (self.leaf_count - chunk * per_chunk).min(per_chunk);
        if self.chunk.len() as u64 != expected_chunk_len {
            return Err(ProofError::Malformed("wrong number of leaves in the chunk"));
        }
        let position = (self.leaf_index % per_chunk) as usize;
        if self.chunk.get(position) != Some(leaf) {
            return Err(ProofError::Mismatch);
        }

        // The path's shape, top down: is the proven chunk in the left subtree at each split?
        let mut in_left = Vec::new();
        let (mut start, mut end) = (0u64, chunks);
        while end - start > 1 {
            let mid = start + left_len(end - start);
            if chunk < mid {
                in_left.push(true);
                end = mid;
            } else {
                in_left.push(false);
                start = mid;
            }
        }
        if in_left.len() != self.siblings.len() {
            return Err(ProofError::Malformed(
                "wrong number of siblings for the leaf count",
            ));
        }

        let chunk_bytes = self.chunk.as_flattened();
        let computed = if chunks == 1 {
            *hasher().update(chunk_bytes).finalize().as_bytes()
        } else {
            let mut cv = subtree_cv(chunk * CHUNK, chunk_bytes);
            let levels = self.siblings.len();
            let mut top = [0u8; 32];
            for (level, (sibling, left)) in
                self.siblings.iter().zip(in_left.iter().rev()).enumerate()
            {
                let (l, r) = if *left {
                    (&cv, sibling)
                } else {
                    (sibling, &cv)
                };
                if level + 1 == levels {
                    top = *merge_subtrees_root(l, r, mode()).as_bytes();
                } else {
                    cv = merge_subtrees_non_root(l, r, mode());
                }
            }
            top
        };
        if &commit(self.leaf_count, &computed) == root {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        }
    }

    /// Canonical bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    /// Decodes a proof (at most [`MAX_PROOF_LEN`] bytes). Decoding checks only the format;
    /// [`MerkleProof::verify`] checks the rest.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProofError> {
        let proof: Self = codec::decode(bytes, MAX_PROOF_LEN)?;
        if proof.chunk.len() > LEAVES_PER_CHUNK || proof.siblings.len() > MAX_SIBLINGS {
            return Err(ProofError::Malformed("proof larger than any tree allows"));
        }
        Ok(proof)
    }
}
