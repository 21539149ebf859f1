//! Answers to peers' requests, from the store.

use headway_headersync::{
    SignedHeaderSource, answer_get_headers,
    server::{bare_headers_weight, get_headers_weight},
};
use headway_net::Responder;

use crate::answers::AnswerQueue;
use headway_store::{Store, StoreError};
use headway_wire::{
    BareHeader, BlocksResponse, CompactHeaders, ErrorCode, ErrorResponse, GetBlocks,
    GetHeaderChain, GetHeadersV2, GetSkipChain, GetSnapshot, HeaderChainResponse,
    HeadersV2Response, HeadersV2Result, MmrProof, ProofKind, Request, Response, SignedHeader,
    SkipChainResponse, SnapshotData, ValidatorSetResponse,
    encoded::{self, CompactRangeBuilder, EncodedResponse},
    limits::{MAX_HEADERS_V2_RESPONSE_FRAME, MAX_SKIP_HOPS, MAX_SNAPSHOT_DATA_FRAME},
};

/// Bytes of signed headers per `GetHeadersV2` answer: well under the frame limit.
pub const HEADERS_V2_BUDGET: usize = MAX_HEADERS_V2_RESPONSE_FRAME / 2;

/// Headers read from the store at a time while filling a decoded
/// `GetHeadersV2` answer ([`answer`]; the spliced answer reads the range at
/// once with a byte limit): a segment's worth.
const V2_READ_CHUNK: u64 = 256;

/// Bytes of records per snapshot chunk (half the frame limit leaves room for encoding overhead).
pub const SNAPSHOT_CHUNK_BUDGET: usize = MAX_SNAPSHOT_DATA_FRAME / 2;

/// The queue that answers peers' requests from `store` ([`respond`]): in
/// order per peer, at most `concurrency` at once, skipping requests whose
/// requester gave up ([`crate::answers::AnswerQueue::shedding`]).
pub fn answer_queue(store: Store, concurrency: usize) -> AnswerQueue<(Request, Responder)> {
    AnswerQueue::shedding(
        concurrency,
        move |(request, responder): (Request, Responder)| {
            respond(&store, &request, responder);
        },
        |(_, responder): &(Request, Responder)| responder.is_abandoned(),
    )
}

/// The answer to a request that found the answer queue full.
pub fn busy() -> Response {
    let mut response = error(ErrorCode::Busy, "too many requests waiting for an answer");
    if let Response::Error(e) = &mut response {
        e.retry_after_ms = 100;
    }
    response
}

/// The store as a source of signed headers.
pub struct StoreSource<'a>(pub &'a Store);

impl SignedHeaderSource for StoreSource<'_> {
    type Error = StoreError;
    fn signed_header(&self, height: u64) -> Result<Option<SignedHeader>, StoreError> {
        self.0.load_signed_header(height)
    }
    fn signed_headers(
        &self,
        start_height: u64,
        count: u32,
    ) -> Result<Vec<SignedHeader>, StoreError> {
        self.0.load_signed_headers(start_height, u64::from(count))
    }
}

/// What `request` costs in the per-peer serving rate limit (R2.7), or `None`
/// when it is not limited there. Signed header requests cost `1 + count /
/// 10` units whichever protocol asks (a `GetHeaders` of 50 costs 6, a v2
/// range of 250 costs 26); headers-only v2 ranges cost a sixth of that per
/// header, as their bytes do (`bare_headers_weight`: 1000 cost 17); a skip
/// chain, many reads, costs a full batch.
pub fn rate_weight(request: &Request) -> Option<usize> {
    match request {
        Request::GetHeaders(q) => Some(get_headers_weight(q.count)),
        Request::GetHeadersV2(q) if q.headers_only => Some(bare_headers_weight(q.count)),
        Request::GetHeadersV2(q) => Some(get_headers_weight(q.count)),
        Request::GetSkipChain(_) => Some(get_headers_weight(
            headway_wire::limits::MAX_HEADERS_PER_BATCH,
        )),
        _ => None,
    }
}

/// Answers `request` on `responder` (rate limiting is done by the caller):
/// header requests are spliced from the store's encodings without decoding
/// and re-encoding them ([`encoded_answer`]); everything else, and any case
/// the splice does not cover, goes through [`answer`].
pub fn respond(store: &Store, request: &Request, responder: Responder) {
    match encoded_answer(store, request) {
        Some(frame) => responder.respond_encoded(frame),
        None => responder.respond(answer(store, request)),
    }
}

/// The spliced answer to a `GetHeaders` or a `GetHeadersV2` that has
/// headers to send; `None` for anything else (a commitment mismatch, an end
/// above our height, a store error), which [`answer`] then handles. The
/// frame is byte for byte what [`answer`] would send, except that a v2 range
/// cut by the byte budget may hold more headers here (exact sizes, where
/// [`answer`] counts an upper bound).
pub fn encoded_answer(store: &Store, request: &Request) -> Option<EncodedResponse> {
    match request {
        Request::GetHeaders(q) => {
            let headers = store
                .load_encoded_signed_headers(q.start_height, u64::from(q.count), usize::MAX)
                .ok()?;
            EncodedResponse::headers(q.start_height, &headers).ok()
        }
        Request::GetHeadersV2(q) => encoded_headers_v2(store, q).ok().flatten(),
        _ => None,
    }
}

fn encoded_headers_v2(
    store: &Store,
    q: &GetHeadersV2,
) -> Result<Option<EncodedResponse>, StoreError> {
    if q.end_height > store.header_height() || store.history_root(q.end_height)? != q.commitment {
        return Ok(None);
    }
    let last = q
        .start_height
        .saturating_add(u64::from(q.count) - 1)
        .min(q.end_height);
    // The store reads each segment of the range once and stops at the
    // budget; each header's framing in the answer is a tag and a length
    // varint, well inside the other half of the frame limit.
    let count = last - q.start_height + 1;
    let prove = |last: u64| -> Result<MmrProof, StoreError> {
        Ok(mmr_proof(&match q.proof_kind {
            ProofKind::LastLeaf => store.prove_header(last, q.end_height)?,
            ProofKind::Range => store.prove_header_range(q.start_height, last, q.end_height)?,
        }))
    };
    if q.headers_only && q.compact {
        // Transcoded row by row into the columns from the stored fields
        // (a delta row's are read without protobuf), as the decoded path
        // would build them (and under the same budget as the plain answer's bare
        // headers). Without a compact form (never for a stored range, short
        // of 256 proposers in it), the decoded path answers plain bare
        // headers.
        let mut range = CompactRangeBuilder::with_capacity(
            q.start_height,
            usize::try_from(count).unwrap_or(usize::MAX),
        );
        let mut budget = None::<usize>;
        let mut transcoded = true;
        store.visit_header_fields(q.start_height, count, |header, set| {
            let len = encoded::bare_header_len_of(header.encoded_len(), set);
            let total = match budget {
                None => len,
                Some(used) => match used.checked_add(len).filter(|&t| t <= HEADERS_V2_BUDGET) {
                    Some(total) => total,
                    None => return false,
                },
            };
            if !range.push_fields(header, set) {
                transcoded = false;
                return false;
            }
            budget = Some(total);
            true
        })?;
        if !transcoded || range.is_empty() {
            return Ok(None);
        }
        let proof = prove(q.start_height + range.len() as u64 - 1)?;
        return Ok(range.finish(q.end_height, &proof).ok().flatten());
    }
    let headers = if q.headers_only {
        store.load_encoded_bare_headers(q.start_height, count, HEADERS_V2_BUDGET)?
    } else {
        store.load_encoded_signed_headers(q.start_height, count, HEADERS_V2_BUDGET)?
    };
    if headers.is_empty() {
        return Ok(None);
    }
    let proof = prove(q.start_height + headers.len() as u64 - 1)?;
    let frame = if q.headers_only {
        EncodedResponse::bare_headers_v2(q.start_height, q.end_height, &headers, &proof)
    } else {
        EncodedResponse::headers_v2(q.start_height, q.end_height, &headers, &proof)
    };
    Ok(frame.ok())
}

/// Consecutive headers from `start` up to `last`, read [`V2_READ_CHUNK`] at
/// a time (so a range of huge headers stops at [`HEADERS_V2_BUDGET`]
/// without loading the whole range first) until the loader has no more or
/// the budget is spent; at least one header when there is one.
fn read_budgeted<T>(
    mut load: impl FnMut(u64, u64) -> Result<Vec<T>, StoreError>,
    size: impl Fn(&T) -> usize,
    start: u64,
    last: u64,
) -> Result<Vec<T>, StoreError> {
    let mut headers = Vec::new();
    let mut bytes = 0usize;
    let mut next = start;
    while next <= last {
        let chunk = load(next, (last - next + 1).min(V2_READ_CHUNK))?;
        if chunk.is_empty() {
            break;
        }
        for header in chunk {
            bytes += size(&header);
            if bytes > HEADERS_V2_BUDGET && !headers.is_empty() {
                return Ok(headers);
            }
            next += 1;
            headers.push(header);
        }
    }
    Ok(headers)
}

/// Answers `request` (rate limiting is done by the caller).
pub fn answer(store: &Store, request: &Request) -> Response {
    let result = match request {
        Request::GetHeaders(q) => return answer_get_headers(&StoreSource(store), q),
        Request::GetHeadersV2(q) => headers_v2(store, q),
        Request::GetHeaderChain(q) => header_chain(store, q),
        Request::GetBlocks(q) => blocks(store, q),
        Request::GetSnapshotManifest(q) => match store.snapshot_height() {
            Some(h) if h == q.snapshot_height => {
                store.snapshot_manifest(h).map(Response::SnapshotManifest)
            }
            _ => return error(ErrorCode::NotFound, "no snapshot at that height"),
        },
        Request::GetSnapshot(q) => snapshot(store, q),
        Request::GetSkipChain(q) => skip_chain(store, q),
        Request::GetValidatorSet(q) => match store.validator_set_at(q.height) {
            Ok(Some(validator_set)) if q.height <= store.header_height() => {
                Ok(Response::ValidatorSet(ValidatorSetResponse {
                    height: q.height,
                    validator_set,
                }))
            }
            Ok(_) => return error(ErrorCode::NotFound, "no header at that height"),
            Err(e) => Err(e),
        },
    };
    result.unwrap_or_else(|e| error(ErrorCode::Internal, &format!("store: {e}")))
}

fn error(code: ErrorCode, message: &str) -> Response {
    // At most the wire's limit, cut at a character boundary (`truncate`
    // panics inside a multi-byte character).
    let mut end = message
        .len()
        .min(headway_wire::limits::MAX_ERROR_MESSAGE_LEN);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let message = message[..end].to_string();
    Response::Error(ErrorResponse {
        code,
        message,
        retry_after_ms: 0,
    })
}

fn headers_v2(store: &Store, q: &GetHeadersV2) -> Result<Response, StoreError> {
    if q.end_height > store.header_height() {
        return Ok(error(
            ErrorCode::NotFound,
            "end_height is above this node's header height",
        ));
    }
    let ours = store.history_root(q.end_height)?;
    if ours != q.commitment {
        return Ok(Response::HeadersV2(HeadersV2Response {
            start_height: q.start_height,
            end_height: q.end_height,
            result: HeadersV2Result::Commitment(ours),
        }));
    }
    let last = q
        .start_height
        .saturating_add(u64::from(q.count) - 1)
        .min(q.end_height);
    let (result, count) = if q.headers_only {
        let headers = read_budgeted(
            |from, n| store.load_bare_headers(from, n),
            BareHeader::encoded_len_bound,
            q.start_height,
            last,
        )?;
        let count = headers.len();
        // Compact when asked and the range has a compact form (a stored
        // range always has, unless it has over 256 proposers).
        let compact = q
            .compact
            .then(|| CompactHeaders::from_bare(&headers))
            .flatten();
        let result: ResultFn = match compact {
            Some(compact) => Box::new(move |proof| HeadersV2Result::CompactHeaders {
                headers: Box::new(compact),
                proof,
            }),
            None => Box::new(move |proof| HeadersV2Result::BareHeaders { headers, proof }),
        };
        (result, count)
    } else {
        let headers = read_budgeted(
            |from, n| store.load_signed_headers(from, n),
            SignedHeader::encoded_len_bound,
            q.start_height,
            last,
        )?;
        let count = headers.len();
        let result: ResultFn = Box::new(move |proof| HeadersV2Result::Headers { headers, proof });
        (result, count)
    };
    if count == 0 {
        return Ok(error(ErrorCode::NotFound, "no headers from start_height"));
    }
    let last = q.start_height + count as u64 - 1;
    let proof = match q.proof_kind {
        ProofKind::LastLeaf => store.prove_header(last, q.end_height)?,
        ProofKind::Range => store.prove_header_range(q.start_height, last, q.end_height)?,
    };
    Ok(Response::HeadersV2(HeadersV2Response {
        start_height: q.start_height,
        end_height: q.end_height,
        result: result(mmr_proof(&proof)),
    }))
}

/// Builds a v2 result around its proof (made once the header count is known).
type ResultFn = Box<dyn FnOnce(MmrProof) -> HeadersV2Result>;

/// The wire form of an MMR proof.
pub fn mmr_proof(proof: &headway_mmr::Proof) -> MmrProof {
    MmrProof {
        hashes: proof
            .hashes()
            .iter()
            .map(|h| headway_wire::Hash(*h))
            .collect(),
    }
}

/// Whether more than 1/3 of `set`'s power signed `commit` (by address; the
/// requester checks the signatures).
fn trusts(
    set: &std::collections::HashMap<headway_wire::Address, u64>,
    total: u64,
    commit: &headway_wire::Commit,
) -> bool {
    let signed: u64 = commit
        .signatures
        .iter()
        .filter_map(|s| set.get(&s.validator_address))
        .sum();
    u128::from(signed) * 3 > u128::from(total)
}

fn skip_chain(store: &Store, q: &GetSkipChain) -> Result<Response, StoreError> {
    if q.target_height > store.header_height() {
        return Ok(error(
            ErrorCode::NotFound,
            "target_height is above this node's header height",
        ));
    }
    if store.bare_height() > q.trusted_height {
        // Hops need commits; headers-only sync stored these without.
        return Ok(error(
            ErrorCode::NotFound,
            "headers above trusted_height are stored without commits",
        ));
    }
    let Some(mut set) = store.validator_set_at(q.trusted_height)? else {
        return Ok(error(
            ErrorCode::NotFound,
            "no validator set at trusted_height",
        ));
    };
    let mut height = q.trusted_height;
    let mut hops = Vec::new();
    while height < q.target_height {
        if hops.len() >= MAX_SKIP_HOPS {
            return Ok(error(
                ErrorCode::NotFound,
                "more hops than a skip chain may carry",
            ));
        }
        let powers: std::collections::HashMap<_, _> = set
            .validators
            .iter()
            .map(|v| (headway_chain::address_of(&v.pub_key), v.voting_power))
            .collect();
        let total = set.total_voting_power();
        let reaches = |h: u64| -> Result<bool, StoreError> {
            Ok(store
                .load_commit(h)?
                .is_some_and(|c| trusts(&powers, total, &c)))
        };
        // The farthest header the current set still vouches for; the next
        // header is always reachable (through next_validators_hash).
        let next = if reaches(q.target_height)? {
            q.target_height
        } else {
            let (mut lo, mut hi) = (height + 1, q.target_height - 1);
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                if reaches(mid)? {
                    lo = mid
                } else {
                    hi = mid - 1
                }
            }
            lo
        };
        let Some(mut hop) = store.load_signed_header(next)? else {
            return Ok(error(ErrorCode::NotFound, "missing header"));
        };
        let Some(next_set) = store.validator_set_at(next)? else {
            return Ok(error(ErrorCode::NotFound, "missing validator set"));
        };
        hop.validator_set = Some(next_set.clone());
        hops.push(hop);
        set = next_set;
        height = next;
    }
    Ok(Response::SkipChain(SkipChainResponse {
        trusted_height: q.trusted_height,
        target_height: q.target_height,
        hops,
    }))
}

fn header_chain(store: &Store, q: &GetHeaderChain) -> Result<Response, StoreError> {
    if q.end_height > store.header_height() {
        return Ok(error(
            ErrorCode::NotFound,
            "end_height is above this node's header height",
        ));
    }
    let commitment = store.history_root(q.end_height)?;
    let mut last_common = None;
    for hash in &q.locator {
        if let Some(height) = store.height_of(hash)?
            && height <= q.end_height
        {
            last_common = store.load_header(height)?;
            break;
        }
    }
    let proof = match &last_common {
        Some(h) => mmr_proof(&store.prove_header(h.height, q.end_height)?),
        None => MmrProof::default(),
    };
    Ok(Response::HeaderChain(HeaderChainResponse {
        last_common,
        end_height: q.end_height,
        commitment,
        proof,
    }))
}

/// Bytes of blocks one `BlocksResponse` carries, about (half the frame
/// limit, for the estimate's slack); the first block is sent whatever its
/// size, so that a large block is never unservable behind the budget.
const BLOCKS_BUDGET: usize = headway_wire::limits::MAX_BLOCKS_RESPONSE_FRAME / 2;

/// The blocks asked for that the store has, in order, loaded one at a time
/// until [`BLOCKS_BUDGET`] is spent (at least one when there is one).
fn blocks(store: &Store, q: &GetBlocks) -> Result<Response, StoreError> {
    blocks_within(store, q, BLOCKS_BUDGET)
}

/// [`blocks`] within `budget` bytes (about).
fn blocks_within(store: &Store, q: &GetBlocks, budget: usize) -> Result<Response, StoreError> {
    let heights: Box<dyn Iterator<Item = Result<Option<u64>, StoreError>>> = match q {
        GetBlocks::ByRange {
            start_height,
            count,
        } => Box::new(
            (*start_height..start_height.saturating_add(u64::from(*count))).map(|h| Ok(Some(h))),
        ),
        GetBlocks::ByHash(hashes) => Box::new(hashes.iter().map(|hash| store.height_of(hash))),
    };
    let mut blocks = Vec::new();
    let mut size = 0usize;
    for height in heights {
        let Some(block) = height?.map(|h| store.load_block(h)).transpose()?.flatten() else {
            continue;
        };
        let approx = block
            .txs
            .iter()
            .flat_map(|t| &t.writes)
            .map(|w| w.key.len() + w.value.as_ref().map_or(0, Vec::len) + 8)
            .sum::<usize>()
            + 512;
        if !blocks.is_empty() && size + approx > budget {
            break;
        }
        size += approx;
        blocks.push(block);
    }
    Ok(Response::Blocks(BlocksResponse { blocks }))
}

fn snapshot(store: &Store, q: &GetSnapshot) -> Result<Response, StoreError> {
    if store.snapshot_height() != Some(q.snapshot_height) {
        return Ok(error(ErrorCode::NotFound, "no snapshot at that height"));
    }
    let data: SnapshotData = store.read_snapshot_chunk(
        q.snapshot_height,
        q.prefix,
        &q.start_key,
        SNAPSHOT_CHUNK_BUDGET,
    )?;
    Ok(Response::SnapshotData(data))
}

#[cfg(test)]
mod tests {
    use headway_wire::{GetHeaders, GetHeadersV2, GetSkipChain, GetValidatorSet, Hash, ProofKind};

    use super::*;

    fn v2(count: u32, headers_only: bool) -> Request {
        Request::GetHeadersV2(GetHeadersV2 {
            start_height: 1,
            count,
            end_height: 5000,
            commitment: Hash::ZERO,
            proof_kind: ProofKind::LastLeaf,
            headers_only,
            compact: false,
        })
    }

    #[test]
    fn headers_only_ranges_cost_what_their_bytes_do() {
        let batch = Request::GetHeaders(GetHeaders {
            start_height: 1,
            count: 50,
        });
        assert_eq!(rate_weight(&batch), Some(6));
        assert_eq!(rate_weight(&v2(250, false)), Some(26));
        assert_eq!(rate_weight(&v2(1000, false)), Some(101));
        // A sixth per header: 267 bytes against 1 750.
        assert_eq!(rate_weight(&v2(1000, true)), Some(17));
        assert_eq!(rate_weight(&v2(1, true)), Some(1));
        let skip = Request::GetSkipChain(GetSkipChain {
            trusted_height: 1,
            target_height: 9000,
        });
        assert_eq!(rate_weight(&skip), Some(6));
        let set = Request::GetValidatorSet(GetValidatorSet { height: 3 });
        assert_eq!(rate_weight(&set), None);
    }

    /// Blocks are served in order from the first one the store has, as many
    /// as the byte budget holds but always the first: a block larger than
    /// the budget is never left unservable (it was: everything was loaded,
    /// then blocks past the budget dropped, the first one too).
    #[test]
    fn blocks_are_served_in_order_within_the_budget_and_at_least_one() {
        use headway_chain::HeaderExt as _;
        let mut generator =
            headway_chain::ChainGenerator::new(headway_chain::GeneratorConfig::small(3)).unwrap();
        let made: Vec<_> = generator.by_ref().take(12).collect();
        let store = Store::open_temporary(headway_store::StoreConfig::new()).unwrap();
        let headers: Vec<_> = made.iter().map(|b| b.signed_header.clone()).collect();
        store.save_headers(&headers).unwrap();
        // Bodies for 1..=10 only.
        for b in &made[..10] {
            store.save_block(&b.block).unwrap();
        }
        let heights = |budget: usize, q: &GetBlocks| -> Vec<u64> {
            let Response::Blocks(r) = blocks_within(&store, q, budget).unwrap() else {
                panic!("not a blocks response");
            };
            r.blocks.iter().map(|b| b.header.height).collect()
        };
        let range = GetBlocks::ByRange {
            start_height: 3,
            count: 128,
        };
        assert_eq!(heights(usize::MAX, &range), (3..=10).collect::<Vec<_>>());
        assert_eq!(
            heights(0, &range),
            vec![3],
            "the first block, whatever its size"
        );
        // Every block here is estimated at 512 bytes and up.
        let two = heights(2 * 512 + 100, &range);
        assert!((1..=2).contains(&two.len()) && two[0] == 3, "{two:?}");
        let by_hash = GetBlocks::ByHash(vec![
            made[11].signed_header.header.hash(),
            made[6].signed_header.header.hash(),
            Hash([9; 32]),
            made[4].signed_header.header.hash(),
        ]);
        assert_eq!(
            heights(usize::MAX, &by_hash),
            vec![7, 5],
            "known bodies, asked order"
        );
        assert_eq!(heights(0, &by_hash), vec![7]);
    }

    /// An error message is cut to the wire's limit at a character
    /// boundary, wherever the limit falls in a multi-byte character.
    #[test]
    fn long_error_messages_are_cut_between_characters() {
        let limit = headway_wire::limits::MAX_ERROR_MESSAGE_LEN;
        for pad in 0..4 {
            let text = format!("{}{}", "x".repeat(limit - pad), "‖".repeat(8));
            let Response::Error(e) = error(ErrorCode::Internal, &text) else {
                panic!("not an error response");
            };
            assert!(e.message.len() <= limit && e.message.len() > limit - 3);
            assert!(text.starts_with(&e.message));
        }
        let Response::Error(e) = error(ErrorCode::NotFound, "short") else {
            panic!("not an error response");
        };
        assert_eq!(e.message, "short");
    }
}
