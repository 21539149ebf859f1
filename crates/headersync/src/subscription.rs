//! Header subscriptions (R5): every verified header, in order, to each
//! subscriber, however slow, without unbounded buffering.
//!
//! A subscription is a cursor over the store: the reactor only publishes the
//! header height through a `watch` channel, and the subscriber reads the
//! headers it has not seen from the store. A slow subscriber never blocks
//! sync and never misses a header (the NOTES hole 8: dropped headers on a
//! full channel).

use headway_store::{Store, StoreError};
use headway_wire::{Header, SignedHeader};
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
    /// The header is stored without its commit (headers-only v2 sync), so
    /// [`HeaderSubscription::next`] cannot deliver it signed; use
    /// [`HeaderSubscription::next_header`].
    #[error("header {0} is stored without its commit")]
    WithoutCommit(u64),
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

    /// The next verified header with its commit, waiting until there is one.
    ///
    /// # Errors
    ///
    /// [`SubscriptionError::WithoutCommit`] at a header stored without its
    /// commit (the cursor stays there: [`Self::next_header`] delivers it).
    pub async fn next(&mut self) -> Result<SignedHeader, SubscriptionError> {
        let height = self.wait_next().await?;
        let signed = self
            .store
            .load_signed_header(height)
            .map_err(|source| SubscriptionError::Store { height, source })?;
        match signed {
            Some(signed) => {
                self.next += 1;
                Ok(signed)
            }
            None if height <= self.store.bare_height() => {
                Err(SubscriptionError::WithoutCommit(height))
            }
            None => Err(SubscriptionError::Missing(height)),
        }
    }

    /// The next verified header (stored with or without its commit),
    /// waiting until there is one: what a consumer that needs headers only
    /// (block download) reads.
    pub async fn next_header(&mut self) -> Result<Header, SubscriptionError> {
        let height = self.wait_next().await?;
        let header = self
            .store
            .load_header(height)
            .map_err(|source| SubscriptionError::Store { height, source })?
            .ok_or(SubscriptionError::Missing(height))?;
        self.next += 1;
        Ok(header)
    }

    /// Waits until the header at the cursor is stored; returns its height.
    async fn wait_next(&mut self) -> Result<u64, SubscriptionError> {
        loop {
            if *self.height.borrow_and_update() >= self.next {
                return Ok(self.next);
            }
            self.height
                .changed()
                .await
                .map_err(|_| SubscriptionError::Closed)?;
        }
    }
}
