//! The serving side of header sync: rate-limited answers to `GetHeaders`.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    time::{Duration, Instant},
};

use headway_wire::{ErrorCode, ErrorResponse, GetHeaders, HeadersResponse, Response, SignedHeader};

/// Default full batches' worth of headers a peer may ask for per window
/// (R2.7), over `GetHeaders` and `GetHeadersV2` together: 500 batches of 50
/// is 25 000 headers/s per peer (about 45 MB/s with 16 validators). Far
/// above seed 003's 5 requests/s, because catching up fast is the point and
/// the limit is there to stop abuse, not honest sync: four peers at this
/// budget can feed a catching-up v1 client about as fast as it takes headers
/// on a fast link (~95k/s in the header sync bench; at 400 the budget, not
/// the client, set the pace). With explicit `RATE_LIMITED` answers and few
/// requests in flight, an honest peer over it is paced, never timed out.
pub const DEFAULT_GET_HEADERS_PER_WINDOW: usize = 500;
/// Default sliding window of the rate limit.
pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(1);
/// Rate-limit units a `GetHeaders` for `count` headers costs: a full batch of
/// 50 costs 6, a single-header probe (checkpoint bisection) costs 1.
pub fn get_headers_weight(count: u32) -> usize {
    1 + count as usize / 10
}

/// Rate-limit units a headers-only `GetHeadersV2` for `count` headers
/// costs: a sixth of [`get_headers_weight`]'s per header, because a bare
/// header is about a sixth of a signed one's bytes (267 against 1 750 with
/// 16 validators) and of the work of serving it, so the budget bounds
/// serving bytes, not header counts. A 1000-header range costs 17 (signed:
/// 101); a peer at the default budget can then take ~175k bare headers/s,
/// about the bytes of 25k signed ones. The answer's byte budget still caps
/// what one range can cost the server where sets make bare headers large.
pub fn bare_headers_weight(count: u32) -> usize {
    1 + count as usize / 60
}

/// Most peers the rate limiter remembers; past it, the least recently seen is forgotten.
pub const MAX_RATE_LIMITED_PEERS: usize = 1024;

/// A per-peer sliding-window rate limiter (sans-IO).
#[derive(Debug)]
pub struct RateLimiter<P> {
    limit: usize,
    window: Duration,
    seen: HashMap<P, Window>,
}

/// One peer's requests in the window: when, and how many units each cost.
/// At most `limit` entries (every request costs at least one unit).
#[derive(Debug, Default)]
struct Window {
    requests: VecDeque<(Instant, usize)>,
    used: usize,
}

impl<P: Copy + Eq + Hash> RateLimiter<P> {
    /// At most `limit` requests per peer in any `window`.
    pub fn new(limit: usize, window: Duration) -> Self {
        RateLimiter {
            limit: limit.max(1),
            window,
            seen: HashMap::new(),
        }
    }

    /// Records a request from `peer` at `now`. `Err(retry_after)` when over the limit
    /// (the refused request is not counted).
    pub fn check(&mut self, peer: P, now: Instant) -> Result<(), Duration> {
        self.check_weighted(peer, now, 1)
    }

    /// Records a request costing `weight` units (at least 1, at most the limit).
    pub fn check_weighted(&mut self, peer: P, now: Instant, weight: usize) -> Result<(), Duration> {
        let weight = weight.clamp(1, self.limit);
        if !self.seen.contains_key(&peer) && self.seen.len() >= MAX_RATE_LIMITED_PEERS {
            let window = self.window;
            self.seen.retain(|_, w| {
                w.requests
                    .back()
                    .is_some_and(|(t, _)| now.saturating_duration_since(*t) < window)
            });
            if self.seen.len() >= MAX_RATE_LIMITED_PEERS {
                let oldest = self
                    .seen
                    .iter()
                    .min_by_key(|(_, w)| w.requests.back().map(|(t, _)| *t))
                    .map(|(p, _)| *p);
                if let Some(p) = oldest {
                    self.seen.remove(&p);
                }
            }
        }
        let w = self.seen.entry(peer).or_default();
        while let Some(&(t, units)) = w.requests.front()
            && now.saturating_duration_since(t) >= self.window
        {
            w.requests.pop_front();
            w.used -= units;
        }
        if w.requests.is_empty() && w.requests.capacity() > 64 {
            // A burst is over: give its memory back.
            w.requests.shrink_to(64);
        }
        if w.used + weight > self.limit {
            // Enough units free up when the requests holding the excess expire.
            let mut need = w.used + weight - self.limit;
            let mut until = now;
            for &(t, units) in &w.requests {
                until = t;
                if units >= need {
                    break;
                }
                need -= units;
            }
            return Err(self
                .window
                .saturating_sub(now.saturating_duration_since(until)));
        }
        w.requests.push_back((now, weight));
        w.used += weight;
        Ok(())
    }

    /// Forgets a peer. Not meant for disconnects: a budget forgotten when
    /// its peer leaves is reset by reconnecting. The limiter bounds itself
    /// ([`MAX_RATE_LIMITED_PEERS`], evicting idle windows first).
    pub fn forget(&mut self, peer: &P) {
        self.seen.remove(peer);
    }
}

/// Where served headers come from.
pub trait SignedHeaderSource {
    /// Error reading the source.
    type Error: std::error::Error;
    /// The signed header at `height` (with its validator set attached where
    /// the set changes), or `None` when not held.
    fn signed_header(&self, height: u64) -> Result<Option<SignedHeader>, Self::Error>;

    /// Up to `count` consecutive signed headers from `start_height`, stopping
    /// at the first one not held. Sources that can read a range at once
    /// (a store) override this; the default asks height by height.
    fn signed_headers(
        &self,
        start_height: u64,
        count: u32,
    ) -> Result<Vec<SignedHeader>, Self::Error> {
        let mut headers = Vec::with_capacity(count as usize);
        for i in 0..u64::from(count) {
            match self.signed_header(start_height.saturating_add(i))? {
                Some(h) => headers.push(h),
                None => break,
            }
        }
        Ok(headers)
    }
}

/// Answers a `GetHeaders` with as many sequential headers as `source` holds
/// from the start height (R2.3, R2.4, R6.3).
pub fn answer_get_headers<S: SignedHeaderSource>(source: &S, request: &GetHeaders) -> Response {
    let headers = match source.signed_headers(request.start_height, request.count) {
        Ok(headers) => headers,
        Err(e) => {
            return Response::Error(ErrorResponse {
                code: ErrorCode::Internal,
                message: truncate(&format!("store: {e}")),
                retry_after_ms: 0,
            });
        }
    };
    Response::Headers(HeadersResponse {
        start_height: request.start_height,
        headers,
    })
}

/// The `RATE_LIMITED` answer.
pub fn rate_limited(retry_after: Duration) -> Response {
    Response::Error(ErrorResponse {
        code: ErrorCode::RateLimited,
        message: "GetHeaders rate limit".into(),
        retry_after_ms: u32::try_from(retry_after.as_millis())
            .unwrap_or(u32::MAX)
            .max(1),
    })
}

fn truncate(s: &str) -> String {
    let mut end = s.len().min(headway_wire::limits::MAX_ERROR_MESSAGE_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_limits_and_recovers() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(5, Duration::from_secs(1));
        for i in 0..5 {
            assert!(
                limiter
                    .check(1u32, t0 + Duration::from_millis(i * 10))
                    .is_ok()
            );
        }
        let retry = limiter
            .check(1, t0 + Duration::from_millis(100))
            .unwrap_err();
        assert_eq!(retry, Duration::from_millis(900));
        // Another peer is unaffected.
        assert!(limiter.check(2, t0 + Duration::from_millis(100)).is_ok());
        // The window slides: the first request expires at t0 + 1 s.
        assert!(limiter.check(1, t0 + Duration::from_millis(1000)).is_ok());
        assert!(limiter.check(1, t0 + Duration::from_millis(1001)).is_err());
    }

    #[test]
    fn weighted_requests_use_more_of_the_window() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(12, Duration::from_secs(1));
        assert!(
            limiter
                .check_weighted(1u32, t0, get_headers_weight(50))
                .is_ok()
        );
        assert!(
            limiter
                .check_weighted(1, t0, get_headers_weight(50))
                .is_ok()
        );
        assert!(
            limiter
                .check_weighted(1, t0, get_headers_weight(1))
                .is_err(),
            "two full batches use the window"
        );
        let mut probes = RateLimiter::new(12, Duration::from_secs(1));
        for _ in 0..12 {
            assert!(
                probes
                    .check_weighted(1u32, t0, get_headers_weight(1))
                    .is_ok()
            );
        }
    }

    #[test]
    fn a_weighted_request_takes_one_entry() {
        let t0 = Instant::now();
        let units = DEFAULT_GET_HEADERS_PER_WINDOW * get_headers_weight(50);
        let mut limiter = RateLimiter::new(units, Duration::from_secs(1));
        // v2 ranges of 250 headers cost 26 units each.
        let fit = units / get_headers_weight(250);
        for _ in 0..fit {
            assert!(
                limiter
                    .check_weighted(1u32, t0, get_headers_weight(250))
                    .is_ok()
            );
        }
        let retry = limiter
            .check_weighted(1, t0 + Duration::from_millis(10), get_headers_weight(250))
            .unwrap_err();
        assert_eq!(retry, Duration::from_millis(990));
        let window = &limiter.seen[&1];
        assert_eq!(window.requests.len(), fit);
        assert_eq!(window.used, fit * get_headers_weight(250));
    }

    #[test]
    fn limiter_memory_is_bounded() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(5, Duration::from_secs(1));
        for p in 0..(MAX_RATE_LIMITED_PEERS as u32 * 2) {
            let _ = limiter.check(p, t0);
        }
        assert!(limiter.seen.len() <= MAX_RATE_LIMITED_PEERS);
    }
}
