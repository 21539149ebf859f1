//! Verification benchmarks.
//!
//! - `batch_50x100`: a 50-header batch with 100 validators, skip verification
//!   ([`verify_batch`]) against per-header full verification ([`verify_batch_full`]).
//! - `commit_100`: one commit with 100 validators at the 1/3 trust level, and
//!   at 1/3 + 2/3 of the same set, against `tendermint-light-client-verifier`
//!   0.40 (`ProdVotingPowerCalculator`, which stops early too but verifies one
//!   signature at a time) on an equivalent commit built with `tendermint-testgen`.
//!
//! `cargo bench -p headway-chain --bench verification`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use headway_chain::{
    ChainGenerator, GeneratorConfig, TrustThreshold, verify_batch, verify_batch_full,
    verify_commit_trusted_overlap, verify_commit_trusting,
};
use tendermint_light_client_verifier::operations::voting_power::{
    ProdVotingPowerCalculator, VotingPowerCalculator,
};
use tendermint_light_client_verifier::types::TrustThreshold as TmTrust;

fn config_100() -> GeneratorConfig {
    GeneratorConfig {
        validator_count: 100,
        voting_power: 10..=10,
        rotation_interval: 0,
        txs_per_block: 0..=2,
        ..GeneratorConfig::devnet(42)
    }
}

fn batch(c: &mut Criterion) {
    #[allow(clippy::expect_used, reason = "benchmark setup")]
    let blocks: Vec<_> = ChainGenerator::new(config_100())
        .expect("valid config")
        .take(51)
        .collect();
    let trusted = blocks[0].trusted_state();
    let headers: Vec<_> = blocks[1..]
        .iter()
        .map(|b| b.signed_header.clone())
        .collect();
    let mut group = c.benchmark_group("batch_50x100");
    group.sample_size(10);
    group.bench_function("skip", |b| {
        b.iter(|| verify_batch(black_box(&trusted), black_box(&headers)).is_ok())
    });
    group.bench_function("full_per_header", |b| {
        b.iter(|| verify_batch_full(black_box(&trusted), black_box(&headers)).is_ok())
    });
    group.finish();
}

fn commit(c: &mut Criterion) {
    #[allow(clippy::expect_used, reason = "benchmark setup")]
    let block = ChainGenerator::new(config_100())
        .expect("valid config")
        .nth(1)
        .expect("a block");
    let (header, commit, set) = (
        &block.signed_header.header,
        &block.signed_header.commit,
        &block.validator_set,
    );
    let chain_id = header.chain_id.clone();

    // The same shape for tendermint: 100 validators of power 10, all signing.
    #[allow(clippy::expect_used, reason = "benchmark setup")]
    let (tm_header, tm_set) = {
        use tendermint_testgen::{Commit, Header, Validator, light_block, validator};
        let ids: Vec<String> = (0..100).map(|i| format!("validator-{i:03}")).collect();
        let vals: Vec<Validator> = ids
            .iter()
            .map(|id| Validator::new(id).voting_power(10))
            .collect();
        // A fixed time: without one every `generate` takes the clock, and the
        // votes would sign another header than the one returned.
        let time = tendermint::Time::from_unix_timestamp(1_700_000_000, 0).expect("time");
        let header = Header::new(&vals)
            .height(2)
            .chain_id("headway-devnet")
            .next_validators(&vals)
            .time(time);
        let commit = Commit::new(header.clone(), 1);
        let signed = light_block::generate_signed_header(&header, &commit).expect("signed header");
        let set = tendermint::validator::Set::without_proposer(
            validator::generate_validators(&vals).expect("validators"),
        );
        (signed, set)
    };
    let calculator = ProdVotingPowerCalculator::default();
    #[allow(
        clippy::print_stderr,
        clippy::expect_used,
        reason = "benchmark setup report"
    )]
    {
        let tally = calculator
            .voting_power_in(&tm_header, &tm_set, TmTrust::ONE_THIRD)
            .expect("tally");
        assert!(tally.tallied * 3 > tally.total, "tendermint data must pass");
        eprintln!(
            "tendermint tally at 1/3: {tally:?}, commit sigs {}",
            tm_header.commit.signatures.len()
        );
        calculator
            .check_enough_trust_and_signers(&tm_header, &tm_set, TmTrust::ONE_THIRD, &tm_set)
            .expect("tendermint data passes both tallies");
        let ours = verify_commit_trusted_overlap(
            &chain_id,
            header,
            commit,
            set,
            TrustThreshold::ONE_THIRD,
        )
        .expect("verifies");
        eprintln!("headway at 1/3: {ours:?}");
    }

    let mut group = c.benchmark_group("commit_100");
    group.sample_size(20);
    group.bench_function("headway_trust_1_3", |b| {
        b.iter(|| {
            verify_commit_trusted_overlap(&chain_id, header, commit, set, TrustThreshold::ONE_THIRD)
                .is_ok()
        })
    });
    group.bench_function("tendermint_trust_1_3", |b| {
        b.iter(|| {
            calculator
                .voting_power_in(
                    black_box(&tm_header),
                    black_box(&tm_set),
                    TmTrust::ONE_THIRD,
                )
                .is_ok_and(|tally| tally.tallied * 3 > tally.total)
        })
    });
    group.bench_function("headway_trust_1_3_and_own_2_3", |b| {
        b.iter(|| {
            verify_commit_trusting(
                &chain_id,
                header,
                commit,
                set,
                set,
                TrustThreshold::ONE_THIRD,
            )
            .is_ok()
        })
    });
    group.bench_function("tendermint_trust_1_3_and_own_2_3", |b| {
        b.iter(|| {
            calculator
                .check_enough_trust_and_signers(
                    black_box(&tm_header),
                    black_box(&tm_set),
                    TmTrust::ONE_THIRD,
                    black_box(&tm_set),
                )
                .is_ok()
        })
    });
    group.finish();
}

criterion_group!(benches, batch, commit);
criterion_main!(benches);
