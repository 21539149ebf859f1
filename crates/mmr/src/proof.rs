//! Proofs and their verifiers.
//!
//! A proof is only a sequence of hashes. Which node each hash stands for is
//! derived by the verifier from parameters it already trusts (leaf counts,
//! leaf indices); nothing structural is read from the proof. The order of the
//! hashes is normative and specified in `docs/mmr.md`:
//!
//! - peaks are visited oldest (tallest) first;
//! - a peak with nothing known below it contributes its own hash;
//! - otherwise, level by level from the leaves up, every known node whose
//!   sibling is not known contributes that sibling, in ascending index order.

use crate::hash::{Hash, LeafHash, node_hash, root_from_peaks};
use crate::shape::{Peak, peaks};

/// The most hashes a proof may carry (2 MiB encoded). Decoding and every
/// verifier reject longer proofs before doing any work; generation refuses to
/// build them.
pub const MAX_PROOF_HASHES: usize = 1 << 16;

/// Length in bytes of one encoded proof item.
pub const PROOF_HASH_LEN: usize = 32;

/// A proof: nothing but a sequence of 32-byte hashes.
///
/// The canonical byte encoding is the concatenation of the hashes
/// ([`Proof::to_bytes`], [`Proof::from_bytes`]). For protobuf's
/// `repeated bytes`, map [`Proof::hashes`] and [`Proof::from_hashes`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proof {
    hashes: Vec<Hash>,
}

impl Proof {
    /// A proof made of `hashes`, in order. Not checked here: verifiers reject
    /// more than [`MAX_PROOF_HASHES`] and any other wrong length.
    #[must_use]
    pub fn from_hashes(hashes: Vec<Hash>) -> Self {
        Self { hashes }
    }

    /// The proof's hashes, in order.
    #[must_use]
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The proof's hashes, by value.
    #[must_use]
    pub fn into_hashes(self) -> Vec<Hash> {
        self.hashes
    }

    /// Number of hashes in the proof.
    #[must_use]
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether the proof has no hashes (a valid proof in a few cases, such
    /// as the only leaf of a one-leaf MMR).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The canonical encoding: the hashes concatenated.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        self.hashes.concat()
    }

    /// Decodes the canonical encoding, rejecting a length that is not a
    /// multiple of 32 or more than [`MAX_PROOF_HASHES`] hashes (checked before
    /// allocating).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProofError> {
        if !bytes.len().is_multiple_of(PROOF_HASH_LEN) {
            return Err(ProofError::BadEncodingLength { len: bytes.len() });
        }
        let count = bytes.len() / PROOF_HASH_LEN;
        check_proof_len(count)?;
        let mut hashes = Vec::with_capacity(count);
        for chunk in bytes.chunks_exact(PROOF_HASH_LEN) {
            let mut hash = [0u8; PROOF_HASH_LEN];
            hash.copy_from_slice(chunk);
            hashes.push(hash);
        }
        Ok(Self { hashes })
    }
}

/// Why a proof, or the parameters given with it, was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The encoded proof is not a whole number of 32-byte hashes.
    #[error("encoded proof is {len} bytes, not a multiple of 32")]
    BadEncodingLength {
        /// Length of the encoding, in bytes.
        len: usize,
    },
    /// The proof has more hashes than any proof may have.
    #[error("proof has {count} hashes, more than the limit of {max}")]
    TooManyHashes {
        /// Hashes in the proof.
        count: usize,
        /// [`MAX_PROOF_HASHES`].
        max: usize,
    },
    /// The proof ran out of hashes before the root could be computed.
    #[error("proof is too short: it has {len} hashes and more are needed")]
    TooShort {
        /// Hashes in the proof.
        len: usize,
    },
    /// Hashes were left over once the root was computed.
    #[error("proof is too long: {used} of its {len} hashes were needed")]
    TooLong {
        /// Hashes the verification used.
        used: usize,
        /// Hashes in the proof.
        len: usize,
    },
    /// No leaves were given to prove.
    #[error("no leaves to prove")]
    NoLeaves,
    /// A leaf index is not below the leaf count.
    #[error("leaf index {leaf_index} is out of range for {leaf_count} leaves")]
    LeafIndexOutOfRange {
        /// The offending index.
        leaf_index: u64,
        /// The trusted leaf count.
        leaf_count: u64,
    },
    /// Leaf indices are not in ascending order.
    #[error("leaf indices are not sorted: {next} follows {previous}")]
    UnsortedLeafIndices {
        /// The earlier index.
        previous: u64,
        /// The index that should have been larger.
        next: u64,
    },
    /// A leaf index appears twice.
    #[error("leaf index {leaf_index} appears more than once")]
    DuplicateLeafIndex {
        /// The repeated index.
        leaf_index: u64,
    },
    /// A range of leaves is empty or does not fit below the leaf count.
    #[error("leaf range [{start}, {end}) is empty or not within {leaf_count} leaves")]
    InvalidRange {
        /// First leaf index of the range.
        start: u64,
        /// One past the last leaf index (saturated if it overflowed).
        end: u64,
        /// The trusted leaf count.
        leaf_count: u64,
    },
    /// An ancestry proof was asked for an old leaf count above the new one.
    #[error("old leaf count {old_leaf_count} is greater than new leaf count {new_leaf_count}")]
    AncestryOrder {
        /// Leaf count of the claimed prefix.
        old_leaf_count: u64,
        /// Leaf count of the MMR it should be a prefix of.
        new_leaf_count: u64,
    },
    /// The root computed from the leaves and proof is not the trusted root.
    #[error("computed root does not match the trusted root")]
    RootMismatch,
    /// In an ancestry proof, the peaks given do not hash to the old root.
    #[error("proof does not match the old root")]
    OldRootMismatch,
    /// In an ancestry proof, the computed new root is not the trusted new root.
    #[error("proof does not match the new root")]
    NewRootMismatch,
}

/// Verifies that `leaf` is the leaf at `leaf_index` of the MMR of
/// `leaf_count` leaves whose root is `root`.
pub fn verify_inclusion(
    root: &Hash,
    leaf_count: u64,
    leaf_index: u64,
    leaf: &LeafHash,
    proof: &Proof,
) -> Result<(), ProofError> {
    check_proof_len(proof.len())?;
    if leaf_index >= leaf_count {
        return Err(ProofError::LeafIndexOutOfRange {
            leaf_index,
            leaf_count,
        });
    }
    let mut items = Items::new(proof);
    let mut peak_hashes = PeakHashes::default();
    for peak in peaks(leaf_count) {
        let hash = if (peak.first_leaf..peak.end_leaf()).contains(&leaf_index) {
            let mut node = leaf.to_bytes();
            let mut index = leaf_index;
            for _ in 0..peak.height {
                let sibling = items.take()?;
                node = if index & 1 == 0 {
                    node_hash(&node, &sibling)
                } else {
                    node_hash(&sibling, &node)
                };
                index >>= 1;
            }
            node
        } else {
            items.take()?
        };
        peak_hashes.push(hash);
    }
    items.finish()?;
    check_root(
        root,
        &root_from_peaks(leaf_count, peak_hashes.as_slice()),
        ProofError::RootMismatch,
    )
}

/// Verifies that each `(leaf_index, leaf)` pair is a leaf of the MMR of
/// `leaf_count` leaves whose root is `root`, with one proof for all of them.
///
/// `leaves` must be non-empty and sorted by strictly ascending leaf index.
pub fn verify_multi(
    root: &Hash,
    leaf_count: u64,
    leaves: &[(u64, LeafHash)],
    proof: &Proof,
) -> Result<(), ProofError> {
    check_proof_len(proof.len())?;
    check_leaf_indices(leaves.iter().map(|&(index, _)| index), leaf_count)?;
    let mut items = Items::new(proof);
    let mut fold = Fold::default();
    let mut peak_hashes = PeakHashes::default();
    let mut rest = leaves;
    for peak in peaks(leaf_count) {
        let (below, after) = rest.split_at(rest.partition_point(|&(i, _)| i < peak.end_leaf()));
        rest = after;
        let hash = if below.is_empty() {
            items.take()?
        } else {
            fold.level.clear();
            fold.level
                .extend(below.iter().map(|&(index, leaf)| (index, leaf.to_bytes())));
            fold.peak_root(peak, &[], &mut items)?
        };
        peak_hashes.push(hash);
    }
    items.finish()?;
    check_root(
        root,
        &root_from_peaks(leaf_count, peak_hashes.as_slice()),
        ProofError::RootMismatch,
    )
}

/// Verifies that `leaves` are the leaves at indices `start..start + leaves.len()`
/// of the MMR of `leaf_count` leaves whose root is `root`.
///
/// A range proof is the multi-leaf proof of those indices (see [`verify_multi`]).
pub fn verify_range(
    root: &Hash,
    leaf_count: u64,
    start: u64,
    leaves: &[LeafHash],
    proof: &Proof,
) -> Result<(), ProofError> {
    check_proof_len(proof.len())?;
    let end = u64::try_from(leaves.len())
        .ok()
        .and_then(|len| start.checked_add(len));
    match end {
        Some(end) if start < end && end <= leaf_count => {}
        _ => {
            return Err(ProofError::InvalidRange {
                start,
                end: end.unwrap_or(u64::MAX),
                leaf_count,
            });
        }
    }
    // Indices cannot overflow: start + leaves.len() fits in a u64.
    let indexed: Vec<(u64, LeafHash)> = (start..).zip(leaves.iter().copied()).collect();
    verify_multi(root, leaf_count, &indexed, proof)
}

/// Verifies that the MMR of `old_leaf_count` leaves with root `old_root` is a
/// prefix of the MMR of `new_leaf_count` leaves with root `new_root`: the new
/// MMR is the old one with leaves appended.
///
/// `old_leaf_count` may equal `new_leaf_count` (then the roots must be equal)
/// or be zero (then `old_root` must be [`crate::empty_root`]).
pub fn verify_ancestry(
    old_root: &Hash,
    old_leaf_count: u64,
    new_root: &Hash,
    new_leaf_count: u64,
    proof: &Proof,
) -> Result<(), ProofError> {
    check_proof_len(proof.len())?;
    if old_leaf_count > new_leaf_count {
        return Err(ProofError::AncestryOrder {
            old_leaf_count,
            new_leaf_count,
        });
    }
    let mut items = Items::new(proof);
    let mut old_peaks = [(
        Peak {
            height: 0,
            first_leaf: 0,
        },
        [0u8; 32],
    ); 64];
    let mut old_len = 0;
    for (slot, peak) in old_peaks.iter_mut().zip(peaks(old_leaf_count)) {
        *slot = (peak, items.take()?);
        old_len += 1;
    }
    let old_peaks = &old_peaks[..old_len];
    let old_peak_hashes: PeakHashes = old_peaks.iter().map(|&(_, hash)| hash).collect();

    let mut fold = Fold::default();
    let mut new_peak_hashes = PeakHashes::default();
    let mut rest = old_peaks;
    for peak in peaks(new_leaf_count) {
        // Old peaks are aligned perfect trees inside [0, old_leaf_count), so
        // each lies wholly inside one new peak; take those inside this one.
        let (inside, after) =
            rest.split_at(rest.partition_point(|(old, _)| old.first_leaf < peak.end_leaf()));
        rest = after;
        let hash = match inside {
            [] => items.take()?,
            [(old, hash)] if old.height == peak.height => *hash,
            _ => {
                fold.level.clear();
                fold.peak_root(peak, inside, &mut items)?
            }
        };
        new_peak_hashes.push(hash);
    }
    items.finish()?;
    check_root(
        old_root,
        &root_from_peaks(old_leaf_count, old_peak_hashes.as_slice()),
        ProofError::OldRootMismatch,
    )?;
    check_root(
        new_root,
        &root_from_peaks(new_leaf_count, new_peak_hashes.as_slice()),
        ProofError::NewRootMismatch,
    )
}

/// Rejects a proof longer than [`MAX_PROOF_HASHES`].
pub(crate) fn check_proof_len(count: usize) -> Result<(), ProofError> {
    if count > MAX_PROOF_HASHES {
        return Err(ProofError::TooManyHashes {
            count,
            max: MAX_PROOF_HASHES,
        });
    }
    Ok(())
}

/// Checks leaf indices are non-empty, strictly ascending and below `leaf_count`.
pub(crate) fn check_leaf_indices(
    indices: impl IntoIterator<Item = u64>,
    leaf_count: u64,
) -> Result<(), ProofError> {
    let mut previous: Option<u64> = None;
    for leaf_index in indices {
        if let Some(previous) = previous {
            if leaf_index == previous {
                return Err(ProofError::DuplicateLeafIndex { leaf_index });
            }
            if leaf_index < previous {
                return Err(ProofError::UnsortedLeafIndices {
                    previous,
                    next: leaf_index,
                });
            }
        }
        if leaf_index >= leaf_count {
            return Err(ProofError::LeafIndexOutOfRange {
                leaf_index,
                leaf_count,
            });
        }
        previous = Some(leaf_index);
    }
    match previous {
        None => Err(ProofError::NoLeaves),
        Some(_) => Ok(()),
    }
}

fn check_root(expected: &Hash, computed: &Hash, error: ProofError) -> Result<(), ProofError> {
    if expected == computed {
        Ok(())
    } else {
        Err(error)
    }
}

/// Reads a proof's hashes in order.
struct Items<'a> {
    hashes: &'a [Hash],
    used: usize,
}

impl<'a> Items<'a> {
    fn new(proof: &'a Proof) -> Self {
        Self {
            hashes: proof.hashes(),
            used: 0,
        }
    }

    fn take(&mut self) -> Result<Hash, ProofError> {
        let hash = self.hashes.get(self.used).ok_or(ProofError::TooShort {
            len: self.hashes.len(),
        })?;
        self.used += 1;
        Ok(*hash)
    }

    fn finish(self) -> Result<(), ProofError> {
        if self.used == self.hashes.len() {
            Ok(())
        } else {
            Err(ProofError::TooLong {
                used: self.used,
                len: self.hashes.len(),
            })
        }
    }
}

/// Up to 64 peak hashes on the stack (a `u64` leaf count has at most 64 peaks).
struct PeakHashes {
    hashes: [Hash; 64],
    len: usize,
}

impl Default for PeakHashes {
    fn default() -> Self {
        Self {
            hashes: [[0; 32]; 64],
            len: 0,
        }
    }
}

impl PeakHashes {
    fn push(&mut self, hash: Hash) {
        // Peaks come from `peaks(leaf_count)`, at most 64; a 65th is ignored
        // rather than panicking (it cannot happen).
        if let Some(slot) = self.hashes.get_mut(self.len) {
            *slot = hash;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[Hash] {
        self.hashes.get(..self.len).unwrap_or(&[])
    }
}

impl FromIterator<Hash> for PeakHashes {
    fn from_iter<I: IntoIterator<Item = Hash>>(iter: I) -> Self {
        let mut peaks = Self::default();
        for hash in iter {
            peaks.push(hash);
        }
        peaks
    }
}

/// Scratch space for computing a peak from known nodes and proof hashes.
#[derive(Default)]
struct Fold {
    /// Known nodes at the current level, `(index, hash)`, ascending index.
    level: Vec<(u64, Hash)>,
    next: Vec<(u64, Hash)>,
}

impl Fold {
    /// Computes the hash of `peak` from the known nodes: `self.level` (at
    /// level 0) plus `known` (nodes at higher levels, given as the peaks that
    /// cover them), taking each missing sibling from `items`.
    fn peak_root(
        &mut self,
        peak: Peak,
        known: &[(Peak, Hash)],
        items: &mut Items<'_>,
    ) -> Result<Hash, ProofError> {
        for level in 0..peak.height {
            for &(node, hash) in known.iter().filter(|(node, _)| node.height == level) {
                let index = node.index();
                let at = self.level.partition_point(|&(i, _)| i < index);
                self.level.insert(at, (index, hash));
            }
            self.next.clear();
            let mut pending = self.level.iter().peekable();
            while let Some(&(index, hash)) = pending.next() {
                let parent = if index & 1 == 1 {
                    node_hash(&items.take()?, &hash)
                } else if let Some(&(_, right)) = pending.next_if(|&&(i, _)| i == index | 1) {
                    node_hash(&hash, &right)
                } else {
                    node_hash(&hash, &items.take()?)
                };
                self.next.push((index >> 1, parent));
            }
            std::mem::swap(&mut self.level, &mut self.next);
        }
        // All known nodes lie under `peak`, so exactly one node remains.
        self.level
            .first()
            .map(|&(_, hash)| hash)
            .ok_or(ProofError::TooShort {
                len: items.hashes.len(),
            })
    }
}
