//! Conformance vectors: `tests/vectors/ellipticsum.json` at the repository root.
//!
//! `vectors_match_the_file` checks this crate against the file, and that the
//! file is what the generator below produces. To regenerate after a
//! deliberate change:
//!
//! ```text
//! cargo test -p headway-ellipticsum --test vectors -- --ignored generate_vectors
//! ```
//!
//! The format is described in `docs/ellipticsum.md`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic on bad fixtures"
)]

use std::path::PathBuf;

use headway_ellipticsum::{
    Checksum, DESO_DST, HEADWAY_DST, PrefixChecksums, RecordHasher, STATE_ROOT_TAG,
};
use serde::{Deserialize, Serialize};

/// The whole vector file.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct VectorFile {
    description: String,
    suites: Vec<Suite>,
    state_roots: Vec<StateRootVector>,
}

/// All cases under one DST.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Suite {
    name: String,
    /// The DST as an ASCII string.
    dst: String,
    cases: Vec<Case>,
}

/// A multiset of records and its checksum.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Case {
    name: String,
    records: Vec<RecordJson>,
    checksum: String,
}

/// A record: each of key and value is given either as hex or, for big
/// deterministic contents, as one byte repeated.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct RecordJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_repeat: Option<Repeat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value_repeat: Option<Repeat>,
}

/// `len` copies of `byte` (hex, one byte).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Repeat {
    byte: String,
    len: usize,
}

/// Per-prefix checksums and the state root of a multiset of records.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct StateRootVector {
    name: String,
    dst: String,
    records: Vec<RecordJson>,
    /// Non-identity prefixes, ascending.
    prefixes: Vec<PrefixJson>,
    state_root: String,
}

/// One prefix's checksum.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct PrefixJson {
    prefix: u8,
    checksum: String,
}

fn vector_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/ellipticsum.json")
}

const MIB: usize = 1 << 20;

/// A record in memory, with how it is written in the file.
struct Rec {
    key: Vec<u8>,
    value: Vec<u8>,
    json: RecordJson,
}

fn rec(key: &[u8], value: &[u8]) -> Rec {
    Rec {
        key: key.to_vec(),
        value: value.to_vec(),
        json: RecordJson {
            key: Some(hex::encode(key)),
            key_repeat: None,
            value: Some(hex::encode(value)),
            value_repeat: None,
        },
    }
}

fn rec_big_value(key: &[u8], byte: u8, len: usize) -> Rec {
    Rec {
        key: key.to_vec(),
        value: vec![byte; len],
        json: RecordJson {
            key: Some(hex::encode(key)),
            key_repeat: None,
            value: None,
            value_repeat: Some(Repeat {
                byte: hex::encode([byte]),
                len,
            }),
        },
    }
}

fn rec_big_key(byte: u8, len: usize, value: &[u8]) -> Rec {
    Rec {
        key: vec![byte; len],
        value: value.to_vec(),
        json: RecordJson {
            key: None,
            key_repeat: Some(Repeat {
                byte: hex::encode([byte]),
                len,
            }),
            value: Some(hex::encode(value)),
            value_repeat: None,
        },
    }
}

/// 100 records over five prefixes with values of 0 to 99 bytes.
fn many_records() -> Vec<Rec> {
    (0u32..100)
        .map(|i| {
            let mut key = vec![(i % 5) as u8 * 3];
            key.extend_from_slice(b"record-");
            key.extend_from_slice(&i.to_be_bytes());
            let value: Vec<u8> = (0..i).map(|j| (i * 31 + j * 7) as u8).collect();
            rec(&key, &value)
        })
        .collect()
}

/// The cases every suite has, as (name, records).
fn case_records() -> Vec<(&'static str, Vec<Rec>)> {
    let mut many_and_big = many_records();
    many_and_big.truncate(10);
    many_and_big.push(rec_big_value(b"\x07big", 0xab, MIB));
    vec![
        ("empty set", vec![]),
        ("one record", vec![rec(b"key1", b"value1")]),
        (
            "two records",
            vec![rec(b"key1", b"value1"), rec(b"key2", b"value2")],
        ),
        (
            "two records, other order",
            vec![rec(b"key2", b"value2"), rec(b"key1", b"value1")],
        ),
        (
            "duplicate record counts twice",
            vec![rec(b"key1", b"value1"), rec(b"key1", b"value1")],
        ),
        ("empty key", vec![rec(b"", b"value")]),
        ("empty value", vec![rec(b"key", b"")]),
        ("empty key and empty value", vec![rec(b"", b"")]),
        ("key ab, value c", vec![rec(b"ab", b"c")]),
        ("key a, value bc", vec![rec(b"a", b"bc")]),
        ("many records", many_records()),
        ("1 MiB value", vec![rec_big_value(b"\x07big", 0xab, MIB)]),
        ("1 MiB key", vec![rec_big_key(0x5c, MIB, b"small value")]),
        ("many records and a 1 MiB value", many_and_big),
    ]
}

fn sum(hasher: &RecordHasher, records: &[Rec]) -> Checksum {
    hasher.sum_records(records.iter().map(|r| (&r.key, &r.value)))
}

fn state_root_records() -> Vec<(&'static str, Vec<Rec>)> {
    let mut records = many_records();
    records.push(rec(b"\x00", b""));
    records.push(rec(b"\xffmax prefix", b"v"));
    records.push(rec_big_value(b"\x80big", 0x01, MIB));
    vec![
        ("empty state", vec![]),
        (
            "one prefix",
            vec![rec(b"\x01alice", b"10"), rec(b"\x01bob", b"5")],
        ),
        ("many prefixes", records),
    ]
}

fn generate() -> VectorFile {
    let suites = [("headway", HEADWAY_DST), ("deso", DESO_DST)]
        .into_iter()
        .map(|(name, dst)| {
            let hasher = RecordHasher::new(dst).unwrap();
            Suite {
                name: name.to_owned(),
                dst: String::from_utf8(dst.to_vec()).unwrap(),
                cases: case_records()
                    .into_iter()
                    .map(|(name, records)| Case {
                        name: name.to_owned(),
                        checksum: hex::encode(sum(&hasher, &records).to_bytes()),
                        records: records.into_iter().map(|r| r.json).collect(),
                    })
                    .collect(),
            }
        })
        .collect();
    let hasher = RecordHasher::headway();
    let state_roots = state_root_records()
        .into_iter()
        .map(|(name, records)| {
            let mut set = PrefixChecksums::new();
            for r in &records {
                set.add_record(&hasher, &r.key, &r.value).unwrap();
            }
            StateRootVector {
                name: name.to_owned(),
                dst: String::from_utf8(HEADWAY_DST.to_vec()).unwrap(),
                prefixes: set
                    .iter()
                    .map(|(prefix, checksum)| PrefixJson {
                        prefix,
                        checksum: hex::encode(checksum.to_bytes()),
                    })
                    .collect(),
                state_root: hex::encode(set.state_root().as_bytes()),
                records: records.into_iter().map(|r| r.json).collect(),
            }
        })
        .collect();
    VectorFile {
        description: format!(
            "EllipticSum conformance vectors; format in docs/ellipticsum.md. \
             Checksums are compressed ristretto255 (RFC 9496) sums of \
             hash_to_ristretto255(BE64(len(k)+len(v)) || BE64(len(k)) || k || BE64(len(v)) || v, dst). \
             State roots are SHA-256({} || for each non-identity prefix ascending: prefix || checksum).",
            String::from_utf8_lossy(STATE_ROOT_TAG)
        ),
        suites,
        state_roots,
    }
}

/// Reads a record from the file's form, checking it is well formed.
fn decode_record(json: &RecordJson) -> (Vec<u8>, Vec<u8>) {
    fn part(plain: &Option<String>, repeat: &Option<Repeat>) -> Vec<u8> {
        match (plain, repeat) {
            (Some(hex), None) => hex::decode(hex).unwrap(),
            (None, Some(Repeat { byte, len })) => {
                let byte = hex::decode(byte).unwrap();
                assert_eq!(byte.len(), 1, "repeat byte is one byte");
                vec![byte[0]; *len]
            }
            _ => panic!("exactly one of the plain and the repeat form must be present"),
        }
    }
    (
        part(&json.key, &json.key_repeat),
        part(&json.value, &json.value_repeat),
    )
}

#[test]
fn vectors_match_the_file() {
    let text = std::fs::read_to_string(vector_path()).expect("vector file exists");
    let file: VectorFile = serde_json::from_str(&text).unwrap();

    // Independent of the generator: recompute every answer from the file.
    assert!(file.suites.len() >= 2);
    for suite in &file.suites {
        let hasher = RecordHasher::new(suite.dst.as_bytes()).unwrap();
        for case in &suite.cases {
            let records: Vec<_> = case.records.iter().map(decode_record).collect();
            let sequential = hasher.sum_records(&records);
            assert_eq!(
                hex::encode(sequential.to_bytes()),
                case.checksum,
                "{} / {}",
                suite.name,
                case.name
            );
            assert_eq!(hasher.par_sum_records(&records), sequential);
            assert_eq!(
                Checksum::from_slice(&hex::decode(&case.checksum).unwrap()).unwrap(),
                sequential
            );
        }
    }
    for vector in &file.state_roots {
        let hasher = RecordHasher::new(vector.dst.as_bytes()).unwrap();
        let records: Vec<_> = vector.records.iter().map(decode_record).collect();
        let set = PrefixChecksums::par_from_records(&hasher, &records).unwrap();
        let prefixes: Vec<_> = set
            .iter()
            .map(|(prefix, checksum)| PrefixJson {
                prefix,
                checksum: hex::encode(checksum.to_bytes()),
            })
            .collect();
        assert_eq!(prefixes, vector.prefixes, "{}", vector.name);
        assert_eq!(
            hex::encode(set.state_root().as_bytes()),
            vector.state_root,
            "{}",
            vector.name
        );
    }

    // And the file is up to date with the generator.
    assert!(
        file == generate(),
        "tests/vectors/ellipticsum.json is stale: regenerate it (see tests/vectors.rs)"
    );
}

#[test]
fn deso_suite_holds_the_known_answers() {
    let text = std::fs::read_to_string(vector_path()).expect("vector file exists");
    let file: VectorFile = serde_json::from_str(&text).unwrap();
    let deso = file
        .suites
        .iter()
        .find(|s| s.dst.as_bytes() == DESO_DST)
        .unwrap();
    let checksum = |name: &str| {
        deso.cases
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.checksum.clone())
            .unwrap()
    };
    // NOTES.md, "Hyper Sync and EllipticSum".
    assert_eq!(
        checksum("one record"),
        "90edd8ed99cc208c051506616c3f4d717ff81f64175c9b22599cb03347fec706"
    );
    assert_eq!(
        checksum("two records"),
        "ca6ea2b83cc15fda23483625f6492129bbd3d1bd14716248fc78eaa185352e28"
    );
    assert_eq!(checksum("empty set"), "00".repeat(32));
}

#[test]
#[ignore = "writes tests/vectors/ellipticsum.json; run on purpose"]
fn generate_vectors() {
    let mut text = serde_json::to_string_pretty(&generate()).unwrap();
    text.push('\n');
    std::fs::write(vector_path(), text).unwrap();
}
