//! Length-prefixed frames for QUIC streams.
//!
//! A frame is a 4-byte big-endian payload length followed by the payload, one
//! protobuf-encoded [`Envelope`]. The reader states the largest payload it
//! accepts (from the message kind it expects) and the length is checked
//! against it before a single byte of payload is allocated.

use crate::{Envelope, FrameError, limits::MAX_FRAME};

/// Size of the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// Encodes `message` as a frame: validates it, checks its size against the
/// limit for its kind, and prefixes the length.
pub fn encode_frame<M: Envelope>(message: &M) -> Result<Vec<u8>, FrameError> {
    let payload = message.encode()?;
    let max = message.max_frame().min(MAX_FRAME);
    if payload.len() > max {
        return Err(FrameError::TooLarge {
            len: payload.len() as u64,
            max,
        });
    }
    let mut frame = Vec::with_capacity(LENGTH_PREFIX + payload.len());
    // `payload.len() <= MAX_FRAME < u32::MAX`, so the cast is lossless.
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Reads a length prefix and checks it against `max` (and [`MAX_FRAME`]).
/// Returns the payload length to read next; call this before allocating.
pub fn payload_len(prefix: [u8; LENGTH_PREFIX], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix);
    let max = max.min(MAX_FRAME);
    match usize::try_from(len) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(FrameError::TooLarge {
            len: u64::from(len),
            max,
        }),
    }
}

/// Decodes exactly one frame from `bytes`, which must hold nothing else.
pub fn decode_frame<M: Envelope>(bytes: &[u8], max: usize) -> Result<M, FrameError> {
    let (message, rest) = decode_frame_prefix(bytes, max)?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes { extra: rest.len() });
    }
    Ok(message)
}

/// Decodes the first frame of `bytes`, returning it and the bytes after it.
pub fn decode_frame_prefix<M: Envelope>(
    bytes: &[u8],
    max: usize,
) -> Result<(M, &[u8]), FrameError> {
    let Some((prefix, rest)) = bytes.split_first_chunk::<LENGTH_PREFIX>() else {
        return Err(FrameError::Truncated {
            needed: LENGTH_PREFIX - bytes.len(),
        });
    };
    let len = payload_len(*prefix, max)?;
    if rest.len() < len {
        return Err(FrameError::Truncated {
            needed: len - rest.len(),
        });
    }
    let (payload, rest) = rest.split_at(len);
    Ok((M::decode(payload)?, rest))
}

/// Incremental frame reader for byte streams (sans-IO): push bytes as they
/// arrive, take frames as they complete. Buffers at most one frame plus its
/// prefix; bytes of a frame over the limit are never buffered.
#[derive(Debug)]
pub struct FrameReader {
    max: usize,
    buf: Vec<u8>,
    /// Payload length of the frame being read, once its prefix is known.
    pending: Option<usize>,
}

impl FrameReader {
    /// A reader accepting payloads up to `max` bytes (capped at [`MAX_FRAME`]).
    pub fn new(max: usize) -> Self {
        FrameReader {
            max: max.min(MAX_FRAME),
            buf: Vec::new(),
            pending: None,
        }
    }

    /// How many more bytes the current frame needs; feed at most this many.
    pub fn wanted(&self) -> usize {
        match self.pending {
            None => LENGTH_PREFIX - self.buf.len(),
            Some(len) => len - self.buf.len(),
        }
    }

    /// Feeds bytes. Returns how many were consumed (at most [`FrameReader::wanted`])
    /// and the payload when a frame completed. Fails, without buffering, on a
    /// prefix over the limit.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(usize, Option<Vec<u8>>), FrameError> {
        let take = self.wanted().min(bytes.len());
        self.buf.extend_from_slice(&bytes[..take]);
        if self.pending.is_none() && self.buf.len() == LENGTH_PREFIX {
            let mut prefix = [0; LENGTH_PREFIX];
            prefix.copy_from_slice(&self.buf);
            let len = payload_len(prefix, self.max)?;
            self.buf.clear();
            self.buf.reserve_exact(len);
            self.pending = Some(len);
        }
        match self.pending {
            Some(len) if self.buf.len() == len => {
                self.pending = None;
                Ok((take, Some(std::mem::take(&mut self.buf))))
            }
            _ => Ok((take, None)),
        }
    }
}
