//! Responses assembled from signed (or bare) headers that are already encoded.
//!
//! A server that keeps headers in their protobuf form (the store does) can
//! answer `GetHeaders` and `GetHeadersV2` by copying those bytes into the
//! frame instead of decoding them into domain types and encoding them again.
//! The frames are byte for byte what [`crate::frame::encode_frame`] makes of
//! the same response (tested), and the same limits apply: header counts and
//! the frame size of the response kind. Each encoded header is checked for
//! its shape, not decoded: a signed header is fields 1 (header), 2 (commit)
//! and optionally 3 (validator set), a bare header fields 1 (header) and
//! optionally 2 (validator set), in order, each a length-delimited message
//! inside the bytes, and the commit and set have their own messages' keys
//! (so that one kind is not passed off as the other). It comes from the
//! server's own store, and the requester verifies everything anyway.

use prost::Message as _;

use crate::{
    FrameError, Header, MmrProof, WireError,
    frame::LENGTH_PREFIX,
    limits::{
        MAX_FRAME, MAX_HEADERS_PER_BATCH, MAX_HEADERS_RESPONSE_FRAME, MAX_HEADERS_V2,
        MAX_HEADERS_V2_RESPONSE_FRAME,
    },
};

/// A response frame ready to send (length prefix included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedResponse(Vec<u8>);

impl EncodedResponse {
    /// A `HeadersResponse` from `start_height` carrying `signed_headers`,
    /// each the protobuf encoding of one `SignedHeader`.
    ///
    /// # Errors
    ///
    /// More than [`MAX_HEADERS_PER_BATCH`] headers, a malformed encoded
    /// header, or a frame over [`MAX_HEADERS_RESPONSE_FRAME`].
    pub fn headers(start_height: u64, signed_headers: &[Vec<u8>]) -> Result<Self, FrameError> {
        check_headers(
            "headers_response.headers",
            signed_headers,
            MAX_HEADERS_PER_BATCH,
            Shape::Signed,
        )?;
        let body_len = u64_field_len(1, start_height)
            + signed_headers
                .iter()
                .map(|h| bytes_field_len(2, h.len()))
                .sum::<usize>();
        Self::framed(1, body_len, MAX_HEADERS_RESPONSE_FRAME, |out| {
            put_u64_field(out, 1, start_height);
            for h in signed_headers {
                put_bytes_field(out, 2, h);
            }
        })
    }

    /// A `HeadersV2Response` for `start_height..` under `end_height`
    /// carrying `signed_headers` (each the protobuf encoding of one
    /// `SignedHeader`) and `proof`.
    ///
    /// # Errors
    ///
    /// No headers or more than [`MAX_HEADERS_V2`], a malformed encoded
    /// header, a proof over its bound, or a frame over
    /// [`MAX_HEADERS_V2_RESPONSE_FRAME`].
    pub fn headers_v2(
        start_height: u64,
        end_height: u64,
        signed_headers: &[Vec<u8>],
        proof: &MmrProof,
    ) -> Result<Self, FrameError> {
        Self::proven(
            start_height,
            end_height,
            signed_headers,
            proof,
            Shape::Signed,
        )
    }

    /// A `HeadersV2Response` answering a `headers_only` request: as
    /// [`EncodedResponse::headers_v2`], with `bare_headers` each the
    /// protobuf encoding of one `BareHeader` (see [`bare_header_from_parts`]).
    ///
    /// # Errors
    ///
    /// As [`EncodedResponse::headers_v2`].
    pub fn bare_headers_v2(
        start_height: u64,
        end_height: u64,
        bare_headers: &[Vec<u8>],
        proof: &MmrProof,
    ) -> Result<Self, FrameError> {
        Self::proven(start_height, end_height, bare_headers, proof, Shape::Bare)
    }

    /// A `HeadersV2Response` from `start_height` carrying `compact_headers`
    /// made from `bare_headers`, each the protobuf encoding of one
    /// `BareHeader` (as a store keeps them), without decoding them into
    /// headers: the frame is what encoding the response with
    /// [`CompactHeaders::from_bare`](crate::CompactHeaders::from_bare) of
    /// the decoded headers gives. The validator sets are spliced as they are.
    ///
    /// `Ok(None)` when the headers have no compact form (see
    /// `CompactHeaders::from_bare`), do not start at `start_height`, or are
    /// not in the canonical shape this reads (the decoded path answers
    /// those).
    ///
    /// # Errors
    ///
    /// A malformed proof, or a frame over [`MAX_HEADERS_V2_RESPONSE_FRAME`].
    pub fn compact_headers_v2(
        start_height: u64,
        end_height: u64,
        bare_headers: &[Vec<u8>],
        proof: &MmrProof,
    ) -> Result<Option<Self>, FrameError> {
        let mut range = CompactRangeBuilder::new(start_height);
        for item in bare_headers {
            let Some((header, set)) = bare_parts(item) else {
                return Ok(None);
            };
            if !range.push(header, set) {
                return Ok(None);
            }
        }
        range.finish(end_height, proof)
    }

    fn proven(
        start_height: u64,
        end_height: u64,
        headers: &[Vec<u8>],
        proof: &MmrProof,
        shape: Shape,
    ) -> Result<Self, FrameError> {
        let field = match shape {
            Shape::Signed => "headers_v2_response.headers",
            Shape::Bare => "headers_v2_response.bare_headers",
        };
        if headers.is_empty() {
            return Err(WireError::Invalid {
                field,
                rule: "a range answer carries at least one header",
            }
            .into());
        }
        check_headers(field, headers, MAX_HEADERS_V2, shape)?;
        proof.validate()?;
        let proof = crate::messages::raw_proof(proof).encode_to_vec();
        let proven_len = headers
            .iter()
            .map(|h| bytes_field_len(1, h.len()))
            .sum::<usize>()
            + bytes_field_len(2, proof.len());
        // The result oneof: 3 is `headers`, 5 `bare_headers`.
        let result = match shape {
            Shape::Signed => 3,
            Shape::Bare => 5,
        };
        let body_len = u64_field_len(1, start_height)
            + u64_field_len(2, end_height)
            + bytes_field_len(result, proven_len);
        Self::framed(2, body_len, MAX_HEADERS_V2_RESPONSE_FRAME, |out| {
            put_u64_field(out, 1, start_height);
            put_u64_field(out, 2, end_height);
            put_len_prefix(out, result, proven_len);
            for h in headers {
                put_bytes_field(out, 1, h);
            }
            put_bytes_field(out, 2, &proof);
        })
    }

    /// The frame: length prefix, then the `Response` payload.
    #[must_use]
    pub fn as_frame(&self) -> &[u8] {
        &self.0
    }

    /// The frame, owned.
    #[must_use]
    pub fn into_frame(self) -> Vec<u8> {
        self.0
    }

    /// `Response { <field>: body }`, framed, within `max` bytes of payload,
    /// where `write_body` writes exactly `body_len` bytes. Sizes are worked
    /// out first, so the frame is written once, into one allocation of its
    /// exact size, and an oversized one is refused before anything is copied.
    fn framed(
        field: u32,
        body_len: usize,
        max: usize,
        write_body: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Self, FrameError> {
        let len = bytes_field_len(field, body_len);
        let max = max.min(MAX_FRAME);
        if len > max {
            return Err(FrameError::TooLarge {
                len: len as u64,
                max,
            });
        }
        let mut payload = Vec::with_capacity(LENGTH_PREFIX + len);
        // `len <= MAX_FRAME < u32::MAX`, so the cast is lossless.
        payload.extend_from_slice(&(len as u32).to_be_bytes());
        put_len_prefix(&mut payload, field, body_len);
        write_body(&mut payload);
        debug_assert_eq!(
            payload.len(),
            LENGTH_PREFIX + len,
            "frame size worked out wrong"
        );
        Ok(Self(payload))
    }
}

/// The encoding of one `SignedHeader` from its parts: the encoded `Header`,
/// the encoded `Commit`, and the encoded `ValidatorSet` where it is attached.
#[must_use]
pub fn signed_header_from_parts(
    header: &[u8],
    commit: &[u8],
    validator_set: Option<&[u8]>,
) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(header.len() + commit.len() + validator_set.map_or(0, <[u8]>::len) + 16);
    put_bytes_field(&mut out, 1, header);
    put_bytes_field(&mut out, 2, commit);
    if let Some(set) = validator_set {
        put_bytes_field(&mut out, 3, set);
    }
    out
}

/// The encoding of one `BareHeader` from its parts: the encoded `Header`
/// and the encoded `ValidatorSet` where it is attached.
#[must_use]
pub fn bare_header_from_parts(header: &[u8], validator_set: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + validator_set.map_or(0, <[u8]>::len) + 12);
    put_bytes_field(&mut out, 1, header);
    if let Some(set) = validator_set {
        put_bytes_field(&mut out, 2, set);
    }
    out
}

/// The length of [`bare_header_from_parts`] of the same parts, without
/// making it.
#[must_use]
pub fn bare_header_len(header: &[u8], validator_set: Option<&[u8]>) -> usize {
    bare_header_len_of(header.len(), validator_set)
}

/// As [`bare_header_len`], for a header whose encoding is `header_len`
/// bytes ([`HeaderFields::encoded_len`]).
#[must_use]
pub fn bare_header_len_of(header_len: usize, validator_set: Option<&[u8]>) -> usize {
    bytes_field_len(1, header_len) + validator_set.map_or(0, |set| bytes_field_len(2, set.len()))
}

/// Which message each encoded item is.
#[derive(Clone, Copy)]
enum Shape {
    /// `SignedHeader`: header, commit, optional validator set.
    Signed,
    /// `BareHeader`: header, optional validator set.
    Bare,
}

fn check_headers(
    field: &'static str,
    items: &[Vec<u8>],
    max: u32,
    shape: Shape,
) -> Result<(), WireError> {
    crate::types::check_count(field, items.len(), max as usize)?;
    for item in items {
        check_shape(item, shape).map_err(|rule| WireError::Invalid { field, rule })?;
    }
    Ok(())
}

/// A `SignedHeader`: fields 1 (header) and 2 (commit), then optionally 3
/// (validator set); a `BareHeader`: field 1 (header), then optionally 2
/// (validator set). Each length-delimited and inside the bytes, in order,
/// nothing else.
///
/// Field 2 is a commit in one and a validator set in the other, so the
/// field numbers alone would take a signed header without a set for a bare
/// header with one (and the reverse): the commit and the set are told apart
/// by their own top-level keys (see [`check_keys`]).
fn check_shape(mut bytes: &[u8], shape: Shape) -> Result<(), &'static str> {
    let (required, max, rule) = match shape {
        Shape::Signed => (
            2,
            3,
            "fields must be header, commit and an optional validator set, in order",
        ),
        Shape::Bare => (
            1,
            2,
            "fields must be header and an optional validator set, in order",
        ),
    };
    let mut last = 0u64;
    while !bytes.is_empty() {
        let key = prost::encoding::decode_varint(&mut bytes).map_err(|_| "bad field key")?;
        let (number, wire_type) = (key >> 3, key & 7);
        if wire_type != 2 || number != last + 1 || number > max {
            return Err(rule);
        }
        last = number;
        let len = prost::encoding::decode_varint(&mut bytes).map_err(|_| "bad field length")?;
        let len = usize::try_from(len).map_err(|_| "field too long")?;
        let Some((field, rest)) = bytes.split_at_checked(len) else {
            return Err("a field runs past the end");
        };
        match (shape, number) {
            (Shape::Signed, 2) => check_keys(field, COMMIT_KEYS, "the commit is not a commit")?,
            (Shape::Signed, 3) | (Shape::Bare, 2) => check_keys(
                field,
                VALIDATOR_SET_KEYS,
                "the validator set is not a validator set",
            )?,
            // The header is the same message in both shapes.
            _ => {}
        }
        bytes = rest;
    }
    if last < required {
        return Err(match shape {
            Shape::Signed => "header or commit missing",
            Shape::Bare => "header missing",
        });
    }
    Ok(())
}

/// A `Commit`'s fields: height and round (varints), block id and signatures
/// (length-delimited).
const COMMIT_KEYS: &[u64] = &[key(1, VARINT), key(2, VARINT), key(3, LEN), key(4, LEN)];

/// A `ValidatorSet`'s only field: its validators (length-delimited).
const VALIDATOR_SET_KEYS: &[u64] = &[key(1, LEN)];

/// Wire type of varint fields.
const VARINT: u64 = 0;
/// Wire type of length-delimited fields.
const LEN: u64 = 2;

const fn key(field: u64, wire_type: u64) -> u64 {
    (field << 3) | wire_type
}

/// One level of a message: at least one field, every key among `allowed`
/// (whose wire types are varint or length-delimited), every value inside
/// the bytes. A valid commit is never empty (it has a block id) nor a valid
/// set (it has a validator), and the two share no key, so this tells them
/// apart without decoding either.
fn check_keys(mut bytes: &[u8], allowed: &[u64], rule: &'static str) -> Result<(), &'static str> {
    if bytes.is_empty() {
        return Err(rule);
    }
    while !bytes.is_empty() {
        let key = prost::encoding::decode_varint(&mut bytes).map_err(|_| rule)?;
        if !allowed.contains(&key) {
            return Err(rule);
        }
        // A varint field's value, or a length-delimited field's length.
        let value = prost::encoding::decode_varint(&mut bytes).map_err(|_| rule)?;
        if key & 7 == LEN {
            let len = usize::try_from(value).map_err(|_| rule)?;
            bytes = bytes.get(len..).ok_or(rule)?;
        }
    }
    Ok(())
}

/// Appends the protobuf encoding of `header`, length-delimited: the bytes
/// `raw::Header::from(header).encode_length_delimited(out)` appends, without
/// building the intermediate message (which allocates its chain id and each
/// of its seven hash and address fields). Stores that keep headers encoded
/// write every synced header through this.
pub fn put_header_length_delimited(out: &mut Vec<u8>, header: &Header) {
    let len = header_len(header);
    out.reserve(len + prost::encoding::encoded_len_varint(len as u64));
    prost::encoding::encode_varint(len as u64, out);
    let start = out.len();
    if !header.chain_id.is_empty() {
        put_bytes_field(out, 1, header.chain_id.as_bytes());
    }
    put_u64_field(out, 2, header.height);
    put_u64_field(out, 3, header.time_ms);
    if let Some(id) = &header.last_block_id {
        // A BlockId is its one bytes field, always 32 bytes.
        put_len_prefix(out, 4, bytes_field_len(1, id.hash.0.len()));
        put_bytes_field(out, 1, &id.hash.0);
    }
    for (field, hash) in [
        (5, &header.data_hash),
        (6, &header.validators_hash),
        (7, &header.next_validators_hash),
        (8, &header.state_root),
        (9, &header.history_root),
    ] {
        put_bytes_field(out, field, &hash.0);
    }
    put_bytes_field(out, 10, &header.proposer_address.0);
    debug_assert_eq!(out.len() - start, len);
}

/// The encoded size of `header`'s protobuf message (without a length prefix).
fn header_len(header: &Header) -> usize {
    let chain_id = if header.chain_id.is_empty() {
        0
    } else {
        bytes_field_len(1, header.chain_id.len())
    };
    let last_block_id = header.last_block_id.as_ref().map_or(0, |id| {
        bytes_field_len(4, bytes_field_len(1, id.hash.0.len()))
    });
    chain_id
        + u64_field_len(2, header.height)
        + u64_field_len(3, header.time_ms)
        + last_block_id
        + 5 * bytes_field_len(5, 32)
        + bytes_field_len(10, header.proposer_address.0.len())
}

fn put_u64_field(out: &mut Vec<u8>, field: u32, value: u64) {
    // proto3 leaves zero scalars out, as prost does.
    if value != 0 {
        prost::encoding::encode_key(field, prost::encoding::WireType::Varint, out);
        prost::encoding::encode_varint(value, out);
    }
}

fn put_bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_len_prefix(out, field, bytes.len());
    out.extend_from_slice(bytes);
}

/// The key and length of a length-delimited field of `len` bytes.
fn put_len_prefix(out: &mut Vec<u8>, field: u32, len: usize) {
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(len as u64, out);
}

/// Encoded size of [`put_u64_field`].
fn u64_field_len(field: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        prost::encoding::key_len(field) + prost::encoding::encoded_len_varint(value)
    }
}

/// Encoded size of [`put_bytes_field`] with `len` bytes.
fn bytes_field_len(field: u32, len: usize) -> usize {
    prost::encoding::key_len(field) + prost::encoding::encoded_len_varint(len as u64) + len
}

// ------------------------------------------------------------ compact ranges

/// A compact range (`CompactHeaders`, docs/protocol.md "Compact ranges")
/// built from stored headers one at a time, as a store walks its rows: each
/// header given as its encoded `Header` and, where attached, its encoded
/// `ValidatorSet`, the two parts a store keeps. Nothing is decoded into
/// domain types and no header is copied whole: the builder keeps only the
/// columns (about 100 bytes a header), and [`CompactRangeBuilder::finish`]
/// writes the frame [`EncodedResponse::compact_headers_v2`] would.
///
/// A header is refused (and the builder left as it was) where
/// `CompactHeaders::from_bare` would have no compact form for the range
/// with it: not the next height, another chain id, a `validators_hash`
/// that is not the previous header's `next_validators_hash`, a time step
/// outside `i64`, more than [`MAX_COMPACT_PROPOSERS`](crate::limits::MAX_COMPACT_PROPOSERS)
/// proposers or [`MAX_HEADERS_V2`] headers; or where the encoded header is
/// not in the canonical shape this reads, or the set is not a
/// `ValidatorSet`'s fields. The builder holds what came before.
#[derive(Debug, Clone)]
pub struct CompactRangeBuilder {
    start_height: u64,
    /// Headers the columns are sized for at the first header (at most
    /// [`MAX_HEADERS_V2`]).
    capacity: usize,
    /// The columns; `None` until the first header.
    columns: Option<Columns>,
}

/// The columns of a `CompactHeaders` (fields 1 to 10), and the fields of
/// the last header the next one is checked against.
#[derive(Debug, Clone)]
struct Columns {
    chain_id: Vec<u8>,
    parent_hash: Option<[u8; 32]>,
    validators_hash: [u8; 32],
    first_time_ms: u64,
    /// Zigzag-encoded time steps, as packed `sint64` carries them.
    time_deltas: Vec<u64>,
    roots: Vec<u8>,
    proposers: Vec<[u8; 20]>,
    proposer_indexes: Vec<u8>,
    validators_changes: Vec<(u32, [u8; 32])>,
    validator_sets: Vec<(u32, Vec<u8>)>,
    /// The last header's `next_validators_hash` and time.
    last_next_validators_hash: [u8; 32],
    last_time_ms: u64,
}

/// The fields of one `Header`, borrowed where they can be: what a store
/// that keeps headers in another layout than protobuf (`headway-store`'s
/// delta rows) hands a server, which builds a compact range from them
/// ([`CompactRangeBuilder::push_fields`]) or the protobuf encoding
/// ([`HeaderFields::encode`]) without a `Header` in between.
///
/// The fields are taken as they are: nothing here checks them against the
/// rules of a valid header (a store checked them when it stored them). A
/// [`Header`](crate::Header) decoded from [`HeaderFields::encode`]'s bytes
/// is checked as any decoded header is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderFields<'a> {
    /// The chain id's bytes.
    pub chain_id: &'a [u8],
    /// The height.
    pub height: u64,
    /// The block time, ms.
    pub time_ms: u64,
    /// The parent's hash (`last_block_id`); `None` at height 1.
    pub parent_hash: Option<[u8; 32]>,
    /// `data_hash`.
    pub data_hash: &'a [u8; 32],
    /// `validators_hash`.
    pub validators_hash: [u8; 32],
    /// `next_validators_hash`.
    pub next_validators_hash: [u8; 32],
    /// `state_root`.
    pub state_root: &'a [u8; 32],
    /// `history_root`.
    pub history_root: &'a [u8; 32],
    /// `proposer_address`.
    pub proposer: [u8; 20],
}

impl<'a> HeaderFields<'a> {
    /// The fields of `header`.
    #[must_use]
    pub fn of(header: &'a Header) -> Self {
        Self {
            chain_id: header.chain_id.as_bytes(),
            height: header.height,
            time_ms: header.time_ms,
            parent_hash: header.last_block_id.map(|id| id.hash.0),
            data_hash: &header.data_hash.0,
            validators_hash: header.validators_hash.0,
            next_validators_hash: header.next_validators_hash.0,
            state_root: &header.state_root.0,
            history_root: &header.history_root.0,
            proposer: header.proposer_address.0,
        }
    }

    /// Bytes of [`HeaderFields::encode`]'s output.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        let chain_id = if self.chain_id.is_empty() {
            0
        } else {
            bytes_field_len(1, self.chain_id.len())
        };
        let parent = self
            .parent_hash
            .map_or(0, |_| bytes_field_len(4, bytes_field_len(1, 32)));
        chain_id
            + u64_field_len(2, self.height)
            + u64_field_len(3, self.time_ms)
            + parent
            + 5 * bytes_field_len(5, 32)
            + bytes_field_len(10, 20)
    }

    /// Appends the protobuf encoding of the `Header` (no length prefix):
    /// byte for byte what `prost` gives for the same header.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        if !self.chain_id.is_empty() {
            put_bytes_field(out, 1, self.chain_id);
        }
        put_u64_field(out, 2, self.height);
        put_u64_field(out, 3, self.time_ms);
        if let Some(hash) = &self.parent_hash {
            put_len_prefix(out, 4, bytes_field_len(1, hash.len()));
            put_bytes_field(out, 1, hash);
        }
        for (field, hash) in [
            (5, &self.data_hash[..]),
            (6, &self.validators_hash[..]),
            (7, &self.next_validators_hash[..]),
            (8, &self.state_root[..]),
            (9, &self.history_root[..]),
        ] {
            put_bytes_field(out, field, hash);
        }
        put_bytes_field(out, 10, &self.proposer);
    }
}

impl<'a> HeaderFields<'a> {
    /// Reads an encoded `Header` in canonical shape: fields in order, each
    /// at most once, hashes of 32 bytes and an address of 20; `None`
    /// otherwise.
    #[must_use]
    pub fn read(mut bytes: &'a [u8]) -> Option<Self> {
        let mut fields: [Option<&'a [u8]>; 11] = [None; 11];
        let (mut height, mut time_ms) = (0, 0);
        let mut last = 0;
        while !bytes.is_empty() {
            let key = prost::encoding::decode_varint(&mut bytes).ok()?;
            let number = usize::try_from(key >> 3).ok()?;
            if number <= last || number > 10 {
                return None;
            }
            last = number;
            match (number, key & 7) {
                (2, VARINT) => height = prost::encoding::decode_varint(&mut bytes).ok()?,
                (3, VARINT) => time_ms = prost::encoding::decode_varint(&mut bytes).ok()?,
                (1 | 4..=10, LEN) => {
                    let len =
                        usize::try_from(prost::encoding::decode_varint(&mut bytes).ok()?).ok()?;
                    let (field, rest) = bytes.split_at_checked(len)?;
                    fields[number] = Some(field);
                    bytes = rest;
                }
                _ => return None,
            }
        }
        let hash = |field: Option<&'a [u8]>| -> Option<&'a [u8; 32]> { field?.try_into().ok() };
        let parent_hash = match fields[4] {
            // A BlockId: its one field, a 32-byte hash.
            Some([0x0a, 32, hash @ ..]) => Some(<[u8; 32]>::try_from(hash).ok()?),
            Some(_) => return None,
            None => None,
        };
        Some(HeaderFields {
            chain_id: fields[1]?,
            height,
            time_ms,
            parent_hash,
            data_hash: hash(fields[5])?,
            validators_hash: *hash(fields[6])?,
            next_validators_hash: *hash(fields[7])?,
            state_root: hash(fields[8])?,
            history_root: hash(fields[9])?,
            proposer: fields[10]?.try_into().ok()?,
        })
    }
}

/// A `BareHeader`: its header and its validator set, if attached.
fn bare_parts(bytes: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    check_shape(bytes, Shape::Bare).ok()?;
    let mut r = bytes;
    let mut next = || -> Option<&[u8]> {
        if r.is_empty() {
            return None;
        }
        prost::encoding::decode_varint(&mut r).ok()?;
        let len = usize::try_from(prost::encoding::decode_varint(&mut r).ok()?).ok()?;
        let (field, rest) = r.split_at_checked(len)?;
        r = rest;
        Some(field)
    };
    let header = next()?;
    Some((header, next()))
}

impl CompactRangeBuilder {
    /// An empty range whose first header will be at `start_height`.
    #[must_use]
    pub fn new(start_height: u64) -> Self {
        Self::with_capacity(start_height, 0)
    }

    /// As [`CompactRangeBuilder::new`], with the per-header columns sized
    /// for `headers` headers (at most [`MAX_HEADERS_V2`], whatever is asked)
    /// once the first one is added, so that a range of known length is
    /// built without growing them.
    #[must_use]
    pub fn with_capacity(start_height: u64, headers: usize) -> Self {
        Self {
            start_height,
            capacity: headers.min(MAX_HEADERS_V2 as usize),
            columns: None,
        }
    }

    /// How many headers it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.columns
            .as_ref()
            .map_or(0, |c| c.roots.len() / crate::compact::ROOTS_PER_HEADER)
    }

    /// Whether it holds no header.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.columns.is_none()
    }

    /// Adds the next header, `header` its encoded `Header` and
    /// `validator_set` its encoded `ValidatorSet` where one is attached;
    /// `false`, adding nothing, where the range with it has no compact form
    /// (see the [type documentation](Self)).
    pub fn push(&mut self, header: &[u8], validator_set: Option<&[u8]>) -> bool {
        match HeaderFields::read(header) {
            Some(header) => self.push_fields(&header, validator_set),
            None => false,
        }
    }

    /// As [`CompactRangeBuilder::push`], the header given by its fields.
    pub fn push_fields(&mut self, header: &HeaderFields<'_>, validator_set: Option<&[u8]>) -> bool {
        let index = self.len();
        if index >= MAX_HEADERS_V2 as usize {
            return false;
        }
        // `index` is below MAX_HEADERS_V2.
        let index = index as u32;
        if Some(header.height) != self.start_height.checked_add(u64::from(index))
            || validator_set.is_some_and(|set| {
                check_keys(set, VALIDATOR_SET_KEYS, "not a validator set").is_err()
            })
        {
            return false;
        }
        let mut fresh = None;
        let columns = match &mut self.columns {
            Some(columns) => columns,
            None => fresh.insert(Columns {
                chain_id: header.chain_id.to_vec(),
                parent_hash: header.parent_hash,
                validators_hash: header.validators_hash,
                first_time_ms: header.time_ms,
                time_deltas: Vec::with_capacity(self.capacity.saturating_sub(1)),
                roots: Vec::with_capacity(self.capacity * crate::compact::ROOTS_PER_HEADER),
                proposers: Vec::new(),
                proposer_indexes: Vec::with_capacity(self.capacity),
                validators_changes: Vec::new(),
                validator_sets: Vec::new(),
                last_next_validators_hash: header.validators_hash,
                last_time_ms: header.time_ms,
            }),
        };
        if !columns.push(index, header, validator_set) {
            return false;
        }
        if fresh.is_some() {
            self.columns = fresh;
        }
        true
    }

    /// The `HeadersV2Response` under `end_height` carrying the range and
    /// `proof`, framed; `Ok(None)` when the range is empty.
    ///
    /// # Errors
    ///
    /// A malformed proof, or a frame over [`MAX_HEADERS_V2_RESPONSE_FRAME`].
    pub fn finish(
        self,
        end_height: u64,
        proof: &MmrProof,
    ) -> Result<Option<EncodedResponse>, FrameError> {
        let Some(columns) = self.columns else {
            return Ok(None);
        };
        proof.validate()?;
        let proof = crate::messages::raw_proof(proof).encode_to_vec();
        let compact_len = columns.encoded_len() + bytes_field_len(11, proof.len());
        let body_len = u64_field_len(1, self.start_height)
            + u64_field_len(2, end_height)
            + bytes_field_len(6, compact_len);
        EncodedResponse::framed(2, body_len, MAX_HEADERS_V2_RESPONSE_FRAME, |out| {
            put_u64_field(out, 1, self.start_height);
            put_u64_field(out, 2, end_height);
            put_len_prefix(out, 6, compact_len);
            columns.write(out);
            put_bytes_field(out, 11, &proof);
        })
        .map(Some)
    }
}

impl Columns {
    /// Appends header `index` (read, at the right height), checked against
    /// the last one; `false`, changing nothing, where it breaks a rule of
    /// the compact form.
    fn push(&mut self, index: u32, header: &HeaderFields<'_>, set: Option<&[u8]>) -> bool {
        let delta = if index == 0 {
            None
        } else {
            if header.chain_id != self.chain_id
                || header.validators_hash != self.last_next_validators_hash
            {
                return false;
            }
            let Ok(delta) =
                i64::try_from(i128::from(header.time_ms) - i128::from(self.last_time_ms))
            else {
                return false;
            };
            Some(delta)
        };
        let Some(proposer) = crate::compact::proposer_index(
            &mut self.proposers,
            header.proposer,
            self.proposer_indexes.last().copied(),
        ) else {
            return false;
        };
        // Nothing can fail from here on.
        if let Some(delta) = delta {
            // Zigzag, as `sint64` is encoded.
            self.time_deltas.push(((delta << 1) ^ (delta >> 63)) as u64);
        }
        self.roots.extend_from_slice(header.data_hash);
        self.roots.extend_from_slice(header.state_root);
        self.roots.extend_from_slice(header.history_root);
        self.proposer_indexes.push(proposer);
        if header.next_validators_hash != header.validators_hash {
            self.validators_changes
                .push((index, header.next_validators_hash));
        }
        if let Some(set) = set {
            self.validator_sets.push((index, set.to_vec()));
        }
        self.last_next_validators_hash = header.next_validators_hash;
        self.last_time_ms = header.time_ms;
        true
    }

    fn deltas_len(&self) -> usize {
        self.time_deltas
            .iter()
            .map(|d| prost::encoding::encoded_len_varint(*d))
            .sum()
    }

    fn change_len(index: u32, hash: &[u8]) -> usize {
        u64_field_len(1, u64::from(index)) + bytes_field_len(2, hash.len())
    }

    fn set_len(index: u32, set: &[u8]) -> usize {
        u64_field_len(1, u64::from(index)) + bytes_field_len(2, set.len())
    }

    /// Encoded size of fields 1 to 10.
    fn encoded_len(&self) -> usize {
        let optional =
            |field, bytes: Option<&[u8]>| bytes.map_or(0, |b| bytes_field_len(field, b.len()));
        let deltas = self.deltas_len();
        bytes_field_len(1, self.chain_id.len())
            + optional(2, self.parent_hash.as_ref().map(|h| &h[..]))
            + bytes_field_len(3, self.validators_hash.len())
            + u64_field_len(4, self.first_time_ms)
            + if deltas == 0 {
                0
            } else {
                bytes_field_len(5, deltas)
            }
            + bytes_field_len(6, self.roots.len())
            + self
                .proposers
                .iter()
                .map(|p| bytes_field_len(7, p.len()))
                .sum::<usize>()
            + bytes_field_len(8, self.proposer_indexes.len())
            + self
                .validators_changes
                .iter()
                .map(|(i, h)| bytes_field_len(9, Self::change_len(*i, h)))
                .sum::<usize>()
            + self
                .validator_sets
                .iter()
                .map(|(i, s)| bytes_field_len(10, Self::set_len(*i, s)))
                .sum::<usize>()
    }

    /// Writes fields 1 to 10 in order, leaving out what prost leaves out.
    fn write(&self, out: &mut Vec<u8>) {
        put_bytes_field(out, 1, &self.chain_id);
        if let Some(parent) = &self.parent_hash {
            put_bytes_field(out, 2, parent);
        }
        put_bytes_field(out, 3, &self.validators_hash);
        put_u64_field(out, 4, self.first_time_ms);
        let deltas = self.deltas_len();
        if deltas > 0 {
            put_len_prefix(out, 5, deltas);
            for delta in &self.time_deltas {
                prost::encoding::encode_varint(*delta, out);
            }
        }
        put_bytes_field(out, 6, &self.roots);
        for proposer in &self.proposers {
            put_bytes_field(out, 7, proposer);
        }
        put_bytes_field(out, 8, &self.proposer_indexes);
        for (index, hash) in &self.validators_changes {
            put_len_prefix(out, 9, Self::change_len(*index, hash));
            put_u64_field(out, 1, u64::from(*index));
            put_bytes_field(out, 2, hash);
        }
        for (index, set) in &self.validator_sets {
            put_len_prefix(out, 10, Self::set_len(*index, set));
            put_u64_field(out, 1, u64::from(*index));
            put_bytes_field(out, 2, set);
        }
    }
}
