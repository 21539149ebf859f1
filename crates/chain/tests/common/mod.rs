//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test file uses a different subset")]

use headway_chain::{ChainGenerator, GeneratedBlock, GeneratorConfig, SignedHeader};

/// `n` blocks of the small test chain with `seed`.
pub fn small_chain(seed: u64, n: usize) -> Vec<GeneratedBlock> {
    chain(GeneratorConfig::small(seed), n)
}

/// `n` blocks of a chain with `config`.
pub fn chain(config: GeneratorConfig, n: usize) -> Vec<GeneratedBlock> {
    ChainGenerator::new(config)
        .expect("valid config")
        .take(n)
        .collect()
}

/// The signed headers of `blocks`.
pub fn signed(blocks: &[GeneratedBlock]) -> Vec<SignedHeader> {
    blocks.iter().map(|b| b.signed_header.clone()).collect()
}

/// A config with equal voting powers and no rotation.
pub fn static_config(seed: u64, validators: usize) -> GeneratorConfig {
    GeneratorConfig {
        validator_count: validators,
        voting_power: 10..=10,
        rotation_interval: 0,
        ..GeneratorConfig::small(seed)
    }
}
