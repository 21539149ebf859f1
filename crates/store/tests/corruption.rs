#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! Corrupt or foreign data on disk: typed errors at open or on read, never panics.

mod common;

use headway_chain::HeaderExt as _;
use headway_store::{StatePrefixes, Store, StoreConfig, StoreError};
use headway_wire::Write;
use prost::Message as _;

fn populated(name: &str) -> std::path::PathBuf {
    populated_in_batches(name, 10)
}

/// A store with 10 headers saved `batch` at a time (so header segments start
/// at heights 1, 1 + batch, ...), 10 executed blocks and 3 stored bodies,
/// closed and opened once more, as after a restart: that syncs its MMR nodes
/// (the open rebuilds the nodes above the synced mark from every header
/// segment above it; below the mark, a damaged segment is found on read).
fn populated_in_batches(name: &str, batch: usize) -> std::path::PathBuf {
    let dir = populated_unsynced(name, batch);
    drop(open(&dir).unwrap());
    dir
}

/// As [`populated_in_batches`], without the second open: no MMR node is
/// synced yet.
fn populated_unsynced(name: &str, batch: usize) -> std::path::PathBuf {
    let dir = common::fresh_dir(name);
    let store = Store::open(&dir, config()).unwrap();
    let (headers, blocks) = common::simple_chain(1, 10);
    for chunk in headers.chunks(batch) {
        store.save_headers(chunk).unwrap();
    }
    for b in &blocks {
        store.execute_block(b).unwrap();
    }
    for b in &blocks[..3] {
        store.save_block(b).unwrap();
    }
    dir
}

/// The key of the header segment starting at `first`.
fn segment_key(first: u64) -> Vec<u8> {
    [&[0x07u8][..], &first.to_be_bytes()].concat()
}

/// Reads one raw value of the database in `dir`.
fn peek(dir: &std::path::Path, key: &[u8]) -> Vec<u8> {
    let db = common::open_raw(dir);
    db.get(key).unwrap().unwrap().to_vec()
}

/// The rows of the header segment starting at `first` of a store built by
/// [`populated`] (from `common::simple_chain(1, 10)`), as protobuf rows:
/// `(hash, encoded Header, encoded Commit)`, the headers from the chain and
/// the commits as stored. The store writes delta rows (format 10);
/// [`segment_value`] writes these back as a protobuf-row segment (formats 6
/// to 9), which it still reads.
fn segment_rows(
    first: u64,
    (headers, commits): &(Vec<u8>, Vec<u8>),
) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let count = u32::from_be_bytes(headers[..4].try_into().unwrap()) & 0x7fff_ffff;
    let (chain, _) = common::simple_chain(1, 10);
    let mut commits = &commits[..];
    let mut rows = Vec::new();
    for height in first..first + u64::from(count) {
        let header = &chain[height as usize - 1].header;
        let len = prost::encoding::decode_varint(&mut commits).unwrap() as usize;
        let (commit, tail) = commits.split_at(len);
        commits = tail;
        rows.push((
            header.hash().0.to_vec(),
            headway_wire::raw::Header::from(header).encode_to_vec(),
            commit.to_vec(),
        ));
    }
    assert!(commits.is_empty());
    rows
}

/// The inverse of [`segment_rows`]: the header part and the commit part.
fn segment_value(rows: &[(Vec<u8>, Vec<u8>, Vec<u8>)]) -> (Vec<u8>, Vec<u8>) {
    let mut headers = (rows.len() as u32).to_be_bytes().to_vec();
    let mut commits = Vec::new();
    for (hash, header, commit) in rows {
        headers.extend_from_slice(hash);
        prost::encoding::encode_varint(header.len() as u64, &mut headers);
        headers.extend_from_slice(header);
        prost::encoding::encode_varint(commit.len() as u64, &mut commits);
        commits.extend_from_slice(commit);
    }
    (headers, commits)
}

/// The header part and the commit part of the header segment starting at
/// `first`, from the header log its sled row points into
/// (`be64(offset) || be32(header part length) || be32(commit part length)`,
/// format 6).
fn peek_segment(dir: &std::path::Path, first: u64) -> (Vec<u8>, Vec<u8>) {
    let pointer = peek(dir, &segment_key(first));
    assert_eq!(pointer.len(), 16);
    let offset = u64::from_be_bytes(pointer[..8].try_into().unwrap()) as usize;
    let headers = u32::from_be_bytes(pointer[8..12].try_into().unwrap()) as usize;
    let commits = u32::from_be_bytes(pointer[12..16].try_into().unwrap()) as usize;
    let log = std::fs::read(dir.join("headers.log")).unwrap();
    (
        log[offset..offset + headers].to_vec(),
        log[offset + headers..offset + headers + commits].to_vec(),
    )
}

/// Replaces the header segment starting at `first`: appends its header part
/// and commit part to the header log and points its sled row at them
/// (`None`: removes the row).
fn poke_segment(dir: &std::path::Path, first: u64, parts: Option<(&[u8], &[u8])>) {
    let Some((headers, commits)) = parts else {
        return poke(dir, &segment_key(first), None);
    };
    use std::io::Write as _;
    let path = dir.join("headers.log");
    let offset = std::fs::metadata(&path).unwrap().len();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    log.write_all(headers).unwrap();
    log.write_all(commits).unwrap();
    log.sync_all().unwrap();
    let mut pointer = offset.to_be_bytes().to_vec();
    pointer.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    pointer.extend_from_slice(&(commits.len() as u32).to_be_bytes());
    poke(dir, &segment_key(first), Some(&pointer));
    // As a committed batch would: the log's committed length follows.
    let end = offset + (headers.len() + commits.len()) as u64;
    poke(dir, b"\x00header_log_end", Some(&end.to_be_bytes()));
}

/// Overwrites one raw key of the database in `dir`.
fn poke(dir: &std::path::Path, key: &[u8], value: Option<&[u8]>) {
    let db = common::open_raw(dir);
    match value {
        Some(v) => db.insert(key, v).unwrap(),
        None => db.remove(key).unwrap(),
    };
    db.flush().unwrap();
}

/// Snapshots every 4 blocks; the hash index writes every batch as a run (a
/// tail of one header), so that nothing above its mark is read at open and
/// a damaged lower segment is found where it is read.
fn config() -> StoreConfig {
    StoreConfig::new()
        .with_snapshot_period(4)
        .with_hash_index_tail(1)
}

fn open(dir: &std::path::Path) -> Result<Store, StoreError> {
    Store::open(dir, config())
}

#[test]
fn a_foreign_sled_database_is_refused() {
    let dir = common::fresh_dir("foreign");
    {
        let db = common::open_raw(&dir);
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
        let db = common::open_raw(&dir);
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
    poke(&dir, b"\x00format", Some(b"HEADWAY-STORE\x00\x00\x00\x0b"));
    assert!(matches!(
        open(&dir),
        Err(StoreError::UnsupportedVersion {
            found: 11,
            supported: 10
        })
    ));

    // A format-1 store (per-height metas, commits and MMR nodes) is refused
    // by its marker before any of its rows is read.
    let dir = populated("version-1");
    poke(&dir, b"\x00format", Some(b"HEADWAY-STORE\x00\x00\x00\x01"));
    poke(
        &dir,
        &[&[0x01u8][..], &1u64.to_be_bytes()].concat(),
        Some(b"v1 meta"),
    );
    let error = open(&dir).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::UnsupportedVersion {
                found: 1,
                supported: 10
            }
        ),
        "{error}"
    );

    // So is a format-2 store (one hash index key per header).
    let dir = populated("version-2");
    poke(&dir, b"\x00format", Some(b"HEADWAY-STORE\x00\x00\x00\x02"));
    poke(
        &dir,
        &[&[0x03u8][..], &[7u8; 32][..]].concat(),
        Some(&1u64.to_be_bytes()),
    );
    let error = open(&dir).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::UnsupportedVersion {
                found: 2,
                supported: 10
            }
        ),
        "{error}"
    );

    // And a format-3 store, whose rows always hold a commit (format 4 lets
    // a row hold none, which a format-3 reader would not decode).
    let dir = populated("version-3");
    poke(&dir, b"\x00format", Some(b"HEADWAY-STORE\x00\x00\x00\x03"));
    let error = open(&dir).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::UnsupportedVersion {
                found: 3,
                supported: 10
            }
        ),
        "{error}"
    );

    // And formats 4 to 7: format 4 keeps segments as sled values, not
    // pointers into the header log; format 5 keeps each row's commit next to
    // its header; format 6 keeps MMR nodes in sled chunks; format 7's headers
    // carry history roots with the leaf count first.
    for old in [4u8, 5, 6, 7] {
        let dir = populated(&format!("version-{old}"));
        poke(
            &dir,
            b"\x00format",
            Some(&[&b"HEADWAY-STORE\x00\x00\x00"[..], &[old]].concat()),
        );
        let error = open(&dir).unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::UnsupportedVersion { found, supported: 10 } if found == u32::from(old)
            ),
            "{error}"
        );
    }

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

    // The segment holding the top header does not decode: found at open.
    let dir = populated("top-header");
    poke_segment(&dir, 1, Some((b"\xff\xff\xff", b"\x00")));
    let error = open(&dir).unwrap_err();
    assert!(
        matches!(error, StoreError::Corrupt { ref key, .. } if key == "070000000000000001"),
        "{error}"
    );

    // The top segment is one row short, or holds a row too many: found at open.
    for (name, keep) in [("top-short", 9), ("top-long", 11)] {
        let dir = populated(name);
        let mut rows = segment_rows(1, &peek_segment(&dir, 1));
        let extra = rows[9].clone();
        rows.push(extra);
        rows.truncate(keep);
        let (headers, commits) = segment_value(&rows);
        poke_segment(&dir, 1, Some((&headers, &commits)));
        let error = open(&dir).unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    }

    // Segments of 3 headers: a lower segment that does not decode, a commit
    // that does not decode and a header of the wrong height inside valid
    // segments, a missing segment, body sizes that do not decode: found on
    // read, never a panic, and only where they are.
    let dir = populated_in_batches("lower-header", 3);
    poke_segment(&dir, 1, Some((b"garbage", b"\x00")));
    let mut rows = segment_rows(4, &peek_segment(&dir, 4));
    rows[0].2 = b"\x0a\x02zz".to_vec();
    let (headers, commits) = segment_value(&rows);
    poke_segment(&dir, 4, Some((&headers, &commits)));
    let mut rows = segment_rows(7, &peek_segment(&dir, 7));
    rows[1].1 = rows[0].1.clone();
    let (headers, commits) = segment_value(&rows);
    poke_segment(&dir, 7, Some((&headers, &commits)));
    poke(
        &dir,
        &[&[0x08u8][..], &5u64.to_be_bytes()].concat(),
        Some(b"\x01"),
    );
    let store = open(&dir).unwrap();
    assert!(matches!(
        store.load_block_meta(3),
        Err(StoreError::Corrupt { ref key, .. }) if key == "070000000000000001"
    ));
    assert!(matches!(
        store.load_commit(4),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.load_signed_header(4),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(store.load_header(4).unwrap().unwrap().height, 4);
    // Headers alone are read from the header part, which is intact.
    assert_eq!(store.load_bare_headers(4, 3).unwrap().len(), 3);
    assert_eq!(
        store
            .load_encoded_bare_headers(4, 3, usize::MAX)
            .unwrap()
            .len(),
        3
    );
    assert!(matches!(
        store.load_signed_headers(4, 3),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.load_header(8),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(store.load_header(7).unwrap().unwrap().height, 7);
    assert!(matches!(
        store.load_signed_headers(5, 4),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(store.load_signed_headers(5, 3).unwrap().len(), 3);
    assert_eq!(store.load_signed_headers(10, 5).unwrap().len(), 1);
    assert!(matches!(
        store.load_signed_headers(1, 1),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.load_block_meta(5),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.check_integrity(),
        Err(StoreError::Corrupt { .. })
    ));
    drop(store);
    poke(&dir, &segment_key(4), None);
    let store = open(&dir).unwrap();
    assert!(matches!(
        store.load_header(5),
        Err(StoreError::Corrupt { ref key, .. }) if key == "070000000000000001"
    ));
    assert!(matches!(
        store.load_signed_headers(5, 1),
        Err(StoreError::Corrupt { .. })
    ));
    drop(store);

    // The MMR node file. Nodes above the synced mark (here all of them: 10
    // headers are far below a sync) are rebuilt at open from the stored
    // header hashes, whatever a crash left: a short file, a missing one, a
    // zeroed tail.
    let nodes_len = |dir: &std::path::Path| std::fs::metadata(dir.join("mmr.nodes")).unwrap().len();
    let set_len = |dir: &std::path::Path, len: u64| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("mmr.nodes"))
            .unwrap()
            .set_len(len)
            .unwrap()
    };
    let write_at = |dir: &std::path::Path, bytes: &[u8], offset: u64| {
        use std::os::unix::fs::FileExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("mmr.nodes"))
            .unwrap()
            .write_all_at(bytes, offset)
            .unwrap()
    };
    let synced_key = b"\x00mmr_synced_leaves";
    let dir = populated_unsynced("mmr-rebuilt", 4);
    assert!(common::open_raw(&dir).get(synced_key).unwrap().is_none());
    let len = nodes_len(&dir);
    assert_eq!(len, 32 * node_count(10));
    let intact = std::fs::read(dir.join("mmr.nodes")).unwrap();
    set_len(&dir, len - 1);
    open(&dir).unwrap().check_integrity().unwrap();
    assert_eq!(std::fs::read(dir.join("mmr.nodes")).unwrap(), intact);
    assert_eq!(
        peek(&dir, synced_key),
        10u64.to_be_bytes(),
        "rebuilt and synced"
    );
    poke(&dir, synced_key, Some(&0u64.to_be_bytes()));
    write_at(&dir, &[0; 96], len - 96);
    open(&dir).unwrap().check_integrity().unwrap();
    assert_eq!(std::fs::read(dir.join("mmr.nodes")).unwrap(), intact);
    poke(&dir, synced_key, Some(&0u64.to_be_bytes()));
    std::fs::remove_file(dir.join("mmr.nodes")).unwrap();
    open(&dir).unwrap().check_integrity().unwrap();
    assert_eq!(std::fs::read(dir.join("mmr.nodes")).unwrap(), intact);
    // Short of the synced nodes: corrupt at open, and not cut further. A
    // mark above the header height: corrupt.
    set_len(&dir, len - 1);
    let error = open(&dir).unwrap_err();
    assert!(
        matches!(error, StoreError::Corrupt { .. }) && error.to_string().contains("MMR"),
        "{error}"
    );
    assert_eq!(nodes_len(&dir), len - 1);
    poke(&dir, synced_key, Some(&11u64.to_be_bytes()));
    let error = open(&dir).unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { key, .. } if key == "006d6d725f73796e6365645f6c6561766573"),
        "{error}"
    );
    // Longer (nodes of a batch that never committed): cut at open.
    let dir = populated_in_batches("mmr-long", 4);
    {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("mmr.nodes"))
            .unwrap();
        file.write_all(&[0xA5; 100]).unwrap();
    }
    let store = open(&dir).unwrap();
    assert_eq!(nodes_len(&dir), len);
    store.check_integrity().unwrap();
    let (more, _) = common::simple_chain(1, 12);
    store.save_headers(&more[10..]).unwrap();
    store.check_integrity().unwrap();
    drop(store);
    // A synced node changed behind the store's back: the integrity check
    // rebuilds the MMR from the stored headers and names it.
    let dir = populated_in_batches("mmr-lower-node", 4);
    write_at(&dir, &[7; 32], 32);
    let store = open(&dir).unwrap();
    let error = store.check_integrity().unwrap_err();
    assert!(
        matches!(error, StoreError::Corrupt { .. }) && error.to_string().contains("MMR node 1 "),
        "{error}"
    );
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

/// The bare height (the highest height stored without its commit) is
/// checked at open against the header height and by `check_integrity`
/// against the rows.
#[test]
fn bare_height_is_checked_against_the_rows() {
    const BARE_HEIGHT: &[u8] = b"\x00bare_height";
    // Above the header height: refused at open.
    let dir = populated("bare-above");
    poke(&dir, BARE_HEIGHT, Some(&11u64.to_be_bytes()));
    let error = open(&dir).unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { key, .. } if key == "00626172655f686569676874"),
        "{error}"
    );
    // Not 8 bytes.
    poke(&dir, BARE_HEIGHT, Some(&[1, 2]));
    assert!(matches!(open(&dir), Err(StoreError::Corrupt { .. })));

    // Every row holds its commit, but the meta claims bare rows.
    let dir = populated("bare-claimed");
    poke(&dir, BARE_HEIGHT, Some(&5u64.to_be_bytes()));
    let store = open(&dir).unwrap();
    assert_eq!(store.bare_height(), 5);
    let error = store.check_integrity().unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { key, .. } if key == "00626172655f686569676874"),
        "{error}"
    );
    drop(store);

    // A row whose commit was dropped behind the store's back.
    let dir = populated("bare-dropped");
    let mut rows = segment_rows(1, &peek_segment(&dir, 1));
    rows[3].2 = Vec::new();
    let (headers, commits) = segment_value(&rows);
    poke_segment(&dir, 1, Some((&headers, &commits)));
    let store = open(&dir).unwrap();
    assert_eq!(store.load_commit(4).unwrap(), None);
    assert_eq!(store.load_signed_headers(1, 10).unwrap().len(), 3);
    assert!(matches!(
        store.check_integrity(),
        Err(StoreError::Corrupt { .. })
    ));
}

/// MMR nodes of `leaves` leaves.
fn node_count(leaves: u64) -> u64 {
    2 * leaves - u64::from(leaves.count_ones())
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

/// Keys whose start is so high that the heights or positions they cover do
/// not fit in a u64 are corrupt, not a panic or a wrapped height.
#[test]
fn keys_starting_near_u64_max_are_corrupt() {
    let dir = populated("segment-at-max");
    let pointer = peek(&dir, &segment_key(1));
    poke(&dir, &segment_key(u64::MAX - 1), Some(&pointer));
    // The top segment is now the bogus one: opening must refuse it.
    let error = open(&dir).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");

    // A key under the retired MMR chunk tag (format 7 keeps nodes in their
    // own file): the integrity check names it.
    let dir = populated("chunk-at-max");
    let chunk_key = [&[0x09u8][..], &(u64::MAX - 3).to_be_bytes()].concat();
    poke(&dir, &chunk_key, Some(&[7u8; 64]));
    let error = open(&dir).unwrap().check_integrity().unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { key, .. } if key.starts_with("09")),
        "{error}"
    );
}

/// The header log: bytes past the last stored segment (a batch appended but
/// never committed, as after a crash) are cut at open; a log missing or
/// shorter than its segments, or a malformed pointer, is corrupt, never a
/// panic, and never cuts stored headers.
#[test]
fn the_header_log_is_cut_to_its_segments_and_checked_against_them() {
    let log_len = |dir: &std::path::Path| std::fs::metadata(dir.join("headers.log")).unwrap().len();

    let dir = populated_in_batches("log-tail", 4);
    let len = log_len(&dir);
    {
        use std::io::Write as _;
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("headers.log"))
            .unwrap();
        log.write_all(&[0xA5; 5000]).unwrap();
    }
    let store = open(&dir).unwrap();
    assert_eq!(log_len(&dir), len, "the uncommitted tail is cut");
    assert_eq!(store.load_signed_headers(1, 10).unwrap().len(), 10);
    store.check_integrity().unwrap();
    // The store appends where the cut left off.
    let (more, _) = common::simple_chain(1, 12);
    store.save_headers(&more[10..]).unwrap();
    drop(store);
    let store = open(&dir).unwrap();
    assert_eq!(store.load_signed_headers(1, 12).unwrap().len(), 12);
    store.check_integrity().unwrap();
    drop(store);

    // A log shorter than its committed length: corrupt, and not cut further.
    let dir = populated_in_batches("log-short", 4);
    let len = log_len(&dir);
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("headers.log"))
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let error = open(&dir).unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { key, .. } if key == "006865616465725f6c6f675f656e64"),
        "{error}"
    );
    assert_eq!(log_len(&dir), len - 1);

    // A missing log.
    let dir = populated("log-missing");
    std::fs::remove_file(dir.join("headers.log")).unwrap();
    let error = open(&dir).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");

    // A lower segment's pointer of the wrong size, or past the log's end:
    // found on read and by the integrity check.
    for (name, pointer) in [
        ("pointer-size", vec![0u8; 5]),
        (
            "pointer-past-end",
            [
                &1u64.to_be_bytes()[..],
                &(1u32 << 20).to_be_bytes(),
                &1u32.to_be_bytes(),
            ]
            .concat(),
        ),
        ("pointer-empty", [0u8; 16].to_vec()),
        (
            "pointer-no-commit-part",
            [
                &0u64.to_be_bytes()[..],
                &40u32.to_be_bytes(),
                &0u32.to_be_bytes(),
            ]
            .concat(),
        ),
    ] {
        let dir = populated_in_batches(name, 4);
        poke(&dir, &segment_key(5), Some(&pointer));
        let store = open(&dir).unwrap();
        assert!(
            matches!(store.load_header(6), Err(StoreError::Corrupt { ref key, .. }) if key == "070000000000000005"),
            "{name}"
        );
        assert_eq!(store.load_header(2).unwrap().unwrap().height, 2);
        assert!(matches!(
            store.check_integrity(),
            Err(StoreError::Corrupt { .. })
        ));
    }

    // Two segments pointing at overlapping bytes: the integrity check says so.
    let dir = populated_in_batches("pointer-overlap", 4);
    let first = peek(&dir, &segment_key(1));
    let mut overlapping = peek(&dir, &segment_key(5));
    overlapping[..8].copy_from_slice(&first[..8]);
    poke(&dir, &segment_key(5), Some(&overlapping));
    let store = open(&dir).unwrap();
    let error = store.check_integrity().unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { key, .. } if key == "070000000000000005"),
        "{error}"
    );
}

/// A format-8 store (hash index runs hold every header, no mark) is
/// upgraded in place at open: the marker says 10 and the mark is the header
/// height, written before anything else; every header is found.
#[test]
fn a_format_8_store_is_upgraded_in_place() {
    let dir = populated("version-8");
    poke(&dir, b"\x00format", Some(b"HEADWAY-STORE\x00\x00\x00\x08"));
    poke(&dir, b"\x00hash_index_mark", None);
    let store = Store::open(&dir, StoreConfig::new().with_snapshot_period(4)).unwrap();
    store.check_integrity().unwrap();
    let (headers, _) = common::simple_chain(1, 10);
    for signed in &headers {
        assert_eq!(
            store.height_of(&signed.header.hash()).unwrap(),
            Some(signed.header.height)
        );
    }
    drop(store);
    let db = common::open_raw(&dir);
    assert_eq!(
        db.get(b"\x00format").unwrap().unwrap().as_ref(),
        b"HEADWAY-STORE\x00\x00\x00\x0a"
    );
    assert_eq!(
        db.get(b"\x00hash_index_mark").unwrap().unwrap().as_ref(),
        10u64.to_be_bytes()
    );
}

/// The hash index's tail is rebuilt at open from the segments above its
/// mark: a damaged one there is found at open (as the MMR's rebuild finds
/// one above its synced mark), and a mark above the header height, or more
/// headers below it than a tail can hold, is corrupt.
#[test]
fn the_hash_index_mark_and_the_segments_above_it_are_checked_at_open() {
    let tail = || StoreConfig::new().with_snapshot_period(4);
    let dir = populated_in_batches("tail-segment", 3);
    poke(&dir, b"\x00hash_index_mark", Some(&3u64.to_be_bytes()));
    assert_eq!(
        Store::open(&dir, tail())
            .unwrap()
            .height_of(&common::simple_chain(1, 10).0[5].header.hash())
            .unwrap(),
        Some(6)
    );
    poke_segment(&dir, 4, Some((b"garbage", b"\x00")));
    let error = Store::open(&dir, tail()).unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { key, .. } if key == "070000000000000004"),
        "{error}"
    );

    let dir = populated("tail-mark-high");
    poke(&dir, b"\x00hash_index_mark", Some(&11u64.to_be_bytes()));
    let error = Store::open(&dir, tail()).unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { key, what } if key == "00686173685f696e6465785f6d61726b" && what.contains("above the header height")),
        "{error}"
    );
    poke(&dir, b"\x00hash_index_mark", Some(&[0u8; 3]));
    assert!(matches!(
        Store::open(&dir, tail()),
        Err(StoreError::Corrupt { .. })
    ));
}

/// A format-9 store, whose segments hold protobuf rows, is upgraded in
/// place at open by its marker alone: its old segments read as they did,
/// beside the delta rows (format 10) of the segments stored after, through
/// every reader (decoded, encoded, by fields, by hash), and the store
/// keeps growing on top of them.
#[test]
fn a_format_9_store_is_read_and_grown_beside_delta_rows() {
    let dir = populated_in_batches("version-9", 5);
    let rows = segment_rows(6, &peek_segment(&dir, 6));
    let (headers, commits) = segment_value(&rows);
    assert_eq!(u32::from_be_bytes(headers[..4].try_into().unwrap()), 5);
    poke_segment(&dir, 6, Some((&headers, &commits)));
    poke(&dir, b"\x00format", Some(b"HEADWAY-STORE\x00\x00\x00\x09"));
    let (chain, _) = common::simple_chain(1, 20);
    assert_eq!(chain[..10], common::simple_chain(1, 10).0[..]);
    let check = |store: &Store, top: u64| {
        store.check_integrity().unwrap();
        let signed = store.load_signed_headers(1, top).unwrap();
        assert_eq!(signed, chain[..top as usize]);
        let encoded = store.load_encoded_bare_headers(1, top, usize::MAX).unwrap();
        let mut fields = Vec::new();
        let mut parts = Vec::new();
        store
            .visit_header_fields(1, top, |f, set| {
                let mut bytes = Vec::new();
                f.encode(&mut bytes);
                fields.push((bytes, set.map(<[u8]>::to_vec)));
                true
            })
            .unwrap();
        store
            .visit_encoded_header_parts(1, top, |header, set| {
                parts.push((header.to_vec(), set.map(<[u8]>::to_vec)));
                true
            })
            .unwrap();
        assert_eq!(fields, parts);
        for (h, signed) in chain[..top as usize].iter().enumerate() {
            let header = headway_wire::raw::Header::from(&signed.header).encode_to_vec();
            assert_eq!(parts[h].0, header, "height {}", h + 1);
            assert_eq!(
                encoded[h],
                headway_wire::encoded::bare_header_from_parts(&header, parts[h].1.as_deref())
            );
            assert_eq!(
                store.height_of(&signed.header.hash()).unwrap(),
                Some(signed.header.height)
            );
        }
    };
    let store = open(&dir).unwrap();
    check(&store, 10);
    store.save_headers(&chain[10..15]).unwrap();
    store.save_headers(&chain[15..]).unwrap();
    check(&store, 20);
    drop(store);
    let db = common::open_raw(&dir);
    assert_eq!(
        db.get(b"\x00format").unwrap().unwrap().as_ref(),
        b"HEADWAY-STORE\x00\x00\x00\x0a"
    );
    drop(db);
    let store = open(&dir).unwrap();
    check(&store, 20);
    // Segment 6 still holds its protobuf rows; the others, delta rows.
    drop(store);
    for (first, delta) in [(1, true), (6, false), (11, true), (16, true)] {
        let (headers, _) = peek_segment(&dir, first);
        assert_eq!(headers[0] >> 7 == 1, delta, "segment {first}");
    }
}
