#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! Corrupt or foreign data on disk: typed errors at open or on read, never panics.

mod common;

use headway_store::{StatePrefixes, Store, StoreConfig, StoreError};
use headway_wire::Write;

fn populated(name: &str) -> std::path::PathBuf {
    let dir = common::fresh_dir(name);
    let store = Store::open(&dir, StoreConfig::new().with_snapshot_period(4)).unwrap();
    let (headers, blocks) = common::simple_chain(1, 10);
    store.save_headers(&headers).unwrap();
    for b in &blocks {
        store.execute_block(b).unwrap();
    }
    dir
}

/// Overwrites one raw key of the database in `dir`.
fn poke(dir: &std::path::Path, key: &[u8], value: Option<&[u8]>) {
    let db = sled::open(dir).unwrap();
    match value {
        Some(v) => db.insert(key, v).unwrap(),
        None => db.remove(key).unwrap(),
    };
    db.flush().unwrap();
}

fn open(dir: &std::path::Path) -> Result<Store, StoreError> {
    Store::open(dir, StoreConfig::new().with_snapshot_period(4))
}

#[test]
fn a_foreign_sled_database_is_refused() {
    let dir = common::fresh_dir("foreign");
    {
        let db = sled::open(&dir).unwrap();
        db.insert(b"some", b"thing").unwrap();
        db.flush().unwrap();
    }
    let error = open(&dir).unwrap_err();
    assert!(
        matches!(error, StoreError::ForeignDatabase { .. }),
        "{error}"
    );

    let dir = common::fresh_dir("foreign-tree");
    {
        let db = sled::open(&dir).unwrap();
        db.open_tree("other").unwrap().insert(b"a", b"b").unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(
        open(&dir),
        Err(StoreError::ForeignDatabase { .. })
    ));
}

#[test]
fn format_marker_version_and_config_are_checked() {
    let dir = populated("marker");
    poke(&dir, b"\x00format", Some(b"SOMETHING-ELSE\x00\x00\x00\x01"));
    let error = open(&dir).unwrap_err();
    assert!(
        matches!(error, StoreError::ForeignDatabase { .. }),
        "{error}"
    );

    let dir = populated("version");
    poke(&dir, b"\x00format", Some(b"HEADWAY-STORE\x00\x00\x00\x09"));
    assert!(matches!(
        open(&dir),
        Err(StoreError::UnsupportedVersion {
            found: 9,
            supported: 1
        })
    ));

    let dir = populated("config");
    let error = Store::open(&dir, StoreConfig::new().with_snapshot_period(5)).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::ConfigMismatch {
                what: "snapshot_period",
                ..
            }
        ),
        "{error}"
    );
    let error = Store::open(
        &dir,
        StoreConfig::new()
            .with_snapshot_period(4)
            .with_state_prefixes(StatePrefixes::only(&[1])),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::ConfigMismatch {
                what: "state_prefixes",
                ..
            }
        ),
        "{error}"
    );
    open(&dir).unwrap().check_integrity().unwrap();
}

#[test]
fn garbage_values_are_typed_corruption_errors() {
    // A height that is not 8 bytes.
    let dir = populated("height");
    poke(&dir, b"\x00header_height", Some(&[1, 2, 3]));
    let error = open(&dir).unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { key, .. } if key == "006865616465725f686569676874"),
        "{error}"
    );
    assert!(error.to_string().contains("8-byte"), "{error}");

    // The top header does not decode: found at open.
    let dir = populated("top-header");
    poke(
        &dir,
        &[&[0x01u8][..], &10u64.to_be_bytes()].concat(),
        Some(b"\xff\xff\xff"),
    );
    let error = open(&dir).unwrap_err();
    assert!(
        matches!(error, StoreError::Corrupt { ref key, .. } if key == "01000000000000000a"),
        "{error}"
    );

    // A lower header, a commit and a body that do not decode: found on read.
    let dir = populated("lower-header");
    poke(
        &dir,
        &[&[0x01u8][..], &3u64.to_be_bytes()].concat(),
        Some(b"garbage"),
    );
    poke(
        &dir,
        &[&[0x02u8][..], &4u64.to_be_bytes()].concat(),
        Some(b"\x0a\x02zz"),
    );
    let store = open(&dir).unwrap();
    assert!(matches!(
        store.load_block_meta(3),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.load_commit(4),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(store.load_block_meta(2).unwrap().is_some());
    assert!(matches!(
        store.check_integrity(),
        Err(StoreError::Corrupt { .. })
    ));
    drop(store);

    // A checksum that is not a canonical ristretto255 encoding.
    let dir = populated("checksum");
    poke(&dir, &[0x12, 0x01], Some(&[0xff; 40]));
    let error = open(&dir).unwrap_err();
    assert!(error.to_string().contains("checksum"), "{error}");

    // A state value changed behind the store's back: the integrity check names it.
    let dir = populated("state");
    let key = {
        let store = open(&dir).unwrap();
        let (key, _) = store.state_records(1).next().unwrap().unwrap();
        key
    };
    poke(&dir, &[&[0x10u8][..], &key].concat(), Some(b"tampered"));
    let error = open(&dir).unwrap().check_integrity().unwrap_err();
    assert!(error.to_string().contains("differs from"), "{error}");

    // An Ancestral Record with a bad marker: the snapshot stream says so.
    let dir = populated("ancestral");
    {
        let store = open(&dir).unwrap();
        store
            .apply_writes(
                11,
                &[Write {
                    key: b"\x01zzz".to_vec(),
                    value: Some(b"1".to_vec()),
                }],
            )
            .unwrap();
    }
    poke(
        &dir,
        &[&[0x11u8][..], &8u64.to_be_bytes(), b"\x01zzz"].concat(),
        Some(b"\x07"),
    );
    let store = open(&dir).unwrap();
    let items: Vec<_> = store
        .snapshot_chunk(8, 1, b"", usize::MAX)
        .unwrap()
        .collect();
    assert!(
        items
            .iter()
            .any(|i| matches!(i, Err(StoreError::Corrupt { .. })))
    );
}

#[test]
fn garbage_engine_files_do_not_panic() {
    let dir = common::fresh_dir("garbage-files");
    std::fs::write(dir.join("conf"), b"not a sled config at all").unwrap();
    std::fs::write(dir.join("db"), vec![0xA5u8; 1 << 16]).unwrap();
    let result = std::panic::catch_unwind(|| open(&dir).map(|_| ()));
    let result = result.expect("opening garbage files must not panic");
    assert!(result.is_err());
}
