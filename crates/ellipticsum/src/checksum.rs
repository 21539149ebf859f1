//! The EllipticSum checksum: a ristretto255 group element.

use core::fmt;
use core::iter::Sum;
use core::ops::{Add, AddAssign, Neg, Sub, SubAssign};

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::traits::Identity;

use crate::{Error, RecordHasher};

/// Length of a serialized checksum: a compressed ristretto255 element.
pub const CHECKSUM_LEN: usize = 32;

/// The EllipticSum checksum of a multiset of records: the sum of the
/// records' elements in the ristretto255 group.
///
/// Adding a record adds its element, removing subtracts it; order never
/// matters and the empty multiset is the identity. A record added twice
/// counts twice, and removing a record that was never added yields a
/// checksum no set of additions reaches: keep removals to present records.
///
/// The value stays in extended coordinates; compression (about 8 µs) happens
/// only in [`Checksum::to_bytes`] and the formatting impls. Equality compares
/// group elements, without compressing.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Checksum(RistrettoPoint);

impl Checksum {
    /// The checksum of the empty multiset (the group identity).
    pub fn identity() -> Self {
        Self(RistrettoPoint::identity())
    }

    /// Whether this is the checksum of the empty multiset (or of additions and
    /// removals that cancel out).
    pub fn is_identity(&self) -> bool {
        self.0 == RistrettoPoint::identity()
    }

    /// Adds the record `(key, value)` to the multiset.
    pub fn add_record(&mut self, hasher: &RecordHasher, key: &[u8], value: &[u8]) {
        self.0 += hasher.record_point(key, value);
    }

    /// Removes the record `(key, value)` from the multiset.
    pub fn remove_record(&mut self, hasher: &RecordHasher, key: &[u8], value: &[u8]) {
        self.0 -= hasher.record_point(key, value);
    }

    /// Replaces the record `(key, old_value)` with `(key, new_value)`: removes
    /// the old record, then adds the new one.
    pub fn update_record(
        &mut self,
        hasher: &RecordHasher,
        key: &[u8],
        old_value: &[u8],
        new_value: &[u8],
    ) {
        self.remove_record(hasher, key, old_value);
        self.add_record(hasher, key, new_value);
    }

    /// Adds another checksum: the result is the checksum of the multiset union.
    pub fn combine(&mut self, other: &Checksum) {
        self.0 += other.0;
    }

    /// Subtracts another checksum: the result is the checksum of the multiset
    /// difference (meaningful when `other`'s records are all present).
    pub fn subtract(&mut self, other: &Checksum) {
        self.0 -= other.0;
    }

    /// The 32-byte canonical encoding (RFC 9496 section 4.3.2). The identity
    /// encodes as 32 zero bytes.
    pub fn to_bytes(&self) -> [u8; CHECKSUM_LEN] {
        self.0.compress().to_bytes()
    }

    /// Decodes a checksum from its canonical encoding.
    ///
    /// # Errors
    ///
    /// [`Error::NonCanonicalChecksum`] unless `bytes` is the canonical encoding
    /// of a ristretto255 element (RFC 9496 section 4.3.1 rejects non-canonical
    /// and negative field elements and bytes that decode to no element).
    pub fn from_bytes(bytes: &[u8; CHECKSUM_LEN]) -> Result<Self, Error> {
        CompressedRistretto(*bytes)
            .decompress()
            .map(Self)
            .ok_or(Error::NonCanonicalChecksum)
    }

    /// Decodes a checksum from a slice, checking its length first.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidChecksumLength`] unless the slice is 32 bytes, then as
    /// [`Checksum::from_bytes`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let array: &[u8; CHECKSUM_LEN] =
            bytes.try_into().map_err(|_| Error::InvalidChecksumLength {
                expected: CHECKSUM_LEN,
                actual: bytes.len(),
            })?;
        Self::from_bytes(array)
    }

    /// Wraps a group element computed elsewhere.
    pub fn from_point(point: RistrettoPoint) -> Self {
        Self(point)
    }

    /// The group element.
    pub fn to_point(&self) -> RistrettoPoint {
        self.0
    }
}

impl TryFrom<&[u8]> for Checksum {
    type Error = Error;

    fn try_from(bytes: &[u8]) -> Result<Self, Error> {
        Self::from_slice(bytes)
    }
}

impl TryFrom<[u8; CHECKSUM_LEN]> for Checksum {
    type Error = Error;

    fn try_from(bytes: [u8; CHECKSUM_LEN]) -> Result<Self, Error> {
        Self::from_bytes(&bytes)
    }
}

impl From<Checksum> for [u8; CHECKSUM_LEN] {
    fn from(checksum: Checksum) -> Self {
        checksum.to_bytes()
    }
}

impl From<RistrettoPoint> for Checksum {
    fn from(point: RistrettoPoint) -> Self {
        Self(point)
    }
}

impl From<Checksum> for RistrettoPoint {
    fn from(checksum: Checksum) -> Self {
        checksum.0
    }
}

impl Add for Checksum {
    type Output = Checksum;

    fn add(self, other: Checksum) -> Checksum {
        Checksum(self.0 + other.0)
    }
}

impl Sub for Checksum {
    type Output = Checksum;

    fn sub(self, other: Checksum) -> Checksum {
        Checksum(self.0 - other.0)
    }
}

impl AddAssign for Checksum {
    fn add_assign(&mut self, other: Checksum) {
        self.0 += other.0;
    }
}

impl SubAssign for Checksum {
    fn sub_assign(&mut self, other: Checksum) {
        self.0 -= other.0;
    }
}

impl Neg for Checksum {
    type Output = Checksum;

    fn neg(self) -> Checksum {
        Checksum(-self.0)
    }
}

impl Sum for Checksum {
    fn sum<I: Iterator<Item = Checksum>>(iter: I) -> Checksum {
        Checksum(iter.map(|c| c.0).sum())
    }
}

impl<'a> Sum<&'a Checksum> for Checksum {
    fn sum<I: Iterator<Item = &'a Checksum>>(iter: I) -> Checksum {
        Checksum(iter.map(|c| c.0).sum())
    }
}

impl fmt::Display for Checksum {
    /// Lowercase hex of the 32-byte encoding.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.to_bytes())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum(")?;
        write_hex(f, &self.to_bytes())?;
        write!(f, ")")
    }
}

/// Writes bytes as lowercase hex.
pub(crate) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;

    fn decode(hex: &str) -> Result<Checksum, Error> {
        Checksum::from_slice(&hex::decode(hex).unwrap())
    }

    #[test]
    fn identity_is_zero_bytes() {
        let id = Checksum::identity();
        assert!(id.is_identity());
        assert_eq!(id.to_bytes(), [0u8; 32]);
        assert_eq!(Checksum::from_bytes(&[0u8; 32]).unwrap(), id);
        assert_eq!(Checksum::default(), id);
    }

    #[test]
    fn rfc9496_a1_generator_round_trips() {
        let g = decode("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76").unwrap();
        assert_eq!(g.to_point(), RISTRETTO_BASEPOINT_POINT);
        assert_eq!(
            g.to_string(),
            "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76"
        );
    }

    #[test]
    fn rfc9496_a2_invalid_encodings_are_rejected() {
        let invalid = [
            // Non-canonical field encodings.
            "00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "f3ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            // Negative field elements.
            "0100000000000000000000000000000000000000000000000000000000000000",
            "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "ed57ffd8c914fb201471d1c3d245ce3c746fcbe63a3679d51b6a516ebebe0e20",
            "c34c4e1826e5d403b78e246e88aa051c36ccf0aafebffe137d148a2bf9104562",
            // Non-square x^2.
            "26948d35ca62e643e26a83177332e6b6afeb9d08e4268b650f1f5bbd8d81d371",
            "4eac077a713c57b4f4397629a4145982c661f48044dd3f96427d40b147d9742f",
            // Negative xy value.
            "3eb858e78f5a7254d8c9731174a94f76755fd3941c0ac93735c07ba14579630e",
            "a45fdc55c76448c049a1ab33f17023edfb2be3581e9c7aade8a6125215e04220",
            // s = -1, which causes y = 0.
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ];
        for bytes in invalid {
            assert_eq!(decode(bytes), Err(Error::NonCanonicalChecksum), "{bytes}");
        }
    }

    #[test]
    fn wrong_length_is_rejected() {
        assert_eq!(
            Checksum::from_slice(&[0u8; 31]),
            Err(Error::InvalidChecksumLength {
                expected: 32,
                actual: 31
            })
        );
        assert!(Checksum::try_from(&[0u8; 33][..]).is_err());
    }

    #[test]
    fn group_laws() {
        let hasher = RecordHasher::headway();
        let a = hasher.hash_record(b"a", b"1");
        let b = hasher.hash_record(b"b", b"2");
        assert_eq!(a + b, b + a);
        assert_eq!(a - a, Checksum::identity());
        assert_eq!(a + (-a), Checksum::identity());
        let mut c = a;
        c.combine(&b);
        c.subtract(&a);
        assert_eq!(c, b);
        assert_eq!([a, b].iter().sum::<Checksum>(), a + b);
        assert_eq!(Checksum::try_from(a.to_bytes()).unwrap(), a);
        assert_eq!(<[u8; 32]>::from(a), a.to_bytes());
        assert_eq!(format!("{a:?}"), format!("Checksum({a})"));
    }

    #[test]
    fn add_remove_update() {
        let hasher = RecordHasher::headway();
        let mut sum = Checksum::identity();
        sum.add_record(&hasher, b"k1", b"v1");
        sum.add_record(&hasher, b"k2", b"v2");
        sum.update_record(&hasher, b"k1", b"v1", b"v1'");
        let mut expected = Checksum::identity();
        expected.add_record(&hasher, b"k2", b"v2");
        expected.add_record(&hasher, b"k1", b"v1'");
        assert_eq!(sum, expected);
        sum.remove_record(&hasher, b"k1", b"v1'");
        sum.remove_record(&hasher, b"k2", b"v2");
        assert!(sum.is_identity());
    }
}
