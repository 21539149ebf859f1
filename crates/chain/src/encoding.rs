//! Canonical encodings and hashes of the chain data model.
//!
//! Every hash is SHA-256 over a domain-separated encoding: the input starts
//! with a tag (ASCII, ending in one `0x00` byte, so no tag is a prefix of
//! another), integers are fixed-width big-endian, and variable-length fields
//! carry a 4-byte big-endian length prefix. Protobuf bytes are never hashed.
//! `docs/chain.md` specifies each encoding byte for byte.

use headway_wire::{
    Address, Commit, Hash, Header, PublicKey, Transaction, ValidatorSet, Write,
    encoded::HeaderFields,
};
use sha2::{Digest, Sha256};

/// Tag of the header hash.
pub const HEADER_TAG: &[u8] = b"HEADWAY-V1/HEADER\x00";
/// Tag of the vote sign bytes.
pub const VOTE_TAG: &[u8] = b"HEADWAY-V1/VOTE\x00";
/// Tag of the validator set hash.
pub const VALIDATOR_SET_TAG: &[u8] = b"HEADWAY-V1/VALIDATOR-SET\x00";
/// Tag of the data hash (the root over a block's transactions).
pub const DATA_TAG: &[u8] = b"HEADWAY-V1/DATA\x00";
/// First byte hashed into a transaction Merkle leaf.
pub const TX_LEAF_PREFIX: u8 = 0x00;
/// First byte hashed into a transaction Merkle interior node.
pub const TX_NODE_PREFIX: u8 = 0x01;

/// Hashing of headers: the header hash is the block id.
pub trait HeaderExt {
    /// The header hash: SHA-256 of [`header_encoding`].
    fn hash(&self) -> Hash;
}

impl HeaderExt for Header {
    fn hash(&self) -> Hash {
        // Encoded on the stack: header sync hashes every header it gets, and
        // an allocation per header showed in its profile.
        header_fields_hash(&HeaderFields::of(self))
    }
}

/// Bytes of a header's encoding besides its chain id (with
/// `last_block_id` present, the longer case).
const HEADER_FIXED_LEN: usize = HEADER_TAG.len() + 4 + 8 + 8 + 33 + 5 * 32 + 20;

/// The longest header encoding hashed from a stack buffer: a chain id of
/// [`headway_wire::limits::MAX_CHAIN_ID_LEN`] bytes.
const MAX_STACK_HEADER_ENCODING: usize = HEADER_FIXED_LEN + headway_wire::limits::MAX_CHAIN_ID_LEN;

/// Where an encoding is written.
trait Put {
    fn put(&mut self, bytes: &[u8]);
}

impl Put for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A header encoding on the stack; the caller checks it fits.
struct StackEncoding {
    bytes: [u8; MAX_STACK_HEADER_ENCODING],
    len: usize,
}

impl Put for StackEncoding {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        self.bytes[self.len..end].copy_from_slice(bytes);
        self.len = end;
    }
}

/// Hashing of validator sets.
pub trait ValidatorSetExt {
    /// The validator set hash, over the validators in the order given (the
    /// canonical order, ascending by public key, for a valid set).
    fn hash(&self) -> Hash;
}

impl ValidatorSetExt for ValidatorSet {
    fn hash(&self) -> Hash {
        validator_set_hash(self)
    }
}

/// Address derivation for public keys.
pub trait PublicKeyExt {
    /// The validator address: the first 20 bytes of SHA-256 of the key bytes.
    fn address(&self) -> Address;
}

impl PublicKeyExt for PublicKey {
    fn address(&self) -> Address {
        address_of(self)
    }
}

/// The canonical header encoding, the input of the header hash:
///
/// `HEADER_TAG || len32(chain_id) || chain_id || be64(height) || be64(time_ms)
///  || last_block_id (0x00, or 0x01 || hash) || data_hash || validators_hash
///  || next_validators_hash || state_root || history_root || proposer_address`.
pub fn header_encoding(header: &Header) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_FIXED_LEN + header.chain_id.len());
    encode_header(header, &mut out);
    out
}

fn encode_header(header: &Header, out: &mut impl Put) {
    encode_header_fields(&HeaderFields::of(header), out);
}

fn encode_header_fields(header: &HeaderFields<'_>, out: &mut impl Put) {
    out.put(HEADER_TAG);
    out.put(&len32(header.chain_id.len()));
    out.put(header.chain_id);
    out.put(&header.height.to_be_bytes());
    out.put(&header.time_ms.to_be_bytes());
    match &header.parent_hash {
        None => out.put(&[0x00]),
        Some(hash) => {
            out.put(&[0x01]);
            out.put(hash);
        }
    }
    for hash in [
        header.data_hash,
        &header.validators_hash,
        &header.next_validators_hash,
        header.state_root,
        header.history_root,
    ] {
        out.put(hash);
    }
    out.put(&header.proposer);
}

/// The header hash of a header given by its fields (as a compact range or a
/// stored row holds them): the same as [`HeaderExt::hash`] of the header
/// with those fields, without making one.
#[must_use]
pub fn header_fields_hash(header: &HeaderFields<'_>) -> Hash {
    if HEADER_FIXED_LEN + header.chain_id.len() <= MAX_STACK_HEADER_ENCODING {
        let mut buf = StackEncoding {
            bytes: [0; MAX_STACK_HEADER_ENCODING],
            len: 0,
        };
        encode_header_fields(header, &mut buf);
        sha256(&buf.bytes[..buf.len])
    } else {
        let mut out = Vec::with_capacity(HEADER_FIXED_LEN + header.chain_id.len());
        encode_header_fields(header, &mut out);
        sha256(&out)
    }
}

/// The bytes a validator signs to vote for a block:
///
/// `VOTE_TAG || len32(chain_id) || chain_id || be64(height) || be32(round) || block_id.hash`.
///
/// The chain id and height are inside, so a vote cannot be replayed on another
/// chain or at another height.
pub fn vote_sign_bytes(chain_id: &str, height: u64, round: u32, block_hash: &Hash) -> Vec<u8> {
    let mut out = Vec::with_capacity(VOTE_TAG.len() + 4 + chain_id.len() + 8 + 4 + 32);
    out.extend_from_slice(VOTE_TAG);
    put_bytes(&mut out, chain_id.as_bytes());
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&round.to_be_bytes());
    out.extend_from_slice(&block_hash.0);
    out
}

/// The sign bytes of `commit`'s votes on the chain `chain_id`.
pub fn commit_sign_bytes(chain_id: &str, commit: &Commit) -> Vec<u8> {
    vote_sign_bytes(chain_id, commit.height, commit.round, &commit.block_id.hash)
}

/// The validator set hash:
///
/// `SHA-256(VALIDATOR_SET_TAG || be32(count) || for each validator: pub_key || be64(voting_power))`.
pub fn validator_set_hash(set: &ValidatorSet) -> Hash {
    let mut hash = Sha256::new();
    hash.update(VALIDATOR_SET_TAG);
    hash.update(len32(set.validators.len()));
    for validator in &set.validators {
        hash.update(validator.pub_key.0);
        hash.update(validator.voting_power.to_be_bytes());
    }
    Hash(hash.finalize().into())
}

/// The validator address of a public key: `SHA-256(pub_key)[0..20]`.
pub fn address_of(pub_key: &PublicKey) -> Address {
    let digest: [u8; 32] = Sha256::digest(pub_key.0).into();
    let mut address = [0u8; 20];
    address.copy_from_slice(&digest[..20]);
    Address(address)
}

/// The canonical transaction encoding:
///
/// `be32(write_count) || for each write: len32(key) || key || (0x00 | 0x01 || len32(value) || value)`
/// where `0x00` marks a delete and `0x01` a put.
pub fn transaction_encoding(tx: &Transaction) -> Vec<u8> {
    let size = tx
        .writes
        .iter()
        .map(|w| 9 + w.key.len() + w.value.as_ref().map_or(0, Vec::len))
        .fold(4usize, usize::saturating_add);
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&len32(tx.writes.len()));
    for Write { key, value } in &tx.writes {
        put_bytes(&mut out, key);
        match value {
            None => out.push(0x00),
            Some(value) => {
                out.push(0x01);
                put_bytes(&mut out, value);
            }
        }
    }
    out
}

/// The data hash of a block body: a domain-separated Merkle root over the
/// transaction encodings that also binds their count.
///
/// Leaf `i` is `SHA-256(0x00 || transaction_encoding(tx_i))`; an interior node is
/// `SHA-256(0x01 || left || right)`; the tree over `n > 1` leaves splits at the
/// largest power of two `k < n` (RFC 6962 shape: `tree(0..k)`, `tree(k..n)`).
/// The data hash is `SHA-256(DATA_TAG || be64(n) || tree_root)`, and for `n = 0`
/// it is `SHA-256(DATA_TAG || be64(0))`.
pub fn data_hash(txs: &[Transaction]) -> Hash {
    let leaves: Vec<Hash> = txs
        .iter()
        .map(|tx| {
            let mut hash = Sha256::new();
            hash.update([TX_LEAF_PREFIX]);
            hash.update(transaction_encoding(tx));
            Hash(hash.finalize().into())
        })
        .collect();
    let mut hash = Sha256::new();
    hash.update(DATA_TAG);
    hash.update((leaves.len() as u64).to_be_bytes());
    if let Some(root) = merkle_root(&leaves) {
        hash.update(root.0);
    }
    Hash(hash.finalize().into())
}

/// SHA-256 of `bytes`, as a [`struct@Hash`].
pub fn sha256(bytes: &[u8]) -> Hash {
    Hash(Sha256::digest(bytes).into())
}

/// The Merkle root over leaf hashes, `None` for no leaves.
fn merkle_root(leaves: &[Hash]) -> Option<Hash> {
    match leaves {
        [] => None,
        [leaf] => Some(*leaf),
        _ => {
            let split = largest_power_of_two_below(leaves.len());
            let (left, right) = leaves.split_at(split);
            let left = merkle_root(left)?;
            let right = merkle_root(right)?;
            let mut hash = Sha256::new();
            hash.update([TX_NODE_PREFIX]);
            hash.update(left.0);
            hash.update(right.0);
            Some(Hash(hash.finalize().into()))
        }
    }
}

/// The largest power of two strictly below `n` (for `n >= 2`).
fn largest_power_of_two_below(n: usize) -> usize {
    let mut k: usize = 1;
    while k.saturating_mul(2) < n {
        k *= 2;
    }
    k
}

/// A length as 4 big-endian bytes. Every length here is bounded far below
/// `u32::MAX` by the wire limits; a longer one saturates (and then could not
/// have passed validation).
fn len32(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

/// Appends `len32(bytes) || bytes`.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&len32(bytes.len()));
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_points_follow_rfc6962() {
        assert_eq!(largest_power_of_two_below(2), 1);
        assert_eq!(largest_power_of_two_below(3), 2);
        assert_eq!(largest_power_of_two_below(4), 2);
        assert_eq!(largest_power_of_two_below(5), 4);
        assert_eq!(largest_power_of_two_below(9), 8);
    }

    #[test]
    fn empty_data_hash_binds_zero_count() {
        let mut expected = Vec::from(DATA_TAG);
        expected.extend_from_slice(&0u64.to_be_bytes());
        assert_eq!(data_hash(&[]), sha256(&expected));
    }

    #[test]
    fn the_header_hash_is_sha256_of_the_encoding_for_every_chain_id_length() {
        use headway_wire::{Address, BlockId};
        for (len, parent) in [
            (1, None),
            (7, Some(3u8)),
            (50, Some(9)),
            (51, Some(1)),
            (300, None),
        ] {
            let header = Header {
                chain_id: "c".repeat(len),
                height: 77,
                time_ms: 1_700_000_000_123,
                last_block_id: parent.map(|b| BlockId {
                    hash: Hash([b; 32]),
                }),
                data_hash: Hash([1; 32]),
                validators_hash: Hash([2; 32]),
                next_validators_hash: Hash([3; 32]),
                state_root: Hash([4; 32]),
                history_root: Hash([5; 32]),
                proposer_address: Address([6; 20]),
            };
            let encoding = header_encoding(&header);
            let expected_len = HEADER_FIXED_LEN + len - if parent.is_none() { 32 } else { 0 };
            assert_eq!(encoding.len(), expected_len, "chain id of {len}");
            assert_eq!(header.hash(), sha256(&encoding), "chain id of {len}");
        }
    }
}
