//! Progress of a catch-up, for the operator: every [`PROGRESS_EVERY`] while
//! the node is behind its peers, the stored height, the target, the rate over
//! the last interval and an estimate of the time left.
//!
//! Sans-IO: the reactor feeds [`SyncProgress::on_tick`] the time and the
//! heights it already tracks and logs what comes back, so the arithmetic is
//! tested with virtual time.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use headway_headersync::progress::SyncProgress;
//!
//! let mut progress = SyncProgress::new(Duration::from_secs(10));
//! let t0 = Instant::now();
//! assert!(progress.on_tick(t0, 0, 100_000).is_none()); // the first tick marks
//! let report = progress.on_tick(t0 + Duration::from_secs(10), 20_000, 100_000).unwrap();
//! assert_eq!(report.headers_per_s, 2_000.0);
//! assert_eq!(report.eta, Some(Duration::from_secs(40)));
//! ```

use std::fmt;
use std::time::{Duration, Instant};

/// How often the reactor reports progress while behind, by default.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Estimates beyond this are reported as stalled.
const MAX_ETA: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// One progress report.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressReport {
    /// Height of the last stored header.
    pub height: u64,
    /// Highest height peers claim.
    pub target: u64,
    /// Headers stored per second since the previous report (or mark).
    pub headers_per_s: f64,
    /// Time left at that rate; `None` while nothing was stored in the interval.
    pub eta: Option<Duration>,
}

impl ProgressReport {
    /// The stored height as a percentage of the target (100 at or above it).
    #[must_use]
    pub fn percent(&self) -> f64 {
        if self.target == 0 || self.height >= self.target {
            100.0
        } else {
            self.height as f64 * 100.0 / self.target as f64
        }
    }
}

impl fmt::Display for ProgressReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} ({:.1}%), {:.0} headers/s",
            self.height,
            self.target,
            self.percent(),
            self.headers_per_s
        )?;
        match self.eta {
            Some(eta) => write!(f, ", ~{} left", HumanDuration(eta)),
            None => f.write_str(", stalled"),
        }
    }
}

/// A duration as an operator reads it: `<1s`, `45s`, `12m05s`, `3h07m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        match s {
            0 => f.write_str("<1s"),
            1..60 => write!(f, "{s}s"),
            60..3600 => write!(f, "{}m{:02}s", s / 60, s % 60),
            _ => write!(f, "{}h{:02}m", s / 3600, (s % 3600) / 60),
        }
    }
}

/// When to report, and the rate between reports.
#[derive(Debug, Clone)]
pub struct SyncProgress {
    every: Duration,
    /// `(when, height)` of the last report or, before the first, of the mark.
    mark: Option<(Instant, u64)>,
}

impl SyncProgress {
    /// Reports at most once per `every`; `Duration::ZERO` never reports.
    #[must_use]
    pub fn new(every: Duration) -> Self {
        SyncProgress { every, mark: None }
    }

    /// Called on each reactor tick with the stored height and the target.
    /// Returns a report once `every` has passed since the last one (or since
    /// the first call), if the node is still behind the target. While the
    /// node is caught up, nothing is reported and the mark follows the
    /// height, so the first report after falling behind measures only
    /// the catch-up.
    pub fn on_tick(&mut self, now: Instant, height: u64, target: u64) -> Option<ProgressReport> {
        if self.every.is_zero() {
            return None;
        }
        let behind = target > height;
        let Some((at, from)) = self.mark else {
            self.mark = Some((now, height));
            return None;
        };
        if !behind {
            self.mark = Some((now, height));
            return None;
        }
        let elapsed = now.saturating_duration_since(at);
        if elapsed < self.every {
            return None;
        }
        self.mark = Some((now, height));
        let headers_per_s = height.saturating_sub(from) as f64 / elapsed.as_secs_f64();
        // A crawl towards a far (or hostile, absurd) target gives no useful
        // estimate, and may not fit a `Duration`: say stalled instead.
        let eta = (headers_per_s > 0.0)
            .then(|| Duration::try_from_secs_f64((target - height) as f64 / headers_per_s).ok())
            .flatten()
            .filter(|eta| *eta < MAX_ETA);
        Some(ProgressReport {
            height,
            target,
            headers_per_s,
            eta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: Duration = Duration::from_secs(10);

    #[test]
    fn reports_once_per_interval_while_behind_with_rate_and_eta() {
        let mut p = SyncProgress::new(TEN);
        let t0 = Instant::now();
        assert_eq!(p.on_tick(t0, 100, 10_100), None);
        // Not yet: less than the interval.
        assert_eq!(p.on_tick(t0 + Duration::from_secs(9), 900, 10_100), None);
        let r = p.on_tick(t0 + TEN, 1_100, 10_100).unwrap();
        assert_eq!(r.headers_per_s, 100.0);
        assert_eq!(r.eta, Some(Duration::from_secs(90)));
        assert!((r.percent() - 1_100.0 * 100.0 / 10_100.0).abs() < 1e-9);
        // The next report measures from this one, not from the start.
        assert_eq!(
            p.on_tick(t0 + TEN + Duration::from_secs(1), 1_200, 10_100),
            None
        );
        let r = p.on_tick(t0 + 2 * TEN, 6_100, 10_100).unwrap();
        assert_eq!(r.headers_per_s, 500.0);
        assert_eq!(r.eta, Some(Duration::from_secs(8)));
        assert_eq!(r.to_string(), "6100/10100 (60.4%), 500 headers/s, ~8s left");
    }

    #[test]
    fn nothing_while_caught_up_and_the_catch_up_is_measured_alone() {
        let mut p = SyncProgress::new(TEN);
        let t0 = Instant::now();
        assert_eq!(p.on_tick(t0, 50, 50), None);
        // Following the tip: never a report, however long.
        for s in 1..100 {
            assert_eq!(p.on_tick(t0 + Duration::from_secs(s), 50 + s, 50 + s), None);
        }
        // Peers announce a far higher tip: the interval runs from the last
        // tick the node was caught up (99 s, height 149), not from the start.
        let t1 = t0 + Duration::from_secs(100);
        assert_eq!(p.on_tick(t1, 150, 100_000), None);
        assert_eq!(p.on_tick(t1 + Duration::from_secs(8), 8_150, 100_000), None);
        let r = p
            .on_tick(t1 + Duration::from_secs(9), 11_149, 100_000)
            .unwrap();
        assert_eq!(r.headers_per_s, 1_100.0);
    }

    #[test]
    fn a_stalled_sync_says_so_and_zero_never_reports() {
        let mut p = SyncProgress::new(TEN);
        let t0 = Instant::now();
        p.on_tick(t0, 10, u64::MAX);
        let r = p.on_tick(t0 + TEN, 10, u64::MAX).unwrap();
        assert_eq!((r.headers_per_s, r.eta), (0.0, None));
        assert!(r.to_string().ends_with(", stalled"), "{r}");
        // A crawl towards a hostile, absurd target: no overflow, stalled.
        let r = p.on_tick(t0 + 2 * TEN, 11, u64::MAX).unwrap();
        assert_eq!(r.eta, None);

        let mut off = SyncProgress::new(Duration::ZERO);
        assert_eq!(off.on_tick(t0, 1, 100), None);
        assert_eq!(off.on_tick(t0 + TEN * 100, 2, 100), None);
    }

    #[test]
    fn durations_read_as_an_operator_reads_them() {
        let h = |s| HumanDuration(Duration::from_secs(s)).to_string();
        assert_eq!(h(0), "<1s");
        assert_eq!(h(59), "59s");
        assert_eq!(h(60), "1m00s");
        assert_eq!(h(725), "12m05s");
        assert_eq!(h(3600 * 3 + 7 * 60 + 59), "3h07m");
    }
}
