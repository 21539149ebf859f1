//! A direct decoder for header responses, the hot path of header sync.
//!
//! `raw::Response::decode` allocates a `Vec<u8>` for every `bytes` field (a
//! signed header with a 16-signature commit has about forty of them), and
//! the `TryFrom` conversion then copies each into a fixed-size array and
//! frees it. [`decode_response`] reads a `Response` whose body is `headers`
//! or `headers_v2` (any of its results: signed headers, bare headers or a
//! commitment) straight from the protobuf bytes into the domain types: the
//! only allocations left are the vectors of headers and signatures (and
//! validators, where a set is attached) and each header's chain id.
//!
//! It understands the canonical shape only, and says so by returning `None`
//! for anything else, so that the caller falls back to prost: unknown
//! fields, a non-repeated field seen twice (prost would overwrite a scalar or
//! merge a message), wrong wire types, malformed varints and lengths, other
//! response bodies, and every message that breaks a rule. Fields may come in
//! any order, as protobuf allows. When it returns `Some(response)`,
//! `raw::Response::decode` followed by `try_into` gives `Ok(response)` for
//! the same bytes (property-tested in `tests/fast.rs`, on valid, mutated and
//! random bytes). Errors are always the slow path's, so a bad message is
//! reported the same way whichever path it took.

use crate::{
    HeadersResponse, HeadersV2Response, HeadersV2Result, MmrProof, Response,
    limits::{MAX_HEADERS_PER_BATCH, MAX_HEADERS_V2, MAX_MMR_PROOF_HASHES, MAX_VALIDATORS},
    types::{
        Address, BareHeader, BlockId, Commit, CommitSig, Hash, Header, PublicKey, Signature,
        SignedHeader, Validator, ValidatorSet,
    },
};

/// Decodes the protobuf encoding of a `Response` whose body is `headers` or
/// `headers_v2`, checking every rule that decoding through
/// `raw::Response::decode` and `TryFrom` checks.
///
/// Returns `None` when the bytes are anything but the canonical encoding of
/// a valid header response (see the [module documentation](self)); decode
/// those with the slow path, which gives the error for invalid ones.
/// `Response::decode` does exactly that.
#[must_use]
pub fn decode_response(bytes: &[u8]) -> Option<Response> {
    const HEADERS: u64 = key(1, LEN);
    const HEADERS_V2: u64 = key(2, LEN);
    let mut r = Reader(bytes);
    let response = match r.varint()? {
        HEADERS => Response::Headers(read_headers_response(r.len_delimited()?)?),
        HEADERS_V2 => Response::HeadersV2(read_headers_v2_response(r.len_delimited()?)?),
        _ => return None,
    };
    // A second body would replace the first or be merged into it.
    if !r.is_empty() {
        return None;
    }
    // The slow path's `TryFrom` checks lengths and presence (done above) and
    // then exactly what `validate` checks.
    response.validate().ok()?;
    Some(response)
}

// ------------------------------------------------------------ the messages

fn read_headers_response(bytes: &[u8]) -> Option<HeadersResponse> {
    const START_HEIGHT: u64 = key(1, VARINT);
    const HEADERS: u64 = key(2, LEN);
    let max = MAX_HEADERS_PER_BATCH as usize;
    let mut start_height = None;
    let mut headers = Vec::with_capacity(capacity(bytes, SIGNED_HEADER_MIN_LEN, max));
    let mut r = Reader(bytes);
    while !r.is_empty() {
        match r.varint()? {
            START_HEIGHT => once(&mut start_height, r.varint()?)?,
            HEADERS => push(&mut headers, max, read_signed_header(r.len_delimited()?)?)?,
            _ => return None,
        }
    }
    Some(HeadersResponse {
        start_height: start_height.unwrap_or(0),
        headers,
    })
}

fn read_headers_v2_response(bytes: &[u8]) -> Option<HeadersV2Response> {
    const START_HEIGHT: u64 = key(1, VARINT);
    const END_HEIGHT: u64 = key(2, VARINT);
    const HEADERS: u64 = key(3, LEN);
    const COMMITMENT: u64 = key(4, LEN);
    const BARE_HEADERS: u64 = key(5, LEN);
    let (mut start_height, mut end_height, mut result) = (None, None, None);
    let mut r = Reader(bytes);
    while !r.is_empty() {
        match r.varint()? {
            START_HEIGHT => once(&mut start_height, r.varint()?)?,
            END_HEIGHT => once(&mut end_height, r.varint()?)?,
            // One slot for the oneof: a second result of any kind is refused
            // (prost would keep the last one, or merge two of the same kind).
            HEADERS => {
                let (headers, proof) = read_proven(
                    r.len_delimited()?,
                    SIGNED_HEADER_MIN_LEN,
                    read_signed_header,
                )?;
                once(&mut result, HeadersV2Result::Headers { headers, proof })?;
            }
            COMMITMENT => once(&mut result, HeadersV2Result::Commitment(Hash(r.array()?)))?,
            BARE_HEADERS => {
                let (headers, proof) =
                    read_proven(r.len_delimited()?, BARE_HEADER_MIN_LEN, read_bare_header)?;
                once(&mut result, HeadersV2Result::BareHeaders { headers, proof })?;
            }
            _ => return None,
        }
    }
    Some(HeadersV2Response {
        start_height: start_height.unwrap_or(0),
        end_height: end_height.unwrap_or(0),
        result: result?,
    })
}

/// A `ProvenHeaders` or a `ProvenBareHeaders`: the two share their layout
/// (1: repeated item, 2: proof) and differ in the item, read by `read_item`,
/// of which each takes at least `item_min_len` bytes in `bytes`.
fn read_proven<T>(
    bytes: &[u8],
    item_min_len: usize,
    read_item: fn(&[u8]) -> Option<T>,
) -> Option<(Vec<T>, MmrProof)> {
    const HEADERS: u64 = key(1, LEN);
    const PROOF: u64 = key(2, LEN);
    let max = MAX_HEADERS_V2 as usize;
    let mut headers = Vec::with_capacity(capacity(bytes, item_min_len, max));
    let mut proof = None;
    let mut r = Reader(bytes);
    while !r.is_empty() {
        match r.varint()? {
            HEADERS => push(&mut headers, max, read_item(r.len_delimited()?)?)?,
            PROOF => once(&mut proof, read_mmr_proof(r.len_delimited()?)?)?,
            _ => return None,
        }
    }
    // An absent proof is an empty one, as in the slow path.
    Some((headers, proof.unwrap_or_default()))
}

fn read_mmr_proof(bytes: &[u8]) -> Option<MmrProof> {
    const HASHES: u64 = key(1, LEN);
    let mut hashes = Vec::with_capacity(capacity(bytes, PROOF_HASH_LEN, MAX_MMR_PROOF_HASHES));
    let mut r = Reader(bytes);
    while !r.is_empty() {
        match r.varint()? {
            HASHES => push(&mut hashes, MAX_MMR_PROOF_HASHES, Hash(r.array()?))?,
            _ => return None,
        }
    }
    Some(MmrProof { hashes })
}

fn read_signed_header(bytes: &[u8]) -> Option<SignedHeader> {
    const HEADER: u64 = key(1, LEN);
    const COMMIT: u64 = key(2, LEN);
    const VALIDATOR_SET: u64 = key(3, LEN);
    let (mut header, mut commit, mut validator_set) = (None, None, None);
    let mut r = Reader(bytes);
    while !r.is_empty() {
        match r.varint()? {
            HEADER => once(&mut header, read_header(r.len_delimited()?)?)?,
            COMMIT => once(&mut commit, read_commit(r.len_delimited()?)?)?,
            VALIDATOR_SET => once(&mut validator_set, read_validator_set(r.len_delimited()?)?)?,
            _ => return None,
        }
    }
    Some(SignedHeader {
        header: header?,
        commit: commit?,
        validator_set,
    })
}

fn read_bare_header(bytes: &[u8]) -> Option<BareHeader> {
    const HEADER: u64 = key(1, LEN);
    const VALIDATOR_SET: u64 = key(2, LEN);
    let (mut header, mut validator_set) = (None, None);
    let mut r = Reader(bytes);
    while !r.is_empty() {
        match r.varint()? {
            HEADER => once(&mut header, read_header(r.len_delimited()?)?)?,
            VALIDATOR_SET => once(&mut validator_set, read_validator_set(r.len_delimited()?)?)?,
            _ => return None,
        }
    }
    Some(BareHeader {
        header: header?,
        validator_set,
    })
}

/// Read here rather than handed to prost, although sets are rare: prost
/// counts the nesting of unknown groups from the top of the response, so a
/// set decoded on its own could accept what the slow path refuses.
fn read_validator_set(bytes: &[u8]) -> Option<ValidatorSet> {
    const VALIDATORS: u64 = key(1, LEN);
    let mut validators = Vec::with_capacity(capacity(bytes, VALIDATOR_MIN_LEN, MAX_VALIDATORS));
    let mut r = Reader(bytes);
    while !r.is_empty() {
        match r.varint()? {
            VALIDATORS => push(
                &mut validators,
                MAX_VALIDATORS,
                read_validator(r.len_delimited()?)?,
            )?,
            _ => return None,
        }
    }
    Some(ValidatorSet { validators })
}

fn read_validator(bytes: &[u8]) -> Option<Validator> {
    const PUB_KEY: u64 = key(1, LEN);
    const VOTING_POWER: u64 = key(2, VARINT);
    let (mut pub_key, mut voting_power) = (None, None);
    let mut r = Reader(bytes);
    while !r.is_empty() {
        match r.varint()? {
            PUB_KEY => once(&mut pub_key, r.array()?)?,
            VOTING_POWER => once(&mut voting_power, r.varint()?)?,
            _ => return None,
        }
    }
    Some(Validator {
        pub_key: PublicKey(pub_key?),
        voting_power: voting_power.unwrap_or(0),
    })
}

fn read_header(bytes: &[u8]) -> Option<Header> {
    const CHAIN_ID: u64 = key(1, LEN);
    const HEIGHT: u64 = key(2, VARINT);
    const TIME_MS: u64 = key(3, VARINT);
    const LAST_BLOCK_ID: u64 = key(4, LEN);
    const DATA_HASH: u64 = key(5, LEN);
    const VALIDATORS_HASH: u64 = key(6, LEN);
    const NEXT_VALIDATORS_HASH: u64 = key(7, LEN);
    const STATE_ROOT: u64 = key(8, LEN);
    const HISTORY_ROOT: u64 = key(9, LEN);
    const PROPOSER_ADDRESS: u64 = key(10, LEN);
    let (mut chain_id, mut height, mut time_ms, mut last_block_id) = (None, None, None, None);
    let (mut data_hash, mut validators_hash, mut next_validators_hash) = (None, None, None);
    let (mut state_root, mut history_root, mut proposer_address) = (None, None, None);
    let mut r = Reader(bytes);
    while !r.is_empty() {
        match r.varint()? {
            CHAIN_ID => once(&mut chain_id, r.len_delimited()?)?,
            HEIGHT => once(&mut height, r.varint()?)?,
            TIME_MS => once(&mut time_ms, r.varint()?)?,
            LAST_BLOCK_ID => once(&mut last_block_id, read_block_id(r.len_delimited()?)?)?,
            DATA_HASH => once(&mut data_hash, r.array()?)?,
            VALIDATORS_HASH => once(&mut validators_hash, r.array()?)?,
            NEXT_VALIDATORS_HASH => once(&mut next_validators_hash, r.array()?)?,
            STATE_ROOT => once(&mut state_root, r.array()?)?,
            HISTORY_ROOT => once(&mut history_root, r.array()?)?,
            PROPOSER_ADDRESS => once(&mut proposer_address, r.array()?)?,
            _ => return None,
        }
    }
    // An absent chain id is empty (the slow path rejects it); an absent
    // hash or address has the wrong length (likewise).
    Some(Header {
        chain_id: std::str::from_utf8(chain_id?).ok()?.to_owned(),
        height: height.unwrap_or(0),
        time_ms: time_ms.unwrap_or(0),
        last_block_id,
        data_hash: Hash(data_hash?),
        validators_hash: Hash(validators_hash?),
        next_validators_hash: Hash(next_validators_hash?),
        state_root: Hash(state_root?),
        history_root: Hash(history_root?),
        proposer_address: Address(proposer_address?),
    })
}

fn read_block_id(bytes: &[u8]) -> Option<BlockId> {
    const HASH: u64 = key(1, LEN);
    let mut hash = None;
    let mut r = Reader(bytes);
    while !r.is_empty() {
        match r.varint()? {
            HASH => once(&mut hash, r.array()?)?,
            _ => return None,
        }
    }
    Some(BlockId { hash: Hash(hash?) })
}

fn read_commit(bytes: &[u8]) -> Option<Commit> {
    const HEIGHT: u64 = key(1, VARINT);
    const ROUND: u64 = key(2, VARINT);
    const BLOCK_ID: u64 = key(3, LEN);
    const SIGNATURES: u64 = key(4, LEN);
    let (mut height, mut round, mut block_id) = (None, None, None);
    let mut signatures = Vec::with_capacity(capacity(bytes, COMMIT_SIG_MIN_LEN, MAX_VALIDATORS));
    let mut r = Reader(bytes);
    while !r.is_empty() {
        match r.varint()? {
            HEIGHT => once(&mut height, r.varint()?)?,
            // prost truncates a `uint32` over `u32::MAX`; no encoder writes one.
            ROUND => once(&mut round, u32::try_from(r.varint()?).ok()?)?,
            BLOCK_ID => once(&mut block_id, read_block_id(r.len_delimited()?)?)?,
            SIGNATURES => push(
                &mut signatures,
                MAX_VALIDATORS,
                read_commit_sig(r.len_delimited()?)?,
            )?,
            _ => return None,
        }
    }
    Some(Commit {
        height: height.unwrap_or(0),
        round: round.unwrap_or(0),
        block_id: block_id?,
        signatures,
    })
}

fn read_commit_sig(bytes: &[u8]) -> Option<CommitSig> {
    const VALIDATOR_ADDRESS: u64 = key(1, LEN);
    const SIGNATURE: u64 = key(2, LEN);
    let (mut validator_address, mut signature) = (None, None);
    let mut r = Reader(bytes);
    while !r.is_empty() {
        match r.varint()? {
            VALIDATOR_ADDRESS => once(&mut validator_address, r.array()?)?,
            SIGNATURE => once(&mut signature, r.array()?)?,
            _ => return None,
        }
    }
    Some(CommitSig {
        validator_address: Address(validator_address?),
        signature: Signature(signature?),
    })
}

// ------------------------------------------------------------ the encoding

/// Wire type of `uint64` and `uint32` fields.
const VARINT: u64 = 0;
/// Wire type of `bytes`, `string` and message fields.
const LEN: u64 = 2;

/// A field key as a decoded varint. Matching the whole key checks the field
/// number and the wire type at once, and any other key (unknown field,
/// wrong wire type, malformed key) falls to the slow path.
const fn key(field: u64, wire_type: u64) -> u64 {
    (field << 3) | wire_type
}

/// Fewest bytes a `CommitSig` can take in its commit: its key and length,
/// then a 20-byte address and a 64-byte signature, each with key and length.
const COMMIT_SIG_MIN_LEN: usize = 2 + (2 + 20) + (2 + 64);

/// Bytes a hash takes in an MMR proof: key, length, 32 bytes.
const PROOF_HASH_LEN: usize = 2 + 32;

/// Fewest bytes a `Validator` can take in its set: its key and length, then
/// a 32-byte public key with key and length (and a voting power, not counted).
const VALIDATOR_MIN_LEN: usize = 2 + (2 + 32);

/// Fewer bytes than any valid `SignedHeader` takes in its parent (about 330:
/// five hashes and an address in the header, a block id and a signature in
/// the commit, with their keys and lengths; checked by a test).
const SIGNED_HEADER_MIN_LEN: usize = 256;

/// Fewer bytes than any valid `BareHeader` takes in its parent (about 200:
/// five hashes and an address in the header, with their keys and lengths;
/// checked by a test).
const BARE_HEADER_MIN_LEN: usize = 192;

/// Capacity for the items of a repeated field in `bytes`: at most one per
/// `min_len` bytes and never over `max`, so that what is reserved is
/// bounded by the input's length and valid input never regrows.
fn capacity(bytes: &[u8], min_len: usize, max: usize) -> usize {
    (bytes.len() / min_len).min(max)
}

/// Fills the slot of a non-repeated field; `None` if it was filled already
/// (prost would overwrite a scalar or merge a message: not canonical).
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

/// Appends an item of a repeated field; `None` past `max` items, which the
/// slow path rejects.
fn push<T>(items: &mut Vec<T>, max: usize, item: T) -> Option<()> {
    if items.len() >= max {
        return None;
    }
    items.push(item);
    Some(())
}

/// A cursor over protobuf bytes: every read is bounds-checked and gives
/// `None` on malformed input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A varint, decoded by prost itself so that overlong and overflowing
    /// ones are refused exactly as the slow path refuses them.
    fn varint(&mut self) -> Option<u64> {
        prost::encoding::decode_varint(&mut self.0).ok()
    }

    /// A length-delimited field's bytes.
    fn len_delimited(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let (field, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(field)
    }

    /// A length-delimited field of exactly `N` bytes.
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.len_delimited()?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::raw;

    /// The smallest valid signed header: one-byte chain id, height 1 (no
    /// last block id), time and round 0, one signature.
    fn smallest_signed_header() -> SignedHeader {
        SignedHeader {
            header: Header {
                chain_id: "c".into(),
                height: 1,
                time_ms: 0,
                last_block_id: None,
                data_hash: Hash::ZERO,
                validators_hash: Hash::ZERO,
                next_validators_hash: Hash::ZERO,
                state_root: Hash::ZERO,
                history_root: Hash::ZERO,
                proposer_address: Address::default(),
            },
            commit: Commit {
                height: 1,
                round: 0,
                block_id: BlockId::default(),
                signatures: vec![CommitSig {
                    validator_address: Address::default(),
                    signature: Signature([0; 64]),
                }],
            },
            validator_set: None,
        }
    }

    #[test]
    fn min_lens_are_lower_bounds() {
        let signed = smallest_signed_header();
        assert!(signed.validate().is_ok());
        let raw = raw::SignedHeader::from(&signed);
        // Key and length in the parent: at least 2 bytes more.
        assert!(raw.encoded_len() + 2 >= SIGNED_HEADER_MIN_LEN);
        let bare = raw::BareHeader::from(&BareHeader::from(&signed));
        assert!(bare.encoded_len() + 2 >= BARE_HEADER_MIN_LEN);
        let sig = raw.commit.as_ref().map(|c| c.signatures[0].encoded_len());
        assert_eq!(sig.map(|len| len + 2), Some(COMMIT_SIG_MIN_LEN));
        let validator = raw::Validator {
            pub_key: vec![0; 32],
            voting_power: 1,
        };
        assert!(validator.encoded_len() + 2 >= VALIDATOR_MIN_LEN);
    }

    #[test]
    fn the_smallest_signed_header_takes_the_fast_path() {
        let response = Response::Headers(HeadersResponse {
            start_height: 1,
            headers: vec![smallest_signed_header()],
        });
        let bytes = raw::Response::from(&response).encode_to_vec();
        assert_eq!(decode_response(&bytes), Some(response));
    }

    #[test]
    fn the_smallest_bare_header_takes_the_fast_path() {
        let response = Response::HeadersV2(HeadersV2Response {
            start_height: 1,
            end_height: 1,
            result: HeadersV2Result::BareHeaders {
                headers: vec![BareHeader::from(&smallest_signed_header())],
                proof: MmrProof::default(),
            },
        });
        let bytes = raw::Response::from(&response).encode_to_vec();
        assert_eq!(decode_response(&bytes), Some(response));
    }

    #[test]
    fn reader_refuses_what_runs_past_the_end() {
        let mut r = Reader(&[0x05, 1, 2]);
        assert_eq!(r.len_delimited(), None);
        let mut r = Reader(&[0x80]);
        assert_eq!(r.varint(), None);
        // Eleven bytes: overflow, as prost says.
        let mut r = Reader(&[0xff; 11]);
        assert_eq!(r.varint(), None);
        let mut r = Reader(&[0x02, 1, 2]);
        assert_eq!(r.array::<3>(), None);
    }
}
