//! The counting pass that runs before prost (`headway_wire::scan`): a frame
//! of minimal items one past a limit is refused with `TooMany` naming the
//! field (wrapped in `Item` as the full decode wraps it), the same frame at
//! the limit passes, and valid messages at their limits still decode.
//! Protobuf's merge rules are followed (a message field twice adds up, a
//! `oneof` member replaced starts again), malformed bytes are left to
//! prost, and a refusal is always one the full decode would make too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the assertion"
)]

mod strategies;

use headway_wire::{
    limits::*,
    raw,
    scan::{self, COMMIT_SIG_MIN_LEN, VALIDATOR_MIN_LEN},
    *,
};
use proptest::{prelude::*, strategy::ValueTree, test_runner::TestRunner};
use prost::{
    Message as _,
    encoding::{WireType, encode_key, encode_varint},
};
use strategies::*;

fn sample<T>(s: impl Strategy<Value = T>) -> T {
    s.new_tree(&mut TestRunner::deterministic())
        .unwrap()
        .current()
}

// ------------------------------------------------------------ encoding

/// Field `tag`, length-delimited, holding `bytes`.
fn field(tag: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 6);
    encode_key(tag, WireType::LengthDelimited, &mut out);
    encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// `bytes` inside the length-delimited fields `path`, outermost first.
fn nest(path: &[u32], bytes: &[u8]) -> Vec<u8> {
    path.iter()
        .rev()
        .fold(bytes.to_vec(), |inner, &tag| field(tag, &inner))
}

/// `n` empty items of the repeated field `tag`.
fn empties(tag: u32, n: usize) -> Vec<u8> {
    field(tag, &[]).repeat(n)
}

fn too_many(field: &'static str, max: usize) -> WireError {
    WireError::TooMany {
        field,
        max,
        actual: max as u64 + 1,
    }
}

fn item(field: &'static str, index: usize, source: WireError) -> WireError {
    WireError::Item {
        field,
        index,
        source: Box::new(source),
    }
}

/// The full decode without the counting pass: prost, then `TryFrom`.
fn slow_response(bytes: &[u8]) -> Result<Response, WireError> {
    raw::Response::decode(bytes)?.try_into()
}

// ------------------------------------------------------------ one past the limit

/// A repeated field of a response, where it is, and its limit.
struct Case {
    /// Length-delimited fields from the `Response` down to the message
    /// holding the repeated field.
    path: &'static [u32],
    tag: u32,
    max: usize,
    field: &'static str,
    /// The error wrapping, outermost first, as `TryFrom` names the items
    /// on the path (each item at index 0).
    items: &'static [&'static str],
}

const RESPONSE_CASES: &[Case] = &[
    Case {
        path: &[1],
        tag: 2,
        max: MAX_HEADERS_PER_BATCH as usize,
        field: "headers_response.headers",
        items: &[],
    },
    Case {
        path: &[2, 3],
        tag: 1,
        max: MAX_HEADERS_V2 as usize,
        field: "headers_v2_response.headers",
        items: &[],
    },
    Case {
        path: &[2, 5],
        tag: 1,
        max: MAX_HEADERS_V2 as usize,
        field: "headers_v2_response.bare_headers",
        items: &[],
    },
    Case {
        path: &[2, 3, 2],
        tag: 1,
        max: MAX_MMR_PROOF_HASHES,
        field: "mmr_proof.hashes",
        items: &[],
    },
    Case {
        path: &[2, 5, 2],
        tag: 1,
        max: MAX_MMR_PROOF_HASHES,
        field: "mmr_proof.hashes",
        items: &[],
    },
    Case {
        path: &[2, 6],
        tag: 7,
        max: MAX_COMPACT_PROPOSERS,
        field: "compact_headers.proposers",
        items: &[],
    },
    Case {
        path: &[2, 6],
        tag: 9,
        max: MAX_HEADERS_V2 as usize,
        field: "compact_headers.validators_changes",
        items: &[],
    },
    Case {
        path: &[2, 6],
        tag: 10,
        max: MAX_HEADERS_V2 as usize,
        field: "compact_headers.validator_sets",
        items: &[],
    },
    Case {
        path: &[2, 6, 11],
        tag: 1,
        max: MAX_MMR_PROOF_HASHES,
        field: "mmr_proof.hashes",
        items: &[],
    },
    Case {
        path: &[3, 4],
        tag: 1,
        max: MAX_MMR_PROOF_HASHES,
        field: "mmr_proof.hashes",
        items: &[],
    },
    Case {
        path: &[4],
        tag: 2,
        max: 256,
        field: "snapshot_manifest.prefixes",
        items: &[],
    },
    Case {
        path: &[5],
        tag: 3,
        max: MAX_SNAPSHOT_ENTRIES,
        field: "snapshot_data.entries",
        items: &[],
    },
    Case {
        path: &[6],
        tag: 1,
        max: MAX_BLOCKS_PER_REQUEST as usize,
        field: "blocks_response.blocks",
        items: &[],
    },
    Case {
        path: &[6, 1],
        tag: 2,
        max: MAX_TXS_PER_BLOCK,
        field: "block.txs",
        items: &["blocks_response.blocks"],
    },
    Case {
        path: &[6, 1, 2],
        tag: 1,
        max: MAX_WRITES_PER_TX,
        field: "transaction.writes",
        items: &["blocks_response.blocks", "block.txs"],
    },
    Case {
        path: &[9],
        tag: 3,
        max: MAX_SKIP_HOPS,
        field: "skip_chain_response.hops",
        items: &[],
    },
    Case {
        path: &[1, 2, 2],
        tag: 4,
        max: MAX_VALIDATORS,
        field: "commit.signatures",
        items: &["headers_response.headers"],
    },
    Case {
        path: &[9, 3, 3],
        tag: 1,
        max: MAX_VALIDATORS,
        field: "validator_set.validators",
        items: &["skip_chain_response.hops"],
    },
    Case {
        path: &[2, 5, 1, 2],
        tag: 1,
        max: MAX_VALIDATORS,
        field: "validator_set.validators",
        items: &["headers_v2_response.bare_headers"],
    },
    Case {
        path: &[2, 6, 10, 2],
        tag: 1,
        max: MAX_VALIDATORS,
        field: "validator_set.validators",
        items: &["compact_headers.validator_sets"],
    },
    Case {
        path: &[8, 2],
        tag: 1,
        max: MAX_VALIDATORS,
        field: "validator_set.validators",
        items: &[],
    },
];

impl Case {
    fn bytes(&self, n: usize) -> Vec<u8> {
        nest(self.path, &empties(self.tag, n))
    }

    fn refusal(&self) -> WireError {
        self.items
            .iter()
            .rev()
            .fold(too_many(self.field, self.max), |e, field| item(field, 0, e))
    }
}

#[test]
fn one_item_past_a_response_limit_is_refused_before_prost() {
    for case in RESPONSE_CASES {
        let over = case.bytes(case.max + 1);
        assert_eq!(scan::response(&over), Err(case.refusal()), "{}", case.field);
        assert_eq!(
            Response::decode(&over),
            Err(case.refusal()),
            "{}",
            case.field
        );
        // The full decode refuses it too.
        assert!(slow_response(&over).is_err(), "{}", case.field);
    }
}

#[test]
fn the_same_items_at_the_limit_pass_the_count() {
    for case in RESPONSE_CASES {
        let at = case.bytes(case.max);
        let passes = scan::response(&at);
        if case.field == "commit.signatures" || case.field == "validator_set.validators" {
            // Empty signatures and validators are too short: the rule on
            // room refuses them (tested below); valid ones at the limit
            // decode (`full_commits_and_sets_decode`).
            let mut err = passes.clone().unwrap_err();
            while let WireError::Item { source, .. } = err {
                err = *source;
            }
            assert!(
                matches!(err, WireError::TooMany { field, max, actual }
                    if field == case.field && max < case.max && actual == case.max as u64),
                "{}: {passes:?}",
                case.field
            );
            continue;
        }
        assert_eq!(passes, Ok(()), "{}", case.field);
        // The full decode then gives its own answer (an error about the
        // empty items, mostly).
        assert_eq!(Response::decode(&at), slow_response(&at), "{}", case.field);
    }
}

#[test]
fn packed_and_unpacked_time_deltas_are_counted() {
    let max = MAX_HEADERS_V2 as usize - 1;
    let refusal = too_many("compact_headers.time_deltas_ms", max);
    // Packed: one byte per delta.
    let packed = |n: usize| nest(&[2, 6, 5], &vec![0; n]);
    assert_eq!(scan::response(&packed(max + 1)), Err(refusal.clone()));
    assert_eq!(scan::response(&packed(max)), Ok(()));
    // Unpacked: a key per delta; and the two forms add up.
    let unpacked = |n: usize| {
        let mut out = Vec::new();
        for _ in 0..n {
            encode_key(5, WireType::Varint, &mut out);
            out.push(0);
        }
        out
    };
    let both = |a: usize, b: usize| {
        let mut body = field(5, &vec![0; a]);
        body.extend(unpacked(b));
        nest(&[2, 6], &body)
    };
    assert_eq!(scan::response(&nest(&[2, 6], &unpacked(max))), Ok(()));
    assert_eq!(
        scan::response(&nest(&[2, 6], &unpacked(max + 1))),
        Err(refusal.clone())
    );
    assert_eq!(scan::response(&both(1000, max - 1000)), Ok(()));
    assert_eq!(scan::response(&both(1000, max - 999)), Err(refusal.clone()));
    // prost reads the same count.
    let raw = raw::Response::decode(&both(1000, max - 1000)[..]).unwrap();
    let Some(raw::response::Body::HeadersV2(v2)) = raw.body else {
        panic!("a v2 response");
    };
    let Some(raw::headers_v2_response::Result::CompactHeaders(c)) = v2.result else {
        panic!("a compact range");
    };
    assert_eq!(c.time_deltas_ms.len(), max);
}

#[test]
fn one_item_past_a_request_limit_is_refused() {
    let cases: [(&[u32], usize, &'static str); 2] = [
        (&[3], MAX_LOCATOR_HASHES, "get_header_chain.locator"),
        (
            &[6, 1],
            MAX_BLOCKS_PER_REQUEST as usize,
            "get_blocks.by_hash",
        ),
    ];
    for (path, max, name) in cases {
        let over = nest(path, &empties(1, max + 1));
        assert_eq!(scan::request(&over), Err(too_many(name, max)));
        assert_eq!(Request::decode(&over), Err(too_many(name, max)));
        assert_eq!(scan::request(&nest(path, &empties(1, max))), Ok(()));
    }
}

#[test]
fn one_signature_or_validator_past_a_push_limit_is_refused() {
    // Push.block_announcement . signed_header . commit . signatures
    let over = nest(&[2, 1, 2], &empties(4, MAX_VALIDATORS + 1));
    let refusal = too_many("commit.signatures", MAX_VALIDATORS);
    assert_eq!(scan::push(&over), Err(refusal.clone()));
    assert_eq!(Push::decode(&over), Err(refusal));
    // ... . validator_set . validators
    let over = nest(&[2, 1, 3], &empties(1, MAX_VALIDATORS + 1));
    let refusal = too_many("validator_set.validators", MAX_VALIDATORS);
    assert_eq!(scan::push(&over), Err(refusal.clone()));
    assert_eq!(Push::decode(&over), Err(refusal));
}

/// Items of one field back to back (each key one byte) are counted in one
/// go, anything else field by field: both count the same, and a run stops
/// where its message ends.
#[test]
fn runs_of_items_count_as_one_by_one() {
    let max = MAX_MMR_PROOF_HASHES;
    let refusal = too_many("mmr_proof.hashes", max);
    let hash = field(1, &[7; 32]);
    let proof = |items: Vec<u8>| nest(&[3, 4], &items);
    // One run.
    assert_eq!(scan::response(&proof(hash.repeat(max))), Ok(()));
    assert_eq!(
        scan::response(&proof(hash.repeat(max + 1))),
        Err(refusal.clone())
    );
    // An unknown field between two runs.
    let mut unknown = Vec::new();
    encode_key(9, WireType::Varint, &mut unknown);
    unknown.push(1);
    let with = |n: usize| [hash.repeat(n / 2), unknown.clone(), hash.repeat(n - n / 2)].concat();
    assert_eq!(scan::response(&proof(with(max))), Ok(()));
    assert_eq!(scan::response(&proof(with(max + 1))), Err(refusal.clone()));
    // Keys in two bytes (0x8a 0x00 is field 1, length-delimited, as prost
    // reads it): one by one.
    let long_key = [vec![0x8a, 0x00, 32], vec![7; 32]].concat();
    assert_eq!(
        scan::response(&proof(long_key.repeat(max + 1))),
        Err(refusal)
    );
    let bytes = proof(long_key.repeat(max));
    assert_eq!(scan::response(&bytes), Ok(()));
    let raw = raw::Response::decode(&bytes[..]).unwrap();
    assert!(matches!(
        raw.body,
        Some(raw::response::Body::HeaderChain(c))
            if c.proof.as_ref().is_some_and(|p| p.hashes.len() == max)
    ));
    // A full proof, then the response's field 1 (`last_common`), whose key
    // is the hashes' key: not a hash.
    let bytes = nest(&[3], &[field(4, &hash.repeat(max)), field(1, &[])].concat());
    assert_eq!(scan::response(&bytes), Ok(()));
    let raw = raw::Response::decode(&bytes[..]).unwrap();
    assert!(matches!(
        raw.body,
        Some(raw::response::Body::HeaderChain(c))
            if c.proof.as_ref().is_some_and(|p| p.hashes.len() == max) && c.last_common.is_some()
    ));
}

// ------------------------------------------------------------ room

/// A commit of `sigs` signatures, `sig` each, with a block id.
fn commit_bytes(sigs: usize, sig: &[u8]) -> Vec<u8> {
    let mut commit = Vec::new();
    encode_key(1, WireType::Varint, &mut commit);
    encode_varint(START, &mut commit);
    commit.extend(field(3, &field(1, &[7; 32])));
    commit.extend(field(4, sig).repeat(sigs));
    commit
}

const START: u64 = 5;

#[test]
fn a_commit_with_more_signatures_than_room_is_refused() {
    // Two-byte signatures: a 40-byte commit has room for none.
    let commit = commit_bytes(3, &[]);
    let bytes = nest(&[2, 1], &field(2, &commit));
    let bytes_taken = commit.len() + 1; // the length prefix
    assert_eq!(
        scan::push(&bytes),
        Err(WireError::TooMany {
            field: "commit.signatures",
            max: bytes_taken / COMMIT_SIG_MIN_LEN,
            actual: 3,
        })
    );
    // In a range, inside the item.
    let signed = field(2, &commit);
    let bytes = nest(&[2, 3], &[field(1, &signed), field(1, &signed)].concat());
    assert_eq!(
        scan::response(&bytes),
        Err(item(
            "headers_v2_response.headers",
            0,
            WireError::TooMany {
                field: "commit.signatures",
                max: bytes_taken / COMMIT_SIG_MIN_LEN,
                actual: 3,
            }
        ))
    );
}

#[test]
fn a_set_with_more_validators_than_room_is_refused() {
    let set = empties(1, 5);
    let bytes = nest(&[8], &field(2, &set));
    assert_eq!(
        scan::response(&bytes),
        Err(WireError::TooMany {
            field: "validator_set.validators",
            max: (set.len() + 1) / VALIDATOR_MIN_LEN,
            actual: 5,
        })
    );
}

#[test]
fn a_short_signature_among_valid_ones_keeps_its_own_error() {
    // One 63-byte signature in an otherwise valid signed header: room
    // enough, so `TryFrom` names the length.
    let mut signed = sample(signed_header_at(START));
    signed.validator_set = None;
    let mut raw = raw::SignedHeader::from(&signed);
    raw.commit.as_mut().unwrap().signatures[0].signature.pop();
    let bytes = nest(&[1], &field(2, &raw.encode_to_vec()));
    assert_eq!(scan::response(&bytes), Ok(()));
    let err = Response::decode(&bytes).unwrap_err();
    assert_eq!(err, slow_response(&bytes).unwrap_err());
    assert!(err.to_string().contains("commit_sig.signature"), "{err}");
}

#[test]
fn valid_minimal_signatures_and_validators_have_room() {
    let sig = [field(1, &[1; 20]), field(2, &[2; 64])].concat();
    assert_eq!(field(4, &sig).len(), COMMIT_SIG_MIN_LEN);
    let validator = [field(1, &[3; 32]), vec![0x10, 1]].concat();
    assert_eq!(field(1, &validator).len(), VALIDATOR_MIN_LEN);
    // A commit and a set of nothing but minimal items fit exactly.
    let commit = field(4, &sig).repeat(50);
    assert_eq!(scan::push(&nest(&[2, 1, 2], &commit)), Ok(()));
    let set = field(1, &validator).repeat(50);
    assert_eq!(scan::response(&nest(&[8, 2], &set)), Ok(()));
}

// ------------------------------------------------------------ merge rules

#[test]
fn a_message_field_seen_twice_adds_up() {
    let max = MAX_HEADERS_PER_BATCH as usize;
    // Two `headers` bodies: prost merges them into one of 2 x 30.
    let half = nest(&[1], &empties(2, 30));
    let twice = [half.clone(), half].concat();
    assert_eq!(
        raw::Response::decode(&twice[..]).map(
            |r| matches!(r.body, Some(raw::response::Body::Headers(h)) if h.headers.len() == 60)
        ),
        Ok(true)
    );
    assert_eq!(
        scan::response(&twice),
        Err(WireError::TooMany {
            field: "headers_response.headers",
            max,
            actual: max as u64 + 1,
        })
    );
    // A commit twice in one signed header: its signatures add up.
    let sig = [field(1, &[1; 20]), field(2, &[2; 64])].concat();
    let sigs = field(4, &sig).repeat(MAX_VALIDATORS / 2 + 1);
    let signed = [field(2, &sigs), field(2, &sigs)].concat();
    assert_eq!(
        scan::push(&nest(&[2, 1], &signed)),
        Err(too_many("commit.signatures", MAX_VALIDATORS))
    );
}

#[test]
fn a_replaced_oneof_member_starts_again() {
    // 30 headers, a v2 commitment replacing them, 30 headers again: prost
    // keeps the last 30.
    let headers = nest(&[1], &empties(2, 30));
    let commitment = nest(&[2], &field(4, &[9; 32]));
    let bytes = [headers.clone(), commitment, headers].concat();
    assert_eq!(
        raw::Response::decode(&bytes[..]).map(
            |r| matches!(r.body, Some(raw::response::Body::Headers(h)) if h.headers.len() == 30)
        ),
        Ok(true)
    );
    assert_eq!(scan::response(&bytes), Ok(()));
    // In a v2 result too: bare headers, then signed, then bare again.
    let bare = field(5, &empties(1, 1500));
    let signed = field(3, &empties(1, 10));
    let bytes = nest(&[2], &[bare.clone(), signed, bare.clone()].concat());
    assert_eq!(scan::response(&bytes), Ok(()));
    let bytes = nest(&[2], &[bare.clone(), bare].concat());
    assert!(matches!(
        scan::response(&bytes),
        Err(WireError::TooMany {
            field: "headers_v2_response.bare_headers",
            ..
        })
    ));
}

#[test]
fn malformed_bytes_are_left_to_prost() {
    let over = RESPONSE_CASES[0].bytes(MAX_HEADERS_PER_BATCH as usize + 1);
    // Truncated: the outer length runs past the end, prost's error.
    let cut = &over[..over.len() - 3];
    assert_eq!(scan::response(cut), Ok(()));
    assert_eq!(Response::decode(cut), slow_response(cut));
    assert!(matches!(Response::decode(cut), Err(WireError::Decode(_))));
    // A wrong wire type for the repeated field: prost's error.
    let mut bytes = Vec::new();
    encode_key(2, WireType::Varint, &mut bytes);
    bytes.push(1);
    let bytes = nest(&[1], &bytes);
    assert_eq!(scan::response(&bytes), Ok(()));
    assert!(matches!(
        Response::decode(&bytes),
        Err(WireError::Decode(_))
    ));
}

/// A field whose length runs past the end of its message: prost reads the
/// whole field (its length is checked against the buffer, the message's
/// only after it), so the count must read it too, as it does by walking
/// the bytes with prost's own loop.
#[test]
fn a_field_running_past_its_message_is_counted() {
    let signed = field(2, &empties(4, MAX_VALIDATORS + 1));
    // `headers` announces 1 byte: the key of its first item.
    let mut bytes = vec![0x0a, 0x01];
    bytes.extend(field(2, &signed));
    assert!(matches!(
        raw::Response::decode(&bytes[..]),
        Err(e) if e.to_string().contains("delimited length exceeded")
    ));
    let refusal = item(
        "headers_response.headers",
        0,
        too_many("commit.signatures", MAX_VALIDATORS),
    );
    assert_eq!(scan::response(&bytes), Err(refusal.clone()));
    assert_eq!(Response::decode(&bytes), Err(refusal));
}

// ------------------------------------------------------------ valid at the limit

fn signed_run(start: u64, n: usize) -> Vec<SignedHeader> {
    (start..start + n as u64)
        .map(|h| {
            let mut s = sample(signed_header_at(h));
            s.validator_set = None;
            s
        })
        .collect()
}

/// `response` encoded, then with an unknown field appended so that the fast
/// path leaves it to the counting pass and prost.
fn through_prost(response: &Response) -> Vec<u8> {
    let mut bytes = response.encode().unwrap();
    encode_key(99, WireType::Varint, &mut bytes);
    bytes.push(1);
    assert_eq!(fast::decode_response(&bytes), None);
    bytes
}

#[test]
fn valid_messages_at_their_limits_decode() {
    let full_batch = Response::Headers(HeadersResponse {
        start_height: START,
        headers: signed_run(START, MAX_HEADERS_PER_BATCH as usize),
    });
    let bytes = through_prost(&full_batch);
    assert_eq!(Response::decode(&bytes), Ok(full_batch));

    let bare: Vec<BareHeader> = (START..START + u64::from(MAX_HEADERS_V2))
        .map(|h| BareHeader {
            header: sample(header_at(h)),
            validator_set: None,
        })
        .collect();
    let range = Response::HeadersV2(HeadersV2Response {
        start_height: START,
        end_height: START + u64::from(MAX_HEADERS_V2) - 1,
        result: HeadersV2Result::BareHeaders {
            headers: bare,
            proof: MmrProof {
                hashes: vec![Hash([4; 32]); MAX_MMR_PROOF_HASHES],
            },
        },
    });
    let bytes = through_prost(&range);
    assert_eq!(Response::decode(&bytes), Ok(range));

    let n = MAX_HEADERS_V2 as usize;
    let compact = CompactHeaders {
        chain_id: "headway-test".into(),
        parent_hash: Some(Hash([1; 32])),
        validators_hash: Hash([2; 32]),
        first_time_ms: 1_000,
        time_deltas_ms: vec![1; n - 1],
        roots: vec![3; n * 96],
        proposers: (0..MAX_COMPACT_PROPOSERS)
            .map(|i| Address([i as u8; 20]))
            .collect(),
        proposer_indexes: (0..n).map(|i| i as u8).collect(),
        validators_changes: (0..n as u32).map(|i| (i, Hash([5; 32]))).collect(),
        validator_sets: vec![(0, sample(validator_set()))],
    };
    let response = Response::HeadersV2(HeadersV2Response {
        start_height: START,
        end_height: START + n as u64 - 1,
        result: HeadersV2Result::CompactHeaders {
            headers: Box::new(compact),
            proof: MmrProof::default(),
        },
    });
    let bytes = response.encode().unwrap();
    assert_eq!(scan::response(&bytes), Ok(()));
    assert_eq!(Response::decode(&bytes), Ok(response));

    let blocks = Response::Blocks(BlocksResponse {
        blocks: (0..MAX_BLOCKS_PER_REQUEST)
            .map(|_| Block {
                header: sample(header()),
                txs: vec![],
            })
            .collect(),
    });
    let bytes = blocks.encode().unwrap();
    assert_eq!(Response::decode(&bytes), Ok(blocks));

    let hops: Vec<SignedHeader> = signed_run(START, MAX_SKIP_HOPS)
        .into_iter()
        .map(|mut s| {
            s.validator_set = Some(sample(validator_set()));
            s
        })
        .collect();
    let skip_chain = Response::SkipChain(SkipChainResponse {
        trusted_height: START - 1,
        target_height: START + MAX_SKIP_HOPS as u64 - 1,
        hops,
    });
    let bytes = skip_chain.encode().unwrap();
    assert_eq!(Response::decode(&bytes), Ok(skip_chain));
}

#[test]
fn full_commits_and_sets_decode() {
    let address = |i: usize| {
        let mut a = [0u8; 20];
        a[..8].copy_from_slice(&(i as u64).to_be_bytes());
        Address(a)
    };
    let mut signed = signed_run(START, 1).remove(0);
    signed.commit.signatures = (0..MAX_VALIDATORS)
        .map(|i| CommitSig {
            validator_address: address(i),
            signature: Signature([1; 64]),
        })
        .collect();
    let set = ValidatorSet {
        validators: (0..MAX_VALIDATORS)
            .map(|i| {
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&(i as u64).to_be_bytes());
                Validator {
                    pub_key: PublicKey(key),
                    voting_power: 1,
                }
            })
            .collect(),
    };
    signed.validator_set = Some(set.clone());
    let push = Push::BlockAnnouncement(BlockAnnouncement {
        signed_header: signed,
    });
    let bytes = push.encode().unwrap();
    assert_eq!(scan::push(&bytes), Ok(()));
    assert_eq!(Push::decode(&bytes), Ok(push));

    let response = Response::ValidatorSet(ValidatorSetResponse {
        height: START,
        validator_set: set,
    });
    let bytes = response.encode().unwrap();
    assert_eq!(Response::decode(&bytes), Ok(response));

    let request = Request::GetBlocks(GetBlocks::ByHash(
        (0..MAX_BLOCKS_PER_REQUEST as u8)
            .map(|i| Hash([i; 32]))
            .collect(),
    ));
    assert_eq!(Request::decode(&request.encode().unwrap()), Ok(request));
    let request = Request::GetHeaderChain(GetHeaderChain {
        locator: (0..MAX_LOCATOR_HASHES as u8)
            .map(|i| Hash([i; 32]))
            .collect(),
        end_height: 1,
    });
    assert_eq!(Request::decode(&request.encode().unwrap()), Ok(request));
}

// ------------------------------------------------------------ never wrongly

/// Frames near a limit, split in two occurrences or not, then cut or
/// changed at one byte.
fn near_a_limit() -> impl Strategy<Value = Vec<u8>> {
    (
        0..RESPONSE_CASES.len(),
        -2i64..=2,
        any::<bool>(),
        any::<prop::sample::Index>(),
        prop_oneof![Just(None), any::<u8>().prop_map(Some)],
        any::<bool>(),
    )
        .prop_map(|(case, delta, split, at, byte, cut)| {
            let case = &RESPONSE_CASES[case];
            let n = (case.max as i64 + delta) as usize;
            let mut bytes = if split {
                [case.bytes(n / 2), case.bytes(n - n / 2)].concat()
            } else {
                case.bytes(n)
            };
            let at = at.index(bytes.len());
            match (byte, cut) {
                (Some(b), _) => bytes[at] = b,
                (None, true) => bytes.truncate(at),
                (None, false) => {}
            }
            bytes
        })
}

/// The frames of [`near_a_limit`] reach both outcomes: refused by the
/// count, and let through to prost.
#[test]
fn near_a_limit_reaches_both_outcomes() {
    let mut runner = TestRunner::deterministic();
    let (mut refused, mut passed) = (0, 0);
    for _ in 0..200 {
        let bytes = near_a_limit().new_tree(&mut runner).unwrap().current();
        match scan::response(&bytes) {
            Err(_) => refused += 1,
            Ok(()) => passed += 1,
        }
    }
    assert!(
        refused > 20 && passed > 20,
        "{refused} refused, {passed} passed"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// What the counting pass refuses the full decode refuses too, and
    /// what it lets through decodes exactly as without it.
    #[test]
    fn refusals_are_the_full_decodes_too(bytes in near_a_limit()) {
        let slow = slow_response(&bytes);
        match scan::response(&bytes) {
            Err(refused) => {
                prop_assert!(slow.is_err(), "refused {refused}, slow path {slow:?}");
                prop_assert_eq!(Response::decode(&bytes), Err(refused));
            }
            Ok(()) => prop_assert_eq!(Response::decode(&bytes), slow),
        }
    }

    #[test]
    fn valid_responses_pass(response in response()) {
        let bytes = response.encode().unwrap();
        prop_assert_eq!(scan::response(&bytes), Ok(()));
    }

    #[test]
    fn valid_requests_and_pushes_pass(request in request(), push in push()) {
        prop_assert_eq!(scan::request(&request.encode().unwrap()), Ok(()));
        prop_assert_eq!(scan::push(&push.encode().unwrap()), Ok(()));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = scan::request(&bytes);
        let _ = scan::response(&bytes);
        let _ = scan::push(&bytes);
    }
}
