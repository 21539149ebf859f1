//! One checksum per state prefix, and the state root committing to them all.
//!
//! A record's state prefix is the first byte of its key. The full key,
//! prefix byte included, is what gets hashed, so a record's element does not
//! depend on how it is routed and [`PrefixChecksums::total`] equals the
//! single checksum of all records.
//!
//! The state root is
//!
//! ```text
//! SHA-256("HEADWAY-V1-STATE-ROOT" || for each prefix p, ascending, whose
//!         checksum is not the identity: p (1 byte) || checksum (32 bytes))
//! ```

use core::fmt;
use core::ops::{AddAssign, SubAssign};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::checksum::write_hex;
use crate::record::{Record, state_prefix};
use crate::{Checksum, Error, RecordHasher};

/// The tag the state root hash starts with.
pub const STATE_ROOT_TAG: &[u8] = b"HEADWAY-V1-STATE-ROOT";

/// Number of state prefixes: every value of a key's first byte.
pub const PREFIX_COUNT: usize = 256;

/// One EllipticSum checksum per one-byte state prefix.
///
/// Records are routed by the first byte of their key; records with an empty
/// key have no prefix and are refused with [`Error::EmptyKey`]. Prefixes
/// whose checksum is the identity (no records, or all removed) are absent
/// from [`PrefixChecksums::iter`] and from the state root.
#[derive(Clone, PartialEq, Eq)]
pub struct PrefixChecksums {
    /// Indexed by prefix.
    sums: Box<[Checksum; PREFIX_COUNT]>,
}

impl PrefixChecksums {
    /// All 256 prefixes at the identity (the empty state).
    pub fn new() -> Self {
        Self {
            sums: Box::new([Checksum::identity(); PREFIX_COUNT]),
        }
    }

    /// Builds the per-prefix checksums of `records`, hashing in parallel.
    /// Equal to adding the records one by one.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyKey`] if any record has an empty key.
    pub fn par_from_records<R: Record + Sync>(
        hasher: &RecordHasher,
        records: &[R],
    ) -> Result<Self, Error> {
        if records.iter().any(|record| record.key().is_empty()) {
            return Err(Error::EmptyKey);
        }
        Ok(records
            .par_iter()
            .fold(Self::new, |mut sums, record| {
                let key = record.key();
                if let Some(prefix) = state_prefix(key) {
                    sums.sums[usize::from(prefix)] += hasher.hash_record(key, record.value());
                }
                sums
            })
            .reduce(Self::new, |mut a, b| {
                a += &b;
                a
            }))
    }

    /// The checksum of the records under `prefix`.
    pub fn get(&self, prefix: u8) -> Checksum {
        self.sums[usize::from(prefix)]
    }

    /// Replaces the checksum of `prefix` (for example with one received from a
    /// peer or loaded from storage).
    pub fn set(&mut self, prefix: u8, checksum: Checksum) {
        self.sums[usize::from(prefix)] = checksum;
    }

    /// The prefixes whose checksum is not the identity, ascending, with their
    /// checksums: exactly what the state root commits to.
    pub fn iter(&self) -> impl Iterator<Item = (u8, Checksum)> + '_ {
        (0..=u8::MAX)
            .zip(self.sums.iter())
            .filter(|(_, sum)| !sum.is_identity())
            .map(|(prefix, sum)| (prefix, *sum))
    }

    /// Whether every prefix is at the identity.
    pub fn is_empty(&self) -> bool {
        self.sums.iter().all(Checksum::is_identity)
    }

    /// Adds the record to the checksum of its key's prefix.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyKey`] if `key` is empty; nothing changes then.
    pub fn add_record(
        &mut self,
        hasher: &RecordHasher,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), Error> {
        let slot = self.slot(key)?;
        slot.add_record(hasher, key, value);
        Ok(())
    }

    /// Removes the record from the checksum of its key's prefix.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyKey`] if `key` is empty; nothing changes then.
    pub fn remove_record(
        &mut self,
        hasher: &RecordHasher,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), Error> {
        let slot = self.slot(key)?;
        slot.remove_record(hasher, key, value);
        Ok(())
    }

    /// Replaces `(key, old_value)` with `(key, new_value)` in the checksum of
    /// the key's prefix.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyKey`] if `key` is empty; nothing changes then.
    pub fn update_record(
        &mut self,
        hasher: &RecordHasher,
        key: &[u8],
        old_value: &[u8],
        new_value: &[u8],
    ) -> Result<(), Error> {
        let slot = self.slot(key)?;
        slot.update_record(hasher, key, old_value, new_value);
        Ok(())
    }

    /// Adds records in bulk, hashing in parallel.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyKey`] if any record has an empty key; nothing changes then.
    pub fn par_add_records<R: Record + Sync>(
        &mut self,
        hasher: &RecordHasher,
        records: &[R],
    ) -> Result<(), Error> {
        *self += &Self::par_from_records(hasher, records)?;
        Ok(())
    }

    /// Removes records in bulk, hashing in parallel.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyKey`] if any record has an empty key; nothing changes then.
    pub fn par_remove_records<R: Record + Sync>(
        &mut self,
        hasher: &RecordHasher,
        records: &[R],
    ) -> Result<(), Error> {
        *self -= &Self::par_from_records(hasher, records)?;
        Ok(())
    }

    /// The checksum of all records, whatever their prefix.
    pub fn total(&self) -> Checksum {
        self.sums.iter().sum()
    }

    /// The state root, the commitment to every non-identity prefix checksum:
    /// `SHA-256("HEADWAY-V1-STATE-ROOT" || p || checksum(p) || ...)` over the
    /// prefixes `p` in ascending order whose checksum is not the identity,
    /// each checksum as its 32-byte encoding. Compresses each such checksum
    /// once.
    pub fn state_root(&self) -> StateRoot {
        let mut hash = Sha256::new();
        hash.update(STATE_ROOT_TAG);
        for (prefix, checksum) in self.iter() {
            hash.update([prefix]);
            hash.update(checksum.to_bytes());
        }
        StateRoot(hash.finalize().into())
    }

    /// The checksum slot of the key's prefix.
    fn slot(&mut self, key: &[u8]) -> Result<&mut Checksum, Error> {
        let prefix = state_prefix(key).ok_or(Error::EmptyKey)?;
        Ok(&mut self.sums[usize::from(prefix)])
    }
}

impl Default for PrefixChecksums {
    fn default() -> Self {
        Self::new()
    }
}

impl AddAssign<&PrefixChecksums> for PrefixChecksums {
    /// Adds prefix by prefix (the union of the two record multisets).
    fn add_assign(&mut self, other: &PrefixChecksums) {
        for (mine, theirs) in self.sums.iter_mut().zip(other.sums.iter()) {
            *mine += *theirs;
        }
    }
}

impl SubAssign<&PrefixChecksums> for PrefixChecksums {
    /// Subtracts prefix by prefix.
    fn sub_assign(&mut self, other: &PrefixChecksums) {
        for (mine, theirs) in self.sums.iter_mut().zip(other.sums.iter()) {
            *mine -= *theirs;
        }
    }
}

impl fmt::Debug for PrefixChecksums {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The 32-byte state root: SHA-256 over the tagged list of non-identity
/// prefix checksums (see [`PrefixChecksums::state_root`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateRoot([u8; 32]);

impl StateRoot {
    /// Wraps root bytes, for example read from a header.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The root's bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for StateRoot {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl From<StateRoot> for [u8; 32] {
    fn from(root: StateRoot) -> Self {
        root.0
    }
}

impl fmt::Display for StateRoot {
    /// Lowercase hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for StateRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateRoot(")?;
        write_hex(f, &self.0)?;
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_state_root_is_hash_of_tag() {
        let set = PrefixChecksums::new();
        assert!(set.is_empty());
        assert_eq!(set.iter().count(), 0);
        let expected: [u8; 32] = Sha256::digest(STATE_ROOT_TAG).into();
        assert_eq!(set.state_root().as_bytes(), &expected);
    }

    #[test]
    fn routing_by_first_key_byte_hashes_the_full_key() {
        let hasher = RecordHasher::headway();
        let mut set = PrefixChecksums::new();
        set.add_record(&hasher, b"\x02alice", b"1").unwrap();
        set.add_record(&hasher, b"\x02bob", b"2").unwrap();
        set.add_record(&hasher, b"\x09x", b"3").unwrap();
        assert_eq!(
            set.get(2),
            hasher.hash_record(b"\x02alice", b"1") + hasher.hash_record(b"\x02bob", b"2")
        );
        assert_eq!(set.get(9), hasher.hash_record(b"\x09x", b"3"));
        assert!(set.get(0).is_identity());
        let listed: Vec<u8> = set.iter().map(|(p, _)| p).collect();
        assert_eq!(listed, [2, 9]);
        assert_eq!(
            set.total(),
            hasher.sum_records([
                (&b"\x02alice"[..], &b"1"[..]),
                (b"\x02bob", b"2"),
                (b"\x09x", b"3")
            ])
        );

        // State root by hand.
        let mut hash = Sha256::new();
        hash.update(STATE_ROOT_TAG);
        hash.update([2u8]);
        hash.update(set.get(2).to_bytes());
        hash.update([9u8]);
        hash.update(set.get(9).to_bytes());
        let expected: [u8; 32] = hash.finalize().into();
        assert_eq!(set.state_root(), StateRoot::from(expected));

        // Removing everything under a prefix drops it from the root.
        set.remove_record(&hasher, b"\x09x", b"3").unwrap();
        assert_eq!(set.iter().count(), 1);
        set.update_record(&hasher, b"\x02bob", b"2", b"22").unwrap();
        assert_eq!(
            set.get(2),
            hasher.hash_record(b"\x02alice", b"1") + hasher.hash_record(b"\x02bob", b"22")
        );
    }

    #[test]
    fn empty_key_is_refused_without_change() {
        let hasher = RecordHasher::headway();
        let mut set = PrefixChecksums::new();
        assert_eq!(set.add_record(&hasher, b"", b"v"), Err(Error::EmptyKey));
        assert_eq!(set.remove_record(&hasher, b"", b"v"), Err(Error::EmptyKey));
        assert_eq!(
            set.update_record(&hasher, b"", b"v", b"w"),
            Err(Error::EmptyKey)
        );
        let records = [(&b"\x01a"[..], &b"1"[..]), (b"", b"2")];
        assert_eq!(set.par_add_records(&hasher, &records), Err(Error::EmptyKey));
        assert!(set.is_empty());
    }

    #[test]
    fn parallel_build_equals_sequential() {
        let hasher = RecordHasher::deso();
        let records: Vec<(Vec<u8>, Vec<u8>)> = (0u16..100)
            .map(|i| {
                (
                    vec![(i % 7) as u8, (i >> 8) as u8, i as u8],
                    i.to_le_bytes().to_vec(),
                )
            })
            .collect();
        let mut sequential = PrefixChecksums::new();
        for (k, v) in &records {
            sequential.add_record(&hasher, k, v).unwrap();
        }
        let parallel = PrefixChecksums::par_from_records(&hasher, &records).unwrap();
        assert_eq!(parallel, sequential);
        assert_eq!(parallel.state_root(), sequential.state_root());

        let mut set = parallel.clone();
        set.par_remove_records(&hasher, &records[..50]).unwrap();
        set.par_add_records(&hasher, &records[..50]).unwrap();
        assert_eq!(set, parallel);
        set.set(3, Checksum::identity());
        assert!(set.get(3).is_identity());
        assert_ne!(set.state_root(), parallel.state_root());
    }
}
