//! Parallel header sync over MMR commitments (getheadersv2, seed 000): the
//! sans-IO range planner and the hash-only range verifier.
//!
//! A verified tip header `T` at height `t` carries `history_root = C(t - 1)`,
//! the MMR root over the hashes of every earlier header. The planner splits
//! the heights still missing below `T` into ranges, asks every peer that
//! agrees with `C(X)` (`X = t - 1`) for ranges in parallel, verifies each
//! answer **by hashes alone** ([`verify_range`]: linkage inside the range,
//! commits bound to their headers, attached validator sets hashing to their
//! headers, and an MMR proof of the last header — or every header — into
//! `C(X)`), and hands verified ranges out strictly in height order so they
//! can be stored. Not one signature is checked: `C(X)` is vouched for by the
//! +2/3 commit of `T`.
//!
//! Memory is bounded by bytes, not by a count of peers: ranges are requested
//! only while the bytes buffered plus the bytes in flight stay under
//! [`RangeSyncConfig::max_buffer_bytes`] (the range at the head is always
//! allowed, so the buffer can never deadlock). A range stuck at the head is
//! requested again from another peer when it is late, and a peer whose range
//! does not prove is banned.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    fmt::Debug,
    hash::Hash as StdHash,
    time::{Duration, Instant},
};

use headway_chain::{
    Hashed, HashedCompact, HeaderExt, ValidatorSetExt as _, bind_commit_hashed,
    check_validator_set, verify_commit_full,
};
use headway_mmr::{LeafHash, Proof, verify_inclusion, verify_range as mmr_verify_range};
use headway_wire::{
    BareHeader, Commit, GetHeadersV2, Hash, Header, HeadersV2Response, HeadersV2Result, MmrProof,
    ProofKind, SignedHeader, ValidatorSet, limits::MAX_HEADERS_V2,
};

use crate::writer::HeaderBatch;

/// A header as a range carries it: signed (with its commit, which
/// [`verify_range`] binds to it) or bare (headers-only ranges), either plain
/// (hashed while verified) or [`Hashed`] already. Sealed: a range is only
/// as sound as the header hashes it is checked with.
pub trait RangeItem: sealed::Sealed {
    /// The header.
    fn header(&self) -> &Header;
    /// Its commit, if the range carries commits.
    fn commit(&self) -> Option<&Commit>;
    /// The validator set attached where the set changes.
    fn validator_set(&self) -> Option<&ValidatorSet>;
    /// The header hash.
    fn header_hash(&self) -> Hash {
        self.header().hash()
    }
}

mod sealed {
    use headway_chain::Hashed;
    use headway_wire::{BareHeader, SignedHeader};

    pub trait Sealed {}
    impl Sealed for SignedHeader {}
    impl Sealed for BareHeader {}
    impl<T: Sealed> Sealed for Hashed<T> {}
}

impl<T: RangeItem> RangeItem for Hashed<T> {
    fn header(&self) -> &Header {
        self.value().header()
    }
    fn commit(&self) -> Option<&Commit> {
        self.value().commit()
    }
    fn validator_set(&self) -> Option<&ValidatorSet> {
        self.value().validator_set()
    }
    fn header_hash(&self) -> Hash {
        self.hash()
    }
}

impl RangeItem for SignedHeader {
    fn header(&self) -> &Header {
        &self.header
    }
    fn commit(&self) -> Option<&Commit> {
        Some(&self.commit)
    }
    fn validator_set(&self) -> Option<&ValidatorSet> {
        self.validator_set.as_ref()
    }
}

impl RangeItem for BareHeader {
    fn header(&self) -> &Header {
        &self.header
    }
    fn commit(&self) -> Option<&Commit> {
        None
    }
    fn validator_set(&self) -> Option<&ValidatorSet> {
        self.validator_set.as_ref()
    }
}

/// Why a range does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// The answer has no headers.
    #[error("empty range")]
    Empty,
    /// The headers do not start at the requested height or run past the end.
    #[error("headers {first}..={last} are not within the requested {start}..={end}")]
    OutOfRange {
        /// First height received.
        first: u64,
        /// Last height received.
        last: u64,
        /// Requested start.
        start: u64,
        /// Requested end (inclusive).
        end: u64,
    },
    /// A header is for another chain.
    #[error("height {height}: chain id {actual:?} is not {expected:?}")]
    ChainId {
        /// The height.
        height: u64,
        /// The expected chain id.
        expected: String,
        /// The header's.
        actual: String,
    },
    /// `last_block_id` of a header is not the previous header's hash.
    #[error("height {height}: last_block_id does not link to the previous header")]
    Linkage {
        /// The height.
        height: u64,
    },
    /// `validators_hash` is not the previous header's `next_validators_hash`.
    #[error("height {height}: validators_hash breaks continuity with the previous header")]
    ValidatorContinuity {
        /// The height.
        height: u64,
    },
    /// A commit is not bound to its header, or an attached set does not hash to it.
    #[error("height {height}: {reason}")]
    Binding {
        /// The height.
        height: u64,
        /// What failed.
        reason: String,
    },
    /// The range's last commit is not signed by more than 2/3 of its
    /// header's validator set (signed ranges: what a v1 batch's last
    /// commit must be; the commits before it are bound by height and
    /// block id only, as in v1).
    #[error("height {height}: the last commit does not verify: {reason}")]
    LastCommit {
        /// The height.
        height: u64,
        /// Why.
        reason: String,
    },
    /// The validator set changes at this header, but the range does not
    /// carry it (the store needs every set where it changes, and a range
    /// without one would end the run at the store, its sender unblamed).
    #[error("height {height}: the validator set changes here but none is attached")]
    MissingValidatorSet {
        /// The height.
        height: u64,
    },
    /// The MMR proof does not put the headers into the commitment.
    #[error("MMR proof of heights {first}..={last} into C({end}) fails: {reason}")]
    Proof {
        /// First height proven.
        first: u64,
        /// Last height proven.
        last: u64,
        /// The commitment's leaf count.
        end: u64,
        /// The MMR error.
        reason: String,
    },
}

/// Verifies a range of signed (or bare) headers into the commitment
/// `commitment = C(end_height)` by hashes alone, and returns the header
/// hashes (computed once, reused for storage checks). Commits, where the
/// range carries them, must be bound to their headers.
pub fn verify_range<T: RangeItem>(
    chain_id: &str,
    commitment: &Hash,
    end_height: u64,
    start_height: u64,
    headers: &[T],
    proof: &MmrProof,
    kind: ProofKind,
) -> Result<Vec<Hash>, RangeError> {
    let (Some(first), Some(last)) = (headers.first(), headers.last()) else {
        return Err(RangeError::Empty);
    };
    let (first_h, last_h) = (first.header().height, last.header().height);
    if first_h != start_height
        || last_h > end_height
        || last_h < first_h
        || (last_h - first_h + 1) as usize != headers.len()
    {
        return Err(RangeError::OutOfRange {
            first: first_h,
            last: last_h,
            start: start_height,
            end: end_height,
        });
    }
    let mut hashes = Vec::with_capacity(headers.len());
    for (i, item) in headers.iter().enumerate() {
        let header = item.header();
        if header.chain_id != chain_id {
            return Err(RangeError::ChainId {
                height: header.height,
                expected: chain_id.into(),
                actual: header.chain_id.clone(),
            });
        }
        let hash = item.header_hash();
        if i > 0 {
            let prev = headers[i - 1].header();
            if header.last_block_id.map(|b| b.hash) != Some(hashes[i - 1]) {
                return Err(RangeError::Linkage {
                    height: header.height,
                });
            }
            if header.validators_hash != prev.next_validators_hash {
                return Err(RangeError::ValidatorContinuity {
                    height: header.height,
                });
            }
            if header.validators_hash != prev.validators_hash && item.validator_set().is_none() {
                return Err(RangeError::MissingValidatorSet {
                    height: header.height,
                });
            }
        }
        if let Some(commit) = item.commit() {
            let bound =
                bind_commit_hashed(header, hash, commit).map_err(|e| RangeError::Binding {
                    height: header.height,
                    reason: e.to_string(),
                })?;
            if bound != hash {
                return Err(RangeError::Binding {
                    height: header.height,
                    reason: "commit is for another header".into(),
                });
            }
        }
        if let Some(set) = item.validator_set() {
            check_validator_set(header, set).map_err(|e| RangeError::Binding {
                height: header.height,
                reason: e.to_string(),
            })?;
        }
        hashes.push(hash);
    }
    verify_proof(
        commitment,
        end_height,
        (first_h, last_h),
        &hashes,
        proof,
        kind,
    )?;
    Ok(hashes)
}

/// [`verify_range`] of a compact range, from its columns and the hashes
/// [`HashedCompact::new`] computed: inside the range, linkage and validator
/// continuity hold by construction (each header's parent is the hash of the
/// one before, its `validators_hash` that one's `next_validators_hash`), so
/// what is left is the range's place, its chain id, the attached validator
/// sets and the MMR proof.
pub fn verify_compact_range(
    chain_id: &str,
    commitment: &Hash,
    end_height: u64,
    start_height: u64,
    range: &HashedCompact,
    proof: &MmrProof,
    kind: ProofKind,
) -> Result<(), RangeError> {
    let (first_h, last_h) = (range.start_height(), range.last_height());
    if range.is_empty() {
        return Err(RangeError::Empty);
    }
    if first_h != start_height || last_h > end_height {
        return Err(RangeError::OutOfRange {
            first: first_h,
            last: last_h,
            start: start_height,
            end: end_height,
        });
    }
    if range.headers().chain_id != chain_id {
        return Err(RangeError::ChainId {
            height: first_h,
            expected: chain_id.into(),
            actual: range.headers().chain_id.clone(),
        });
    }
    // Header i's `next_validators_hash` differing from its set is header
    // i + 1's set changing: that header must carry its set.
    let columns = range.headers();
    let mut sets = columns.validator_sets.iter().map(|(i, _)| *i).peekable();
    for (index, _) in &columns.validators_changes {
        let Some(changed) = index.checked_add(1).filter(|i| (*i as usize) < range.len()) else {
            continue;
        };
        while sets.next_if(|i| *i < changed).is_some() {}
        if sets.peek() != Some(&changed) {
            return Err(RangeError::MissingValidatorSet {
                height: first_h + u64::from(changed),
            });
        }
    }
    for (index, set, validators_hash) in range.headers().attached_sets() {
        let actual = set.hash();
        if actual != validators_hash {
            return Err(RangeError::Binding {
                height: first_h + u64::from(index),
                reason: format!(
                    "the attached validator set hashes to {actual}, not to validators_hash {validators_hash}"
                ),
            });
        }
    }
    verify_proof(
        commitment,
        end_height,
        (first_h, last_h),
        range.hashes(),
        proof,
        kind,
    )
}

/// The MMR proof of a range's hashes (heights `first..=last`) into
/// `commitment = C(end_height)`.
fn verify_proof(
    commitment: &Hash,
    end_height: u64,
    (first_h, last_h): (u64, u64),
    hashes: &[Hash],
    proof: &MmrProof,
    kind: ProofKind,
) -> Result<(), RangeError> {
    let Some(last_hash) = hashes.last() else {
        return Err(RangeError::Empty);
    };
    let proof = Proof::from_hashes(proof.hashes.iter().map(|h| h.0).collect());
    let fail = |e: headway_mmr::ProofError| RangeError::Proof {
        first: first_h,
        last: last_h,
        end: end_height,
        reason: e.to_string(),
    };
    match kind {
        ProofKind::LastLeaf => {
            let leaf = LeafHash::of(&last_hash.0);
            verify_inclusion(&commitment.0, end_height, last_h - 1, &leaf, &proof).map_err(fail)
        }
        ProofKind::Range => {
            let leaves: Vec<LeafHash> = hashes.iter().map(|h| LeafHash::of(&h.0)).collect();
            mmr_verify_range(&commitment.0, end_height, first_h - 1, &leaves, &proof).map_err(fail)
        }
    }
}

/// Bytes a verified compact range holds in memory: its columns and hashes.
fn compact_bytes(range: &HashedCompact) -> usize {
    let headers = range.headers();
    let sets: usize = headers
        .validator_sets
        .iter()
        .map(|(_, set)| set.validators.len() * 80 + 8)
        .sum();
    headers.chain_id.len()
        + headers.roots.len()
        + headers.time_deltas_ms.len() * 8
        + headers.proposers.len() * 20
        + headers.proposer_indexes.len()
        + headers.validators_changes.len() * 36
        + sets
        + range.hashes().len() * 32
}

/// Planner limits; every bound has a name.
#[derive(Debug, Clone)]
pub struct RangeSyncConfig {
    /// Headers per range request (at most 2000).
    pub range_len: u32,
    /// Most range requests in flight to one peer.
    pub max_inflight_per_peer: usize,
    /// Memory cap: bytes of verified-but-unstored ranges plus bytes expected in flight.
    pub max_buffer_bytes: usize,
    /// Estimated encoded bytes of one signed header, until measured.
    pub initial_header_bytes: usize,
    /// A request unanswered for this long fails.
    pub request_timeout: Duration,
    /// A range at the head is requested again from another peer after this
    /// long, or after 3× the answering peers' mean response time if longer.
    pub steal_after: Duration,
    /// Which proof to ask for.
    pub proof_kind: ProofKind,
    /// Most peers tracked.
    pub max_peers: usize,
    /// Ask for headers without commits (`GetHeadersV2.headers_only`): about
    /// a sixth of the bytes with 16 validators. The headers are stored
    /// without commits, so this node cannot serve them to v1 peers or full
    /// v2 ranges (see `headway_store::Store::bare_height`).
    pub headers_only: bool,
    /// With `headers_only`, ask for compact ranges (`GetHeadersV2.compact`):
    /// ~100 bytes a header instead of ~250, the rest derived while
    /// verifying. Peers that do not know the form answer plain bare
    /// headers, which are taken as well.
    pub compact: bool,
}

impl Default for RangeSyncConfig {
    fn default() -> Self {
        RangeSyncConfig {
            range_len: 250,
            max_inflight_per_peer: 4,
            max_buffer_bytes: 64 * 1024 * 1024,
            initial_header_bytes: 2048,
            request_timeout: Duration::from_secs(15),
            steal_after: Duration::from_millis(500),
            proof_kind: ProofKind::LastLeaf,
            max_peers: 128,
            headers_only: false,
            compact: true,
        }
    }
}

impl RangeSyncConfig {
    /// The defaults for headers-only ranges: [`RangeSyncConfig::headers_only`]
    /// set, and ranges of [`BARE_RANGE_LEN`] headers (a bare header is about
    /// a sixth of a signed one with 16 validators, so a range of 1000 is
    /// ~270 KB, less than a signed range of 250).
    #[must_use]
    pub fn bare() -> Self {
        RangeSyncConfig {
            headers_only: true,
            range_len: BARE_RANGE_LEN,
            ..RangeSyncConfig::default()
        }
    }
}

/// Headers per headers-only range by default ([`RangeSyncConfig::bare`]).
pub const BARE_RANGE_LEN: u32 = 1000;

/// Range requests in a row a peer may fail in transport or with an error
/// answer ([`RangeFailure::Transport`]), or leave unanswered
/// ([`RangeFailure::Timeout`]), before it is left to v1. A peer that never
/// answers was otherwise picked again after every timeout, last but never
/// dropped: v2 ran for ever beside it and the v1 fallback never came.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 5;

/// Pause of a peer after a failed range request, doubled for each further
/// failure in a row (100, 200, 400, 800 ms).
pub const FAILURE_BACKOFF: Duration = Duration::from_millis(100);

/// How a range request failed, as the transport saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFailure {
    /// No answer in time.
    Timeout,
    /// `BUSY` or `RATE_LIMITED`: try again later.
    Busy,
    /// `NOT_FOUND`: the peer does not have `C(X)` (it is behind).
    NotFound,
    /// `UNSUPPORTED`: the peer does not speak v2.
    Unsupported,
    /// The connection or stream failed.
    Transport,
    /// The answer broke the protocol.
    Invalid,
}

/// Something the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeEvent<P> {
    /// Verified headers, the next ones in height order: store them.
    Ready(HeaderBatch),
    /// Ban this peer.
    Ban {
        /// The peer.
        peer: P,
        /// Why.
        reason: String,
    },
    /// This peer cannot serve v2 ranges for this commitment (it does not
    /// speak v2, or is behind); leave it to v1.
    Unusable {
        /// The peer.
        peer: P,
        /// Why.
        reason: &'static str,
    },
    /// The first range does not link to the stored header before it: the
    /// stored prefix is not the commitment's chain (a wrong genesis or
    /// checkpoint). No peer is to blame; v2 cannot continue.
    PrefixConflict {
        /// The first height that does not link.
        height: u64,
    },
}

#[derive(Debug)]
enum RangeState<P> {
    Unassigned,
    Requested {
        peers: Vec<(P, Instant)>,
    },
    Verified {
        headers: HeaderBatch,
        bytes: usize,
        /// Who served it: to blame if it turns out not to fit the range
        /// before it (a validator set missing at its first header).
        from: P,
    },
}

#[derive(Debug)]
struct Range<P> {
    end: u64,
    state: RangeState<P>,
}

#[derive(Debug, Default)]
struct V2Peer {
    inflight: usize,
    timed_out: bool,
    paused_until: Option<Instant>,
    mean_response: Option<Duration>,
    /// Its verified answers' time a header (moving mean): what peers are
    /// ranked by, so that a peer answering quickly with few headers (one a
    /// range, say) does not rank first and take every remainder.
    mean_per_header: Option<Duration>,
    ranges_ok: u64,
    /// Range requests in a row that failed in transport, with an error
    /// answer or by timing out ([`RangeFailure::Transport`],
    /// [`RangeFailure::Timeout`]); reset by a verified range.
    failures: u32,
    /// Announced `GetHeadersV2` in its status: pipelined from the start.
    announced: bool,
}

/// Counters of the planner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeCounters {
    /// Headers verified.
    pub headers_verified: u64,
    /// Encoded bytes verified.
    pub bytes_verified: u64,
    /// Ranges that failed to verify.
    pub ranges_failed: u64,
    /// Head ranges requested a second time because they were late.
    pub steals: u64,
    /// Requests that timed out.
    pub timeouts: u64,
}

/// The range planner. `P` is the peer id type.
#[derive(Debug)]
pub struct RangeSync<P> {
    config: RangeSyncConfig,
    chain_id: String,
    commitment: Hash,
    end: u64,
    /// Next height to hand out (everything below is handed out).
    next: u64,
    /// Hash of the header at `next - 1`.
    prev_hash: Hash,
    /// `validators_hash` of the header at `next - 1`, when known
    /// ([`RangeSync::set_prev_validators_hash`]): a range whose first header
    /// has another must carry that header's set.
    prev_validators_hash: Option<Hash>,
    /// The validator set of the header at `next - 1`, when known
    /// ([`RangeSync::set_prev_validator_set`]): each signed range's last
    /// commit is verified against the set in force at its last header.
    prev_validator_set: Option<ValidatorSet>,
    /// The ranges handed to peers and not yet handed out (requested,
    /// verified, or back to unassigned after a failure). Ranges are
    /// materialized only when first requested, so this holds the download
    /// window (bounded by the buffer cap and the requests in flight), not
    /// the whole chain: every scan over it is cheap however long the chain.
    ranges: BTreeMap<u64, Range<P>>,
    /// The first height not yet in any range (`end + 1` once all are planned).
    unplanned: u64,
    peers: HashMap<P, V2Peer>,
    /// Requests in flight, by peer and range start.
    outstanding: HashSet<(P, u64)>,
    buffered_bytes: usize,
    header_bytes: usize,
    events: VecDeque<RangeEvent<P>>,
    counters: RangeCounters,
    /// Peers banned or found unusable in this run: never added again
    /// (at most [`MAX_EXCLUDED_PEERS`]).
    excluded: HashSet<P>,
    /// Emptied hash vectors to hash compact ranges into (at most
    /// [`MAX_SPARE_BUFFERS`], see [`RangeSync::recycle`]).
    spare: Vec<Vec<Hash>>,
}

/// Emptied hash vectors the planner keeps for reuse, at most. Each range
/// would otherwise take a fresh one (64 KiB for 2000 headers), and fresh
/// blocks that large cost the download task page faults on every range (the
/// allocator maps and unmaps them).
pub const MAX_SPARE_BUFFERS: usize = 8;

/// A vector kept for reuse holds room for this many hashes at most (a
/// range's worth, with the growth a reservation may add).
const MAX_SPARE_CAPACITY: usize = 2 * MAX_HEADERS_V2 as usize;

/// Peers a range download remembers as banned or unusable, at most; past it,
/// the transport's ban list still keeps banned peers away.
pub const MAX_EXCLUDED_PEERS: usize = 1024;

impl<P: Copy + Eq + StdHash + Ord + Debug> RangeSync<P> {
    /// Plans the download of heights `start..=end` proven into `commitment =
    /// C(end)`; `prev_hash` is the hash of the stored header at `start - 1`.
    pub fn new(
        chain_id: String,
        commitment: Hash,
        end: u64,
        start: u64,
        prev_hash: Hash,
        config: RangeSyncConfig,
    ) -> Self {
        let mut config = config;
        config.range_len = config.range_len.clamp(1, MAX_HEADERS_V2);
        config.max_inflight_per_peer = config.max_inflight_per_peer.max(1);
        RangeSync {
            header_bytes: config.initial_header_bytes.max(1),
            config,
            chain_id,
            commitment,
            end,
            next: start.max(1),
            prev_hash,
            prev_validators_hash: None,
            prev_validator_set: None,
            ranges: BTreeMap::new(),
            unplanned: start.max(1),
            peers: HashMap::new(),
            outstanding: HashSet::new(),
            buffered_bytes: 0,
            events: VecDeque::new(),
            counters: RangeCounters::default(),
            excluded: HashSet::new(),
            spare: Vec::new(),
        }
    }

    /// Sets the `validators_hash` of the stored header at `start - 1`, so
    /// that a first range whose set changes at its first header without
    /// carrying it is refused here (and its sender banned) rather than by
    /// the store. Without it, that one boundary is left to the store.
    pub fn set_prev_validators_hash(&mut self, validators_hash: Hash) {
        self.prev_validators_hash = Some(validators_hash);
    }

    /// Sets the validator set of the stored header at `start - 1` (and so
    /// its hash, as [`RangeSync::set_prev_validators_hash`] does). With it,
    /// the last commit of each signed range is verified, +2/3 of the set in
    /// force there, as it is handed out: without, signed ranges' commits
    /// were bound to their headers (height and block id) but no signature
    /// was checked, so a peer could have forged commits stored and served.
    pub fn set_prev_validator_set(&mut self, set: ValidatorSet) {
        self.prev_validators_hash = Some(set.hash());
        self.prev_validator_set = Some(set);
    }

    /// Takes back the hash vector of a compact range handed out
    /// ([`RangeEvent::Ready`], [`HashedCompact::into_hashes`]) once it is
    /// stored, emptied or not, so that a later compact range is hashed into
    /// it instead of a fresh one. Kept while fewer than
    /// [`MAX_SPARE_BUFFERS`] are and it holds room for at most two ranges'
    /// worth of hashes; dropped otherwise.
    pub fn recycle(&mut self, mut buffer: Vec<Hash>) {
        buffer.clear();
        if self.spare.len() < MAX_SPARE_BUFFERS && buffer.capacity() <= MAX_SPARE_CAPACITY {
            self.spare.push(buffer);
        }
    }

    /// Vectors kept for reuse ([`RangeSync::recycle`]).
    pub fn spare_buffers(&self) -> usize {
        self.spare.len()
    }

    /// True when every height up to the end has been handed out.
    pub fn is_done(&self) -> bool {
        self.next > self.end
    }

    /// The next height to be handed out.
    pub fn next_height(&self) -> u64 {
        self.next
    }

    /// Bytes of verified ranges waiting to be handed out.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Ranges tracked: requested, verified but not handed out, or given
    /// back. The rest of the chain is not planned until requested, so this
    /// stays within the download window however long the chain is.
    pub fn window_ranges(&self) -> usize {
        self.ranges.len()
    }

    /// Peers usable for ranges.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Counters.
    pub fn counters(&self) -> &RangeCounters {
        &self.counters
    }

    /// A peer that claims to have the tip: it may serve ranges (unless this
    /// run already banned it or found it unusable). It gets one range until
    /// it has served one: a peer that does not speak v2 (or is behind) then
    /// says so once, not once per pipelined request.
    pub fn add_peer(&mut self, peer: P) {
        self.add(peer, false);
    }

    /// A peer that claims to have the tip and announces that it serves
    /// `GetHeadersV2` (`Features::HEADERS_V2` in its status): it gets
    /// [`RangeSyncConfig::max_inflight_per_peer`] ranges from the start,
    /// saving the round trip of a probe. If the announcement was false, its
    /// `UNSUPPORTED` answers make it unusable as for any peer.
    pub fn add_announced_peer(&mut self, peer: P) {
        self.add(peer, true);
    }

    fn add(&mut self, peer: P, announced: bool) {
        if self.excluded.contains(&peer) {
            return;
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            state.announced |= announced;
        } else if self.peers.len() < self.config.max_peers {
            self.peers.insert(
                peer,
                V2Peer {
                    announced,
                    ..V2Peer::default()
                },
            );
        }
    }

    /// The peer left; its requests go back to the pool.
    pub fn remove_peer(&mut self, peer: &P) {
        if self.peers.remove(peer).is_none() {
            return;
        }
        self.outstanding.retain(|(p, _)| p != peer);
        for range in self.ranges.values_mut() {
            if let RangeState::Requested { peers } = &mut range.state {
                peers.retain(|(p, _)| p != peer);
                if peers.is_empty() {
                    range.state = RangeState::Unassigned;
                }
            }
        }
    }

    /// The answer of `peer` to the range request starting at `start`.
    pub fn on_response(&mut self, peer: P, response: HeadersV2Response, now: Instant) {
        let start = response.start_height;
        if !self.outstanding.remove(&(peer, start)) {
            return; // Not (or no longer) asked of this peer.
        }
        let (others_pending, end, sent_at) = match self.ranges.get_mut(&start) {
            Some(Range {
                end,
                state: RangeState::Requested { peers },
            }) => {
                let sent_at = peers
                    .iter()
                    .position(|(p, _)| *p == peer)
                    .map(|i| peers.remove(i).1);
                (!peers.is_empty(), *end, sent_at)
            }
            // Verified already from another peer (a stolen head range) or handed out.
            _ => {
                self.release(peer, now, None);
                return;
            }
        };
        self.release(peer, now, sent_at);
        let took = sent_at.map(|at| now.saturating_duration_since(at));
        let (headers, proof) = match response.result {
            HeadersV2Result::Headers { headers, proof } if !self.config.headers_only => {
                (HeaderBatch::Signed(Hashed::all(headers)), proof)
            }
            HeadersV2Result::BareHeaders { headers, proof } if self.config.headers_only => {
                (HeaderBatch::Bare(Hashed::all(headers)), proof)
            }
            HeadersV2Result::CompactHeaders { headers, proof }
                if self.config.headers_only && self.config.compact =>
            {
                let hashes = self.spare.pop().unwrap_or_default();
                match HashedCompact::new(start, *headers, hashes) {
                    Ok(range) => (HeaderBatch::from(range), proof),
                    Err(error) => {
                        self.counters.ranges_failed += 1;
                        self.unassign_if_idle(start, others_pending);
                        self.ban(peer, format!("malformed compact range: {error}"));
                        return;
                    }
                }
            }
            HeadersV2Result::Headers { .. }
            | HeadersV2Result::BareHeaders { .. }
            | HeadersV2Result::CompactHeaders { .. } => {
                self.unassign_if_idle(start, others_pending);
                self.ban(
                    peer,
                    "answered with the kind of headers not asked for".into(),
                );
                return;
            }
            HeadersV2Result::Commitment(theirs) => {
                self.unassign_if_idle(start, others_pending);
                self.ban(
                    peer,
                    format!(
                        "its history commitment at {} is {theirs}, not the verified {}",
                        self.end, self.commitment
                    ),
                );
                return;
            }
        };
        let last = headers.last().map_or(start, |(height, _)| height);
        let verified = match &headers {
            HeaderBatch::Signed(h) => verify_range(
                &self.chain_id,
                &self.commitment,
                self.end,
                start,
                h,
                &proof,
                self.config.proof_kind,
            ),
            HeaderBatch::Bare(h) => verify_range(
                &self.chain_id,
                &self.commitment,
                self.end,
                start,
                h,
                &proof,
                self.config.proof_kind,
            ),
            HeaderBatch::Compact(h) => verify_compact_range(
                &self.chain_id,
                &self.commitment,
                self.end,
                start,
                h,
                &proof,
                self.config.proof_kind,
            )
            .map(|()| Vec::new()),
        };
        match verified {
            Ok(_hashes) => {
                let bytes: usize = match &headers {
                    HeaderBatch::Signed(h) => h.iter().map(|s| s.encoded_len_bound()).sum(),
                    HeaderBatch::Bare(h) => h.iter().map(|b| b.encoded_len_bound()).sum(),
                    HeaderBatch::Compact(h) => compact_bytes(h),
                };
                self.header_bytes = (self.header_bytes * 3 + bytes / headers.len().max(1)) / 4;
                self.counters.headers_verified += headers.len() as u64;
                self.counters.bytes_verified += bytes as u64;
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.ranges_ok += 1;
                    state.failures = 0;
                    if let Some(took) = took {
                        let count = u32::try_from(headers.len()).unwrap_or(u32::MAX).max(1);
                        let per_header = took / count;
                        state.mean_per_header = Some(
                            state
                                .mean_per_header
                                .map_or(per_header, |m| (m * 3 + per_header) / 4),
                        );
                    }
                }
                let Some(range) = self.ranges.get_mut(&start) else {
                    return;
                };
                if last < end {
                    // A partial answer (the server's byte budget): the rest is a new range.
                    range.end = last;
                    self.ranges.insert(
                        last + 1,
                        Range {
                            end,
                            state: RangeState::Unassigned,
                        },
                    );
                }
                let Some(range) = self.ranges.get_mut(&start) else {
                    return;
                };
                range.state = RangeState::Verified {
                    headers,
                    bytes,
                    from: peer,
                };
                self.buffered_bytes += bytes;
                self.emit_ready();
            }
            Err(error) => {
                self.counters.ranges_failed += 1;
                self.unassign_if_idle(start, others_pending);
                self.ban(
                    peer,
                    format!("range {start}..={end} does not prove: {error}"),
                );
            }
        }
    }

    /// A range request to `peer` starting at `start` failed.
    pub fn on_failure(&mut self, peer: P, start: u64, failure: RangeFailure, now: Instant) {
        if !self.outstanding.remove(&(peer, start)) {
            return;
        }
        self.release(peer, now, None);
        if let Some(Range {
            state: RangeState::Requested { peers },
            ..
        }) = self.ranges.get_mut(&start)
        {
            peers.retain(|(p, _)| *p != peer);
            let others_pending = !peers.is_empty();
            self.unassign_if_idle(start, others_pending);
        }
        match failure {
            RangeFailure::Timeout => {
                self.counters.timeouts += 1;
                let Some(state) = self.peers.get_mut(&peer) else {
                    return;
                };
                state.timed_out = true;
                state.failures += 1;
                if state.failures >= MAX_CONSECUTIVE_FAILURES {
                    self.unusable(peer, "left its last range requests in a row unanswered");
                }
            }
            RangeFailure::Busy => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.paused_until = Some(now + Duration::from_millis(200));
                }
            }
            RangeFailure::Transport => {
                // Paused, longer each time, so that a peer failing at once
                // is not picked again at once (it scores as a fresh peer,
                // ahead of slower working ones), then left to v1.
                let Some(state) = self.peers.get_mut(&peer) else {
                    return;
                };
                state.failures += 1;
                if state.failures >= MAX_CONSECUTIVE_FAILURES {
                    self.unusable(peer, "failed its last range requests in a row");
                } else {
                    state.paused_until = Some(now + FAILURE_BACKOFF * (1 << (state.failures - 1)));
                }
            }
            RangeFailure::NotFound => self.unusable(peer, "does not have the commitment's height"),
            RangeFailure::Unsupported => self.unusable(peer, "does not serve GetHeadersV2"),
            RangeFailure::Invalid => self.ban(peer, "sent an invalid GetHeadersV2 answer".into()),
        }
    }

    /// Checks timeouts and late head ranges; call periodically.
    pub fn on_tick(&mut self, now: Instant) {
        let timeout = self.config.request_timeout;
        let expired: Vec<(P, u64)> = self
            .ranges
            .iter()
            .flat_map(|(start, r)| match &r.state {
                RangeState::Requested { peers } => peers
                    .iter()
                    .filter(|(_, at)| now.saturating_duration_since(*at) >= timeout)
                    .map(|(p, _)| (*p, *start))
                    .collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect();
        for (peer, start) in expired {
            self.on_failure(peer, start, RangeFailure::Timeout, now);
        }
        for state in self.peers.values_mut() {
            if state.paused_until.is_some_and(|t| t <= now) {
                state.paused_until = None;
            }
        }
    }

    /// When the planner next needs [`RangeSync::on_tick`] or
    /// [`RangeSync::poll_request`]: a request timing out, the head range
    /// becoming late, or a paused peer's pause ending.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeouts = self.ranges.values().filter_map(|r| match &r.state {
            RangeState::Requested { peers } => peers
                .iter()
                .map(|(_, at)| *at + self.config.request_timeout)
                .min(),
            _ => None,
        });
        // A paused peer (busy, or failing) may take a range again.
        let pauses = self.peers.values().filter_map(|p| p.paused_until);
        // The head becoming late matters only if another peer could take it
        // then; otherwise an answer, a pause ending or a new peer changes
        // that, each an event of its own (a deadline that has passed and
        // stays would have the driver spin).
        let steal = self
            .steal_deadline()
            .filter(|(at, holder)| self.best_peer(*at, Some(*holder)).is_some())
            .map(|(at, _)| at);
        timeouts.chain(pauses).chain(steal).min()
    }

    /// The next request to send, if any. Call until `None`.
    #[must_use]
    pub fn poll_request(&mut self, now: Instant) -> Option<(P, GetHeadersV2)> {
        // A late head range is asked for again elsewhere (the staller is not
        // punished: the first valid answer wins).
        if let Some(request) = self.steal_head(now) {
            return Some(request);
        }
        let head = self
            .ranges
            .iter()
            .find(|(_, r)| !matches!(r.state, RangeState::Verified { .. }))
            .map(|(s, _)| *s)
            .or((self.unplanned <= self.end).then_some(self.unplanned));
        let inflight_bytes: usize = self
            .ranges
            .iter()
            .map(|(start, r)| match &r.state {
                RangeState::Requested { .. } => self.estimate_len(r.end + 1 - start),
                _ => 0,
            })
            .sum();
        let committed = self.buffered_bytes + inflight_bytes;
        // The lowest unassigned range (one given back, else the next one
        // planned): ranges are filled in height order so the buffer drains
        // as soon as the head arrives.
        let planned = self
            .ranges
            .iter()
            .find(|(_, r)| matches!(r.state, RangeState::Unassigned))
            .map(|(s, r)| (*s, r.end));
        let (start, end) = match planned {
            Some(range) => range,
            None if self.unplanned <= self.end => {
                let start = self.unplanned;
                let end = start
                    .saturating_add(u64::from(self.config.range_len) - 1)
                    .min(self.end);
                (start, end)
            }
            None => return None,
        };
        let cost = self.estimate_len(end - start + 1);
        if Some(start) != head && committed + cost > self.config.max_buffer_bytes {
            return None;
        }
        let peer = self.best_peer(now, None)?;
        if planned.is_none() {
            self.ranges.insert(
                start,
                Range {
                    end,
                    state: RangeState::Unassigned,
                },
            );
            self.unplanned = end + 1;
        }
        Some(self.assign(peer, start, end, now))
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<RangeEvent<P>> {
        self.events.pop_front()
    }

    /// When the head range, held by a single peer, becomes late (and by whom it is held).
    fn steal_deadline(&self) -> Option<(Instant, P)> {
        let (_, range) = self.ranges.iter().next()?;
        let RangeState::Requested { peers } = &range.state else {
            return None;
        };
        let [(holder, at)] = peers.as_slice() else {
            return None;
        };
        let mean = self
            .peers
            .iter()
            .filter(|(p, _)| *p != holder)
            .filter_map(|(_, s)| s.mean_response)
            .min()
            .unwrap_or(self.config.steal_after);
        Some((*at + self.config.steal_after.max(mean * 3), *holder))
    }

    fn steal_head(&mut self, now: Instant) -> Option<(P, GetHeadersV2)> {
        let (deadline, holder) = self.steal_deadline()?;
        if now < deadline {
            return None;
        }
        let (start, end) = self.ranges.iter().next().map(|(s, r)| (*s, r.end))?;
        let peer = self.best_peer(now, Some(holder))?;
        self.counters.steals += 1;
        Some(self.assign(peer, start, end, now))
    }

    fn assign(&mut self, peer: P, start: u64, end: u64, now: Instant) -> (P, GetHeadersV2) {
        if let Some(range) = self.ranges.get_mut(&start) {
            match &mut range.state {
                RangeState::Requested { peers } => peers.push((peer, now)),
                state => {
                    *state = RangeState::Requested {
                        peers: vec![(peer, now)],
                    }
                }
            }
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            state.inflight += 1;
        }
        self.outstanding.insert((peer, start));
        let count = u32::try_from(end - start + 1).unwrap_or(MAX_HEADERS_V2);
        (
            peer,
            GetHeadersV2 {
                start_height: start,
                count,
                end_height: self.end,
                commitment: self.commitment,
                proof_kind: self.config.proof_kind,
                headers_only: self.config.headers_only,
                compact: self.config.headers_only && self.config.compact,
            },
        )
    }

    fn best_peer(&self, now: Instant, except: Option<P>) -> Option<P> {
        // A peer gets one range until it has served one (unless it announced
        // v2): a peer that does not speak v2 (or is behind) says so once, not
        // once per pipelined request.
        let ready = |p: &V2Peer| {
            let limit = if p.ranges_ok == 0 && !p.announced {
                1
            } else {
                self.config.max_inflight_per_peer
            };
            p.inflight < limit && p.paused_until.is_none_or(|t| t <= now)
        };
        // Time a whole range takes the peer: by its time a header once it
        // has served a range, else its answers' latency, else a guess.
        let score = |(id, p): (&P, &V2Peer)| {
            let range = p
                .mean_per_header
                .map(|d| d.saturating_mul(self.config.range_len))
                .or(p.mean_response)
                .unwrap_or(Duration::from_millis(20));
            (range.saturating_mul(p.inflight as u32 + 1), *id)
        };
        let pick = |timed_out: bool| {
            self.peers
                .iter()
                .filter(|(id, p)| Some(**id) != except && p.timed_out == timed_out && ready(p))
                .min_by_key(|e| score(*e))
                .map(|(id, _)| *id)
        };
        pick(false).or_else(|| pick(true))
    }

    fn estimate_len(&self, headers: u64) -> usize {
        usize::try_from(headers)
            .unwrap_or(usize::MAX)
            .saturating_mul(self.header_bytes)
    }

    fn release(&mut self, peer: P, now: Instant, sent_at: Option<Instant>) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.inflight = state.inflight.saturating_sub(1);
            if let Some(at) = sent_at {
                let took = now.saturating_duration_since(at);
                state.mean_response =
                    Some(state.mean_response.map_or(took, |m| (m * 3 + took) / 4));
                state.timed_out = false;
            }
        }
    }

    fn unassign_if_idle(&mut self, start: u64, others_pending: bool) {
        if !others_pending && let Some(range) = self.ranges.get_mut(&start) {
            range.state = RangeState::Unassigned;
        }
    }

    fn exclude(&mut self, peer: P) {
        if self.excluded.len() < MAX_EXCLUDED_PEERS {
            self.excluded.insert(peer);
        }
    }

    fn unusable(&mut self, peer: P, reason: &'static str) {
        self.exclude(peer);
        self.remove_peer(&peer);
        self.events.push_back(RangeEvent::Unusable { peer, reason });
    }

    fn ban(&mut self, peer: P, reason: String) {
        self.exclude(peer);
        self.remove_peer(&peer);
        self.events.push_back(RangeEvent::Ban { peer, reason });
    }

    /// Verifies a signed range's last commit against the set in force at its
    /// last header (the last one the range carries, else the one before
    /// the range), when that set is known, and keeps that set for the next
    /// range.
    fn check_last_commit(&mut self, items: &[Hashed<SignedHeader>]) -> Result<(), RangeError> {
        let Some(last) = items.last().map(Hashed::value) else {
            return Ok(());
        };
        let carried = items
            .iter()
            .rev()
            .find_map(|i| i.value().validator_set.as_ref());
        let Some(set) = carried.or(self.prev_validator_set.as_ref()) else {
            return Ok(());
        };
        verify_commit_full(&self.chain_id, &last.header, &last.commit, set).map_err(|e| {
            RangeError::LastCommit {
                height: last.header.height,
                reason: e.to_string(),
            }
        })?;
        if let Some(set) = carried {
            self.prev_validator_set = Some(set.clone());
        }
        Ok(())
    }

    /// Hands out verified ranges from the head, checking each links to the previous one.
    fn emit_ready(&mut self) {
        while let Some(entry) = self.ranges.first_entry() {
            if *entry.key() != self.next
                || !matches!(entry.get().state, RangeState::Verified { .. })
            {
                return;
            }
            let start = *entry.key();
            let range = entry.remove();
            let RangeState::Verified {
                headers,
                bytes,
                from,
            } = range.state
            else {
                return;
            };
            self.buffered_bytes = self.buffered_bytes.saturating_sub(bytes);
            let links = headers.first_parent() == Some(self.prev_hash);
            if !links {
                // The range is proven into the verified commitment, so the
                // stored prefix is not that chain's: nobody to ban, no way on.
                self.events
                    .push_back(RangeEvent::PrefixConflict { height: self.next });
                self.next = self.end + 1;
                self.unplanned = self.end + 1;
                self.ranges.clear();
                return;
            }
            // What only the range before tells: a set that changes at the
            // first header (proven, so it did change: the sender left it
            // out), and the set that signs a signed range's last commit.
            let missing_set = matches!(
                (self.prev_validators_hash, headers.first_validators()),
                (Some(prev), Some((first, false))) if first != prev
            );
            let refusal = if missing_set {
                Some(RangeError::MissingValidatorSet { height: start })
            } else if let HeaderBatch::Signed(items) = &headers {
                self.check_last_commit(items).err()
            } else {
                None
            };
            if let Some(error) = refusal {
                self.counters.ranges_failed += 1;
                self.ranges.insert(
                    start,
                    Range {
                        end: range.end,
                        state: RangeState::Unassigned,
                    },
                );
                self.ban(from, format!("range {start}..={}: {error}", range.end));
                return;
            }
            self.prev_hash = headers.last().map_or(self.prev_hash, |(_, hash)| hash);
            if let Some(last) = headers.last_validators_hash() {
                self.prev_validators_hash = Some(last);
            }
            self.next = range.end + 1;
            self.events.push_back(RangeEvent::Ready(headers));
        }
    }
}
