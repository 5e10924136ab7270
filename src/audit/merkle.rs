//! RFC 6962 Merkle trees over event hashes: tree heads for checkpoints and inclusion proofs.
//!
//! Leaf hash = SHA-256(0x00 ‖ entry), node hash = SHA-256(0x01 ‖ left ‖ right); the entry
//! of a leaf is the 32-byte event hash. A tree of n leaves splits at the largest power of
//! two smaller than n (RFC 6962 §2.1).

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly smaller than `n` (n >= 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// Merkle tree hash of already-hashed leaves; SHA-256 of nothing for an empty tree.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// Builds a tree head leaf by leaf in O(log n) memory; equals `root` of the same leaves.
#[derive(Debug, Clone, Default)]
pub struct TreeBuilder {
    /// Perfect subtrees, largest first: (leaf count, hash).
    stack: Vec<(u64, Hash)>,
    size: u64,
}

impl TreeBuilder {
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (1u64, leaf);
        while let Some(&(n, h)) = self.stack.last() {
            if n != node.0 {
                break;
            }
            self.stack.pop();
            node = (n * 2, node_hash(&h, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return Sha256::digest([]).into();
        };
        for (_, h) in it {
            acc = node_hash(h, &acc);
        }
        acc
    }
}

/// The audit path of leaf `index` (RFC 6962 §2.1.1), nearest sibling first.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    collect_path(leaves, index, &mut path);
    Some(path)
}

fn collect_path(leaves: &[Hash], index: usize, path: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if index < k {
        collect_path(&leaves[..k], index, path);
        path.push(root(&leaves[k..]));
    } else {
        collect_path(&leaves[k..], index - k, path);
        path.push(root(&leaves[..k]));
    }
}

/// Recompute the root from a leaf and its audit path (RFC 9162 §2.1.3.2).
pub fn root_from_proof(leaf: &Hash, index: u64, size: u64, path: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if sn == 0 {
            return None;
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
    (sn == 0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn builder_matches_recursive_root() {
        for n in 0..70 {
            let l = leaves(n);
            let mut b = TreeBuilder::default();
            for x in &l {
                b.push(*x);
            }
            assert_eq!(b.root(), root(&l), "n={n}");
            assert_eq!(b.size(), n as u64);
        }
    }

    #[test]
    fn every_proof_verifies_and_a_wrong_leaf_does_not() {
        for n in 1..40 {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = inclusion_proof(&l, i).unwrap();
                assert_eq!(root_from_proof(&l[i], i as u64, n as u64, &p), Some(r));
                let other = leaf_hash(b"other");
                assert_ne!(root_from_proof(&other, i as u64, n as u64, &p), Some(r));
                if n > 1 {
                    let j = (i + 1) % n;
                    assert_ne!(root_from_proof(&l[i], j as u64, n as u64, &p), Some(r));
                }
            }
        }
    }

    /// RFC 6962 hashing on a hand-built three-leaf tree: MTH = H(1 ‖ H(1 ‖ a ‖ b) ‖ c).
    #[test]
    fn three_leaves_by_hand() {
        let e: Vec<Hash> = [b"a", b"b", b"c"].iter().map(|x| leaf_hash(*x)).collect();
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(b"a");
        let a: Hash = h.finalize().into();
        assert_eq!(e[0], a);
        assert_eq!(root(&e), node_hash(&node_hash(&e[0], &e[1]), &e[2]));
    }

    /// The empty tree's hash is SHA-256 of the empty string (RFC 6962 §2.1).
    #[test]
    fn empty_tree() {
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
