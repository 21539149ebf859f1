#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! Block store: header-only storage, heights, loads, validator sets, MMR proofs
//! after a restart, and the typed rejections of bad batches.

mod common;

use headway_chain::{
    ChainGenerator, Corruption, GeneratorConfig, HeaderExt as _, ValidatorSetExt as _,
};
use headway_mmr::{LeafHash, verify_ancestry, verify_inclusion, verify_range};
use headway_store::{Store, StoreConfig, StoreError};
use headway_wire::{BareHeader, SignedHeader};

fn generated(n: usize) -> (ChainGenerator, Vec<headway_chain::GeneratedBlock>) {
    let mut generator = ChainGenerator::new(GeneratorConfig::small(11)).unwrap();
    let blocks: Vec<_> = generator.by_ref().take(n).collect();
    (generator, blocks)
}

#[test]
fn headers_without_bodies_then_bodies_out_of_order() {
    let (_, blocks) = generated(30);
    let headers: Vec<SignedHeader> = blocks.iter().map(|b| b.signed_header.clone()).collect();
    let store = Store::open_temporary(StoreConfig::new()).unwrap();
    store.save_headers(&headers[..12]).unwrap();
    store.save_headers(&headers[12..]).unwrap();
    assert_eq!(store.header_height(), 30);
    assert_eq!(
        store.block_height(),
        0,
        "header-only storage never advances the block height"
    );

    // Meta exists, body does not: load_block is None (R6.2).
    let meta = store.load_block_meta(5).unwrap().unwrap();
    assert_eq!(meta.header, blocks[4].block.header);
    assert_eq!(meta.block_id.hash, blocks[4].block.header.hash());
    assert_eq!(store.load_block(5).unwrap(), None);
    assert_eq!(store.load_block_meta(31).unwrap(), None);
    assert_eq!(store.load_signed_header(7).unwrap().unwrap(), headers[6]);

    // Bodies in any order; the block height follows the contiguous run.
    store.save_block(&blocks[1].block).unwrap();
    assert_eq!(store.block_height(), 0);
    store.save_block(&blocks[0].block).unwrap();
    assert_eq!(store.block_height(), 2);
    store.save_block(&blocks[3].block).unwrap();
    assert_eq!(store.block_height(), 2);
    store.save_block(&blocks[2].block).unwrap();
    assert_eq!(store.block_height(), 4);
    store.save_block(&blocks[2].block).unwrap(); // idempotent
    assert_eq!(store.load_block(3).unwrap().unwrap(), blocks[2].block);
    let meta = store.load_block_meta(3).unwrap().unwrap();
    assert_eq!(meta.num_txs, blocks[2].block.txs.len() as u64);

    // Hash index.
    for b in &blocks {
        assert_eq!(
            store.height_of(&b.block.header.hash()).unwrap(),
            Some(b.height())
        );
    }
    assert_eq!(store.height_of(&headway_wire::Hash([9; 32])).unwrap(), None);

    // The validator set in force at every height.
    for b in &blocks {
        assert_eq!(
            store.validator_set_at(b.height()).unwrap().unwrap(),
            b.validator_set,
            "height {}",
            b.height()
        );
    }
    let report = store.check_integrity().unwrap();
    assert_eq!((report.header_height, report.block_height), (30, 4));
}

#[test]
fn gaps_overlaps_and_bad_batches_are_rejected_and_leave_nothing() {
    let (generator, blocks) = generated(20);
    let headers: Vec<SignedHeader> = blocks.iter().map(|b| b.signed_header.clone()).collect();
    let store = Store::open_temporary(StoreConfig::new()).unwrap();
    assert!(matches!(
        store.save_headers(&[]),
        Err(StoreError::EmptyBatch)
    ));
    assert!(matches!(
        store.save_headers(&headers[1..5]),
        Err(StoreError::HeaderHeightGap {
            expected: 1,
            got: 2
        })
    ));
    store.save_headers(&headers[..10]).unwrap();
    assert!(matches!(
        store.save_headers(&headers[9..12]),
        Err(StoreError::HeaderHeightGap {
            expected: 11,
            got: 10
        })
    ));
    assert!(matches!(
        store.save_headers(&headers[11..14]),
        Err(StoreError::HeaderHeightGap {
            expected: 11,
            got: 12
        })
    ));
    let skipping = vec![headers[10].clone(), headers[12].clone()];
    assert!(matches!(
        store.save_headers(&skipping),
        Err(StoreError::NonContiguousBatch {
            index: 1,
            expected: 12,
            got: 13
        })
    ));

    let cases = [
        (Corruption::ForgedLinkage, "BrokenLinkage"),
        (Corruption::CommitForOtherHeader, "CommitMismatch"),
        (Corruption::WrongChainId, "ChainIdMismatch"),
    ];
    for (kind, expected) in cases {
        // The bad header is in the middle of an otherwise good batch.
        let bad = generator.corrupt(&blocks[12], kind);
        let batch = vec![
            headers[10].clone(),
            headers[11].clone(),
            bad.signed_header,
            headers[13].clone(),
        ];
        let error = store.save_headers(&batch).unwrap_err();
        assert!(
            format!("{error:?}").starts_with(expected),
            "{kind:?}: {error:?}"
        );
        assert_eq!(store.header_height(), 10);
    }
    // A set that changes without being attached, and one that does not match.
    let at_set_change = blocks
        .iter()
        .position(|b| b.height() > 10 && b.signed_header.validator_set.is_some())
        .unwrap();
    let mut missing = headers[10..=at_set_change].to_vec();
    missing.last_mut().unwrap().validator_set = None;
    assert!(matches!(
        store.save_headers(&missing),
        Err(StoreError::MissingValidatorSet { .. })
    ));
    let wrong = generator.corrupt(&blocks[at_set_change], Corruption::WrongValidatorSet);
    let mut batch = headers[10..at_set_change].to_vec();
    batch.push(wrong.signed_header);
    assert!(matches!(
        store.save_headers(&batch),
        Err(StoreError::ValidatorSetMismatch { .. })
    ));

    // Failed batches left the MMR untouched: the good batch still fits.
    store.save_headers(&headers[10..]).unwrap();
    assert_eq!(store.header_height(), 20);

    // Bodies that do not belong.
    let mismatch = generator.corrupt(&blocks[4], Corruption::BodyMismatch);
    assert!(matches!(
        store.save_block(&mismatch.block),
        Err(StoreError::DataHashMismatch { height: 5, .. })
    ));
    let other_header = generator.corrupt(&blocks[4], Corruption::WrongStateRoot);
    assert!(matches!(
        store.save_block(&other_header.block),
        Err(StoreError::UnknownHeader { height: 5, .. })
    ));
    let (_, later) = generated(21);
    assert!(matches!(
        store.save_block(&later[20].block),
        Err(StoreError::UnknownHeader { height: 21, .. })
    ));
    assert_eq!(store.block_height(), 0);
    store.check_integrity().unwrap();
}

#[test]
fn history_proofs_survive_a_restart() {
    let (headers, _) = common::simple_chain(3, 120);
    let dir = common::fresh_dir("proofs");
    {
        let store = Store::open(&dir, StoreConfig::new()).unwrap();
        for batch in headers.chunks(37) {
            store.save_headers(batch).unwrap();
        }
    }
    let store = Store::open(&dir, StoreConfig::new()).unwrap();
    assert_eq!(store.header_height(), 120);
    let leaf = |h: u64| LeafHash::of(&headers[(h - 1) as usize].header.hash().0);
    for x in [1u64, 2, 7, 64, 99, 119] {
        // C(x) is the history root of header x + 1.
        let root = store.history_root(x).unwrap();
        assert_eq!(root, headers[x as usize].header.history_root);
        for h in [1, x / 2 + 1, x] {
            let proof = store.prove_header(h, x).unwrap();
            verify_inclusion(&root.0, x, h - 1, &leaf(h), &proof).unwrap();
        }
        let start = x / 3 + 1;
        let leaves: Vec<LeafHash> = (start..=x).map(leaf).collect();
        let proof = store.prove_header_range(start, x, x).unwrap();
        verify_range(&root.0, x, start - 1, &leaves, &proof).unwrap();
    }
    let old = store.history_root(50).unwrap();
    let new = store.history_root(120).unwrap();
    let proof = store.prove_history_ancestry(50, 120).unwrap();
    verify_ancestry(&old.0, 50, &new.0, 120, &proof).unwrap();
    assert!(store.prove_header(121, 121).is_err());
    assert!(store.prove_header(0, 10).is_err());

    // The reopened store keeps extending the chain.
    let (more, _) = common::simple_chain(3, 130);
    store.save_headers(&more[120..]).unwrap();
    store.check_integrity().unwrap();
}

#[test]
fn history_roots_and_proofs_hold_as_the_chain_grows_past_the_cached_nodes() {
    // Past 256 headers the MMR has nodes the store keeps in memory once
    // read, and the last C(x) asked for is kept too: roots and proofs asked
    // between batches, the same x again and new ones, must stay those of
    // the chain.
    let (headers, _) = common::simple_chain(4, 1_100);
    let store = Store::open_temporary(StoreConfig::new()).unwrap();
    let leaf = |h: u64| LeafHash::of(&headers[(h - 1) as usize].header.hash().0);
    for batch in headers.chunks(97) {
        store.save_headers(batch).unwrap();
        let top = store.header_height();
        for x in [top / 2, top - 1, top - 1, 1, top - 1]
            .into_iter()
            .filter(|&x| x >= 1)
        {
            let root = store.history_root(x).unwrap();
            assert_eq!(root, headers[x as usize].header.history_root, "C({x})");
            for h in [1, x / 2 + 1, x] {
                let proof = store.prove_header(h, x).unwrap();
                verify_inclusion(&root.0, x, h - 1, &leaf(h), &proof).unwrap();
            }
        }
    }
    store.check_integrity().unwrap();
}

#[test]
fn generated_blocks_execute_into_the_store() {
    let (generator, blocks) = generated(25);
    let store = Store::open_temporary(StoreConfig::new().with_snapshot_period(4)).unwrap();
    let headers: Vec<SignedHeader> = blocks.iter().map(|b| b.signed_header.clone()).collect();
    store.save_headers(&headers).unwrap();
    for b in &blocks[..12] {
        store.save_block(&b.block).unwrap();
        let applied = store.execute_block(&b.block).unwrap();
        assert_eq!(applied.state_root, b.block.header.state_root);
    }
    // The same through headway-chain's executor and the StateStore trait.
    for b in &blocks[12..] {
        let mut state = store.begin_block();
        headway_chain::execute_block(&mut state, &b.block).unwrap();
        let applied = state.commit(b.height()).unwrap();
        assert_eq!(applied.state_root, b.block.header.state_root);
    }
    assert_eq!(store.state_height(), 25);
    assert_eq!(store.block_height(), 12);
    let expected: Vec<(Vec<u8>, Vec<u8>)> = generator
        .state()
        .records()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    let mut actual = Vec::new();
    for prefix in 0..=u8::MAX {
        actual.extend(store.state_records(prefix).map(Result::unwrap));
    }
    assert_eq!(actual, expected);
    let report = store.check_integrity().unwrap();
    assert_eq!(report.state_root, blocks[24].block.header.state_root);
    assert_eq!(report.snapshot_height, Some(24));

    // A block whose result differs from its header writes nothing.
    let (_, more) = generated(26);
    let mut bad = more[25].block.clone();
    bad.header.state_root = headway_wire::Hash([1; 32]);
    assert!(matches!(
        store.execute_block(&bad),
        Err(StoreError::StateRootMismatch { height: 26, .. })
    ));
    assert!(matches!(
        store.execute_block(&more[24].block),
        Err(StoreError::StateHeightGap {
            expected: 26,
            got: 25
        })
    ));
    assert_eq!(store.state_height(), 25);
    store.execute_block(&more[25].block).unwrap();
}

/// The header segments on disk (tag `0x07`, pointing into the header log
/// since format 5, headers apart from commits since format 6): first
/// height and row count. Each holds delta rows (format 10: the count's top
/// bit).
fn segments_on_disk(dir: &std::path::Path) -> Vec<(u64, u32)> {
    let log = std::fs::read(dir.join("headers.log")).unwrap();
    let db = common::open_raw(dir);
    db.scan_prefix([0x07u8])
        .map(|row| {
            let (key, pointer) = row.unwrap();
            assert_eq!(
                pointer.len(),
                16,
                "be64(offset) || be32(header part length) || be32(commit part length)"
            );
            let offset = u64::from_be_bytes(pointer[..8].try_into().unwrap()) as usize;
            let len = u32::from_be_bytes(pointer[8..12].try_into().unwrap()) as usize;
            let segment = &log[offset..offset + len];
            (u64::from_be_bytes(key[1..9].try_into().unwrap()), {
                let count = u32::from_be_bytes(segment[..4].try_into().unwrap());
                assert_eq!(count >> 31, 1, "delta rows");
                count & 0x7fff_ffff
            })
        })
        .collect()
}

#[test]
fn long_batches_split_into_bounded_segments_and_ranges_read_across_them() {
    let (headers, _) = common::build_chain(5, 700, false);
    let dir = common::fresh_dir("segments");
    {
        let store = Store::open(&dir, StoreConfig::new()).unwrap();
        store.save_headers(&headers[..600]).unwrap();
        store.save_headers(&headers[600..650]).unwrap();
        store.save_headers(&headers[650..651]).unwrap();
    }
    // 256 rows a segment at most (MAX_SEGMENT_HEADERS); a batch never shares one.
    assert_eq!(
        segments_on_disk(&dir),
        [(1, 256), (257, 256), (513, 88), (601, 50), (651, 1)]
    );
    let store = Store::open(&dir, StoreConfig::new()).unwrap();
    assert_eq!(store.header_height(), 651);
    for (start, count) in [
        (1, 50),
        (1, 256),
        (200, 250),
        (256, 2),
        (250, 400),
        (500, 250),
        (600, 3),
        (640, 250),
        (651, 1),
        (651, 50),
    ] {
        let got = store.load_signed_headers(start, count).unwrap();
        // The undecoded encodings are exactly the encodings of the same headers.
        let encoded = store
            .load_encoded_signed_headers(start, count, usize::MAX)
            .unwrap();
        assert_eq!(encoded.len(), got.len(), "{start}+{count}");
        for (bytes, signed) in encoded.iter().zip(&got) {
            use prost::Message as _;
            assert_eq!(
                bytes,
                &headway_wire::raw::SignedHeader::from(signed).encode_to_vec(),
                "encoded header {}",
                signed.header.height
            );
        }
        let end = (start + count - 1).min(651);
        assert_eq!(got.len() as u64, end - start + 1, "{start}+{count}");
        for (signed, height) in got.iter().zip(start..) {
            // Validator sets exactly where they change, as in the batch.
            assert_eq!(signed, &headers[height as usize - 1], "height {height}");
            assert_eq!(
                Some(signed),
                store.load_signed_header(height).unwrap().as_ref()
            );
        }
    }
    assert!(
        store
            .load_encoded_signed_headers(0, 10, usize::MAX)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .load_encoded_signed_headers(652, 10, usize::MAX)
            .unwrap()
            .is_empty()
    );
    assert!(store.load_signed_headers(0, 10).unwrap().is_empty());
    assert!(store.load_signed_headers(652, 10).unwrap().is_empty());
    assert!(store.load_signed_headers(5, 0).unwrap().is_empty());
    assert_eq!(store.load_signed_headers(1, u64::MAX).unwrap().len(), 651);
    for height in [1, 256, 257, 512, 513, 600, 601, 651] {
        let meta = store.load_block_meta(height).unwrap().unwrap();
        assert_eq!(meta.header, headers[height as usize - 1].header);
        assert_eq!(meta.block_id.hash, meta.header.hash());
        assert_eq!(store.height_of(&meta.block_id.hash).unwrap(), Some(height));
    }
    assert_eq!(store.load_header(652).unwrap(), None);

    // The packed MMR nodes (a 600-header batch needs two chunks) serve
    // proofs after the restart.
    let leaf = |h: u64| LeafHash::of(&headers[(h - 1) as usize].header.hash().0);
    for x in [1u64, 300, 599, 600, 601, 650, 651] {
        let root = store.history_root(x).unwrap();
        if x < 700 {
            assert_eq!(root, headers[x as usize].header.history_root);
        }
        for h in [1, x / 2 + 1, x] {
            let proof = store.prove_header(h, x).unwrap();
            verify_inclusion(&root.0, x, h - 1, &leaf(h), &proof).unwrap();
        }
    }
    let proof = store.prove_history_ancestry(257, 651).unwrap();
    verify_ancestry(
        &store.history_root(257).unwrap().0,
        257,
        &store.history_root(651).unwrap().0,
        651,
        &proof,
    )
    .unwrap();
    store.save_headers(&headers[651..]).unwrap();
    assert_eq!(store.load_signed_headers(640, 100).unwrap(), headers[639..]);
    store.check_integrity().unwrap();
}

#[test]
fn bodies_stored_after_headers_report_their_sizes_across_restarts() {
    let (headers, blocks) = common::build_chain(6, 40, false);
    let dir = common::fresh_dir("body-sizes");
    let encoded_len = |b: &headway_wire::Block| {
        use prost::Message as _;
        headway_wire::raw::Block::from(b).encode_to_vec().len() as u64
    };
    {
        let store = Store::open(&dir, StoreConfig::new()).unwrap();
        store.save_headers(&headers).unwrap();
        let meta = store.load_block_meta(7).unwrap().unwrap();
        assert_eq!((meta.block_size, meta.num_txs), (0, 0));
        store.save_block(&blocks[6]).unwrap();
        store.save_block(&blocks[0]).unwrap();
        let meta = store.load_block_meta(7).unwrap().unwrap();
        assert_eq!(meta.block_size, encoded_len(&blocks[6]));
        assert_eq!(meta.num_txs, blocks[6].txs.len() as u64);
        assert_eq!(meta.header, headers[6].header);
    }
    let store = Store::open(&dir, StoreConfig::new()).unwrap();
    for (height, block) in [(1u64, &blocks[0]), (7, &blocks[6])] {
        let meta = store.load_block_meta(height).unwrap().unwrap();
        assert_eq!(
            (meta.block_size, meta.num_txs),
            (encoded_len(block), block.txs.len() as u64)
        );
    }
    let meta = store.load_block_meta(8).unwrap().unwrap();
    assert_eq!((meta.block_size, meta.num_txs), (0, 0));
    // Header rows were not rewritten: the signed headers are unchanged.
    assert_eq!(store.load_signed_headers(1, 40).unwrap(), headers);
    assert_eq!(store.block_height(), 1);
    store.check_integrity().unwrap();
}

/// A restart in the same process: sled releases its directory lock from a
/// background thread after the last handle drops, so opening right after
/// (or while the old handle is still closing) waits for it instead of
/// failing with a lock error.
#[test]
fn reopening_waits_for_a_closing_handle_to_release_its_lock() {
    let dir = common::fresh_dir("reopen-lock");
    let first = Store::open(&dir, StoreConfig::new()).unwrap();
    let closer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(first);
    });
    let second = Store::open(&dir, StoreConfig::new());
    closer.join().unwrap();
    assert!(second.is_ok(), "{:?}", second.err());
}

/// The hash index (an in-memory tail written as sorted runs, merged four at
/// a time) finds every header after batches of every size, across a
/// restart (which rebuilds the tail from the stored segments), and nothing
/// else; the integrity check agrees. With a tail of 1 every batch is a run
/// (many merges), with 64 the tail fills within batches and across them,
/// with the default nothing is written as a run.
#[test]
fn hash_index_finds_every_header_across_merges_and_a_restart() {
    let (headers, _) = common::simple_chain(5, 3_000);
    for tail in [1, 64, headway_store::MAX_HASH_INDEX_TAIL] {
        let config = StoreConfig::new().with_hash_index_tail(tail);
        let dir = common::fresh_dir("hash-index");
        {
            let store = Store::open(&dir, config.clone()).unwrap();
            let mut at = 0;
            for size in [1usize, 50, 50, 50, 50, 7, 300, 1_200, 50, 50, 2, 2, 2, 2, 2]
                .iter()
                .cycle()
            {
                if at == headers.len() {
                    break;
                }
                let end = (at + size).min(headers.len());
                store.save_headers(&headers[at..end]).unwrap();
                at = end;
                if at == 1_658 {
                    store.check_integrity().unwrap();
                }
            }
            store.check_integrity().unwrap();
        }
        // Reopened with another tail size: what the old one left in memory
        // is rebuilt, and the next batch writes it if it is over the new size.
        let reopened = StoreConfig::new().with_hash_index_tail(if tail == 64 { 1 } else { 64 });
        let store = Store::open(&dir, reopened).unwrap();
        assert_all_found(&store, &headers);
        let mut unknown = headers[10].header.hash();
        unknown.0[31] ^= 1; // same fingerprint (first 8 bytes), another hash
        assert_eq!(store.height_of(&unknown).unwrap(), None);
        store.check_integrity().unwrap();
    }
}

/// The bare headers of signed ones (validator sets kept where attached).
fn bare(headers: &[SignedHeader]) -> Vec<BareHeader> {
    headers.iter().map(BareHeader::from).collect()
}

/// Checks every read of a store holding `headers[..top]`, the heights where
/// `is_bare` stored without their commits.
fn check_mixed_store(
    store: &Store,
    headers: &[SignedHeader],
    top: u64,
    bare_height: u64,
    is_bare: impl Fn(u64) -> bool,
) {
    use prost::Message as _;
    assert_eq!(store.header_height(), top);
    assert_eq!(store.bare_height(), bare_height);
    for height in 1..=top {
        let signed = &headers[height as usize - 1];
        assert_eq!(
            store.load_header(height).unwrap().as_ref(),
            Some(&signed.header),
            "height {height}"
        );
        let meta = store.load_block_meta(height).unwrap().unwrap();
        assert_eq!(meta.block_id.hash, signed.header.hash());
        assert_eq!(
            store.height_of(&signed.header.hash()).unwrap(),
            Some(height)
        );
        assert_eq!(
            store.validator_set_at(height).unwrap().unwrap().hash(),
            signed.header.validators_hash,
            "height {height}"
        );
        if is_bare(height) {
            assert_eq!(store.load_commit(height).unwrap(), None, "height {height}");
            assert_eq!(store.load_signed_header(height).unwrap(), None);
        } else {
            assert_eq!(
                store.load_commit(height).unwrap().as_ref(),
                Some(&signed.commit)
            );
            assert_eq!(
                store.load_signed_header(height).unwrap().as_ref(),
                Some(signed)
            );
        }
    }
    assert_eq!(store.load_header(top + 1).unwrap(), None);
    assert_eq!(store.load_commit(top + 1).unwrap(), None);

    // Signed ranges: the longest signed prefix of the range.
    let boundaries = [
        1, 2, 119, 120, 121, 256, 257, 299, 300, 301, 302, 449, 450, 451,
    ];
    let starts = boundaries
        .into_iter()
        .chain([600, 749, 750, 751, top])
        .chain((1..=top).step_by(37))
        .filter(|&start| start <= top);
    for start in starts {
        for count in [1, 7, 50, 250, 400] {
            let got = store.load_signed_headers(start, count).unwrap();
            let end = (start + count - 1).min(top);
            let expected: Vec<&SignedHeader> = (start..=end)
                .take_while(|&h| !is_bare(h))
                .map(|h| &headers[h as usize - 1])
                .collect();
            assert_eq!(got.iter().collect::<Vec<_>>(), expected, "{start}+{count}");
            let encoded = store
                .load_encoded_signed_headers(start, count, usize::MAX)
                .unwrap();
            let want: Vec<Vec<u8>> = expected
                .iter()
                .map(|s| headway_wire::raw::SignedHeader::from(*s).encode_to_vec())
                .collect();
            assert_eq!(encoded, want, "{start}+{count}");
        }
    }

    // Bare ranges: every header, sets where they change.
    let all = store.load_bare_headers(1, u64::MAX).unwrap();
    assert_eq!(all, bare(&headers[..top as usize]));
    let changes = all.iter().filter(|b| b.validator_set.is_some()).count();
    assert!(changes > 5, "the chain rotates its validators: {changes}");
    for (start, count) in [
        (1, 1),
        (1, 250),
        (200, 250),
        (250, 100),
        (290, 20),
        (300, 2),
        (449, 3),
        (500, 300),
        (top, 10),
    ]
    .into_iter()
    .filter(|&(start, _)| start <= top)
    {
        let got = store.load_bare_headers(start, count).unwrap();
        let end = (start + count - 1).min(top);
        assert_eq!(
            got,
            bare(&headers[start as usize - 1..end as usize]),
            "{start}+{count}"
        );
        let encoded = store
            .load_encoded_bare_headers(start, count, usize::MAX)
            .unwrap();
        assert_eq!(encoded.len(), got.len());
        for (bytes, expected) in encoded.iter().zip(&got) {
            let raw = headway_wire::raw::BareHeader::decode(bytes.as_slice()).unwrap();
            assert_eq!(&BareHeader::try_from(raw).unwrap(), expected);
            assert_eq!(
                bytes,
                &headway_wire::raw::BareHeader::from(expected).encode_to_vec()
            );
        }
        // The parts, visited in place, make the same encodings; a visitor
        // that stops is given no further row.
        let mut parts = Vec::new();
        let visited = store
            .visit_encoded_header_parts(start, count, |header, set| {
                parts.push(headway_wire::encoded::bare_header_from_parts(header, set));
                true
            })
            .unwrap();
        assert_eq!(parts, encoded, "{start}+{count}");
        assert_eq!(visited, encoded.len() as u64);
        let stop = encoded.len().div_ceil(2);
        let mut seen = 0;
        let accepted = store
            .visit_encoded_header_parts(start, count, |_, _| {
                seen += 1;
                seen <= stop
            })
            .unwrap();
        assert_eq!(
            (accepted, seen),
            (stop as u64, (stop + 1).min(encoded.len()))
        );
        // A byte limit keeps the prefix whose encodings fit, and always
        // the first header; signed ranges stop at it the same way.
        let total = |e: &[Vec<u8>]| e.iter().map(Vec::len).sum::<usize>();
        for max_bytes in [0, 1, encoded[0].len(), total(&encoded) / 2, total(&encoded)] {
            let cut = store
                .load_encoded_bare_headers(start, count, max_bytes)
                .unwrap();
            let fit = (1..=encoded.len())
                .take_while(|&n| n == 1 || total(&encoded[..n]) <= max_bytes)
                .last()
                .unwrap();
            assert_eq!(cut, encoded[..fit], "{start}+{count} within {max_bytes}");
            let signed = store
                .load_encoded_signed_headers(start, count, usize::MAX)
                .unwrap();
            if let Some(first) = signed.first() {
                let within = store
                    .load_encoded_signed_headers(start, count, max_bytes.max(first.len()))
                    .unwrap();
                assert!(!within.is_empty() && total(&within) <= max_bytes.max(first.len()));
                assert_eq!(within, signed[..within.len()]);
                if within.len() < signed.len() {
                    assert!(total(&signed[..=within.len()]) > max_bytes.max(first.len()));
                }
            }
        }
    }
    for (start, count) in [(0, 10), (top + 1, 10), (5, 0)] {
        assert!(store.load_bare_headers(start, count).unwrap().is_empty());
        let visited = store
            .visit_encoded_header_parts(start, count, |_, _| panic!("no row at {start}+{count}"));
        assert_eq!(visited.unwrap(), 0);
        assert!(
            store
                .load_encoded_bare_headers(start, count, usize::MAX)
                .unwrap()
                .is_empty()
        );
    }

    // History proofs over bare and signed rows alike.
    let leaf = |h: u64| LeafHash::of(&headers[(h - 1) as usize].header.hash().0);
    for x in [1u64, 120, 299, 300, 301, 450, 451, 600, top] {
        if x > top {
            continue;
        }
        let root = store.history_root(x).unwrap();
        if let Some(next) = headers.get(x as usize) {
            // C(x) is the history root of header x + 1.
            assert_eq!(root, next.header.history_root);
        }
        for h in [1, x / 2 + 1, x] {
            let proof = store.prove_header(h, x).unwrap();
            verify_inclusion(&root.0, x, h - 1, &leaf(h), &proof).unwrap();
        }
        let start = x / 3 + 1;
        let leaves: Vec<LeafHash> = (start..=x).map(leaf).collect();
        let proof = store.prove_header_range(start, x, x).unwrap();
        verify_range(&root.0, x, start - 1, &leaves, &proof).unwrap();
    }
    let proof = store.prove_history_ancestry(100, top).unwrap();
    verify_ancestry(
        &store.history_root(100).unwrap().0,
        100,
        &store.history_root(top).unwrap().0,
        top,
        &proof,
    )
    .unwrap();
}

/// Headers-only sync below a tip, signed headers above it, then headers-only
/// again: every read serves what was stored (commits only where stored), the
/// bare height says where signed headers start, across a restart.
#[test]
fn bare_and_signed_batches_mix_and_survive_a_restart() {
    // The validator set changes every 25 heights; 750 headers span several
    // segments of each kind.
    let (headers, _) = common::build_chain(8, 750, false);
    let is_bare = |h: u64| h <= 300 || h > 450;
    let dir = common::fresh_dir("bare-mixed");
    {
        let store = Store::open(&dir, StoreConfig::new()).unwrap();
        store.save_bare_headers(&bare(&headers[..120])).unwrap();
        assert_eq!((store.header_height(), store.bare_height()), (120, 120));
        store.save_bare_headers(&bare(&headers[120..300])).unwrap();
        store.save_headers(&headers[300..450]).unwrap();
        assert_eq!((store.header_height(), store.bare_height()), (450, 300));
        check_mixed_store(&store, &headers, 450, 300, |h| h <= 300);
        let report = store.check_integrity().unwrap();
        assert_eq!((report.header_height, report.bare_height), (450, 300));
        store.save_bare_headers(&bare(&headers[450..])).unwrap();
        assert_eq!((store.header_height(), store.bare_height()), (750, 750));
        check_mixed_store(&store, &headers, 750, 750, is_bare);
        store.check_integrity().unwrap();
    }
    let store = Store::open(&dir, StoreConfig::new()).unwrap();
    check_mixed_store(&store, &headers, 750, 750, is_bare);
    let report = store.check_integrity().unwrap();
    assert_eq!((report.header_height, report.bare_height), (750, 750));
    drop(store);

    // A signed batch after the bare ones keeps the bare height.
    let (more, _) = common::build_chain(8, 760, false);
    let store = Store::open(&dir, StoreConfig::new()).unwrap();
    store.save_headers(&more[750..]).unwrap();
    assert_eq!((store.header_height(), store.bare_height()), (760, 750));
    assert_eq!(store.load_signed_headers(740, 50).unwrap(), Vec::new());
    assert_eq!(store.load_signed_headers(751, 50).unwrap(), more[750..]);
    drop(store);
    let store = Store::open(&dir, StoreConfig::new()).unwrap();
    assert_eq!((store.header_height(), store.bare_height()), (760, 750));
    check_mixed_store(&store, &more, 760, 750, |h| is_bare(h) && h <= 750);
    store.check_integrity().unwrap();
}

/// A bare batch gets every check of a signed one except the commit's, and a
/// rejected batch leaves nothing behind.
#[test]
fn bad_bare_batches_are_rejected_and_leave_nothing() {
    let (generator, blocks) = generated(25);
    let signed: Vec<SignedHeader> = blocks.iter().map(|b| b.signed_header.clone()).collect();
    let bares = bare(&signed);
    let dir = common::fresh_dir("bare-rejected");
    let store = Store::open(&dir, StoreConfig::new()).unwrap();
    assert!(matches!(
        store.save_bare_headers(&[]),
        Err(StoreError::EmptyBatch)
    ));
    assert!(matches!(
        store.save_bare_headers(&bares[1..5]),
        Err(StoreError::HeaderHeightGap {
            expected: 1,
            got: 2
        })
    ));
    // Height 1 needs its validator set.
    let mut first = bares[..3].to_vec();
    first[0].validator_set = None;
    assert!(matches!(
        store.save_bare_headers(&first),
        Err(StoreError::MissingValidatorSet { height: 1 })
    ));
    assert_eq!((store.header_height(), store.bare_height()), (0, 0));
    store.save_headers(&signed[..6]).unwrap();

    let untouched = |store: &Store| {
        assert_eq!((store.header_height(), store.bare_height()), (6, 0));
        assert_eq!(store.load_header(7).unwrap(), None);
        assert_eq!(store.height_of(&signed[6].header.hash()).unwrap(), None);
        let report = store.check_integrity().unwrap();
        assert_eq!((report.header_height, report.bare_height), (6, 0));
    };
    for (batch, expected) in [
        (&bares[5..9], (7, 6)),  // overlap
        (&bares[7..10], (7, 8)), // gap
    ] {
        match store.save_bare_headers(batch) {
            Err(StoreError::HeaderHeightGap { expected: e, got }) => {
                assert_eq!((e, got), expected);
            }
            other => panic!("{other:?}"),
        }
        untouched(&store);
    }
    let skipping = vec![bares[6].clone(), bares[8].clone()];
    assert!(matches!(
        store.save_bare_headers(&skipping),
        Err(StoreError::NonContiguousBatch {
            index: 1,
            expected: 8,
            got: 9
        })
    ));
    untouched(&store);

    // The bad header in the middle of an otherwise good batch (heights 7..=12;
    // the small generator rotates validators at 11).
    assert!(bares[10].validator_set.is_some(), "the set changes at 11");
    let with_bad = |index: usize, bad: BareHeader| {
        let mut batch = bares[6..12].to_vec();
        batch[index - 7] = bad;
        batch
    };
    let mut wrong_root = bares[8].clone();
    wrong_root.header.history_root = headway_wire::Hash([7; 32]);
    let mut no_set = bares[10].clone();
    no_set.validator_set = None;
    let mut empty_chain_id = bares[8].clone();
    empty_chain_id.header.chain_id = String::new();
    let cases = [
        (
            with_bad(
                9,
                BareHeader::from(
                    &generator
                        .corrupt(&blocks[8], Corruption::ForgedLinkage)
                        .signed_header,
                ),
            ),
            "BrokenLinkage",
        ),
        (
            with_bad(
                9,
                BareHeader::from(
                    &generator
                        .corrupt(&blocks[8], Corruption::WrongChainId)
                        .signed_header,
                ),
            ),
            "ChainIdMismatch",
        ),
        (with_bad(9, wrong_root), "HistoryRootMismatch"),
        (with_bad(11, no_set), "MissingValidatorSet"),
        (
            with_bad(
                11,
                BareHeader::from(
                    &generator
                        .corrupt(&blocks[10], Corruption::WrongValidatorSet)
                        .signed_header,
                ),
            ),
            "ValidatorSetMismatch",
        ),
        (with_bad(9, empty_chain_id), "InvalidSignedHeader"),
    ];
    for (batch, expected) in cases {
        let error = store.save_bare_headers(&batch).unwrap_err();
        assert!(
            format!("{error:?}").starts_with(expected),
            "{expected}: {error:?}"
        );
        untouched(&store);
    }
    drop(store);
    let store = Store::open(&dir, StoreConfig::new()).unwrap();
    untouched(&store);

    // The good batches still fit: bare after signed, then signed after bare.
    store.save_bare_headers(&bares[6..20]).unwrap();
    store.save_headers(&signed[20..]).unwrap();
    assert_eq!((store.header_height(), store.bare_height()), (25, 20));
    for height in 1..=25u64 {
        let stored = store.load_commit(height).unwrap();
        assert_eq!(
            stored.is_none(),
            (7..=20).contains(&height),
            "height {height}"
        );
    }
    assert_eq!(store.load_signed_headers(1, 50).unwrap(), signed[..6]);
    assert_eq!(store.load_signed_headers(21, 50).unwrap(), signed[20..]);
    assert_eq!(store.load_bare_headers(1, 50).unwrap(), bares);
    let report = store.check_integrity().unwrap();
    assert_eq!((report.header_height, report.bare_height), (25, 20));
}

/// Headers hashed by verification (`Hashed`) are stored exactly as plain
/// ones, and get every check but the re-hash: a hashed batch that does not
/// link, or whose commit is for another header, is refused all the same.
#[test]
fn hashed_batches_store_the_same_and_are_checked_the_same() {
    use headway_chain::Hashed;
    let (headers, _) = common::build_chain(8, 300, false);
    let plain = Store::open_temporary(StoreConfig::new()).unwrap();
    let hashed = Store::open_temporary(StoreConfig::new()).unwrap();
    plain.save_headers(&headers[..100]).unwrap();
    plain.save_bare_headers(&bare(&headers[100..])).unwrap();
    hashed
        .save_hashed_headers(&Hashed::all(headers[..100].to_vec()))
        .unwrap();

    // A hashed bare batch that skips a header does not link.
    let mut broken = bare(&headers[100..120]);
    broken.remove(5);
    for (i, h) in broken.iter_mut().enumerate().skip(5) {
        h.header.height = 101 + i as u64; // heights contiguous, linkage not
    }
    assert!(matches!(
        hashed.save_hashed_bare_headers(&Hashed::all(broken)),
        Err(StoreError::BrokenLinkage { height: 106, .. })
    ));
    // A hashed signed header carrying another header's commit.
    let mut swapped = headers[100..103].to_vec();
    swapped[1].commit = headers[0].commit.clone();
    assert!(hashed.save_hashed_headers(&Hashed::all(swapped)).is_err());
    assert_eq!(hashed.header_height(), 100);

    hashed
        .save_hashed_bare_headers(&Hashed::all(bare(&headers[100..])))
        .unwrap();
    assert_eq!(
        (hashed.header_height(), hashed.bare_height()),
        (plain.header_height(), plain.bare_height())
    );
    for x in [1, 99, 100, 101, 250, 299] {
        assert_eq!(
            hashed.history_root(x).unwrap(),
            plain.history_root(x).unwrap()
        );
    }
    for h in [1usize, 100, 101, 300] {
        let hash = headers[h - 1].header.hash();
        assert_eq!(hashed.height_of(&hash).unwrap(), Some(h as u64));
        assert_eq!(
            hashed.load_header(h as u64).unwrap(),
            plain.load_header(h as u64).unwrap()
        );
    }
    hashed.check_integrity().unwrap();
}

/// The MMR node file is synced once every 4 096 leaves, not every batch: the
/// batch that crosses the mark records it; below it nothing is recorded, and
/// a restart rebuilds the unsynced nodes from the stored header hashes.
#[test]
fn the_node_file_is_synced_every_4096_leaves() {
    let (headers, _) = common::build_chain(9, 4300, false);
    let dir = common::fresh_dir("node-sync-mark");
    let synced = |dir: &std::path::Path| {
        common::open_raw(dir)
            .get(b"\x00mmr_synced_leaves")
            .unwrap()
            .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap()))
    };
    {
        let store = Store::open(&dir, StoreConfig::new()).unwrap();
        store.save_headers(&headers[..4000]).unwrap();
    }
    assert_eq!(synced(&dir), None, "4 000 leaves: not synced yet");
    {
        // The open rebuilt (and synced) the 4 000 leaves' nodes.
        let store = Store::open(&dir, StoreConfig::new()).unwrap();
        store.save_headers(&headers[4000..4050]).unwrap();
    }
    assert_eq!(synced(&dir), Some(4000));
    {
        let store = Store::open(&dir, StoreConfig::new()).unwrap();
        assert_eq!(store.header_height(), 4050);
        for chunk in headers[4050..].chunks(50) {
            store.save_headers(chunk).unwrap();
        }
        store.check_integrity().unwrap();
    }
    // 4 050 + 4 096 > 4 300: only the open recorded a mark (4 050).
    assert_eq!(synced(&dir), Some(4050));
    let (more, _) = common::build_chain(9, 9000, false);
    assert_eq!(more[..4300], headers[..]);
    {
        let store = Store::open(&dir, StoreConfig::new()).unwrap();
        for chunk in more[4300..].chunks(500) {
            store.save_headers(chunk).unwrap();
        }
        store.check_integrity().unwrap();
    }
    // The open recorded 4 300; the batch ending at 8 800 is the first to
    // reach 4 300 + 4 096 and synced; the one ending at 9 000 did not.
    assert_eq!(synced(&dir), Some(8800));
    let store = Store::open(&dir, StoreConfig::new()).unwrap();
    assert_eq!(store.header_height(), 9000);
    store.check_integrity().unwrap();
}

/// Rows above the header height (what a batch that reached sled but whose
/// flush failed leaves behind: here written behind the store's back) are
/// replaced by the next batch: a stale validator set must not stay in force
/// where the new batch has no set change.
#[test]
fn stale_rows_above_the_header_height_do_not_outlive_the_next_batch() {
    let (headers, _) = common::build_chain(11, 70, false);
    let clean = Store::open_temporary(StoreConfig::new()).unwrap();
    clean.save_headers(&headers).unwrap();

    let dir = common::fresh_dir("stale-rows");
    {
        let store = Store::open(&dir, StoreConfig::new()).unwrap();
        store.save_headers(&headers[..40]).unwrap();
    }
    let set_key = |h: u64| [&[0x04u8][..], &h.to_be_bytes()].concat();
    {
        let db = common::open_raw(&dir);
        let first_set = db.get(set_key(1)).unwrap().unwrap();
        // Heights 45 and 60: stale rows holding genesis's set.
        for h in [45u64, 60] {
            db.insert(set_key(h), first_set.clone()).unwrap();
        }
        db.flush().unwrap();
    }
    let store = Store::open(&dir, StoreConfig::new()).unwrap();
    // The integrity check names such a row.
    let error = store.check_integrity().unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { key, .. } if key == "04000000000000002d"),
        "{error}"
    );
    store.save_headers(&headers[40..]).unwrap();
    for h in 1..=70 {
        assert_eq!(
            store.validator_set_at(h).unwrap(),
            clean.validator_set_at(h).unwrap(),
            "set in force at {h}"
        );
    }
    assert_eq!(
        store.load_signed_headers(41, 30).unwrap(),
        clean.load_signed_headers(41, 30).unwrap()
    );
    store.check_integrity().unwrap();
}

/// Hash index keys (see `hash_index.rs`): `0x0A ‖ be64(run) ‖ be64(page)`
/// → sorted entries `be64(fingerprint) ‖ be64(height)`, `0x0B ‖ be64(run)`
/// → `be64(entries) ‖ be64(first fingerprint of each page)…`.
const RUN_PAGE: u8 = 0x0A;
const RUN_META: u8 = 0x0B;

/// The hash index fingerprint of a header: its hash's first 8 bytes.
fn fingerprint(header: &SignedHeader) -> u64 {
    u64::from_be_bytes(header.header.hash().0[..8].try_into().unwrap())
}

fn run_page_key(run: u64, page: u64) -> Vec<u8> {
    [&[RUN_PAGE][..], &run.to_be_bytes(), &page.to_be_bytes()].concat()
}

fn run_meta_key(run: u64) -> Vec<u8> {
    [&[RUN_META][..], &run.to_be_bytes()].concat()
}

fn decode_entries(page: &[u8]) -> Vec<(u64, u64)> {
    page.chunks_exact(16)
        .map(|e| {
            (
                u64::from_be_bytes(e[..8].try_into().unwrap()),
                u64::from_be_bytes(e[8..].try_into().unwrap()),
            )
        })
        .collect()
}

fn encode_entries(entries: &[(u64, u64)]) -> Vec<u8> {
    entries
        .iter()
        .flat_map(|(fp, height)| [fp.to_be_bytes(), height.to_be_bytes()])
        .flatten()
        .collect()
}

/// A store config whose hash index writes every batch as a run (a tail of
/// one header), for the tests of runs on disk.
fn runs_config() -> StoreConfig {
    StoreConfig::new().with_hash_index_tail(1)
}

/// Writes a one-page hash index run behind the store's back, under the
/// next free run id, as a batch that reached sled but whose flush failed
/// leaves it.
fn write_stale_run(db: &sled::Db, mut entries: Vec<(u64, u64)>) {
    entries.sort_unstable();
    assert!(!entries.is_empty() && entries.len() <= 4096);
    let run = db
        .scan_prefix([RUN_META])
        .keys()
        .map(|key| u64::from_be_bytes(key.unwrap()[1..9].try_into().unwrap()) + 1)
        .max()
        .unwrap_or(0);
    db.insert(run_page_key(run, 0), encode_entries(&entries))
        .unwrap();
    let mut directory = (entries.len() as u64).to_be_bytes().to_vec();
    directory.extend_from_slice(&entries[0].0.to_be_bytes());
    db.insert(run_meta_key(run), directory).unwrap();
}

/// Rewrites, behind the store's back, the hash index page holding the
/// entry of `height` with `tamper` applied to its entries (then sorted), and
/// its run's directory to match (entry count, the page's first fingerprint).
fn tamper_index_page(db: &sled::Db, height: u64, tamper: impl FnOnce(&mut Vec<(u64, u64)>)) {
    let (key, page) = db
        .scan_prefix([RUN_PAGE])
        .map(Result::unwrap)
        .find(|(_, page)| decode_entries(page).iter().any(|&(_, h)| h == height))
        .unwrap();
    let run = u64::from_be_bytes(key[1..9].try_into().unwrap());
    let page_no = usize::try_from(u64::from_be_bytes(key[9..17].try_into().unwrap())).unwrap();
    let mut entries = decode_entries(&page);
    let before = entries.len() as u64;
    tamper(&mut entries);
    entries.sort_unstable();
    db.insert(&key, encode_entries(&entries)).unwrap();
    let mut directory = db.get(run_meta_key(run)).unwrap().unwrap().to_vec();
    let count =
        u64::from_be_bytes(directory[..8].try_into().unwrap()) - before + entries.len() as u64;
    directory[..8].copy_from_slice(&count.to_be_bytes());
    let first = 8 + 8 * page_no;
    directory[first..first + 8].copy_from_slice(&entries[0].0.to_be_bytes());
    db.insert(run_meta_key(run), directory).unwrap();
}

/// Every header of `headers` is found by its hash, at its height.
fn assert_all_found(store: &Store, headers: &[SignedHeader]) {
    for signed in headers {
        assert_eq!(
            store.height_of(&signed.header.hash()).unwrap(),
            Some(signed.header.height),
            "height_of header {}",
            signed.header.height
        );
    }
}

/// What a header batch applied to sled whose flush failed leaves in the
/// hash index (a run for heights the header height does not cover, some
/// of them stored already), here written behind the store's back, is
/// tolerated by `check_integrity` and counted as stale: entries above the
/// header height, repeats of entries (once the next batch indexes those
/// heights again) and an entry with another header's fingerprint. Merges
/// then drop the repeats, and every entry at or above the first height of
/// the batch that merges them: when that batch is the one storing those
/// heights again, nothing stale is left; when it comes later, only the
/// entry with the wrong fingerprint.
#[test]
fn stale_hash_index_entries_of_a_failed_flush_are_tolerated_and_merged_away() {
    let (headers, _) = common::build_chain(17, 80, false);
    // (Ends of the batches before the stale run; stale entries once 41..=70,
    // then 71..=80, are stored.) The run of 1..=40, the stale run and the
    // run of 41..=70 are three level-0 runs: the fourth (71..=80) merges
    // them, its first height above every stale entry. After two runs of 20
    // headers and the stale run, the run of 41..=70 is the fourth: its
    // merge drops the stale entries at or above 41.
    for (before, stale_after) in [(&[40][..], [27, 1]), (&[20, 40][..], [0, 0])] {
        let dir = common::fresh_dir("stale-hash-index");
        {
            let store = Store::open(&dir, runs_config()).unwrap();
            let mut at = 0;
            for &end in before {
                store.save_headers(&headers[at..end]).unwrap();
                at = end;
            }
        }
        {
            // Heights 35..=60: six stored already, twenty above the header
            // height, and one more entry at 50 with another fingerprint.
            let db = common::open_raw(&dir);
            let mut entries: Vec<(u64, u64)> = (35..=60)
                .map(|h| (fingerprint(&headers[h as usize - 1]), h))
                .collect();
            entries.push((fingerprint(&headers[49]) ^ 1, 50));
            write_stale_run(&db, entries);
            db.flush().unwrap();
        }
        let mut store = Store::open(&dir, runs_config()).unwrap();
        let report = store.check_integrity().unwrap();
        assert_eq!(report.header_height, 40);
        assert_eq!(report.stale_hash_index_entries, 27, "{before:?}");
        assert_all_found(&store, &headers[..40]);
        assert_eq!(store.height_of(&headers[44].header.hash()).unwrap(), None);

        for (range, stale) in [40..70, 70..80].into_iter().zip(stale_after) {
            store.save_headers(&headers[range.clone()]).unwrap();
            let report = store.check_integrity().unwrap();
            assert_eq!(report.header_height, range.end as u64);
            assert_eq!(
                report.stale_hash_index_entries, stale,
                "{before:?}, after storing {range:?}"
            );
            assert_all_found(&store, &headers[..range.end]);
        }
        drop(store);
        store = Store::open(&dir, runs_config()).unwrap();
        let report = store.check_integrity().unwrap();
        assert_eq!(report.stale_hash_index_entries, stale_after[1]);
        assert_all_found(&store, &headers);
    }
}

/// A header's hash index entry removed, or replaced (the entry count
/// unchanged) by one with another fingerprint or by a copy of another
/// header's entry, behind the store's back: lookups no longer find that
/// header, and `check_integrity` says which one is missing.
#[test]
fn a_missing_or_replaced_hash_index_entry_is_corrupt_naming_its_height() {
    let (headers, _) = common::build_chain(19, 70, false);
    let fp50 = fingerprint(&headers[49]);
    let fp49 = fingerprint(&headers[48]);
    for what in ["removed", "another fingerprint", "header 49's entry again"] {
        let dir = common::fresh_dir("tampered-hash-index");
        {
            let store = Store::open(&dir, runs_config()).unwrap();
            store.save_headers(&headers[..40]).unwrap();
            store.save_headers(&headers[40..]).unwrap();
            assert_eq!(store.check_integrity().unwrap().stale_hash_index_entries, 0);
        }
        {
            let db = common::open_raw(&dir);
            tamper_index_page(&db, 50, |entries| {
                let at = entries.iter().position(|&(_, h)| h == 50).unwrap();
                match what {
                    "removed" => drop(entries.remove(at)),
                    "another fingerprint" => entries[at].0 = fp50 ^ 1,
                    _ => entries[at] = (fp49, 49),
                }
            });
            db.flush().unwrap();
        }
        let store = Store::open(&dir, runs_config()).unwrap();
        assert_eq!(
            store.height_of(&headers[49].header.hash()).unwrap(),
            None,
            "{what}"
        );
        assert_all_found(&store, &headers[..49]);
        assert_all_found(&store, &headers[50..]);
        let error = store.check_integrity().unwrap_err();
        assert!(
            matches!(&error, StoreError::Corrupt { key, what }
                if key == "0b" && what.contains("no hash index entry for header 50 ")),
            "{what}: {error}"
        );
    }
}
