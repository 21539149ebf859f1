//! The fast header-response decoder (`headway_wire::fast`) against the slow
//! path (`raw::Response::decode` + `TryFrom`): valid responses take the fast
//! path and decode to the same value; mutated, truncated and random bytes
//! never panic, and whenever the fast path answers the slow path gives the
//! same `Ok`; `Response::decode` always gives exactly the slow path's answer,
//! errors included, but where the counting pass before prost
//! (`headway_wire::scan`) refuses a frame, which the slow path must then
//! refuse too. Non-canonical encodings prost accepts (repeated fields,
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
/// `Response::decode` must give exactly what the slow path gives (or the
/// counting pass's refusal, which the slow path must share).
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
    let expected = match headway_wire::scan::response(bytes) {
        Err(refused) => {
            assert!(
                slow.is_err(),
                "refused ({refused}) what the slow path accepts"
            );
            Err(refused)
        }
        Ok(()) => slow,
    };
    assert_eq!(
        Response::decode(bytes),
        expected,
        "Response::decode is not the slow path's answer"
    );
    fast
}

fn header_responses() -> impl Strategy<Value = Response> {
    prop_oneof![headers_response(6), headers_v2_response(6)]
        .prop_filter("compact ranges are prost's", |r| !is_compact(r))
}

/// Whether `response` is a compact v2 range, which the fast path leaves to prost.
fn is_compact(response: &Response) -> bool {
    matches!(
        response,
        Response::HeadersV2(HeadersV2Response {
            result: HeadersV2Result::CompactHeaders { .. },
            ..
        })
    )
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
        let is_headers = matches!(response, Response::Headers(_) | Response::HeadersV2(_))
            && !is_compact(&response);
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

/// One header of a response, signed or bare, for [`break_rule`] to edit.
struct Item<'a> {
    header: &'a mut Header,
    /// `None` for a bare header.
    commit: Option<&'a mut Commit>,
    validator_set: &'a mut Option<ValidatorSet>,
}

fn signed_item(headers: &mut [SignedHeader], at: Index) -> Option<Item<'_>> {
    let n = headers.len();
    headers.get_mut(at.index(n.max(1))).map(|s| Item {
        header: &mut s.header,
        commit: Some(&mut s.commit),
        validator_set: &mut s.validator_set,
    })
}

/// The header at `at` in a header response, if it has any.
fn item_mut(response: &mut Response, at: Index) -> Option<Item<'_>> {
    match response {
        Response::Headers(r) => signed_item(&mut r.headers, at),
        Response::HeadersV2(r) => match &mut r.result {
            HeadersV2Result::Headers { headers, .. } => signed_item(headers, at),
            HeadersV2Result::BareHeaders { headers, .. } => {
                let n = headers.len();
                headers.get_mut(at.index(n.max(1))).map(|b| Item {
                    header: &mut b.header,
                    commit: None,
                    validator_set: &mut b.validator_set,
                })
            }
            HeadersV2Result::Commitment(_) | HeadersV2Result::CompactHeaders { .. } => None,
        },
        _ => None,
    }
}

/// The height of the last header of a v2 range answer.
fn last_height(result: &HeadersV2Result) -> Option<u64> {
    match result {
        HeadersV2Result::Headers { headers, .. } => headers.last().map(|h| h.header.height),
        HeadersV2Result::BareHeaders { headers, .. } => headers.last().map(|h| h.header.height),
        HeadersV2Result::CompactHeaders { .. } | HeadersV2Result::Commitment(_) => None,
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
    if let Break::EndHeight = rule {
        let Response::HeadersV2(r) = response else {
            return false;
        };
        let Some(last) = last_height(&r.result) else {
            return false;
        };
        r.end_height = last - 1;
        return true;
    }
    let Some(item) = item_mut(response, at) else {
        return false;
    };
    match (rule, item.commit) {
        (Break::HeaderHeight, _) => item.header.height += 1,
        (Break::CommitHeight, Some(commit)) => commit.height += 1,
        (Break::ChainId, _) => item.header.chain_id.push(' '),
        (Break::LastBlockId, _) => {
            item.header.last_block_id = match item.header.last_block_id {
                Some(_) => None,
                None => Some(BlockId::default()),
            }
        }
        // Reversing one signature keeps the order.
        (Break::SignatureOrder, Some(commit)) if commit.signatures.len() > 1 => {
            commit.signatures.reverse()
        }
        (Break::EmptyValidatorSet, _) => {
            *item.validator_set = Some(ValidatorSet { validators: vec![] })
        }
        // A bare header has no commit to break; the others are handled above.
        (Break::CommitHeight | Break::SignatureOrder, _)
        | (Break::StartHeightZero | Break::EndHeight, _) => return false,
    }
    true
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
///
/// Counted for bare-header answers apart too, so that they are known to be
/// mutated into each outcome and not only the signed ones.
#[test]
fn mutations_reach_both_outcomes() {
    let mut runner = TestRunner::deterministic();
    let strategy = (header_responses(), mutation());
    // [fast_ok, slow_only_ok, errors], for all responses and for bare ones.
    let (mut all, mut bare) = ([0; 3], [0; 3]);
    for _ in 0..3000 {
        let (response, m) = strategy.new_tree(&mut runner).unwrap().current();
        let is_bare = matches!(
            &response,
            Response::HeadersV2(HeadersV2Response {
                result: HeadersV2Result::BareHeaders { .. },
                ..
            })
        );
        let mut bytes = response.encode().unwrap();
        apply(&mut bytes, &m);
        let outcome = match (agrees(&bytes), slow(&bytes)) {
            (Some(_), _) => 0,
            (None, Ok(_)) => 1,
            (None, Err(_)) => 2,
        };
        all[outcome] += 1;
        if is_bare {
            bare[outcome] += 1;
        }
    }
    let [fast_ok, slow_only_ok, errors] = all;
    assert!(fast_ok > 100, "{all:?} {bare:?}");
    assert!(errors > 100, "{all:?} {bare:?}");
    assert!(slow_only_ok > 0, "{all:?} {bare:?}");
    let [fast_ok, slow_only_ok, errors] = bare;
    assert!(fast_ok > 30, "{all:?} {bare:?}");
    assert!(errors > 30, "{all:?} {bare:?}");
    assert!(slow_only_ok > 0, "{all:?} {bare:?}");
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

// ------------------------------------------------------------ bare headers

/// A valid bare header at `START` without a set, and its header encoded.
fn bare_parts() -> (BareHeader, Vec<u8>) {
    let mut bare = sample(bare_header_at(START));
    bare.validator_set = None;
    let header = raw::Header::from(&bare.header).encode_to_vec();
    (bare, header)
}

/// `Response { headers_v2: { START, START + 10, results... } }`, each result
/// a `(field, bytes)` of the oneof: 3 signed headers, 4 commitment, 5 bare.
fn v2_response_bytes(results: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    put_varint(&mut body, 1, START);
    put_varint(&mut body, 2, START + 10);
    for (field, bytes) in results {
        put_bytes(&mut body, *field, bytes);
    }
    let mut out = Vec::new();
    put_bytes(&mut out, 2, &body);
    out
}

/// A `ProvenHeaders` or `ProvenBareHeaders` of the encoded `items` and an
/// empty proof (which the encoder writes).
fn proven(items: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        put_bytes(&mut out, 1, item);
    }
    put_bytes(&mut out, 2, &[]);
    out
}

fn bare_response(headers: Vec<BareHeader>) -> Response {
    Response::HeadersV2(HeadersV2Response {
        start_height: START,
        end_height: START + 10,
        result: HeadersV2Result::BareHeaders {
            headers,
            proof: MmrProof::default(),
        },
    })
}

#[test]
fn the_hand_built_bare_encoding_takes_the_fast_path() {
    let (bare, header) = bare_parts();
    let item = encoded::bare_header_from_parts(&header, None);
    let bytes = v2_response_bytes(&[(5, proven(&[&item]))]);
    let expected = bare_response(vec![bare]);
    assert_eq!(bytes, expected.encode().unwrap());
    assert_eq!(agrees(&bytes), Some(expected));
}

#[test]
fn a_second_result_with_bare_headers_falls_back() {
    let (bare, header) = bare_parts();
    let bare_item = encoded::bare_header_from_parts(&header, None);
    let p = parts();
    let signed_item = encoded::signed_header_from_parts(&p.header, &p.commit, None);
    let signed = Response::HeadersV2(HeadersV2Response {
        start_height: START,
        end_height: START + 10,
        result: HeadersV2Result::Headers {
            headers: vec![p.signed.clone()],
            proof: MmrProof::default(),
        },
    });

    // Bare, then signed headers: prost keeps the last.
    let bytes = v2_response_bytes(&[(5, proven(&[&bare_item])), (3, proven(&[&signed_item]))]);
    assert_eq!(agrees(&bytes), None);
    assert_eq!(Response::decode(&bytes), Ok(signed));
    // Signed, then bare headers.
    let bytes = v2_response_bytes(&[(3, proven(&[&signed_item])), (5, proven(&[&bare_item]))]);
    assert_eq!(agrees(&bytes), None);
    assert_eq!(
        Response::decode(&bytes),
        Ok(bare_response(vec![bare.clone()]))
    );
    // Bare headers, then a commitment.
    let bytes = v2_response_bytes(&[(5, proven(&[&bare_item])), (4, vec![9; 32])]);
    assert_eq!(agrees(&bytes), None);
    assert!(matches!(
        Response::decode(&bytes),
        Ok(Response::HeadersV2(HeadersV2Response {
            result: HeadersV2Result::Commitment(_),
            ..
        }))
    ));

    // Bare headers twice: prost merges the two into one valid range of two.
    let mut next = sample(bare_header_at(START + 1));
    next.validator_set = None;
    let next_item =
        encoded::bare_header_from_parts(&raw::Header::from(&next.header).encode_to_vec(), None);
    let bytes = v2_response_bytes(&[(5, proven(&[&bare_item])), (5, proven(&[&next_item]))]);
    assert_eq!(agrees(&bytes), None);
    assert_eq!(
        Response::decode(&bytes),
        Ok(bare_response(vec![bare, next]))
    );
    // The same in one result is canonical.
    let bytes = v2_response_bytes(&[(5, proven(&[&bare_item, &next_item]))]);
    assert!(agrees(&bytes).is_some());
}

#[test]
fn unknown_fields_in_a_bare_header_fall_back() {
    let (bare, header) = bare_parts();
    // Field 3 is a signed header's validator set; a bare header has none.
    for (field, varint) in [(3, false), (3, true), (4, true), (1000, false)] {
        let mut item = encoded::bare_header_from_parts(&header, None);
        if varint {
            put_varint(&mut item, field, 1);
        } else {
            put_bytes(&mut item, field, b"x");
        }
        let bytes = v2_response_bytes(&[(5, proven(&[&item]))]);
        assert_eq!(agrees(&bytes), None, "field {field}");
        // prost skips unknown fields.
        assert_eq!(
            Response::decode(&bytes),
            Ok(bare_response(vec![bare.clone()]))
        );
    }
}

#[test]
fn a_bare_header_without_its_header_falls_back() {
    let set = raw::ValidatorSet::from(&sample(validator_set())).encode_to_vec();
    for item in [
        Vec::new(),
        encoded::bare_header_from_parts(&[], Some(&set))[2..].to_vec(),
    ] {
        // No field 1: an empty message, or the set alone (field 2).
        let bytes = v2_response_bytes(&[(5, proven(&[&item]))]);
        assert_eq!(agrees(&bytes), None);
        assert_eq!(
            Response::decode(&bytes),
            Err(WireError::Item {
                field: "headers_v2_response.bare_headers",
                index: 0,
                source: Box::new(WireError::Missing {
                    field: "bare_header.header"
                }),
            })
        );
    }
}

#[test]
fn bare_header_fields_seen_twice_fall_back() {
    let (bare, header) = bare_parts();
    let set = sample(validator_set());
    let set_bytes = raw::ValidatorSet::from(&set).encode_to_vec();
    // The set twice: prost merges (concatenates) the validators.
    let mut item = encoded::bare_header_from_parts(&header, Some(&set_bytes));
    put_bytes(&mut item, 2, &set_bytes);
    assert_eq!(agrees(&v2_response_bytes(&[(5, proven(&[&item]))])), None);
    // The header twice: prost merges the second into the first, the same.
    let mut item = encoded::bare_header_from_parts(&header, None);
    put_bytes(&mut item, 1, &header);
    let bytes = v2_response_bytes(&[(5, proven(&[&item]))]);
    assert_eq!(agrees(&bytes), None);
    assert_eq!(Response::decode(&bytes), Ok(bare_response(vec![bare])));
}

#[test]
fn signed_headers_in_a_bare_result_fall_back() {
    // Field 2 of a signed header is its commit, which is no validator set.
    let p = parts();
    let item = encoded::signed_header_from_parts(&p.header, &p.commit, None);
    let bytes = v2_response_bytes(&[(5, proven(&[&item]))]);
    assert_eq!(agrees(&bytes), None);
    assert!(slow(&bytes).is_err());
    // And a bare header with a set is no signed header.
    let (_, header) = bare_parts();
    let set = raw::ValidatorSet::from(&sample(validator_set())).encode_to_vec();
    let item = encoded::bare_header_from_parts(&header, Some(&set));
    let bytes = v2_response_bytes(&[(3, proven(&[&item]))]);
    assert_eq!(agrees(&bytes), None);
    assert!(slow(&bytes).is_err());
}

#[test]
fn every_truncation_of_a_bare_answer_falls_back_without_panicking() {
    let response = sample(
        headers_v2_response(4).prop_filter("some bare headers", |r| {
            matches!(
                r,
                Response::HeadersV2(HeadersV2Response {
                    result: HeadersV2Result::BareHeaders { headers, .. },
                    ..
                }) if headers.len() > 1
            )
        }),
    );
    let bytes = response.encode().unwrap();
    for len in 0..bytes.len() {
        assert_eq!(agrees(&bytes[..len]), None, "{len}");
    }
    assert_eq!(agrees(&bytes), Some(response));
}
