#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! Header batches given in parts (`save_hashed_header_parts`,
//! `save_hashed_bare_header_parts`, `save_proven_bare_header_parts`): stored
//! exactly as their concatenation, errors indexed across the parts, nothing
//! stored on an error.

use headway_chain::{ChainGenerator, GeneratorConfig, Hashed, HashedCompact};
use headway_store::{Store, StoreConfig, StoreError};
use headway_wire::{BareHeader, CompactHeaders, Hash, SignedHeader};

fn chain(n: usize) -> Vec<SignedHeader> {
    ChainGenerator::new(GeneratorConfig::small(5))
        .unwrap()
        .take(n)
        .map(|b| b.signed_header)
        .collect()
}

fn bare(headers: &[SignedHeader], with_sets: &Store) -> Vec<BareHeader> {
    with_sets
        .load_bare_headers(headers[0].header.height, headers.len() as u64)
        .unwrap()
}

/// Everything a reader sees of the first `n` headers.
fn view(store: &Store, n: u64) -> impl PartialEq + std::fmt::Debug {
    (
        store.header_height(),
        store.bare_height(),
        store.load_signed_headers(1, n).unwrap(),
        store.load_bare_headers(1, n).unwrap(),
        (0..=n)
            .map(|x| store.history_root(x).unwrap())
            .collect::<Vec<_>>(),
    )
}

#[test]
fn signed_parts_are_stored_as_their_concatenation() {
    let headers = Hashed::all(chain(700));
    let whole = Store::open_temporary(StoreConfig::new()).unwrap();
    whole.save_hashed_headers(&headers[..300]).unwrap();
    whole.save_hashed_headers(&headers[300..]).unwrap();

    let parts = Store::open_temporary(StoreConfig::new()).unwrap();
    // Empty parts anywhere, and parts that do not end on segment boundaries.
    parts
        .save_hashed_header_parts(&[
            &[],
            &headers[..1],
            &headers[1..257],
            &[],
            &headers[257..300],
        ])
        .unwrap();
    parts
        .save_hashed_header_parts(&[&headers[300..650], &headers[650..], &[]])
        .unwrap();
    assert_eq!(view(&parts, 700), view(&whole, 700));
    parts.check_integrity().unwrap();
}

#[test]
fn bare_parts_are_stored_as_their_concatenation() {
    let signed = chain(600);
    let reference = Store::open_temporary(StoreConfig::new()).unwrap();
    reference.save_headers(&signed).unwrap();
    let headers = Hashed::all(bare(&signed, &reference));

    let whole = Store::open_temporary(StoreConfig::new()).unwrap();
    whole.save_hashed_bare_headers(&headers).unwrap();
    let parts = Store::open_temporary(StoreConfig::new()).unwrap();
    let split: Vec<&[Hashed<BareHeader>]> = headers.chunks(97).collect();
    parts.save_hashed_bare_header_parts(&split).unwrap();
    assert_eq!(parts.bare_height(), 600);
    assert_eq!(view(&parts, 600), view(&whole, 600));
    parts.check_integrity().unwrap();
}

#[test]
fn an_error_in_a_later_part_is_indexed_across_parts_and_stores_nothing() {
    let headers = Hashed::all(chain(40));
    let store = Store::open_temporary(StoreConfig::new()).unwrap();
    store.save_hashed_headers(&headers[..10]).unwrap();
    // Heights 11..=20, then 22..: the gap is the 11th header of the batch.
    let error = store
        .save_hashed_header_parts(&[&headers[10..15], &headers[15..20], &headers[21..]])
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::NonContiguousBatch {
                index: 10,
                expected: 21,
                got: 22
            }
        ),
        "{error}"
    );
    assert_eq!(store.header_height(), 10);
    assert_eq!(
        store
            .save_hashed_header_parts(&[&[], &[]])
            .unwrap_err()
            .to_string(),
        StoreError::EmptyBatch.to_string()
    );
    store.check_integrity().unwrap();
    // The same parts without the gap go in.
    store
        .save_hashed_header_parts(&[&headers[10..15], &headers[15..]])
        .unwrap();
    assert_eq!(store.header_height(), 40);
    store.check_integrity().unwrap();
}

#[test]
fn proven_parts_are_stored_as_checked_ones_are() {
    let signed = chain(600);
    let reference = Store::open_temporary(StoreConfig::new()).unwrap();
    reference.save_headers(&signed).unwrap();
    let headers = Hashed::all(bare(&signed, &reference));

    let checked = Store::open_temporary(StoreConfig::new()).unwrap();
    checked.save_hashed_bare_headers(&headers).unwrap();
    let proven = Store::open_temporary(StoreConfig::new()).unwrap();
    // Batches of one header, of parts, and across segment boundaries.
    proven
        .save_proven_bare_header_parts(&[&headers[..1]])
        .unwrap();
    let split: Vec<&[Hashed<BareHeader>]> = headers[1..400].chunks(97).collect();
    proven.save_proven_bare_header_parts(&split).unwrap();
    proven
        .save_proven_bare_header_parts(&[&headers[400..], &[]])
        .unwrap();
    assert_eq!(proven.bare_height(), 600);
    assert_eq!(view(&proven, 600), view(&checked, 600));
    assert_eq!(
        proven.history_root(600).unwrap(),
        checked.history_root(600).unwrap()
    );
    proven.check_integrity().unwrap();
}

#[test]
fn a_proven_batch_whose_first_root_is_not_the_stores_is_refused_whole() {
    let signed = chain(300);
    let reference = Store::open_temporary(StoreConfig::new()).unwrap();
    reference.save_headers(&signed).unwrap();
    let good = bare(&signed, &reference);
    let store = Store::open_temporary(StoreConfig::new()).unwrap();
    store
        .save_proven_bare_header_parts(&[&Hashed::all(good[..100].to_vec())])
        .unwrap();

    // The batch's first header carries a history root the store's MMR does
    // not have (its hash is recomputed, so the linkage after it is broken
    // too: the root is checked before that).
    let mut wrong = good[100..].to_vec();
    wrong[0].header.history_root = Hash([9; 32]);
    let error = store
        .save_proven_bare_header_parts(&[&Hashed::all(wrong)])
        .unwrap_err();
    assert!(
        matches!(error, StoreError::HistoryRootMismatch { height: 101, .. }),
        "{error}"
    );
    assert_eq!(store.header_height(), 100);
    store.check_integrity().unwrap();

    // The right batch goes in after the refused one.
    store
        .save_proven_bare_header_parts(&[&Hashed::all(good[100..].to_vec())])
        .unwrap();
    assert_eq!(store.header_height(), 300);
    assert_eq!(
        store.history_root(300).unwrap(),
        reference.history_root(300).unwrap()
    );
    store.check_integrity().unwrap();
}

/// The compact range of `bare` headers from `start`, hashed from its columns.
fn compact(bare: &[BareHeader], start: u64) -> HashedCompact {
    HashedCompact::new(start, CompactHeaders::from_bare(bare).unwrap(), Vec::new()).unwrap()
}

/// Compact ranges are stored from their columns exactly as the same headers
/// given as proven bare parts: rows, validator sets, roots, the hash index.
/// A store that refuses them (a gap, the wrong first root, a wrong validator
/// set) keeps nothing of the batch.
#[test]
fn compact_parts_are_stored_as_proven_bare_parts_are() {
    let signed = chain(600);
    let reference = Store::open_temporary(StoreConfig::new()).unwrap();
    reference.save_headers(&signed).unwrap();
    let bare_headers = bare(&signed, &reference);
    let headers = Hashed::all(bare_headers.clone());

    let proven = Store::open_temporary(StoreConfig::new()).unwrap();
    proven.save_proven_bare_header_parts(&[&headers]).unwrap();
    let store = Store::open_temporary(StoreConfig::new()).unwrap();
    // One header, then parts across segment boundaries.
    store
        .save_proven_compact_parts(&[&compact(&bare_headers[..1], 1)])
        .unwrap();
    let ranges: Vec<HashedCompact> = (1..400)
        .step_by(97)
        .map(|from| compact(&bare_headers[from..(from + 97).min(400)], from as u64 + 1))
        .collect();
    store
        .save_proven_compact_parts(&ranges.iter().collect::<Vec<_>>())
        .unwrap();
    assert_eq!(store.header_height(), 400);

    // A gap between parts: refused whole.
    let (a, b) = (
        compact(&bare_headers[400..450], 401),
        compact(&bare_headers[451..500], 452),
    );
    let error = store.save_proven_compact_parts(&[&a, &b]).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::NonContiguousBatch {
                expected: 451,
                got: 452,
                ..
            }
        ),
        "{error}"
    );
    // A first header whose history root is not the store's MMR's.
    let mut wrong = bare_headers[400..].to_vec();
    wrong[0].header.history_root = Hash([9; 32]);
    let error = store
        .save_proven_compact_parts(&[&compact(&wrong, 401)])
        .unwrap_err();
    assert!(
        matches!(error, StoreError::HistoryRootMismatch { height: 401, .. }),
        "{error}"
    );
    // A validator set that is not the header's.
    let mut wrong = bare_headers[400..].to_vec();
    let (at, set) = wrong
        .iter()
        .enumerate()
        .find_map(|(i, b)| b.validator_set.clone().map(|set| (i, set)))
        .expect("the chain changes validators");
    let other = wrong
        .iter()
        .skip(at + 1)
        .find_map(|b| b.validator_set.clone().filter(|s| *s != set))
        .expect("another set later");
    wrong[at].validator_set = Some(other);
    let error = store
        .save_proven_compact_parts(&[&compact(&wrong, 401)])
        .unwrap_err();
    assert!(
        matches!(error, StoreError::ValidatorSetMismatch { height, .. } if height == 401 + at as u64),
        "{error}"
    );
    assert_eq!(store.header_height(), 400);
    store.check_integrity().unwrap();

    store
        .save_proven_compact_parts(&[&compact(&bare_headers[400..], 401)])
        .unwrap();
    assert_eq!(view(&store, 600), view(&proven, 600));
    for header in [&headers[0], &headers[299], &headers[599]] {
        assert_eq!(
            store.height_of(&header.hash()).unwrap(),
            Some(header.header.height)
        );
    }
    store.check_integrity().unwrap();
}
