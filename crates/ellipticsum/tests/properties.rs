//! Property tests: parallel equals sequential, order independence, inverses,
//! serialization, and per-prefix routing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic on bad fixtures"
)]

use headway_ellipticsum::{Checksum, PrefixChecksums, RecordHasher};
use proptest::prelude::*;

type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Records with short keys (first byte from a few prefixes, sometimes empty)
/// and values of up to 300 bytes, so encodings cross SHA-512 block borders.
fn records(max: usize) -> impl Strategy<Value = Records> {
    prop::collection::vec(
        (
            prop::collection::vec(0u8..4, 0..6),
            prop::collection::vec(any::<u8>(), 0..300),
        ),
        0..max,
    )
}

fn keyed_records(max: usize) -> impl Strategy<Value = Records> {
    records(max).prop_map(|records| {
        records
            .into_iter()
            .map(|(mut key, value)| {
                if key.is_empty() {
                    key.push(0xee);
                }
                (key, value)
            })
            .collect()
    })
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parallel_sum_equals_sequential(records in records(40)) {
        for hasher in [RecordHasher::headway(), RecordHasher::deso()] {
            let sequential = hasher.sum_records(&records);
            prop_assert_eq!(hasher.par_sum_records(&records), sequential);
            let each = hasher.par_hash_records(&records);
            prop_assert_eq!(each.iter().sum::<Checksum>(), sequential);
            for (element, (key, value)) in each.iter().zip(&records) {
                prop_assert_eq!(*element, hasher.hash_record(key, value));
            }
        }
    }

    #[test]
    fn order_does_not_matter(records in records(24), seed in any::<u64>()) {
        let hasher = RecordHasher::headway();
        let mut shuffled = records.clone();
        // A deterministic Fisher–Yates shuffle driven by the seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let j = (state % (i as u64 + 1)) as usize;
            shuffled.swap(i, j);
        }
        prop_assert_eq!(hasher.sum_records(&records), hasher.sum_records(&shuffled));
    }

    #[test]
    fn union_and_difference(a in records(16), b in records(16)) {
        let hasher = RecordHasher::headway();
        let sum_a = hasher.sum_records(&a);
        let sum_b = hasher.sum_records(&b);
        let both = hasher.sum_records(a.iter().chain(&b));
        prop_assert_eq!(sum_a + sum_b, both);
        prop_assert_eq!(both - sum_b, sum_a);

        let mut running = both;
        for (key, value) in &b {
            running.remove_record(&hasher, key, value);
        }
        prop_assert_eq!(running, sum_a);
    }

    #[test]
    fn update_equals_rebuild(records in records(16), new_values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 16)) {
        let hasher = RecordHasher::deso();
        let mut running = hasher.sum_records(&records);
        let mut updated = records.clone();
        for ((key, value), new_value) in updated.iter_mut().zip(&new_values) {
            running.update_record(&hasher, key, value, new_value);
            value.clone_from(new_value);
        }
        prop_assert_eq!(running, hasher.sum_records(&updated));
    }

    #[test]
    fn serialization_round_trips(records in records(8)) {
        let checksum = RecordHasher::headway().sum_records(&records);
        let bytes = checksum.to_bytes();
        prop_assert_eq!(Checksum::from_bytes(&bytes), Ok(checksum));
        prop_assert_eq!(Checksum::from_slice(&bytes), Ok(checksum));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics_and_is_canonical(bytes in any::<[u8; 32]>()) {
        if let Ok(checksum) = Checksum::from_bytes(&bytes) {
            prop_assert_eq!(checksum.to_bytes(), bytes);
        }
    }

    #[test]
    fn prefix_sets_agree_with_plain_checksums(records in keyed_records(40)) {
        let hasher = RecordHasher::headway();
        let parallel = PrefixChecksums::par_from_records(&hasher, &records).unwrap();
        let mut sequential = PrefixChecksums::new();
        for (key, value) in &records {
            sequential.add_record(&hasher, key, value).unwrap();
        }
        prop_assert_eq!(&parallel, &sequential);
        prop_assert_eq!(parallel.state_root(), sequential.state_root());
        prop_assert_eq!(parallel.total(), hasher.sum_records(&records));
        for (prefix, checksum) in parallel.iter() {
            let under: Records = records.iter().filter(|(k, _)| k[0] == prefix).cloned().collect();
            prop_assert_eq!(checksum, hasher.sum_records(&under));
        }
    }
}
