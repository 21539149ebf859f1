#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! Snapshots: serving the exact state at the snapshot height against a
//! BTreeMap model (property test), chunk continuation, serving during writes,
//! and restoring from chunks with a restart in the middle and bad data.

mod common;

use std::collections::BTreeMap;

use common::{Model, apply_to_model, model_checksums, model_root};
use headway_store::{Store, StoreConfig, StoreError};
use headway_wire::{Hash, SnapshotData, Write};
use proptest::prelude::*;

/// The whole snapshot of `prefix` read in chunks of `budget` bytes.
fn read_prefix(store: &Store, height: u64, prefix: u8, budget: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut start = Vec::new();
    loop {
        let chunk = store
            .read_snapshot_chunk(height, prefix, &start, budget)
            .unwrap();
        if let (Some(first), false) = (chunk.entries.first(), start.is_empty()) {
            assert!(first.key >= start, "first key is at or after the start key");
        }
        assert!(!chunk.entries.is_empty() || chunk.prefix_exhausted);
        let exhausted = chunk.prefix_exhausted;
        for e in chunk.entries {
            out.push((e.key, e.value));
        }
        if exhausted {
            return out;
        }
        start = out.last().unwrap().0.clone();
        start.push(0);
    }
}

fn model_prefix(model: &Model, prefix: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .iter()
        .filter(|(k, _)| k[0] == prefix)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn arb_block() -> impl Strategy<Value = Vec<Write>> {
    let write = (
        1u8..=3,
        0u8..12,
        prop::option::weighted(0.75, prop::collection::vec(any::<u8>(), 0..24)),
    )
        .prop_map(|(prefix, k, value)| Write {
            key: vec![prefix, k],
            value,
        });
    prop::collection::vec(write, 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For random blocks and a small period, the snapshot served at its height
    /// equals the model at that height, read in small chunks, and the
    /// manifest's checksums equal the model's and commit to the state root
    /// the store returned at that height.
    #[test]
    fn served_snapshot_equals_the_model(
        period in 1u64..6,
        blocks in prop::collection::vec(arb_block(), 1..24),
        budget in 20usize..120,
    ) {
        let store = Store::open_temporary(
            StoreConfig::new().with_snapshot_period(period).with_sync_on_commit(false),
        ).unwrap();
        let mut model = Model::new();
        let mut models_at: BTreeMap<u64, Model> = BTreeMap::new();
        let mut roots_at: BTreeMap<u64, Hash> = BTreeMap::new();
        for (i, writes) in blocks.iter().enumerate() {
            let height = i as u64 + 1;
            let applied = store.apply_writes(height, writes).unwrap();
            apply_to_model(&mut model, writes);
            prop_assert_eq!(applied.snapshot_taken, height.is_multiple_of(period));
            models_at.insert(height, model.clone());
            roots_at.insert(height, applied.state_root);

            let Some(snapshot) = store.snapshot_height() else {
                prop_assert!(height < period);
                continue;
            };
            prop_assert_eq!(snapshot, height - height % period);
            let expected = &models_at[&snapshot];
            for prefix in 1u8..=3 {
                prop_assert_eq!(read_prefix(&store, snapshot, prefix, budget), model_prefix(expected, prefix));
            }
            if applied.snapshot_taken {
                let sums = model_checksums(expected);
                let manifest = store.snapshot_manifest(snapshot).unwrap();
                for entry in &manifest.prefixes {
                    prop_assert_eq!(entry.checksum, sums.get(entry.prefix).to_bytes());
                    prop_assert_eq!(entry.records, model_prefix(expected, entry.prefix).len() as u64);
                }
                prop_assert_eq!(manifest.prefixes.len(), sums.iter().count());
                prop_assert_eq!(roots_at[&snapshot], Hash(sums.state_root().into()));
            }
        }
        prop_assert_eq!(store.state_root().unwrap(), model_root(&model));
        let report = store.check_integrity().unwrap();
        prop_assert_eq!(report.state_records, model.len() as u64);
    }
}

#[test]
fn start_key_semantics_and_requests_that_cannot_be_served() {
    let store = Store::open_temporary(
        StoreConfig::new()
            .with_snapshot_period(3)
            .with_state_prefixes(headway_store::StatePrefixes::only(&[1, 2])),
    )
    .unwrap();
    let put = |k: &[u8], v: &[u8]| Write {
        key: k.to_vec(),
        value: Some(v.to_vec()),
    };
    assert!(matches!(
        store.read_snapshot_chunk(3, 1, b"", 100),
        Err(StoreError::SnapshotUnavailable {
            requested: 3,
            available: None
        })
    ));
    store
        .apply_writes(
            1,
            &[
                put(b"\x01a", b"1"),
                put(b"\x01b", b"2"),
                put(b"\x01c", b"3"),
            ],
        )
        .unwrap();
    store.apply_writes(2, &[put(b"\x02x", b"9")]).unwrap();
    store.apply_writes(3, &[]).unwrap();
    // Inclusive start key; "b" + 0x00 continues after "b".
    let chunk = store.read_snapshot_chunk(3, 1, b"\x01b", 1 << 20).unwrap();
    assert_eq!(chunk.entries.len(), 2);
    assert_eq!(chunk.entries[0].key, b"\x01b");
    let chunk = store
        .read_snapshot_chunk(3, 1, b"\x01b\x00", 1 << 20)
        .unwrap();
    assert_eq!(chunk.entries.len(), 1);
    assert!(chunk.prefix_exhausted);
    // A budget smaller than one entry still yields one entry.
    let mut iter = store.snapshot_chunk(3, 1, b"", 1).unwrap();
    assert_eq!(iter.next().unwrap().unwrap().key, b"\x01a");
    assert!(iter.next().is_none());
    assert_eq!(iter.prefix_exhausted(), Some(false));
    assert_eq!(iter.next_start_key().unwrap(), b"\x01a\x00");
    // Bad requests.
    assert!(matches!(
        store.read_snapshot_chunk(3, 1, b"\x02a", 10),
        Err(StoreError::InvalidStartKey { prefix: 1 })
    ));
    assert!(matches!(
        store.read_snapshot_chunk(3, 7, b"", 10),
        Err(StoreError::NotAStatePrefix { prefix: 7 })
    ));
    assert!(matches!(
        store.read_snapshot_chunk(2, 1, b"", 10),
        Err(StoreError::SnapshotUnavailable {
            requested: 2,
            available: Some(3)
        })
    ));
    // Local writes: only non-state prefixes, never in snapshots or checksums.
    let root = store.state_root().unwrap();
    store.write_local(&[put(b"\x09local", b"x")]).unwrap();
    assert!(matches!(
        store.write_local(&[put(b"\x01a", b"x")]),
        Err(StoreError::StatePrefixInLocalWrite { prefix: 1 })
    ));
    assert!(matches!(
        store.apply_writes(4, &[put(b"\x09a", b"x")]),
        Err(StoreError::NotAStatePrefix { prefix: 9 })
    ));
    assert_eq!(store.get_state(b"\x09local").unwrap().unwrap(), b"x");
    assert_eq!(store.state_root().unwrap(), root);
    store.check_integrity().unwrap();
}

#[test]
fn serving_while_blocks_are_written_stays_exact() {
    const SEED: u64 = 5;
    let store = Store::open_temporary(
        StoreConfig::new()
            .with_snapshot_period(40)
            .with_sync_on_commit(false),
    )
    .unwrap();
    for h in 1..=40 {
        store.apply_writes(h, &common::writes_for(SEED, h)).unwrap();
    }
    let expected = common::model_at(SEED, 40);
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for h in 41..=79 {
                store.apply_writes(h, &common::writes_for(SEED, h)).unwrap();
            }
        })
    };
    let mut rounds = 0;
    while !writer.is_finished() || rounds < 3 {
        for prefix in 1u8..=3 {
            assert_eq!(
                read_prefix(&store, 40, prefix, 64),
                model_prefix(&expected, prefix)
            );
        }
        rounds += 1;
    }
    writer.join().unwrap();
    assert_eq!(store.state_height(), 79);
    store.check_integrity().unwrap();
}

/// Serves every chunk of a snapshot from `source` into `target`; stops
/// after `stop_after` chunks if given.
fn transfer(
    source: &Store,
    target: &Store,
    height: u64,
    stop_after: Option<usize>,
    tamper: bool,
) -> Result<usize, StoreError> {
    let mut chunks = 0;
    let progress = target.restore_progress().unwrap().unwrap();
    for p in progress.prefixes.iter().filter(|p| !p.complete) {
        let mut start = p.next_start_key.clone();
        loop {
            if stop_after == Some(chunks) {
                return Ok(chunks);
            }
            let mut chunk: SnapshotData = source
                .read_snapshot_chunk(height, p.prefix, &start, 200)
                .unwrap();
            if tamper && p.prefix == 2 && chunks % 2 == 1 && !chunk.entries.is_empty() {
                chunk.entries[0].value.push(0xEE);
            }
            let exhausted = chunk.prefix_exhausted;
            let last = chunk.entries.last().map(|e| e.key.clone());
            target.restore_chunk(&chunk)?;
            chunks += 1;
            if exhausted {
                break;
            }
            start = last.unwrap();
            start.push(0);
        }
    }
    Ok(chunks)
}

#[test]
fn restore_resumes_after_restart_and_attributes_bad_prefixes() {
    const SEED: u64 = 21;
    let (headers, blocks) = common::simple_chain(SEED, 60);
    let config = StoreConfig::new().with_snapshot_period(25);
    let source = Store::open_temporary(config.clone()).unwrap();
    source.save_headers(&headers).unwrap();
    for b in &blocks {
        source.execute_block(b).unwrap();
    }
    assert_eq!(source.snapshot_height(), Some(50));
    let manifest = source.snapshot_manifest(50).unwrap();
    let root = headers[49].header.state_root;

    let dir = common::fresh_dir("restore");
    let target = Store::open(&dir, config.clone()).unwrap();
    // A manifest that does not commit to the header's root is refused.
    assert!(matches!(
        target.begin_restore(&manifest, Hash([0; 32])),
        Err(StoreError::ManifestRejected { .. })
    ));
    target.begin_restore(&manifest, root).unwrap();
    assert!(matches!(
        target.apply_writes(1, &[]),
        Err(StoreError::RestoreInProgress {
            snapshot_height: 50
        })
    ));
    let first = transfer(&source, &target, 50, Some(3), false).unwrap();
    assert_eq!(first, 3);
    drop(target);

    // Restart: the progress says where each prefix resumes.
    let target = Store::open(&dir, config.clone()).unwrap();
    let progress = target.restore_progress().unwrap().unwrap();
    assert!(!progress.is_complete());
    assert!(
        progress
            .prefixes
            .iter()
            .any(|p| !p.next_start_key.is_empty())
    );
    // Bad data in prefix 2 is caught when the prefix completes, and attributed to it.
    let error = transfer(&source, &target, 50, None, true).unwrap_err();
    assert!(
        matches!(error, StoreError::PrefixChecksumMismatch { prefix: 2, .. }),
        "{error:?}"
    );
    assert!(matches!(
        target.finish_restore(),
        Err(StoreError::RestoreIncomplete { .. })
    ));
    target.reset_restore_prefix(2).unwrap();
    transfer(&source, &target, 50, None, false).unwrap();
    let applied = target.finish_restore().unwrap();
    assert_eq!(applied.state_root, root);
    assert_eq!(
        (
            target.state_height(),
            target.snapshot_height(),
            target.block_height()
        ),
        (50, Some(50), 50)
    );
    assert_eq!(target.snapshot_manifest(50).unwrap(), manifest);

    // The restored node continues with blocks 51..=60 and serves the same snapshot.
    target.save_headers(&headers).unwrap();
    for b in &blocks[50..] {
        target.execute_block(b).unwrap();
    }
    assert_eq!(target.state_root().unwrap(), source.state_root().unwrap());
    for prefix in 1u8..=3 {
        assert_eq!(
            read_prefix(&target, 50, prefix, 300),
            read_prefix(&source, 50, prefix, 1000)
        );
    }
    assert_eq!(target.load_block(10).unwrap(), None);
    let report = target.check_integrity().unwrap();
    assert_eq!(report.state_root, headers[59].header.state_root);
}
