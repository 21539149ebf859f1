//! State records and their encoding.
//!
//! A record is a key and a value, both arbitrary byte strings (either may be
//! empty). Its encoding, the message that is hashed to the group, is
//!
//! ```text
//! BE64(len(key) + len(value)) || BE64(len(key)) || key || BE64(len(value)) || value
//! ```
//!
//! where `BE64(n)` is `n` as 8 big-endian bytes. The two length prefixes make
//! the encoding injective: different records never share an encoding.

/// Bytes the encoding adds to a record: three 8-byte lengths.
pub const RECORD_OVERHEAD: usize = 24;

/// A key-value state record, as the hashing functions take it.
///
/// Implemented for pairs of byte containers (`(&[u8], &[u8])`,
/// `(Vec<u8>, Vec<u8>)`, `([u8; 32], Vec<u8>)`, ...) and for references to
/// records, so slices of the caller's own records can be hashed in bulk.
pub trait Record {
    /// The record's key; its first byte is the state prefix.
    fn key(&self) -> &[u8];
    /// The record's value.
    fn value(&self) -> &[u8];
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> Record for (K, V) {
    fn key(&self) -> &[u8] {
        self.0.as_ref()
    }

    fn value(&self) -> &[u8] {
        self.1.as_ref()
    }
}

impl<R: Record + ?Sized> Record for &R {
    fn key(&self) -> &[u8] {
        (**self).key()
    }

    fn value(&self) -> &[u8] {
        (**self).value()
    }
}

/// The encoding of the record `(key, value)`, as one buffer.
///
/// Hashing never builds this buffer (the parts are streamed into the hash);
/// it is offered for tests, debugging and other implementations.
///
/// ```
/// let encoded = headway_ellipticsum::encode_record(b"key1", b"value1");
/// assert_eq!(encoded.len(), 24 + 4 + 6);
/// assert_eq!(encoded[..8], 10u64.to_be_bytes());
/// ```
pub fn encode_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_OVERHEAD + key.len() + value.len());
    out.extend_from_slice(&header(key, value));
    out.extend_from_slice(key);
    out.extend_from_slice(&be64(value.len()));
    out.extend_from_slice(value);
    out
}

/// The state prefix of a key: its first byte, or `None` for an empty key.
pub fn state_prefix(key: &[u8]) -> Option<u8> {
    key.first().copied()
}

/// The length fields of the encoding: `BE64(len(key) + len(value)) ||
/// BE64(len(key))`, which precedes the key, and `BE64(len(value))`, which
/// precedes the value. Hashing passes these and the record's own slices as
/// parts, so the record is never copied into an encoding buffer.
#[inline]
pub(crate) fn length_fields(key: &[u8], value: &[u8]) -> ([u8; 16], [u8; 8]) {
    (header(key, value), be64(value.len()))
}

/// `BE64(len(key) + len(value)) || BE64(len(key))`.
#[inline]
fn header(key: &[u8], value: &[u8]) -> [u8; 16] {
    // Slices are at most isize::MAX bytes, so the sum fits in a u64.
    let total = (key.len() as u64).wrapping_add(value.len() as u64);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&total.to_be_bytes());
    out[8..].copy_from_slice(&be64(key.len()));
    out
}

/// `BE64(n)`.
#[inline]
fn be64(n: usize) -> [u8; 8] {
    (n as u64).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deso_known_encoding() {
        // NOTES.md: encode("key1", "value1").
        assert_eq!(
            hex::encode(encode_record(b"key1", b"value1")),
            "000000000000000a00000000000000046b657931000000000000000676616c756531"
        );
    }

    #[test]
    fn empty_parts() {
        assert_eq!(encode_record(b"", b""), vec![0u8; 24]);
        let only_value = encode_record(b"", b"v");
        assert_eq!(
            hex::encode(only_value),
            format!("{:016x}{:016x}{:016x}76", 1, 0, 1)
        );
    }

    #[test]
    fn length_fields_frame_the_encoding() {
        let (key, value) = (b"\x07some key".as_slice(), vec![0x5au8; 300]);
        let (head, value_len) = length_fields(key, &value);
        let parts = [&head[..], key, &value_len, &value].concat();
        assert_eq!(parts, encode_record(key, &value));
    }

    #[test]
    fn shifting_bytes_between_key_and_value_changes_the_encoding() {
        assert_ne!(encode_record(b"ab", b"c"), encode_record(b"a", b"bc"));
    }

    #[test]
    fn prefix_is_first_key_byte() {
        assert_eq!(state_prefix(b"\x05abc"), Some(5));
        assert_eq!(state_prefix(b""), None);
    }
}
