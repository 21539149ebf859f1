//! A naive model of the construction in `docs/mmr.md`, written independently
//! of the crate: it rebuilds every tree from the leaves with `sha2::Sha256`,
//! recursion and sets, and produces proofs by walking full level arrays. The
//! crate is checked against it, and the conformance vectors are generated
//! from it, so neither the vectors nor the tests depend on the crate's
//! incremental algorithm.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the model"
)]

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

pub type H = [u8; 32];

fn sha(parts: &[&[u8]]) -> H {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The documented test data of leaf `i`: `u64_be(i)`.
pub fn leaf_data(i: u64) -> Vec<u8> {
    i.to_be_bytes().to_vec()
}

pub fn leaf(data: &[u8]) -> H {
    sha(&[&[0x00], data])
}

pub fn node(left: &H, right: &H) -> H {
    sha(&[&[0x01], left, right])
}

/// Root of a perfect tree over `leaves` (a power of two in length), recursively.
pub fn perfect_root(leaves: &[H]) -> H {
    assert!(leaves.len().is_power_of_two());
    if leaves.len() == 1 {
        leaves[0]
    } else {
        let (l, r) = leaves.split_at(leaves.len() / 2);
        node(&perfect_root(l), &perfect_root(r))
    }
}

/// Split `0..n` into peaks, largest power of two first: `(first_leaf, size)`.
pub fn peak_ranges(n: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut remaining = n;
    while remaining > 0 {
        let size = 1usize << (usize::BITS - 1 - remaining.leading_zeros());
        out.push((start, size));
        start += size;
        remaining -= size;
    }
    out
}

pub fn peaks(leaves: &[H]) -> Vec<H> {
    peak_ranges(leaves.len())
        .into_iter()
        .map(|(s, n)| perfect_root(&leaves[s..s + n]))
        .collect()
}

pub fn root(leaves: &[H]) -> H {
    let mut msg = vec![0x02];
    for peak in peaks(leaves) {
        msg.extend_from_slice(&peak);
    }
    msg.extend_from_slice(&(leaves.len() as u64).to_be_bytes());
    sha(&[&msg])
}

/// All levels of the perfect tree over `leaves`: `levels[0]` are the leaves.
fn levels(leaves: &[H]) -> Vec<Vec<H>> {
    let mut out = vec![leaves.to_vec()];
    while out.last().unwrap().len() > 1 {
        let prev = out.last().unwrap();
        out.push(prev.chunks(2).map(|p| node(&p[0], &p[1])).collect());
    }
    out
}

/// Proof hashes for one peak, given known nodes as (level, index relative to
/// the peak). Per level, ascending index: every known node's missing sibling.
fn peak_proof(levels: &[Vec<H>], known: &BTreeSet<(usize, usize)>, out: &mut Vec<H>) {
    let height = levels.len() - 1;
    if known.is_empty() {
        out.push(levels[height][0]);
        return;
    }
    if known.contains(&(height, 0)) {
        return;
    }
    let mut current: BTreeSet<usize> = BTreeSet::new();
    for (level, nodes) in levels.iter().enumerate().take(height) {
        current.extend(known.iter().filter(|(l, _)| *l == level).map(|(_, i)| *i));
        for &i in &current {
            if !current.contains(&(i ^ 1)) {
                out.push(nodes[i ^ 1]);
            }
        }
        current = current.iter().map(|i| i / 2).collect();
    }
}

/// Multi-leaf proof (also inclusion and range proofs) for sorted distinct `indices`.
pub fn multi_proof(leaves: &[H], indices: &[usize]) -> Vec<H> {
    let mut out = Vec::new();
    for (start, size) in peak_ranges(leaves.len()) {
        let known: BTreeSet<(usize, usize)> = indices
            .iter()
            .filter(|&&i| i >= start && i < start + size)
            .map(|&i| (0, i - start))
            .collect();
        peak_proof(&levels(&leaves[start..start + size]), &known, &mut out);
    }
    out
}

/// Ancestry proof that the first `old` leaves' MMR is a prefix of `leaves`' MMR.
pub fn ancestry_proof(leaves: &[H], old: usize) -> Vec<H> {
    let mut out = peaks(&leaves[..old]);
    let old_ranges = peak_ranges(old);
    for (start, size) in peak_ranges(leaves.len()) {
        let known: BTreeSet<(usize, usize)> = old_ranges
            .iter()
            .filter(|(s, _)| *s >= start && *s < start + size)
            .map(|&(s, n)| (n.trailing_zeros() as usize, (s - start) / n))
            .collect();
        peak_proof(&levels(&leaves[start..start + size]), &known, &mut out);
    }
    out
}
