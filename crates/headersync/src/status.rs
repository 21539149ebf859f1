//! Status announcements (R1.1, R1.2, R1.5): what to push to whom, so that a
//! peer never sees the same or a lower height twice from us.

use std::{collections::HashMap, hash::Hash};

use headway_wire::{Features, StatusResponse};

/// Tracks the last status pushed to each connected peer.
#[derive(Debug, Default)]
pub struct StatusAnnouncer<P> {
    last_pushed: HashMap<P, u64>,
    features: Features,
}

impl<P: Copy + Eq + Hash> StatusAnnouncer<P> {
    /// A new announcer that promises no features.
    pub fn new() -> Self {
        Self::with_features(Features::NONE)
    }

    /// A new announcer whose statuses announce `features`.
    pub fn with_features(features: Features) -> Self {
        StatusAnnouncer {
            last_pushed: HashMap::new(),
            features,
        }
    }

    /// A peer connected: the first status uses `height - 1` (R1.5) so that a
    /// broadcast right after cannot look like a repetition. `None` when we
    /// have nothing to announce yet.
    pub fn on_connected(&mut self, peer: P, base: u64, height: u64) -> Option<StatusResponse> {
        let announced = height.saturating_sub(1);
        self.last_pushed.insert(peer, announced);
        Some(StatusResponse {
            features: self.features,
            ..StatusResponse::new(base.min(announced), announced)
        })
    }

    /// The peer disconnected.
    pub fn on_disconnected(&mut self, peer: &P) {
        self.last_pushed.remove(peer);
    }

    /// Our header height is now `height`: the statuses to push (R1.2), only to
    /// peers that last heard a lower height.
    pub fn on_height(&mut self, base: u64, height: u64) -> Vec<(P, StatusResponse)> {
        let mut out = Vec::new();
        for (peer, last) in &mut self.last_pushed {
            if height > *last {
                *last = height;
                let status = StatusResponse {
                    features: self.features,
                    ..StatusResponse::new(base.min(height), height)
                };
                out.push((*peer, status));
            }
        }
        out
    }

    /// Peers being tracked.
    pub fn len(&self) -> usize {
        self.last_pushed.len()
    }

    /// True when no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.last_pushed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_repeats_or_lowers_a_height() {
        let mut a = StatusAnnouncer::new();
        assert_eq!(a.on_connected(1u8, 1, 10), Some(StatusResponse::new(1, 9)));
        assert_eq!(a.on_height(1, 10), vec![(1, StatusResponse::new(1, 10))]);
        assert!(a.on_height(1, 10).is_empty());
        assert!(a.on_height(1, 9).is_empty());
        assert_eq!(a.on_height(1, 11).len(), 1);
    }

    #[test]
    fn every_status_carries_the_announced_features() {
        let mut a = StatusAnnouncer::with_features(Features::HEADERS_V2);
        let first = a.on_connected(1u8, 1, 10).unwrap();
        assert_eq!(first.features, Features::HEADERS_V2);
        let later = a.on_height(1, 11);
        assert_eq!(later.len(), 1);
        assert!(later[0].1.features.contains(Features::HEADERS_V2));
        let mut plain = StatusAnnouncer::new();
        assert_eq!(
            plain.on_connected(1u8, 1, 10).unwrap().features,
            Features::NONE
        );
    }
}
