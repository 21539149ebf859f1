//! The node's skip-chain answers (checkpoint bootstrap in one round trip)
//! verified by the client's hop verifier, and tampered hops refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is the assertion"
)]

use headway_chain::{ChainGenerator, Corruption, GeneratedBlock, GeneratorConfig};
use headway_headersync::bootstrap::verify_hops;
use headway_store::{Store, StoreConfig};
use headway_wire::{GetSkipChain, Request, Response, SignedHeader};

fn chain() -> (Vec<GeneratedBlock>, ChainGenerator, Store) {
    let config = GeneratorConfig {
        rotation_interval: 20,
        replace_all_at: vec![150],
        ..GeneratorConfig::small(5)
    };
    let mut generator = ChainGenerator::new(config).unwrap();
    let blocks: Vec<_> = generator.by_ref().take(400).collect();
    let store = Store::open_temporary(StoreConfig::new().with_sync_on_commit(false)).unwrap();
    let headers: Vec<_> = blocks.iter().map(|b| b.signed_header.clone()).collect();
    store.save_headers(&headers).unwrap();
    (blocks, generator, store)
}

fn hops(store: &Store, trusted: u64, target: u64) -> Vec<SignedHeader> {
    match headway_node::serve::answer(
        store,
        &Request::GetSkipChain(GetSkipChain {
            trusted_height: trusted,
            target_height: target,
        }),
    ) {
        Response::SkipChain(r) => {
            r.validate().unwrap();
            r.hops
        }
        other => panic!("unexpected answer {other:?}"),
    }
}

#[test]
fn skip_chain_reaches_the_target_in_few_verified_hops() {
    let (blocks, _, store) = chain();
    let hops = hops(&store, 1, 400);
    // Far fewer hops than headers, and the full replacement at 150 forces an
    // adjacent hop there.
    assert!(hops.len() < 60, "{} hops", hops.len());
    assert!(hops.iter().any(|h| h.header.height == 150));
    let verified = verify_hops(&blocks[0].trusted_state(), hops, 400).unwrap();
    assert_eq!(verified.trusted.height(), 400);
    assert_eq!(verified.signed.header, blocks[399].signed_header.header);
    assert_eq!(*verified.heights.last().unwrap(), 400);
}

#[test]
fn tampered_hops_are_refused() {
    let (blocks, generator, store) = chain();
    let trusted = blocks[0].trusted_state();
    let good = hops(&store, 1, 400);

    // A bad signature in a hop.
    let mut bad_sig = good.clone();
    let h = bad_sig[1].header.height as usize;
    let set = bad_sig[1].validator_set.clone();
    bad_sig[1] = generator
        .corrupt(&blocks[h - 1], Corruption::BadSignature)
        .signed_header;
    bad_sig[1].validator_set = set;
    assert!(verify_hops(&trusted, bad_sig, 400).is_err());

    // A skipped hop: the set before it no longer vouches for the next one.
    let mut skipped = good.clone();
    let at = skipped.iter().position(|h| h.header.height == 150).unwrap();
    skipped.remove(at);
    assert!(
        verify_hops(&trusted, skipped, 400).is_err(),
        "crossing the full replacement without the adjacent hop"
    );

    // A wrong validator set attached to a hop.
    let mut wrong_set = good.clone();
    let h = wrong_set[0].header.height as usize;
    wrong_set[0].validator_set = generator
        .corrupt(&blocks[h - 1], Corruption::WrongValidatorSet)
        .signed_header
        .validator_set;
    assert!(verify_hops(&trusted, wrong_set, 400).is_err());

    // Stopping short of the target.
    let mut short = good;
    short.pop();
    assert!(verify_hops(&trusted, short, 400).is_err());
}
