//! Header answers spliced from the store's encodings are byte for byte the
//! frames the decode-and-encode path sends, and the cases the splice does not
//! cover fall back to it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the assertion"
)]

use headway_chain::{ChainGenerator, GeneratorConfig};
use headway_node::serve::{answer, encoded_answer};
use headway_store::{Store, StoreConfig};
use headway_wire::{GetHeaders, GetHeadersV2, Hash, ProofKind, Request, frame};

const LEN: u64 = 700;

fn store() -> Store {
    let config = GeneratorConfig {
        rotation_interval: 20,
        replace_all_at: vec![300],
        ..GeneratorConfig::small(9)
    };
    let headers: Vec<_> = ChainGenerator::new(config)
        .unwrap()
        .take(LEN as usize)
        .map(|b| b.signed_header)
        .collect();
    let store = Store::open_temporary(StoreConfig::new().with_sync_on_commit(false)).unwrap();
    // Uneven batches, so ranges cross segment boundaries.
    for batch in headers.chunks(97) {
        store.save_headers(batch).unwrap();
    }
    store
}

fn same_frame(store: &Store, request: &Request) {
    let spliced = encoded_answer(store, request).expect("the splice covers this request");
    let encoded = frame::encode_frame(&answer(store, request)).unwrap();
    assert_eq!(spliced.as_frame(), &encoded[..], "{request:?}");
}

#[test]
fn spliced_header_answers_are_the_encoded_answers() {
    let store = store();
    for (start, count) in [(1, 50), (90, 50), (650, 50), (690, 50), (700, 1), (701, 5)] {
        same_frame(
            &store,
            &Request::GetHeaders(GetHeaders {
                start_height: start,
                count,
            }),
        );
    }
    for (start, count, end, proof_kind) in [
        (1, 250, 699, ProofKind::LastLeaf),
        (250, 250, 699, ProofKind::Range),
        (600, 250, 650, ProofKind::LastLeaf),
        (100, 2000, 699, ProofKind::Range),
    ] {
        let q = GetHeadersV2 {
            start_height: start,
            count,
            end_height: end,
            commitment: store.history_root(end).unwrap(),
            proof_kind,
            headers_only: false,
            compact: false,
        };
        same_frame(&store, &Request::GetHeadersV2(q));
    }
}

#[test]
fn what_the_splice_does_not_cover_falls_back() {
    let store = store();
    let mismatch = GetHeadersV2 {
        start_height: 1,
        count: 10,
        end_height: 20,
        commitment: Hash([9; 32]),
        proof_kind: ProofKind::LastLeaf,
        headers_only: false,
        compact: false,
    };
    assert!(encoded_answer(&store, &Request::GetHeadersV2(mismatch)).is_none());
    let above = GetHeadersV2 {
        end_height: LEN + 5,
        ..mismatch
    };
    assert!(encoded_answer(&store, &Request::GetHeadersV2(above)).is_none());
    assert!(
        encoded_answer(
            &store,
            &Request::GetValidatorSet(headway_wire::GetValidatorSet { height: 5 })
        )
        .is_none()
    );
}

/// A compact request is answered (transcoded from the stored encodings, or
/// from decoded headers: the same bytes) with the bare
/// headers of the same range (across validator set changes, a whole set
/// replaced at 300) in well under half the bytes, and the same proof.
#[test]
fn compact_answers_are_the_bare_answers_in_fewer_bytes() {
    use headway_chain::Hashed;
    use headway_wire::{HeadersV2Result, Response};
    let store = store();
    for (start, count, end, proof_kind) in [
        (1, 700, 700, ProofKind::LastLeaf),
        (250, 250, 699, ProofKind::Range),
        (290, 20, 650, ProofKind::LastLeaf),
        (700, 1, 700, ProofKind::LastLeaf),
    ] {
        let bare_q = GetHeadersV2 {
            start_height: start,
            count,
            end_height: end,
            commitment: store.history_root(end).unwrap(),
            proof_kind,
            headers_only: true,
            compact: false,
        };
        let compact_q = GetHeadersV2 {
            compact: true,
            ..bare_q
        };
        let compact_request = Request::GetHeadersV2(compact_q);
        // Transcoded from the stored encodings, byte for byte the answer.
        same_frame(&store, &compact_request);
        let bare_answer = answer(&store, &Request::GetHeadersV2(bare_q));
        let compact_answer = answer(&store, &compact_request);
        let bare_len = frame::encode_frame(&bare_answer).unwrap().len();
        let compact_len = frame::encode_frame(&compact_answer).unwrap().len();
        let (Response::HeadersV2(bare), Response::HeadersV2(compact)) =
            (bare_answer, compact_answer)
        else {
            panic!("not v2 answers");
        };
        compact.validate_for(&compact_q).unwrap();
        let (
            HeadersV2Result::BareHeaders { headers, proof },
            HeadersV2Result::CompactHeaders {
                headers: compact_headers,
                proof: compact_proof,
            },
        ) = (bare.result, compact.result)
        else {
            panic!("not a bare and a compact range");
        };
        assert_eq!(compact_proof, proof);
        let expanded: Vec<_> = Hashed::expand_compact(start, &compact_headers)
            .unwrap()
            .into_iter()
            .map(Hashed::into_inner)
            .collect();
        assert_eq!(expanded, headers);
        if count >= 250 {
            assert!(
                compact_len * 2 < bare_len,
                "{compact_len} against {bare_len}"
            );
        }
    }
}
