//! One test per protocol rule: a message that breaks it is rejected, on decode
//! and on encode, with an error naming the rule.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the assertion"
)]

mod strategies;

use headway_wire::{frame, limits::*, raw, *};
use proptest::{strategy::ValueTree, test_runner::TestRunner};
use prost::Message as _;

fn sample<T>(s: impl proptest::strategy::Strategy<Value = T>) -> T {
    s.new_tree(&mut TestRunner::deterministic())
        .expect("a value")
        .current()
}

fn decode_request(raw: raw::Request) -> Result<Request, WireError> {
    Request::decode(&raw.encode_to_vec())
}

fn decode_response(raw: raw::Response) -> Result<Response, WireError> {
    Response::decode(&raw.encode_to_vec())
}

fn get_headers(start_height: u64, count: u32) -> raw::Request {
    raw::Request {
        body: Some(raw::request::Body::GetHeaders(raw::GetHeaders {
            start_height,
            count,
        })),
    }
}

#[test]
fn get_headers_count_over_50_is_rejected() {
    let err = decode_request(get_headers(1, 51)).unwrap_err();
    assert_eq!(
        err,
        WireError::TooMany {
            field: "get_headers.count",
            max: 50,
            actual: 51
        }
    );
    assert!(
        Request::GetHeaders(GetHeaders {
            start_height: 1,
            count: 51
        })
        .encode()
        .is_err()
    );
    assert!(decode_request(get_headers(1, 50)).is_ok());
}

#[test]
fn get_headers_count_zero_is_rejected() {
    assert_eq!(
        decode_request(get_headers(1, 0)).unwrap_err(),
        WireError::Empty {
            field: "get_headers.count"
        }
    );
}

#[test]
fn start_height_zero_is_rejected() {
    assert_eq!(
        decode_request(get_headers(0, 10)).unwrap_err(),
        WireError::ZeroHeight {
            field: "get_headers.start_height"
        }
    );
    let v2 = Request::GetHeadersV2(GetHeadersV2 {
        start_height: 0,
        count: 1,
        end_height: 1,
        commitment: Hash::ZERO,
        proof_kind: ProofKind::LastLeaf,
        headers_only: false,
        compact: false,
    });
    assert!(matches!(v2.encode(), Err(WireError::ZeroHeight { .. })));
}

#[test]
fn wrong_hash_length_is_rejected() {
    let mut header = raw::Header::from(&sample(strategies::header_at(5)));
    header.data_hash.pop();
    let err = Header::try_from(header).unwrap_err();
    assert_eq!(
        err,
        WireError::Length {
            field: "header.data_hash",
            expected: 32,
            actual: 31
        }
    );
}

#[test]
fn missing_header_or_commit_is_rejected() {
    let signed = raw::SignedHeader::from(&sample(strategies::signed_header_at(3)));
    let mut no_header = signed.clone();
    no_header.header = None;
    assert_eq!(
        SignedHeader::try_from(no_header).unwrap_err(),
        WireError::Missing {
            field: "signed_header.header"
        }
    );
    let mut no_commit = signed;
    no_commit.commit = None;
    assert_eq!(
        SignedHeader::try_from(no_commit).unwrap_err(),
        WireError::Missing {
            field: "signed_header.commit"
        }
    );
}

#[test]
fn missing_envelope_body_is_rejected() {
    assert_eq!(
        decode_request(raw::Request { body: None }).unwrap_err(),
        WireError::Missing {
            field: "request.body"
        }
    );
}

#[test]
fn last_block_id_must_be_absent_exactly_at_height_one() {
    let mut h = sample(strategies::header_at(1));
    h.last_block_id = Some(BlockId::default());
    assert!(matches!(
        h.validate(),
        Err(WireError::Invalid {
            field: "header.last_block_id",
            ..
        })
    ));
    let mut h = sample(strategies::header_at(2));
    h.last_block_id = None;
    assert_eq!(
        h.validate(),
        Err(WireError::Missing {
            field: "header.last_block_id"
        })
    );
}

#[test]
fn chain_id_rules() {
    let mut h = sample(strategies::header_at(2));
    h.chain_id = String::new();
    assert_eq!(
        h.validate(),
        Err(WireError::Empty {
            field: "header.chain_id"
        })
    );
    h.chain_id = "x".repeat(51);
    assert!(matches!(
        h.validate(),
        Err(WireError::TooLong {
            field: "header.chain_id",
            max: 50,
            ..
        })
    ));
    h.chain_id = "has space".into();
    assert!(matches!(
        h.validate(),
        Err(WireError::Invalid {
            field: "header.chain_id",
            ..
        })
    ));
}

#[test]
fn unsorted_or_duplicate_validators_are_rejected() {
    let set = sample(strategies::validator_set());
    let mut raw_set = raw::ValidatorSet::from(&set);
    let v = raw_set.validators[0].clone();
    raw_set.validators.push(v);
    let err = ValidatorSet::try_from(raw_set).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::Unsorted {
                field: "validator_set.validators",
                ..
            } | WireError::Duplicate { .. }
        ),
        "{err}"
    );

    let two = ValidatorSet {
        validators: vec![
            Validator {
                pub_key: PublicKey([2; 32]),
                voting_power: 1,
            },
            Validator {
                pub_key: PublicKey([1; 32]),
                voting_power: 1,
            },
        ],
    };
    assert_eq!(
        two.validate(),
        Err(WireError::Unsorted {
            field: "validator_set.validators",
            index: 1
        })
    );
    let dup = ValidatorSet {
        validators: vec![
            Validator {
                pub_key: PublicKey([1; 32]),
                voting_power: 1,
            },
            Validator {
                pub_key: PublicKey([1; 32]),
                voting_power: 1,
            },
        ],
    };
    assert_eq!(
        dup.validate(),
        Err(WireError::Duplicate {
            field: "validator_set.validators",
            index: 1
        })
    );
}

#[test]
fn zero_power_and_total_power_overflow_are_rejected() {
    let zero = ValidatorSet {
        validators: vec![Validator {
            pub_key: PublicKey([1; 32]),
            voting_power: 0,
        }],
    };
    assert_eq!(
        zero.validate(),
        Err(WireError::Empty {
            field: "validator.voting_power"
        })
    );
    let huge = ValidatorSet {
        validators: vec![
            Validator {
                pub_key: PublicKey([1; 32]),
                voting_power: u64::MAX,
            },
            Validator {
                pub_key: PublicKey([2; 32]),
                voting_power: u64::MAX,
            },
        ],
    };
    assert!(matches!(
        huge.validate(),
        Err(WireError::Invalid {
            field: "validator_set.validators",
            ..
        })
    ));
}

#[test]
fn duplicate_commit_signatures_are_rejected() {
    let mut commit = sample(strategies::commit(4));
    commit.signatures.push(commit.signatures[0]);
    let err = Commit::try_from(raw::Commit::from(&commit)).unwrap_err();
    assert!(matches!(
        err,
        WireError::Duplicate {
            field: "commit.signatures",
            ..
        } | WireError::Unsorted { .. }
    ));
}

#[test]
fn commit_for_another_height_than_its_header_is_rejected() {
    let mut signed = sample(strategies::signed_header_at(9));
    signed.commit.height = 8;
    assert!(matches!(
        signed.validate(),
        Err(WireError::Invalid {
            field: "signed_header.commit.height",
            ..
        })
    ));
}

#[test]
fn non_sequential_headers_are_rejected() {
    let a = sample(strategies::signed_header_at(10));
    let b = sample(strategies::signed_header_at(12));
    let response = Response::Headers(HeadersResponse {
        start_height: 10,
        headers: vec![a.clone(), b],
    });
    let err = response.validate().unwrap_err();
    assert_eq!(
        err,
        WireError::Item {
            field: "headers_response.headers",
            index: 1,
            source: Box::new(WireError::NonSequential {
                field: "header.height",
                expected: 11,
                actual: 12
            })
        }
    );
    let wrong_start = Response::Headers(HeadersResponse {
        start_height: 9,
        headers: vec![a],
    });
    assert!(wrong_start.validate().is_err());
}

/// Two headers both at `u64::MAX` are not a sequence: the second would be
/// at `u64::MAX + 1`.
#[test]
fn a_sequence_past_the_last_height_is_rejected() {
    let top = sample(strategies::signed_header_at(u64::MAX));
    let response = Response::Headers(HeadersResponse {
        start_height: u64::MAX,
        headers: vec![top.clone()],
    });
    assert_eq!(response.validate(), Ok(()));
    let response = Response::Headers(HeadersResponse {
        start_height: u64::MAX,
        headers: vec![top.clone(), top],
    });
    assert_eq!(
        response.validate(),
        Err(WireError::Item {
            field: "headers_response.headers",
            index: 1,
            source: Box::new(WireError::Invalid {
                field: "header.height",
                rule: "heights of a sequence must not pass u64::MAX",
            })
        })
    );
}

#[test]
fn more_headers_than_requested_is_rejected() {
    let (start, headers) = sample(strategies::sequential_headers(5));
    let n = headers.len() as u32;
    if n < 2 {
        return;
    }
    let response = Response::Headers(HeadersResponse {
        start_height: start,
        headers,
    });
    let request = Request::GetHeaders(GetHeaders {
        start_height: start,
        count: n - 1,
    });
    assert!(matches!(
        response.validate_for(&request),
        Err(WireError::TooMany { .. })
    ));
}

#[test]
fn response_of_the_wrong_kind_is_rejected() {
    let response = Response::Blocks(BlocksResponse { blocks: vec![] });
    let request = Request::GetHeaders(GetHeaders {
        start_height: 1,
        count: 1,
    });
    assert!(matches!(
        response.validate_for(&request),
        Err(WireError::Invalid {
            field: "response.body",
            ..
        })
    ));
    let error = Response::Error(ErrorResponse {
        code: ErrorCode::Busy,
        message: "busy".into(),
        retry_after_ms: 100,
    });
    assert!(error.validate_for(&request).is_ok());
}

#[test]
fn headers_v2_range_must_end_at_or_below_end_height() {
    let q = GetHeadersV2 {
        start_height: 10,
        count: 5,
        end_height: 13,
        commitment: Hash::ZERO,
        proof_kind: ProofKind::Range,
        headers_only: false,
        compact: false,
    };
    assert!(matches!(
        q.validate(),
        Err(WireError::Invalid {
            field: "get_headers_v2.end_height",
            ..
        })
    ));
    let q = GetHeadersV2 {
        end_height: 14,
        ..q
    };
    assert!(q.validate().is_ok());
    let q = GetHeadersV2 {
        count: 2001,
        end_height: 10_000,
        ..q
    };
    assert!(matches!(
        q.validate(),
        Err(WireError::TooMany { max: 2000, .. })
    ));
}

#[test]
fn unknown_proof_kind_and_error_code_are_rejected() {
    let raw = raw::Request {
        body: Some(raw::request::Body::GetHeadersV2(raw::GetHeadersV2 {
            start_height: 1,
            count: 1,
            end_height: 1,
            commitment: vec![0; 32],
            proof_kind: 7,
            headers_only: false,
            compact: false,
        })),
    };
    assert!(matches!(
        decode_request(raw).unwrap_err(),
        WireError::Invalid {
            field: "get_headers_v2.proof_kind",
            ..
        }
    ));
    let raw = raw::Response {
        body: Some(raw::response::Body::Error(raw::ErrorResponse {
            code: 0,
            message: String::new(),
            retry_after_ms: 0,
        })),
    };
    assert!(matches!(
        decode_response(raw).unwrap_err(),
        WireError::Invalid {
            field: "error.code",
            ..
        }
    ));
}

#[test]
fn locator_bounds() {
    let too_long = GetHeaderChain {
        locator: vec![Hash::ZERO; MAX_LOCATOR_HASHES + 1],
        end_height: 1,
    };
    assert!(matches!(
        too_long.validate(),
        Err(WireError::TooMany { max: 101, .. })
    ));
    let empty = GetHeaderChain {
        locator: vec![],
        end_height: 1,
    };
    assert_eq!(
        empty.validate(),
        Err(WireError::Empty {
            field: "get_header_chain.locator"
        })
    );
}

#[test]
fn snapshot_entries_must_be_sorted_unique_and_under_the_prefix() {
    let entry = |k: &[u8]| SnapshotEntry {
        key: k.to_vec(),
        value: vec![1],
    };
    let data = |entries| SnapshotData {
        snapshot_height: 5,
        prefix: 3,
        entries,
        prefix_exhausted: false,
    };
    assert!(
        data(vec![entry(&[3, 1]), entry(&[3, 2])])
            .validate()
            .is_ok()
    );
    assert_eq!(
        data(vec![entry(&[3, 2]), entry(&[3, 1])]).validate(),
        Err(WireError::Unsorted {
            field: "snapshot_data.entries",
            index: 1
        })
    );
    assert_eq!(
        data(vec![entry(&[3, 1]), entry(&[3, 1])]).validate(),
        Err(WireError::Duplicate {
            field: "snapshot_data.entries",
            index: 1
        })
    );
    assert!(matches!(
        data(vec![entry(&[4, 1])]).validate(),
        Err(WireError::Item { index: 0, .. })
    ));
    let request = GetSnapshot {
        snapshot_height: 5,
        prefix: 3,
        start_key: vec![3, 5],
    };
    assert!(matches!(
        data(vec![entry(&[3, 1])]).validate_for(&request),
        Err(WireError::Invalid { .. })
    ));
    assert!(data(vec![entry(&[3, 5])]).validate_for(&request).is_ok());
}

#[test]
fn prefix_over_one_byte_is_rejected() {
    let raw = raw::Request {
        body: Some(raw::request::Body::GetSnapshot(raw::GetSnapshot {
            snapshot_height: 1,
            prefix: 256,
            start_key: vec![],
        })),
    };
    assert!(matches!(
        decode_request(raw).unwrap_err(),
        WireError::Invalid {
            field: "get_snapshot.prefix",
            ..
        }
    ));
}

#[test]
fn get_blocks_rules() {
    assert!(matches!(
        GetBlocks::ByHash(vec![]).validate(),
        Err(WireError::Empty { .. })
    ));
    assert_eq!(
        GetBlocks::ByHash(vec![Hash([1; 32]), Hash([1; 32])]).validate(),
        Err(WireError::Duplicate {
            field: "get_blocks.by_hash",
            index: 1
        })
    );
    assert!(matches!(
        GetBlocks::ByRange {
            start_height: 1,
            count: MAX_BLOCKS_PER_REQUEST + 1
        }
        .validate(),
        Err(WireError::TooMany { .. })
    ));
}

#[test]
fn write_rules() {
    assert_eq!(
        Write {
            key: vec![],
            value: None
        }
        .validate(),
        Err(WireError::Empty { field: "write.key" })
    );
    assert!(matches!(
        Write {
            key: vec![1],
            value: Some(vec![0; MAX_VALUE_LEN + 1])
        }
        .validate(),
        Err(WireError::TooLong {
            field: "write.value",
            ..
        })
    ));
    assert_eq!(
        Transaction { writes: vec![] }.validate(),
        Err(WireError::Empty {
            field: "transaction.writes"
        })
    );
}

#[test]
fn status_base_above_height_is_rejected() {
    assert!(Push::Status(StatusResponse::new(5, 4)).encode().is_err());
}

#[test]
fn oversize_frame_is_refused_before_allocation() {
    // A prefix announcing 1 GiB: refused from the 4 prefix bytes alone.
    let prefix = (1u32 << 30).to_be_bytes();
    assert_eq!(
        frame::payload_len(prefix, MAX_REQUEST_FRAME),
        Err(FrameError::TooLarge {
            len: 1 << 30,
            max: MAX_REQUEST_FRAME
        })
    );
    let mut reader = frame::FrameReader::new(MAX_REQUEST_FRAME);
    assert!(matches!(
        reader.feed(&prefix),
        Err(FrameError::TooLarge { .. })
    ));
    // Just over the limit for the kind, though under the global maximum.
    let over = ((MAX_REQUEST_FRAME + 1) as u32).to_be_bytes();
    assert!(matches!(
        frame::decode_frame::<Request>(&over, MAX_REQUEST_FRAME),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn truncated_and_trailing_frames_are_rejected() {
    let request = Request::GetHeaders(GetHeaders {
        start_height: 1,
        count: 1,
    });
    let bytes = frame::encode_frame(&request).unwrap();
    assert!(matches!(
        frame::decode_frame::<Request>(&bytes[..bytes.len() - 1], MAX_REQUEST_FRAME),
        Err(FrameError::Truncated { needed: 1 })
    ));
    let mut extra = bytes.clone();
    extra.push(0);
    assert_eq!(
        frame::decode_frame::<Request>(&extra, MAX_REQUEST_FRAME),
        Err(FrameError::TrailingBytes { extra: 1 })
    );
}

#[test]
fn response_limits_follow_the_request_kind() {
    assert_eq!(
        RequestKind::GetHeaders.max_response_frame(),
        MAX_HEADERS_RESPONSE_FRAME
    );
    assert_eq!(
        RequestKind::GetBlocks.max_response_frame(),
        MAX_BLOCKS_RESPONSE_FRAME
    );
    // A snapshot chunk that fits the snapshot limit is refused where a header-chain answer is expected.
    let data = Response::SnapshotData(SnapshotData {
        snapshot_height: 1,
        prefix: 1,
        entries: (0..200u32)
            .map(|i| SnapshotEntry {
                key: [vec![1], i.to_be_bytes().to_vec()].concat(),
                value: vec![0; 1000],
            })
            .collect(),
        prefix_exhausted: true,
    });
    let bytes = frame::encode_frame(&data).unwrap();
    assert!(
        frame::decode_frame::<Response>(&bytes, RequestKind::GetSnapshot.max_response_frame())
            .is_ok()
    );
    assert!(matches!(
        frame::decode_frame::<Response>(&bytes, RequestKind::GetHeaderChain.max_response_frame()),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn errors_name_the_item_and_rule() {
    let mut tx = raw::Transaction {
        writes: vec![
            raw::Write {
                key: vec![1],
                value: None
            };
            2
        ],
    };
    tx.writes[1].key.clear();
    let err = Transaction::try_from(tx).unwrap_err();
    assert_eq!(
        err.to_string(),
        "transaction.writes[1]: write.key: must not be empty or zero"
    );
}

#[test]
fn skip_chain_rules() {
    assert!(matches!(
        GetSkipChain {
            trusted_height: 5,
            target_height: 5
        }
        .validate(),
        Err(WireError::Invalid {
            field: "get_skip_chain.target_height",
            ..
        })
    ));
    let mut hop = sample(strategies::signed_header_at(9));
    hop.validator_set = Some(sample(strategies::validator_set()));
    let ok = SkipChainResponse {
        trusted_height: 4,
        target_height: 9,
        hops: vec![hop.clone()],
    };
    assert!(ok.validate().is_ok());
    let short = SkipChainResponse {
        target_height: 10,
        ..ok.clone()
    };
    assert!(matches!(
        short.validate(),
        Err(WireError::Invalid {
            field: "skip_chain_response.hops",
            ..
        })
    ));
    let mut no_set = ok.clone();
    no_set.hops[0].validator_set = None;
    assert!(matches!(
        no_set.validate(),
        Err(WireError::Item { index: 0, .. })
    ));
    let backwards = SkipChainResponse {
        trusted_height: 9,
        ..ok
    };
    assert!(backwards.validate().is_err());
}

fn v2_request(headers_only: bool) -> GetHeadersV2 {
    GetHeadersV2 {
        start_height: 10,
        count: 5,
        end_height: 20,
        commitment: Hash::ZERO,
        proof_kind: ProofKind::LastLeaf,
        headers_only,
        compact: false,
    }
}

fn v2_answer(result: HeadersV2Result) -> HeadersV2Response {
    HeadersV2Response {
        start_height: 10,
        end_height: 20,
        result,
    }
}

#[test]
fn headers_only_requests_get_bare_headers_and_others_signed_ones() {
    let signed = sample(strategies::signed_header_at(10));
    let signed = v2_answer(HeadersV2Result::Headers {
        headers: vec![signed.clone()],
        proof: MmrProof::default(),
    });
    let bare = v2_answer(HeadersV2Result::BareHeaders {
        headers: vec![sample(strategies::bare_header_at(10))],
        proof: MmrProof::default(),
    });
    let wrong_kind = Err(WireError::Invalid {
        field: "headers_v2_response.result",
        rule: "headers_only requests get bare headers (compact only if asked), others signed headers",
    });
    assert_eq!(signed.validate_for(&v2_request(false)), Ok(()));
    assert_eq!(bare.validate_for(&v2_request(true)), Ok(()));
    // A request for compact ranges may get them plain (an older server).
    let compact_request = GetHeadersV2 {
        compact: true,
        ..v2_request(true)
    };
    assert_eq!(bare.validate_for(&compact_request), Ok(()));
    assert_eq!(bare.validate_for(&v2_request(false)), wrong_kind);
    assert_eq!(signed.validate_for(&v2_request(true)), wrong_kind);
    // Through the envelope too.
    assert_eq!(
        Response::HeadersV2(bare).validate_for(&Request::GetHeadersV2(v2_request(false))),
        wrong_kind
    );
    // A commitment answers either.
    let commitment = v2_answer(HeadersV2Result::Commitment(Hash([1; 32])));
    assert_eq!(commitment.validate_for(&v2_request(true)), Ok(()));
    assert_eq!(commitment.validate_for(&v2_request(false)), Ok(()));
}

#[test]
fn more_bare_headers_than_requested_are_rejected() {
    let headers = (10..13)
        .map(|h| sample(strategies::bare_header_at(h)))
        .collect();
    let bare = v2_answer(HeadersV2Result::BareHeaders {
        headers,
        proof: MmrProof::default(),
    });
    assert!(bare.validate().is_ok());
    let request = GetHeadersV2 {
        count: 2,
        ..v2_request(true)
    };
    assert_eq!(
        bare.validate_for(&request),
        Err(WireError::TooMany {
            field: "headers_v2_response.bare_headers",
            max: 2,
            actual: 3
        })
    );
}

#[test]
fn bare_header_errors_name_the_bare_item() {
    let good = sample(strategies::bare_header_at(10));
    let answer = |bare: BareHeader| {
        Response::HeadersV2(v2_answer(HeadersV2Result::BareHeaders {
            headers: vec![good.clone(), bare],
            proof: MmrProof::default(),
        }))
    };
    let item = |source| WireError::Item {
        field: "headers_v2_response.bare_headers",
        index: 1,
        source: Box::new(source),
    };
    let next = sample(strategies::bare_header_at(11));

    // A bad header: an empty chain id.
    let mut bad_header = next.clone();
    bad_header.header.chain_id.clear();
    let error = answer(bad_header.clone()).validate().unwrap_err();
    assert!(
        matches!(
            &error,
            WireError::Item {
                field: "headers_v2_response.bare_headers",
                index: 1,
                ..
            }
        ),
        "{error:?}"
    );
    // The same on decode (from the raw types, which check nothing) and encode.
    let bytes = raw::Response::from(&answer(bad_header.clone())).encode_to_vec();
    assert_eq!(Response::decode(&bytes), Err(error.clone()));
    assert_eq!(answer(bad_header).encode(), Err(error));

    // A bad set: empty, then a validator with no power.
    let mut empty_set = next.clone();
    empty_set.validator_set = Some(ValidatorSet { validators: vec![] });
    let error = answer(empty_set.clone()).validate().unwrap_err();
    assert_eq!(error, item(empty_set.validate().unwrap_err()));
    let bytes = raw::Response::from(&answer(empty_set)).encode_to_vec();
    assert_eq!(Response::decode(&bytes), Err(error));
    let mut no_power = next.clone();
    let mut set = sample(strategies::validator_set());
    set.validators[0].voting_power = 0;
    no_power.validator_set = Some(set);
    let error = answer(no_power.clone()).validate().unwrap_err();
    assert_eq!(error, item(no_power.validate().unwrap_err()));
    let bytes = raw::Response::from(&answer(no_power)).encode_to_vec();
    assert_eq!(Response::decode(&bytes), Err(error));

    // A gap in the heights, named after the bare headers too.
    let gap = sample(strategies::bare_header_at(12));
    assert_eq!(
        answer(gap).validate(),
        Err(item(WireError::NonSequential {
            field: "header.height",
            expected: 11,
            actual: 12
        }))
    );
    // Past end_height.
    let Response::HeadersV2(mut short) = answer(next) else {
        unreachable!("a v2 answer")
    };
    short.end_height = 10;
    assert!(matches!(
        short.validate(),
        Err(WireError::Invalid {
            field: "headers_v2_response.bare_headers",
            ..
        })
    ));
}

#[test]
fn a_bare_header_needs_its_header() {
    let bare = raw::BareHeader::from(&sample(strategies::bare_header_at(4)));
    let no_header = raw::BareHeader {
        header: None,
        ..bare.clone()
    };
    assert_eq!(
        BareHeader::try_from(no_header).unwrap_err(),
        WireError::Missing {
            field: "bare_header.header"
        }
    );
    assert!(BareHeader::try_from(bare).is_ok());
}
