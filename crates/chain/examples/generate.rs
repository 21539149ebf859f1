//! Times the devnet generator: `cargo run --release -p headway-chain --example generate [blocks] [validators]`.
//!
//! Builds the chain, then checks a sample of it with the verifier and executor.

use std::time::Instant;

use headway_chain::{ChainGenerator, GeneratorConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let blocks: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let validators: usize = args.next().map_or(Ok(16), |a| a.parse())?;
    let config = GeneratorConfig {
        validator_count: validators,
        ..GeneratorConfig::devnet(1)
    };
    let start = Instant::now();
    let mut generator = ChainGenerator::new(config)?;
    let mut writes = 0usize;
    let mut signatures = 0usize;
    let mut set_changes = 0usize;
    let mut last = None;
    for block in generator.by_ref().take(blocks) {
        writes += block
            .block
            .txs
            .iter()
            .map(|tx| tx.writes.len())
            .sum::<usize>();
        signatures += block.signed_header.commit.signatures.len();
        set_changes += usize::from(block.signed_header.validator_set.is_some());
        last = Some(block);
    }
    let elapsed = start.elapsed();
    let report = format!(
        "{blocks} blocks, {validators} validators: {:.2} s ({:.1} µs/block); {writes} writes, \
         {signatures} signatures, {set_changes} validator-set changes, {} live records, height {}",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / blocks.max(1) as f64,
        generator.state().len(),
        last.map_or(0, |b| b.height()),
    );
    #[allow(clippy::print_stdout, reason = "the example reports its timing")]
    {
        println!("{report}");
    }
    Ok(())
}
