//! The fast header-response decoder (`headway_wire::fast`) against the slow
//! path (`raw::Response::decode` + `TryFrom`): valid responses take the fast
//! path and decode to the same value; mutated, truncated and random bytes
//! never panic, and whenever the fast path answers the slow path gives the
//! same `Ok`; `Response::decode` always gives exactly the slow path's answer,
//! errors included. Non-canonical encodings prost accepts (repeated fields,
//! unknown fields, a second body) fall back and still decode.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the assertion"
)]

mod strategies;

use headway_wire::{fast, frame, limits::*, raw, *};
use proptest::{prelude::*, sample::Index, strategy::ValueTree, test_runner::TestRunner};
use prost::Message as _;
use strategies::*;

/// The slow path: prost's raw types, then the `TryFrom` conversion.
fn slow(bytes: &[u8]) -> Result<Response, WireError> {
    raw::Response::decode(bytes)?.try_into()
}

/// Checks the fast path against the slow path on `bytes` and returns the
/// fast path's answer: an answer must be the slow path's `Ok` value, and
/// `Response::decode` must give exactly what the slow path gives.
fn agrees(bytes: &[u8]) -> Option<Response> {
    let fast = fast::decode_response(bytes);
    let slow = slow(bytes);
    if let Some(fast) = &fast {
        assert_eq!(
            slow.as_ref(),
            Ok(fast),
            "the fast path answered, the slow path disagrees"
        );
    }
    assert_eq!(
        Response::decode(bytes),
        slow,
        "Response::decode is not the slow path's answer"
    );
    fast
}

fn header_responses() -> impl Strategy<Value = Response> {
    prop_oneof![headers_response(6), headers_v2_response(6)]
}

/// One edit of an encoding.
#[derive(Debug, Clone)]
enum Mutation {
    Set(Index, u8),
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
    /// Copies `len` bytes from the index and inserts them right after:
    /// sometimes a whole field, seen twice.
    Duplicate(Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, len)| Mutation::Duplicate(i, len)),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match mutation {
        Mutation::Set(i, b) => bytes[i.index(n)] = *b,
        Mutation::Flip(i, bit) => bytes[i.index(n)] ^= 1 << bit,
        Mutation::Insert(i, b) => bytes.insert(i.index(n + 1), *b),
        Mutation::Delete(i) => {
            bytes.remove(i.index(n));
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(n)),
        Mutation::Duplicate(i, len) => {
            let start = i.index(n);
            let end = (start + usize::from(*len)).min(n);
            let copy = bytes[start..end].to_vec();
            bytes.splice(end..end, copy);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn valid_header_responses_take_the_fast_path(response in header_responses()) {
        let bytes = response.encode().unwrap();
        let expected = Ok(response.clone());
        prop_assert_eq!(fast::decode_response(&bytes), Some(response.clone()));
        prop_assert_eq!(&slow(&bytes), &expected);
        prop_assert_eq!(&Response::decode(&bytes), &expected);
        let framed = frame::encode_frame(&response).unwrap();
        prop_assert_eq!(frame::decode_frame::<Response>(&framed, MAX_FRAME), Ok(response));
    }

    #[test]
    fn other_responses_are_left_to_the_slow_path(response in response()) {
        let bytes = response.encode().unwrap();
        let is_headers = matches!(response, Response::Headers(_) | Response::HeadersV2(_));
        prop_assert_eq!(agrees(&bytes).is_some(), is_headers);
    }

    #[test]
    fn mutated_encodings_agree_with_the_slow_path(
        response in header_responses(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = response.encode().unwrap();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        agrees(&bytes);
    }

    #[test]
    fn random_bytes_agree_with_the_slow_path(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        agrees(&bytes);
    }

    /// Random bodies behind a header response's key and length, so that
    /// decoding gets past the envelope.
    #[test]
    fn random_bodies_agree_with_the_slow_path(
        field in 1u32..=2,
        body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = Vec::new();
        put_bytes(&mut bytes, field, &body);
        agrees(&bytes);
    }
}

/// A rule a valid header response can be made to break.
#[derive(Debug, Clone, Copy)]
enum Break {
    StartHeightZero,
    HeaderHeight,
    CommitHeight,
    ChainId,
    LastBlockId,
    SignatureOrder,
    EmptyValidatorSet,
    EndHeight,
}

fn headers_mut(response: &mut Response) -> Option<&mut Vec<SignedHeader>> {
    match response {
        Response::Headers(r) => Some(&mut r.headers),
        Response::HeadersV2(HeadersV2Response {
            result: HeadersV2Result::Headers { headers, .. },
            ..
        }) => Some(headers),
        _ => None,
    }
}

/// Breaks `rule` in `response`; false when it has nothing to break it in.
fn break_rule(response: &mut Response, rule: Break, at: Index) -> bool {
    if let Break::StartHeightZero = rule {
        match response {
            Response::Headers(r) => r.start_height = 0,
            Response::HeadersV2(r) => r.start_height = 0,
            _ => return false,
        }
        return true;
    }
    if let (Break::EndHeight, Response::HeadersV2(r)) = (rule, &mut *response) {
        let HeadersV2Result::Headers { headers, .. } = &r.result else {
            return false;
        };
        let Some(last) = headers.last() else {
            return false;
        };
        r.end_height = last.header.height - 1;
        return true;
    }
    let Some(headers) = headers_mut(response).filter(|h| !h.is_empty()) else {
        return false;
    };
    let i = at.index(headers.len());
    let signed = &mut headers[i];
    match rule {
        Break::HeaderHeight => signed.header.height += 1,
        Break::CommitHeight => signed.commit.height += 1,
        Break::ChainId => signed.header.chain_id.push(' '),
        Break::LastBlockId => {
            signed.header.last_block_id = match signed.header.last_block_id {
                Some(_) => None,
                None => Some(BlockId::default()),
            }
        }
        Break::SignatureOrder => signed.commit.signatures.reverse(),
        Break::EmptyValidatorSet => {
            signed.validator_set = Some(ValidatorSet { validators: vec![] })
        }
        Break::StartHeightZero | Break::EndHeight => return false,
    }
    // Reversing one signature keeps the order.
    !matches!(rule, Break::SignatureOrder) || headers[i].commit.signatures.len() > 1
}

fn rule_break() -> impl Strategy<Value = Break> {
    prop::sample::select(vec![
        Break::StartHeightZero,
        Break::HeaderHeight,
        Break::CommitHeight,
        Break::ChainId,
        Break::LastBlockId,
        Break::SignatureOrder,
        Break::EmptyValidatorSet,
        Break::EndHeight,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Well-formed encodings of responses that break a rule (encoded from
    /// the raw types, which check nothing) fall back, and the slow path
    /// rejects them.
    #[test]
    fn rule_breakers_fall_back(
        mut response in header_responses(),
        rule in rule_break(),
        at in any::<Index>(),
    ) {
        prop_assume!(break_rule(&mut response, rule, at));
        let bytes = raw::Response::from(&response).encode_to_vec();
        prop_assert_eq!(agrees(&bytes), None);
        prop_assert!(slow(&bytes).is_err());
    }
}

/// Mutations are not vacuous: some mutated encodings still take the fast
/// path (a changed hash byte), most fall back, and a few decode only on
/// the slow path (prost accepts more than the fast path's canonical shape).
#[test]
fn mutations_reach_both_outcomes() {
    let mut runner = TestRunner::deterministic();
    let strategy = (header_responses(), mutation());
    let (mut fast_ok, mut slow_only_ok, mut errors) = (0, 0, 0);
    for _ in 0..3000 {
        let (response, m) = strategy.new_tree(&mut runner).unwrap().current();
        let mut bytes = response.encode().unwrap();
        apply(&mut bytes, &m);
        match (agrees(&bytes), slow(&bytes)) {
            (Some(_), _) => fast_ok += 1,
            (None, Ok(_)) => slow_only_ok += 1,
            (None, Err(_)) => errors += 1,
        }
    }
    assert!(fast_ok > 100, "{fast_ok} {slow_only_ok} {errors}");
    assert!(errors > 100, "{fast_ok} {slow_only_ok} {errors}");
    assert!(slow_only_ok > 0, "{fast_ok} {slow_only_ok} {errors}");
}

// ------------------------------------------------------------ hand-built cases

fn sample<T>(s: impl Strategy<Value = T>) -> T {
    s.new_tree(&mut TestRunner::deterministic())
        .unwrap()
        .current()
}

fn put_key(out: &mut Vec<u8>, field: u32, wire_type: prost::encoding::WireType) {
    prost::encoding::encode_key(field, wire_type, out);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, prost::encoding::WireType::LengthDelimited);
    prost::encoding::encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, field: u32, value: u64) {
    put_key(out, field, prost::encoding::WireType::Varint);
    prost::encoding::encode_varint(value, out);
}

const START: u64 = 5;

/// A valid signed header at `START`, with its header and commit encoded.
struct Parts {
    signed: SignedHeader,
    header: Vec<u8>,
    commit: Vec<u8>,
}

fn parts() -> Parts {
    let mut signed = sample(signed_header_at(START));
    signed.validator_set = None;
    let raw = raw::SignedHeader::from(&signed);
    Parts {
        header: raw.header.unwrap().encode_to_vec(),
        commit: raw.commit.unwrap().encode_to_vec(),
        signed,
    }
}

/// `Response { headers: { start_height: START, headers: [signed_header] } }`.
fn headers_response_bytes(signed_header: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_varint(&mut body, 1, START);
    put_bytes(&mut body, 2, signed_header);
    let mut out = Vec::new();
    put_bytes(&mut out, 1, &body);
    out
}

fn response_bytes(header: &[u8], commit: &[u8]) -> Vec<u8> {
    headers_response_bytes(&encoded::signed_header_from_parts(header, commit, None))
}

fn expected(p: &Parts) -> Response {
    Response::Headers(HeadersResponse {
        start_height: START,
        headers: vec![p.signed.clone()],
    })
}

#[test]
fn the_hand_built_encoding_takes_the_fast_path() {
    let p = parts();
    let bytes = response_bytes(&p.header, &p.commit);
    assert_eq!(bytes, expected(&p).encode().unwrap());
    assert_eq!(agrees(&bytes), Some(expected(&p)));
}

#[test]
fn a_repeated_scalar_falls_back() {
    // prost keeps the last value; the fast path leaves it to prost.
    let p = parts();
    let mut header = p.header.clone();
    put_varint(&mut header, 2, START);
    let bytes = response_bytes(&header, &p.commit);
    assert_eq!(agrees(&bytes), None);
    assert_eq!(Response::decode(&bytes), Ok(expected(&p)));

    // A different value: prost's last one wins, and breaks a rule here.
    let mut header = p.header.clone();
    put_varint(&mut header, 2, START + 1);
    assert_eq!(agrees(&response_bytes(&header, &p.commit)), None);
}

#[test]
fn a_repeated_message_falls_back() {
    // prost merges an empty `block_id` into the first one: no change.
    let p = parts();
    let mut commit = p.commit.clone();
    put_bytes(&mut commit, 3, &[]);
    let bytes = response_bytes(&p.header, &commit);
    assert_eq!(agrees(&bytes), None);
    assert_eq!(Response::decode(&bytes), Ok(expected(&p)));

    // A header sent in two halves: prost merges them into one.
    let raw = raw::Header::from(&p.signed.header);
    let first = raw::Header {
        proposer_address: vec![],
        ..raw.clone()
    };
    let second = raw::Header {
        proposer_address: raw.proposer_address.clone(),
        ..Default::default()
    };
    let mut signed = Vec::new();
    put_bytes(&mut signed, 1, &first.encode_to_vec());
    put_bytes(&mut signed, 1, &second.encode_to_vec());
    put_bytes(&mut signed, 2, &p.commit);
    let bytes = headers_response_bytes(&signed);
    assert_eq!(agrees(&bytes), None);
    assert_eq!(Response::decode(&bytes), Ok(expected(&p)));
}

#[test]
fn a_repeated_signature_field_falls_back() {
    let p = parts();
    let sig = p.signed.commit.signatures[0];
    let mut sig_bytes = Vec::new();
    put_bytes(&mut sig_bytes, 1, &sig.validator_address.0);
    put_bytes(&mut sig_bytes, 2, &sig.signature.0);
    put_bytes(&mut sig_bytes, 2, &sig.signature.0);
    let mut commit = raw::Commit::from(&p.signed.commit);
    commit.signatures.clear();
    let mut commit = commit.encode_to_vec();
    put_bytes(&mut commit, 4, &sig_bytes);
    let bytes = response_bytes(&p.header, &commit);
    assert_eq!(agrees(&bytes), None);
    let mut expected = expected(&p);
    if let Response::Headers(r) = &mut expected {
        r.headers[0].commit.signatures.truncate(1);
    }
    assert_eq!(Response::decode(&bytes), Ok(expected));
}

#[test]
fn a_second_body_falls_back() {
    let p = parts();
    let once = response_bytes(&p.header, &p.commit);
    // prost merges the second `headers` into the first: two headers at START.
    let twice = [once.clone(), once].concat();
    assert_eq!(agrees(&twice), None);
    assert!(slow(&twice).is_err());

    // A v2 answer with both results: prost keeps the last one.
    let v2 = Response::HeadersV2(HeadersV2Response {
        start_height: START,
        end_height: START + 10,
        result: HeadersV2Result::Headers {
            headers: vec![p.signed.clone()],
            proof: MmrProof::default(),
        },
    });
    let Some(raw::response::Body::HeadersV2(body)) = raw::Response::from(&v2).body else {
        unreachable!("a v2 response")
    };
    let mut body = body.encode_to_vec();
    put_bytes(&mut body, 4, &[9; 32]);
    let mut bytes = Vec::new();
    put_bytes(&mut bytes, 2, &body);
    assert_eq!(agrees(&bytes), None);
    assert_eq!(
        Response::decode(&bytes),
        Ok(Response::HeadersV2(HeadersV2Response {
            start_height: START,
            end_height: START + 10,
            result: HeadersV2Result::Commitment(Hash([9; 32])),
        }))
    );
}

#[test]
fn unknown_fields_fall_back() {
    let p = parts();
    for field in [11, 15, 1000] {
        let mut header = p.header.clone();
        put_varint(&mut header, field, 1);
        let bytes = response_bytes(&header, &p.commit);
        assert_eq!(agrees(&bytes), None, "field {field}");
        // prost skips unknown fields.
        assert_eq!(Response::decode(&bytes), Ok(expected(&p)));
    }
    let mut commit = p.commit.clone();
    put_bytes(&mut commit, 9, b"x");
    let bytes = response_bytes(&p.header, &commit);
    assert_eq!(agrees(&bytes), None);
    assert_eq!(Response::decode(&bytes), Ok(expected(&p)));
}

#[test]
fn wrong_wire_types_fall_back() {
    let p = parts();
    // The height as fixed64 (wire type 1), then as a length-delimited field.
    let mut header = p.header.clone();
    put_key(&mut header, 2, prost::encoding::WireType::SixtyFourBit);
    header.extend_from_slice(&START.to_le_bytes());
    assert_eq!(agrees(&response_bytes(&header, &p.commit)), None);
    let mut header = p.header.clone();
    put_bytes(&mut header, 2, &[5]);
    assert_eq!(agrees(&response_bytes(&header, &p.commit)), None);
}

#[test]
fn wrong_lengths_fall_back_and_the_slow_path_reports_them() {
    let p = parts();
    let mut raw = raw::Header::from(&p.signed.header);
    raw.data_hash.pop();
    let bytes = response_bytes(&raw.encode_to_vec(), &p.commit);
    assert_eq!(agrees(&bytes), None);
    assert!(matches!(
        Response::decode(&bytes),
        Err(WireError::Item { .. } | WireError::Length { .. })
    ));
    // A missing hash is an empty one to the slow path: also the wrong length.
    raw.data_hash.clear();
    let bytes = response_bytes(&raw.encode_to_vec(), &p.commit);
    assert_eq!(agrees(&bytes), None);
    assert!(slow(&bytes).is_err());
}

#[test]
fn fields_in_any_order_take_the_fast_path() {
    let p = parts();
    let raw = raw::Header::from(&p.signed.header);
    let last = raw::Header {
        chain_id: raw.chain_id.clone(),
        height: raw.height,
        ..Default::default()
    };
    let first = raw::Header {
        chain_id: String::new(),
        height: 0,
        ..raw
    };
    let header = [first.encode_to_vec(), last.encode_to_vec()].concat();
    // Commit before header, too.
    let mut signed = Vec::new();
    put_bytes(&mut signed, 2, &p.commit);
    put_bytes(&mut signed, 1, &header);
    assert_eq!(agrees(&headers_response_bytes(&signed)), Some(expected(&p)));
}

#[test]
fn overlong_varints_are_read_as_prost_reads_them() {
    let p = parts();
    // Height 5 in four bytes, after the key of field 2 in two: prost accepts both.
    let mut raw = raw::Header::from(&p.signed.header);
    raw.height = 0;
    let mut header = raw.encode_to_vec();
    header.extend_from_slice(&[0x90, 0x00, 0x85, 0x80, 0x80, 0x00]);
    assert_eq!(
        agrees(&response_bytes(&header, &p.commit)),
        Some(expected(&p))
    );
    // Ten bytes whose last has more than one bit overflow u64: prost refuses.
    let mut header = raw.encode_to_vec();
    header.extend_from_slice(&[
        0x10, 0x85, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02,
    ]);
    let bytes = response_bytes(&header, &p.commit);
    assert_eq!(agrees(&bytes), None);
    assert!(matches!(slow(&bytes), Err(WireError::Decode(_))));
}

#[test]
fn a_round_over_u32_falls_back() {
    // prost truncates it; the fast path leaves that to prost.
    let p = parts();
    let mut raw = raw::Commit::from(&p.signed.commit);
    raw.round = 0;
    let mut commit = raw.encode_to_vec();
    put_varint(&mut commit, 2, (1 << 32) + 7);
    let bytes = response_bytes(&p.header, &commit);
    assert_eq!(agrees(&bytes), None);
    let mut expected = expected(&p);
    if let Response::Headers(r) = &mut expected {
        r.headers[0].commit.round = 7;
    }
    assert_eq!(Response::decode(&bytes), Ok(expected));
}

#[test]
fn every_truncation_falls_back_without_panicking() {
    let response = sample(headers_response(4).prop_filter(
        "some headers",
        |r| matches!(r, Response::Headers(h) if h.headers.len() > 1),
    ));
    let bytes = response.encode().unwrap();
    for len in 0..bytes.len() {
        assert_eq!(agrees(&bytes[..len]), None, "{len}");
        assert!(slow(&bytes[..len]).is_err());
    }
    assert!(agrees(&bytes).is_some());
}

#[test]
fn rule_breakers_fall_back_and_get_the_slow_paths_error() {
    let p = parts();
    // Start height 0, a height gap, 51 headers.
    let mut body = Vec::new();
    put_bytes(
        &mut body,
        2,
        &encoded::signed_header_from_parts(&p.header, &p.commit, None),
    );
    let mut bytes = Vec::new();
    put_bytes(&mut bytes, 1, &body);
    assert_eq!(agrees(&bytes), None);
    assert_eq!(
        Response::decode(&bytes),
        Err(WireError::ZeroHeight {
            field: "headers_response.start_height"
        })
    );

    let signed = encoded::signed_header_from_parts(&p.header, &p.commit, None);
    let mut body = Vec::new();
    put_varint(&mut body, 1, START);
    for _ in 0..=MAX_HEADERS_PER_BATCH {
        put_bytes(&mut body, 2, &signed);
    }
    let mut bytes = Vec::new();
    put_bytes(&mut bytes, 1, &body);
    assert_eq!(agrees(&bytes), None);
    assert!(matches!(
        Response::decode(&bytes),
        Err(WireError::TooMany { max: 50, .. })
    ));

    let mut body = Vec::new();
    put_varint(&mut body, 1, START - 1);
    put_bytes(&mut body, 2, &signed);
    let mut bytes = Vec::new();
    put_bytes(&mut bytes, 1, &body);
    assert_eq!(agrees(&bytes), None);
    assert!(matches!(
        Response::decode(&bytes),
        Err(WireError::Item { .. })
    ));
}

#[test]
fn validator_sets_ride_along() {
    let mut signed = sample(signed_header_at(START));
    signed.validator_set = Some(sample(validator_set()));
    let response = Response::Headers(HeadersResponse {
        start_height: START,
        headers: vec![signed.clone()],
    });
    assert_eq!(agrees(&response.encode().unwrap()), Some(response));

    // An invalid set (power 0) falls back; the slow path names the rule.
    let mut raw = raw::SignedHeader::from(&signed);
    if let Some(set) = &mut raw.validator_set {
        set.validators[0].voting_power = 0;
    }
    let bytes = headers_response_bytes(&raw.encode_to_vec());
    assert_eq!(agrees(&bytes), None);
    assert!(slow(&bytes).is_err());
}

/// An unknown field of nested groups inside an attached validator set:
/// prost counts the nesting from the top of the response, so the set must
/// not be decoded on its own (where the count starts again at zero).
#[test]
fn deep_groups_in_a_validator_set_fall_back() {
    let mut signed = sample(signed_header_at(START));
    signed.validator_set = Some(sample(validator_set()));
    let raw = raw::SignedHeader::from(&signed);
    let set = raw.validator_set.clone().unwrap().encode_to_vec();
    let mut outcomes = Vec::new();
    for depth in 90..=100 {
        let mut deep = set.clone();
        for _ in 0..depth {
            put_key(&mut deep, 15, prost::encoding::WireType::StartGroup);
        }
        for _ in 0..depth {
            put_key(&mut deep, 15, prost::encoding::WireType::EndGroup);
        }
        let alone = raw::ValidatorSet::decode(&deep[..]).is_ok();
        let whole = raw::SignedHeader {
            validator_set: None,
            ..raw.clone()
        };
        let mut signed_bytes = whole.encode_to_vec();
        put_bytes(&mut signed_bytes, 3, &deep);
        let bytes = headers_response_bytes(&signed_bytes);
        outcomes.push((depth, alone, slow(&bytes).is_ok()));
        assert_eq!(agrees(&bytes), None, "depth {depth}");
    }
    // The case that matters exists: the set decodes alone, not in place.
    assert!(
        outcomes.iter().any(|&(_, alone, whole)| alone && !whole),
        "{outcomes:?}"
    );
}
