//! The header log (format 5): an append-only file holding the bytes of every
//! header segment, next to the sled database that indexes it.
//!
//! Headers never change once stored, yet sled keeps values inside its B-tree
//! leaves: every insert of a 64 KB segment rewrote (and, being large, wrote
//! out as a blob file) a whole leaf of neighbouring segments. That was about
//! 40% of the header writer's time in the header sync bench. Here a segment's
//! bytes are appended to the log once and sled stores only where they are:
//!
//! ```text
//! key   HEADER_SEGMENT || be64(first height)
//! value be64(offset in the log) || be32(length)
//! ```
//!
//! Crash safety comes from ordering, not from checksums: a batch's segments
//! are appended and synced to disk *before* the sled batch that points at
//! them is applied, so a pointer sled has persisted always finds its bytes.
//! Bytes are never overwritten while the log is open (a batch that fails
//! after appending leaves unreferenced bytes behind). Every header batch
//! also records the log's committed length in sled (`keys::LOG_END`); at
//! open, whatever lies past it (a batch whose sled part never landed) is cut
//! off, and a log shorter than it is corrupt. Segment contents are still checked structurally on every read
//! (`segment.rs`), so a damaged log gives [`StoreError::Corrupt`], never a
//! panic.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::StoreError;
use crate::error::hex_string;

/// The file name of the log inside the store's directory.
pub(crate) const FILE_NAME: &str = "headers.log";

/// Bytes of a segment pointer: `be64(offset) || be32(header part length)
/// || be32(commit part length)`.
pub(crate) const POINTER_LEN: usize = 16;

/// The largest segment the log hands out. Segments are at most 256 rows of
/// headers and commits; this bounds what a damaged pointer can make a reader
/// allocate.
pub(crate) const MAX_SEGMENT_BYTES: u32 = 64 * 1024 * 1024;

/// Where a segment's bytes lie in the log: its header part at `offset`,
/// followed directly by its commit part (format 6, `segment.rs`), so that a
/// reader of headers alone reads only the header part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pointer {
    pub(crate) offset: u64,
    pub(crate) header_len: u32,
    pub(crate) commit_len: u32,
}

/// Which bytes of a segment a reader wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// The header part alone (hashes and headers).
    Headers,
    /// The header part and the commit part.
    Whole,
}

impl Pointer {
    /// Bytes of the whole segment.
    pub(crate) fn len(&self) -> u64 {
        u64::from(self.header_len) + u64::from(self.commit_len)
    }

    /// The first byte after the segment.
    pub(crate) fn end(&self) -> u64 {
        self.offset.saturating_add(self.len())
    }

    /// The sled value of the pointer.
    pub(crate) fn encode(&self) -> [u8; POINTER_LEN] {
        let mut value = [0u8; POINTER_LEN];
        value[..8].copy_from_slice(&self.offset.to_be_bytes());
        value[8..12].copy_from_slice(&self.header_len.to_be_bytes());
        value[12..].copy_from_slice(&self.commit_len.to_be_bytes());
        value
    }

    /// The pointer a sled value (stored under `key`) holds, checked: the
    /// right size, both parts non-empty, at most [`MAX_SEGMENT_BYTES`] in
    /// all. Whether it lies inside the log is checked when it is read.
    pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<Self, StoreError> {
        let Ok(value) = <[u8; POINTER_LEN]>::try_from(value) else {
            return Err(StoreError::corrupt(
                key,
                format!(
                    "header segment pointer is {} bytes ({}), expected {POINTER_LEN}",
                    value.len(),
                    hex_string(&value[..value.len().min(16)])
                ),
            ));
        };
        let (offset, lens) = value.split_at(8);
        let (header_len, commit_len) = lens.split_at(4);
        let at = |bytes: &[u8]| bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b));
        let pointer = Self {
            offset: at(offset),
            header_len: u32::try_from(at(header_len)).unwrap_or(u32::MAX),
            commit_len: u32::try_from(at(commit_len)).unwrap_or(u32::MAX),
        };
        if pointer.header_len == 0
            || pointer.commit_len == 0
            || pointer.len() > u64::from(MAX_SEGMENT_BYTES)
        {
            return Err(StoreError::corrupt(
                key,
                format!(
                    "header segment pointer holds a {}-byte header part and a {}-byte commit part, expected both non-empty and at most {MAX_SEGMENT_BYTES} bytes in all",
                    pointer.header_len, pointer.commit_len
                ),
            ));
        }
        Ok(pointer)
    }
}

/// The append-only file of header segment bytes.
pub(crate) struct HeaderLog {
    file: File,
    path: PathBuf,
    /// Where the next append goes. Only grows while the log is open; written
    /// under the store's write lock.
    end: AtomicU64,
}

impl std::fmt::Debug for HeaderLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderLog")
            .field("path", &self.path)
            .field("end", &self.end.load(Ordering::Relaxed))
            .finish()
    }
}

impl HeaderLog {
    /// Opens (or creates) the log at `path`. Call [`HeaderLog::cut_after`]
    /// once the last stored segment is known.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let (file, end) = open_file(path).map_err(StoreError::log("opening the header log"))?;
        Ok(Self {
            file,
            path: path.to_owned(),
            end: AtomicU64::new(end),
        })
    }

    /// The log's length: where the next append goes.
    pub(crate) fn len(&self) -> u64 {
        self.end.load(Ordering::SeqCst)
    }

    /// Cuts off everything after `end` (the committed length, stored under
    /// `key`): bytes of a batch that was appended but never committed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the log is shorter than `end`: committed
    /// segments lie past its end.
    pub(crate) fn cut_after(&self, end: u64, key: &[u8]) -> Result<(), StoreError> {
        let len = self.len();
        if len < end {
            return Err(StoreError::corrupt(
                key,
                format!("the header log is {len} bytes, short of its committed length {end}"),
            ));
        }
        if len > end {
            cut_file(&self.file, end).map_err(StoreError::log(
                "cutting an uncommitted tail off the header log",
            ))?;
            tracing::info!(
                dropped_bytes = len - end,
                "cut an uncommitted tail off the header log"
            );
            self.end.store(end, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Appends `parts` (the segments of one batch) back to back, syncs them
    /// to disk, and returns the offset the first starts at. Call with the
    /// store's write lock held.
    pub(crate) fn append_synced(&self, parts: &[&[u8]]) -> Result<u64, StoreError> {
        let offset = self.len();
        let total: u64 = parts.iter().map(|part| part.len() as u64).sum();
        let end = offset
            .checked_add(total)
            .ok_or_else(|| StoreError::corrupt(FILE_NAME.as_bytes(), "header log is full"))?;
        // Whatever happens below, these bytes are never written again: a
        // pointer to them may already have reached sled in an earlier,
        // failed attempt.
        self.end.store(end, Ordering::SeqCst);
        let mut at = offset;
        for part in parts {
            write_all_at(&self.file, part, at)
                .map_err(StoreError::log("appending to the header log"))?;
            at += part.len() as u64;
        }
        self.file
            .sync_data()
            .map_err(StoreError::log("syncing the header log"))?;
        Ok(offset)
    }

    /// Reads `part` of the segment whose pointer (a sled value) is stored
    /// under `key`.
    pub(crate) fn read(
        &self,
        key: &[u8],
        pointer: &[u8],
        part: Part,
    ) -> Result<(Pointer, Vec<u8>), StoreError> {
        let pointer = Pointer::decode(key, pointer)?;
        if pointer.end() > self.len() {
            return Err(StoreError::corrupt(
                key,
                format!(
                    "header segment at bytes {}..{} runs past the header log's {} bytes",
                    pointer.offset,
                    pointer.end(),
                    self.len()
                ),
            ));
        }
        let len = match part {
            Part::Headers => u64::from(pointer.header_len),
            Part::Whole => pointer.len(),
        };
        // At most MAX_SEGMENT_BYTES.
        let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
        read_exact_at(&self.file, &mut bytes, pointer.offset)
            .map_err(StoreError::log("reading the header log"))?;
        Ok((pointer, bytes))
    }
}

/// Opens (or creates) one of the store's files next to its database for
/// reading and writing, with its length.
pub(crate) fn open_file(path: &Path) -> std::io::Result<(File, u64)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

/// Cuts `file` back to its first `keep` bytes, synced.
pub(crate) fn cut_file(file: &File, keep: u64) -> std::io::Result<()> {
    file.set_len(keep).and_then(|()| file.sync_all())
}

#[cfg(unix)]
pub(crate) fn write_all_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(unix)]
pub(crate) fn read_exact_at(file: &File, bytes: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, bytes, offset)
}

#[cfg(windows)]
pub(crate) fn write_all_at(file: &File, mut bytes: &[u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt as _;
    while !bytes.is_empty() {
        match file.seek_write(bytes, offset) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                bytes = &bytes[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(windows)]
pub(crate) fn read_exact_at(
    file: &File,
    mut bytes: &mut [u8],
    mut offset: u64,
) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt as _;
    while !bytes.is_empty() {
        match file.seek_read(bytes, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                bytes = &mut bytes[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A directory deleted when dropped: where a temporary store keeps its sled
/// database and its header log.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A fresh directory under `/dev/shm` when it exists (as sled's own
    /// temporary databases), else under the system's temporary directory.
    pub(crate) fn new() -> Result<Self, StoreError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut attempt = 0;
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!(
                "headway-store-{}-{nanos:x}-{n}",
                std::process::id()
            ));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => {
                    attempt += 1;
                }
                Err(e) => {
                    return Err(StoreError::log("creating a temporary store directory")(e));
                }
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in /dev/shm or /tmp is harmless.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn appended_bytes_read_back_and_a_tail_is_cut() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join(FILE_NAME);
        let log = HeaderLog::open(&path).unwrap();
        let a = log
            .append_synced(&[&b"first "[..], &b"segment"[..]])
            .unwrap();
        let b = log.append_synced(&[&b"second"[..]]).unwrap();
        assert_eq!((a, b), (0, 13));
        let key = b"k";
        let at = |offset, header_len, commit_len| {
            Pointer {
                offset,
                header_len,
                commit_len,
            }
            .encode()
        };
        let read = |pointer: &[u8], part| log.read(key, pointer, part).map(|(_, bytes)| bytes);
        assert_eq!(read(&at(b, 3, 3), Part::Whole).unwrap(), b"second");
        assert_eq!(read(&at(b, 3, 3), Part::Headers).unwrap(), b"sec");
        assert_eq!(read(&at(a, 5, 1), Part::Whole).unwrap(), b"first ");
        assert_eq!(
            Pointer::decode(key, &at(a, 5, 1)).unwrap(),
            Pointer {
                offset: a,
                header_len: 5,
                commit_len: 1
            }
        );
        // Past the end (even for the header part alone), an empty part,
        // oversized and malformed pointers are corrupt.
        for bad in [
            at(b, 3, 4).to_vec(),
            at(b, 0, 1).to_vec(),
            at(b, 1, 0).to_vec(),
            at(0, MAX_SEGMENT_BYTES, 1).to_vec(),
            vec![0; 12],
        ] {
            for part in [Part::Headers, Part::Whole] {
                assert!(matches!(read(&bad, part), Err(StoreError::Corrupt { .. })));
            }
        }
        drop(log);
        let log = HeaderLog::open(&path).unwrap();
        assert_eq!(log.len(), 19);
        log.cut_after(13, key).unwrap();
        assert_eq!(log.len(), 13);
        assert!(matches!(
            log.cut_after(14, key),
            Err(StoreError::Corrupt { .. })
        ));
        drop(log);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 13);
        let kept = dir.path().to_owned();
        drop(dir);
        assert!(!kept.exists());
    }
}
