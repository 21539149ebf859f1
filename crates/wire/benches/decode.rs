//! Decoding a full `GetHeaders` answer: 50 signed headers, each with a
//! 16-signature commit, through `Response::decode` (the fast path of
//! `headway_wire::fast`) and through prost's raw types and `TryFrom` (the
//! slow path it replaces for header responses). Then a 250-header
//! `GetHeadersV2` range, signed and bare (a `headers_only` answer: the same
//! headers without their commits), the same two ways; the setup prints the
//! encoded size per header of each. Last, what a serving peer does for a
//! compact answer: 1000 headers pushed into a `CompactRangeBuilder` by
//! their fields (as the store hands them over) and framed with a proof,
//! against `CompactHeaders::from_bare` of the same headers. The `scan`
//! entries time the counting pass `Response::decode` runs before prost
//! (`headway_wire::scan`): compact answers pay it in
//! `compact/prost_try_from`, the others only when they fall back.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-decode cargo bench -p headway-wire --bench decode
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use headway_wire::{
    Address, BareHeader, BlockId, Commit, CommitSig, Envelope, Hash, Header, HeadersResponse,
    HeadersV2Response, HeadersV2Result, MmrProof, Response, Signature, SignedHeader, WireError,
    encoded::{CompactRangeBuilder, HeaderFields},
    raw,
};
use prost::Message as _;

const HEADERS: u64 = 50;
const SIGNATURES: usize = 16;
const START: u64 = 1_234_567;
/// Headers in the v2 range answers.
const RANGE: u64 = 250;
/// Hashes in their MMR proof (a last-leaf proof in a tree of a few million).
const PROOF_HASHES: u64 = 24;

/// Deterministic, distinct filler bytes.
fn bytes<const N: usize>(seed: u64) -> [u8; N] {
    let mut out = [0u8; N];
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in &mut out {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    out
}

fn signed_header(height: u64) -> SignedHeader {
    let hash = |k: u64| Hash(bytes(height * 16 + k));
    let mut signatures: Vec<CommitSig> = (0..SIGNATURES as u64)
        .map(|v| CommitSig {
            // The same validators sign every block; their addresses sort.
            validator_address: Address(bytes(v + 1)),
            signature: Signature(bytes(height * 64 + v)),
        })
        .collect();
    signatures.sort_by_key(|s| s.validator_address);
    SignedHeader {
        header: Header {
            chain_id: "headway-mainnet-1".into(),
            height,
            time_ms: 1_750_000_000_000 + height * 1000,
            last_block_id: Some(BlockId { hash: hash(1) }),
            data_hash: hash(2),
            validators_hash: hash(3),
            next_validators_hash: hash(3),
            state_root: hash(4),
            history_root: hash(5),
            proposer_address: Address(bytes(height % SIGNATURES as u64 + 1)),
        },
        commit: Commit {
            height,
            round: 0,
            block_id: BlockId { hash: hash(6) },
            signatures,
        },
        validator_set: None,
    }
}

fn slow(bytes: &[u8]) -> Result<Response, WireError> {
    raw::Response::decode(bytes)?.try_into()
}

fn decode(c: &mut Criterion) {
    let response = Response::Headers(HeadersResponse {
        start_height: START,
        headers: (START..START + HEADERS).map(signed_header).collect(),
    });
    let Ok(encoded) = response.encode() else {
        panic!("the benchmark response is valid");
    };
    // Both paths must decode it, to the same value, and the fast path must take it.
    assert!(headway_wire::fast::decode_response(&encoded).as_ref() == Some(&response));
    assert!(slow(&encoded).as_ref() == Ok(&response));

    let mut group = c.benchmark_group("decode_headers_50x16");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("fast", |b| b.iter(|| Response::decode(black_box(&encoded))));
    group.bench_function("prost_try_from", |b| b.iter(|| slow(black_box(&encoded))));
    group.bench_function("scan", |b| {
        b.iter(|| headway_wire::scan::response(black_box(&encoded)))
    });
    group.finish();
}

/// A v2 range answer of `RANGE` headers from `START`, signed or bare.
fn range(bare: bool) -> Response {
    let signed: Vec<SignedHeader> = (START..START + RANGE).map(signed_header).collect();
    let proof = MmrProof {
        hashes: (0..PROOF_HASHES).map(|k| Hash(bytes(k + 7))).collect(),
    };
    let result = if bare {
        HeadersV2Result::BareHeaders {
            headers: signed.iter().map(BareHeader::from).collect(),
            proof,
        }
    } else {
        HeadersV2Result::Headers {
            headers: signed,
            proof,
        }
    };
    Response::HeadersV2(HeadersV2Response {
        start_height: START,
        end_height: START + RANGE - 1,
        result,
    })
}

#[allow(
    clippy::print_stderr,
    reason = "the sizes per header are part of what this bench reports"
)]
fn decode_v2(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_v2_250x16");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, bare) in [("signed", false), ("bare", true)] {
        let response = range(bare);
        let Ok(encoded) = response.encode() else {
            panic!("the benchmark response is valid");
        };
        assert!(headway_wire::fast::decode_response(&encoded).as_ref() == Some(&response));
        assert!(slow(&encoded).as_ref() == Ok(&response));
        eprintln!(
            "{name}: {} bytes, {:.0} bytes per header",
            encoded.len(),
            encoded.len() as f64 / RANGE as f64
        );
        group.throughput(Throughput::Bytes(encoded.len() as u64));
        group.bench_function(format!("{name}/fast"), |b| {
            b.iter(|| Response::decode(black_box(&encoded)))
        });
        group.bench_function(format!("{name}/prost_try_from"), |b| {
            b.iter(|| slow(black_box(&encoded)))
        });
        // What the counting pass costs an answer that falls back to prost.
        group.bench_function(format!("{name}/scan"), |b| {
            b.iter(|| headway_wire::scan::response(black_box(&encoded)))
        });
    }
    // The same bare range, compact (one validator set throughout, as
    // between two set changes): decoded by prost, into columns; rebuilding
    // the headers is the requester's, with its header hash.
    let Response::HeadersV2(HeadersV2Response {
        result: HeadersV2Result::BareHeaders { headers, proof },
        ..
    }) = range(true)
    else {
        panic!("a bare range");
    };
    let same_set: Vec<BareHeader> = headers
        .into_iter()
        .map(|mut b| {
            b.header.validators_hash = Hash(bytes(3));
            b.header.next_validators_hash = Hash(bytes(3));
            b
        })
        .collect();
    let Some(compact) = headway_wire::CompactHeaders::from_bare(&same_set) else {
        panic!("the range has a compact form");
    };
    let response = Response::HeadersV2(HeadersV2Response {
        start_height: START,
        end_height: START + RANGE - 1,
        result: HeadersV2Result::CompactHeaders {
            headers: Box::new(compact),
            proof,
        },
    });
    let Ok(encoded) = response.encode() else {
        panic!("the benchmark response is valid");
    };
    assert!(Response::decode(&encoded).as_ref() == Ok(&response));
    eprintln!(
        "compact: {} bytes, {:.0} bytes per header",
        encoded.len(),
        encoded.len() as f64 / RANGE as f64
    );
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("compact/prost_try_from", |b| {
        b.iter(|| Response::decode(black_box(&encoded)))
    });
    group.bench_function("compact/scan", |b| {
        b.iter(|| headway_wire::scan::response(black_box(&encoded)))
    });
    group.finish();
}

/// The proposer of `height` in a devnet-like chain: 16 validators taking
/// turns, a quarter of the positions given to new validators every 100
/// blocks (so a range of 1000 has ~56 proposers, in turns that restart).
fn proposer(height: u64) -> Address {
    let position = height % 16;
    let epoch = height / 100;
    let replaced = (1..=epoch)
        .filter(|e| (position + e).is_multiple_of(4))
        .count() as u64;
    Address(bytes(1_000_000 + position * 10_000 + replaced))
}

fn build_compact(c: &mut Criterion) {
    const N: u64 = 1000;
    let headers: Vec<BareHeader> = (START..START + N)
        .map(|height| {
            let mut signed = signed_header(height);
            signed.header.validators_hash = Hash(bytes(3));
            signed.header.next_validators_hash = Hash(bytes(3));
            signed.header.proposer_address = proposer(height);
            BareHeader::from(&signed)
        })
        .collect();
    let proof = MmrProof {
        hashes: (0..PROOF_HASHES).map(|k| Hash(bytes(k + 7))).collect(),
    };
    let build = || {
        let mut range = CompactRangeBuilder::with_capacity(START, N as usize);
        for bare in &headers {
            assert!(range.push_fields(&HeaderFields::of(&bare.header), None));
        }
        range.finish(START + N - 1, &proof)
    };
    let Ok(Some(_)) = build() else {
        panic!("the benchmark range is compact");
    };
    let mut group = c.benchmark_group("build_compact_1000");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(N));
    group.bench_function("builder_from_fields", |b| b.iter(|| black_box(build())));
    group.bench_function("from_bare", |b| {
        b.iter(|| headway_wire::CompactHeaders::from_bare(black_box(&headers)))
    });
    group.finish();
}

criterion_group!(benches, decode, decode_v2, build_compact);
criterion_main!(benches);
