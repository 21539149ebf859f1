//! The crate's error type.

/// What went wrong in an EllipticSum operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The domain separation tag is empty; RFC 9380 requires a non-empty tag.
    #[error("the domain separation tag is empty; RFC 9380 requires at least one byte")]
    EmptyDst,

    /// `expand_message_xmd` was asked for an output length it cannot produce.
    #[error(
        "expand_message_xmd with SHA-512 produces 1 to {max} bytes, {requested} were requested",
        max = crate::MAX_EXPAND_LEN
    )]
    InvalidOutputLength {
        /// The number of bytes requested.
        requested: usize,
    },

    /// A serialized checksum does not have the length of a compressed
    /// ristretto255 element.
    #[error("a serialized checksum is {expected} bytes, got {actual}")]
    InvalidChecksumLength {
        /// The required length, [`crate::CHECKSUM_LEN`].
        expected: usize,
        /// The length received.
        actual: usize,
    },

    /// The 32 bytes are not the canonical encoding of a ristretto255 element
    /// (RFC 9496 section 4.3.1 decoding failed).
    #[error("the checksum bytes are not a canonical ristretto255 encoding")]
    NonCanonicalChecksum,

    /// A record routed by state prefix has an empty key, so it has no prefix.
    #[error("the record key is empty, so it has no state prefix")]
    EmptyKey,
}
