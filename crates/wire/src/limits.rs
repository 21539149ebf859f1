//! Every bound of the protocol, by name. Decoding enforces each of them; the
//! protocol description (`docs/protocol.md`) lists the same values.

/// Most headers in one `GetHeaders` request or `HeadersResponse` (seed 003, R2.2).
pub const MAX_HEADERS_PER_BATCH: u32 = 50;
/// Most headers in one `GetHeadersV2` request or response.
pub const MAX_HEADERS_V2: u32 = 2000;
/// Most distinct proposers in one compact range (`CompactHeaders`), so
/// that an index into them is one byte.
pub const MAX_COMPACT_PROPOSERS: usize = 256;
/// Most hashes in a header-chain locator.
pub const MAX_LOCATOR_HASHES: usize = 101;
/// Most hashes in an MMR proof (a range proof over the largest MMR needs far fewer).
pub const MAX_MMR_PROOF_HASHES: usize = 256;
/// Most validators in a validator set, and so most signatures in a commit.
pub const MAX_VALIDATORS: usize = 10_000;
/// Largest total voting power of a validator set, so that tallies never overflow.
pub const MAX_TOTAL_VOTING_POWER: u64 = (i64::MAX / 8) as u64;
/// Longest chain id, in bytes.
pub const MAX_CHAIN_ID_LEN: usize = 50;
/// Longest state key, in bytes (the first byte is the state prefix).
pub const MAX_KEY_LEN: usize = 1024;
/// Longest state value, in bytes.
pub const MAX_VALUE_LEN: usize = 1 << 20;
/// Most writes in one transaction.
pub const MAX_WRITES_PER_TX: usize = 4096;
/// Most transactions in one block.
pub const MAX_TXS_PER_BLOCK: usize = 10_000;
/// Most blocks in one `GetBlocks` request or `BlocksResponse`.
pub const MAX_BLOCKS_PER_REQUEST: u32 = 128;
/// Most records in one `SnapshotData` chunk.
pub const MAX_SNAPSHOT_ENTRIES: usize = 100_000;
/// Longest `ErrorResponse` message, in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 256;

/// Largest `Request` frame payload.
pub const MAX_REQUEST_FRAME: usize = 64 * 1024;
/// Largest `Push` frame payload (a status or a block announcement with a full validator set).
pub const MAX_PUSH_FRAME: usize = 4 * 1024 * 1024;
/// Largest response frame to `GetHeaders` (seed 003's MaxMsgSize).
pub const MAX_HEADERS_RESPONSE_FRAME: usize = 4 * 1024 * 1024;
/// Largest response frame to `GetHeadersV2` (signed headers; servers stop
/// adding headers before reaching it).
pub const MAX_HEADERS_V2_RESPONSE_FRAME: usize = 16 * 1024 * 1024;
/// Most hops in a `SkipChainResponse`.
pub const MAX_SKIP_HOPS: usize = 1024;
/// Largest response frame to `GetSkipChain`.
pub const MAX_SKIP_CHAIN_FRAME: usize = 8 * 1024 * 1024;
/// Largest response frame to `GetValidatorSet`.
pub const MAX_VALIDATOR_SET_RESPONSE_FRAME: usize = 1024 * 1024;
/// Largest response frame to `GetHeaderChain`.
pub const MAX_HEADER_CHAIN_RESPONSE_FRAME: usize = 64 * 1024;
/// Largest response frame to `GetSnapshotManifest`.
pub const MAX_SNAPSHOT_MANIFEST_FRAME: usize = 64 * 1024;
/// Largest response frame to `GetSnapshot`.
pub const MAX_SNAPSHOT_DATA_FRAME: usize = 8 * 1024 * 1024;
/// Largest response frame to `GetBlocks`.
pub const MAX_BLOCKS_RESPONSE_FRAME: usize = 16 * 1024 * 1024;
/// The largest frame of any kind; no frame may ever exceed it.
pub const MAX_FRAME: usize = MAX_BLOCKS_RESPONSE_FRAME;
