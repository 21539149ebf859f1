//! Compact ranges: bare headers with every field the requester derives left
//! out (`CompactHeaders`, docs/protocol.md "Compact ranges").
//!
//! A [`BareHeader`] in a v2 range takes about 250 bytes, of which the
//! requester could work out more than half itself: the height (the range's
//! start plus the index), the chain id (the same in every header), the
//! parent's hash (the hash of the header before, which verification computes
//! anyway) and `validators_hash` (the previous header's
//! `next_validators_hash`, a rule of verification). [`CompactHeaders`]
//! carries the rest in columns: the three 32-byte hashes of each header
//! back to back, time differences, one-byte proposer indexes, and the rare
//! validator changes and sets by index. About 100 bytes a header.
//!
//! [`CompactHeaders::from_bare`] builds one from a linked range (a server's
//! stored headers); [`CompactHeaders::expand`] rebuilds the headers, hashing
//! each once with the caller's header hash (this crate does not define it)
//! to fill in the next one's parent.

use crate::{
    WireError,
    encoded::HeaderFields,
    limits::{MAX_COMPACT_PROPOSERS, MAX_HEADERS_V2},
    raw,
    types::{
        Address, BareHeader, BlockId, Hash, Header, ValidatorSet, check_chain_id, check_count,
        check_strictly_ascending, fixed, hash,
    },
};

/// Bytes of [`CompactHeaders::roots`] per header: `data_hash`, `state_root`
/// and `history_root`, 32 bytes each.
pub const ROOTS_PER_HEADER: usize = 96;

/// The bare headers of one range, compact (see the [module
/// documentation](self)). `n`, the number of headers, is
/// `roots.len() / 96`; [`CompactHeaders::validate`] checks every column
/// against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactHeaders {
    /// The chain id of every header.
    pub chain_id: String,
    /// The first header's `last_block_id`; `None` exactly at height 1.
    pub parent_hash: Option<Hash>,
    /// The first header's `validators_hash`.
    pub validators_hash: Hash,
    /// The first header's time.
    pub first_time_ms: u64,
    /// Each further header's time minus the previous one's (`n - 1`).
    pub time_deltas_ms: Vec<i64>,
    /// `n × 96` bytes: each header's `data_hash`, `state_root`, `history_root`.
    pub roots: Vec<u8>,
    /// The distinct proposers, at most [`MAX_COMPACT_PROPOSERS`].
    pub proposers: Vec<Address>,
    /// Each header's proposer as an index into `proposers` (`n`).
    pub proposer_indexes: Vec<u8>,
    /// `(index, next_validators_hash)` of the headers whose
    /// `next_validators_hash` is not their `validators_hash`, by strictly
    /// increasing index.
    pub validators_changes: Vec<(u32, Hash)>,
    /// `(index, set)` of the headers that carry their validator set, by
    /// strictly increasing index.
    pub validator_sets: Vec<(u32, ValidatorSet)>,
}

impl CompactHeaders {
    /// How many headers the range holds (its `roots` in whole entries).
    #[must_use]
    pub fn len(&self) -> usize {
        self.roots.len() / ROOTS_PER_HEADER
    }

    /// Whether it holds no header (never, once validated).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The compact form of `headers`, or `None` when they have no compact
    /// form: empty or over [`MAX_HEADERS_V2`], heights not consecutive,
    /// chain ids not all the same, a `validators_hash` that is not the
    /// previous header's `next_validators_hash`, a time step outside `i64`,
    /// or more than [`MAX_COMPACT_PROPOSERS`] proposers. A server answers
    /// those with plain bare headers.
    ///
    /// Each header's parent is implied to be the header before it, so
    /// `headers` must be linked (as a store's are); the expansion of an
    /// unlinked range gives other headers, which fail their proof.
    #[must_use]
    pub fn from_bare(headers: &[BareHeader]) -> Option<Self> {
        let first = &headers.first()?.header;
        if headers.len() > MAX_HEADERS_V2 as usize {
            return None;
        }
        let mut compact = CompactHeaders {
            chain_id: first.chain_id.clone(),
            parent_hash: first.last_block_id.map(|id| id.hash),
            validators_hash: first.validators_hash,
            first_time_ms: first.time_ms,
            time_deltas_ms: Vec::with_capacity(headers.len() - 1),
            roots: Vec::with_capacity(headers.len() * ROOTS_PER_HEADER),
            proposers: Vec::new(),
            proposer_indexes: Vec::with_capacity(headers.len()),
            validators_changes: Vec::new(),
            validator_sets: Vec::new(),
        };
        let mut previous: Option<&Header> = None;
        for (i, bare) in headers.iter().enumerate() {
            let header = &bare.header;
            // `i` is below MAX_HEADERS_V2: it fits in a u32 and a height step.
            let index = i as u32;
            if let Some(previous) = previous {
                if header.chain_id != previous.chain_id
                    || Some(header.height) != previous.height.checked_add(1)
                    || header.validators_hash != previous.next_validators_hash
                {
                    return None;
                }
                let delta = i128::from(header.time_ms) - i128::from(previous.time_ms);
                compact.time_deltas_ms.push(i64::try_from(delta).ok()?);
            }
            compact.roots.extend_from_slice(&header.data_hash.0);
            compact.roots.extend_from_slice(&header.state_root.0);
            compact.roots.extend_from_slice(&header.history_root.0);
            let proposer = proposer_index(
                &mut compact.proposers,
                header.proposer_address,
                compact.proposer_indexes.last().copied(),
            )?;
            compact.proposer_indexes.push(proposer);
            if header.next_validators_hash != header.validators_hash {
                compact
                    .validators_changes
                    .push((index, header.next_validators_hash));
            }
            if let Some(set) = &bare.validator_set {
                compact.validator_sets.push((index, set.clone()));
            }
            previous = Some(header);
        }
        Some(compact)
    }

    /// Checks every column against the number of headers, and the chain id
    /// and the validator sets as a header's and a set's are checked. Errors
    /// name `compact_headers.<field>`.
    pub fn validate(&self) -> Result<(), WireError> {
        check_chain_id("compact_headers.chain_id", &self.chain_id)?;
        if !self.roots.len().is_multiple_of(ROOTS_PER_HEADER) {
            return Err(WireError::Invalid {
                field: "compact_headers.roots",
                rule: "must hold 96 bytes per header",
            });
        }
        let n = self.len();
        if n == 0 {
            return Err(WireError::Empty {
                field: "compact_headers.roots",
            });
        }
        check_count("compact_headers.roots", n, MAX_HEADERS_V2 as usize)?;
        if self.time_deltas_ms.len() != n - 1 {
            return Err(WireError::Invalid {
                field: "compact_headers.time_deltas_ms",
                rule: "must hold one entry per header after the first",
            });
        }
        check_count(
            "compact_headers.proposers",
            self.proposers.len(),
            MAX_COMPACT_PROPOSERS,
        )?;
        if self.proposer_indexes.len() != n {
            return Err(WireError::Invalid {
                field: "compact_headers.proposer_indexes",
                rule: "must hold one index per header",
            });
        }
        if let Some(i) = self
            .proposer_indexes
            .iter()
            .position(|&p| usize::from(p) >= self.proposers.len())
        {
            return Err(WireError::Item {
                field: "compact_headers.proposer_indexes",
                index: i,
                source: Box::new(WireError::Invalid {
                    field: "proposer_index",
                    rule: "must name one of the proposers",
                }),
            });
        }
        check_indexes(
            "compact_headers.validators_changes",
            &self.validators_changes,
            n,
        )?;
        check_indexes("compact_headers.validator_sets", &self.validator_sets, n)?;
        for (i, (_, set)) in self.validator_sets.iter().enumerate() {
            set.validate()
                .map_err(WireError::item("compact_headers.validator_sets", i))?;
        }
        Ok(())
    }

    /// The bare headers from `start_height`, each with the hash `hash` gives
    /// it (the header hash, computed once here: each header's parent is the
    /// hash of the one before). Validates first.
    ///
    /// # Errors
    ///
    /// What [`CompactHeaders::validate`] finds; a parent hash present at
    /// height 1 or absent above it; heights or times that leave `u64`.
    pub fn expand(
        &self,
        start_height: u64,
        mut hash: impl FnMut(&Header) -> Hash,
    ) -> Result<Vec<(BareHeader, Hash)>, WireError> {
        let mut out = Vec::new();
        self.expand_into(start_height, &mut out, |bare| {
            let h = hash(&bare.header);
            ((bare, h), h)
        })?;
        Ok(out)
    }

    /// [`CompactHeaders::expand`] into a vector the caller owns (a range's
    /// headers are a few hundred KiB: reusing one vector saves allocating
    /// and faulting in fresh pages for every range), each header made into a
    /// `T` by `make`, which also returns the header hash. `out` is cleared
    /// first, and again on error.
    ///
    /// # Errors
    ///
    /// As [`CompactHeaders::expand`].
    pub fn expand_into<T>(
        &self,
        start_height: u64,
        out: &mut Vec<T>,
        make: impl FnMut(BareHeader) -> (T, Hash),
    ) -> Result<(), WireError> {
        out.clear();
        let result = self.expand_each(start_height, out, make);
        if result.is_err() {
            out.clear();
        }
        result
    }

    fn expand_each<T>(
        &self,
        start_height: u64,
        out: &mut Vec<T>,
        mut make: impl FnMut(BareHeader) -> (T, Hash),
    ) -> Result<(), WireError> {
        let mut cursor = self.cursor(start_height)?;
        out.reserve(self.len());
        let mut parent = self.parent_hash.map(|hash| hash.0);
        while let Some((fields, set)) = cursor.next(parent)? {
            let header = Header {
                chain_id: self.chain_id.clone(),
                height: fields.height,
                time_ms: fields.time_ms,
                last_block_id: fields.parent_hash.map(|hash| BlockId { hash: Hash(hash) }),
                data_hash: Hash(*fields.data_hash),
                validators_hash: Hash(fields.validators_hash),
                next_validators_hash: Hash(fields.next_validators_hash),
                state_root: Hash(*fields.state_root),
                history_root: Hash(*fields.history_root),
                proposer_address: Address(fields.proposer),
            };
            let (item, header_hash) = make(BareHeader {
                header,
                validator_set: set.cloned(),
            });
            parent = Some(header_hash.0);
            out.push(item);
        }
        Ok(())
    }

    /// Validates the range as one starting at `start_height` and gives each
    /// header's hash, as `hash` computes it from the header's fields, into
    /// `out` (cleared first, and again on error): the struct-free way to
    /// verify a compact range, for a requester that stores the fields as
    /// they are ([`CompactHeaders::fields`]). Each header's parent is the
    /// hash `hash` gave the one before.
    ///
    /// # Errors
    ///
    /// As [`CompactHeaders::expand`].
    pub fn hash_into(
        &self,
        start_height: u64,
        out: &mut Vec<Hash>,
        mut hash: impl FnMut(&HeaderFields<'_>) -> Hash,
    ) -> Result<(), WireError> {
        out.clear();
        let result = self.cursor(start_height).and_then(|mut cursor| {
            out.reserve(self.len());
            let mut parent = self.parent_hash.map(|hash| hash.0);
            while let Some((fields, _)) = cursor.next(parent)? {
                let header_hash = hash(&fields);
                parent = Some(header_hash.0);
                out.push(header_hash);
            }
            Ok(())
        });
        if result.is_err() {
            out.clear();
        }
        result
    }

    /// The headers' fields from `start_height`, each with the validator set
    /// it carries, the parent of each after the first being `hashes[i - 1]`.
    /// Meant for a range [`CompactHeaders::hash_into`] accepted with the same
    /// start, and the hashes it gave: the iterator then yields every header.
    /// Otherwise it stops at the first header it cannot make (a range that
    /// does not validate yields none), or at the first without a hash in
    /// `hashes`.
    pub fn fields<'a>(&'a self, start_height: u64, hashes: &'a [Hash]) -> CompactFields<'a> {
        CompactFields {
            cursor: self.cursor(start_height).ok(),
            parent: self.parent_hash.map(|hash| hash.0),
            hashes,
        }
    }

    /// Each attached validator set with its header's index and
    /// `validators_hash` (the range's first, or the `next_validators_hash`
    /// of the last change before it): what a set must hash to, without
    /// walking the headers between.
    pub fn attached_sets(&self) -> impl Iterator<Item = (u32, &ValidatorSet, Hash)> + '_ {
        let mut changes = self.validators_changes.iter().peekable();
        let mut current = self.validators_hash;
        self.validator_sets.iter().map(move |(index, set)| {
            while let Some((_, next)) = changes.next_if(|(at, _)| at < index) {
                current = *next;
            }
            (*index, set, current)
        })
    }

    /// A cursor over the headers from `start_height`, after the range's
    /// checks ([`CompactHeaders::validate`], the parent and the heights).
    fn cursor(&self, start_height: u64) -> Result<Cursor<'_>, WireError> {
        self.validate()?;
        match (start_height, self.parent_hash) {
            (0, _) => {
                return Err(WireError::ZeroHeight {
                    field: "headers_v2_response.start_height",
                });
            }
            (1, Some(_)) => {
                return Err(WireError::Invalid {
                    field: "compact_headers.parent_hash",
                    rule: "must be empty when the range starts at height 1",
                });
            }
            (2.., None) => {
                return Err(WireError::Missing {
                    field: "compact_headers.parent_hash",
                });
            }
            _ => {}
        }
        if start_height.checked_add(self.len() as u64 - 1).is_none() {
            return Err(WireError::Invalid {
                field: "headers_v2_response.start_height",
                rule: "the range's heights must fit in u64",
            });
        }
        Ok(Cursor {
            compact: self,
            start_height,
            index: 0,
            validators_hash: self.validators_hash.0,
            time_ms: self.first_time_ms,
            change: 0,
            set: 0,
        })
    }
}

/// The fields of a compact range's headers ([`CompactHeaders::fields`]).
#[derive(Debug, Clone)]
pub struct CompactFields<'a> {
    cursor: Option<Cursor<'a>>,
    parent: Option<[u8; 32]>,
    hashes: &'a [Hash],
}

impl<'a> Iterator for CompactFields<'a> {
    type Item = (HeaderFields<'a>, Option<&'a ValidatorSet>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let cursor = self.cursor.as_mut()?;
        let item = match self.hashes.get(cursor.index) {
            Some(hash) => cursor
                .next(self.parent)
                .ok()
                .flatten()
                .map(|item| (item, hash)),
            None => None,
        };
        match item {
            Some((item, hash)) => {
                self.parent = Some(hash.0);
                Some(item)
            }
            None => {
                self.cursor = None;
                None
            }
        }
    }
}

/// Walks a checked compact range header by header, carrying what each
/// header takes from the one before (see [`CompactHeaders::cursor`]).
#[derive(Debug, Clone)]
struct Cursor<'a> {
    compact: &'a CompactHeaders,
    start_height: u64,
    index: usize,
    validators_hash: [u8; 32],
    time_ms: u64,
    /// The next entries of `validators_changes` and `validator_sets`.
    change: usize,
    set: usize,
}

impl<'a> Cursor<'a> {
    /// The next header's fields, its parent being `parent`; `None` past the
    /// last.
    #[inline]
    fn next(
        &mut self,
        parent: Option<[u8; 32]>,
    ) -> Result<Option<(HeaderFields<'a>, Option<&'a ValidatorSet>)>, WireError> {
        let compact = self.compact;
        let i = self.index;
        let Some(roots) = compact
            .roots
            .get(i * ROOTS_PER_HEADER..(i + 1) * ROOTS_PER_HEADER)
        else {
            return Ok(None);
        };
        if i > 0 {
            let delta = compact.time_deltas_ms.get(i - 1).copied().unwrap_or(0);
            self.time_ms =
                self.time_ms
                    .checked_add_signed(delta)
                    .ok_or_else(|| WireError::Item {
                        field: "compact_headers.time_deltas_ms",
                        index: i - 1,
                        source: Box::new(WireError::Invalid {
                            field: "time_delta_ms",
                            rule: "takes the time outside u64",
                        }),
                    })?;
        }
        let index = i as u32;
        let validators_hash = self.validators_hash;
        let next_validators_hash = match compact.validators_changes.get(self.change) {
            Some((at, next)) if *at == index => {
                self.change += 1;
                next.0
            }
            _ => validators_hash,
        };
        let validator_set = match compact.validator_sets.get(self.set) {
            Some((at, set)) if *at == index => {
                self.set += 1;
                Some(set)
            }
            _ => None,
        };
        let proposer = compact
            .proposer_indexes
            .get(i)
            .and_then(|&p| compact.proposers.get(usize::from(p)))
            .ok_or_else(|| WireError::Item {
                field: "compact_headers.proposer_indexes",
                index: i,
                source: Box::new(WireError::Invalid {
                    field: "proposer_index",
                    rule: "must name one of the proposers",
                }),
            })?;
        let fields = HeaderFields {
            chain_id: compact.chain_id.as_bytes(),
            height: self.start_height + i as u64,
            time_ms: self.time_ms,
            parent_hash: parent,
            data_hash: root(roots, 0)?,
            validators_hash,
            next_validators_hash,
            state_root: root(roots, 1)?,
            history_root: root(roots, 2)?,
            proposer: proposer.0,
        };
        self.validators_hash = next_validators_hash;
        self.index += 1;
        Ok(Some((fields, validator_set)))
    }
}

/// The `k`-th 32-byte root of a header's 96 bytes of roots.
#[inline]
fn root(roots: &[u8], k: usize) -> Result<&[u8; 32], WireError> {
    roots
        .get(k * 32..(k + 1) * 32)
        .and_then(|r| r.try_into().ok())
        .ok_or(WireError::Invalid {
            field: "compact_headers.roots",
            rule: "must hold 96 bytes per header",
        })
}

/// The index of `proposer` among `proposers` (which holds each proposer
/// once), added if new; `None` when that would make more than
/// [`MAX_COMPACT_PROPOSERS`]. `last` is the previous header's index:
/// proposers take turns, so the one after it (or the first, after the last
/// one), or the same again, is tried before searching them all (the search
/// compared a header's proposer with half a validator set's on average, a
/// twentieth of what a server spends building a compact range).
pub(crate) fn proposer_index<T: PartialEq>(
    proposers: &mut Vec<T>,
    proposer: T,
    last: Option<u8>,
) -> Option<u8> {
    if let Some(last) = last.map(usize::from) {
        let next = if last + 1 < proposers.len() {
            last + 1
        } else {
            0
        };
        for at in [next, last] {
            if proposers.get(at) == Some(&proposer) {
                return u8::try_from(at).ok();
            }
        }
    }
    let at = match proposers.iter().position(|p| *p == proposer) {
        Some(at) => at,
        None if proposers.len() < MAX_COMPACT_PROPOSERS => {
            proposers.push(proposer);
            proposers.len() - 1
        }
        None => return None,
    };
    u8::try_from(at).ok()
}

/// The `(index, _)` entries of a column of exceptions: strictly increasing,
/// each below `n`.
fn check_indexes<T>(field: &'static str, items: &[(u32, T)], n: usize) -> Result<(), WireError> {
    check_count(field, items.len(), n)?;
    check_strictly_ascending(field, items, |a, b| a.0.cmp(&b.0))?;
    match items.last() {
        Some((index, _)) if *index as usize >= n => Err(WireError::Item {
            field,
            index: items.len() - 1,
            source: Box::new(WireError::Invalid {
                field: "index",
                rule: "must name a header of the range",
            }),
        }),
        _ => Ok(()),
    }
}

// ------------------------------------------------------------ raw <-> domain

impl TryFrom<raw::CompactHeaders> for CompactHeaders {
    type Error = WireError;
    fn try_from(raw: raw::CompactHeaders) -> Result<Self, WireError> {
        check_count(
            "compact_headers.proposers",
            raw.proposers.len(),
            MAX_COMPACT_PROPOSERS,
        )?;
        check_count(
            "compact_headers.validators_changes",
            raw.validators_changes.len(),
            MAX_HEADERS_V2 as usize,
        )?;
        check_count(
            "compact_headers.validator_sets",
            raw.validator_sets.len(),
            MAX_HEADERS_V2 as usize,
        )?;
        let mut proposers = Vec::with_capacity(raw.proposers.len());
        for (i, p) in raw.proposers.iter().enumerate() {
            proposers.push(Address(
                fixed("address", p).map_err(WireError::item("compact_headers.proposers", i))?,
            ));
        }
        let mut validators_changes = Vec::with_capacity(raw.validators_changes.len());
        for (i, change) in raw.validators_changes.into_iter().enumerate() {
            let next = hash("next_validators_hash", &change.next_validators_hash)
                .map_err(WireError::item("compact_headers.validators_changes", i))?;
            validators_changes.push((change.index, next));
        }
        let mut validator_sets = Vec::with_capacity(raw.validator_sets.len());
        for (i, entry) in raw.validator_sets.into_iter().enumerate() {
            let set = entry
                .validator_set
                .ok_or(WireError::Missing {
                    field: "validator_set",
                })
                .and_then(ValidatorSet::try_from)
                .map_err(WireError::item("compact_headers.validator_sets", i))?;
            validator_sets.push((entry.index, set));
        }
        let compact = CompactHeaders {
            chain_id: raw.chain_id,
            parent_hash: if raw.parent_hash.is_empty() {
                None
            } else {
                Some(hash("compact_headers.parent_hash", &raw.parent_hash)?)
            },
            validators_hash: hash("compact_headers.validators_hash", &raw.validators_hash)?,
            first_time_ms: raw.first_time_ms,
            time_deltas_ms: raw.time_deltas_ms,
            roots: raw.roots,
            proposers,
            proposer_indexes: raw.proposer_indexes,
            validators_changes,
            validator_sets,
        };
        compact.validate()?;
        Ok(compact)
    }
}

/// The raw message, with `proof` (which the wire message carries inside).
pub(crate) fn to_raw(compact: &CompactHeaders, proof: raw::MmrProof) -> raw::CompactHeaders {
    raw::CompactHeaders {
        chain_id: compact.chain_id.clone(),
        parent_hash: compact
            .parent_hash
            .map_or_else(Vec::new, |hash| hash.0.to_vec()),
        validators_hash: compact.validators_hash.0.to_vec(),
        first_time_ms: compact.first_time_ms,
        time_deltas_ms: compact.time_deltas_ms.clone(),
        roots: compact.roots.clone(),
        proposers: compact.proposers.iter().map(|p| p.0.to_vec()).collect(),
        proposer_indexes: compact.proposer_indexes.clone(),
        validators_changes: compact
            .validators_changes
            .iter()
            .map(|(index, next)| raw::CompactValidatorsChange {
                index: *index,
                next_validators_hash: next.0.to_vec(),
            })
            .collect(),
        validator_sets: compact
            .validator_sets
            .iter()
            .map(|(index, set)| raw::CompactValidatorSet {
                index: *index,
                validator_set: Some(set.into()),
            })
            .collect(),
        proof: Some(proof),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use prost::Message as _;

    use super::*;
    use crate::types::PublicKey;
    use crate::{Envelope as _, HeadersV2Response, HeadersV2Result, MmrProof, Response, Validator};

    /// A stand-in for the header hash (this crate does not define it): any
    /// function of the whole header does for these tests.
    fn toy_hash(header: &Header) -> Hash {
        let mut out = [0u8; 32];
        let raw = raw::Header::from(header).encode_to_vec();
        for (i, byte) in raw.iter().enumerate() {
            out[i % 32] = out[i % 32].rotate_left(3) ^ byte;
        }
        Hash(out)
    }

    /// `n` linked bare headers from `start` (by [`toy_hash`]), with 4
    /// proposers, the validator set changing after header 3 (and attached
    /// to header 4), and a time step back at header 2.
    fn linked(start: u64, n: usize) -> Vec<BareHeader> {
        let mut headers: Vec<BareHeader> = Vec::new();
        let mut parent = (start > 1).then_some(Hash([9; 32]));
        let mut validators_hash = Hash([1; 32]);
        for i in 0..n {
            let next = if i == 3 {
                Hash([2; 32])
            } else {
                validators_hash
            };
            let header = Header {
                chain_id: "toy-chain".into(),
                height: start + i as u64,
                time_ms: if i == 2 {
                    1_000
                } else {
                    5_000 + 1_000 * i as u64
                },
                last_block_id: parent.map(|hash| BlockId { hash }),
                data_hash: Hash([i as u8; 32]),
                validators_hash,
                next_validators_hash: next,
                state_root: Hash([(i as u8).wrapping_mul(7); 32]),
                history_root: Hash([(i as u8).wrapping_add(100); 32]),
                proposer_address: Address([(i % 4) as u8; 20]),
            };
            parent = Some(toy_hash(&header));
            let validator_set = (i == 4).then(|| ValidatorSet {
                validators: vec![Validator {
                    pub_key: PublicKey([5; 32]),
                    voting_power: 10,
                }],
            });
            validators_hash = next;
            headers.push(BareHeader {
                header,
                validator_set,
            });
        }
        headers
    }

    fn expanded(compact: &CompactHeaders, start: u64) -> Result<Vec<BareHeader>, WireError> {
        Ok(compact
            .expand(start, toy_hash)?
            .into_iter()
            .map(|(bare, _)| bare)
            .collect())
    }

    #[test]
    fn a_linked_range_round_trips() {
        for (start, n) in [(1, 1), (1, 9), (500, 9), (7, 2000)] {
            let headers = linked(start, n);
            let compact = CompactHeaders::from_bare(&headers).unwrap();
            compact.validate().unwrap();
            assert_eq!(compact.len(), n);
            assert_eq!(compact.proposers.len(), n.min(4));
            assert_eq!(expanded(&compact, start).unwrap(), headers);
            let pairs = compact.expand(start, toy_hash).unwrap();
            assert!(
                pairs
                    .iter()
                    .all(|(bare, hash)| toy_hash(&bare.header) == *hash)
            );
        }
    }

    /// `toy_hash` of the header with these fields.
    fn fields_hash(fields: &HeaderFields<'_>) -> Hash {
        let mut bytes = Vec::new();
        fields.encode(&mut bytes);
        toy_hash(&Header::try_from(raw::Header::decode(&bytes[..]).unwrap()).unwrap())
    }

    /// Hashing from the columns gives the hashes expansion gives, and the
    /// fields given with them are the expanded headers' (with their sets);
    /// fields stop where the hashes do.
    #[test]
    fn the_struct_free_path_agrees_with_expansion() {
        for (start, n) in [(1, 1), (1, 9), (500, 9), (7, 2000)] {
            let headers = linked(start, n);
            let compact = CompactHeaders::from_bare(&headers).unwrap();
            let pairs = compact.expand(start, toy_hash).unwrap();
            let mut hashes = Vec::new();
            compact.hash_into(start, &mut hashes, fields_hash).unwrap();
            assert_eq!(hashes, pairs.iter().map(|(_, h)| *h).collect::<Vec<_>>());
            let fields: Vec<_> = compact.fields(start, &hashes).collect();
            assert_eq!(fields.len(), n);
            for ((fields, set), bare) in fields.iter().zip(&headers) {
                assert_eq!(*fields, HeaderFields::of(&bare.header));
                assert_eq!(*set, bare.validator_set.as_ref());
            }
            // The sets' own validators hashes, without the walk.
            let sets: Vec<_> = compact.attached_sets().collect();
            assert_eq!(sets.len(), usize::from(n > 4));
            for (index, set, validators_hash) in sets {
                let bare = &headers[index as usize];
                assert_eq!(Some(set), bare.validator_set.as_ref());
                assert_eq!(validators_hash, bare.header.validators_hash);
            }
            // Fewer hashes than headers: the fields stop with them.
            assert_eq!(compact.fields(start, &hashes[..n / 2]).count(), n / 2);
            // Another start than the one hashed: the heights follow it.
            if start > 1 {
                let moved: Vec<u64> = compact
                    .fields(start + 1, &hashes)
                    .map(|(f, _)| f.height)
                    .collect();
                assert_eq!(moved.first(), Some(&(start + 1)));
            }
        }
    }

    /// The point of the form: well under half the bytes of bare headers.
    #[test]
    fn a_compact_range_takes_under_half_the_bytes() {
        let headers = linked(1000, 1000);
        let response = |result| {
            Response::HeadersV2(HeadersV2Response {
                start_height: 1000,
                end_height: 5000,
                result,
            })
        };
        let proof = MmrProof::default();
        let bare = response(HeadersV2Result::BareHeaders {
            headers: headers.clone(),
            proof: proof.clone(),
        })
        .encode()
        .unwrap()
        .len();
        let compact = response(HeadersV2Result::CompactHeaders {
            headers: Box::new(CompactHeaders::from_bare(&headers).unwrap()),
            proof,
        })
        .encode()
        .unwrap()
        .len();
        assert!(
            compact * 100 / 1000 <= 10_100,
            "{compact} bytes for 1000 headers"
        );
        assert!(compact * 5 < bare * 2, "{compact} against {bare}");
    }

    #[test]
    fn ranges_without_a_compact_form_are_refused() {
        assert_eq!(CompactHeaders::from_bare(&[]), None);
        let mut gap = linked(5, 4);
        gap[2].header.height += 1;
        assert_eq!(CompactHeaders::from_bare(&gap), None);
        let mut other_chain = linked(5, 4);
        other_chain[3].header.chain_id = "other".into();
        assert_eq!(CompactHeaders::from_bare(&other_chain), None);
        let mut discontinuous = linked(5, 4);
        discontinuous[1].header.validators_hash = Hash([7; 32]);
        assert_eq!(CompactHeaders::from_bare(&discontinuous), None);
        let mut far = linked(5, 4);
        far[0].header.time_ms = u64::MAX;
        assert_eq!(CompactHeaders::from_bare(&far), None);
        let mut crowded = linked(5, 300);
        for (i, bare) in crowded.iter_mut().enumerate() {
            bare.header.proposer_address = Address([
                (i % 257) as u8,
                (i / 257) as u8,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ]);
        }
        assert_eq!(CompactHeaders::from_bare(&crowded), None);
        crowded.truncate(256);
        assert!(CompactHeaders::from_bare(&crowded).is_some());
    }

    /// A bare header as a store keeps it: its encoded header and, where
    /// attached, its encoded validator set.
    fn stored_parts(bare: &BareHeader) -> (Vec<u8>, Option<Vec<u8>>) {
        (
            raw::Header::from(&bare.header).encode_to_vec(),
            bare.validator_set
                .as_ref()
                .map(|set| raw::ValidatorSet::from(set).encode_to_vec()),
        )
    }

    fn compact_frame(start: u64, headers: &[BareHeader], proof: &MmrProof) -> Vec<u8> {
        crate::frame::encode_frame(&Response::HeadersV2(HeadersV2Response {
            start_height: start,
            end_height: 9_000,
            result: HeadersV2Result::CompactHeaders {
                headers: Box::new(CompactHeaders::from_bare(headers).unwrap()),
                proof: proof.clone(),
            },
        }))
        .unwrap()
    }

    fn proof() -> MmrProof {
        MmrProof {
            hashes: vec![Hash([3; 32]), Hash([4; 32])],
        }
    }

    /// The builder servers transcode stored rows with frames, byte for byte,
    /// what encoding `from_bare` of the decoded headers gives.
    #[test]
    fn a_range_built_from_stored_parts_is_the_encoded_compact_range() {
        use crate::encoded::CompactRangeBuilder;
        // Sized for the range, for less, for more, or for more than a range
        // may hold (capped): the bytes are the same.
        for capacity in [None, Some(0), Some(5), Some(2000), Some(usize::MAX)] {
            for (start, n) in [(1, 1), (1, 9), (500, 9), (7, 2000)] {
                let headers = linked(start, n);
                let mut range = match capacity {
                    None => CompactRangeBuilder::new(start),
                    Some(c) => CompactRangeBuilder::with_capacity(start, c),
                };
                assert!(range.is_empty());
                for bare in &headers {
                    let (header, set) = stored_parts(bare);
                    assert!(range.push(&header, set.as_deref()));
                }
                assert_eq!(range.len(), n);
                let frame = range.finish(9_000, &proof()).unwrap().unwrap();
                assert_eq!(
                    frame.as_frame(),
                    &compact_frame(start, &headers, &proof())[..]
                );
            }
        }
        assert_eq!(
            CompactRangeBuilder::new(5).finish(9_000, &proof()).unwrap(),
            None
        );
    }

    /// Whatever would leave the range without a compact form is refused one
    /// header at a time, and the builder keeps the headers before it.
    #[test]
    fn a_refused_header_leaves_the_builder_as_it_was() {
        use crate::encoded::CompactRangeBuilder;
        let headers = linked(5, 8);
        let mut range = CompactRangeBuilder::new(5);
        let parts: Vec<_> = headers.iter().map(stored_parts).collect();
        // The first header must be at the start height.
        assert!(!range.push(&parts[1].0, None));
        assert!(range.is_empty());
        for (header, set) in &parts[..5] {
            assert!(range.push(header, set.as_deref()));
        }
        let refused = |bare: &BareHeader| stored_parts(bare).0;
        let mut wrong = headers[5].clone();
        wrong.header.height += 1;
        assert!(!range.push(&refused(&wrong), None), "a gap");
        let mut wrong = headers[5].clone();
        wrong.header.chain_id = "other".into();
        assert!(!range.push(&refused(&wrong), None), "another chain");
        let mut wrong = headers[5].clone();
        wrong.header.validators_hash = Hash([7; 32]);
        assert!(
            !range.push(&refused(&wrong), None),
            "validators discontinuous"
        );
        let mut wrong = headers[5].clone();
        wrong.header.time_ms = u64::MAX;
        assert!(!range.push(&refused(&wrong), None), "a time step past i64");
        assert!(!range.push(&parts[5].0[..40], None), "a truncated header");
        assert!(!range.push(b"\x08\x01", None), "not a header");
        // A commit's keys where a validator set's belong.
        assert!(
            !range.push(&parts[5].0, Some(b"\x08\x05\x10\x01")),
            "not a set"
        );
        assert_eq!(range.len(), 5);
        for (header, set) in &parts[5..] {
            assert!(range.push(header, set.as_deref()));
        }
        let frame = range.finish(9_000, &proof()).unwrap().unwrap();
        assert_eq!(frame.as_frame(), &compact_frame(5, &headers, &proof())[..]);

        // No more than MAX_HEADERS_V2 headers, nor 256 proposers.
        let many = linked(1, MAX_HEADERS_V2 as usize + 1);
        let mut range = CompactRangeBuilder::new(1);
        for bare in &many[..MAX_HEADERS_V2 as usize] {
            let (header, set) = stored_parts(bare);
            assert!(range.push(&header, set.as_deref()));
        }
        let (header, set) = stored_parts(&many[MAX_HEADERS_V2 as usize]);
        assert!(!range.push(&header, set.as_deref()));
        let mut crowded = linked(1, 257);
        for (i, bare) in crowded.iter_mut().enumerate() {
            bare.header.proposer_address = Address([(i % 256) as u8 ^ 0x80; 20]);
            bare.header.proposer_address.0[1] = (i / 256) as u8;
        }
        let mut range = CompactRangeBuilder::new(1);
        for bare in &crowded[..256] {
            let (header, set) = stored_parts(bare);
            assert!(range.push(&header, set.as_deref()));
        }
        let (header, set) = stored_parts(&crowded[256]);
        assert!(!range.push(&header, set.as_deref()), "a 257th proposer");
        assert_eq!(range.len(), 256);
    }

    /// Each broken column is refused with an error naming it.
    #[test]
    fn malformed_columns_are_refused_with_their_field() {
        let good = CompactHeaders::from_bare(&linked(500, 9)).unwrap();
        let field = |e: WireError| match e {
            WireError::Item { field, .. }
            | WireError::Invalid { field, .. }
            | WireError::Empty { field }
            | WireError::Missing { field }
            | WireError::TooMany { field, .. }
            | WireError::Unsorted { field, .. }
            | WireError::Duplicate { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        };
        type Edit = fn(&mut CompactHeaders);
        let cases: [(Edit, &str); 11] = [
            (
                |c| c.roots.pop().map(drop).unwrap_or(()),
                "compact_headers.roots",
            ),
            (|c| c.roots.clear(), "compact_headers.roots"),
            (
                |c| c.time_deltas_ms.push(1),
                "compact_headers.time_deltas_ms",
            ),
            (
                |c| c.proposer_indexes.pop().map(drop).unwrap_or(()),
                "compact_headers.proposer_indexes",
            ),
            (
                |c| c.proposer_indexes[3] = 4,
                "compact_headers.proposer_indexes",
            ),
            (
                |c| c.validators_changes.push((9, Hash([3; 32]))),
                "compact_headers.validators_changes",
            ),
            (
                |c| c.validators_changes.insert(0, (3, Hash([3; 32]))),
                "compact_headers.validators_changes",
            ),
            (
                |c| {
                    c.validator_sets.push((
                        2,
                        ValidatorSet {
                            validators: Vec::new(),
                        },
                    ))
                },
                "compact_headers.validator_sets",
            ),
            (
                |c| c.validator_sets[0].1.validators.clear(),
                "compact_headers.validator_sets",
            ),
            (
                |c| c.chain_id = "has space".into(),
                "compact_headers.chain_id",
            ),
            (
                |c| c.time_deltas_ms[0] = i64::MIN,
                "compact_headers.time_deltas_ms",
            ),
        ];
        for (edit, name) in cases {
            let mut bad = good.clone();
            edit(&mut bad);
            assert_eq!(field(expanded(&bad, 500).unwrap_err()), name, "{bad:?}");
            // The struct-free path refuses it alike, and keeps no hash.
            let mut hashes = vec![Hash([1; 32])];
            let error = bad.hash_into(500, &mut hashes, fields_hash).unwrap_err();
            assert_eq!(field(error), name, "{bad:?}");
            assert!(hashes.is_empty());
        }
        // The parent: present exactly above height 1.
        assert_eq!(
            field(expanded(&good, 1).unwrap_err()),
            "compact_headers.parent_hash"
        );
        let first = CompactHeaders::from_bare(&linked(1, 3)).unwrap();
        assert_eq!(
            field(expanded(&first, 2).unwrap_err()),
            "compact_headers.parent_hash"
        );
        // Heights past u64.
        assert!(expanded(&good, u64::MAX - 3).is_err());
    }

    #[test]
    fn responses_check_the_parent_and_the_end() {
        let compact = CompactHeaders::from_bare(&linked(500, 9)).unwrap();
        let response = |start_height, end_height| HeadersV2Response {
            start_height,
            end_height,
            result: HeadersV2Result::CompactHeaders {
                headers: Box::new(compact.clone()),
                proof: MmrProof::default(),
            },
        };
        assert_eq!(response(500, 508).validate(), Ok(()));
        assert!(response(500, 507).validate().is_err());
        assert!(response(1, 600).validate().is_err());
        let request = crate::GetHeadersV2 {
            start_height: 500,
            count: 9,
            end_height: 600,
            commitment: Hash([0; 32]),
            proof_kind: crate::ProofKind::LastLeaf,
            headers_only: true,
            compact: false,
        };
        // A compact answer only to a request that asked for one.
        assert!(response(500, 600).validate_for(&request).is_err());
        let asked = crate::GetHeadersV2 {
            compact: true,
            ..request
        };
        assert_eq!(response(500, 600).validate_for(&asked), Ok(()));
        let fewer = crate::GetHeadersV2 { count: 8, ..asked };
        assert!(response(500, 600).validate_for(&fewer).is_err());
    }

    /// The index `proposer_index` gives with a hint is the one a plain
    /// search gives, whatever the hint and the order of proposers: taking
    /// turns, repeating, jumping back, new ones, and past the limit.
    #[test]
    fn proposer_index_with_a_hint_finds_what_a_search_finds() {
        // The oracle: indexes in order of first appearance, from a map.
        fn plain(seen: &mut std::collections::HashMap<u16, usize>, proposer: u16) -> Option<u8> {
            let next = seen.len();
            if next >= MAX_COMPACT_PROPOSERS && !seen.contains_key(&proposer) {
                return None;
            }
            u8::try_from(*seen.entry(proposer).or_insert(next)).ok()
        }
        let turns = (0..40u16).map(|i| i % 7);
        let repeats = [3u16, 3, 3, 4, 4, 0, 0, 9, 1, 9, 2];
        let jumps = (0..60u16).map(|i| (i * 5 + i / 3) % 11);
        let too_many = 0..300u16;
        let sequences: Vec<Vec<u16>> = vec![
            turns.collect(),
            repeats.to_vec(),
            jumps.collect(),
            too_many.collect(),
        ];
        for sequence in sequences {
            let (mut hinted, mut searched) = (Vec::new(), std::collections::HashMap::new());
            let mut last = None;
            for &proposer in &sequence {
                let got = proposer_index(&mut hinted, proposer, last);
                assert_eq!(
                    got,
                    plain(&mut searched, proposer),
                    "{sequence:?} at {proposer}"
                );
                assert_eq!(hinted.len(), searched.len());
                last = got.or(last);
            }
        }
        // A stale hint past the proposers, or at another one, is only a hint.
        let mut proposers = vec![5u16, 6, 7];
        assert_eq!(proposer_index(&mut proposers, 6, Some(200)), Some(1));
        assert_eq!(proposer_index(&mut proposers, 5, Some(2)), Some(0));
        assert_eq!(proposer_index(&mut proposers, 8, Some(0)), Some(3));
    }
}
