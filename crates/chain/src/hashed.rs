//! Headers that carry their hash, computed once.
//!
//! Verifying a range of headers hashes every header (to check linkage), and
//! storing them hashes every header again (to index it and check the next
//! one links to it). [`Hashed`] lets the second use the first: its hash is
//! computed by [`Hashed::new`] from the value it holds, and there is no way
//! to set it from outside or to change the value afterwards, so a consumer
//! (such as `headway-store`) can rely on it as much as on hashing itself.

use std::ops::Deref;

use headway_wire::{
    BareHeader, CompactFields, CompactHeaders, Hash, Header, SignedHeader, WireError,
};

use crate::encoding::HeaderExt as _;

/// A value with a header in it: the header is what [`Hashed`] hashes.
pub trait HasHeader {
    /// The header.
    fn header(&self) -> &Header;
}

impl HasHeader for Header {
    fn header(&self) -> &Header {
        self
    }
}

impl HasHeader for SignedHeader {
    fn header(&self) -> &Header {
        &self.header
    }
}

impl HasHeader for BareHeader {
    fn header(&self) -> &Header {
        &self.header
    }
}

/// A header (or a signed or bare header) and its header hash, computed when
/// it was made. Read-only: it dereferences to the value, never mutably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed<T> {
    value: T,
    hash: Hash,
}

impl<T: HasHeader> Hashed<T> {
    /// Hashes `value`'s header ([`HeaderExt::hash`](crate::HeaderExt::hash)).
    #[must_use]
    pub fn new(value: T) -> Self {
        let hash = value.header().hash();
        Hashed { value, hash }
    }

    /// Hashes each of `values`.
    #[must_use]
    pub fn all(values: Vec<T>) -> Vec<Self> {
        values.into_iter().map(Hashed::new).collect()
    }
}

impl Hashed<BareHeader> {
    /// The bare headers of a compact range from `start_height`
    /// ([`CompactHeaders::expand`]), each hashed once: the hash that fills
    /// in the next header's parent is the one it carries.
    ///
    /// # Errors
    ///
    /// The range is malformed ([`CompactHeaders::expand`]).
    pub fn expand_compact(
        start_height: u64,
        compact: &CompactHeaders,
    ) -> Result<Vec<Self>, WireError> {
        let mut out = Vec::new();
        Self::expand_compact_into(start_height, compact, &mut out)?;
        Ok(out)
    }

    /// [`Hashed::expand_compact`] into `out` (cleared first, and again on
    /// error), so that a caller can reuse one vector for many ranges.
    ///
    /// # Errors
    ///
    /// As [`Hashed::expand_compact`].
    pub fn expand_compact_into(
        start_height: u64,
        compact: &CompactHeaders,
        out: &mut Vec<Self>,
    ) -> Result<(), WireError> {
        compact.expand_into(start_height, out, |value| {
            let hash = value.header.hash();
            (Hashed { value, hash }, hash)
        })
    }
}

/// A compact range ([`CompactHeaders`]) from a start height, with the hash
/// of each header, computed once by [`HashedCompact::new`] from the range's
/// columns: no header is made. Read-only, like [`Hashed`]: the hashes are
/// the headers' ([`header_fields_hash`](crate::header_fields_hash)), and a
/// consumer may rely on them as on hashing itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedCompact {
    start_height: u64,
    headers: CompactHeaders,
    hashes: Vec<Hash>,
}

impl HashedCompact {
    /// Checks `headers` as a range from `start_height`
    /// ([`CompactHeaders::hash_into`]) and hashes each header, into `hashes`
    /// (cleared first: a vector to reuse, see [`HashedCompact::into_hashes`]).
    ///
    /// # Errors
    ///
    /// The range is malformed; `hashes` is dropped with it.
    pub fn new(
        start_height: u64,
        headers: CompactHeaders,
        mut hashes: Vec<Hash>,
    ) -> Result<Self, WireError> {
        headers.hash_into(start_height, &mut hashes, crate::header_fields_hash)?;
        Ok(HashedCompact {
            start_height,
            headers,
            hashes,
        })
    }

    /// The first header's height.
    #[must_use]
    pub fn start_height(&self) -> u64 {
        self.start_height
    }

    /// The last header's height.
    #[must_use]
    pub fn last_height(&self) -> u64 {
        // Checked in `new`: the heights fit in u64 and there is a header.
        self.start_height + self.hashes.len() as u64 - 1
    }

    /// Headers in the range (never zero).
    #[must_use]
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Always false: a range has a header.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The range's columns.
    #[must_use]
    pub fn headers(&self) -> &CompactHeaders {
        &self.headers
    }

    /// The header hashes, in order.
    #[must_use]
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Each header's fields and the validator set it carries, in order
    /// (every header of the range).
    pub fn fields(&self) -> CompactFields<'_> {
        self.headers.fields(self.start_height, &self.hashes)
    }

    /// The headers, made and paired with their hashes (no header hashed
    /// again): for a consumer that needs them as structs.
    #[must_use]
    pub fn to_bare(&self) -> Vec<Hashed<BareHeader>> {
        let mut hashes = self.hashes.iter();
        let mut out = Vec::with_capacity(self.len());
        // Cannot fail: `new` accepted the range from this height.
        let _ = self
            .headers
            .expand_into(self.start_height, &mut out, |value| {
                let hash = hashes.next().copied().unwrap_or(Hash::ZERO);
                (Hashed { value, hash }, hash)
            });
        out
    }

    /// The hash vector, for another range to reuse.
    #[must_use]
    pub fn into_hashes(self) -> Vec<Hash> {
        self.hashes
    }
}

impl<T> Hashed<T> {
    /// The header hash (the block id).
    #[must_use]
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The value.
    #[must_use]
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The value, without its hash.
    #[must_use]
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> Deref for Hashed<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// A signed header as batch verification ([`verify_batch`](crate::verify_batch))
/// takes it: a plain [`SignedHeader`], hashed while it is verified, or a
/// [`Hashed`] one, whose hash is used. Sealed: the hash must be the header's.
pub trait SignedItem: sealed::Sealed {
    /// The signed header.
    fn signed(&self) -> &SignedHeader;
    /// Its header hash.
    fn header_hash(&self) -> Hash;
}

impl SignedItem for SignedHeader {
    fn signed(&self) -> &SignedHeader {
        self
    }
    fn header_hash(&self) -> Hash {
        self.header.hash()
    }
}

impl SignedItem for Hashed<SignedHeader> {
    fn signed(&self) -> &SignedHeader {
        &self.value
    }
    fn header_hash(&self) -> Hash {
        self.hash
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for headway_wire::SignedHeader {}
    impl Sealed for super::Hashed<headway_wire::SignedHeader> {}
}

impl<T: HasHeader> HasHeader for Hashed<T> {
    fn header(&self) -> &Header {
        self.value.header()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;
    use crate::{ChainGenerator, GeneratorConfig};

    #[test]
    fn the_hash_is_the_header_hash_of_the_value_held() {
        let chain: Vec<_> = ChainGenerator::new(GeneratorConfig::small(7))
            .unwrap()
            .take(3)
            .collect();
        for block in &chain {
            let signed = block.signed_header.clone();
            let hashed = Hashed::new(signed.clone());
            assert_eq!(hashed.hash(), signed.header.hash());
            assert_eq!(hashed.header().height, signed.header.height);
            let bare = Hashed::new(BareHeader::from(&signed));
            assert_eq!(bare.hash(), hashed.hash());
            assert_eq!(hashed.into_inner(), signed);
        }
        let (a, b) = (&chain[0].signed_header, &chain[1].signed_header);
        assert_ne!(Hashed::new(a.clone()).hash(), Hashed::new(b.clone()).hash());
    }
    /// 40 bare headers of a chain whose validators rotate every 5 blocks.
    fn bare_chain() -> Vec<BareHeader> {
        ChainGenerator::new(GeneratorConfig::small(7))
            .unwrap()
            .take(40)
            .map(|block| BareHeader::from(&block.signed_header))
            .collect()
    }

    /// A compact range expands to the very headers it was made from, each
    /// with its header hash, across validator set changes, from height 1
    /// (no parent) and from the middle of the chain.
    #[test]
    fn compact_ranges_expand_to_the_headers_they_were_made_from() {
        let bare = bare_chain();
        for (from, to) in [(0, 40), (0, 1), (11, 37), (39, 40)] {
            let range = &bare[from..to];
            let compact = CompactHeaders::from_bare(range).unwrap();
            assert_eq!(compact.len(), to - from);
            let start = from as u64 + 1;
            let expanded = Hashed::expand_compact(start, &compact).unwrap();
            assert_eq!(expanded, Hashed::all(range.to_vec()));
            if to - from > 10 {
                // Rotation every 5 blocks: both kinds of exception occur.
                assert!(!compact.validators_changes.is_empty());
                assert!(!compact.validator_sets.is_empty());
            }
            if from > 0 {
                // Expanded from the wrong height, every hash differs.
                let shifted = Hashed::expand_compact(start + 1, &compact).unwrap();
                assert!(
                    expanded
                        .iter()
                        .zip(&shifted)
                        .all(|(a, b)| a.hash() != b.hash())
                );
            }
        }
        // A range from height 1 has no parent: expanding it higher fails.
        let compact = CompactHeaders::from_bare(&bare[..3]).unwrap();
        assert!(Hashed::expand_compact(2, &compact).is_err());
    }

    /// Hashing a compact range from its columns gives the header hashes of
    /// the headers it was made from; its fields are theirs, and it makes
    /// them back without hashing again. A range from another height hashes
    /// to other hashes; a malformed one is refused.
    #[test]
    fn hashed_compact_ranges_carry_the_header_hashes() {
        let bare = bare_chain();
        for (from, to) in [(0, 40), (0, 1), (11, 37), (39, 40)] {
            let range = &bare[from..to];
            let start = from as u64 + 1;
            let compact = CompactHeaders::from_bare(range).unwrap();
            let hashed = HashedCompact::new(start, compact.clone(), vec![Hash::ZERO; 3]).unwrap();
            let expected = Hashed::all(range.to_vec());
            assert_eq!(
                hashed.hashes(),
                expected.iter().map(Hashed::hash).collect::<Vec<_>>()
            );
            assert_eq!((hashed.start_height(), hashed.len()), (start, to - from));
            assert_eq!(hashed.last_height(), to as u64);
            assert_eq!(hashed.to_bare(), expected);
            for ((fields, set), bare) in hashed.fields().zip(range) {
                assert_eq!(
                    fields,
                    headway_wire::encoded::HeaderFields::of(&bare.header)
                );
                assert_eq!(crate::header_fields_hash(&fields), bare.header.hash());
                assert_eq!(set, bare.validator_set.as_ref());
            }
            assert_eq!(hashed.fields().count(), to - from);
            if from > 0 {
                let shifted = HashedCompact::new(start + 1, compact, Vec::new()).unwrap();
                assert!(
                    shifted
                        .hashes()
                        .iter()
                        .zip(hashed.hashes())
                        .all(|(a, b)| a != b)
                );
            }
        }
        let mut bad = CompactHeaders::from_bare(&bare[5..9]).unwrap();
        bad.proposer_indexes.pop();
        assert!(HashedCompact::new(6, bad, Vec::new()).is_err());
    }
}
