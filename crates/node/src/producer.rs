//! Devnet producer: extends the chain from the deterministic chain generator
//! and stores every block as a full node would (header, body, state).

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use headway_chain::{ChainGenerator, GeneratedBlock};
use headway_headersync::{HeaderSync, HeaderSyncInput};
use headway_store::Store;
use tracing::info;

use crate::{config::ProducerSection, metrics::NodeMetrics};

/// Blocks stored per write while building the prebuilt chain.
const PREBUILD_CHUNK: usize = 500;

/// Runs the producer until the task is dropped.
pub async fn run(
    store: Store,
    section: ProducerSection,
    headersync: HeaderSync,
    metrics: Arc<NodeMetrics>,
) -> Result<()> {
    let config = section.devnet.generator_config();
    let mut generator = ChainGenerator::new(config).context("producer devnet parameters")?;
    // The generator is deterministic: regenerate what is already stored (a restart).
    let have = store.header_height();
    let started = Instant::now();
    let mut chunk: Vec<GeneratedBlock> = Vec::with_capacity(PREBUILD_CHUNK);
    let mut height = 0;
    while height < section.prebuilt_blocks.max(have) {
        let block = generator.next().context("generator ended")?;
        height = block.height();
        if height <= have {
            catch_up_body(&store, &block)?;
            continue;
        }
        chunk.push(block);
        if chunk.len() == PREBUILD_CHUNK || height == section.prebuilt_blocks {
            let blocks = std::mem::take(&mut chunk);
            let store2 = store.clone();
            tokio::task::spawn_blocking(move || store_blocks(&store2, &blocks)).await??;
            metrics.produced_height.store(height, Ordering::Relaxed);
            headersync.input(HeaderSyncInput::LocalHeight(height)).await;
            info!(height, elapsed = ?started.elapsed(), "prebuilt blocks stored");
        }
    }
    metrics
        .produced_height
        .store(store.header_height(), Ordering::Relaxed);
    if section.block_interval_ms == 0 {
        info!(
            height = store.header_height(),
            "producer reached its prebuilt height; not producing more"
        );
        return Ok(());
    }
    let mut interval = tokio::time::interval(Duration::from_millis(section.block_interval_ms));
    interval.tick().await;
    loop {
        interval.tick().await;
        let block = generator.next().context("generator ended")?;
        let height = block.height();
        let store2 = store.clone();
        tokio::task::spawn_blocking(move || store_blocks(&store2, std::slice::from_ref(&block)))
            .await??;
        metrics.produced_height.store(height, Ordering::Relaxed);
        headersync.input(HeaderSyncInput::LocalHeight(height)).await;
    }
}

/// Stores headers (one batch), then bodies and state, then flushes.
fn store_blocks(store: &Store, blocks: &[GeneratedBlock]) -> Result<()> {
    let headers: Vec<_> = blocks.iter().map(|b| b.signed_header.clone()).collect();
    store
        .save_headers(&headers)
        .context("storing produced headers")?;
    for b in blocks {
        store
            .save_block(&b.block)
            .with_context(|| format!("storing block {}", b.height()))?;
        store
            .execute_block(&b.block)
            .with_context(|| format!("executing block {}", b.height()))?;
    }
    store.flush().context("flushing the store")?;
    Ok(())
}

/// A header already stored (the genesis, or after a restart) whose body or
/// state is missing: store them now.
fn catch_up_body(store: &Store, block: &GeneratedBlock) -> Result<()> {
    if store.block_height() < block.height() {
        store
            .save_block(&block.block)
            .with_context(|| format!("storing block {}", block.height()))?;
    }
    if store.state_height() < block.height() {
        store
            .execute_block(&block.block)
            .with_context(|| format!("executing block {}", block.height()))?;
    }
    Ok(())
}
