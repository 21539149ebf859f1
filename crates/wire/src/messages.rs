//! Protocol messages: requests, responses and pushes, with their envelopes.
//!
//! A request/response exchange is one QUIC stream carrying one [`Request`]
//! frame and one [`Response`] frame; pushes ([`Push`]) travel on their own
//! streams. Each message checks its rules on decode and again before encode,
//! so neither side can put an invalid message on the wire.

use prost::Message as _;

use crate::{
    CompactHeaders, WireError,
    limits::*,
    raw,
    types::{
        BareHeader, Block, Hash, Header, SignedHeader, ValidatorSet, check_count, check_len,
        check_strictly_ascending, fixed, hash, required, try_items,
    },
};

// ---------------------------------------------------------------- envelopes

/// A request: the first frame of a request/response stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Header sync v1 batch.
    GetHeaders(GetHeaders),
    /// Parallel header sync range.
    GetHeadersV2(GetHeadersV2),
    /// Last common header query.
    GetHeaderChain(GetHeaderChain),
    /// Snapshot manifest query.
    GetSnapshotManifest(GetSnapshotManifest),
    /// Snapshot chunk query.
    GetSnapshot(GetSnapshot),
    /// Block bodies query.
    GetBlocks(GetBlocks),
    /// Validator set query.
    GetValidatorSet(GetValidatorSet),
    /// Checkpoint bootstrap hops query.
    GetSkipChain(GetSkipChain),
}

/// A response: the second frame of a request/response stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "one message per stream; boxing would only add an allocation"
)]
pub enum Response {
    /// Answer to [`GetHeaders`].
    Headers(HeadersResponse),
    /// Answer to [`GetHeadersV2`].
    HeadersV2(HeadersV2Response),
    /// Answer to [`GetHeaderChain`].
    HeaderChain(HeaderChainResponse),
    /// Answer to [`GetSnapshotManifest`].
    SnapshotManifest(SnapshotManifest),
    /// Answer to [`GetSnapshot`].
    SnapshotData(SnapshotData),
    /// Answer to [`GetBlocks`].
    Blocks(BlocksResponse),
    /// An explicit refusal of any request.
    Error(ErrorResponse),
    /// Answer to [`GetValidatorSet`].
    ValidatorSet(ValidatorSetResponse),
    /// Answer to [`GetSkipChain`].
    SkipChain(SkipChainResponse),
}

/// An unsolicited message on a push stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "one message per stream; boxing would only add an allocation"
)]
pub enum Push {
    /// The sender's header range changed.
    Status(StatusResponse),
    /// The sender has a new block.
    BlockAnnouncement(BlockAnnouncement),
}

/// The kind of a request, which fixes the largest response frame accepted for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// [`GetHeaders`].
    GetHeaders,
    /// [`GetHeadersV2`].
    GetHeadersV2,
    /// [`GetHeaderChain`].
    GetHeaderChain,
    /// [`GetSnapshotManifest`].
    GetSnapshotManifest,
    /// [`GetSnapshot`].
    GetSnapshot,
    /// [`GetBlocks`].
    GetBlocks,
    /// [`GetValidatorSet`].
    GetValidatorSet,
    /// [`GetSkipChain`].
    GetSkipChain,
}

impl RequestKind {
    /// The largest response frame payload a requester accepts for this kind.
    pub const fn max_response_frame(self) -> usize {
        match self {
            RequestKind::GetHeaders => MAX_HEADERS_RESPONSE_FRAME,
            RequestKind::GetHeadersV2 => MAX_HEADERS_V2_RESPONSE_FRAME,
            RequestKind::GetHeaderChain => MAX_HEADER_CHAIN_RESPONSE_FRAME,
            RequestKind::GetSnapshotManifest => MAX_SNAPSHOT_MANIFEST_FRAME,
            RequestKind::GetSnapshot => MAX_SNAPSHOT_DATA_FRAME,
            RequestKind::GetBlocks => MAX_BLOCKS_RESPONSE_FRAME,
            RequestKind::GetValidatorSet => MAX_VALIDATOR_SET_RESPONSE_FRAME,
            RequestKind::GetSkipChain => MAX_SKIP_CHAIN_FRAME,
        }
    }

    /// A short stable name, for logs and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            RequestKind::GetHeaders => "get_headers",
            RequestKind::GetHeadersV2 => "get_headers_v2",
            RequestKind::GetHeaderChain => "get_header_chain",
            RequestKind::GetSnapshotManifest => "get_snapshot_manifest",
            RequestKind::GetSnapshot => "get_snapshot",
            RequestKind::GetBlocks => "get_blocks",
            RequestKind::GetValidatorSet => "get_validator_set",
            RequestKind::GetSkipChain => "get_skip_chain",
        }
    }
}

impl Request {
    /// This request's kind.
    pub fn kind(&self) -> RequestKind {
        match self {
            Request::GetHeaders(_) => RequestKind::GetHeaders,
            Request::GetHeadersV2(_) => RequestKind::GetHeadersV2,
            Request::GetHeaderChain(_) => RequestKind::GetHeaderChain,
            Request::GetSnapshotManifest(_) => RequestKind::GetSnapshotManifest,
            Request::GetSnapshot(_) => RequestKind::GetSnapshot,
            Request::GetBlocks(_) => RequestKind::GetBlocks,
            Request::GetValidatorSet(_) => RequestKind::GetValidatorSet,
            Request::GetSkipChain(_) => RequestKind::GetSkipChain,
        }
    }

    /// Checks every rule of the request.
    pub fn validate(&self) -> Result<(), WireError> {
        match self {
            Request::GetHeaders(m) => m.validate(),
            Request::GetHeadersV2(m) => m.validate(),
            Request::GetHeaderChain(m) => m.validate(),
            Request::GetSnapshotManifest(m) => m.validate(),
            Request::GetSnapshot(m) => m.validate(),
            Request::GetBlocks(m) => m.validate(),
            Request::GetValidatorSet(m) => m.validate(),
            Request::GetSkipChain(m) => m.validate(),
        }
    }
}

impl Response {
    /// Checks every rule of the response on its own.
    pub fn validate(&self) -> Result<(), WireError> {
        match self {
            Response::Headers(m) => m.validate(),
            Response::HeadersV2(m) => m.validate(),
            Response::HeaderChain(m) => m.validate(),
            Response::SnapshotManifest(m) => m.validate(),
            Response::SnapshotData(m) => m.validate(),
            Response::Blocks(m) => m.validate(),
            Response::Error(m) => m.validate(),
            Response::ValidatorSet(m) => m.validator_set.validate(),
            Response::SkipChain(m) => m.validate(),
        }
    }

    /// Checks that this response answers `request`: the right kind (or an
    /// error), and the fields that must echo or respect the request.
    pub fn validate_for(&self, request: &Request) -> Result<(), WireError> {
        match (self, request) {
            (Response::Error(_), _) => Ok(()),
            (Response::Headers(r), Request::GetHeaders(q)) => r.validate_for(q),
            (Response::HeadersV2(r), Request::GetHeadersV2(q)) => r.validate_for(q),
            (Response::HeaderChain(r), Request::GetHeaderChain(q)) => {
                if r.end_height != q.end_height {
                    return Err(WireError::Invalid {
                        field: "header_chain_response.end_height",
                        rule: "must echo the request's end_height",
                    });
                }
                Ok(())
            }
            (Response::SnapshotManifest(r), Request::GetSnapshotManifest(q)) => {
                if r.snapshot_height != q.snapshot_height {
                    return Err(WireError::Invalid {
                        field: "snapshot_manifest.snapshot_height",
                        rule: "must echo the request's snapshot_height",
                    });
                }
                Ok(())
            }
            (Response::SnapshotData(r), Request::GetSnapshot(q)) => r.validate_for(q),
            (Response::Blocks(r), Request::GetBlocks(q)) => r.validate_for(q),
            (Response::SkipChain(r), Request::GetSkipChain(q)) => {
                if r.trusted_height != q.trusted_height || r.target_height != q.target_height {
                    return Err(WireError::Invalid {
                        field: "skip_chain_response.trusted_height",
                        rule: "must echo the request's trusted_height and target_height",
                    });
                }
                Ok(())
            }
            (Response::ValidatorSet(r), Request::GetValidatorSet(q)) => {
                if r.height != q.height {
                    return Err(WireError::Invalid {
                        field: "validator_set_response.height",
                        rule: "must echo the request's height",
                    });
                }
                Ok(())
            }
            _ => Err(WireError::Invalid {
                field: "response.body",
                rule: "response kind does not answer the request kind",
            }),
        }
    }
}

impl Push {
    /// Checks every rule of the push.
    pub fn validate(&self) -> Result<(), WireError> {
        match self {
            Push::Status(m) => m.validate(),
            Push::BlockAnnouncement(m) => m.signed_header.validate(),
        }
    }
}

/// A top-level message that travels in a frame: [`Request`], [`Response`] or [`Push`].
pub trait Envelope: Sized {
    /// The largest frame payload this envelope may have when sent.
    fn max_frame(&self) -> usize;
    /// Checks every rule, then encodes to protobuf bytes.
    fn encode(&self) -> Result<Vec<u8>, WireError>;
    /// Decodes protobuf bytes and checks every rule.
    fn decode(bytes: &[u8]) -> Result<Self, WireError>;
}

impl Envelope for Request {
    fn max_frame(&self) -> usize {
        MAX_REQUEST_FRAME
    }
    fn encode(&self) -> Result<Vec<u8>, WireError> {
        self.validate()?;
        Ok(raw::Request::from(self).encode_to_vec())
    }
    /// Counts the repeated fields first ([`crate::scan`]), so that prost
    /// never builds more items than the limits allow.
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        crate::scan::request(bytes)?;
        raw::Request::decode(bytes)?.try_into()
    }
}

impl Envelope for Response {
    fn max_frame(&self) -> usize {
        match self {
            Response::Headers(_) => MAX_HEADERS_RESPONSE_FRAME,
            Response::HeadersV2(_) => MAX_HEADERS_V2_RESPONSE_FRAME,
            Response::HeaderChain(_) => MAX_HEADER_CHAIN_RESPONSE_FRAME,
            Response::SnapshotManifest(_) => MAX_SNAPSHOT_MANIFEST_FRAME,
            Response::SnapshotData(_) => MAX_SNAPSHOT_DATA_FRAME,
            Response::Blocks(_) => MAX_BLOCKS_RESPONSE_FRAME,
            Response::Error(_) => MAX_REQUEST_FRAME,
            Response::ValidatorSet(_) => MAX_VALIDATOR_SET_RESPONSE_FRAME,
            Response::SkipChain(_) => MAX_SKIP_CHAIN_FRAME,
        }
    }
    fn encode(&self) -> Result<Vec<u8>, WireError> {
        self.validate()?;
        Ok(raw::Response::from(self).encode_to_vec())
    }
    /// Header responses take [`crate::fast::decode_response`], which gives
    /// the same value without the raw types' allocations; anything it does
    /// not handle (other bodies, non-canonical encodings, invalid messages)
    /// goes the raw way, which also produces every error. The raw way
    /// counts the repeated fields first ([`crate::scan`]), so that prost
    /// never builds more items than the limits allow (the fast path stops
    /// at the limits by itself).
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if let Some(response) = crate::fast::decode_response(bytes) {
            return Ok(response);
        }
        crate::scan::response(bytes)?;
        raw::Response::decode(bytes)?.try_into()
    }
}

impl Envelope for Push {
    fn max_frame(&self) -> usize {
        MAX_PUSH_FRAME
    }
    fn encode(&self) -> Result<Vec<u8>, WireError> {
        self.validate()?;
        Ok(raw::Push::from(self).encode_to_vec())
    }
    /// Counts the repeated fields first ([`crate::scan`]), so that prost
    /// never builds more items than the limits allow.
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        crate::scan::push(bytes)?;
        raw::Push::decode(bytes)?.try_into()
    }
}

// ---------------------------------------------------- header sync (seed 003)

/// A peer's header range (seed 003). Pushed on connect with `height - 1`, then
/// whenever the header height advances; never with the same or lower height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusResponse {
    /// Lowest header height available.
    pub base: u64,
    /// Highest header height available.
    pub height: u64,
    /// What the sender serves beyond v1 header sync.
    pub features: Features,
}

/// What a peer announces it serves, in its [`StatusResponse`]: a promise it
/// may break (a requester still handles `UNSUPPORTED`), used to skip probing.
/// Unknown bits from newer peers are kept and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Features(pub u32);

impl Features {
    /// Promises nothing beyond v1 header sync.
    pub const NONE: Features = Features(0);
    /// Answers `GetHeadersV2` (signed and headers-only ranges) and the
    /// requests of checkpoint bootstrap.
    pub const HEADERS_V2: Features = Features(1);

    /// Whether every bit of `other` is announced.
    #[must_use]
    pub fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }
}

impl StatusResponse {
    /// A status announcing no features.
    #[must_use]
    pub fn new(base: u64, height: u64) -> Self {
        StatusResponse {
            base,
            height,
            features: Features::NONE,
        }
    }

    /// `base <= height` (both 0 for a node with no headers).
    pub fn validate(&self) -> Result<(), WireError> {
        if self.base > self.height {
            return Err(WireError::Invalid {
                field: "status.base",
                rule: "must not be above status.height",
            });
        }
        Ok(())
    }
}

/// Request for `count` (1..=50) headers from `start_height` (>= 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetHeaders {
    /// First height requested.
    pub start_height: u64,
    /// How many headers, at most [`MAX_HEADERS_PER_BATCH`].
    pub count: u32,
}

impl GetHeaders {
    /// Checks start height and count.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.start_height == 0 {
            return Err(WireError::ZeroHeight {
                field: "get_headers.start_height",
            });
        }
        check_request_count("get_headers.count", self.count, MAX_HEADERS_PER_BATCH)
    }
}

/// Sequential signed headers from `start_height`; empty when the peer has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadersResponse {
    /// Echo of the request's start height.
    pub start_height: u64,
    /// The headers, heights `start_height, start_height + 1, ...`.
    pub headers: Vec<SignedHeader>,
}

impl HeadersResponse {
    /// Checks the count and that heights are sequential from `start_height`.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.start_height == 0 {
            return Err(WireError::ZeroHeight {
                field: "headers_response.start_height",
            });
        }
        check_count(
            "headers_response.headers",
            self.headers.len(),
            MAX_HEADERS_PER_BATCH as usize,
        )?;
        for (i, h) in self.headers.iter().enumerate() {
            h.validate()
                .map_err(WireError::item("headers_response.headers", i))?;
        }
        check_sequential(
            "headers_response.headers",
            self.start_height,
            self.headers.iter().map(|h| h.header.height),
        )
    }

    /// Checks that this answers `request`: same start, no more than asked for.
    pub fn validate_for(&self, request: &GetHeaders) -> Result<(), WireError> {
        if self.start_height != request.start_height {
            return Err(WireError::Invalid {
                field: "headers_response.start_height",
                rule: "must echo the request's start_height",
            });
        }
        check_count(
            "headers_response.headers",
            self.headers.len(),
            request.count as usize,
        )
    }
}

// ------------------------------------------ parallel header sync (seed 000)

/// Which proof a [`HeadersV2Response`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ProofKind {
    /// Inclusion of the last returned header.
    #[default]
    LastLeaf,
    /// Inclusion of every returned header (contiguous range proof).
    Range,
}

/// Request for `count` headers from `start_height`, proven into the MMR over
/// headers `1..=end_height` whose root the requester expects is `commitment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetHeadersV2 {
    /// First height requested.
    pub start_height: u64,
    /// How many headers, at most [`MAX_HEADERS_V2`].
    pub count: u32,
    /// The height `X` whose commitment the proof goes into.
    pub end_height: u64,
    /// The requester's MMR root over headers `1..=end_height`.
    pub commitment: Hash,
    /// The proof wanted.
    pub proof_kind: ProofKind,
    /// Ask for headers without commits ([`HeadersV2Result::BareHeaders`]).
    pub headers_only: bool,
    /// With `headers_only`, ask for them compact
    /// ([`HeadersV2Result::CompactHeaders`]); the responder may still answer
    /// [`HeadersV2Result::BareHeaders`].
    pub compact: bool,
}

impl GetHeadersV2 {
    /// Checks heights, count, and that the range ends at or below `end_height`.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.start_height == 0 {
            return Err(WireError::ZeroHeight {
                field: "get_headers_v2.start_height",
            });
        }
        check_request_count("get_headers_v2.count", self.count, MAX_HEADERS_V2)?;
        let last = self.start_height.saturating_add(u64::from(self.count) - 1);
        if last > self.end_height {
            return Err(WireError::Invalid {
                field: "get_headers_v2.end_height",
                rule: "the requested range must end at or below end_height",
            });
        }
        Ok(())
    }
}

/// A bounded list of MMR proof hashes; the verifier derives all structure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MmrProof {
    /// The proof's hashes, in the order the MMR proof format defines.
    pub hashes: Vec<Hash>,
}

impl MmrProof {
    /// Checks the hash count bound.
    pub fn validate(&self) -> Result<(), WireError> {
        check_count("mmr_proof.hashes", self.hashes.len(), MAX_MMR_PROOF_HASHES)
    }
}

/// What a [`HeadersV2Response`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadersV2Result {
    /// The headers from `start_height` and a proof into the requested commitment.
    Headers {
        /// Sequential signed headers from the start height.
        headers: Vec<SignedHeader>,
        /// Proof of the last header's (or every header's) inclusion.
        proof: MmrProof,
    },
    /// The responder's own commitment at `end_height`: the requester's did not match.
    Commitment(Hash),
    /// The headers from `start_height` without commits (the answer to a
    /// `headers_only` request) and a proof into the requested commitment.
    BareHeaders {
        /// Sequential bare headers from the start height.
        headers: Vec<BareHeader>,
        /// Proof of the last header's (or every header's) inclusion.
        proof: MmrProof,
    },
    /// The answer to a `headers_only` request that asked for `compact`:
    /// the same bare headers without what the requester derives
    /// ([`CompactHeaders::expand`] rebuilds them).
    CompactHeaders {
        /// The headers from the start height, compact.
        headers: Box<CompactHeaders>,
        /// Proof of the last header's (or every header's) inclusion.
        proof: MmrProof,
    },
}

impl HeadersV2Result {
    /// How many headers it holds (0 for a commitment).
    #[must_use]
    pub fn header_count(&self) -> usize {
        match self {
            HeadersV2Result::Headers { headers, .. } => headers.len(),
            HeadersV2Result::BareHeaders { headers, .. } => headers.len(),
            HeadersV2Result::CompactHeaders { headers, .. } => headers.len(),
            HeadersV2Result::Commitment(_) => 0,
        }
    }
}

/// Answer to [`GetHeadersV2`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadersV2Response {
    /// Echo of the request's start height.
    pub start_height: u64,
    /// Echo of the request's end height.
    pub end_height: u64,
    /// Headers with proof, or the responder's commitment.
    pub result: HeadersV2Result,
}

impl HeadersV2Response {
    /// Checks the count, sequential heights, and that headers end at or below `end_height`.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.start_height == 0 {
            return Err(WireError::ZeroHeight {
                field: "headers_v2_response.start_height",
            });
        }
        match &self.result {
            HeadersV2Result::Commitment(_) => Ok(()),
            HeadersV2Result::Headers { headers, proof } => self.validate_range(
                "headers_v2_response.headers",
                headers,
                proof,
                |h| h.header.height,
                SignedHeader::validate,
            ),
            HeadersV2Result::BareHeaders { headers, proof } => self.validate_range(
                "headers_v2_response.bare_headers",
                headers,
                proof,
                |h| h.header.height,
                BareHeader::validate,
            ),
            HeadersV2Result::CompactHeaders { headers, proof } => {
                headers.validate()?;
                proof.validate()?;
                match (self.start_height, headers.parent_hash) {
                    (1, Some(_)) => Err(WireError::Invalid {
                        field: "compact_headers.parent_hash",
                        rule: "must be empty when the range starts at height 1",
                    }),
                    (2.., None) => Err(WireError::Missing {
                        field: "compact_headers.parent_hash",
                    }),
                    _ => Ok(()),
                }?;
                let last = self.start_height.checked_add(headers.len() as u64 - 1);
                if last.is_none_or(|last| last > self.end_height) {
                    return Err(WireError::Invalid {
                        field: "headers_v2_response.compact_headers",
                        rule: "headers must end at or below end_height",
                    });
                }
                Ok(())
            }
        }
    }

    /// The rules of a range answer, signed or bare: errors name `field`.
    fn validate_range<T>(
        &self,
        field: &'static str,
        headers: &[T],
        proof: &MmrProof,
        height: fn(&T) -> u64,
        validate: fn(&T) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        check_count(field, headers.len(), MAX_HEADERS_V2 as usize)?;
        for (i, h) in headers.iter().enumerate() {
            validate(h).map_err(WireError::item(field, i))?;
        }
        proof.validate()?;
        check_sequential(field, self.start_height, headers.iter().map(height))?;
        if headers.last().is_some_and(|h| height(h) > self.end_height) {
            return Err(WireError::Invalid {
                field,
                rule: "headers must end at or below end_height",
            });
        }
        Ok(())
    }

    /// Checks that this answers `request`: echoed heights, no more than asked for.
    pub fn validate_for(&self, request: &GetHeadersV2) -> Result<(), WireError> {
        if self.start_height != request.start_height || self.end_height != request.end_height {
            return Err(WireError::Invalid {
                field: "headers_v2_response.start_height",
                rule: "must echo the request's start_height and end_height",
            });
        }
        let field = match self.result {
            HeadersV2Result::BareHeaders { .. } => "headers_v2_response.bare_headers",
            HeadersV2Result::CompactHeaders { .. } => "headers_v2_response.compact_headers",
            _ => "headers_v2_response.headers",
        };
        check_count(field, self.result.header_count(), request.count as usize)?;
        let fits = match self.result {
            HeadersV2Result::Commitment(_) => true,
            HeadersV2Result::Headers { .. } => !request.headers_only,
            HeadersV2Result::BareHeaders { .. } => request.headers_only,
            HeadersV2Result::CompactHeaders { .. } => request.headers_only && request.compact,
        };
        if !fits {
            return Err(WireError::Invalid {
                field: "headers_v2_response.result",
                rule: "headers_only requests get bare headers (compact only if asked), others signed headers",
            });
        }
        Ok(())
    }
}

/// Query for the last header in common, from a locator of header hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetHeaderChain {
    /// Header hashes from the requester's tip backwards, 1..=[`MAX_LOCATOR_HASHES`].
    pub locator: Vec<Hash>,
    /// The height whose commitment the answer is proven into.
    pub end_height: u64,
}

impl GetHeaderChain {
    /// Checks the locator bounds and the end height.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.locator.is_empty() {
            return Err(WireError::Empty {
                field: "get_header_chain.locator",
            });
        }
        check_count(
            "get_header_chain.locator",
            self.locator.len(),
            MAX_LOCATOR_HASHES,
        )?;
        if self.end_height == 0 {
            return Err(WireError::ZeroHeight {
                field: "get_header_chain.end_height",
            });
        }
        Ok(())
    }
}

/// Answer to [`GetHeaderChain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderChainResponse {
    /// The last locator header on the responder's chain, if any.
    pub last_common: Option<Header>,
    /// Echo of the request's end height.
    pub end_height: u64,
    /// The responder's MMR root over headers `1..=end_height`.
    pub commitment: Hash,
    /// Proof of `last_common`'s inclusion in `commitment` (empty without it).
    pub proof: MmrProof,
}

impl HeaderChainResponse {
    /// Checks the header, the proof bound, and that the header is within the commitment.
    pub fn validate(&self) -> Result<(), WireError> {
        self.proof.validate()?;
        if let Some(h) = &self.last_common {
            h.validate()?;
            if h.height > self.end_height {
                return Err(WireError::Invalid {
                    field: "header_chain_response.last_common",
                    rule: "must be at or below end_height",
                });
            }
        }
        Ok(())
    }
}

// --------------------------------------------------- snapshot sync (seed 002)

/// Request for the manifest of the snapshot at `snapshot_height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetSnapshotManifest {
    /// The snapshot height.
    pub snapshot_height: u64,
}

impl GetSnapshotManifest {
    /// Checks the height.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.snapshot_height == 0 {
            return Err(WireError::ZeroHeight {
                field: "get_snapshot_manifest.snapshot_height",
            });
        }
        Ok(())
    }
}

/// The checksum of one state prefix at a snapshot height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixChecksum {
    /// The state prefix.
    pub prefix: u8,
    /// Compressed ristretto255 EllipticSum of the prefix's records.
    pub checksum: [u8; 32],
    /// Number of records under the prefix.
    pub records: u64,
}

/// The per-prefix checksums of the state at a snapshot height.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotManifest {
    /// The snapshot height.
    pub snapshot_height: u64,
    /// Strictly ascending by prefix.
    pub prefixes: Vec<PrefixChecksum>,
}

impl SnapshotManifest {
    /// Checks the height and prefix order.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.snapshot_height == 0 {
            return Err(WireError::ZeroHeight {
                field: "snapshot_manifest.snapshot_height",
            });
        }
        check_strictly_ascending("snapshot_manifest.prefixes", &self.prefixes, |a, b| {
            a.prefix.cmp(&b.prefix)
        })
    }
}

/// Request for records of `prefix` at `snapshot_height`, from `start_key` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetSnapshot {
    /// The snapshot height.
    pub snapshot_height: u64,
    /// The state prefix.
    pub prefix: u8,
    /// First key wanted (inclusive); empty means the prefix's first record.
    pub start_key: Vec<u8>,
}

impl GetSnapshot {
    /// Checks the height and start key.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.snapshot_height == 0 {
            return Err(WireError::ZeroHeight {
                field: "get_snapshot.snapshot_height",
            });
        }
        check_len("get_snapshot.start_key", self.start_key.len(), MAX_KEY_LEN)?;
        if let Some(&first) = self.start_key.first()
            && first != self.prefix
        {
            return Err(WireError::Invalid {
                field: "get_snapshot.start_key",
                rule: "must be empty or start with the prefix byte",
            });
        }
        Ok(())
    }
}

/// One state record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// The key (first byte is the prefix).
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// A chunk of records of one prefix at a snapshot height.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotData {
    /// The snapshot height.
    pub snapshot_height: u64,
    /// The state prefix.
    pub prefix: u8,
    /// Records, keys strictly ascending, each starting with `prefix`.
    pub entries: Vec<SnapshotEntry>,
    /// No record of the prefix follows the last entry.
    pub prefix_exhausted: bool,
}

impl SnapshotData {
    /// Checks bounds, key prefixes and strict key order.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.snapshot_height == 0 {
            return Err(WireError::ZeroHeight {
                field: "snapshot_data.snapshot_height",
            });
        }
        check_count(
            "snapshot_data.entries",
            self.entries.len(),
            MAX_SNAPSHOT_ENTRIES,
        )?;
        for (i, e) in self.entries.iter().enumerate() {
            let item = WireError::item("snapshot_data.entries", i);
            if e.key.first() != Some(&self.prefix) {
                return Err(item(WireError::Invalid {
                    field: "snapshot_entry.key",
                    rule: "must start with the chunk's prefix byte",
                }));
            }
            check_len("snapshot_entry.key", e.key.len(), MAX_KEY_LEN)
                .and_then(|()| check_len("snapshot_entry.value", e.value.len(), MAX_VALUE_LEN))
                .map_err(item)?;
        }
        check_strictly_ascending("snapshot_data.entries", &self.entries, |a, b| {
            a.key.cmp(&b.key)
        })
    }

    /// Checks that this answers `request`: same height and prefix, no key below the start key.
    pub fn validate_for(&self, request: &GetSnapshot) -> Result<(), WireError> {
        if self.snapshot_height != request.snapshot_height || self.prefix != request.prefix {
            return Err(WireError::Invalid {
                field: "snapshot_data.prefix",
                rule: "must echo the request's snapshot_height and prefix",
            });
        }
        if let Some(first) = self.entries.first()
            && first.key < request.start_key
        {
            return Err(WireError::Invalid {
                field: "snapshot_data.entries",
                rule: "first key is below the requested start_key",
            });
        }
        Ok(())
    }
}

// ------------------------------------------------- block download (seed 004)

/// Which blocks a [`GetBlocks`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetBlocks {
    /// Blocks by header hash: 1..=[`MAX_BLOCKS_PER_REQUEST`] distinct hashes.
    ByHash(Vec<Hash>),
    /// `count` blocks from `start_height`.
    ByRange {
        /// First height.
        start_height: u64,
        /// How many, 1..=[`MAX_BLOCKS_PER_REQUEST`].
        count: u32,
    },
}

impl GetBlocks {
    /// Checks counts, heights, and that hashes are distinct.
    pub fn validate(&self) -> Result<(), WireError> {
        match self {
            GetBlocks::ByHash(hashes) => {
                if hashes.is_empty() {
                    return Err(WireError::Empty {
                        field: "get_blocks.by_hash",
                    });
                }
                check_count(
                    "get_blocks.by_hash",
                    hashes.len(),
                    MAX_BLOCKS_PER_REQUEST as usize,
                )?;
                for (i, h) in hashes.iter().enumerate() {
                    if hashes[..i].contains(h) {
                        return Err(WireError::Duplicate {
                            field: "get_blocks.by_hash",
                            index: i,
                        });
                    }
                }
                Ok(())
            }
            GetBlocks::ByRange {
                start_height,
                count,
            } => {
                if *start_height == 0 {
                    return Err(WireError::ZeroHeight {
                        field: "get_blocks.by_range.start_height",
                    });
                }
                check_request_count("get_blocks.by_range.count", *count, MAX_BLOCKS_PER_REQUEST)
            }
        }
    }

    /// How many blocks are asked for.
    pub fn len(&self) -> usize {
        match self {
            GetBlocks::ByHash(h) => h.len(),
            GetBlocks::ByRange { count, .. } => *count as usize,
        }
    }

    /// True when no block is asked for (never for a valid request).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The requested blocks the responder has, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlocksResponse {
    /// The blocks.
    pub blocks: Vec<Block>,
}

impl BlocksResponse {
    /// Checks the count and each block.
    pub fn validate(&self) -> Result<(), WireError> {
        check_count(
            "blocks_response.blocks",
            self.blocks.len(),
            MAX_BLOCKS_PER_REQUEST as usize,
        )?;
        for (i, b) in self.blocks.iter().enumerate() {
            b.validate()
                .map_err(WireError::item("blocks_response.blocks", i))?;
        }
        Ok(())
    }

    /// Checks that no more blocks came than were asked for.
    pub fn validate_for(&self, request: &GetBlocks) -> Result<(), WireError> {
        check_count("blocks_response.blocks", self.blocks.len(), request.len())
    }
}

/// Announces a new block by its signed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockAnnouncement {
    /// The new block's header and commit.
    pub signed_header: SignedHeader,
}

// --------------------------------------------------------- validator sets

/// Request for the validator set of the header at `height` (>= 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetValidatorSet {
    /// The header height.
    pub height: u64,
}

impl GetValidatorSet {
    /// Checks the height.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.height == 0 {
            return Err(WireError::ZeroHeight {
                field: "get_validator_set.height",
            });
        }
        Ok(())
    }
}

/// Answer to [`GetValidatorSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorSetResponse {
    /// Echo of the requested height.
    pub height: u64,
    /// The set whose hash is the header's `validators_hash`.
    pub validator_set: ValidatorSet,
}

/// Request for the hops from `trusted_height` to `target_height` (seed 001).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetSkipChain {
    /// The requester's trusted height.
    pub trusted_height: u64,
    /// The height to reach.
    pub target_height: u64,
}

impl GetSkipChain {
    /// Checks `1 <= trusted_height < target_height`.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.trusted_height == 0 {
            return Err(WireError::ZeroHeight {
                field: "get_skip_chain.trusted_height",
            });
        }
        if self.target_height <= self.trusted_height {
            return Err(WireError::Invalid {
                field: "get_skip_chain.target_height",
                rule: "must be above trusted_height",
            });
        }
        Ok(())
    }
}

/// Answer to [`GetSkipChain`]: hops with strictly increasing heights, each
/// with its validator set attached, the last at the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipChainResponse {
    /// Echo of the request.
    pub trusted_height: u64,
    /// Echo of the request.
    pub target_height: u64,
    /// The hops.
    pub hops: Vec<SignedHeader>,
}

impl SkipChainResponse {
    /// Checks the bound, the order, the attached sets and the last height.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.hops.is_empty() {
            return Err(WireError::Empty {
                field: "skip_chain_response.hops",
            });
        }
        check_count("skip_chain_response.hops", self.hops.len(), MAX_SKIP_HOPS)?;
        let mut previous = self.trusted_height;
        for (i, hop) in self.hops.iter().enumerate() {
            let item = WireError::item("skip_chain_response.hops", i);
            hop.validate().map_err(item)?;
            let item = WireError::item("skip_chain_response.hops", i);
            if hop.header.height <= previous || hop.header.height > self.target_height {
                return Err(item(WireError::Invalid {
                    field: "hop.header.height",
                    rule: "hops must ascend strictly between trusted_height and target_height",
                }));
            }
            if hop.validator_set.is_none() {
                return Err(WireError::item("skip_chain_response.hops", i)(
                    WireError::Missing {
                        field: "hop.validator_set",
                    },
                ));
            }
            previous = hop.header.height;
        }
        if previous != self.target_height {
            return Err(WireError::Invalid {
                field: "skip_chain_response.hops",
                rule: "the last hop must be at target_height",
            });
        }
        Ok(())
    }
}

// ------------------------------------------------------------------- errors

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The responder is at its concurrency limit; retry later.
    Busy,
    /// The requester exceeded the responder's rate limit.
    RateLimited,
    /// The responder does not have what was asked for.
    NotFound,
    /// The request broke a protocol rule.
    BadRequest,
    /// The responder does not serve this request kind.
    Unsupported,
    /// The responder failed internally.
    Internal,
}

/// An explicit refusal, so that a peer that cannot answer says so instead of going silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// Why.
    pub code: ErrorCode,
    /// Detail for humans, at most [`MAX_ERROR_MESSAGE_LEN`] bytes.
    pub message: String,
    /// Suggested delay before retrying, in milliseconds (0: none).
    pub retry_after_ms: u32,
}

impl ErrorResponse {
    /// Checks the message length.
    pub fn validate(&self) -> Result<(), WireError> {
        check_len("error.message", self.message.len(), MAX_ERROR_MESSAGE_LEN)
    }
}

// ------------------------------------------------------------------ helpers

fn check_request_count(field: &'static str, count: u32, max: u32) -> Result<(), WireError> {
    if count == 0 {
        return Err(WireError::Empty { field });
    }
    check_count(field, count as usize, max as usize)
}

fn check_sequential(
    field: &'static str,
    start: u64,
    heights: impl Iterator<Item = u64>,
) -> Result<(), WireError> {
    for (i, actual) in heights.enumerate() {
        let Some(expected) = start.checked_add(i as u64) else {
            return Err(WireError::Item {
                field,
                index: i,
                source: Box::new(WireError::Invalid {
                    field: "header.height",
                    rule: "heights of a sequence must not pass u64::MAX",
                }),
            });
        };
        if actual != expected {
            return Err(WireError::Item {
                field,
                index: i,
                source: Box::new(WireError::NonSequential {
                    field: "header.height",
                    expected,
                    actual,
                }),
            });
        }
    }
    Ok(())
}

fn hashes(field: &'static str, items: Vec<Vec<u8>>, max: usize) -> Result<Vec<Hash>, WireError> {
    check_count(field, items.len(), max)?;
    items
        .iter()
        .enumerate()
        .map(|(i, h)| hash("hash", h).map_err(WireError::item(field, i)))
        .collect()
}

fn prefix(field: &'static str, value: u32) -> Result<u8, WireError> {
    u8::try_from(value).map_err(|_| WireError::Invalid {
        field,
        rule: "a state prefix is one byte (0..=255)",
    })
}

fn proof(raw: Option<raw::MmrProof>) -> Result<MmrProof, WireError> {
    let raw = raw.unwrap_or_default();
    Ok(MmrProof {
        hashes: hashes("mmr_proof.hashes", raw.hashes, MAX_MMR_PROOF_HASHES)?,
    })
}

pub(crate) fn raw_proof(p: &MmrProof) -> raw::MmrProof {
    raw::MmrProof {
        hashes: p.hashes.iter().map(|h| h.0.to_vec()).collect(),
    }
}

// ------------------------------------------------------------ raw -> domain

impl TryFrom<raw::Request> for Request {
    type Error = WireError;
    fn try_from(raw: raw::Request) -> Result<Self, WireError> {
        use raw::request::Body;
        let request = match required("request.body", raw.body)? {
            Body::GetHeaders(m) => Request::GetHeaders(GetHeaders {
                start_height: m.start_height,
                count: m.count,
            }),
            Body::GetHeadersV2(m) => Request::GetHeadersV2(GetHeadersV2 {
                start_height: m.start_height,
                count: m.count,
                end_height: m.end_height,
                commitment: hash("get_headers_v2.commitment", &m.commitment)?,
                proof_kind: match raw::ProofKind::try_from(m.proof_kind) {
                    Ok(raw::ProofKind::LastLeaf) => ProofKind::LastLeaf,
                    Ok(raw::ProofKind::Range) => ProofKind::Range,
                    Err(_) => {
                        return Err(WireError::Invalid {
                            field: "get_headers_v2.proof_kind",
                            rule: "unknown proof kind",
                        });
                    }
                },
                headers_only: m.headers_only,
                compact: m.compact,
            }),
            Body::GetHeaderChain(m) => Request::GetHeaderChain(GetHeaderChain {
                locator: hashes("get_header_chain.locator", m.locator, MAX_LOCATOR_HASHES)?,
                end_height: m.end_height,
            }),
            Body::GetSnapshotManifest(m) => Request::GetSnapshotManifest(GetSnapshotManifest {
                snapshot_height: m.snapshot_height,
            }),
            Body::GetSnapshot(m) => Request::GetSnapshot(GetSnapshot {
                snapshot_height: m.snapshot_height,
                prefix: prefix("get_snapshot.prefix", m.prefix)?,
                start_key: m.start_key,
            }),
            Body::GetSkipChain(m) => Request::GetSkipChain(GetSkipChain {
                trusted_height: m.trusted_height,
                target_height: m.target_height,
            }),
            Body::GetValidatorSet(m) => {
                Request::GetValidatorSet(GetValidatorSet { height: m.height })
            }
            Body::GetBlocks(m) => {
                Request::GetBlocks(match required("get_blocks.selector", m.selector)? {
                    raw::get_blocks::Selector::ByHash(h) => GetBlocks::ByHash(hashes(
                        "get_blocks.by_hash",
                        h.hashes,
                        MAX_BLOCKS_PER_REQUEST as usize,
                    )?),
                    raw::get_blocks::Selector::ByRange(r) => GetBlocks::ByRange {
                        start_height: r.start_height,
                        count: r.count,
                    },
                })
            }
        };
        request.validate()?;
        Ok(request)
    }
}

impl TryFrom<raw::Response> for Response {
    type Error = WireError;
    fn try_from(raw: raw::Response) -> Result<Self, WireError> {
        use raw::response::Body;
        let response = match required("response.body", raw.body)? {
            Body::Headers(m) => {
                check_count(
                    "headers_response.headers",
                    m.headers.len(),
                    MAX_HEADERS_PER_BATCH as usize,
                )?;
                Response::Headers(HeadersResponse {
                    start_height: m.start_height,
                    headers: try_items("headers_response.headers", m.headers)?,
                })
            }
            Body::HeadersV2(m) => Response::HeadersV2(HeadersV2Response {
                start_height: m.start_height,
                end_height: m.end_height,
                result: match required("headers_v2_response.result", m.result)? {
                    raw::headers_v2_response::Result::Headers(p) => {
                        check_count(
                            "headers_v2_response.headers",
                            p.headers.len(),
                            MAX_HEADERS_V2 as usize,
                        )?;
                        HeadersV2Result::Headers {
                            headers: try_items("headers_v2_response.headers", p.headers)?,
                            proof: proof(p.proof)?,
                        }
                    }
                    raw::headers_v2_response::Result::Commitment(c) => {
                        HeadersV2Result::Commitment(hash("headers_v2_response.commitment", &c)?)
                    }
                    raw::headers_v2_response::Result::BareHeaders(p) => {
                        check_count(
                            "headers_v2_response.bare_headers",
                            p.headers.len(),
                            MAX_HEADERS_V2 as usize,
                        )?;
                        HeadersV2Result::BareHeaders {
                            headers: try_items("headers_v2_response.bare_headers", p.headers)?,
                            proof: proof(p.proof)?,
                        }
                    }
                    raw::headers_v2_response::Result::CompactHeaders(mut c) => {
                        let p = proof(c.proof.take())?;
                        HeadersV2Result::CompactHeaders {
                            headers: Box::new(CompactHeaders::try_from(c)?),
                            proof: p,
                        }
                    }
                },
            }),
            Body::HeaderChain(m) => Response::HeaderChain(HeaderChainResponse {
                last_common: m.last_common.map(Header::try_from).transpose()?,
                end_height: m.end_height,
                commitment: hash("header_chain_response.commitment", &m.commitment)?,
                proof: proof(m.proof)?,
            }),
            Body::SnapshotManifest(m) => {
                check_count("snapshot_manifest.prefixes", m.prefixes.len(), 256)?;
                Response::SnapshotManifest(SnapshotManifest {
                    snapshot_height: m.snapshot_height,
                    prefixes: m
                        .prefixes
                        .into_iter()
                        .enumerate()
                        .map(|(i, p)| {
                            Ok(PrefixChecksum {
                                prefix: prefix("prefix_checksum.prefix", p.prefix)?,
                                checksum: fixed("prefix_checksum.checksum", &p.checksum)?,
                                records: p.records,
                            })
                            .map_err(WireError::item("snapshot_manifest.prefixes", i))
                        })
                        .collect::<Result<_, WireError>>()?,
                })
            }
            Body::SnapshotData(m) => {
                check_count(
                    "snapshot_data.entries",
                    m.entries.len(),
                    MAX_SNAPSHOT_ENTRIES,
                )?;
                Response::SnapshotData(SnapshotData {
                    snapshot_height: m.snapshot_height,
                    prefix: prefix("snapshot_data.prefix", m.prefix)?,
                    entries: m
                        .entries
                        .into_iter()
                        .map(|e| SnapshotEntry {
                            key: e.key,
                            value: e.value,
                        })
                        .collect(),
                    prefix_exhausted: m.prefix_exhausted,
                })
            }
            Body::Blocks(m) => {
                check_count(
                    "blocks_response.blocks",
                    m.blocks.len(),
                    MAX_BLOCKS_PER_REQUEST as usize,
                )?;
                Response::Blocks(BlocksResponse {
                    blocks: try_items("blocks_response.blocks", m.blocks)?,
                })
            }
            Body::SkipChain(m) => {
                check_count("skip_chain_response.hops", m.hops.len(), MAX_SKIP_HOPS)?;
                Response::SkipChain(SkipChainResponse {
                    trusted_height: m.trusted_height,
                    target_height: m.target_height,
                    hops: try_items("skip_chain_response.hops", m.hops)?,
                })
            }
            Body::ValidatorSet(m) => Response::ValidatorSet(ValidatorSetResponse {
                height: m.height,
                validator_set: required("validator_set_response.validator_set", m.validator_set)?
                    .try_into()?,
            }),
            Body::Error(m) => Response::Error(ErrorResponse {
                code: match raw::ErrorCode::try_from(m.code) {
                    Ok(raw::ErrorCode::Busy) => ErrorCode::Busy,
                    Ok(raw::ErrorCode::RateLimited) => ErrorCode::RateLimited,
                    Ok(raw::ErrorCode::NotFound) => ErrorCode::NotFound,
                    Ok(raw::ErrorCode::BadRequest) => ErrorCode::BadRequest,
                    Ok(raw::ErrorCode::Unsupported) => ErrorCode::Unsupported,
                    Ok(raw::ErrorCode::Internal) => ErrorCode::Internal,
                    Ok(raw::ErrorCode::Unspecified) | Err(_) => {
                        return Err(WireError::Invalid {
                            field: "error.code",
                            rule: "unknown or unspecified error code",
                        });
                    }
                },
                message: m.message,
                retry_after_ms: m.retry_after_ms,
            }),
        };
        response.validate()?;
        Ok(response)
    }
}

impl TryFrom<raw::Push> for Push {
    type Error = WireError;
    fn try_from(raw: raw::Push) -> Result<Self, WireError> {
        use raw::push::Body;
        let push = match required("push.body", raw.body)? {
            Body::Status(s) => Push::Status(StatusResponse {
                base: s.base,
                height: s.height,
                features: Features(s.features),
            }),
            Body::BlockAnnouncement(a) => Push::BlockAnnouncement(BlockAnnouncement {
                signed_header: required("block_announcement.signed_header", a.signed_header)?
                    .try_into()?,
            }),
        };
        push.validate()?;
        Ok(push)
    }
}

// ------------------------------------------------------------ domain -> raw

impl From<&Request> for raw::Request {
    fn from(request: &Request) -> Self {
        use raw::request::Body;
        let body = match request {
            Request::GetHeaders(m) => Body::GetHeaders(raw::GetHeaders {
                start_height: m.start_height,
                count: m.count,
            }),
            Request::GetHeadersV2(m) => Body::GetHeadersV2(raw::GetHeadersV2 {
                start_height: m.start_height,
                count: m.count,
                end_height: m.end_height,
                commitment: m.commitment.0.to_vec(),
                proof_kind: match m.proof_kind {
                    ProofKind::LastLeaf => raw::ProofKind::LastLeaf,
                    ProofKind::Range => raw::ProofKind::Range,
                } as i32,
                headers_only: m.headers_only,
                compact: m.compact,
            }),
            Request::GetHeaderChain(m) => Body::GetHeaderChain(raw::GetHeaderChain {
                locator: m.locator.iter().map(|h| h.0.to_vec()).collect(),
                end_height: m.end_height,
            }),
            Request::GetSnapshotManifest(m) => {
                Body::GetSnapshotManifest(raw::GetSnapshotManifest {
                    snapshot_height: m.snapshot_height,
                })
            }
            Request::GetSnapshot(m) => Body::GetSnapshot(raw::GetSnapshot {
                snapshot_height: m.snapshot_height,
                prefix: u32::from(m.prefix),
                start_key: m.start_key.clone(),
            }),
            Request::GetSkipChain(m) => Body::GetSkipChain(raw::GetSkipChain {
                trusted_height: m.trusted_height,
                target_height: m.target_height,
            }),
            Request::GetValidatorSet(m) => {
                Body::GetValidatorSet(raw::GetValidatorSet { height: m.height })
            }
            Request::GetBlocks(m) => Body::GetBlocks(raw::GetBlocks {
                selector: Some(match m {
                    GetBlocks::ByHash(h) => raw::get_blocks::Selector::ByHash(raw::BlockHashes {
                        hashes: h.iter().map(|h| h.0.to_vec()).collect(),
                    }),
                    GetBlocks::ByRange {
                        start_height,
                        count,
                    } => raw::get_blocks::Selector::ByRange(raw::HeightRange {
                        start_height: *start_height,
                        count: *count,
                    }),
                }),
            }),
        };
        raw::Request { body: Some(body) }
    }
}

impl From<&Response> for raw::Response {
    fn from(response: &Response) -> Self {
        use raw::response::Body;
        let body = match response {
            Response::Headers(m) => Body::Headers(raw::HeadersResponse {
                start_height: m.start_height,
                headers: m.headers.iter().map(Into::into).collect(),
            }),
            Response::HeadersV2(m) => Body::HeadersV2(raw::HeadersV2Response {
                start_height: m.start_height,
                end_height: m.end_height,
                result: Some(match &m.result {
                    HeadersV2Result::Headers { headers, proof } => {
                        raw::headers_v2_response::Result::Headers(raw::ProvenHeaders {
                            headers: headers.iter().map(Into::into).collect(),
                            proof: Some(raw_proof(proof)),
                        })
                    }
                    HeadersV2Result::Commitment(c) => {
                        raw::headers_v2_response::Result::Commitment(c.0.to_vec())
                    }
                    HeadersV2Result::BareHeaders { headers, proof } => {
                        raw::headers_v2_response::Result::BareHeaders(raw::ProvenBareHeaders {
                            headers: headers.iter().map(Into::into).collect(),
                            proof: Some(raw_proof(proof)),
                        })
                    }
                    HeadersV2Result::CompactHeaders { headers, proof } => {
                        raw::headers_v2_response::Result::CompactHeaders(crate::compact::to_raw(
                            headers,
                            raw_proof(proof),
                        ))
                    }
                }),
            }),
            Response::HeaderChain(m) => Body::HeaderChain(raw::HeaderChainResponse {
                last_common: m.last_common.as_ref().map(Into::into),
                end_height: m.end_height,
                commitment: m.commitment.0.to_vec(),
                proof: Some(raw_proof(&m.proof)),
            }),
            Response::SnapshotManifest(m) => Body::SnapshotManifest(raw::SnapshotManifest {
                snapshot_height: m.snapshot_height,
                prefixes: m
                    .prefixes
                    .iter()
                    .map(|p| raw::PrefixChecksum {
                        prefix: u32::from(p.prefix),
                        checksum: p.checksum.to_vec(),
                        records: p.records,
                    })
                    .collect(),
            }),
            Response::SnapshotData(m) => Body::SnapshotData(raw::SnapshotData {
                snapshot_height: m.snapshot_height,
                prefix: u32::from(m.prefix),
                entries: m
                    .entries
                    .iter()
                    .map(|e| raw::SnapshotEntry {
                        key: e.key.clone(),
                        value: e.value.clone(),
                    })
                    .collect(),
                prefix_exhausted: m.prefix_exhausted,
            }),
            Response::Blocks(m) => Body::Blocks(raw::BlocksResponse {
                blocks: m.blocks.iter().map(Into::into).collect(),
            }),
            Response::SkipChain(m) => Body::SkipChain(raw::SkipChainResponse {
                trusted_height: m.trusted_height,
                target_height: m.target_height,
                hops: m.hops.iter().map(Into::into).collect(),
            }),
            Response::ValidatorSet(m) => Body::ValidatorSet(raw::ValidatorSetResponse {
                height: m.height,
                validator_set: Some((&m.validator_set).into()),
            }),
            Response::Error(m) => Body::Error(raw::ErrorResponse {
                code: match m.code {
                    ErrorCode::Busy => raw::ErrorCode::Busy,
                    ErrorCode::RateLimited => raw::ErrorCode::RateLimited,
                    ErrorCode::NotFound => raw::ErrorCode::NotFound,
                    ErrorCode::BadRequest => raw::ErrorCode::BadRequest,
                    ErrorCode::Unsupported => raw::ErrorCode::Unsupported,
                    ErrorCode::Internal => raw::ErrorCode::Internal,
                } as i32,
                message: m.message.clone(),
                retry_after_ms: m.retry_after_ms,
            }),
        };
        raw::Response { body: Some(body) }
    }
}

impl From<&Push> for raw::Push {
    fn from(push: &Push) -> Self {
        use raw::push::Body;
        let body = match push {
            Push::Status(s) => Body::Status(raw::StatusResponse {
                base: s.base,
                height: s.height,
                features: s.features.0,
            }),
            Push::BlockAnnouncement(a) => Body::BlockAnnouncement(raw::BlockAnnouncement {
                signed_header: Some((&a.signed_header).into()),
            }),
        };
        raw::Push { body: Some(body) }
    }
}
