//! Helpers shared by the integration tests.

#![allow(dead_code, reason = "each test file uses a part of the helpers")]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use headway_chain::{HeaderExt as _, HistoryAccumulator, ValidatorSetExt as _, data_hash};
use headway_ellipticsum::{PrefixChecksums, RecordHasher};
use headway_wire::{
    Address, Block, BlockId, Commit, CommitSig, Hash, Header, PublicKey, Signature, SignedHeader,
    Transaction, Validator, ValidatorSet, Write,
};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

/// A fresh, empty directory under the test target dir.
pub fn fresh_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("headway-store-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The state of a model store: key -> value.
pub type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Applies writes to the model (last write to a key wins).
pub fn apply_to_model(model: &mut Model, writes: &[Write]) {
    for w in writes {
        match &w.value {
            Some(v) => model.insert(w.key.clone(), v.clone()),
            None => model.remove(&w.key),
        };
    }
}

/// Per-prefix checksums of the model, from scratch.
pub fn model_checksums(model: &Model) -> PrefixChecksums {
    let records: Vec<(&[u8], &[u8])> = model
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    PrefixChecksums::par_from_records(&RecordHasher::headway(), &records).unwrap()
}

/// The state root of the model.
pub fn model_root(model: &Model) -> Hash {
    Hash(model_checksums(model).state_root().into())
}

/// Deterministic writes of the block at `height` for a chain seeded with `seed`:
/// a few puts and deletes over prefixes 1..=3, keys from a small space.
pub fn writes_for(seed: u64, height: u64) -> Vec<Write> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ height.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let n = rng.gen_range(1..=6);
    (0..n)
        .map(|_| {
            let prefix = rng.gen_range(1u8..=3);
            let key = vec![prefix, rng.gen_range(0u8..40), rng.gen_range(0u8..4)];
            let value = if rng.gen_ratio(1, 4) {
                None
            } else {
                let len = rng.gen_range(0..48);
                Some((0..len).map(|_| rng.r#gen::<u8>()).collect())
            };
            Write { key, value }
        })
        .collect()
}

/// The model state after blocks `1..=height` of `writes_for(seed, _)`.
pub fn model_at(seed: u64, height: u64) -> Model {
    let mut model = Model::new();
    for h in 1..=height {
        apply_to_model(&mut model, &writes_for(seed, h));
    }
    model
}

/// A validator set that changes every `period` heights (no real keys: the
/// store does not verify signatures).
pub fn validator_set_for(height: u64, period: u64) -> ValidatorSet {
    let epoch = (height - 1) / period;
    let mut key = [7u8; 32];
    key[..8].copy_from_slice(&epoch.to_be_bytes());
    ValidatorSet {
        validators: vec![Validator {
            pub_key: PublicKey(key),
            voting_power: 10,
        }],
    }
}

/// A simple, well-formed chain of `n` headers and blocks (state roots are
/// those of `writes_for(seed, _)`); commits carry dummy signatures.
pub fn simple_chain(seed: u64, n: u64) -> (Vec<SignedHeader>, Vec<Block>) {
    build_chain(seed, n, true)
}

/// As [`simple_chain`]; without `state_roots` the headers carry a zero state
/// root and building is cheap (no EllipticSum hashing).
pub fn build_chain(seed: u64, n: u64, state_roots: bool) -> (Vec<SignedHeader>, Vec<Block>) {
    const SET_PERIOD: u64 = 25;
    let mut history = HistoryAccumulator::new();
    let hasher = RecordHasher::headway();
    let mut model = Model::new();
    let mut sums = PrefixChecksums::new();
    let mut headers = Vec::new();
    let mut blocks = Vec::new();
    let mut last: Option<Hash> = None;
    for height in 1..=n {
        let writes = writes_for(seed, height);
        for w in writes.iter().filter(|_| state_roots) {
            if let Some(old) = model.get(&w.key) {
                sums.remove_record(&hasher, &w.key, old).unwrap();
            }
            match &w.value {
                Some(v) => {
                    sums.add_record(&hasher, &w.key, v).unwrap();
                    model.insert(w.key.clone(), v.clone());
                }
                None => {
                    model.remove(&w.key);
                }
            }
        }
        let txs = vec![Transaction { writes }];
        let set = validator_set_for(height, SET_PERIOD);
        let next = validator_set_for(height + 1, SET_PERIOD);
        let header = Header {
            chain_id: "store-test".to_owned(),
            height,
            time_ms: 1_700_000_000_000 + height * 1000,
            last_block_id: last.map(|hash| BlockId { hash }),
            data_hash: data_hash(&txs),
            validators_hash: set.hash(),
            next_validators_hash: next.hash(),
            state_root: Hash(sums.state_root().into()),
            history_root: history.root(),
            proposer_address: Address([1; 20]),
        };
        let hash = header.hash();
        history.push(&hash).unwrap();
        let changes = height == 1 || (height - 1) % SET_PERIOD == 0;
        headers.push(SignedHeader {
            commit: Commit {
                height,
                round: 0,
                block_id: BlockId { hash },
                signatures: vec![CommitSig {
                    validator_address: Address([2; 20]),
                    signature: Signature([3; 64]),
                }],
            },
            validator_set: changes.then_some(set),
            header: header.clone(),
        });
        blocks.push(Block { header, txs });
        last = Some(hash);
    }
    (headers, blocks)
}

/// Opens the raw sled database in `dir`, waiting (up to 2 s) while a store
/// just dropped by this process still holds its directory lock: sled
/// releases it from a background thread (as `Store::open` does).
pub fn open_raw(dir: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("opening {}: {e}", dir.display()),
        }
    }
}
