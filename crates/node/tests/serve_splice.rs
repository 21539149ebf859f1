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
