//! `expand_message_xmd` with SHA-512 (RFC 9380, section 5.3.1).
//!
//! The expander turns a message and a domain separation tag (DST) into
//! uniformly distributed bytes. EllipticSum always asks for 64 bytes, which
//! is exactly one SHA-512 output, so the hot path ([`XmdSha512::finish_64`])
//! is two hash computations; [`expand_message_xmd`] is the general form used
//! by the known-answer tests and offered for other protocol users.
//!
//! `Z_pad` is 128 zero bytes, exactly one SHA-512 block, so the hash state
//! after it is the same for every message; it is computed once per DST.
//! Messages are given as a list of parts (a record's length fields, key and
//! value) and are never concatenated into one heap buffer:
//!
//! - short messages (up to `FAST_BLOCKS` blocks after `Z_pad`, padding
//!   included) have their parts and padding laid out in those blocks on the
//!   stack, as SHA-512's own block buffer would, and are compressed in one
//!   call; `b_1`'s input is a per-DST template with only `b_0` filled in;
//! - longer messages are streamed through a [`Sha512`] state cloned from the
//!   one after `Z_pad`, so a 1 MiB value is read once and never copied.

use sha2::digest::consts::U128;
use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha512, compress512};

use crate::Error;

/// SHA-512's output size, `b_in_bytes` in RFC 9380.
const B_IN_BYTES: usize = 64;

/// SHA-512's input block size, `s_in_bytes` in RFC 9380: the length of `Z_pad`.
const S_IN_BYTES: usize = 128;

/// One SHA-512 input block.
type Block = GenericArray<u8, U128>;

/// Messages whose `b_0` input after `Z_pad`, padding included, fits in this
/// many blocks take the one-shot path; longer ones are streamed.
const FAST_BLOCKS: usize = 4;

/// Blocks of `b_1`'s padded input `b_0 || I2OSP(1, 1) || DST_prime || padding`:
/// at most 64 + 1 + 256 + 17 bytes.
const B1_BLOCKS: usize = 3;

/// SHA-512's minimum padding: a 0x80 byte and the bit length in 16 bytes.
const PAD_MIN: usize = 1 + 16;

/// The SHA-512 initial hash value (FIPS 180-4, section 5.3.5).
const SHA512_IV: [u64; 8] = [
    0x6a09_e667_f3bc_c908,
    0xbb67_ae85_84ca_a73b,
    0x3c6e_f372_fe94_f82b,
    0xa54f_f53a_5f1d_36f1,
    0x510e_527f_ade6_82d1,
    0x9b05_688c_2b3e_6c1f,
    0x1f83_d9ab_fb41_bd6b,
    0x5be0_cd19_137e_2179,
];

/// The longest DST used as is; longer ones are hashed first (RFC 9380, 5.3.3).
pub const MAX_DST_LEN: usize = 255;

/// The prefix hashed before an oversize DST (RFC 9380, section 5.3.3).
pub const OVERSIZE_DST_SALT: &[u8] = b"H2C-OVERSIZE-DST-";

/// The most bytes [`expand_message_xmd`] can produce with SHA-512:
/// `255 * b_in_bytes` (RFC 9380 caps `ell` at 255).
pub const MAX_EXPAND_LEN: usize = 255 * B_IN_BYTES;

/// Fills `out` with `expand_message_xmd(msg, dst, out.len())` using SHA-512,
/// as RFC 9380 section 5.3.1 defines it.
///
/// A DST longer than 255 bytes is first reduced to
/// `SHA-512("H2C-OVERSIZE-DST-" || dst)` (RFC 9380, section 5.3.3).
///
/// # Errors
///
/// [`Error::EmptyDst`] if `dst` is empty (RFC 9380 requires a non-empty tag);
/// [`Error::InvalidOutputLength`] if `out` is empty or longer than
/// [`MAX_EXPAND_LEN`] bytes.
///
/// # Example
///
/// ```
/// use headway_ellipticsum::expand_message_xmd;
///
/// let mut out = [0u8; 32];
/// expand_message_xmd(b"", b"QUUX-V01-CS02-with-expander-SHA512-256", &mut out)?;
/// assert_eq!(out[..4], [0x6b, 0x9a, 0x73, 0x12]);
/// # Ok::<(), headway_ellipticsum::Error>(())
/// ```
pub fn expand_message_xmd(msg: &[u8], dst: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let xmd = XmdSha512::new(dst)?;
    let mut state = xmd.begin();
    state.update(msg);
    xmd.finish(state, out)
}

/// A DST prepared for `expand_message_xmd` with SHA-512: `DST_prime` and the
/// hash state after `Z_pad`, both computed once.
#[derive(Clone)]
pub(crate) struct XmdSha512 {
    /// SHA-512 after absorbing `Z_pad`; cloned to start every streamed message.
    after_z_pad: Sha512,
    /// The raw SHA-512 chaining value after `Z_pad`, for the one-shot path.
    z_pad_state: [u64; 8],
    /// `b_1`'s padded input with zeros where `b_0` goes.
    b1_template: [Block; B1_BLOCKS],
    /// Blocks of `b1_template` in use.
    b1_blocks: usize,
    /// `I2OSP(64, 2) || I2OSP(0, 1) || DST_prime`, where
    /// `DST_prime = DST || I2OSP(len(DST), 1)`: everything `b_0` absorbs after
    /// the message when 64 bytes are requested. Only `b0_tail_len` bytes are used.
    b0_tail: [u8; 3 + MAX_DST_LEN + 1],
    /// Used length of `b0_tail`.
    b0_tail_len: usize,
}

impl XmdSha512 {
    /// Prepares `dst`, hashing it first when it is longer than 255 bytes.
    pub(crate) fn new(dst: &[u8]) -> Result<Self, Error> {
        if dst.is_empty() {
            return Err(Error::EmptyDst);
        }
        Ok(Self::prepare(dst))
    }

    /// [`Self::new`] for a DST the caller knows is not empty (a constant).
    pub(crate) fn prepare(dst: &[u8]) -> Self {
        let hashed;
        let dst = if dst.len() > MAX_DST_LEN {
            hashed = Sha512::new()
                .chain_update(OVERSIZE_DST_SALT)
                .chain_update(dst)
                .finalize();
            hashed.as_slice()
        } else {
            dst
        };
        // At most 255 bytes now (64 if it was hashed), so this never saturates.
        let dst_len = u8::try_from(dst.len()).unwrap_or(u8::MAX);

        let mut b0_tail = [0u8; 3 + MAX_DST_LEN + 1];
        // I2OSP(64, 2) || I2OSP(0, 1): the requested length and b_0's counter.
        b0_tail[..3].copy_from_slice(&[0x00, 0x40, 0x00]);
        b0_tail[3..3 + dst.len()].copy_from_slice(dst);
        b0_tail[3 + dst.len()] = dst_len;
        let b0_tail_len = 3 + dst.len() + 1;

        let mut after_z_pad = Sha512::new();
        after_z_pad.update([0u8; S_IN_BYTES]);
        let mut z_pad_state = SHA512_IV;
        compress512(&mut z_pad_state, &[Block::default()]);

        // b_1 = SHA-512(b_0 || I2OSP(1, 1) || DST_prime): all but b_0 is fixed.
        let dst_prime = &b0_tail[3..b0_tail_len];
        let b1_len = B_IN_BYTES + 1 + dst_prime.len();
        let b1_blocks = (b1_len + PAD_MIN).div_ceil(S_IN_BYTES);
        let mut b1_template = [Block::default(); B1_BLOCKS];
        let mut at = write_blocks(&mut b1_template, B_IN_BYTES, &[1u8]);
        at = write_blocks(&mut b1_template, at, dst_prime);
        write_padding(&mut b1_template, at, b1_len, b1_blocks);

        Self {
            after_z_pad,
            z_pad_state,
            b1_template,
            b1_blocks,
            b0_tail,
            b0_tail_len,
        }
    }

    /// `DST_prime = DST || I2OSP(len(DST), 1)`.
    fn dst_prime(&self) -> &[u8] {
        &self.b0_tail[3..self.b0_tail_len]
    }

    /// A hash state that has absorbed `Z_pad`; feed it the message next.
    #[inline]
    pub(crate) fn begin(&self) -> Sha512 {
        self.after_z_pad.clone()
    }

    /// `expand_message_xmd(parts concatenated, DST, 64)`, without
    /// concatenating: the one-shot block path for short messages, streaming
    /// otherwise.
    #[inline]
    pub(crate) fn expand_64(&self, parts: &[&[u8]]) -> [u8; 64] {
        let tail = &self.b0_tail[..self.b0_tail_len];
        let body = parts.iter().map(|part| part.len()).sum::<usize>() + tail.len();
        let blocks_needed = (body + PAD_MIN).div_ceil(S_IN_BYTES);
        if blocks_needed > FAST_BLOCKS {
            let mut state = self.begin();
            for part in parts {
                state.update(part);
            }
            return self.finish_64(state);
        }
        let mut blocks = [Block::default(); FAST_BLOCKS];
        let mut at = 0;
        for part in parts {
            at = write_blocks(&mut blocks, at, part);
        }
        at = write_blocks(&mut blocks, at, tail);
        // The hashed message includes the Z_pad block, already compressed.
        write_padding(&mut blocks, at, S_IN_BYTES + body, blocks_needed);
        let mut state = self.z_pad_state;
        compress512(&mut state, &blocks[..blocks_needed]);
        self.b1(&state_bytes(&state))
    }

    /// Finishes a 64-byte expansion of the message absorbed by `state` (which
    /// came from [`Self::begin`]): `b_1` is the whole output.
    #[inline]
    pub(crate) fn finish_64(&self, mut state: Sha512) -> [u8; 64] {
        state.update(&self.b0_tail[..self.b0_tail_len]);
        let b0: [u8; B_IN_BYTES] = state.finalize().into();
        self.b1(&b0)
    }

    /// `b_1 = SHA-512(b_0 || I2OSP(1, 1) || DST_prime)`, from the template.
    #[inline]
    fn b1(&self, b0: &[u8; B_IN_BYTES]) -> [u8; 64] {
        let mut blocks = self.b1_template;
        blocks[0][..B_IN_BYTES].copy_from_slice(b0);
        let mut state = SHA512_IV;
        compress512(&mut state, &blocks[..self.b1_blocks]);
        state_bytes(&state)
    }

    /// Finishes an expansion of any valid length into `out`.
    pub(crate) fn finish(&self, mut state: Sha512, out: &mut [u8]) -> Result<(), Error> {
        let len = out.len();
        if len == 0 || len > MAX_EXPAND_LEN {
            return Err(Error::InvalidOutputLength { requested: len });
        }
        let len_bytes = u16::try_from(len)
            .map_err(|_| Error::InvalidOutputLength { requested: len })?
            .to_be_bytes();
        state.update(len_bytes);
        state.update([0u8]);
        state.update(self.dst_prime());
        let b0: [u8; B_IN_BYTES] = state.finalize().into();

        let mut previous = [0u8; B_IN_BYTES];
        for (index, chunk) in out.chunks_mut(B_IN_BYTES).enumerate() {
            // b_1 = H(b_0 || 1 || DST'); b_i = H((b_0 XOR b_(i-1)) || i || DST').
            let mut mixed = b0;
            for (m, p) in mixed.iter_mut().zip(previous.iter()) {
                *m ^= p;
            }
            let counter = u8::try_from(index + 1)
                .map_err(|_| Error::InvalidOutputLength { requested: len })?;
            let block: [u8; B_IN_BYTES] = Sha512::new()
                .chain_update(mixed)
                .chain_update([counter])
                .chain_update(self.dst_prime())
                .finalize()
                .into();
            chunk.copy_from_slice(&block[..chunk.len()]);
            previous = block;
        }
        Ok(())
    }
}

/// Copies `data` into the blocks from byte offset `at` and returns the offset
/// after it. Callers size the blocks first; bytes past the end are dropped.
#[inline]
fn write_blocks(blocks: &mut [Block], mut at: usize, mut data: &[u8]) -> usize {
    while !data.is_empty() {
        let Some(block) = blocks.get_mut(at / S_IN_BYTES) else {
            break;
        };
        let offset = at % S_IN_BYTES;
        let n = (S_IN_BYTES - offset).min(data.len());
        block[offset..offset + n].copy_from_slice(&data[..n]);
        at += n;
        data = &data[n..];
    }
    at
}

/// Writes SHA-512 padding into zeroed blocks after a message ending at
/// offset `at`: 0x80, then the length in bits of everything hashed
/// (`hashed_len` bytes) at the end of block `block_count - 1`.
#[inline]
fn write_padding(blocks: &mut [Block], at: usize, hashed_len: usize, block_count: usize) {
    write_blocks(blocks, at, &[0x80]);
    let bits = (hashed_len as u128).wrapping_mul(8);
    write_blocks(blocks, block_count * S_IN_BYTES - 16, &bits.to_be_bytes());
}

/// A SHA-512 chaining value as the 64-byte digest.
#[inline]
fn state_bytes(state: &[u64; 8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (chunk, word) in out.chunks_exact_mut(8).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9380 appendix K.3: expand_message_xmd(SHA-512).
    const K3_DST: &[u8] = b"QUUX-V01-CS02-with-expander-SHA512-256";

    fn k3_messages() -> [Vec<u8>; 5] {
        let mut q128 = b"q128_".to_vec();
        q128.extend(std::iter::repeat_n(b'q', 128));
        let mut a512 = b"a512_".to_vec();
        a512.extend(std::iter::repeat_n(b'a', 512));
        [
            b"".to_vec(),
            b"abc".to_vec(),
            b"abcdef0123456789".to_vec(),
            q128,
            a512,
        ]
    }

    fn expand(msg: &[u8], dst: &[u8], len: usize) -> String {
        let mut out = vec![0u8; len];
        expand_message_xmd(msg, dst, &mut out).unwrap();
        hex::encode(out)
    }

    #[test]
    fn rfc9380_k3_32_bytes() {
        let expected = [
            "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba",
            "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc",
            "087e45a86e2939ee8b91100af1583c4938e0f5fc6c9db4b107b83346bc967f58",
            "7336234ee9983902440f6bc35b348352013becd88938d2afec44311caf8356b3",
            "57b5f7e766d5be68a6bfe1768e3c2b7f1228b3e4b3134956dd73a59b954c66f4",
        ];
        for (msg, want) in k3_messages().iter().zip(expected) {
            assert_eq!(expand(msg, K3_DST, 0x20), want);
        }
    }

    #[test]
    fn rfc9380_k3_128_bytes() {
        let expected = [
            "41b037d1734a5f8df225dd8c7de38f851efdb45c372887be655212d07251b921\
             b052b62eaed99b46f72f2ef4cc96bfaf254ebbbec091e1a3b9e4fb5e5b619d2e\
             0c5414800a1d882b62bb5cd1778f098b8eb6cb399d5d9d18f5d5842cf5d13d7e\
             b00a7cff859b605da678b318bd0e65ebff70bec88c753b159a805d2c89c55961",
            "7f1dddd13c08b543f2e2037b14cefb255b44c83cc397c1786d975653e36a6b11\
             bdd7732d8b38adb4a0edc26a0cef4bb45217135456e58fbca1703cd6032cb134\
             7ee720b87972d63fbf232587043ed2901bce7f22610c0419751c065922b48843\
             1851041310ad659e4b23520e1772ab29dcdeb2002222a363f0c2b1c972b3efe1",
            "3f721f208e6199fe903545abc26c837ce59ac6fa45733f1baaf0222f8b7acb04\
             24814fcb5eecf6c1d38f06e9d0a6ccfbf85ae612ab8735dfdf9ce84c372a77c8\
             f9e1c1e952c3a61b7567dd0693016af51d2745822663d0c2367e3f4f0bed827f\
             eecc2aaf98c949b5ed0d35c3f1023d64ad1407924288d366ea159f46287e61ac",
            "b799b045a58c8d2b4334cf54b78260b45eec544f9f2fb5bd12fb603eaee70db7\
             317bf807c406e26373922b7b8920fa29142703dd52bdf280084fb7ef69da78af\
             df80b3586395b433dc66cde048a258e476a561e9deba7060af40adf30c64249c\
             a7ddea79806ee5beb9a1422949471d267b21bc88e688e4014087a0b592b695ed",
            "05b0bfef265dcee87654372777b7c44177e2ae4c13a27f103340d9cd11c86cb2\
             426ffcad5bd964080c2aee97f03be1ca18e30a1f14e27bc11ebbd650f305269c\
             c9fb1db08bf90bfc79b42a952b46daf810359e7bc36452684784a64952c343c5\
             2e5124cd1f71d474d5197fefc571a92929c9084ffe1112cf5eea5192ebff330b",
        ];
        for (msg, want) in k3_messages().iter().zip(expected) {
            assert_eq!(expand(msg, K3_DST, 0x80), want);
        }
    }

    #[test]
    fn hot_paths_match_general_path() {
        // Every message length up to 700 bytes, so the one-shot and the
        // streaming path meet every padding boundary, with DSTs of lengths
        // that make b_1 one, two or three blocks long.
        let msg: Vec<u8> = (0..700u32).map(|i| (i * 7 + 3) as u8).collect();
        for dst in [
            &b"x"[..],
            K3_DST,
            &[5u8; 45][..],
            &[6u8; 46][..],
            &[7u8; 255][..],
            &[9u8; 256][..],
        ] {
            let xmd = XmdSha512::new(dst).unwrap();
            for len in 0..=msg.len() {
                let msg = &msg[..len];
                let mut general = [0u8; 64];
                expand_message_xmd(msg, dst, &mut general).unwrap();
                let mut state = xmd.begin();
                state.update(msg);
                assert_eq!(xmd.finish_64(state), general, "streamed, {len} bytes");
                assert_eq!(xmd.expand_64(&[msg]), general, "one shot, {len} bytes");
                let (a, b) = msg.split_at(len / 3);
                assert_eq!(xmd.expand_64(&[a, b, &[]]), general, "parts, {len} bytes");
            }
        }
    }

    #[test]
    fn raw_compression_is_sha512() {
        // The IV and the padding of the one-shot path give plain SHA-512.
        for len in [0usize, 1, 111, 112, 127, 128, 239, 240, 300] {
            let msg = vec![0xa7u8; len];
            let blocks_needed = (len + PAD_MIN).div_ceil(S_IN_BYTES);
            let mut blocks = [Block::default(); FAST_BLOCKS];
            let at = write_blocks(&mut blocks, 0, &msg);
            write_padding(&mut blocks, at, len, blocks_needed);
            let mut state = SHA512_IV;
            compress512(&mut state, &blocks[..blocks_needed]);
            assert_eq!(state_bytes(&state)[..], Sha512::digest(&msg)[..], "{len}");
        }
    }

    #[test]
    fn oversize_dst_is_replaced_by_its_salted_hash() {
        // RFC 9380 5.3.3: a DST over 255 bytes behaves exactly like the
        // 64-byte tag SHA-512("H2C-OVERSIZE-DST-" || DST).
        for long in [vec![0x31u8; 256], vec![0xa5u8; 4096]] {
            let short = Sha512::new()
                .chain_update(OVERSIZE_DST_SALT)
                .chain_update(&long)
                .finalize();
            for len in [32, 64, 128, 200] {
                assert_eq!(expand(b"abc", &long, len), expand(b"abc", &short, len));
            }
        }
        // A 255-byte DST is used as is, not hashed.
        let edge = [0x42u8; 255];
        let hashed = Sha512::new()
            .chain_update(OVERSIZE_DST_SALT)
            .chain_update(edge)
            .finalize();
        assert_ne!(expand(b"abc", &edge, 64), expand(b"abc", &hashed, 64));
    }

    #[test]
    fn output_length_limits() {
        let mut empty = [0u8; 0];
        assert_eq!(
            expand_message_xmd(b"", K3_DST, &mut empty),
            Err(Error::InvalidOutputLength { requested: 0 })
        );
        let mut max = vec![0u8; MAX_EXPAND_LEN];
        assert!(expand_message_xmd(b"", K3_DST, &mut max).is_ok());
        let mut over = vec![0u8; MAX_EXPAND_LEN + 1];
        assert_eq!(
            expand_message_xmd(b"", K3_DST, &mut over),
            Err(Error::InvalidOutputLength {
                requested: MAX_EXPAND_LEN + 1
            })
        );
        // Shorter outputs are prefixes of longer ones only if the length is
        // bound into b_0; it is, so they differ.
        assert_ne!(expand(b"abc", K3_DST, 32), expand(b"abc", K3_DST, 64)[..64]);
    }

    #[test]
    fn empty_dst_is_rejected() {
        let mut out = [0u8; 64];
        assert_eq!(
            expand_message_xmd(b"abc", b"", &mut out),
            Err(Error::EmptyDst)
        );
    }
}
