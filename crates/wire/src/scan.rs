//! A counting pass over a peer's bytes before prost decodes them.
//!
//! prost builds every item of a repeated field before the `TryFrom`
//! conversion can count them, and an empty item costs two bytes on the
//! wire and a whole struct in memory: a 16 MiB `HeadersV2Response` of
//! empty signed headers is 8.4 million `raw::SignedHeader`s (2.4 GiB)
//! before the count of 2000 refuses it. [`request`], [`response`] and
//! [`push`] walk the bytes first, allocating nothing, count the items of
//! every repeated field that has a limit, and refuse the frame with
//! [`WireError::TooMany`] at the first item past a limit (`actual` is then
//! the limit plus one), inside [`WireError::Item`] where the field is in an
//! item of another, as `TryFrom` names it. `Envelope::decode` runs them
//! before prost (`Response::decode` after the fast path of
//! [`crate::fast`], which stops at the limits by itself), so no frame
//! makes prost hold more items than the protocol allows.
//!
//! Two rules more, for the items whose per-parent limits are large: a
//! commit may have 10 000 signatures and a validator set 10 000 validators,
//! so 2000 headers of a range could carry 20 million of each. A valid
//! signature takes at least [`COMMIT_SIG_MIN_LEN`] bytes of its commit and
//! a valid validator at least [`VALIDATOR_MIN_LEN`] of its set, so a commit
//! or set holding more than its length allows is refused the same way
//! (`max` is then what its length allows): it holds items too short to be
//! valid.
//!
//! The walk is prost's own: each message is a small counting type that
//! implements [`prost::Message`] and goes through `prost::encoding` (keys,
//! lengths, wire types, skipped fields and groups, the recursion limit), so
//! it reads the bytes as the decode that follows will. Two shortcuts keep
//! it cheap: a run of one field's items (one-byte keys back to back, up to
//! where prost's loop over the message stops) is read in one go, and packed
//! varints (a compact range's time deltas) are counted by their last bytes
//! in one pass, which is their count when valid and bounds what prost reads
//! when not. Fields without a limit are skipped whole. Malformed bytes stop the
//! walk without an error and are left to prost, which reports them having
//! built no more than the limits allow up to that point. Protobuf's merge
//! rules are followed: a message field seen twice merges (its counts add
//! up), a repeated field's items each count, and another member of a
//! `oneof` replaces the one before (whose counts start again).
//!
//! A frame refused here is refused by the full decode too, except that the
//! error may name another broken rule where the message breaks several,
//! and for one encoding no encoder writes: a `oneof` member over a limit
//! that a later member replaces (prost would build its items, then drop
//! them).

use prost::{
    DecodeError, Message,
    bytes::{Buf, BufMut},
    encoding::{
        DecodeContext, WireType, check_wire_type, decode_varint, merge_loop, message, skip_field,
    },
};

use crate::{WireError, limits::*};

/// Fewest bytes a valid `CommitSig` takes in its commit: key and length,
/// then a 20-byte address and a 64-byte signature with their keys and lengths.
pub const COMMIT_SIG_MIN_LEN: usize = 2 + (2 + 20) + (2 + 64);

/// Fewest bytes a valid `Validator` takes in its set: key and length, a
/// 32-byte public key with key and length, and a voting power of at least 1.
pub const VALIDATOR_MIN_LEN: usize = 2 + (2 + 32) + 2;

/// Counts the repeated fields of a `Request`; see the [module documentation](self).
pub fn request(bytes: &[u8]) -> Result<(), WireError> {
    run::<RequestScan>(bytes)
}

/// Counts the repeated fields of a `Response`; see the [module documentation](self).
pub fn response(bytes: &[u8]) -> Result<(), WireError> {
    run::<ResponseScan>(bytes)
}

/// Counts the repeated fields of a `Push`; see the [module documentation](self).
pub fn push(bytes: &[u8]) -> Result<(), WireError> {
    run::<PushScan>(bytes)
}

fn run<F: Fields + Default>(bytes: &[u8]) -> Result<(), WireError> {
    let mut fields = F::default();
    let mut scan = Scan {
        fields: &mut fields,
        refused: None,
        end: 0,
    };
    // A malformed message is prost's to report: it stops where this did.
    let _ = scan.merge(bytes);
    scan.refused.map_or(Ok(()), Err)
}

// ------------------------------------------------------------ the machinery

/// One field, its key read, as prost hands it to `merge_field`.
struct Field<'a, B> {
    tag: u32,
    wire_type: WireType,
    buf: &'a mut B,
    ctx: DecodeContext,
    /// `buf.remaining()` at the end of the message: prost reads another
    /// field of it while more remains (`usize::MAX` where unknown).
    end: usize,
}

/// One message's counts: `field` reads one of its fields, counting or
/// skipping it.
trait Fields: Send + Sync {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop>;

    /// Called after each occurrence of the message with the bytes it took
    /// (length prefix included), for the rules on room.
    fn measured(&mut self, _bytes: usize) -> Result<(), WireError> {
        Ok(())
    }
}

/// Why a walk stopped.
enum Stop {
    /// Malformed bytes, left to prost.
    Malformed(DecodeError),
    /// Over a limit.
    Refused(WireError),
}

impl From<DecodeError> for Stop {
    fn from(e: DecodeError) -> Self {
        Stop::Malformed(e)
    }
}

impl From<WireError> for Stop {
    fn from(e: WireError) -> Self {
        Stop::Refused(e)
    }
}

impl Stop {
    /// A refusal inside the `index`-th item of `field`, named as `TryFrom` names it.
    fn item(self, field: &'static str, index: usize) -> Stop {
        match self {
            Stop::Refused(e) => Stop::Refused(WireError::item(field, index)(e)),
            malformed @ Stop::Malformed(_) => malformed,
        }
    }
}

/// The [`Message`] prost drives: it hands every field to `fields` and,
/// on a refusal, keeps the error and stops prost's loop with one of its own.
struct Scan<'a, F> {
    fields: &'a mut F,
    refused: Option<WireError>,
    /// As [`Field::end`].
    end: usize,
}

impl<F: Fields> Message for Scan<'_, F> {
    fn encode_raw(&self, _buf: &mut impl BufMut) {}

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let f = Field {
            tag,
            wire_type,
            buf,
            ctx,
            end: self.end,
        };
        match self.fields.field(f) {
            Ok(()) => Ok(()),
            Err(Stop::Malformed(e)) => Err(e),
            Err(Stop::Refused(e)) => {
                self.refused = Some(e);
                Err(interrupt())
            }
        }
    }

    fn encoded_len(&self) -> usize {
        0
    }

    fn clear(&mut self) {}
}

/// A `DecodeError` to stop prost's loop with (the refusal is kept apart).
/// prost's constructor is deprecated; a wire type mismatch always makes one
/// (the `Ok` arm is never taken).
fn interrupt() -> DecodeError {
    match check_wire_type(WireType::LengthDelimited, WireType::Varint) {
        Err(e) => e,
        Ok(()) => interrupt(),
    }
}

/// A message field: walked with `fields`, whose counts carry over from an
/// earlier occurrence (prost merges the two).
fn nested<F: Fields>(fields: &mut F, f: Field<'_, impl Buf>) -> Result<(), Stop> {
    let before = f.buf.remaining();
    // Where prost's loop over the message will stop: its length, read
    // ahead. Unread (a buffer in pieces, or bytes prost refuses), no runs.
    let chunk = f.buf.chunk();
    let mut rest = chunk;
    let end = decode_varint(&mut rest)
        .ok()
        .and_then(|len| usize::try_from(len).ok())
        .and_then(|len| (before - (chunk.len() - rest.len())).checked_sub(len))
        .unwrap_or(usize::MAX);
    let mut scan = Scan {
        fields,
        refused: None,
        end,
    };
    let read = message::merge(f.wire_type, &mut scan, f.buf, f.ctx);
    if let Some(e) = scan.refused {
        return Err(Stop::Refused(e));
    }
    read?;
    Ok(scan.fields.measured(before - f.buf.remaining())?)
}

/// A repeated field's limit, named as `TryFrom` names it.
struct Limit {
    field: &'static str,
    max: usize,
}

const fn limit(field: &'static str, max: usize) -> Limit {
    Limit { field, max }
}

/// Counts one more item of `limit`'s field; the first past the limit is
/// refused. Returns the item's index.
fn bump(count: &mut usize, limit: &Limit) -> Result<usize, Stop> {
    if *count >= limit.max {
        return Err(over(limit));
    }
    *count += 1;
    Ok(*count - 1)
}

/// Counts `n` more items of `limit`'s field at once, refused as [`bump`]
/// refuses the first past the limit.
fn bump_by(count: &mut usize, n: usize, limit: &Limit) -> Result<(), Stop> {
    if n > limit.max - *count {
        return Err(over(limit));
    }
    *count += n;
    Ok(())
}

/// The refusal of the first item past `limit`.
fn over(limit: &Limit) -> Stop {
    Stop::Refused(WireError::TooMany {
        field: limit.field,
        max: limit.max,
        actual: limit.max as u64 + 1,
    })
}

/// An item of a repeated message field, walked with a fresh `F`.
fn item<F: Fields + Default>(
    count: &mut usize,
    limit: &Limit,
    f: Field<'_, impl Buf>,
) -> Result<(), Stop> {
    // prost's `merge_repeated` checks the wire type first.
    check_wire_type(WireType::LengthDelimited, f.wire_type)?;
    let index = bump(count, limit)?;
    nested(&mut F::default(), f).map_err(|stop| stop.item(limit.field, index))
}

/// An item of a repeated message or `bytes` field with nothing to count
/// inside, and the items of the same field right after it: while the
/// message goes on and the next key is this field's (one byte), prost's
/// loop would hand it here again, so it is read here in one go (signatures,
/// validators, hashes and proposers come in runs).
fn counted(count: &mut usize, limit: &Limit, f: Field<'_, impl Buf>) -> Result<(), Stop> {
    check_wire_type(WireType::LengthDelimited, f.wire_type)?;
    let key = u8::try_from(f.tag << 3 | WireType::LengthDelimited as u32).unwrap_or(0x80);
    loop {
        bump(count, limit)?;
        skip_field(f.wire_type, f.tag, f.buf, f.ctx.clone())?;
        if key >= 0x80 || f.buf.remaining() <= f.end || f.buf.chunk().first() != Some(&key) {
            return Ok(());
        }
        f.buf.advance(1);
    }
}

/// A repeated varint field: packed (any number of values) or one value, as
/// prost's `merge_repeated` for numbers reads them.
fn varints(count: &mut usize, limit: &Limit, f: Field<'_, impl Buf>) -> Result<(), Stop> {
    let Field {
        wire_type,
        buf,
        ctx,
        ..
    } = f;
    if wire_type != WireType::LengthDelimited {
        check_wire_type(WireType::Varint, wire_type)?;
        decode_varint(buf)?;
        return bump(count, limit).map(drop);
    }
    // Each value prost reads ends with a byte under 0x80, so counting those
    // bounds what it builds, and for valid bytes is the count: one quick
    // pass over a compact range's longest column of fields.
    let chunk = buf.chunk();
    let mut rest = chunk;
    if let Some(values) = decode_varint(&mut rest)
        .ok()
        .and_then(|len| usize::try_from(len).ok())
        .and_then(|len| rest.get(..len))
    {
        bump_by(count, last_bytes(values), limit)?;
        let read = chunk.len() - rest.len() + values.len();
        buf.advance(read);
        return Ok(());
    }
    // Cut short (or a buffer in pieces): value by value, as prost reads.
    let mut refused = None;
    let read = merge_loop(&mut *count, buf, ctx, |count, buf, _| {
        decode_varint(buf)?;
        if let Err(stop) = bump(count, limit) {
            refused = Some(stop);
            return Err(interrupt());
        }
        Ok(())
    });
    if let Some(stop) = refused {
        return Err(stop);
    }
    Ok(read?)
}

/// How many bytes of `bytes` are under 0x80 (end a varint), eight at a time.
fn last_bytes(bytes: &[u8]) -> usize {
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let words = bytes.chunks_exact(8);
    let tail = words.remainder().iter().filter(|&&b| b < 0x80).count();
    words
        .map(|w| {
            w.try_into()
                .map_or(0, |w| (!u64::from_le_bytes(w) & HIGH_BITS).count_ones())
        })
        .sum::<u32>() as usize
        + tail
}

/// Any field with nothing to count: skipped as prost skips unknown fields.
fn skip(f: Field<'_, impl Buf>) -> Result<(), Stop> {
    Ok(skip_field(f.wire_type, f.tag, f.buf, f.ctx)?)
}

/// A member of a `oneof`: `state`, started again when another member was
/// the last one read (prost replaces it).
fn member<'s, T: Default>(active: &mut u32, tag: u32, state: &'s mut T) -> &'s mut T {
    if *active != tag {
        *active = tag;
        *state = T::default();
    }
    state
}

/// A member of a `oneof` with nothing to count: it replaces the one before.
fn other_member(active: &mut u32, f: Field<'_, impl Buf>) -> Result<(), Stop> {
    *active = f.tag;
    skip(f)
}

/// `count` items of `limit`'s field in `bytes` bytes of their parent,
/// where each valid one takes at least `min_len`.
fn room(limit: &Limit, count: usize, bytes: usize, min_len: usize) -> Result<(), WireError> {
    let max = bytes / min_len;
    if count > max {
        return Err(WireError::TooMany {
            field: limit.field,
            max,
            actual: count as u64,
        });
    }
    Ok(())
}

// ------------------------------------------------------------ the limits

const GET_HEADER_CHAIN_LOCATOR: Limit = limit("get_header_chain.locator", MAX_LOCATOR_HASHES);
const GET_BLOCKS_BY_HASH: Limit = limit("get_blocks.by_hash", MAX_BLOCKS_PER_REQUEST as usize);
const HEADERS_RESPONSE_HEADERS: Limit =
    limit("headers_response.headers", MAX_HEADERS_PER_BATCH as usize);
const HEADERS_V2_HEADERS: Limit = limit("headers_v2_response.headers", MAX_HEADERS_V2 as usize);
const HEADERS_V2_BARE_HEADERS: Limit =
    limit("headers_v2_response.bare_headers", MAX_HEADERS_V2 as usize);
/// One time delta per header after the first.
const COMPACT_TIME_DELTAS: Limit = limit(
    "compact_headers.time_deltas_ms",
    MAX_HEADERS_V2 as usize - 1,
);
const COMPACT_PROPOSERS: Limit = limit("compact_headers.proposers", MAX_COMPACT_PROPOSERS);
const COMPACT_VALIDATORS_CHANGES: Limit = limit(
    "compact_headers.validators_changes",
    MAX_HEADERS_V2 as usize,
);
const COMPACT_VALIDATOR_SETS: Limit =
    limit("compact_headers.validator_sets", MAX_HEADERS_V2 as usize);
const MMR_PROOF_HASHES: Limit = limit("mmr_proof.hashes", MAX_MMR_PROOF_HASHES);
/// As `TryFrom` bounds them: one per one-byte prefix.
const SNAPSHOT_MANIFEST_PREFIXES: Limit = limit("snapshot_manifest.prefixes", 256);
const SNAPSHOT_DATA_ENTRIES: Limit = limit("snapshot_data.entries", MAX_SNAPSHOT_ENTRIES);
const BLOCKS_RESPONSE_BLOCKS: Limit =
    limit("blocks_response.blocks", MAX_BLOCKS_PER_REQUEST as usize);
const BLOCK_TXS: Limit = limit("block.txs", MAX_TXS_PER_BLOCK);
const TRANSACTION_WRITES: Limit = limit("transaction.writes", MAX_WRITES_PER_TX);
const SKIP_CHAIN_HOPS: Limit = limit("skip_chain_response.hops", MAX_SKIP_HOPS);
const COMMIT_SIGNATURES: Limit = limit("commit.signatures", MAX_VALIDATORS);
const VALIDATOR_SET_VALIDATORS: Limit = limit("validator_set.validators", MAX_VALIDATORS);

// ------------------------------------------------------------ the messages
//
// One type per message that holds, or leads to, a repeated field with a
// limit; field numbers as in `proto/headway/v1/*.proto`. Every other field
// is skipped.

/// `Request { oneof body }`: 3 `GetHeaderChain`, 6 `GetBlocks`.
#[derive(Default)]
struct RequestScan {
    active: u32,
    get_header_chain: GetHeaderChainScan,
    get_blocks: GetBlocksScan,
}

impl Fields for RequestScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        let active = &mut self.active;
        match f.tag {
            3 => nested(member(active, f.tag, &mut self.get_header_chain), f),
            6 => nested(member(active, f.tag, &mut self.get_blocks), f),
            1..=8 => other_member(active, f),
            _ => skip(f),
        }
    }
}

/// `GetHeaderChain`: 1 `repeated bytes locator`.
#[derive(Default)]
struct GetHeaderChainScan {
    locator: usize,
}

impl Fields for GetHeaderChainScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            1 => counted(&mut self.locator, &GET_HEADER_CHAIN_LOCATOR, f),
            _ => skip(f),
        }
    }
}

/// `GetBlocks { oneof selector }`: 1 `BlockHashes by_hash`, 2 `by_range`.
#[derive(Default)]
struct GetBlocksScan {
    active: u32,
    by_hash: BlockHashesScan,
}

impl Fields for GetBlocksScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            1 => nested(member(&mut self.active, f.tag, &mut self.by_hash), f),
            2 => other_member(&mut self.active, f),
            _ => skip(f),
        }
    }
}

/// `BlockHashes`: 1 `repeated bytes hashes`.
#[derive(Default)]
struct BlockHashesScan {
    hashes: usize,
}

impl Fields for BlockHashesScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            1 => counted(&mut self.hashes, &GET_BLOCKS_BY_HASH, f),
            _ => skip(f),
        }
    }
}

/// `Response { oneof body }`: every member but 7 (`ErrorResponse`) has a
/// repeated field somewhere.
#[derive(Default)]
struct ResponseScan {
    active: u32,
    headers: HeadersResponseScan,
    headers_v2: HeadersV2ResponseScan,
    header_chain: HeaderChainResponseScan,
    snapshot_manifest: SnapshotManifestScan,
    snapshot_data: SnapshotDataScan,
    blocks: BlocksResponseScan,
    validator_set: ValidatorSetResponseScan,
    skip_chain: SkipChainResponseScan,
}

impl Fields for ResponseScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        let (active, tag) = (&mut self.active, f.tag);
        match tag {
            1 => nested(member(active, tag, &mut self.headers), f),
            2 => nested(member(active, tag, &mut self.headers_v2), f),
            3 => nested(member(active, tag, &mut self.header_chain), f),
            4 => nested(member(active, tag, &mut self.snapshot_manifest), f),
            5 => nested(member(active, tag, &mut self.snapshot_data), f),
            6 => nested(member(active, tag, &mut self.blocks), f),
            7 => other_member(active, f),
            8 => nested(member(active, tag, &mut self.validator_set), f),
            9 => nested(member(active, tag, &mut self.skip_chain), f),
            _ => skip(f),
        }
    }
}

/// `HeadersResponse`: 2 `repeated SignedHeader headers`.
#[derive(Default)]
struct HeadersResponseScan {
    headers: usize,
}

impl Fields for HeadersResponseScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            2 => item::<SignedHeaderScan>(&mut self.headers, &HEADERS_RESPONSE_HEADERS, f),
            _ => skip(f),
        }
    }
}

/// `HeadersV2Response { oneof result }`: 3 `ProvenHeaders`, 4 `bytes
/// commitment`, 5 `ProvenBareHeaders`, 6 `CompactHeaders`.
#[derive(Default)]
struct HeadersV2ResponseScan {
    active: u32,
    headers: ProvenHeadersScan,
    bare_headers: ProvenBareHeadersScan,
    compact_headers: CompactHeadersScan,
}

impl Fields for HeadersV2ResponseScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        let (active, tag) = (&mut self.active, f.tag);
        match tag {
            3 => nested(member(active, tag, &mut self.headers), f),
            4 => other_member(active, f),
            5 => nested(member(active, tag, &mut self.bare_headers), f),
            6 => nested(member(active, tag, &mut self.compact_headers), f),
            _ => skip(f),
        }
    }
}

/// `ProvenHeaders`: 1 `repeated SignedHeader headers`, 2 `MmrProof proof`.
#[derive(Default)]
struct ProvenHeadersScan {
    headers: usize,
    proof: MmrProofScan,
}

impl Fields for ProvenHeadersScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            1 => item::<SignedHeaderScan>(&mut self.headers, &HEADERS_V2_HEADERS, f),
            2 => nested(&mut self.proof, f),
            _ => skip(f),
        }
    }
}

/// `ProvenBareHeaders`: 1 `repeated BareHeader headers`, 2 `MmrProof proof`.
#[derive(Default)]
struct ProvenBareHeadersScan {
    headers: usize,
    proof: MmrProofScan,
}

impl Fields for ProvenBareHeadersScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            1 => item::<BareHeaderScan>(&mut self.headers, &HEADERS_V2_BARE_HEADERS, f),
            2 => nested(&mut self.proof, f),
            _ => skip(f),
        }
    }
}

/// `CompactHeaders`: 5 `repeated sint64 time_deltas_ms`, 7 `repeated bytes
/// proposers`, 9 `repeated CompactValidatorsChange validators_changes`, 10
/// `repeated CompactValidatorSet validator_sets`, 11 `MmrProof proof`.
#[derive(Default)]
struct CompactHeadersScan {
    time_deltas_ms: usize,
    proposers: usize,
    validators_changes: usize,
    validator_sets: usize,
    proof: MmrProofScan,
}

impl Fields for CompactHeadersScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            5 => varints(&mut self.time_deltas_ms, &COMPACT_TIME_DELTAS, f),
            7 => counted(&mut self.proposers, &COMPACT_PROPOSERS, f),
            9 => counted(&mut self.validators_changes, &COMPACT_VALIDATORS_CHANGES, f),
            10 => item::<CompactValidatorSetScan>(
                &mut self.validator_sets,
                &COMPACT_VALIDATOR_SETS,
                f,
            ),
            11 => nested(&mut self.proof, f),
            _ => skip(f),
        }
    }
}

/// `CompactValidatorSet`: 2 `ValidatorSet validator_set`.
#[derive(Default)]
struct CompactValidatorSetScan {
    validator_set: ValidatorSetScan,
}

impl Fields for CompactValidatorSetScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            2 => nested(&mut self.validator_set, f),
            _ => skip(f),
        }
    }
}

/// `HeaderChainResponse`: 4 `MmrProof proof`.
#[derive(Default)]
struct HeaderChainResponseScan {
    proof: MmrProofScan,
}

impl Fields for HeaderChainResponseScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            4 => nested(&mut self.proof, f),
            _ => skip(f),
        }
    }
}

/// `MmrProof`: 1 `repeated bytes hashes`.
#[derive(Default)]
struct MmrProofScan {
    hashes: usize,
}

impl Fields for MmrProofScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            1 => counted(&mut self.hashes, &MMR_PROOF_HASHES, f),
            _ => skip(f),
        }
    }
}

/// `SnapshotManifest`: 2 `repeated PrefixChecksum prefixes`.
#[derive(Default)]
struct SnapshotManifestScan {
    prefixes: usize,
}

impl Fields for SnapshotManifestScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            2 => counted(&mut self.prefixes, &SNAPSHOT_MANIFEST_PREFIXES, f),
            _ => skip(f),
        }
    }
}

/// `SnapshotData`: 3 `repeated SnapshotEntry entries`.
#[derive(Default)]
struct SnapshotDataScan {
    entries: usize,
}

impl Fields for SnapshotDataScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            3 => counted(&mut self.entries, &SNAPSHOT_DATA_ENTRIES, f),
            _ => skip(f),
        }
    }
}

/// `BlocksResponse`: 1 `repeated Block blocks`.
#[derive(Default)]
struct BlocksResponseScan {
    blocks: usize,
}

impl Fields for BlocksResponseScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            1 => item::<BlockScan>(&mut self.blocks, &BLOCKS_RESPONSE_BLOCKS, f),
            _ => skip(f),
        }
    }
}

/// `Block`: 2 `repeated Transaction txs`.
#[derive(Default)]
struct BlockScan {
    txs: usize,
}

impl Fields for BlockScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            2 => item::<TransactionScan>(&mut self.txs, &BLOCK_TXS, f),
            _ => skip(f),
        }
    }
}

/// `Transaction`: 1 `repeated Write writes`.
#[derive(Default)]
struct TransactionScan {
    writes: usize,
}

impl Fields for TransactionScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            1 => counted(&mut self.writes, &TRANSACTION_WRITES, f),
            _ => skip(f),
        }
    }
}

/// `ValidatorSetResponse`: 2 `ValidatorSet validator_set`.
#[derive(Default)]
struct ValidatorSetResponseScan {
    validator_set: ValidatorSetScan,
}

impl Fields for ValidatorSetResponseScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            2 => nested(&mut self.validator_set, f),
            _ => skip(f),
        }
    }
}

/// `SkipChainResponse`: 3 `repeated SignedHeader hops`.
#[derive(Default)]
struct SkipChainResponseScan {
    hops: usize,
}

impl Fields for SkipChainResponseScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            3 => item::<SignedHeaderScan>(&mut self.hops, &SKIP_CHAIN_HOPS, f),
            _ => skip(f),
        }
    }
}

/// `Push { oneof body }`: 1 `StatusResponse`, 2 `BlockAnnouncement`.
#[derive(Default)]
struct PushScan {
    active: u32,
    block_announcement: BlockAnnouncementScan,
}

impl Fields for PushScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            1 => other_member(&mut self.active, f),
            2 => nested(
                member(&mut self.active, f.tag, &mut self.block_announcement),
                f,
            ),
            _ => skip(f),
        }
    }
}

/// `BlockAnnouncement`: 1 `SignedHeader signed_header`.
#[derive(Default)]
struct BlockAnnouncementScan {
    signed_header: SignedHeaderScan,
}

impl Fields for BlockAnnouncementScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            1 => nested(&mut self.signed_header, f),
            _ => skip(f),
        }
    }
}

/// `SignedHeader`: 2 `Commit commit`, 3 `ValidatorSet validator_set`.
#[derive(Default)]
struct SignedHeaderScan {
    commit: CommitScan,
    validator_set: ValidatorSetScan,
}

impl Fields for SignedHeaderScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            2 => nested(&mut self.commit, f),
            3 => nested(&mut self.validator_set, f),
            _ => skip(f),
        }
    }
}

/// `BareHeader`: 2 `ValidatorSet validator_set`.
#[derive(Default)]
struct BareHeaderScan {
    validator_set: ValidatorSetScan,
}

impl Fields for BareHeaderScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            2 => nested(&mut self.validator_set, f),
            _ => skip(f),
        }
    }
}

/// `Commit`: 4 `repeated CommitSig signatures`, each taking at least
/// [`COMMIT_SIG_MIN_LEN`] of the commit's bytes.
#[derive(Default)]
struct CommitScan {
    signatures: usize,
    bytes: usize,
}

impl Fields for CommitScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            4 => counted(&mut self.signatures, &COMMIT_SIGNATURES, f),
            _ => skip(f),
        }
    }

    fn measured(&mut self, bytes: usize) -> Result<(), WireError> {
        self.bytes += bytes;
        room(
            &COMMIT_SIGNATURES,
            self.signatures,
            self.bytes,
            COMMIT_SIG_MIN_LEN,
        )
    }
}

/// `ValidatorSet`: 1 `repeated Validator validators`, each taking at least
/// [`VALIDATOR_MIN_LEN`] of the set's bytes.
#[derive(Default)]
struct ValidatorSetScan {
    validators: usize,
    bytes: usize,
}

impl Fields for ValidatorSetScan {
    fn field(&mut self, f: Field<'_, impl Buf>) -> Result<(), Stop> {
        match f.tag {
            1 => counted(&mut self.validators, &VALIDATOR_SET_VALIDATORS, f),
            _ => skip(f),
        }
    }

    fn measured(&mut self, bytes: usize) -> Result<(), WireError> {
        self.bytes += bytes;
        room(
            &VALIDATOR_SET_VALIDATORS,
            self.validators,
            self.bytes,
            VALIDATOR_MIN_LEN,
        )
    }
}
