//! Memory spent decoding hostile frames: each case fills a frame of the
//! largest size its kind may have with minimal (empty) items of one
//! repeated field, and decoding it must be refused with `TooMany` while the
//! process's peak resident memory grows by less than 4x the frame. Without
//! the counting pass of `headway_wire::scan`, prost builds every item
//! first (a 16 MiB `HeadersV2Response` of empty signed headers took 2.4 GiB).
//!
//! Peak memory is the kernel's `VmHWM`, reset through `/proc/self/clear_refs`
//! before each decode (Linux only; `unsafe` is forbidden here, so no counting
//! allocator). The cases run one at a time; the figures go to stderr
//! (`cargo test -p headway-wire --test scan_memory -- --nocapture`).

#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failure is the assertion, and the figures are its report"
)]

use std::sync::Mutex;
use std::time::Instant;

use headway_wire::{Envelope, Push, Response, WireError, limits::*};
use prost::encoding::{WireType, encode_key, encode_varint};

/// One case at a time: peak memory is the whole process's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// `VmRSS` or `VmHWM` of this process, in bytes.
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: usize = line
        .trim_start_matches(field)
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// Runs `decode`, returning its result, how many bytes the peak resident
/// memory rose above where it started, and the time it took.
fn measure<T>(decode: impl FnOnce() -> T) -> (T, usize, f64) {
    std::fs::write("/proc/self/clear_refs", "5").expect("peak RSS reset (Linux >= 4.0)");
    let before = status_bytes("VmRSS");
    let start = Instant::now();
    let out = decode();
    let secs = start.elapsed().as_secs_f64();
    let peak = status_bytes("VmHWM");
    (out, peak.saturating_sub(before), secs)
}

/// `item` repeated to fill a frame of at most `max` bytes, inside the
/// length-delimited fields `path` (outermost first).
fn frame_of(path: &[u32], item: &[u8], max: usize) -> Vec<u8> {
    // Each level adds a key and a length: at most 1 + 4 bytes here.
    let room = max - 5 * path.len();
    let count = room / item.len();
    let mut inner = Vec::with_capacity(max);
    for _ in 0..count {
        inner.extend_from_slice(item);
    }
    for &tag in path.iter().rev() {
        let mut outer = Vec::with_capacity(inner.len() + 8);
        encode_key(tag, WireType::LengthDelimited, &mut outer);
        encode_varint(inner.len() as u64, &mut outer);
        outer.extend_from_slice(&inner);
        inner = outer;
    }
    assert!(inner.len() <= max, "{} over {max}", inner.len());
    inner
}

/// An empty message as an item of the repeated field `tag`.
fn empty(tag: u32) -> Vec<u8> {
    let mut item = Vec::new();
    encode_key(tag, WireType::LengthDelimited, &mut item);
    item.push(0);
    item
}

/// The `TooMany` at the bottom of `err` (under `Item` wrappers).
fn too_many(err: &WireError) -> Option<&'static str> {
    match err {
        WireError::TooMany { field, .. } => Some(field),
        WireError::Item { source, .. } => too_many(source),
        _ => None,
    }
}

/// Builds the frame of case `name` and decodes it as an `M`, all while no
/// other case runs (building a frame takes memory too).
fn check<M: Envelope + std::fmt::Debug>(name: &str, frame: impl FnOnce() -> Vec<u8>, field: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let frame = &frame();
    let (result, peak, secs) = measure(|| M::decode(frame));
    let mib = |n: usize| n as f64 / (1024.0 * 1024.0);
    eprintln!(
        "{name}: {:.1} MiB frame, peak +{:.1} MiB ({:.1}x), {:.3} ms",
        mib(frame.len()),
        mib(peak),
        peak as f64 / frame.len() as f64,
        secs * 1e3
    );
    let err = result.expect_err("a hostile frame is refused");
    assert_eq!(too_many(&err), Some(field), "{err}");
    assert!(
        peak < 4 * frame.len(),
        "{name}: decoding took {:.1} MiB for a {:.1} MiB frame",
        mib(peak),
        mib(frame.len())
    );
}

#[test]
fn headers_v2_of_empty_signed_headers() {
    // Response.headers_v2 (2) . headers (3) . headers (1)
    check::<Response>(
        "headers_v2.headers",
        || frame_of(&[2, 3], &empty(1), MAX_HEADERS_V2_RESPONSE_FRAME),
        "headers_v2_response.headers",
    );
}

#[test]
fn headers_v2_of_empty_bare_headers() {
    check::<Response>(
        "headers_v2.bare_headers",
        || frame_of(&[2, 5], &empty(1), MAX_HEADERS_V2_RESPONSE_FRAME),
        "headers_v2_response.bare_headers",
    );
}

#[test]
fn headers_v1_of_empty_signed_headers() {
    check::<Response>(
        "headers.headers",
        || frame_of(&[1], &empty(2), MAX_HEADERS_RESPONSE_FRAME),
        "headers_response.headers",
    );
}

#[test]
fn blocks_of_empty_blocks() {
    check::<Response>(
        "blocks.blocks",
        || frame_of(&[6], &empty(1), MAX_BLOCKS_RESPONSE_FRAME),
        "blocks_response.blocks",
    );
}

#[test]
fn skip_chain_of_empty_hops() {
    check::<Response>(
        "skip_chain.hops",
        || frame_of(&[9], &empty(3), MAX_SKIP_CHAIN_FRAME),
        "skip_chain_response.hops",
    );
}

#[test]
fn snapshot_data_of_empty_entries() {
    check::<Response>(
        "snapshot_data.entries",
        || frame_of(&[5], &empty(3), MAX_SNAPSHOT_DATA_FRAME),
        "snapshot_data.entries",
    );
}

#[test]
fn compact_of_empty_proposers() {
    // Response.headers_v2 (2) . compact_headers (6) . proposers (7)
    check::<Response>(
        "compact.proposers",
        || frame_of(&[2, 6], &empty(7), MAX_HEADERS_V2_RESPONSE_FRAME),
        "compact_headers.proposers",
    );
}

#[test]
fn compact_of_empty_validator_sets() {
    check::<Response>(
        "compact.validator_sets",
        || frame_of(&[2, 6], &empty(10), MAX_HEADERS_V2_RESPONSE_FRAME),
        "compact_headers.validator_sets",
    );
}

#[test]
fn compact_of_packed_zero_time_deltas() {
    // One byte per delta, eight in memory: `time_deltas_ms` (5), packed.
    check::<Response>(
        "compact.time_deltas_ms",
        || frame_of(&[2, 6, 5], &[0], MAX_HEADERS_V2_RESPONSE_FRAME),
        "compact_headers.time_deltas_ms",
    );
}

#[test]
fn push_of_empty_commit_signatures() {
    // Push.block_announcement (2) . signed_header (1) . commit (2) . signatures (4)
    check::<Push>(
        "push.commit.signatures",
        || frame_of(&[2, 1, 2], &empty(4), MAX_PUSH_FRAME),
        "commit.signatures",
    );
}

#[test]
fn push_of_empty_validators() {
    // ... . validator_set (3) . validators (1)
    check::<Push>(
        "push.validator_set.validators",
        || frame_of(&[2, 1, 3], &empty(1), MAX_PUSH_FRAME),
        "validator_set.validators",
    );
}

#[test]
fn validator_set_response_of_empty_validators() {
    check::<Response>(
        "validator_set.validators",
        || frame_of(&[8, 2], &empty(1), MAX_VALIDATOR_SET_RESPONSE_FRAME),
        "validator_set.validators",
    );
}

/// Within every count limit, the signatures spread over 2000 signed headers
/// (about 4190 empty ones each, under the 10 000 a commit may have): no
/// count is over, but no valid signature takes 2 bytes either.
#[test]
fn headers_v2_of_commits_of_empty_signatures() {
    let frame = || {
        let headers = MAX_HEADERS_V2 as usize;
        // A signed header's share of the frame, less its key and length,
        // and its commit's key and length: the rest is 2-byte signatures.
        let share = (MAX_HEADERS_V2_RESPONSE_FRAME - 16) / headers;
        let commit = frame_of(&[2], &empty(4), share - 4 - 4);
        let signed = frame_of(&[1], &commit, share);
        frame_of(
            &[2, 3],
            &signed.repeat(headers),
            MAX_HEADERS_V2_RESPONSE_FRAME,
        )
    };
    check::<Response>("headers_v2.commit.signatures", frame, "commit.signatures");
}
