//! A SHA-256 whose internal state can be saved and resumed.
//!
//! The archive checksum of a snapshot is the SHA-256 of its canonical tar stream. Because tar
//! entries are 512-byte aligned, the state at every entry boundary is a whole number of 64-byte
//! blocks: `(length, [u32; 8])`. Saving those states ("checkpoints") lets the next backup of the
//! same data resume hashing at the first entry that changed instead of re-reading everything.
//! The compression function is the `sha2` crate's (SHA-NI accelerated); only buffering and
//! padding live here.

use sha2::block_api::compress256;

const INITIAL: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// A block-aligned SHA-256 state: enough to resume hashing at `len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Midstate {
    pub len: u64,
    pub state: [u32; 8],
}

#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    len: u64,
    buf: [u8; 64],
    buf_len: usize,
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    pub fn new() -> Self {
        Sha256 {
            state: INITIAL,
            len: 0,
            buf: [0; 64],
            buf_len: 0,
        }
    }

    pub fn resume(m: Midstate) -> Self {
        debug_assert_eq!(m.len % 64, 0);
        Sha256 {
            state: m.state,
            len: m.len,
            buf: [0; 64],
            buf_len: 0,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The state, if it is block-aligned (always true at tar entry boundaries).
    pub fn midstate(&self) -> Option<Midstate> {
        (self.buf_len == 0).then_some(Midstate {
            len: self.len,
            state: self.state,
        })
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.buf_len > 0 {
            let n = (64 - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + n].copy_from_slice(&data[..n]);
            self.buf_len += n;
            data = &data[n..];
            if self.buf_len < 64 {
                return;
            }
            compress256(&mut self.state, std::slice::from_ref(&self.buf));
            self.buf_len = 0;
        }
        let (blocks, rest) = data.as_chunks::<64>();
        if !blocks.is_empty() {
            compress256(&mut self.state, blocks);
        }
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    /// Hash `n` zero bytes without allocating them all.
    pub fn update_zeros(&mut self, mut n: u64) {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            self.update(&ZEROS[..k]);
            n -= k as u64;
        }
    }

    pub fn finalize(mut self) -> [u8; 32] {
        let bit_len = self.len.wrapping_mul(8);
        let mut pad = [0u8; 72];
        pad[0] = 0x80;
        let pad_len = if self.buf_len < 56 {
            56 - self.buf_len
        } else {
            120 - self.buf_len
        };
        pad[pad_len..pad_len + 8].copy_from_slice(&bit_len.to_be_bytes());
        self.update(&pad[..pad_len + 8]);
        debug_assert_eq!(self.buf_len, 0);
        let mut out = [0u8; 32];
        for (i, w) in self.state.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    pub fn finalize_hex(self) -> String {
        hex::encode(self.finalize())
    }
}

impl std::io::Write for Sha256 {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn matches_reference_for_all_small_lengths_and_splits() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..data.len() {
            let want = hex::encode(sha2::Sha256::digest(&data[..len]));
            for split in [0, 1, 63, 64, 65, len / 2] {
                let split = split.min(len);
                let mut h = Sha256::new();
                h.update(&data[..split]);
                h.update(&data[split..len]);
                assert_eq!(h.finalize_hex(), want, "len {len} split {split}");
            }
        }
    }

    #[test]
    fn resumes_from_a_midstate() {
        let data = vec![0xabu8; 4096 + 77];
        let mut h = Sha256::new();
        h.update(&data[..1024]);
        let m = h.midstate().unwrap();
        let mut r = Sha256::resume(m);
        r.update(&data[1024..]);
        assert_eq!(r.finalize_hex(), hex::encode(sha2::Sha256::digest(&data)));
        let mut z = Sha256::new();
        z.update_zeros(200_000);
        assert_eq!(
            z.finalize_hex(),
            hex::encode(sha2::Sha256::digest(vec![0u8; 200_000]))
        );
    }
}
