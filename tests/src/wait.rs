//! Bounded waits: poll a condition until it holds or a deadline passes, then
//! fail with a message that says what was awaited and what was last seen.

use std::{
    fmt::Debug,
    future::Future,
    time::{Duration, Instant},
};

/// How often conditions are polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `probe` until it returns `Some`, for at most `timeout`.
///
/// # Errors
///
/// `Err(message)` naming `what` when the deadline passes.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls `probe` until `accept` holds for its value, for at most `timeout`;
/// on failure the message shows the last value seen.
///
/// # Errors
///
/// `Err(message)` naming `what` and the last value when the deadline passes.
pub async fn until_value<T, F, Fut, A>(
    what: &str,
    timeout: Duration,
    mut probe: F,
    accept: A,
) -> Result<T, String>
where
    T: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
    A: Fn(&T) -> bool,
{
    let deadline = Instant::now() + timeout;
    loop {
        let value = probe().await;
        if accept(&value) {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "timed out after {timeout:?} waiting for {what}; last seen: {value:?}"
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
