//! Checkpoint sync by bisection (seed 001): from a trusted header and its
//! validator set, verify a header far ahead through as few intermediate
//! headers as validator-set changes force.
//!
//! Each round starts from the current anchor. If the target can be trusted
//! from it (more than 1/3 of the anchor's set signed it), the target is
//! verified and the search ends. Otherwise a binary search over the heights in
//! between finds the highest header the anchor's set still vouches for, which
//! becomes the next anchor: one round per validator-set change that breaks the
//! 1/3 overlap. The search compares claimed voting power only (cheap); the
//! signatures of the chosen header are then verified in full. The header
//! right after an anchor is always reachable through `next_validators_hash`,
//! which carries the search across an abrupt replacement of the whole set.

use std::collections::HashMap;

use headway_wire::{SignedHeader, ValidatorSet};

use crate::VerifyError;
use crate::batch::TrustedState;
use crate::verify::{
    CommitCheck, TrustThreshold, bind_commit, check_header, check_validator_set, claimed_power,
};

/// Most headers and validator sets one bisection may fetch from its source.
pub const MAX_BISECTION_FETCHES: usize = 4096;

/// Where bisection gets signed headers and validator sets: implemented by the
/// caller (a network client, a store, a test fixture). Synchronous, so an
/// async network layer adapts it by blocking or by buffering responses.
pub trait HeaderSource {
    /// The source's own failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The signed header at `height` (its attached validator set is ignored).
    fn signed_header(&mut self, height: u64) -> Result<SignedHeader, Self::Error>;

    /// The validator set of the header at `height` (checked against its
    /// `validators_hash`).
    fn validator_set(&mut self, height: u64) -> Result<ValidatorSet, Self::Error>;
}

/// What a successful bisection established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BisectionVerified {
    /// The verified target: the new trusted state.
    pub trusted: TrustedState,
    /// Heights verified on the way, ascending, ending with the target: one per
    /// round. Every height but the last is an intermediate the validator-set
    /// changes forced.
    pub verified_heights: Vec<u64>,
    /// Signed headers and validator sets fetched from the source (probes included).
    pub fetches: usize,
    /// Ed25519 signatures verified.
    pub signatures_verified: usize,
}

impl BisectionVerified {
    /// The intermediate heights that had to be verified before the target.
    pub fn intermediate_heights(&self) -> &[u64] {
        self.verified_heights
            .split_last()
            .map_or(&[], |(_, rest)| rest)
    }
}

/// Why bisection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BisectionError<E: std::error::Error + 'static> {
    /// The source failed to deliver a header or validator set.
    #[error("height {height}: header source failed")]
    Source {
        /// The height asked for.
        height: u64,
        /// The source's error.
        #[source]
        source: E,
    },
    /// Data from the source broke a verification rule.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// More than [`MAX_BISECTION_FETCHES`] fetches were needed.
    #[error("height {height}: bisection needed more than {max} fetches")]
    TooManyFetches {
        /// The target height.
        height: u64,
        /// The limit.
        max: usize,
    },
}

/// Verifies the header at `target_height` from `trusted` with the default
/// trust level of 1/3, fetching what it needs from `source`.
pub fn verify_to_target<S: HeaderSource>(
    trusted: &TrustedState,
    target_height: u64,
    source: &mut S,
) -> Result<BisectionVerified, BisectionError<S::Error>> {
    verify_to_target_with(trusted, target_height, source, TrustThreshold::ONE_THIRD)
}

/// [`verify_to_target`] with a chosen trust threshold.
pub fn verify_to_target_with<S: HeaderSource>(
    trusted: &TrustedState,
    target_height: u64,
    source: &mut S,
    trust: TrustThreshold,
) -> Result<BisectionVerified, BisectionError<S::Error>> {
    if target_height <= trusted.height() {
        return Err(VerifyError::NotAfterTrusted {
            height: target_height,
            trusted_height: trusted.height(),
        }
        .into());
    }
    let mut run = Run {
        source,
        target_height,
        headers: HashMap::new(),
        fetches: 0,
    };
    let mut anchor = trusted.clone();
    let mut verified_heights = Vec::new();
    let mut signatures_verified = 0usize;
    while anchor.height() < target_height {
        let next = run.next_hop(&anchor, trust)?;
        let (state, verified) = run.verify_hop(&anchor, next, trust)?;
        signatures_verified = signatures_verified.saturating_add(verified);
        verified_heights.push(next);
        anchor = state;
        // Probes below the new anchor are never needed again.
        run.headers.retain(|&h, _| h > next);
    }
    Ok(BisectionVerified {
        trusted: anchor,
        verified_heights,
        fetches: run.fetches,
        signatures_verified,
    })
}

// ------------------------------------------------------------------ internals

struct Run<'s, S> {
    source: &'s mut S,
    target_height: u64,
    /// Signed headers fetched and not yet below the anchor.
    headers: HashMap<u64, SignedHeader>,
    fetches: usize,
}

impl<S: HeaderSource> Run<'_, S> {
    /// The highest height in `(anchor, target]` that the anchor can reach,
    /// by binary search (overlap shrinks as heights grow).
    fn next_hop(
        &mut self,
        anchor: &TrustedState,
        trust: TrustThreshold,
    ) -> Result<u64, BisectionError<S::Error>> {
        let adjacent = anchor.height().saturating_add(1);
        if self.reachable(anchor, self.target_height, trust)? {
            return Ok(self.target_height);
        }
        // Invariant: `lo` is reachable (or adjacent), `hi` is not.
        let (mut lo, mut hi) = (adjacent, self.target_height);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.reachable(anchor, mid, trust)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Whether the anchor's set claims more than `trust` of its power in the
    /// commit at `height` (no signature checked), or `height` is adjacent.
    fn reachable(
        &mut self,
        anchor: &TrustedState,
        height: u64,
        trust: TrustThreshold,
    ) -> Result<bool, BisectionError<S::Error>> {
        if height == anchor.height().saturating_add(1) {
            return Ok(true);
        }
        let signed = self.fetch(height)?;
        let set = anchor.validator_set();
        Ok(trust.is_exceeded(claimed_power(&signed.commit, set), set.total_voting_power()))
    }

    /// Verifies the header at `height` from `anchor` and returns it as the new anchor.
    fn verify_hop(
        &mut self,
        anchor: &TrustedState,
        height: u64,
        trust: TrustThreshold,
    ) -> Result<(TrustedState, usize), BisectionError<S::Error>> {
        let signed = self.fetch(height)?.clone();
        let own = self.fetch_set(height)?;
        let header = &signed.header;
        if header.height != height {
            return Err(VerifyError::NonSequentialHeight {
                height: header.height,
                expected: height,
            }
            .into());
        }
        check_header(anchor.chain_id(), header)?;
        let hash = bind_commit(header, &signed.commit)?;
        check_validator_set(header, &own)?;
        let mut check = CommitCheck::new(header, &signed.commit);
        if height == anchor.height().saturating_add(1) {
            let actual = header.last_block_id.map(|id| id.hash);
            if actual != Some(anchor.header_hash()) {
                return Err(VerifyError::LinkageBroken {
                    height,
                    expected: anchor.header_hash(),
                    actual,
                }
                .into());
            }
            if header.validators_hash != anchor.header().next_validators_hash {
                return Err(VerifyError::ValidatorsHashDiscontinuity {
                    height,
                    expected: anchor.header().next_validators_hash,
                    actual: header.validators_hash,
                }
                .into());
            }
            check.tally_own(&own)?;
        } else {
            check.tally_trusting(anchor.validator_set(), &own, trust)?;
        }
        if header.time_ms <= anchor.header().time_ms {
            return Err(VerifyError::TimeNotIncreasing {
                height,
                time_ms: header.time_ms,
                previous_ms: anchor.header().time_ms,
            }
            .into());
        }
        let verified = check.signatures_verified;
        Ok((
            TrustedState::from_verified(signed.header, hash, own),
            verified,
        ))
    }

    fn count_fetch(&mut self) -> Result<(), BisectionError<S::Error>> {
        self.fetches = self.fetches.saturating_add(1);
        if self.fetches > MAX_BISECTION_FETCHES {
            return Err(BisectionError::TooManyFetches {
                height: self.target_height,
                max: MAX_BISECTION_FETCHES,
            });
        }
        Ok(())
    }

    fn fetch(&mut self, height: u64) -> Result<&SignedHeader, BisectionError<S::Error>> {
        if !self.headers.contains_key(&height) {
            self.count_fetch()?;
            let signed = self
                .source
                .signed_header(height)
                .map_err(|source| BisectionError::Source { height, source })?;
            self.headers.insert(height, signed);
        }
        self.headers
            .get(&height)
            .ok_or(BisectionError::Verify(VerifyError::NoTrustedPath {
                height,
            }))
    }

    fn fetch_set(&mut self, height: u64) -> Result<ValidatorSet, BisectionError<S::Error>> {
        self.count_fetch()?;
        self.source
            .validator_set(height)
            .map_err(|source| BisectionError::Source { height, source })
    }
}
