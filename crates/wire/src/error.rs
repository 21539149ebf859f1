//! Typed errors: each says which rule a message broke.

/// A message broke a rule of the protocol, or could not be decoded.
///
/// `field` names the offending field as `message.field`, so an error can be
/// reported to an operator (and logged against the peer) as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes are not a valid protobuf encoding of the expected message.
    #[error("malformed protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A required field is absent.
    #[error("{field}: required field is missing")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// A fixed-length byte field has the wrong length.
    #[error("{field}: expected {expected} bytes, got {actual}")]
    Length {
        /// The field.
        field: &'static str,
        /// The only valid length.
        expected: usize,
        /// The length received.
        actual: usize,
    },
    /// A byte or string field is longer than its limit.
    #[error("{field}: {actual} bytes is over the limit of {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The limit.
        max: usize,
        /// The length received.
        actual: usize,
    },
    /// A repeated field or a count has more items than its limit.
    #[error("{field}: {actual} items is over the limit of {max}")]
    TooMany {
        /// The field.
        field: &'static str,
        /// The limit.
        max: usize,
        /// The count received.
        actual: u64,
    },
    /// A field that must not be empty (or zero) is.
    #[error("{field}: must not be empty or zero")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// A height is 0; heights start at 1.
    #[error("{field}: height 0 is invalid, heights start at 1")]
    ZeroHeight {
        /// The field.
        field: &'static str,
    },
    /// A repeated field must be strictly ascending and is not.
    #[error("{field}: entries must be strictly ascending, entry {index} is not")]
    Unsorted {
        /// The field.
        field: &'static str,
        /// Index of the first entry out of order.
        index: usize,
    },
    /// A repeated field has the same entry twice.
    #[error("{field}: entry {index} is a duplicate")]
    Duplicate {
        /// The field.
        field: &'static str,
        /// Index of the second occurrence.
        index: usize,
    },
    /// A sequence of heights has a gap, or does not start where it must.
    #[error("{field}: expected height {expected}, got {actual}")]
    NonSequential {
        /// The field.
        field: &'static str,
        /// The height required at this position.
        expected: u64,
        /// The height received.
        actual: u64,
    },
    /// A value is outside its valid range or breaks another documented rule.
    #[error("{field}: {rule}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule, in words.
        rule: &'static str,
    },
    /// An item of a repeated field broke a rule.
    #[error("{field}[{index}]: {source}")]
    Item {
        /// The repeated field.
        field: &'static str,
        /// Index of the offending item.
        index: usize,
        /// What was wrong with it.
        source: Box<WireError>,
    },
}

impl WireError {
    /// Wraps an error of the `index`-th item of the repeated `field`.
    pub(crate) fn item(field: &'static str, index: usize) -> impl FnOnce(WireError) -> WireError {
        move |source| WireError::Item {
            field,
            index,
            source: Box::new(source),
        }
    }
}

/// A frame could not be read: its length prefix is over the limit for its kind,
/// or the bytes ended early. Nothing is allocated for an over-limit frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announces more bytes than this kind of frame may carry.
    #[error("frame of {len} bytes is over the limit of {max} for this message kind")]
    TooLarge {
        /// The announced payload length.
        len: u64,
        /// The limit for the expected kind.
        max: usize,
    },
    /// The input ended inside a frame.
    #[error("truncated frame: {needed} more bytes needed")]
    Truncated {
        /// Bytes still missing.
        needed: usize,
    },
    /// Bytes follow the last frame where none may.
    #[error("{extra} unexpected bytes after the frame")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The frame's payload broke a protocol rule.
    #[error(transparent)]
    Message(#[from] WireError),
}
