//! Status announcements (R1.1, R1.2, R1.5): what to push to whom, so that a
//! peer never sees the same or a lower height twice from us.

use std::{collections::HashMap, hash::Hash};

use headway_wire::StatusResponse;

/// Tracks the last status pushed to each connected peer.
#[derive(Debug, Default)]
pub struct StatusAnnouncer<P> {
    last_pushed: HashMap<P, u64>,
}

impl<P: Copy + Eq + Hash> StatusAnnouncer<P> {
    /// A new announcer.
    pub fn new() -> Self {
        StatusAnnouncer {
            last_pushed: HashMap::new(),
        }
    }

    /// A peer connected: the first status uses `height - 1` (R1.5) so that a
    /// broadcast right after cannot look like a repetition. `None` when we
    /// have nothing to announce yet.
    pub fn on_connected(&mut self, peer: P, base: u64, height: u64) -> Option<StatusResponse> {
        let announced = height.saturating_sub(1);
        self.last_pushed.insert(peer, announced);
        Some(StatusResponse {
            base: base.min(announced),
            height: announced,
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
                out.push((
                    *peer,
                    StatusResponse {
                        base: base.min(height),
                        height,
                    },
                ));
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
        assert_eq!(
            a.on_connected(1u8, 1, 10),
            Some(StatusResponse { base: 1, height: 9 })
        );
        assert_eq!(
            a.on_height(1, 10),
            vec![(
                1,
                StatusResponse {
                    base: 1,
                    height: 10
                }
            )]
        );
        assert!(a.on_height(1, 10).is_empty());
        assert!(a.on_height(1, 9).is_empty());
        assert_eq!(a.on_height(1, 11).len(), 1);
    }
}
