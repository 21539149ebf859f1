//! Proptest strategies producing valid domain values of every wire type.

#![allow(
    dead_code,
    missing_docs,
    clippy::expect_used,
    reason = "shared test helpers; each test file uses a subset"
)]

use std::collections::{BTreeMap, BTreeSet};

use headway_wire::*;
use proptest::{collection::vec, option, prelude::*};

pub fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

pub fn chain_id() -> impl Strategy<Value = String> {
    "[a-z0-9-]{1,50}"
}

pub fn header() -> impl Strategy<Value = Header> {
    (
        1u64..1_000_000,
        any::<u64>(),
        chain_id(),
        hash(),
        hash(),
        hash(),
        hash(),
        hash(),
        hash(),
        any::<[u8; 20]>(),
    )
        .prop_map(
            |(height, time_ms, chain_id, last, data, vals, next, state, history, proposer)| {
                Header {
                    chain_id,
                    height,
                    time_ms,
                    last_block_id: (height > 1).then_some(BlockId { hash: last }),
                    data_hash: data,
                    validators_hash: vals,
                    next_validators_hash: next,
                    state_root: state,
                    history_root: history,
                    proposer_address: Address(proposer),
                }
            },
        )
}

pub fn header_at(height: u64) -> impl Strategy<Value = Header> {
    header().prop_map(move |mut h| {
        h.height = height;
        h.last_block_id = (height > 1).then_some(BlockId {
            hash: Hash([7; 32]),
        });
        h
    })
}

pub fn commit(height: u64) -> impl Strategy<Value = Commit> {
    (
        any::<u32>(),
        hash(),
        prop::collection::btree_map(any::<[u8; 20]>(), any::<[u8; 32]>(), 1..8),
    )
        .prop_map(move |(round, block, sigs)| Commit {
            height,
            round,
            block_id: BlockId { hash: block },
            signatures: sigs
                .into_iter()
                .map(|(addr, half)| {
                    let mut sig = [0u8; 64];
                    sig[..32].copy_from_slice(&half);
                    CommitSig {
                        validator_address: Address(addr),
                        signature: Signature(sig),
                    }
                })
                .collect(),
        })
}

pub fn validator_set() -> impl Strategy<Value = ValidatorSet> {
    prop::collection::btree_map(any::<[u8; 32]>(), 1u64..1_000_000, 1..8).prop_map(
        |m: BTreeMap<_, _>| ValidatorSet {
            validators: m
                .into_iter()
                .map(|(k, p)| Validator {
                    pub_key: PublicKey(k),
                    voting_power: p,
                })
                .collect(),
        },
    )
}

pub fn signed_header_at(height: u64) -> impl Strategy<Value = SignedHeader> {
    (
        header_at(height),
        commit(height),
        option::of(validator_set()),
    )
        .prop_map(|(header, commit, validator_set)| SignedHeader {
            header,
            commit,
            validator_set,
        })
}

pub fn signed_header() -> impl Strategy<Value = SignedHeader> {
    (1u64..1_000_000).prop_flat_map(signed_header_at)
}

pub fn bare_header_at(height: u64) -> impl Strategy<Value = BareHeader> {
    (header_at(height), option::of(validator_set())).prop_map(|(header, validator_set)| {
        BareHeader {
            header,
            validator_set,
        }
    })
}

pub fn bare_header() -> impl Strategy<Value = BareHeader> {
    (1u64..1_000_000).prop_flat_map(bare_header_at)
}

pub fn write() -> impl Strategy<Value = Write> {
    (vec(any::<u8>(), 1..40), option::of(vec(any::<u8>(), 0..64)))
        .prop_map(|(key, value)| Write { key, value })
}

pub fn transaction() -> impl Strategy<Value = Transaction> {
    vec(write(), 1..4).prop_map(|writes| Transaction { writes })
}

pub fn block() -> impl Strategy<Value = Block> {
    (header(), vec(transaction(), 0..4)).prop_map(|(header, txs)| Block { header, txs })
}

pub fn sequential_headers(max: usize) -> impl Strategy<Value = (u64, Vec<SignedHeader>)> {
    (1u64..1_000_000, 0..=max).prop_flat_map(|(start, n)| {
        let items: Vec<_> = (0..n as u64).map(|i| signed_header_at(start + i)).collect();
        (Just(start), items)
    })
}

pub fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (1u64..u64::MAX / 2, 1u32..=50).prop_map(|(start_height, count)| Request::GetHeaders(
            GetHeaders {
                start_height,
                count
            }
        )),
        (
            1u64..1_000_000,
            1u32..=2000,
            0u64..1_000,
            hash(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(
                |(start_height, count, slack, commitment, range, headers_only, compact)| {
                    Request::GetHeadersV2(GetHeadersV2 {
                        start_height,
                        count,
                        end_height: start_height + u64::from(count) - 1 + slack,
                        commitment,
                        proof_kind: if range {
                            ProofKind::Range
                        } else {
                            ProofKind::LastLeaf
                        },
                        headers_only,
                        compact: headers_only && compact,
                    })
                }
            ),
        (vec(hash(), 1..=101), 1u64..u64::MAX).prop_map(|(locator, end_height)| {
            Request::GetHeaderChain(GetHeaderChain {
                locator,
                end_height,
            })
        }),
        (1u64..u64::MAX).prop_map(|snapshot_height| Request::GetSnapshotManifest(
            GetSnapshotManifest { snapshot_height }
        )),
        (
            1u64..u64::MAX,
            any::<u8>(),
            option::of(vec(any::<u8>(), 0..40))
        )
            .prop_map(|(snapshot_height, prefix, rest)| {
                let start_key = rest.map(|r| [vec![prefix], r].concat()).unwrap_or_default();
                Request::GetSnapshot(GetSnapshot {
                    snapshot_height,
                    prefix,
                    start_key,
                })
            }),
        prop::collection::btree_set(any::<[u8; 32]>(), 1..=128).prop_map(|s: BTreeSet<_>| {
            Request::GetBlocks(GetBlocks::ByHash(s.into_iter().map(Hash).collect()))
        }),
        (1u64..u64::MAX, 1u32..=128).prop_map(|(start_height, count)| Request::GetBlocks(
            GetBlocks::ByRange {
                start_height,
                count
            }
        )),
        (1u64..u64::MAX).prop_map(|height| Request::GetValidatorSet(GetValidatorSet { height })),
        (1u64..1_000_000, 1u64..1_000_000).prop_map(|(trusted_height, d)| Request::GetSkipChain(
            GetSkipChain {
                trusted_height,
                target_height: trusted_height + d
            }
        )),
    ]
}

pub fn snapshot_data() -> impl Strategy<Value = SnapshotData> {
    (
        1u64..u64::MAX,
        any::<u8>(),
        prop::collection::btree_map(vec(any::<u8>(), 0..20), vec(any::<u8>(), 0..50), 0..20),
        any::<bool>(),
    )
        .prop_map(
            |(snapshot_height, prefix, entries, prefix_exhausted)| SnapshotData {
                snapshot_height,
                prefix,
                entries: entries
                    .into_iter()
                    .map(|(k, value)| SnapshotEntry {
                        key: [vec![prefix], k].concat(),
                        value,
                    })
                    .collect(),
                prefix_exhausted,
            },
        )
}

pub fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::Busy),
        Just(ErrorCode::RateLimited),
        Just(ErrorCode::NotFound),
        Just(ErrorCode::BadRequest),
        Just(ErrorCode::Unsupported),
        Just(ErrorCode::Internal),
    ]
}

/// A `Response::Headers` with up to `max` sequential signed headers.
pub fn headers_response(max: usize) -> impl Strategy<Value = Response> {
    sequential_headers(max).prop_map(|(start_height, headers)| {
        Response::Headers(HeadersResponse {
            start_height,
            headers,
        })
    })
}

/// A `Response::HeadersV2`: up to `max` proven signed or bare headers, or a
/// commitment.
pub fn headers_v2_response(max: usize) -> impl Strategy<Value = Response> {
    prop_oneof![
        3 => (1u64..1_000_000, 0..=max, vec(hash(), 0..40), 0u64..100).prop_flat_map(
            |(start, n, proof, slack)| {
                let headers: Vec<_> = (0..n as u64).map(|i| signed_header_at(start + i)).collect();
                (headers, Just(proof)).prop_map(move |(headers, proof)| {
                    Response::HeadersV2(HeadersV2Response {
                        start_height: start,
                        end_height: start + n as u64 + slack,
                        result: HeadersV2Result::Headers {
                            headers,
                            proof: MmrProof { hashes: proof },
                        },
                    })
                })
            }
        ),
        3 => (1u64..1_000_000, 0..=max, vec(hash(), 0..40), 0u64..100).prop_flat_map(
            |(start, n, proof, slack)| {
                let headers: Vec<_> = (0..n as u64).map(|i| bare_header_at(start + i)).collect();
                (headers, Just(proof)).prop_map(move |(headers, proof)| {
                    Response::HeadersV2(HeadersV2Response {
                        start_height: start,
                        end_height: start + n as u64 + slack,
                        result: HeadersV2Result::BareHeaders {
                            headers,
                            proof: MmrProof { hashes: proof },
                        },
                    })
                })
            }
        ),
        3 => (1u64..1_000_000, 1..=max.max(1), vec(hash(), 0..40), 0u64..100).prop_flat_map(
            |(start, n, proof, slack)| {
                compact_headers(start, n).prop_map(move |headers| {
                    Response::HeadersV2(HeadersV2Response {
                        start_height: start,
                        end_height: start + n as u64 + slack,
                        result: HeadersV2Result::CompactHeaders {
                            headers: Box::new(headers),
                            proof: MmrProof { hashes: proof.clone() },
                        },
                    })
                })
            }
        ),
        1 => (1u64..1_000_000, hash()).prop_map(|(start, c)| Response::HeadersV2(HeadersV2Response {
            start_height: start,
            end_height: start + 10,
            result: HeadersV2Result::Commitment(c),
        })),
    ]
}

/// A valid `CompactHeaders` of `n` (at least 1) headers from `start`: any
/// columns, with every index in range and at most one validator change and
/// one attached set.
pub fn compact_headers(start: u64, n: usize) -> impl Strategy<Value = CompactHeaders> {
    let n = n.max(1);
    (
        chain_id(),
        hash(),
        hash(),
        0u64..u64::MAX / 2,
        vec(-1_000i64..1_000_000, n - 1),
        vec(any::<u8>(), n * 96),
        vec(any::<[u8; 20]>(), 1..4),
        vec(any::<u8>(), n),
        option::of((0..n as u32, hash())),
        option::of((0..n as u32, validator_set())),
    )
        .prop_map(
            move |(
                chain_id,
                parent,
                validators_hash,
                first_time_ms,
                deltas,
                roots,
                proposers,
                indexes,
                change,
                set,
            )| {
                let count = proposers.len() as u8;
                CompactHeaders {
                    chain_id,
                    parent_hash: (start > 1).then_some(parent),
                    validators_hash,
                    first_time_ms,
                    time_deltas_ms: deltas,
                    roots,
                    proposers: proposers.into_iter().map(Address).collect(),
                    proposer_indexes: indexes.into_iter().map(|i| i % count).collect(),
                    validators_changes: change.into_iter().collect(),
                    validator_sets: set.into_iter().collect(),
                }
            },
        )
}

pub fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (
            1u64..1_000_000,
            prop::collection::btree_set(1u64..10_000, 1..5)
        )
            .prop_flat_map(|(trusted, steps)| {
                let heights: Vec<u64> = steps.into_iter().map(|d| trusted + d).collect();
                let hops: Vec<_> = heights
                    .iter()
                    .map(|h| {
                        (signed_header_at(*h), validator_set()).prop_map(|(mut s, v)| {
                            s.validator_set = Some(v);
                            s
                        })
                    })
                    .collect();
                let target = *heights.last().unwrap_or(&(trusted + 1));
                hops.prop_map(move |hops| {
                    Response::SkipChain(SkipChainResponse {
                        trusted_height: trusted,
                        target_height: target,
                        hops,
                    })
                })
            }),
        headers_response(5),
        headers_v2_response(5),
        (option::of(header()), hash(), vec(hash(), 0..64)).prop_map(
            |(last_common, commitment, proof)| {
                let end_height = last_common.as_ref().map_or(5, |h| h.height + 3);
                Response::HeaderChain(HeaderChainResponse {
                    last_common,
                    end_height,
                    commitment,
                    proof: MmrProof { hashes: proof },
                })
            }
        ),
        (
            1u64..u64::MAX,
            prop::collection::btree_map(any::<u8>(), (any::<[u8; 32]>(), any::<u64>()), 0..10)
        )
            .prop_map(|(snapshot_height, m)| Response::SnapshotManifest(
                SnapshotManifest {
                    snapshot_height,
                    prefixes: m
                        .into_iter()
                        .map(|(prefix, (checksum, records))| PrefixChecksum {
                            prefix,
                            checksum,
                            records
                        })
                        .collect(),
                }
            )),
        snapshot_data().prop_map(Response::SnapshotData),
        vec(block(), 0..3).prop_map(|blocks| Response::Blocks(BlocksResponse { blocks })),
        (1u64..u64::MAX, validator_set()).prop_map(|(height, validator_set)| {
            Response::ValidatorSet(ValidatorSetResponse {
                height,
                validator_set,
            })
        }),
        (error_code(), "[ -~]{0,256}", any::<u32>()).prop_map(|(code, message, retry_after_ms)| {
            Response::Error(ErrorResponse {
                code,
                message,
                retry_after_ms,
            })
        }),
    ]
}

pub fn push() -> impl Strategy<Value = Push> {
    prop_oneof![
        (0u64..u64::MAX / 2, 0u64..u64::MAX / 2, any::<u32>()).prop_map(|(a, b, f)| {
            Push::Status(StatusResponse {
                features: Features(f),
                ..StatusResponse::new(a.min(b), a.max(b))
            })
        }),
        signed_header()
            .prop_map(|signed_header| Push::BlockAnnouncement(BlockAnnouncement { signed_header })),
    ]
}
