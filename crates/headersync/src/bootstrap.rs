//! Checkpoint bootstrap (seed 001): from one trusted checkpoint, jump to the
//! latest header peers can prove, verifying as few intermediate headers as
//! validator-set changes force (bisection in `headway-chain`), fetching them
//! over the network.

use std::{collections::HashMap, time::Duration};

use headway_chain::{
    BisectionVerified, HeaderExt, HeaderSource, TrustThreshold, TrustedState, verify_commit_full,
    verify_commit_trusting, verify_to_target,
};
use headway_net::{NetError, Network, PeerId};
use headway_wire::{
    ErrorCode, GetHeaders, GetSkipChain, GetValidatorSet, Hash, Request, Response, SignedHeader,
    ValidatorSet,
};
use tokio::runtime::Handle;

/// Where trust starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// The header at `height` has hash `hash`.
    HeaderHash {
        /// The height.
        height: u64,
        /// Its header hash.
        hash: Hash,
    },
    /// The validator set of the header at `height` has hash `validators_hash`.
    ValidatorSet {
        /// The height.
        height: u64,
        /// The hash of its validator set.
        validators_hash: Hash,
    },
}

impl Checkpoint {
    /// The checkpoint's height.
    pub fn height(&self) -> u64 {
        match self {
            Checkpoint::HeaderHash { height, .. } | Checkpoint::ValidatorSet { height, .. } => {
                *height
            }
        }
    }
}

/// Why bootstrap failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// No peer could deliver what was asked.
    #[error("no peer delivered {what} at height {height}")]
    Unavailable {
        /// What.
        what: &'static str,
        /// The height.
        height: u64,
    },
    /// The checkpoint's header does not match the configured hash or set.
    #[error("checkpoint at height {height}: {reason}")]
    Checkpoint {
        /// The height.
        height: u64,
        /// What did not match.
        reason: String,
    },
    /// Verification from the checkpoint to the target failed.
    #[error("bisection to height {target} failed: {reason}")]
    Bisection {
        /// The target height.
        target: u64,
        /// Why.
        reason: String,
    },
}

/// A [`HeaderSource`] over the network: asks the given peers in turn.
pub struct NetHeaderSource {
    net: Network,
    peers: Vec<PeerId>,
    handle: Handle,
    timeout: Duration,
    /// Signed headers fetched, kept so the caller can store the target's.
    fetched: HashMap<u64, SignedHeader>,
    /// Which peer to ask first next time: requests rotate over the peers so
    /// no single peer's rate limit paces the bisection.
    next: std::cell::Cell<usize>,
    /// Answers of [`NetHeaderSource::prefetch`], each used once (unverified,
    /// like any answer; a use that fails falls back to asking again).
    prefetched: Prefetched,
}

/// What one prefetch round brought back.
#[derive(Default)]
struct Prefetched {
    headers: HashMap<u64, SignedHeader>,
    sets: HashMap<u64, ValidatorSet>,
    /// `(trusted_height, target_height, hops)`.
    skip: Option<(u64, u64, Vec<SignedHeader>)>,
}

/// Times one peer is asked again after `BUSY`/`RATE_LIMITED` before the next peer.
pub const MAX_BUSY_RETRIES: usize = 20;

/// Time one peer may keep a request waiting with `BUSY`/`RATE_LIMITED`
/// answers, in all, before the next peer is asked: a peer asking to be
/// retried in 5 s, twenty times, held each bootstrap request 100 s.
pub const MAX_BUSY_WAIT: Duration = Duration::from_secs(3);

/// Most fetched headers a [`NetHeaderSource`] keeps.
pub const MAX_KEPT_HEADERS: usize = 4096;

impl NetHeaderSource {
    /// A source asking `peers` (in order, falling over to the next) through `net`.
    pub fn new(net: Network, peers: Vec<PeerId>, handle: Handle, timeout: Duration) -> Self {
        NetHeaderSource {
            net,
            peers,
            handle,
            timeout,
            fetched: HashMap::new(),
            next: std::cell::Cell::new(0),
            prefetched: Prefetched::default(),
        }
    }

    /// Sends `requests` to one peer at once (one round trip instead of one
    /// each) and keeps the answers for the calls that would ask for them:
    /// [`HeaderSource::signed_header`], [`HeaderSource::validator_set`] and
    /// [`skip_chain`]. Nothing is trusted here; each answer goes through the
    /// same checks as one fetched on demand, and is used once.
    pub fn prefetch(&mut self, requests: &[Request]) {
        let n = self.peers.len();
        let Some(&peer) = self.peers.get(self.next.get() % n.max(1)) else {
            return;
        };
        let tasks: Vec<_> = requests
            .iter()
            .cloned()
            .map(|request| {
                let (net, timeout) = (self.net.clone(), self.timeout);
                self.handle
                    .spawn(async move { net.request_with_timeout(peer, &request, timeout).await })
            })
            .collect();
        for task in tasks {
            match self.handle.block_on(task) {
                Ok(Ok(Response::Headers(r))) => {
                    if let [h] = r.headers.as_slice() {
                        self.prefetched.headers.insert(h.header.height, h.clone());
                    }
                }
                Ok(Ok(Response::ValidatorSet(r))) => {
                    self.prefetched.sets.insert(r.height, r.validator_set);
                }
                Ok(Ok(Response::SkipChain(r))) => {
                    self.prefetched.skip = Some((r.trusted_height, r.target_height, r.hops));
                }
                _ => {}
            }
        }
    }

    /// The signed header fetched at `height`, if any.
    pub fn take_fetched(&mut self, height: u64) -> Option<SignedHeader> {
        self.fetched.remove(&height)
    }

    fn ask(&self, request: &Request) -> Vec<Result<Response, NetError>> {
        let mut answers = Vec::new();
        let first = self.next.get();
        self.next.set(first.wrapping_add(1));
        let n = self.peers.len().max(1);
        for peer in (0..self.peers.len()).map(|i| &self.peers[(first + i) % n]) {
            // A peer that says BUSY or RATE_LIMITED is honest about its pace:
            // wait as it asks and try again, a bounded number of times and
            // for a bounded time in all.
            let mut waited = Duration::ZERO;
            for _ in 0..MAX_BUSY_RETRIES {
                let answer = self.handle.block_on(self.net.request_with_timeout(
                    *peer,
                    request,
                    self.timeout,
                ));
                let retry = match &answer {
                    Ok(Response::Error(e))
                        if matches!(e.code, ErrorCode::Busy | ErrorCode::RateLimited) =>
                    {
                        Some(Duration::from_millis(
                            u64::from(e.retry_after_ms).clamp(10, 5_000),
                        ))
                    }
                    _ => None,
                };
                let ok = matches!(
                    answer,
                    Ok(Response::Headers(_) | Response::ValidatorSet(_) | Response::SkipChain(_))
                );
                answers.push(answer);
                if ok {
                    return answers;
                }
                match retry {
                    Some(delay) if waited + delay <= MAX_BUSY_WAIT => {
                        waited += delay;
                        std::thread::sleep(delay);
                    }
                    _ => break,
                }
            }
        }
        answers
    }
}

impl HeaderSource for NetHeaderSource {
    type Error = BootstrapError;

    fn signed_header(&mut self, height: u64) -> Result<SignedHeader, BootstrapError> {
        if let Some(h) = self.prefetched.headers.remove(&height) {
            if self.fetched.len() < MAX_KEPT_HEADERS {
                self.fetched.insert(height, h.clone());
            }
            return Ok(h);
        }
        let request = Request::GetHeaders(GetHeaders {
            start_height: height,
            count: 1,
        });
        for answer in self.ask(&request) {
            if let Ok(Response::Headers(r)) = answer
                && let Some(h) = r.headers.into_iter().next()
                && h.header.height == height
            {
                if self.fetched.len() < MAX_KEPT_HEADERS {
                    self.fetched.insert(height, h.clone());
                }
                return Ok(h);
            }
        }
        Err(BootstrapError::Unavailable {
            what: "signed header",
            height,
        })
    }

    fn validator_set(&mut self, height: u64) -> Result<ValidatorSet, BootstrapError> {
        if let Some(set) = self.prefetched.sets.remove(&height) {
            return Ok(set);
        }
        let request = Request::GetValidatorSet(GetValidatorSet { height });
        for answer in self.ask(&request) {
            if let Ok(Response::ValidatorSet(r)) = answer {
                return Ok(r.validator_set);
            }
        }
        Err(BootstrapError::Unavailable {
            what: "validator set",
            height,
        })
    }
}

/// Turns a configured checkpoint into a trusted state, fetching its header
/// and set from peers and checking them against the checkpoint.
pub fn resolve_checkpoint(
    source: &mut NetHeaderSource,
    checkpoint: Checkpoint,
) -> Result<TrustedState, BootstrapError> {
    let height = match checkpoint {
        Checkpoint::HeaderHash { height, .. } | Checkpoint::ValidatorSet { height, .. } => height,
    };
    let signed = source.signed_header(height)?;
    let set = source.validator_set(height)?;
    let bad = |reason: String| BootstrapError::Checkpoint { height, reason };
    match checkpoint {
        Checkpoint::HeaderHash { hash, .. } => {
            if signed.header.hash() != hash {
                return Err(bad(format!(
                    "header hash {} is not the configured {hash}",
                    signed.header.hash()
                )));
            }
        }
        Checkpoint::ValidatorSet {
            validators_hash, ..
        } => {
            if signed.header.validators_hash != validators_hash {
                return Err(bad(format!(
                    "validators_hash {} is not the configured {validators_hash}",
                    signed.header.validators_hash
                )));
            }
            // Trusting a set, not a header: the header needs +2/3 of that set.
            verify_commit_full(
                &signed.header.chain_id,
                &signed.header,
                &signed.commit,
                &set,
            )
            .map_err(|e| {
                bad(format!(
                    "commit does not verify against the configured set: {e}"
                ))
            })?;
        }
    }
    TrustedState::new(signed.header, set).map_err(|e| bad(e.to_string()))
}

/// Verifies the header at `target` from `trusted` by bisection; returns the
/// result and the target's signed header (to store).
pub fn bisect(
    source: &mut NetHeaderSource,
    trusted: &TrustedState,
    target: u64,
) -> Result<(BisectionVerified, SignedHeader), BootstrapError> {
    let verified =
        verify_to_target(trusted, target, source).map_err(|e| BootstrapError::Bisection {
            target,
            reason: e.to_string(),
        })?;
    let signed = match source.take_fetched(target) {
        Some(s) => s,
        None => source.signed_header(target)?,
    };
    if signed.header.hash() != verified.trusted.header_hash() {
        return Err(BootstrapError::Bisection {
            target,
            reason: "peers served two different headers for the target".into(),
        });
    }
    Ok((verified, signed))
}

/// What a one-round bootstrap established.
#[derive(Debug, Clone)]
pub struct SkipVerified {
    /// The verified target.
    pub trusted: TrustedState,
    /// The target's signed header (to store).
    pub signed: SignedHeader,
    /// The heights verified, one per hop, ending with the target.
    pub heights: Vec<u64>,
}

/// Bootstraps in one round trip (seed 001, "batch the rounds together"): asks
/// a peer for the hops from `trusted` to `target` and verifies each from the
/// one before — an adjacent hop through `next_validators_hash` and +2/3 of its
/// own set, a distant one by more than 1/3 of the trusted set and +2/3 of its
/// own. Nothing from the peer is trusted before it verifies.
pub fn skip_chain(
    source: &mut NetHeaderSource,
    trusted: &TrustedState,
    target: u64,
) -> Result<SkipVerified, BootstrapError> {
    if let Some((from, to, hops)) = source.prefetched.skip.take()
        && from == trusted.height()
        && to == target
        && let Ok(verified) = verify_hops(trusted, hops, target)
    {
        return Ok(verified);
    }
    let request = Request::GetSkipChain(GetSkipChain {
        trusted_height: trusted.height(),
        target_height: target,
    });
    let hops = source
        .ask(&request)
        .into_iter()
        .find_map(|a| match a {
            Ok(Response::SkipChain(r)) => Some(r.hops),
            _ => None,
        })
        .ok_or(BootstrapError::Unavailable {
            what: "skip chain",
            height: target,
        })?;
    verify_hops(trusted, hops, target)
}

/// Verifies skip-chain hops from `trusted` to `target` (see [`skip_chain`]).
pub fn verify_hops(
    trusted: &TrustedState,
    hops: Vec<SignedHeader>,
    target: u64,
) -> Result<SkipVerified, BootstrapError> {
    let fail = |height: u64, reason: String| BootstrapError::Bisection {
        target,
        reason: format!("hop {height}: {reason}"),
    };
    let mut trust = trusted.clone();
    let mut heights = Vec::with_capacity(hops.len());
    let mut last = None;
    for hop in hops {
        let height = hop.header.height;
        let Some(set) = hop.validator_set.clone() else {
            return Err(fail(height, "no validator set attached".into()));
        };
        if height == trust.height() + 1 {
            if hop.header.last_block_id.map(|b| b.hash) != Some(trust.header_hash()) {
                return Err(fail(height, "does not link to the trusted header".into()));
            }
            if hop.header.validators_hash != trust.header().next_validators_hash {
                return Err(fail(
                    height,
                    "validators_hash is not the trusted next_validators_hash".into(),
                ));
            }
            verify_commit_full(trust.chain_id(), &hop.header, &hop.commit, &set)
                .map_err(|e| fail(height, e.to_string()))?;
        } else {
            verify_commit_trusting(
                trust.chain_id(),
                &hop.header,
                &hop.commit,
                trust.validator_set(),
                &set,
                TrustThreshold::ONE_THIRD,
            )
            .map_err(|e| fail(height, e.to_string()))?;
        }
        if hop.header.time_ms <= trust.header().time_ms {
            return Err(fail(height, "time does not increase".into()));
        }
        trust =
            TrustedState::new(hop.header.clone(), set).map_err(|e| fail(height, e.to_string()))?;
        heights.push(height);
        last = Some(hop);
    }
    match last {
        Some(signed) if trust.height() == target => Ok(SkipVerified {
            trusted: trust,
            signed,
            heights,
        }),
        _ => Err(BootstrapError::Bisection {
            target,
            reason: "the hops do not reach the target".into(),
        }),
    }
}
