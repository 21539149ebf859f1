//! Canonical encodings: layouts byte for byte (as `docs/chain.md` states them),
//! pinned known answers, and domain separation.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use headway_chain::encoding::{
    DATA_TAG, HEADER_TAG, VALIDATOR_SET_TAG, VOTE_TAG, sha256, transaction_encoding,
};
use headway_chain::{
    Address, BlockId, Hash, Header, HeaderExt, PublicKey, PublicKeyExt, Transaction, Validator,
    ValidatorSet, ValidatorSetExt, Write, data_hash, header_encoding, vote_sign_bytes,
};
use proptest::prelude::*;

fn sample_header() -> Header {
    Header {
        chain_id: "headway-test".to_owned(),
        height: 2,
        time_ms: 1_700_000_000_123,
        last_block_id: Some(BlockId {
            hash: Hash([0x11; 32]),
        }),
        data_hash: Hash([0x22; 32]),
        validators_hash: Hash([0x33; 32]),
        next_validators_hash: Hash([0x44; 32]),
        state_root: Hash([0x55; 32]),
        history_root: Hash([0x66; 32]),
        proposer_address: Address([0x77; 20]),
    }
}

fn sample_set() -> ValidatorSet {
    ValidatorSet {
        validators: vec![
            Validator {
                pub_key: PublicKey([1; 32]),
                voting_power: 10,
            },
            Validator {
                pub_key: PublicKey([2; 32]),
                voting_power: 20,
            },
        ],
    }
}

fn sample_txs() -> Vec<Transaction> {
    vec![
        Transaction {
            writes: vec![Write {
                key: b"\x01alice".to_vec(),
                value: Some(b"10".to_vec()),
            }],
        },
        Transaction {
            writes: vec![Write {
                key: b"\x01bob".to_vec(),
                value: None,
            }],
        },
        Transaction {
            writes: vec![Write {
                key: b"\x02carol".to_vec(),
                value: Some(vec![]),
            }],
        },
    ]
}

#[test]
fn header_encoding_layout() {
    let header = sample_header();
    let mut expected = b"HEADWAY-V1/HEADER\x00".to_vec();
    expected.extend_from_slice(&12u32.to_be_bytes());
    expected.extend_from_slice(b"headway-test");
    expected.extend_from_slice(&2u64.to_be_bytes());
    expected.extend_from_slice(&1_700_000_000_123u64.to_be_bytes());
    expected.push(1);
    expected.extend_from_slice(&[0x11; 32]);
    for b in [0x22u8, 0x33, 0x44, 0x55, 0x66] {
        expected.extend_from_slice(&[b; 32]);
    }
    expected.extend_from_slice(&[0x77; 20]);
    assert_eq!(header_encoding(&header), expected);
    assert_eq!(header.hash(), sha256(&expected));
    assert_eq!(HEADER_TAG, b"HEADWAY-V1/HEADER\x00");

    let mut first = header.clone();
    first.height = 1;
    first.last_block_id = None;
    let enc = header_encoding(&first);
    assert_eq!(enc[HEADER_TAG.len() + 4 + 12 + 16], 0x00);
    assert_eq!(enc.len(), expected.len() - 32);
}

#[test]
fn vote_sign_bytes_layout() {
    let bytes = vote_sign_bytes("c", 7, 3, &Hash([9; 32]));
    let mut expected = VOTE_TAG.to_vec();
    expected.extend_from_slice(&[0, 0, 0, 1, b'c']);
    expected.extend_from_slice(&7u64.to_be_bytes());
    expected.extend_from_slice(&3u32.to_be_bytes());
    expected.extend_from_slice(&[9; 32]);
    assert_eq!(bytes, expected);
    // Chain id, height, round and block all change what is signed.
    assert_ne!(bytes, vote_sign_bytes("d", 7, 3, &Hash([9; 32])));
    assert_ne!(bytes, vote_sign_bytes("c", 8, 3, &Hash([9; 32])));
    assert_ne!(bytes, vote_sign_bytes("c", 7, 4, &Hash([9; 32])));
    assert_ne!(bytes, vote_sign_bytes("c", 7, 3, &Hash([8; 32])));
}

#[test]
fn validator_set_hash_layout() {
    let mut expected = VALIDATOR_SET_TAG.to_vec();
    expected.extend_from_slice(&2u32.to_be_bytes());
    expected.extend_from_slice(&[1; 32]);
    expected.extend_from_slice(&10u64.to_be_bytes());
    expected.extend_from_slice(&[2; 32]);
    expected.extend_from_slice(&20u64.to_be_bytes());
    assert_eq!(sample_set().hash(), sha256(&expected));
}

#[test]
fn address_is_truncated_sha256_of_key() {
    let key = PublicKey([5; 32]);
    assert_eq!(key.address().0[..], sha256(&[5; 32]).0[..20]);
}

#[test]
fn transaction_encoding_and_data_hash_layout() {
    let txs = sample_txs();
    let mut tx0 = 1u32.to_be_bytes().to_vec();
    tx0.extend_from_slice(&6u32.to_be_bytes());
    tx0.extend_from_slice(b"\x01alice");
    tx0.push(1);
    tx0.extend_from_slice(&2u32.to_be_bytes());
    tx0.extend_from_slice(b"10");
    assert_eq!(transaction_encoding(&txs[0]), tx0);
    let mut tx1 = 1u32.to_be_bytes().to_vec();
    tx1.extend_from_slice(&4u32.to_be_bytes());
    tx1.extend_from_slice(b"\x01bob");
    tx1.push(0);
    assert_eq!(transaction_encoding(&txs[1]), tx1);

    let leaf = |enc: Vec<u8>| sha256(&[vec![0u8], enc].concat());
    let node = |l: Hash, r: Hash| sha256(&[vec![1u8], l.0.to_vec(), r.0.to_vec()].concat());
    let leaves: Vec<Hash> = txs.iter().map(|t| leaf(transaction_encoding(t))).collect();
    // Three leaves split 2 + 1.
    let root = node(node(leaves[0], leaves[1]), leaves[2]);
    let mut expected = DATA_TAG.to_vec();
    expected.extend_from_slice(&3u64.to_be_bytes());
    expected.extend_from_slice(&root.0);
    assert_eq!(data_hash(&txs), sha256(&expected));
    // One leaf: the root is the leaf.
    let mut expected = DATA_TAG.to_vec();
    expected.extend_from_slice(&1u64.to_be_bytes());
    expected.extend_from_slice(&leaves[0].0);
    assert_eq!(data_hash(&txs[..1]), sha256(&expected));
}

#[test]
fn known_answers() {
    // Computed independently (Python hashlib, see docs/chain.md) and pinned, so another implementation can check itself against these.
    assert_eq!(hex::encode(sample_header().hash().0), HEADER_KA);
    assert_eq!(hex::encode(sample_set().hash().0), SET_KA);
    assert_eq!(hex::encode(data_hash(&sample_txs()).0), DATA_KA);
    assert_eq!(hex::encode(data_hash(&[]).0), EMPTY_DATA_KA);
    assert_eq!(hex::encode(PublicKey([5; 32]).address().0), ADDRESS_KA);
}

const HEADER_KA: &str = "061ef0f2f025c00242273f08f1ec4b5d23c8d5c4ab0dfc529769a8e965b74659";
const SET_KA: &str = "4505901d6d033e3d1394cb03242c506e7791640383b8e8092c11965a434259e3";
const DATA_KA: &str = "2bfe69cc002ba0d1d19ccc0d4f6ab0c9ae4d02fd95261d7f0b678928a31c66cf";
const EMPTY_DATA_KA: &str = "b804ab8d257b14677beac0809f7cbec049a7b754391dd339f1bab3e6683ad737";
const ADDRESS_KA: &str = "f849d67325facf04177bc663b2dc544051831c58";

#[test]
fn leaf_and_node_are_separated_and_count_is_bound() {
    // Two transactions vs. a tree whose single leaf would collide with the
    // node of the two: the count and the prefixes keep them apart.
    let txs = sample_txs();
    assert_ne!(data_hash(&txs[..2]), data_hash(&txs[..1]));
    assert_ne!(data_hash(&[]), data_hash(&txs[..1]));
    // Order matters.
    let swapped = vec![txs[1].clone(), txs[0].clone()];
    assert_ne!(data_hash(&txs[..2]), data_hash(&swapped));
}

proptest! {
    #[test]
    fn distinct_headers_have_distinct_encodings(a in any::<u64>(), b in any::<u64>(), t in any::<u64>()) {
        let mut h1 = sample_header();
        h1.height = a.max(2);
        h1.time_ms = t;
        let mut h2 = h1.clone();
        h2.height = b.max(2);
        prop_assert_eq!(h1.height == h2.height, header_encoding(&h1) == header_encoding(&h2));
    }

    #[test]
    fn put_and_delete_never_encode_alike(key in proptest::collection::vec(any::<u8>(), 1..8),
                                         value in proptest::collection::vec(any::<u8>(), 0..8)) {
        let put = Transaction { writes: vec![Write { key: key.clone(), value: Some(value) }] };
        let delete = Transaction { writes: vec![Write { key, value: None }] };
        prop_assert_ne!(transaction_encoding(&put), transaction_encoding(&delete));
        prop_assert_ne!(data_hash(&[put]), data_hash(&[delete]));
    }

    #[test]
    fn data_hash_commits_to_the_count(n in 1usize..20) {
        let tx = Transaction { writes: vec![Write { key: vec![1], value: None }] };
        let txs = vec![tx; n];
        prop_assert_ne!(data_hash(&txs), data_hash(&txs[..n - 1]));
    }
}
