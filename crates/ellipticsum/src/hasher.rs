//! Mapping records to ristretto255 elements: RFC 9380 `hash_to_ristretto255`.

use core::fmt;

use curve25519_dalek::ristretto::RistrettoPoint;
use rayon::prelude::*;

use crate::record::{Record, length_fields};
use crate::xmd::XmdSha512;
use crate::{Checksum, Error};

/// Headway's own domain separation tag, in RFC 9380's suite naming style.
pub const HEADWAY_DST: &[u8] = b"HEADWAY-V1-ELLIPTICSUM_ristretto255_XMD:SHA-512_R255MAP_RO_";

/// DeSo's deployed EllipticSum tag. With it, this crate's checksums equal
/// DeSo's.
pub const DESO_DST: &[u8] = b"DESO-ELLIPTIC-SUM:Ristretto255";

/// Maps records to ristretto255 elements under one domain separation tag.
///
/// The map is RFC 9380 `hash_to_ristretto255(encode(key, value), DST)`:
/// `expand_message_xmd` with SHA-512 to 64 bytes, then the RFC 9496 one-way
/// map (two Elligator maps, added). Construct one hasher per DST and reuse it:
/// it holds the precomputed SHA-512 state after `Z_pad` and the DST suffix.
///
/// Checksums are only comparable when made with the same DST.
#[derive(Clone)]
pub struct RecordHasher {
    /// The prepared expander.
    xmd: XmdSha512,
    /// The DST as given (before any oversize reduction).
    dst: Vec<u8>,
}

impl RecordHasher {
    /// A hasher for `dst`. Tags longer than 255 bytes are accepted and reduced
    /// as RFC 9380 section 5.3.3 specifies.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyDst`] if `dst` is empty.
    pub fn new(dst: &[u8]) -> Result<Self, Error> {
        Ok(Self {
            xmd: XmdSha512::new(dst)?,
            dst: dst.to_vec(),
        })
    }

    /// The hasher for Headway's protocol, tag [`HEADWAY_DST`].
    pub fn headway() -> Self {
        Self::from_constant(HEADWAY_DST)
    }

    /// The hasher compatible with DeSo, tag [`DESO_DST`].
    pub fn deso() -> Self {
        Self::from_constant(DESO_DST)
    }

    /// The domain separation tag, as given to [`RecordHasher::new`].
    pub fn dst(&self) -> &[u8] {
        &self.dst
    }

    /// The element of the record `(key, value)`: the checksum of the multiset
    /// holding just that record.
    #[inline]
    pub fn hash_record(&self, key: &[u8], value: &[u8]) -> Checksum {
        Checksum::from_point(self.record_point(key, value))
    }

    /// The 64 uniform bytes `expand_message_xmd(encode(key, value), DST, 64)`
    /// that the one-way map turns into the record's element.
    #[inline]
    pub fn expand_record(&self, key: &[u8], value: &[u8]) -> [u8; 64] {
        let (head, value_len) = length_fields(key, value);
        self.xmd.expand_64(&[&head, key, &value_len, value])
    }

    /// RFC 9380 `hash_to_ristretto255(msg, DST)` of an arbitrary message.
    pub fn hash_to_ristretto255(&self, msg: &[u8]) -> RistrettoPoint {
        RistrettoPoint::from_uniform_bytes(&self.xmd.expand_64(&[msg]))
    }

    /// The checksum of the records, hashed one after another on this thread.
    pub fn sum_records<I>(&self, records: I) -> Checksum
    where
        I: IntoIterator,
        I::Item: Record,
    {
        let mut sum = RistrettoPoint::default();
        for record in records {
            sum += self.record_point(record.key(), record.value());
        }
        Checksum::from_point(sum)
    }

    /// The checksum of the records, hashed in parallel on the rayon pool.
    /// Always equal to [`RecordHasher::sum_records`] of the same records.
    pub fn par_sum_records<R: Record + Sync>(&self, records: &[R]) -> Checksum {
        let sum = records
            .par_iter()
            .fold(RistrettoPoint::default, |sum, record| {
                sum + self.record_point(record.key(), record.value())
            })
            .reduce(RistrettoPoint::default, |a, b| a + b);
        Checksum::from_point(sum)
    }

    /// Each record's element, hashed in parallel, in the order of `records`.
    pub fn par_hash_records<R: Record + Sync>(&self, records: &[R]) -> Vec<Checksum> {
        records
            .par_iter()
            .map(|record| self.hash_record(record.key(), record.value()))
            .collect()
    }

    /// The record's group element.
    #[inline]
    pub(crate) fn record_point(&self, key: &[u8], value: &[u8]) -> RistrettoPoint {
        RistrettoPoint::from_uniform_bytes(&self.expand_record(key, value))
    }

    /// A hasher for a non-empty constant tag.
    fn from_constant(dst: &'static [u8]) -> Self {
        Self {
            xmd: XmdSha512::prepare(dst),
            dst: dst.to_vec(),
        }
    }
}

impl fmt::Debug for RecordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordHasher")
            .field("dst", &String::from_utf8_lossy(&self.dst))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode_record;
    use curve25519_dalek::ristretto::CompressedRistretto;

    #[test]
    fn deso_known_answers() {
        // NOTES.md, "Hyper Sync and EllipticSum".
        let hasher = RecordHasher::deso();
        let one = hasher.hash_record(b"key1", b"value1");
        assert_eq!(
            hex::encode(one.to_bytes()),
            "90edd8ed99cc208c051506616c3f4d717ff81f64175c9b22599cb03347fec706"
        );
        let two = one + hasher.hash_record(b"key2", b"value2");
        assert_eq!(
            hex::encode(two.to_bytes()),
            "ca6ea2b83cc15fda23483625f6492129bbd3d1bd14716248fc78eaa185352e28"
        );
    }

    #[test]
    fn uniform_bytes_match_an_independent_expander() {
        // Computed with a separate Python (hashlib) implementation of RFC 9380
        // section 5.3.1, over the record encoding.
        assert_eq!(
            hex::encode(RecordHasher::headway().expand_record(b"key1", b"value1")),
            "5ea79fce5958aca5aa0180ecc7ce85aee82f74485463bf3dcf82ce34856428ab\
             141752a795a2740a4ec61c96a30d1b3f20398016a535b06fb41089fc64cbac21"
        );
        assert_eq!(
            hex::encode(RecordHasher::deso().expand_record(b"key1", b"value1")),
            "6c9dece342e7cfcec3db1dc0a9c13c5ec59c4b25cd48c823c07c1634c81baa80\
             0c893b0037e9199ae436085738367bd542e15bcb87e5c0eb9a96fd43bd5f8be7"
        );
        let mut out = [0u8; 64];
        crate::expand_message_xmd(b"abc", &[0x31; 300], &mut out).unwrap();
        assert_eq!(
            hex::encode(out),
            "67afaf8ba602831cd0b25772d00d0d52bec8a38cb3fbb0f2d8b61aa2dea4ca66\
             54a8a288e85ff0be01a03c3139a4314071876d04a0aa2ab6f351a643c521baa3"
        );
    }

    #[test]
    fn record_hash_is_hash_to_ristretto255_of_the_encoding() {
        for hasher in [RecordHasher::deso(), RecordHasher::headway()] {
            for (key, value) in [
                (&b""[..], &b""[..]),
                (b"k", b""),
                (b"", b"v"),
                (b"key", b"value"),
            ] {
                assert_eq!(
                    hasher.hash_record(key, value).to_point(),
                    hasher.hash_to_ristretto255(&encode_record(key, value))
                );
            }
        }
    }

    #[test]
    fn rfc9496_a3_one_way_map() {
        // RFC 9496 appendix A.3: element derivation from 64 uniform bytes,
        // the map that follows expand_message_xmd.
        let vectors = [
            (
                "5d1be09e3d0c82fc538112490e35701979d99e06ca3e2b5b54bffe8b4dc772c1\
                 4d98b696a1bbfb5ca32c436cc61c16563790306c79eaca7705668b47dffe5bb6",
                "3066f82a1a747d45120d1740f14358531a8f04bbffe6a819f86dfe50f44a0a46",
            ),
            (
                "f116b34b8f17ceb56e8732a60d913dd10cce47a6d53bee9204be8b44f6678b27\
                 0102a56902e2488c46120e9276cfe54638286b9e4b3cdb470b542d46c2068d38",
                "f26e5b6f7d362d2d2a94c5d0e7602cb4773c95a2e5c31a64f133189fa76ed61b",
            ),
            (
                "8422e1bbdaab52938b81fd602effb6f89110e1e57208ad12d9ad767e2e25510c\
                 27140775f9337088b982d83d7fcf0b2fa1edffe51952cbe7365e95c86eaf325c",
                "006ccd2a9e6867e6a2c5cea83d3302cc9de128dd2a9a57dd8ee7b9d7ffe02826",
            ),
            (
                "ac22415129b61427bf464e17baee8db65940c233b98afce8d17c57beeb7876c2\
                 150d15af1cb1fb824bbd14955f2b57d08d388aab431a391cfc33d5bafb5dbbaf",
                "f8f0c87cf237953c5890aec3998169005dae3eca1fbb04548c635953c817f92a",
            ),
            (
                "165d697a1ef3d5cf3c38565beefcf88c0f282b8e7dbd28544c483432f1cec767\
                 5debea8ebb4e5fe7d6f6e5db15f15587ac4d4d4a1de7191e0c1ca6664abcc413",
                "ae81e7dedf20a497e10c304a765c1767a42d6e06029758d2d7e8ef7cc4c41179",
            ),
            (
                "a836e6c9a9ca9f1e8d486273ad56a78c70cf18f0ce10abb1c7172ddd605d7fd2\
                 979854f47ae1ccf204a33102095b4200e5befc0465accc263175485f0e17ea5c",
                "e2705652ff9f5e44d3e841bf1c251cf7dddb77d140870d1ab2ed64f1a9ce8628",
            ),
            (
                "2cdc11eaeb95daf01189417cdddbf95952993aa9cb9c640eb5058d09702c7462\
                 2c9965a697a3b345ec24ee56335b556e677b30e6f90ac77d781064f866a3c982",
                "80bd07262511cdde4863f8a7434cef696750681cb9510eea557088f76d9e5065",
            ),
            // A.3.1: inputs that are not canonical field encodings all map to
            // the same element.
            (
                "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\
                 1200000000000000000000000000000000000000000000000000000000000000",
                "304282791023b73128d277bdcb5c7746ef2eac08dde9f2983379cb8e5ef0517f",
            ),
            (
                "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f\
                 ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "304282791023b73128d277bdcb5c7746ef2eac08dde9f2983379cb8e5ef0517f",
            ),
            (
                "0000000000000000000000000000000000000000000000000000000000000080\
                 ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
                "304282791023b73128d277bdcb5c7746ef2eac08dde9f2983379cb8e5ef0517f",
            ),
            (
                "0000000000000000000000000000000000000000000000000000000000000000\
                 1200000000000000000000000000000000000000000000000000000000000080",
                "304282791023b73128d277bdcb5c7746ef2eac08dde9f2983379cb8e5ef0517f",
            ),
        ];
        for (input, output) in vectors {
            let input: [u8; 64] = hex::decode(input).unwrap().try_into().unwrap();
            let output: [u8; 32] = hex::decode(output).unwrap().try_into().unwrap();
            assert_eq!(
                RistrettoPoint::from_uniform_bytes(&input).compress(),
                CompressedRistretto(output)
            );
        }
    }

    #[test]
    fn dst_separates_domains() {
        let a = RecordHasher::headway().hash_record(b"k", b"v");
        let b = RecordHasher::deso().hash_record(b"k", b"v");
        assert_ne!(a, b);
        assert_eq!(
            RecordHasher::new(HEADWAY_DST)
                .unwrap()
                .hash_record(b"k", b"v"),
            a
        );
        assert_eq!(RecordHasher::new(b"").unwrap_err(), Error::EmptyDst);
    }

    #[test]
    fn oversize_dst_is_accepted() {
        let hasher = RecordHasher::new(&[b'x'; 300]).unwrap();
        assert_eq!(hasher.dst().len(), 300);
        assert!(!hasher.hash_record(b"k", b"v").is_identity());
    }

    #[test]
    fn parallel_equals_sequential() {
        let hasher = RecordHasher::headway();
        let records: Vec<(Vec<u8>, Vec<u8>)> = (0u32..64)
            .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; i as usize]))
            .collect();
        let sequential = hasher.sum_records(&records);
        assert_eq!(hasher.par_sum_records(&records), sequential);
        let each = hasher.par_hash_records(&records);
        assert_eq!(each.len(), records.len());
        assert_eq!(each.iter().copied().sum::<Checksum>(), sequential);
        for (point, (k, v)) in each.iter().zip(&records) {
            assert_eq!(*point, hasher.hash_record(k, v));
        }
    }
}
