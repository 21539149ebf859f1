//! Sans-IO peer bookkeeping: the ban list and the bootstrap dialler.
//!
//! Both take `now` as an input and own no clock, so they are tested with
//! virtual time; the transport drives them.

use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::PeerId;

/// Most peers remembered as banned; past it, the ban ending soonest is dropped.
pub const MAX_BANNED_PEERS: usize = 4096;

/// The longest ban: [`BanList::ban`] shortens longer ones to this (a year),
/// so that no configured duration can overflow the clock.
pub const MAX_BAN_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Banned peers with the time each ban ends and why it was imposed.
#[derive(Debug, Default)]
pub struct BanList {
    bans: HashMap<PeerId, Ban>,
}

/// One ban.
#[derive(Debug, Clone)]
pub struct Ban {
    /// When the ban ends.
    pub until: Instant,
    /// Why it was imposed.
    pub reason: String,
}

impl BanList {
    /// Bans `peer` until `now + duration` (extending, never shortening, an
    /// existing ban), `duration` at most [`MAX_BAN_DURATION`].
    pub fn ban(
        &mut self,
        peer: PeerId,
        now: Instant,
        duration: Duration,
        reason: impl Into<String>,
    ) {
        let duration = duration.min(MAX_BAN_DURATION);
        // `Instant` may still overflow on a platform whose clock starts
        // near its end: then the ban lasts as long as the clock can say.
        let until = now.checked_add(duration).unwrap_or_else(|| {
            let mut left = duration;
            loop {
                left /= 2;
                if let Some(until) = now.checked_add(left) {
                    break until;
                }
            }
        });
        self.expire(now);
        if !self.bans.contains_key(&peer) && self.bans.len() >= MAX_BANNED_PEERS {
            let soonest = self
                .bans
                .iter()
                .min_by_key(|(_, b)| b.until)
                .map(|(p, _)| *p);
            if let Some(p) = soonest {
                self.bans.remove(&p);
            }
        }
        let reason = reason.into();
        match self.bans.get_mut(&peer) {
            Some(ban) if ban.until >= until => {}
            Some(ban) => *ban = Ban { until, reason },
            None => {
                self.bans.insert(peer, Ban { until, reason });
            }
        }
    }

    /// The ban in force on `peer` at `now`, if any.
    pub fn banned(&self, peer: &PeerId, now: Instant) -> Option<&Ban> {
        self.bans.get(peer).filter(|b| b.until > now)
    }

    /// Lifts a ban.
    pub fn unban(&mut self, peer: &PeerId) {
        self.bans.remove(peer);
    }

    /// Drops expired bans.
    pub fn expire(&mut self, now: Instant) {
        self.bans.retain(|_, b| b.until > now);
    }

    /// Number of bans remembered (including expired ones not yet dropped).
    pub fn len(&self) -> usize {
        self.bans.len()
    }

    /// True when no ban is remembered.
    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }
}

/// First delay before redialling a bootstrap peer.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Longest delay between redials.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A configured peer to keep connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootstrapPeer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its identity.
    pub peer: PeerId,
}

#[derive(Debug)]
enum DialState {
    Idle {
        next_attempt: Instant,
        backoff: Duration,
    },
    Dialling {
        backoff: Duration,
    },
    Connected,
}

/// Keeps bootstrap peers connected: dials them, redials with exponential
/// backoff after failures and disconnects, and never dials a banned peer.
#[derive(Debug)]
pub struct Dialler {
    peers: Vec<(BootstrapPeer, DialState)>,
}

impl Dialler {
    /// A dialler for these peers, all due at `now`.
    pub fn new(peers: impl IntoIterator<Item = BootstrapPeer>, now: Instant) -> Self {
        Dialler {
            peers: peers
                .into_iter()
                .map(|p| {
                    (
                        p,
                        DialState::Idle {
                            next_attempt: now,
                            backoff: INITIAL_BACKOFF,
                        },
                    )
                })
                .collect(),
        }
    }

    /// The next peer to dial now, if any is due (marks it as dialling).
    #[must_use]
    pub fn poll_dial(&mut self, now: Instant, bans: &BanList) -> Option<BootstrapPeer> {
        for (peer, state) in &mut self.peers {
            if let DialState::Idle {
                next_attempt,
                backoff,
            } = *state
                && next_attempt <= now
                && bans.banned(&peer.peer, now).is_none()
            {
                *state = DialState::Dialling { backoff };
                return Some(*peer);
            }
        }
        None
    }

    /// When `poll_dial` may next return a peer (None: nothing pending).
    pub fn next_wakeup(&self, bans: &BanList, now: Instant) -> Option<Instant> {
        self.peers
            .iter()
            .filter_map(|(p, s)| match s {
                DialState::Idle { next_attempt, .. } => Some(
                    bans.banned(&p.peer, now)
                        .map_or(*next_attempt, |b| b.until.max(*next_attempt)),
                ),
                _ => None,
            })
            .min()
    }

    /// The peer is connected (by our dial or theirs).
    pub fn on_connected(&mut self, peer: &PeerId) {
        for (p, state) in &mut self.peers {
            if p.peer == *peer {
                *state = DialState::Connected;
            }
        }
    }

    /// A dial failed, or the connection closed: schedule a redial with backoff.
    /// `was_connected` resets the backoff (the peer was reachable).
    pub fn on_down(&mut self, peer: &PeerId, now: Instant, was_connected: bool) {
        for (p, state) in &mut self.peers {
            if p.peer != *peer {
                continue;
            }
            let previous = match state {
                DialState::Idle { backoff, .. } | DialState::Dialling { backoff } => *backoff,
                DialState::Connected => INITIAL_BACKOFF,
            };
            let backoff = if was_connected {
                INITIAL_BACKOFF
            } else {
                (previous * 2).min(MAX_BACKOFF)
            };
            let delay = if was_connected {
                INITIAL_BACKOFF
            } else {
                previous
            };
            *state = DialState::Idle {
                next_attempt: now + delay,
                backoff,
            };
        }
    }

    /// True when `peer` is a configured bootstrap peer.
    pub fn is_bootstrap(&self, peer: &PeerId) -> bool {
        self.peers.iter().any(|(p, _)| p.peer == *peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(b: u8) -> PeerId {
        PeerId([b; 32])
    }

    #[test]
    fn bans_expire_and_never_shorten() {
        let t0 = Instant::now();
        let mut bans = BanList::default();
        bans.ban(peer(1), t0, Duration::from_secs(60), "bad headers");
        assert_eq!(
            bans.banned(&peer(1), t0 + Duration::from_secs(59))
                .map(|b| b.reason.as_str()),
            Some("bad headers")
        );
        bans.ban(peer(1), t0, Duration::from_secs(10), "later, shorter");
        assert!(
            bans.banned(&peer(1), t0 + Duration::from_secs(30))
                .is_some()
        );
        assert!(
            bans.banned(&peer(1), t0 + Duration::from_secs(61))
                .is_none()
        );
    }

    /// A ban as long as a config can ask (`u64::MAX` seconds) does not
    /// overflow the clock: it lasts [`MAX_BAN_DURATION`].
    #[test]
    fn an_endless_ban_lasts_the_longest_ban() {
        let t0 = Instant::now();
        let mut bans = BanList::default();
        bans.ban(peer(1), t0, Duration::from_secs(u64::MAX), "forever");
        bans.ban(peer(2), t0, Duration::MAX, "longer still");
        for p in [peer(1), peer(2)] {
            let ban = bans.banned(&p, t0).expect("banned");
            assert_eq!(ban.until, t0 + MAX_BAN_DURATION);
            assert!(bans.banned(&p, t0 + MAX_BAN_DURATION).is_none());
        }
    }

    #[test]
    fn ban_list_is_bounded() {
        let t0 = Instant::now();
        let mut bans = BanList::default();
        for i in 0..(MAX_BANNED_PEERS as u32 + 10) {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            bans.ban(PeerId(id), t0, Duration::from_secs(u64::from(i) + 1), "x");
        }
        assert_eq!(bans.len(), MAX_BANNED_PEERS);
    }

    #[test]
    fn dialler_backs_off_and_resets() {
        let t0 = Instant::now();
        let bans = BanList::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut d = Dialler::new(
            [BootstrapPeer {
                addr,
                peer: peer(1),
            }],
            t0,
        );
        assert!(d.poll_dial(t0, &bans).is_some());
        assert!(d.poll_dial(t0, &bans).is_none(), "already dialling");
        d.on_down(&peer(1), t0, false);
        assert!(
            d.poll_dial(t0 + INITIAL_BACKOFF - Duration::from_millis(1), &bans)
                .is_none()
        );
        assert!(d.poll_dial(t0 + INITIAL_BACKOFF, &bans).is_some());
        let t1 = t0 + INITIAL_BACKOFF;
        d.on_down(&peer(1), t1, false);
        assert!(
            d.poll_dial(t1 + INITIAL_BACKOFF, &bans).is_none(),
            "backoff doubled"
        );
        assert!(d.poll_dial(t1 + INITIAL_BACKOFF * 2, &bans).is_some());
        d.on_connected(&peer(1));
        d.on_down(&peer(1), t1, true);
        assert_eq!(d.next_wakeup(&bans, t1), Some(t1 + INITIAL_BACKOFF));
    }

    #[test]
    fn dialler_skips_banned_peers_until_the_ban_ends() {
        let t0 = Instant::now();
        let mut bans = BanList::default();
        bans.ban(peer(1), t0, Duration::from_secs(60), "spam");
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut d = Dialler::new(
            [BootstrapPeer {
                addr,
                peer: peer(1),
            }],
            t0,
        );
        assert!(d.poll_dial(t0, &bans).is_none());
        assert_eq!(d.next_wakeup(&bans, t0), Some(t0 + Duration::from_secs(60)));
        assert!(d.poll_dial(t0 + Duration::from_secs(61), &bans).is_some());
    }
}
