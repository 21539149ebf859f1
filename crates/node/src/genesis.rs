//! The genesis file: block 1's signed header with its validator set, as the
//! protobuf encoding of `headway.v1.SignedHeader`. It is the trusted start of
//! every node of a chain.

use std::path::Path;

use anyhow::{Context, Result, bail};
use headway_chain::{ChainGenerator, HeaderExt, TrustedState, verify_commit_full};
use headway_wire::{SignedHeader, raw};
use prost::Message as _;

use crate::config::DevnetParams;

/// Builds the genesis of the devnet chain `params` describes.
pub fn devnet_genesis(params: &DevnetParams) -> Result<SignedHeader> {
    let mut generator =
        ChainGenerator::new(params.generator_config()).context("devnet parameters")?;
    let first = generator
        .next()
        .context("the generator produced no block")?;
    Ok(first.signed_header)
}

/// Writes a genesis file.
pub fn write(path: &Path, genesis: &SignedHeader) -> Result<()> {
    let bytes = raw::SignedHeader::from(genesis).encode_to_vec();
    std::fs::write(path, bytes).with_context(|| format!("writing genesis {}", path.display()))
}

/// Reads and checks a genesis file: height 1, validator set attached and
/// matching, commit signed by more than 2/3 of it.
pub fn read(path: &Path) -> Result<(SignedHeader, TrustedState)> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read genesis file {}", path.display()))?;
    let raw = raw::SignedHeader::decode(bytes.as_slice()).with_context(|| {
        format!(
            "genesis file {} is not a protobuf SignedHeader",
            path.display()
        )
    })?;
    let genesis = SignedHeader::try_from(raw)
        .with_context(|| format!("genesis file {} is invalid", path.display()))?;
    if genesis.header.height != 1 {
        bail!(
            "genesis file {}: header height is {}, not 1",
            path.display(),
            genesis.header.height
        );
    }
    let Some(set) = genesis.validator_set.clone() else {
        bail!("genesis file {}: no validator set attached", path.display());
    };
    let trusted = TrustedState::new(genesis.header.clone(), set.clone())
        .with_context(|| format!("genesis file {}", path.display()))?;
    verify_commit_full(
        &genesis.header.chain_id,
        &genesis.header,
        &genesis.commit,
        &set,
    )
    .with_context(|| format!("genesis file {}: commit does not verify", path.display()))?;
    let _ = genesis.header.hash();
    Ok((genesis, trusted))
}
