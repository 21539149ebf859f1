//! Responses assembled from signed headers that are already encoded.
//!
//! A server that keeps headers in their protobuf form (the store does) can
//! answer `GetHeaders` and `GetHeadersV2` by copying those bytes into the
//! frame instead of decoding them into domain types and encoding them again.
//! The frames are byte for byte what [`crate::frame::encode_frame`] makes of
//! the same response (tested), and the same limits apply: header counts and
//! the frame size of the response kind. Each encoded signed header is checked
//! for its shape (fields 1, 2 and optionally 3, in order, each a
//! length-delimited message inside the bytes), not decoded: it comes from
//! the server's own store, and the requester verifies everything anyway.

use prost::Message as _;

use crate::{
    FrameError, MmrProof, WireError,
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
        )?;
        let mut body = Vec::with_capacity(16 + total_len(signed_headers));
        put_u64_field(&mut body, 1, start_height);
        for h in signed_headers {
            put_bytes_field(&mut body, 2, h);
        }
        Self::wrap(1, &body, MAX_HEADERS_RESPONSE_FRAME)
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
        if signed_headers.is_empty() {
            return Err(WireError::Invalid {
                field: "headers_v2_response.headers",
                rule: "a range answer carries at least one header",
            }
            .into());
        }
        check_headers(
            "headers_v2_response.headers",
            signed_headers,
            MAX_HEADERS_V2,
        )?;
        proof.validate()?;
        let mut proven = Vec::with_capacity(64 + total_len(signed_headers));
        for h in signed_headers {
            put_bytes_field(&mut proven, 1, h);
        }
        put_bytes_field(
            &mut proven,
            2,
            &crate::messages::raw_proof(proof).encode_to_vec(),
        );
        let mut body = Vec::with_capacity(32 + proven.len());
        put_u64_field(&mut body, 1, start_height);
        put_u64_field(&mut body, 2, end_height);
        put_bytes_field(&mut body, 3, &proven);
        Self::wrap(2, &body, MAX_HEADERS_V2_RESPONSE_FRAME)
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

    /// `Response { <field>: body }`, framed, within `max` bytes of payload.
    fn wrap(field: u32, body: &[u8], max: usize) -> Result<Self, FrameError> {
        let mut payload = Vec::with_capacity(LENGTH_PREFIX + 8 + body.len());
        payload.extend_from_slice(&[0; LENGTH_PREFIX]);
        put_bytes_field(&mut payload, field, body);
        let len = payload.len() - LENGTH_PREFIX;
        let max = max.min(MAX_FRAME);
        if len > max {
            return Err(FrameError::TooLarge {
                len: len as u64,
                max,
            });
        }
        // `len <= MAX_FRAME < u32::MAX`, so the cast is lossless.
        payload[..LENGTH_PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
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

fn total_len(items: &[Vec<u8>]) -> usize {
    items.iter().map(|h| h.len() + 6).sum()
}

fn check_headers(field: &'static str, items: &[Vec<u8>], max: u32) -> Result<(), WireError> {
    crate::types::check_count(field, items.len(), max as usize)?;
    for item in items {
        check_signed_header_shape(item).map_err(|rule| WireError::Invalid { field, rule })?;
    }
    Ok(())
}

/// Fields 1 (header) and 2 (commit), then optionally 3 (validator set), each
/// length-delimited and inside the bytes, nothing else.
fn check_signed_header_shape(mut bytes: &[u8]) -> Result<(), &'static str> {
    let mut last = 0u64;
    while !bytes.is_empty() {
        let key = prost::encoding::decode_varint(&mut bytes).map_err(|_| "bad field key")?;
        let (number, wire_type) = (key >> 3, key & 7);
        if wire_type != 2 || number != last + 1 || number > 3 {
            return Err("fields must be header, commit and an optional validator set, in order");
        }
        last = number;
        let len = prost::encoding::decode_varint(&mut bytes).map_err(|_| "bad field length")?;
        let len = usize::try_from(len).map_err(|_| "field too long")?;
        let Some(rest) = bytes.get(len..) else {
            return Err("a field runs past the end");
        };
        bytes = rest;
    }
    if last < 2 {
        return Err("header or commit missing");
    }
    Ok(())
}

fn put_u64_field(out: &mut Vec<u8>, field: u32, value: u64) {
    // proto3 leaves zero scalars out, as prost does.
    if value != 0 {
        prost::encoding::encode_key(field, prost::encoding::WireType::Varint, out);
        prost::encoding::encode_varint(value, out);
    }
}

fn put_bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}
