//! A deterministic devnet chain generator, for tests, benchmarks and local networks.
//!
//! [`ChainGenerator`] is an iterator of [`GeneratedBlock`]s, fully determined
//! by its [`GeneratorConfig`] (ChaCha20 seeded from `seed`). It keeps only the
//! state, the current validator sets, the history MMR and the keys, so a long
//! chain can be streamed without holding its blocks.
//!
//! - Validators: `validator_count` Ed25519 keys with voting powers drawn from
//!   `voting_power`. Every `rotation_interval` blocks, `rotation_percent` of
//!   them (at least one) are replaced by new validators; at each height in
//!   `replace_all_at` the whole set is replaced.
//! - Transactions: over the configured state prefixes, with key and value
//!   sizes drawn from their ranges; a write inserts a new key, updates an
//!   earlier key, or deletes one, in the configured proportions.
//! - Headers carry the real data hash, state root and history root; every
//!   validator of the header's set signs its commit; a validator set is
//!   attached exactly where `validators_hash` differs from the previous header's
//!   (and at height 1).
//!
//! [`ChainGenerator::corrupt`] turns a good block into a chosen kind of bad one.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use ed25519_dalek::{Signer as _, SigningKey};
use headway_wire::{
    Address, Block, BlockId, Commit, CommitSig, Hash, Header, PublicKey, Signature, SignedHeader,
    Transaction, Validator, ValidatorSet, Write,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore as _, SeedableRng as _};
use rayon::prelude::*;

use crate::batch::TrustedState;
use crate::encoding::{
    HeaderExt as _, ValidatorSetExt as _, address_of, data_hash, vote_sign_bytes,
};
use crate::execution::{MemState, apply_transition, compute_transition};
use crate::history::HistoryAccumulator;

/// How a generated chain looks. All ranges are inclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// Seed of the ChaCha20 generator: the same config gives the same chain.
    pub seed: u64,
    /// The chain id (1..=50 printable ASCII bytes).
    pub chain_id: String,
    /// Validators per set (1..=10 000).
    pub validator_count: usize,
    /// Voting power of each new validator.
    pub voting_power: RangeInclusive<u64>,
    /// Blocks between gradual rotations; 0 disables them.
    pub rotation_interval: u64,
    /// Percentage of the set replaced at each rotation (at least one validator when > 0).
    pub rotation_percent: u32,
    /// Heights at which the whole validator set is replaced.
    pub replace_all_at: Vec<u64>,
    /// Transactions per block.
    pub txs_per_block: RangeInclusive<usize>,
    /// Writes per transaction (at least 1).
    pub writes_per_tx: RangeInclusive<usize>,
    /// State prefixes (first key bytes) keys are created under; must not be empty.
    pub prefixes: Vec<u8>,
    /// Key length, prefix byte included (at least 1).
    pub key_len: RangeInclusive<usize>,
    /// Value length.
    pub value_len: RangeInclusive<usize>,
    /// Percentage of writes that update an existing key.
    pub update_percent: u32,
    /// Percentage of writes that delete an existing key.
    pub delete_percent: u32,
    /// Time of block 1, milliseconds since the Unix epoch.
    pub genesis_time_ms: u64,
    /// Milliseconds between consecutive blocks (at least 1).
    pub block_interval_ms: RangeInclusive<u64>,
}

impl GeneratorConfig {
    /// A devnet: 16 validators, a quarter rotated every 100 blocks, 0–4
    /// transactions of 1–3 writes per block over 4 prefixes, ~1 s blocks.
    pub fn devnet(seed: u64) -> Self {
        Self {
            seed,
            chain_id: "headway-devnet".to_owned(),
            validator_count: 16,
            voting_power: 10..=100,
            rotation_interval: 100,
            rotation_percent: 25,
            replace_all_at: Vec::new(),
            txs_per_block: 0..=4,
            writes_per_tx: 1..=3,
            prefixes: vec![0x01, 0x02, 0x03, 0x10],
            key_len: 16..=64,
            value_len: 8..=256,
            update_percent: 30,
            delete_percent: 15,
            genesis_time_ms: 1_700_000_000_000,
            block_interval_ms: 900..=1100,
        }
    }

    /// A small chain for unit tests: 4 validators, rotation every 5 blocks.
    pub fn small(seed: u64) -> Self {
        Self {
            validator_count: 4,
            rotation_interval: 5,
            txs_per_block: 0..=2,
            writes_per_tx: 1..=2,
            key_len: 4..=16,
            value_len: 1..=32,
            ..Self::devnet(seed)
        }
    }

    fn validate(&self) -> Result<(), GeneratorError> {
        let bad = |what: &'static str| Err(GeneratorError::InvalidConfig { what });
        if !(1..=headway_wire::limits::MAX_VALIDATORS).contains(&self.validator_count) {
            return bad("validator_count must be 1..=10000");
        }
        let max_power = headway_wire::limits::MAX_TOTAL_VOTING_POWER
            / u64::try_from(self.validator_count).unwrap_or(u64::MAX);
        if *self.voting_power.start() == 0
            || *self.voting_power.end() > max_power
            || self.voting_power.is_empty()
        {
            return bad(
                "voting_power must be non-empty, at least 1, and sum under MAX_TOTAL_VOTING_POWER",
            );
        }
        if self.prefixes.is_empty() {
            return bad("prefixes must not be empty");
        }
        if *self.key_len.start() == 0
            || *self.key_len.end() > headway_wire::limits::MAX_KEY_LEN
            || self.key_len.is_empty()
        {
            return bad("key_len must be within 1..=MAX_KEY_LEN");
        }
        if *self.value_len.end() > headway_wire::limits::MAX_VALUE_LEN || self.value_len.is_empty()
        {
            return bad("value_len must be within 0..=MAX_VALUE_LEN");
        }
        if *self.writes_per_tx.start() == 0
            || *self.writes_per_tx.end() > headway_wire::limits::MAX_WRITES_PER_TX
            || self.writes_per_tx.is_empty()
        {
            return bad("writes_per_tx must be within 1..=MAX_WRITES_PER_TX");
        }
        if *self.txs_per_block.end() > headway_wire::limits::MAX_TXS_PER_BLOCK
            || self.txs_per_block.is_empty()
        {
            return bad("txs_per_block must be within 0..=MAX_TXS_PER_BLOCK");
        }
        if self.update_percent.saturating_add(self.delete_percent) > 100
            || self.rotation_percent > 100
        {
            return bad("percentages must add up to at most 100");
        }
        if *self.block_interval_ms.start() == 0 || self.block_interval_ms.is_empty() {
            return bad("block_interval_ms must be at least 1");
        }
        let header = Header {
            chain_id: self.chain_id.clone(),
            height: 1,
            time_ms: 0,
            last_block_id: None,
            data_hash: Hash::ZERO,
            validators_hash: Hash::ZERO,
            next_validators_hash: Hash::ZERO,
            state_root: Hash::ZERO,
            history_root: Hash::ZERO,
            proposer_address: Address::default(),
        };
        if header.validate().is_err() {
            return bad("chain_id must be 1..=50 printable ASCII bytes");
        }
        Ok(())
    }
}

/// The generator's configuration was unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GeneratorError {
    /// A configuration field is out of range.
    #[error("invalid generator config: {what}")]
    InvalidConfig {
        /// The rule.
        what: &'static str,
    },
}

/// One generated block with everything needed to verify and execute it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedBlock {
    /// The header, its commit, and the validator set where it changes.
    pub signed_header: SignedHeader,
    /// The block (same header) with its transactions.
    pub block: Block,
    /// The header's own validator set (always present).
    pub validator_set: ValidatorSet,
}

impl GeneratedBlock {
    /// The block's height.
    pub fn height(&self) -> u64 {
        self.signed_header.header.height
    }

    /// This block's header and set as a trusted state (e.g. a checkpoint).
    #[allow(
        clippy::expect_used,
        reason = "a generated header and its own set always form a valid trusted state"
    )]
    pub fn trusted_state(&self) -> TrustedState {
        TrustedState::new(
            self.signed_header.header.clone(),
            self.validator_set.clone(),
        )
        .expect("generated header and set are consistent")
    }
}

/// A kind of invalid data [`ChainGenerator::corrupt`] can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Corruption {
    /// The first signature of the commit is altered.
    BadSignature,
    /// `last_block_id` points elsewhere; the validators re-sign the forged header.
    ForgedLinkage,
    /// The attached validator set is not the header's (one voting power changed).
    WrongValidatorSet,
    /// The header commits to another state root; the validators re-sign it.
    WrongStateRoot,
    /// The body is changed: it no longer matches the header's data hash.
    BodyMismatch,
    /// The commit is a valid commit, but for another header at the same height.
    CommitForOtherHeader,
    /// The header is for another chain id, validly signed there.
    WrongChainId,
}

impl Corruption {
    /// Every kind.
    pub const ALL: [Corruption; 7] = [
        Corruption::BadSignature,
        Corruption::ForgedLinkage,
        Corruption::WrongValidatorSet,
        Corruption::WrongStateRoot,
        Corruption::BodyMismatch,
        Corruption::CommitForOtherHeader,
        Corruption::WrongChainId,
    ];
}

/// Generates a chain block by block (see the [module documentation](self)).
pub struct ChainGenerator {
    config: GeneratorConfig,
    rng: ChaCha20Rng,
    /// Validators of the next block to produce, sorted by public key.
    current: Vec<Member>,
    /// Validators of the block after it.
    next: Vec<Member>,
    /// Every signing key ever generated, to re-sign corrupted headers.
    keyring: HashMap<PublicKey, SigningKey>,
    state: MemState,
    history: HistoryAccumulator,
    /// Live keys, for updates and deletes.
    live_keys: Vec<Vec<u8>>,
    height: u64,
    time_ms: u64,
    last: Option<(Hash, Hash)>,
}

#[derive(Clone)]
struct Member {
    pub_key: PublicKey,
    address: Address,
    power: u64,
}

impl ChainGenerator {
    /// A generator for `config`, positioned before height 1.
    pub fn new(config: GeneratorConfig) -> Result<Self, GeneratorError> {
        config.validate()?;
        let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
        let mut keyring = HashMap::new();
        let current = new_members(&mut rng, &config, config.validator_count, &mut keyring);
        let next = current.clone();
        Ok(Self {
            time_ms: config.genesis_time_ms,
            config,
            rng,
            current,
            next,
            keyring,
            state: MemState::new(),
            history: HistoryAccumulator::new(),
            live_keys: Vec::new(),
            height: 0,
            last: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// The state after the last generated block.
    pub fn state(&self) -> &MemState {
        &self.state
    }

    /// The history accumulator after the last generated block.
    pub fn history(&self) -> &HistoryAccumulator {
        &self.history
    }

    /// Signs a commit for `header` with the keys of `set` (every validator
    /// whose key this generator made), on `header.chain_id`.
    pub fn sign_commit(&self, header: &Header, set: &ValidatorSet) -> Commit {
        let hash = header.hash();
        let bytes = vote_sign_bytes(&header.chain_id, header.height, 0, &hash);
        let keys: Vec<&SigningKey> = set
            .validators
            .iter()
            .filter_map(|v| self.keyring.get(&v.pub_key))
            .collect();
        let mut signatures: Vec<CommitSig> = keys
            .par_iter()
            .map(|key| CommitSig {
                validator_address: address_of(&PublicKey(key.verifying_key().to_bytes())),
                signature: Signature(key.sign(&bytes).to_bytes()),
            })
            .collect();
        signatures.sort_by_key(|s| s.validator_address);
        Commit {
            height: header.height,
            round: 0,
            block_id: BlockId { hash },
            signatures,
        }
    }

    /// A copy of `good` turned into invalid data of the given kind (see
    /// [`Corruption`]). Deterministic.
    pub fn corrupt(&self, good: &GeneratedBlock, kind: Corruption) -> GeneratedBlock {
        let mut bad = good.clone();
        let forged_hash = Hash(crate::encoding::sha256(&good.signed_header.header.hash().0).0);
        let resign = |bad: &mut GeneratedBlock| {
            bad.signed_header.commit =
                self.sign_commit(&bad.signed_header.header, &good.validator_set);
            bad.block.header = bad.signed_header.header.clone();
        };
        match kind {
            Corruption::BadSignature => {
                if let Some(sig) = bad.signed_header.commit.signatures.first_mut() {
                    sig.signature.0[0] ^= 0x01;
                }
            }
            Corruption::ForgedLinkage => {
                bad.signed_header.header.last_block_id = Some(BlockId { hash: forged_hash });
                resign(&mut bad);
            }
            Corruption::WrongValidatorSet => {
                let mut set = good.validator_set.clone();
                if let Some(v) = set.validators.first_mut() {
                    v.voting_power = v.voting_power.saturating_add(1);
                }
                bad.signed_header.validator_set = Some(set);
            }
            Corruption::WrongStateRoot => {
                bad.signed_header.header.state_root = forged_hash;
                resign(&mut bad);
            }
            Corruption::BodyMismatch => match bad.block.txs.first_mut() {
                Some(tx) => tx.writes.truncate(0),
                None => bad.block.txs.push(Transaction {
                    writes: vec![Write {
                        key: vec![self.config.prefixes.first().copied().unwrap_or(1), 0xEE],
                        value: Some(vec![0xEE]),
                    }],
                }),
            },
            Corruption::CommitForOtherHeader => {
                let mut other = good.signed_header.header.clone();
                other.time_ms = other.time_ms.saturating_add(1);
                bad.signed_header.commit = self.sign_commit(&other, &good.validator_set);
            }
            Corruption::WrongChainId => {
                let mut id = self.config.chain_id.clone();
                id.truncate(headway_wire::limits::MAX_CHAIN_ID_LEN - 5);
                id.push_str("-fork");
                bad.signed_header.header.chain_id = id;
                resign(&mut bad);
            }
        }
        // An emptied transaction would be malformed; make it a different, valid body.
        if kind == Corruption::BodyMismatch
            && let Some(tx) = bad.block.txs.first_mut()
            && tx.writes.is_empty()
        {
            tx.writes.push(Write {
                key: vec![self.config.prefixes.first().copied().unwrap_or(1), 0xEE],
                value: None,
            });
        }
        bad
    }

    /// Produces the next block.
    fn produce(&mut self) -> GeneratedBlock {
        self.height += 1;
        let height = self.height;
        if height > 1 {
            self.time_ms = self
                .time_ms
                .saturating_add(self.range_u64(self.config.block_interval_ms.clone()));
            self.current = std::mem::take(&mut self.next);
        }
        self.next = self.schedule_next(height + 1);
        let txs = self.make_txs();
        // Keys are never empty and the in-memory state cannot fail.
        let transition = match compute_transition(&self.state, &txs) {
            Ok(t) => t,
            Err(never) => match never {},
        };
        let state_root = transition.state_root;
        match apply_transition(&mut self.state, transition) {
            Ok(()) => {}
            Err(never) => match never {},
        }
        let validator_set = to_set(&self.current);
        let validators_hash = validator_set.hash();
        let next_validators_hash = to_set(&self.next).hash();
        let proposer = &self.current[usize::try_from(height).unwrap_or(0) % self.current.len()];
        let header = Header {
            chain_id: self.config.chain_id.clone(),
            height,
            time_ms: self.time_ms,
            last_block_id: self.last.map(|(hash, _)| BlockId { hash }),
            data_hash: data_hash(&txs),
            validators_hash,
            next_validators_hash,
            state_root,
            history_root: self.history.root(),
            proposer_address: proposer.address,
        };
        let commit = self.sign_commit(&header, &validator_set);
        let header_hash = commit.block_id.hash;
        // The MMR holds at most 2^63 leaves; a chain never gets there.
        let _ = self.history.push(&header_hash);
        let changed = self
            .last
            .is_none_or(|(_, prev_vals)| prev_vals != validators_hash);
        self.last = Some((header_hash, validators_hash));
        GeneratedBlock {
            signed_header: SignedHeader {
                header: header.clone(),
                commit,
                validator_set: changed.then(|| validator_set.clone()),
            },
            block: Block { header, txs },
            validator_set,
        }
    }

    /// The validators of height `height`, given those of `height - 1` (in `self.current`).
    fn schedule_next(&mut self, height: u64) -> Vec<Member> {
        let config = &self.config;
        let count = config.validator_count;
        if config.replace_all_at.contains(&height) {
            return new_members(&mut self.rng, config, count, &mut self.keyring);
        }
        let mut members = self.current.clone();
        if config.rotation_interval > 0
            && (height - 1).is_multiple_of(config.rotation_interval)
            && height > 1
        {
            let replace = (count * config.rotation_percent as usize)
                .div_ceil(100)
                .clamp(1, count);
            for _ in 0..replace {
                let i = (self.rng.next_u64() % members.len() as u64) as usize;
                members.swap_remove(i);
            }
            members.extend(new_members(
                &mut self.rng,
                config,
                replace,
                &mut self.keyring,
            ));
            members.sort_by_key(|m| m.pub_key);
        }
        members
    }

    fn make_txs(&mut self) -> Vec<Transaction> {
        let tx_count = self.range_usize(self.config.txs_per_block.clone());
        (0..tx_count)
            .map(|_| {
                let writes = self.range_usize(self.config.writes_per_tx.clone());
                Transaction {
                    writes: (0..writes).map(|_| self.make_write()).collect(),
                }
            })
            .collect()
    }

    fn make_write(&mut self) -> Write {
        let roll = self.rng.next_u32() % 100;
        let (update, delete) = (self.config.update_percent, self.config.delete_percent);
        if !self.live_keys.is_empty() && roll < update.saturating_add(delete) {
            let i = (self.rng.next_u64() % self.live_keys.len() as u64) as usize;
            if roll < update {
                let value = self.random_value();
                return Write {
                    key: self.live_keys[i].clone(),
                    value: Some(value),
                };
            }
            return Write {
                key: self.live_keys.swap_remove(i),
                value: None,
            };
        }
        let prefix =
            self.config.prefixes[(self.rng.next_u32() as usize) % self.config.prefixes.len()];
        let len = self.range_usize(self.config.key_len.clone());
        let mut key = vec![0u8; len];
        self.rng.fill_bytes(&mut key);
        key[0] = prefix;
        self.live_keys.push(key.clone());
        let value = self.random_value();
        Write {
            key,
            value: Some(value),
        }
    }

    fn random_value(&mut self) -> Vec<u8> {
        let len = self.range_usize(self.config.value_len.clone());
        let mut value = vec![0u8; len];
        self.rng.fill_bytes(&mut value);
        value
    }

    fn range_u64(&mut self, range: RangeInclusive<u64>) -> u64 {
        range_u64(&mut self.rng, range)
    }

    fn range_usize(&mut self, range: RangeInclusive<usize>) -> usize {
        let (lo, hi) = (*range.start() as u64, *range.end() as u64);
        range_u64(&mut self.rng, lo..=hi) as usize
    }
}

impl Iterator for ChainGenerator {
    type Item = GeneratedBlock;

    fn next(&mut self) -> Option<GeneratedBlock> {
        (self.height < u64::MAX - 1).then(|| self.produce())
    }
}

/// A uniform-enough draw from an inclusive range (modulo bias is irrelevant here).
fn range_u64(rng: &mut ChaCha20Rng, range: RangeInclusive<u64>) -> u64 {
    let (lo, hi) = (*range.start(), *range.end());
    let span = hi.saturating_sub(lo).saturating_add(1);
    if span == 0 {
        return lo.saturating_add(rng.next_u64());
    }
    lo.saturating_add(rng.next_u64() % span)
}

fn new_members(
    rng: &mut ChaCha20Rng,
    config: &GeneratorConfig,
    count: usize,
    keyring: &mut HashMap<PublicKey, SigningKey>,
) -> Vec<Member> {
    let mut members: Vec<Member> = (0..count)
        .map(|_| {
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            let key = SigningKey::from_bytes(&secret);
            let pub_key = PublicKey(key.verifying_key().to_bytes());
            keyring.insert(pub_key, key);
            Member {
                address: address_of(&pub_key),
                pub_key,
                power: range_u64(rng, config.voting_power.clone()),
            }
        })
        .collect();
    members.sort_by_key(|m| m.pub_key);
    members
}

fn to_set(members: &[Member]) -> ValidatorSet {
    ValidatorSet {
        validators: members
            .iter()
            .map(|m| Validator {
                pub_key: m.pub_key,
                voting_power: m.power,
            })
            .collect(),
    }
}
