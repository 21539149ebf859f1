//! Per-node log capture.
//!
//! In-process, each node's runtime threads install a thread-local tracing
//! dispatcher writing to the node's own [`LogBuffer`] (no global subscriber,
//! so nodes of parallel tests do not mix their logs). An external node's
//! stderr goes to a file that is read the same way.

use std::{
    io,
    sync::{Arc, Mutex},
};

use tracing_subscriber::fmt::MakeWriter;

/// Most bytes of log kept per node; older output is dropped beyond it.
pub const MAX_LOG_BYTES: usize = 8 << 20;

/// A shared, bounded, in-memory log.
#[derive(Debug, Clone, Default)]
pub struct LogBuffer {
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl LogBuffer {
    /// A new, empty buffer.
    pub fn new() -> Self {
        LogBuffer::default()
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    /// A tracing dispatcher writing INFO and above, without colours, to this buffer.
    pub fn dispatch(&self) -> tracing::Dispatch {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::Dispatch::new(subscriber)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A panic while appending leaves a usable byte buffer.
        self.bytes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut bytes = self.lock();
        if bytes.len() + buf.len() > MAX_LOG_BYTES {
            let drop = (bytes.len() + buf.len() - MAX_LOG_BYTES).min(bytes.len());
            bytes.drain(..drop);
        }
        bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
