//! A small PNG encoder: 8-bit indexed colour, one zlib stream compressed
//! with fixed-Huffman deflate using only run matches (distance 1, or the
//! row above), which is all a plot of flat colours needs. CRC-32 and
//! Adler-32 are computed here; nothing comes from system libraries.

/// Encodes a `width × height` image of palette indices (row-major) with `palette` (RGB).
pub fn encode_indexed(width: u32, height: u32, palette: &[[u8; 3]], pixels: &[u8]) -> Vec<u8> {
    assert_eq!(
        pixels.len(),
        width as usize * height as usize,
        "pixel count"
    );
    assert!(!palette.is_empty() && palette.len() <= 256, "palette size");
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    // Bit depth 8, colour type 3 (indexed), deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 3, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let plte: Vec<u8> = palette.iter().flatten().copied().collect();
    chunk(&mut out, b"PLTE", &plte);
    // Every scanline gets filter type 0 (none).
    let row = width as usize;
    let mut raw = Vec::with_capacity((row + 1) * height as usize);
    for line in pixels.chunks(row) {
        raw.push(0);
        raw.extend_from_slice(line);
    }
    chunk(&mut out, b"IDAT", &zlib(&raw, row + 1));
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(
        &u32::try_from(data.len())
            .expect("chunk under 4 GiB")
            .to_be_bytes(),
    );
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// CRC-32 (ISO-HDLC, polynomial 0xEDB88320), as PNG chunks use.
pub fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (n, entry) in table.iter_mut().enumerate() {
        let mut c = n as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *entry = c;
    }
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc ^ 0xFFFF_FFFF
}

/// Adler-32, the zlib trailer.
pub fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65_521;
        b %= 65_521;
    }
    (b << 16) | a
}

/// A zlib stream of one fixed-Huffman deflate block. Matches are runs:
/// distance 1 (repeat the previous byte) or `stride` (repeat the row above).
fn zlib(data: &[u8], stride: usize) -> Vec<u8> {
    let mut bits = BitWriter::default();
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE = 01, fixed Huffman
    let mut i = 0;
    while i < data.len() {
        let run = |dist: usize| {
            if i < dist {
                return 0;
            }
            let mut n = 0;
            while n < 258 && i + n < data.len() && data[i + n] == data[i + n - dist] {
                n += 1;
            }
            n
        };
        let (len, dist) = [(run(stride), stride), (run(1), 1)]
            .into_iter()
            .max_by_key(|&(n, _)| n)
            .unwrap_or((0, 1));
        if len >= 3 {
            bits.length(len);
            bits.distance(dist);
            i += len;
        } else {
            bits.literal(u16::from(data[i]));
            i += 1;
        }
    }
    bits.literal(256); // end of block
    let mut out = vec![0x78, 0x01];
    out.extend_from_slice(&bits.finish());
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    /// Appends `count` bits of `value`, least significant first (deflate's order for data).
    fn put(&mut self, value: u32, count: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push((self.acc & 0xFF) as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// Appends a Huffman code, most significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        let reversed = code.reverse_bits() >> (32 - len);
        self.put(reversed, len);
    }

    /// A literal/length symbol in the fixed code.
    fn literal(&mut self, sym: u16) {
        let sym = u32::from(sym);
        match sym {
            0..=143 => self.code(0x30 + sym, 8),
            144..=255 => self.code(0x190 + sym - 144, 9),
            256..=279 => self.code(sym - 256, 7),
            _ => self.code(0xC0 + sym - 280, 8),
        }
    }

    fn length(&mut self, len: usize) {
        let len = u16::try_from(len).expect("match length <= 258");
        let i = LENGTH_BASE
            .iter()
            .rposition(|&b| b <= len)
            .expect("length >= 3");
        self.literal(257 + i as u16);
        self.put(u32::from(len - LENGTH_BASE[i]), u32::from(LENGTH_EXTRA[i]));
    }

    fn distance(&mut self, dist: usize) {
        let dist = u16::try_from(dist).expect("distance <= 32768");
        let i = DIST_BASE
            .iter()
            .rposition(|&b| b <= dist)
            .expect("distance >= 1");
        self.code(i as u32, 5);
        self.put(u32::from(dist - DIST_BASE[i]), u32::from(DIST_EXTRA[i]));
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push((self.acc & 0xFF) as u8);
        }
        self.out
    }
}
