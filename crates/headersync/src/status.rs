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

    /// A peer connected that the transport greeted with `greeted` before the
    /// connection was up (its first status, as 0.5-RTT data). Counted as
    /// pushed, so nothing repeats it (R1.4); a status follows only when our
    /// height moved on since, again at `height - 1` (R1.5).
    pub fn on_connected_greeted(
        &mut self,
        peer: P,
        greeted: &StatusResponse,
        base: u64,
        height: u64,
    ) -> Option<StatusResponse> {
        let announced = height.saturating_sub(1);
        if announced <= greeted.height {
            self.last_pushed.insert(peer, greeted.height);
            return None;
        }
        self.last_pushed.insert(peer, announced);
        Some(StatusResponse {
            features: self.features,
            ..StatusResponse::new(base.min(announced), announced)
        })
    }

    /// The status to greet connecting peers with at `height`: the one
    /// [`StatusAnnouncer::on_connected`] would push them (R1.5).
    pub fn greeting(&self, base: u64, height: u64) -> StatusResponse {
        let announced = height.saturating_sub(1);
        StatusResponse {
            features: self.features,
            ..StatusResponse::new(base.min(announced), announced)
        }
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
    fn a_greeted_peer_hears_no_repetition_and_then_only_higher_heights() {
        let mut a = StatusAnnouncer::with_features(Features::HEADERS_V2);
        let greeting = a.greeting(1, 10);
        assert_eq!(greeting.height, 9);
        assert_eq!(greeting.features, Features::HEADERS_V2);
        // Connected at the height it was greeted at: nothing more to say.
        assert_eq!(a.on_connected_greeted(1u8, &greeting, 1, 10), None);
        assert_eq!(a.len(), 1);
        assert!(a.on_height(1, 9).is_empty());
        assert_eq!(a.on_height(1, 10).len(), 1);
        // The height moved on between the greeting and the connection.
        let mut b = StatusAnnouncer::new();
        let greeting = b.greeting(1, 10);
        let next = b.on_connected_greeted(2u8, &greeting, 1, 13).unwrap();
        assert_eq!(next.height, 12);
        assert!(b.on_height(1, 12).is_empty());
        assert_eq!(b.on_height(1, 13), vec![(2, StatusResponse::new(1, 13))]);
        // A greeting above what we would say now (the store went back):
        // still never repeated or lowered.
        let mut c = StatusAnnouncer::new();
        let greeting = c.greeting(1, 20);
        assert_eq!(c.on_connected_greeted(3u8, &greeting, 1, 15), None);
        assert!(c.on_height(1, 19).is_empty());
        assert_eq!(c.on_height(1, 20).len(), 1);
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
