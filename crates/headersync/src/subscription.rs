//! Header subscriptions (R5): every verified header, in order, to each
//! subscriber, however slow, without unbounded buffering.
//!
//! A subscription is a cursor over the store: the reactor only publishes the
//! header height through a `watch` channel, and the subscriber reads the
//! headers it has not seen from the store. A slow subscriber never blocks
//! sync and never misses a header (the NOTES hole 8: dropped headers on a
//! full channel).

use headway_store::{Store, StoreError};
use headway_wire::SignedHeader;
use tokio::sync::watch;

/// A loss-free, in-order stream of verified headers.
#[derive(Debug)]
pub struct HeaderSubscription {
    store: Store,
    height: watch::Receiver<u64>,
    next: u64,
}

/// Why a subscription ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// The header sync reactor stopped.
    #[error("header sync stopped")]
    Closed,
    /// The store failed to load a header it reported as stored.
    #[error("loading header {height}: {source}")]
    Store {
        /// The height.
        height: u64,
        /// The error.
        source: StoreError,
    },
    /// The store reported a header height but has no header there.
    #[error("header {0} is missing from the store")]
    Missing(u64),
}

impl HeaderSubscription {
    /// A subscription delivering headers from `from_height` on.
    pub fn new(store: Store, height: watch::Receiver<u64>, from_height: u64) -> Self {
        HeaderSubscription {
            store,
            height,
            next: from_height.max(1),
        }
    }

    /// The height of the next header this subscription delivers.
    pub fn next_height(&self) -> u64 {
        self.next
    }

    /// The next verified header, waiting until there is one.
    pub async fn next(&mut self) -> Result<SignedHeader, SubscriptionError> {
        loop {
            if *self.height.borrow_and_update() >= self.next {
                let height = self.next;
                let header = self
                    .store
                    .load_signed_header(height)
                    .map_err(|source| SubscriptionError::Store { height, source })?
                    .ok_or(SubscriptionError::Missing(height))?;
                self.next += 1;
                return Ok(header);
            }
            self.height
                .changed()
                .await
                .map_err(|_| SubscriptionError::Closed)?;
        }
    }
}
