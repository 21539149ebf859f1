//! A parallel header sync (v2) server for scripted peers: answers
//! `GetHeadersV2` with MMR-proven ranges and `GetValidatorSet` with the set
//! of a header, from a chain held in memory (`docs/protocol.md` §7).
//!
//! [`ChainServer`] computes correct answers independently of the node under
//! test: its own MMR over the chain's header hashes (`headway-chain`'s
//! history accumulator, leaf data = the 32-byte header hash) and the
//! validator sets carried forward from where headers attach them. The
//! scripts built on it ([`v2_serving`], [`v2_scripted`]) let a test delay,
//! withhold, refuse or corrupt any answer.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use headway_chain::{HeaderExt as _, HistoryAccumulator};
use headway_wire::{
    ErrorCode, ErrorResponse, GetHeaders, GetHeadersV2, GetValidatorSet, Hash, HeadersV2Response,
    HeadersV2Result, MmrProof, ProofKind, Request, Response, SignedHeader, ValidatorSet,
    ValidatorSetResponse, limits::MAX_HEADERS_PER_BATCH,
};

use crate::{
    chain::test_chain,
    peer::{Reply, RequestScript, slice, unsupported_response},
};

/// Headers a [`v2_serving`] peer returns per `GetHeadersV2` answer unless
/// told otherwise: a small byte budget, so that a chain of a few hundred
/// headers is downloaded as several ranges (the protocol lets a responder
/// return fewer headers than asked for).
pub const DEFAULT_V2_MAX_HEADERS: u32 = 50;

/// A chain held in memory with its history MMR and validator sets.
pub struct ChainServer {
    headers: Arc<Vec<SignedHeader>>,
    sets: Vec<ValidatorSet>,
    history: HistoryAccumulator,
}

impl std::fmt::Debug for ChainServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainServer")
            .field("len", &self.headers.len())
            .finish_non_exhaustive()
    }
}

impl ChainServer {
    /// A server of `headers` (index `h - 1` holds height `h`; the first
    /// header carries its validator set, like every genesis).
    ///
    /// # Panics
    ///
    /// When the first header has no validator set attached (a suite bug).
    pub fn new(headers: Arc<Vec<SignedHeader>>) -> ChainServer {
        let mut history = HistoryAccumulator::new();
        let mut sets: Vec<ValidatorSet> = Vec::with_capacity(headers.len());
        for signed in headers.iter() {
            // The MMR holds 2^63 leaves; a test chain never gets near.
            let _ = history.push(&signed.header.hash());
            let set = match (&signed.validator_set, sets.last()) {
                (Some(set), _) => set.clone(),
                (None, Some(previous)) => previous.clone(),
                (None, None) => panic!("the first header of a served chain carries no set"),
            };
            sets.push(set);
        }
        ChainServer {
            headers,
            sets,
            history,
        }
    }

    /// The server of the shared honest test chain, built once per process.
    pub fn honest() -> Arc<ChainServer> {
        static SERVER: OnceLock<Arc<ChainServer>> = OnceLock::new();
        SERVER
            .get_or_init(|| Arc::new(ChainServer::new(test_chain().headers())))
            .clone()
    }

    /// The served chain.
    pub fn headers(&self) -> Arc<Vec<SignedHeader>> {
        self.headers.clone()
    }

    /// Headers held.
    pub fn len(&self) -> u64 {
        self.headers.len() as u64
    }

    /// True when the chain is empty (never, for a server made by [`ChainServer::new`]).
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// `C(x)`: the MMR root over the hashes of headers `1..=x` (the
    /// `history_root` of header `x + 1`); `None` when `x` is above the chain.
    pub fn commitment(&self, x: u64) -> Option<Hash> {
        self.history.mmr().root_at(x).ok().map(Hash)
    }

    /// The validator set of the header at `height`.
    pub fn validator_set(&self, height: u64) -> Option<&ValidatorSet> {
        self.sets.get(usize::try_from(height.checked_sub(1)?).ok()?)
    }

    /// Inclusion proof of the header at `height` (leaf `height - 1`) in `C(x)`.
    pub fn prove_last_leaf(&self, height: u64, x: u64) -> Option<MmrProof> {
        let proof = self
            .history
            .mmr()
            .prove_inclusion(height.checked_sub(1)?, x)
            .ok()?;
        Some(headway_node::serve::mmr_proof(&proof))
    }

    /// Range proof of headers `first..=last` in `C(x)`.
    pub fn prove_range(&self, first: u64, last: u64, x: u64) -> Option<MmrProof> {
        let proof = self
            .history
            .mmr()
            .prove_range(first.checked_sub(1)?, last, x)
            .ok()?;
        Some(headway_node::serve::mmr_proof(&proof))
    }

    /// The correct answer to `q` for a peer that has headers up to `up_to`
    /// and returns at most `max_headers` per answer: `NOT_FOUND` when it does
    /// not have `end_height`, its own commitment when the requester's
    /// differs, otherwise the headers from `start_height` with the proof asked for.
    pub fn headers_v2(&self, q: &GetHeadersV2, up_to: u64, max_headers: u32) -> Response {
        if q.end_height > up_to.min(self.len()) {
            return error(
                ErrorCode::NotFound,
                "end_height is above this peer's headers",
            );
        }
        let Some(ours) = self.commitment(q.end_height) else {
            return error(ErrorCode::Internal, "no commitment");
        };
        if ours != q.commitment {
            return Response::HeadersV2(HeadersV2Response {
                start_height: q.start_height,
                end_height: q.end_height,
                result: HeadersV2Result::Commitment(ours),
            });
        }
        let last = q
            .start_height
            .saturating_add(u64::from(q.count.min(max_headers.max(1))))
            .saturating_sub(1)
            .min(q.end_height);
        if q.start_height == 0 || last < q.start_height {
            return error(ErrorCode::BadRequest, "empty range");
        }
        let headers = self.headers[index(q.start_height)..=index(last)].to_vec();
        let proof = match q.proof_kind {
            ProofKind::LastLeaf => self.prove_last_leaf(last, q.end_height),
            ProofKind::Range => self.prove_range(q.start_height, last, q.end_height),
        };
        let Some(proof) = proof else {
            return error(ErrorCode::Internal, "cannot prove the range");
        };
        Response::HeadersV2(HeadersV2Response {
            start_height: q.start_height,
            end_height: q.end_height,
            // A headers-only request gets the same headers without commits,
            // compact when it asks for them so.
            result: if q.headers_only {
                let headers: Vec<_> = headers.iter().map(headway_wire::BareHeader::from).collect();
                match headway_wire::CompactHeaders::from_bare(&headers) {
                    Some(compact) if q.compact => HeadersV2Result::CompactHeaders {
                        headers: Box::new(compact),
                        proof,
                    },
                    _ => HeadersV2Result::BareHeaders { headers, proof },
                }
            } else {
                HeadersV2Result::Headers { headers, proof }
            },
        })
    }

    /// The correct answer to `GetValidatorSet` for a peer that has headers
    /// up to `up_to` (`NOT_FOUND` above).
    pub fn validator_set_response(&self, q: &GetValidatorSet, up_to: u64) -> Response {
        match self.validator_set(q.height) {
            Some(set) if q.height <= up_to => Response::ValidatorSet(ValidatorSetResponse {
                height: q.height,
                validator_set: set.clone(),
            }),
            _ => error(ErrorCode::NotFound, "no header at that height"),
        }
    }

    /// The correct answer to `GetHeaders` (up to 50 headers from the start, up to `up_to`).
    pub fn get_headers(&self, q: &GetHeaders, up_to: u64) -> Response {
        let q = GetHeaders {
            start_height: q.start_height,
            count: q.count.min(MAX_HEADERS_PER_BATCH),
        };
        Response::Headers(headway_wire::HeadersResponse {
            start_height: q.start_height,
            headers: slice(&self.headers, &q, up_to),
        })
    }
}

/// A [`RequestScript`] for the v2 requests: `GetValidatorSet` answered
/// correctly, `GetHeadersV2` answered by `decide` from the request, the serve
/// height and the correct answer (at most `max_headers` headers), anything
/// else `UNSUPPORTED`.
pub fn v2_scripted(
    server: Arc<ChainServer>,
    max_headers: u32,
    decide: impl Fn(&GetHeadersV2, u64, Response) -> Reply + Send + Sync + 'static,
) -> RequestScript {
    Arc::new(move |request: &Request, up_to: u64| match request {
        Request::GetHeadersV2(q) => decide(q, up_to, server.headers_v2(q, up_to, max_headers)),
        Request::GetValidatorSet(q) => {
            Reply::Response(Box::new(server.validator_set_response(q, up_to)))
        }
        _ => Reply::Response(Box::new(unsupported_response())),
    })
}

/// An honest v2 server: correct answers of at most `max_headers` headers,
/// each after `delay` (none when zero).
pub fn v2_serving(server: Arc<ChainServer>, max_headers: u32, delay: Duration) -> RequestScript {
    v2_scripted(server, max_headers, move |_, _, response| {
        let reply = Reply::Response(Box::new(response));
        if delay.is_zero() {
            reply
        } else {
            Reply::Delayed(delay, Box::new(reply))
        }
    })
}

/// A peer that serves validator sets but not v2 ranges: `GetHeadersV2` is
/// answered `UNSUPPORTED`.
pub fn v2_unsupported(server: Arc<ChainServer>) -> RequestScript {
    v2_scripted(server, 1, |_, _, _| {
        Reply::Response(Box::new(unsupported_response()))
    })
}

/// An `ErrorResponse` without retry advice.
pub fn error(code: ErrorCode, message: &str) -> Response {
    Response::Error(ErrorResponse {
        code,
        message: message.into(),
        retry_after_ms: 0,
    })
}

fn index(height: u64) -> usize {
    usize::try_from(height.saturating_sub(1)).unwrap_or(usize::MAX)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the assertion"
)]
mod tests {
    //! Self-checks: the server's answers verify with the node's own range
    //! verifier, so a ban in a test is the node's verdict on the corruption
    //! alone.

    use headway_headersync::v2::verify_range;

    use super::*;

    #[test]
    fn honest_ranges_prove_into_the_tip_history_root() {
        let server = ChainServer::honest();
        let chain = test_chain();
        let x = 399;
        let commitment = chain.signed_header(x + 1).header.history_root;
        assert_eq!(server.commitment(x), Some(commitment));
        for kind in [ProofKind::LastLeaf, ProofKind::Range] {
            let q = GetHeadersV2 {
                start_height: 2,
                count: 1000,
                end_height: x,
                commitment,
                proof_kind: kind,
                headers_only: false,
                compact: false,
            };
            let Response::HeadersV2(r) = server.headers_v2(&q, 400, 120) else {
                panic!("no headers");
            };
            let HeadersV2Result::Headers { headers, proof } = r.result else {
                panic!("commitment");
            };
            assert_eq!(headers.len(), 120);
            let chain_id = &headers[0].header.chain_id.clone();
            verify_range(chain_id, &commitment, x, 2, &headers, &proof, kind).unwrap();
        }
    }

    #[test]
    fn validator_sets_are_those_of_the_chain() {
        let server = ChainServer::honest();
        for h in [1, 2, 25, 26, 229, 230, 231, 400] {
            assert_eq!(
                server.validator_set(h),
                Some(test_chain().validator_set(h)),
                "{h}"
            );
        }
    }
}
