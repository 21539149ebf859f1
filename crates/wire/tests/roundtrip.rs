//! Every valid message survives encode → decode unchanged, directly and in a
//! frame, and decoding arbitrary bytes never panics.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the assertion"
)]

mod strategies;

use headway_wire::{frame, limits::*, *};
use proptest::prelude::*;
use prost::Message as _;
use strategies::*;

fn roundtrip<M: Envelope + PartialEq + std::fmt::Debug>(message: &M, max: usize) {
    let bytes = message.encode().expect("a valid message encodes");
    assert_eq!(&M::decode(&bytes).expect("and decodes"), message);
    let framed = frame::encode_frame(message).expect("frames");
    let decoded: M = frame::decode_frame(&framed, max).expect("unframes");
    assert_eq!(&decoded, message);
    // Byte-at-a-time through the incremental reader.
    let mut reader = frame::FrameReader::new(max);
    let mut payload = None;
    for b in &framed {
        let (used, done) = reader.feed(std::slice::from_ref(b)).expect("feeds");
        assert_eq!(used, 1);
        if done.is_some() {
            payload = done;
        }
    }
    assert_eq!(
        &M::decode(&payload.expect("a complete frame")).expect("decodes"),
        message
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn encoded_len_bound_is_an_upper_bound(mut signed in signed_header()) {
        use prost::Message as _;
        // Widest varints, the longest chain id.
        signed.header.chain_id = "c".repeat(MAX_CHAIN_ID_LEN);
        for value in [signed.header.height, u64::MAX] {
            signed.header.height = value;
            signed.header.time_ms = u64::MAX;
            signed.commit.height = value;
            signed.commit.round = u32::MAX;
            let actual = raw::SignedHeader::from(&signed).encoded_len();
            prop_assert!(signed.encoded_len_bound() >= actual, "{} < {actual}", signed.encoded_len_bound());
            // And it is not wildly loose: within 2x for these shapes.
            prop_assert!(signed.encoded_len_bound() <= 2 * actual + 1024);
        }
    }

    #[test]
    fn the_direct_header_encoding_is_prosts(
        mut header in header(),
        empty_chain_id in any::<bool>(),
        zero_height in any::<bool>(),
        time_ms in prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
        genesis in any::<bool>(),
    ) {
        use prost::Message as _;
        // Default values (left out by proto3) and the widest varints too.
        if empty_chain_id { header.chain_id.clear(); }
        if zero_height { header.height = 0; }
        header.time_ms = time_ms;
        if genesis { header.last_block_id = None; }
        let mut direct = vec![0xEE];
        encoded::put_header_length_delimited(&mut direct, &header);
        let mut via_prost = vec![0xEE];
        raw::Header::from(&header).encode_length_delimited(&mut via_prost).unwrap();
        prop_assert_eq!(direct, via_prost);
    }

    #[test]
    fn requests_roundtrip(request in request()) {
        roundtrip(&request, MAX_REQUEST_FRAME);
    }

    #[test]
    fn responses_roundtrip(response in response()) {
        roundtrip(&response, MAX_FRAME);
    }

    #[test]
    fn pushes_roundtrip(push in push()) {
        roundtrip(&push, MAX_PUSH_FRAME);
    }

    #[test]
    fn responses_validate_for_their_requests((start, headers) in sequential_headers(5)) {
        let request = Request::GetHeaders(GetHeaders { start_height: start, count: 50 });
        let response = Response::Headers(HeadersResponse { start_height: start, headers });
        prop_assert!(response.validate_for(&request).is_ok());
        let other = Request::GetHeaders(GetHeaders { start_height: start + 1, count: 50 });
        prop_assert!(response.validate_for(&other).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Request::decode(&bytes);
        let _ = Response::decode(&bytes);
        let _ = Push::decode(&bytes);
        let _ = frame::decode_frame::<Request>(&bytes, MAX_REQUEST_FRAME);
        let _ = frame::decode_frame::<Response>(&bytes, MAX_FRAME);
        let mut reader = frame::FrameReader::new(MAX_PUSH_FRAME);
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            match reader.feed(rest) {
                Ok((used, frame)) => {
                    if let Some(payload) = frame { let _ = Push::decode(&payload); }
                    rest = &rest[used..];
                }
                Err(_) => break,
            }
        }
    }

    /// Mutating one byte of a valid encoding either fails cleanly or yields a
    /// message that is itself valid (never a panic, never an invalid value).
    #[test]
    fn mutated_encodings_fail_cleanly(response in response(), index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = response.encode().expect("encodes");
        if !bytes.is_empty() {
            let i = index.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(decoded) = Response::decode(&bytes) {
            prop_assert!(decoded.validate().is_ok());
        }
    }
}

fn consecutive_headers(max: usize) -> impl Strategy<Value = (u64, Vec<SignedHeader>)> {
    (1u64..1_000_000, 0..=max).prop_flat_map(|(start, n)| {
        let headers: Vec<_> = (start..start + n as u64).map(signed_header_at).collect();
        (Just(start), headers)
    })
}

fn encoded(headers: &[SignedHeader]) -> Vec<Vec<u8>> {
    use prost::Message as _;
    headers
        .iter()
        .map(|h| raw::SignedHeader::from(h).encode_to_vec())
        .collect()
}

fn consecutive_bare_headers(max: usize) -> impl Strategy<Value = (u64, Vec<BareHeader>)> {
    (1u64..1_000_000, 1..=max).prop_flat_map(|(start, n)| {
        let headers: Vec<_> = (start..start + n as u64).map(bare_header_at).collect();
        (Just(start), headers)
    })
}

fn encoded_bare(headers: &[BareHeader]) -> Vec<Vec<u8>> {
    use prost::Message as _;
    headers
        .iter()
        .map(|h| raw::BareHeader::from(h).encode_to_vec())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Spliced responses are byte for byte the frames the encoder makes.
    #[test]
    fn spliced_headers_response_is_the_encoded_response((start, headers) in consecutive_headers(6)) {
        let expected = frame::encode_frame(&Response::Headers(HeadersResponse {
            start_height: start,
            headers: headers.clone(),
        }))
        .unwrap();
        let spliced = encoded::EncodedResponse::headers(start, &encoded(&headers)).unwrap();
        prop_assert_eq!(spliced.as_frame(), &expected[..]);
    }

    #[test]
    fn spliced_v2_response_is_the_encoded_response(
        (start, headers) in consecutive_headers(5),
        hashes in proptest::collection::vec(any::<[u8; 32]>(), 0..20),
    ) {
        prop_assume!(!headers.is_empty());
        let end = start + headers.len() as u64 + 3;
        let proof = MmrProof { hashes: hashes.into_iter().map(Hash).collect() };
        let response = Response::HeadersV2(HeadersV2Response {
            start_height: start,
            end_height: end,
            result: HeadersV2Result::Headers { headers: headers.clone(), proof: proof.clone() },
        });
        let expected = frame::encode_frame(&response).unwrap();
        let spliced = encoded::EncodedResponse::headers_v2(start, end, &encoded(&headers), &proof).unwrap();
        prop_assert_eq!(spliced.as_frame(), &expected[..]);
    }

    #[test]
    fn spliced_bare_v2_response_is_the_encoded_response(
        (start, headers) in consecutive_bare_headers(5),
        hashes in proptest::collection::vec(any::<[u8; 32]>(), 0..20),
        slack in 0u64..4,
    ) {
        let end = start + headers.len() as u64 - 1 + slack;
        let proof = MmrProof { hashes: hashes.into_iter().map(Hash).collect() };
        let response = Response::HeadersV2(HeadersV2Response {
            start_height: start,
            end_height: end,
            result: HeadersV2Result::BareHeaders { headers: headers.clone(), proof: proof.clone() },
        });
        let expected = frame::encode_frame(&response).unwrap();
        let spliced =
            encoded::EncodedResponse::bare_headers_v2(start, end, &encoded_bare(&headers), &proof)
                .unwrap();
        prop_assert_eq!(spliced.as_frame(), &expected[..]);
    }

    /// A bare header's parts give the same bytes as encoding the whole.
    #[test]
    fn bare_header_from_parts_is_the_encoding(bare in bare_header()) {
        use prost::Message as _;
        let raw = raw::BareHeader::from(&bare);
        let header = raw.header.clone().unwrap().encode_to_vec();
        let set = raw.validator_set.clone().map(|s| s.encode_to_vec());
        prop_assert_eq!(
            encoded::bare_header_from_parts(&header, set.as_deref()),
            raw.encode_to_vec()
        );
    }

    /// A bare header's bound is an upper bound, as a signed header's is.
    #[test]
    fn bare_encoded_len_bound_is_an_upper_bound(mut bare in bare_header()) {
        use prost::Message as _;
        bare.header.chain_id = "c".repeat(MAX_CHAIN_ID_LEN);
        bare.header.height = u64::MAX;
        bare.header.time_ms = u64::MAX;
        let actual = raw::BareHeader::from(&bare).encoded_len();
        prop_assert!(bare.encoded_len_bound() >= actual, "{} < {actual}", bare.encoded_len_bound());
    }

    /// Signed and bare items are not interchangeable in a splice, whether
    /// or not either carries a validator set.
    #[test]
    fn spliced_items_of_the_other_kind_are_rejected(signed in signed_header_at(5)) {
        use prost::Message as _;
        let proof = MmrProof::default();
        let bare = BareHeader::from(&signed);
        let signed_bytes = raw::SignedHeader::from(&signed).encode_to_vec();
        let bare_bytes = raw::BareHeader::from(&bare).encode_to_vec();
        // Each kind in its own place is fine.
        prop_assert!(encoded::EncodedResponse::headers_v2(5, 9, std::slice::from_ref(&signed_bytes), &proof).is_ok());
        prop_assert!(encoded::EncodedResponse::bare_headers_v2(5, 9, std::slice::from_ref(&bare_bytes), &proof).is_ok());
        // And in the other's, refused and named.
        let error = encoded::EncodedResponse::bare_headers_v2(5, 9, std::slice::from_ref(&signed_bytes), &proof).unwrap_err();
        prop_assert!(error.to_string().contains("headers_v2_response.bare_headers"), "{}", error);
        let error = encoded::EncodedResponse::headers_v2(5, 9, std::slice::from_ref(&bare_bytes), &proof).unwrap_err();
        prop_assert!(error.to_string().contains("headers_v2_response.headers"), "{}", error);
        prop_assert!(encoded::EncodedResponse::headers(5, &[bare_bytes]).is_err());
    }

    /// The parts constructor gives the same bytes as encoding the whole.
    #[test]
    fn signed_header_from_parts_is_the_encoding(signed in signed_header()) {
        use prost::Message as _;
        let raw = raw::SignedHeader::from(&signed);
        let header = raw.header.clone().unwrap().encode_to_vec();
        let commit = raw.commit.clone().unwrap().encode_to_vec();
        let set = raw.validator_set.clone().map(|s| s.encode_to_vec());
        prop_assert_eq!(
            encoded::signed_header_from_parts(&header, &commit, set.as_deref()),
            raw.encode_to_vec()
        );
    }
}

#[test]
fn spliced_responses_check_counts_shapes_and_sizes() {
    use encoded::EncodedResponse;
    let good = {
        use prost::Message as _;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let h = proptest::strategy::ValueTree::current(
            &signed_header_at(5).new_tree(&mut runner).unwrap(),
        );
        raw::SignedHeader::from(&h).encode_to_vec()
    };
    // Over the count limit.
    let many = vec![good.clone(); MAX_HEADERS_PER_BATCH as usize + 1];
    assert!(EncodedResponse::headers(5, &many).is_err());
    // Not the shape of a signed header: commit first, a stray field, truncated.
    for bad in [
        vec![0x12, 0x00, 0x0a, 0x00],
        vec![0x0a, 0x00, 0x12, 0x00, 0x22, 0x00],
        vec![0x0a, 0x05, 0x01],
        vec![0x0a, 0x00],
        vec![0x08, 0x01, 0x12, 0x00],
    ] {
        let error = EncodedResponse::headers(5, std::slice::from_ref(&bad)).unwrap_err();
        assert!(
            error.to_string().contains("headers_response.headers"),
            "{bad:?}: {error}"
        );
    }
    // Commits and sets are told apart by their keys: an empty commit, a
    // commit of validator-set keys, a truncated commit, a set of commit keys.
    for bad in [
        vec![0x0a, 0x00, 0x12, 0x00],
        vec![0x0a, 0x00, 0x12, 0x02, 0x0a, 0x00],
        vec![0x0a, 0x00, 0x12, 0x02, 0x1a, 0x05],
        vec![0x0a, 0x00, 0x12, 0x02, 0x08, 0x01, 0x1a, 0x02, 0x08, 0x01],
    ] {
        assert!(
            EncodedResponse::headers(5, std::slice::from_ref(&bad)).is_err(),
            "{bad:?}"
        );
    }
    // A range answer needs a header.
    assert!(EncodedResponse::headers_v2(5, 9, &[], &MmrProof::default()).is_err());
    // Over the frame limit of the kind.
    let huge = headway_wire::encoded::signed_header_from_parts(
        &vec![0u8; MAX_HEADERS_RESPONSE_FRAME],
        &[0x08, 0x05],
        None,
    );
    assert!(matches!(
        EncodedResponse::headers(5, &[huge]),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn spliced_bare_responses_check_counts_shapes_and_sizes() {
    use encoded::EncodedResponse;
    let proof = MmrProof::default();
    let good = {
        use prost::Message as _;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let h = proptest::strategy::ValueTree::current(
            &bare_header_at(5).new_tree(&mut runner).unwrap(),
        );
        raw::BareHeader::from(&h).encode_to_vec()
    };
    assert!(EncodedResponse::bare_headers_v2(5, 9, std::slice::from_ref(&good), &proof).is_ok());
    // Over the count limit.
    let many = vec![good; MAX_HEADERS_V2 as usize + 1];
    assert!(EncodedResponse::bare_headers_v2(5, 9_999, &many, &proof).is_err());
    // None at all.
    assert!(EncodedResponse::bare_headers_v2(5, 9, &[], &proof).is_err());
    // Not the shape of a bare header: set first, a third field, truncated,
    // nothing, a wrong wire type, an empty set, a set of commit keys.
    for bad in [
        vec![0x12, 0x02, 0x0a, 0x00, 0x0a, 0x00],
        vec![0x0a, 0x00, 0x12, 0x02, 0x0a, 0x00, 0x1a, 0x00],
        vec![0x0a, 0x05, 0x01],
        vec![],
        vec![0x08, 0x01],
        vec![0x0a, 0x00, 0x12, 0x00],
        vec![0x0a, 0x00, 0x12, 0x02, 0x08, 0x01],
    ] {
        let error =
            EncodedResponse::bare_headers_v2(5, 9, std::slice::from_ref(&bad), &proof).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("headers_v2_response.bare_headers"),
            "{bad:?}: {error}"
        );
    }
    // Over the frame limit of the kind.
    let huge = encoded::bare_header_from_parts(&vec![0u8; MAX_HEADERS_V2_RESPONSE_FRAME], None);
    assert!(matches!(
        EncodedResponse::bare_headers_v2(5, 9, &[huge], &proof),
        Err(FrameError::TooLarge { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// `HeaderFields` reads a header's protobuf encoding, encodes it back
    /// byte for byte as prost does, and says how long that is.
    #[test]
    fn header_fields_encode_as_prost_does(header in header()) {
        let bytes = raw::Header::from(&header).encode_to_vec();
        let fields = encoded::HeaderFields::of(&header);
        prop_assert_eq!(encoded::HeaderFields::read(&bytes), Some(fields));
        let mut out = vec![7];
        fields.encode(&mut out);
        prop_assert_eq!(&out[1..], &bytes[..]);
        prop_assert_eq!(fields.encoded_len(), bytes.len());
    }
}
