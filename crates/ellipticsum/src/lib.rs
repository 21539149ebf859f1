//! EllipticSum: multiset checksums of key-value state records on ristretto255.
//!
//! Snapshot sync downloads a node's state as unordered chunks of records
//! from several peers. This crate gives that state a 32-byte checksum that
//! does not depend on record order, can be updated in constant time when one
//! record changes (remove the old, add the new), and can be assembled from
//! partial checksums computed on different machines or threads. A syncing
//! node recomputes the checksum of what it received and compares it with the
//! one committed in the header chain; one per state prefix
//! ([`PrefixChecksums`]) lets it check and attribute each prefix separately,
//! and the [`StateRoot`] commits to all of them in one digest.
//!
//! Each record `(key, value)` is encoded as
//! `BE64(len(key)+len(value)) || BE64(len(key)) || key || BE64(len(value)) || value`
//! and mapped to the group with RFC 9380 `hash_to_ristretto255` (SHA-512
//! `expand_message_xmd` to 64 bytes, then the RFC 9496 one-way map) under a
//! domain separation tag. The checksum of a multiset is the sum of its
//! records' elements. With [`DESO_DST`] the checksums equal DeSo's deployed
//! EllipticSum; Headway's protocol uses [`HEADWAY_DST`]. The normative
//! description is `docs/ellipticsum.md` in the repository.
//!
//! ```
//! use headway_ellipticsum::{Checksum, PrefixChecksums, RecordHasher};
//!
//! let hasher = RecordHasher::headway();
//!
//! // Order does not matter.
//! let mut a = Checksum::identity();
//! a.add_record(&hasher, b"\x01alice", b"10");
//! a.add_record(&hasher, b"\x01bob", b"5");
//! let mut b = Checksum::identity();
//! b.add_record(&hasher, b"\x01bob", b"5");
//! b.add_record(&hasher, b"\x01alice", b"10");
//! assert_eq!(a, b);
//!
//! // Updating a record is removing the old one and adding the new one.
//! a.update_record(&hasher, b"\x01alice", b"10", b"7");
//! let fresh = hasher.sum_records([(&b"\x01bob"[..], &b"5"[..]), (b"\x01alice", b"7")]);
//! assert_eq!(a, fresh);
//!
//! // 32 bytes on the wire; decoding rejects non-canonical encodings.
//! assert_eq!(Checksum::from_bytes(&a.to_bytes())?, a);
//!
//! // One checksum per state prefix (first key byte), one root over them.
//! let mut state = PrefixChecksums::new();
//! state.add_record(&hasher, b"\x01bob", b"5")?;
//! state.add_record(&hasher, b"\x01alice", b"7")?;
//! assert_eq!(state.get(1), a);
//! let root = state.state_root();
//! # let _ = root;
//! # Ok::<(), headway_ellipticsum::Error>(())
//! ```
//!
//! # Why a sum of curve points, when a XOR of hashes was broken
//!
//! The obvious incremental checksum hashes each record to `n` bits and XORs
//! the hashes (Solana's first snapshot hash did this, with 440-byte strings).
//! Forging it means finding records whose hashes XOR to a chosen target, and
//! that is easy: hash `n + 1` candidate records and Gaussian elimination over
//! GF(2) finds a subset that sums to any target in polynomial time. Even
//! without linear algebra, the target is an instance of the *k-sum* (or
//! generalised birthday) problem: given `k` lists of random group elements,
//! pick one from each so that they add up to a target. Wagner (CRYPTO 2002)
//! showed that for XOR, and equally for addition modulo `2^n`, a tree of list
//! merges solves it in about `k * 2^(n / (1 + lg k))` work; letting `k` grow
//! with `n` makes the cost subexponential, `2^O(sqrt n)`. Widening the hash
//! buys far less security than its length suggests, and the NEAR team forged
//! Solana's checksum in minutes.
//!
//! Wagner's merges work because those groups have many small subgroups (or a
//! bit structure) to cancel against, step by step. ristretto255 is a group
//! of prime order `l ≈ 2^252`: it has no subgroups to descend through, and
//! finding records whose elements sum to zero with small coefficients would
//! give a nontrivial linear relation between random-oracle outputs, from
//! which a discrete logarithm can be extracted (the reduction behind
//! Bellare–Micciancio's MuHash and the elliptic-curve multiset hashes). The
//! best known attacks are therefore the generic ones, about `sqrt(l) ≈ 2^126`
//! group operations, as for discrete logarithms on the curve.
//!
//! That argument needs the record's element to behave like a random group
//! element whose discrete logarithm nobody knows. This is why the map is the
//! random-oracle `hash_to_ristretto255` (two Elligator maps added, uniformly
//! distributed) and not `hash(record) * G`: with a known logarithm the
//! checksum would collapse into a sum of scalars modulo `l`, an additive
//! group where Wagner's algorithm applies again. It is also why the encoding
//! must be injective and the DST distinct per protocol: collisions there
//! would be collisions of the checksum.
//!
//! # Cost
//!
//! The one-way map (two Elligator maps, each a field exponentiation)
//! dominates, about nine tenths of the time per record. The SHA-512 work is
//! four compressions for a typical record: the state after `Z_pad` is
//! computed once per [`RecordHasher`], a short record's encoding is laid out
//! with its padding in stack blocks and compressed in one call, and a long
//! one is streamed, never copied; nothing is allocated per record. Sums stay in
//! extended coordinates and are compressed only when serialized. Use
//! [`RecordHasher::par_sum_records`] or [`PrefixChecksums::par_from_records`]
//! to hash many records on all cores; results equal the sequential ones.

#![forbid(unsafe_code)]

mod checksum;
mod error;
mod hasher;
mod prefix;
mod record;
mod xmd;

pub use checksum::{CHECKSUM_LEN, Checksum};
pub use error::Error;
pub use hasher::{DESO_DST, HEADWAY_DST, RecordHasher};
pub use prefix::{PREFIX_COUNT, PrefixChecksums, STATE_ROOT_TAG, StateRoot};
pub use record::{RECORD_OVERHEAD, Record, encode_record, state_prefix};
pub use xmd::{MAX_DST_LEN, MAX_EXPAND_LEN, OVERSIZE_DST_SALT, expand_message_xmd};

/// The curve library whose [`RistrettoPoint`](curve25519_dalek::ristretto::RistrettoPoint)
/// appears in this crate's API, re-exported so callers use the same version.
pub use curve25519_dalek;

/// Compiles the README's example as a doc test.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
