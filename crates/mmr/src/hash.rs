//! The three domain-separated SHA-256 hashes of the construction.
//!
//! Fixed-size inputs (interior nodes, short leaves) are hashed by calling the
//! SHA-256 compression function directly on pre-padded blocks: no hasher
//! state, no buffering, no allocation. Everything else goes through
//! [`sha2::Sha256`]. Unit tests check both paths give the same digests.

use std::fmt;

use sha2::digest::generic_array::{GenericArray, typenum::U64};
use sha2::{Digest, Sha256};

/// A SHA-256 digest: a node of the MMR, a peak or a root.
pub type Hash = [u8; 32];

/// Domain prefix of a leaf hash: `SHA256(0x00 || data)`.
pub const LEAF_PREFIX: u8 = 0x00;
/// Domain prefix of an interior node hash: `SHA256(0x01 || left || right)`.
pub const NODE_PREFIX: u8 = 0x01;
/// Domain prefix of a root: `SHA256(0x02 || peaks… || u64_be(leaf_count))`.
pub const ROOT_PREFIX: u8 = 0x02;

/// The hash of a leaf, `SHA256(0x00 || data)`.
///
/// A distinct type so that a leaf's data (in Headway, a header hash) and the
/// leaf node computed from it cannot be confused: every verifier takes
/// `LeafHash`, and the only ways to get one are hashing data with
/// [`LeafHash::of`] or explicitly asserting with [`LeafHash::from_bytes`] that
/// 32 bytes already are such a hash (for example, read back from a store).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LeafHash(Hash);

impl LeafHash {
    /// Hashes a leaf's data: `SHA256(0x00 || data)`.
    #[must_use]
    pub fn of(data: &[u8]) -> Self {
        Self(leaf_digest(data))
    }

    /// Wraps 32 bytes that already are a leaf hash (`SHA256(0x00 || data)`).
    #[must_use]
    pub const fn from_bytes(bytes: Hash) -> Self {
        Self(bytes)
    }

    /// The 32 bytes of this leaf hash.
    #[must_use]
    pub const fn as_bytes(&self) -> &Hash {
        &self.0
    }

    /// The 32 bytes of this leaf hash, by value.
    #[must_use]
    pub const fn to_bytes(self) -> Hash {
        self.0
    }
}

impl fmt::Debug for LeafHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeafHash(")?;
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

/// The hash of an interior node: `SHA256(0x01 || left || right)`.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // 65 bytes of message: two blocks, the second holding the last byte of
    // `right`, the 0x80 terminator and the bit length 520.
    let mut first = [0u8; 64];
    first[0] = NODE_PREFIX;
    first[1..33].copy_from_slice(left);
    first[33..64].copy_from_slice(&right[..31]);
    let mut second = [0u8; 64];
    second[0] = right[31];
    second[1] = 0x80;
    second[56..64].copy_from_slice(&(65u64 * 8).to_be_bytes());
    let mut state = INITIAL_STATE;
    sha2::compress256(
        &mut state,
        &[
            GenericArray::<u8, U64>::from(first),
            GenericArray::<u8, U64>::from(second),
        ],
    );
    state_bytes(&state)
}

/// The root of an empty MMR: `SHA256(0x02 || u64_be(0))`.
#[must_use]
pub fn empty_root() -> Hash {
    root_from_peaks(0, &[])
}

/// `SHA256(0x02 || peaks[0] || … || peaks[k] || u64_be(leaf_count))`.
///
/// Callers guarantee that `peaks` are the peaks of an MMR of `leaf_count`
/// leaves, oldest (largest) first.
pub(crate) fn root_from_peaks(leaf_count: u64, peaks: &[Hash]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([ROOT_PREFIX]);
    for peak in peaks {
        hasher.update(peak);
    }
    hasher.update(leaf_count.to_be_bytes());
    hasher.finalize().into()
}

/// SHA-256 midstates over the root's message prefix `0x02 || peaks…`, one
/// per complete 64-byte block, so that the root after an append hashes only
/// what the append changed.
///
/// An append replaces the last `t` peaks (`t`: trailing one bits of the old
/// leaf count, one on average) and the count, which comes last; every block
/// before the first changed byte keeps its midstate. A root then costs the
/// blocks from there on plus the final one or two (about 2 compressions),
/// where hashing the whole message costs `⌈(17 + 32k) / 64⌉` (5 with 8 peaks).
#[derive(Debug, Clone, Default)]
pub(crate) struct RootMidstates {
    /// `states[i]`: the state after blocks `0..=i` of `0x02 || peaks…`.
    states: Vec<[u32; 8]>,
}

impl RootMidstates {
    /// Brings the midstates up to date with `peaks`, of which only the first
    /// `unchanged` are known to be the peaks of the last update.
    pub(crate) fn update(&mut self, peaks: &[Hash], unchanged: usize) {
        let kept = (1 + 32 * unchanged.min(peaks.len())) / 64;
        self.states.truncate(kept);
        let full = (1 + 32 * peaks.len()) / 64;
        let mut state = self.states.last().copied().unwrap_or(INITIAL_STATE);
        for block_index in self.states.len()..full {
            let mut block = [0u8; 64];
            prefix_bytes(peaks, 64 * block_index, &mut block);
            sha2::compress256(&mut state, &[GenericArray::<u8, U64>::from(block)]);
            self.states.push(state);
        }
    }

    /// The root of the MMR of `leaf_count` leaves whose peaks are `peaks`,
    /// the peaks of the last [`Self::update`].
    pub(crate) fn root(&self, leaf_count: u64, peaks: &[Hash]) -> Hash {
        let len = 1 + 32 * peaks.len();
        let done = 64 * self.states.len();
        debug_assert_eq!(self.states.len(), len / 64, "midstates out of date");
        // The tail (< 64 bytes), the count, 0x80 and the bit length: one
        // block when they fit in 64 bytes, else two.
        let mut tail = [0u8; 128];
        let rest = len - done;
        prefix_bytes(peaks, done, &mut tail[..rest]);
        tail[rest..rest + 8].copy_from_slice(&leaf_count.to_be_bytes());
        tail[rest + 8] = 0x80;
        let blocks = if rest + 8 + 1 + 8 <= 64 { 1 } else { 2 };
        // The message is at most 1 + 32·64 + 8 bytes: its bit length fits.
        let bits = (len as u64 + 8) * 8;
        tail[64 * blocks - 8..64 * blocks].copy_from_slice(&bits.to_be_bytes());
        let mut state = self.states.last().copied().unwrap_or(INITIAL_STATE);
        let first = GenericArray::<u8, U64>::clone_from_slice(&tail[..64]);
        if blocks == 1 {
            sha2::compress256(&mut state, &[first]);
        } else {
            let second = GenericArray::<u8, U64>::clone_from_slice(&tail[64..]);
            sha2::compress256(&mut state, &[first, second]);
        }
        state_bytes(&state)
    }
}

/// Copies bytes `from .. from + out.len()` of `0x02 || peaks…` into `out`.
fn prefix_bytes(peaks: &[Hash], from: usize, out: &mut [u8]) {
    let mut at = from;
    let mut written = 0;
    while written < out.len() {
        if at == 0 {
            out[0] = ROOT_PREFIX;
            at = 1;
            written = 1;
            continue;
        }
        let peak = &peaks[(at - 1) / 32];
        let offset = (at - 1) % 32;
        let n = (32 - offset).min(out.len() - written);
        out[written..written + n].copy_from_slice(&peak[offset..offset + n]);
        written += n;
        at += n;
    }
}

/// Longest leaf data whose padded message `0x00 || data || 0x80 || len`
/// fits in one 64-byte block.
const SINGLE_BLOCK_LEAF_DATA: usize = 64 - 1 - 1 - 8;

/// The SHA-256 initial hash value (FIPS 180-4, 5.3.3).
const INITIAL_STATE: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

fn leaf_digest(data: &[u8]) -> Hash {
    if data.len() <= SINGLE_BLOCK_LEAF_DATA {
        let mut block = [0u8; 64];
        block[0] = LEAF_PREFIX;
        block[1..=data.len()].copy_from_slice(data);
        block[data.len() + 1] = 0x80;
        // At most 55 bytes: the bit length always fits (and `as` is lossless).
        let bits = (data.len() as u64 + 1) * 8;
        block[56..64].copy_from_slice(&bits.to_be_bytes());
        let mut state = INITIAL_STATE;
        sha2::compress256(&mut state, &[GenericArray::<u8, U64>::from(block)]);
        state_bytes(&state)
    } else {
        let mut hasher = Sha256::new();
        hasher.update([LEAF_PREFIX]);
        hasher.update(data);
        hasher.finalize().into()
    }
}

fn state_bytes(state: &[u32; 8]) -> Hash {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(prefix: u8, parts: &[&[u8]]) -> Hash {
        let mut hasher = Sha256::new();
        hasher.update([prefix]);
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    #[test]
    fn leaf_hash_matches_sha256_for_every_length_around_the_block_boundary() {
        let data: Vec<u8> = (0u8..200).collect();
        for len in 0..data.len() {
            let slice = &data[..len];
            assert_eq!(
                LeafHash::of(slice).to_bytes(),
                reference(LEAF_PREFIX, &[slice]),
                "len {len}"
            );
        }
    }

    #[test]
    fn node_hash_matches_sha256() {
        let left = [0x5a; 32];
        let mut right = [0u8; 32];
        for (i, b) in right.iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(
            node_hash(&left, &right),
            reference(NODE_PREFIX, &[&left, &right])
        );
    }

    #[test]
    fn root_puts_the_count_after_the_peaks() {
        let peaks = [[7u8; 32], [9u8; 32]];
        assert_eq!(
            root_from_peaks(3, &peaks),
            reference(ROOT_PREFIX, &[&peaks[0], &peaks[1], &3u64.to_be_bytes()])
        );
    }

    #[test]
    fn midstate_roots_equal_whole_roots_for_every_peak_count_and_change() {
        // Every peak count 0..=64 (every alignment of the tail), each
        // reached from every shorter prefix of unchanged peaks.
        let all: Vec<Hash> = (0u8..64).map(|i| [i.wrapping_mul(37) ^ 0x5c; 32]).collect();
        for len in 0..=all.len() {
            for unchanged in 0..=len {
                let mut midstates = RootMidstates::default();
                // Start from other peaks that share the first `unchanged`.
                let mut before: Vec<Hash> = all[..len].to_vec();
                for peak in before.iter_mut().skip(unchanged) {
                    peak[0] ^= 0xff;
                }
                before.push([0xee; 32]);
                midstates.update(&before, 0);
                midstates.update(&all[..len], unchanged);
                let count = (len as u64) << 3 | 5;
                assert_eq!(
                    midstates.root(count, &all[..len]),
                    root_from_peaks(count, &all[..len]),
                    "{len} peaks, {unchanged} unchanged"
                );
            }
        }
    }

    #[test]
    fn empty_root_is_prefix_and_zero_count() {
        assert_eq!(empty_root(), reference(ROOT_PREFIX, &[&0u64.to_be_bytes()]));
    }

    #[test]
    fn domains_are_separated() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let mut concatenated = a.to_vec();
        concatenated.extend_from_slice(&b);
        assert_ne!(LeafHash::of(&concatenated).to_bytes(), node_hash(&a, &b));
    }
}
