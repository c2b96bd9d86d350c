//! Sealed archives: a byte stream (the canonical archive of a snapshot) encrypted for copies
//! that must stay encrypted where they are kept, and opened again with `coffer decrypt`.
//!
//! Format, version 1 (specified in docs/repository-format.md, "Sealed archives"):
//! - a 32-byte header: the magic `CFSEAL01` and a 24-byte random seed;
//! - the file key: `BLAKE3-keyed(BLAKE3-derive-key("coffer 2026 sealed archive v1", K), seed)`
//!   where `K` is the key material (the job repository key, as text);
//! - the data in chunks of 65,536 bytes, each sealed with AES-256-GCM (16-byte tag), nonce =
//!   chunk number (8 bytes, big-endian) ‖ final flag (4 bytes, big-endian 0 or 1), associated
//!   data = the header. The last chunk, and only it, has the final flag and holds fewer than
//!   65,536 bytes (possibly none), so a truncated, reordered or extended file never opens.

use std::io::{Read, Write};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

pub(crate) const MAGIC: &[u8; 8] = b"CFSEAL01";
const HEADER_LEN: usize = 32;
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SealedError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("this is not a sealed Coffer archive")]
    NotSealed,
    #[error("chunk {0} of the sealed archive is damaged, or the key is wrong")]
    Damaged(u64),
    #[error("the sealed archive is truncated")]
    Truncated,
}

/// The size of the sealed form of `len` bytes.
pub fn sealed_len(len: u64) -> u64 {
    HEADER_LEN as u64 + len + TAG as u64 * (len / CHUNK as u64 + 1)
}

fn file_key(material: &[u8], seed: &[u8]) -> LessSafeKey {
    let base = blake3::derive_key("coffer 2026 sealed archive v1", material);
    let k = blake3::keyed_hash(&base, seed);
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k.as_bytes()).expect("32-byte key"))
}

fn nonce(chunk: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&chunk.to_be_bytes());
    n[8..].copy_from_slice(&u32::from(last).to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// A `Write` that seals what it is given into `inner`; call [`Sealer::finish`] at the end.
pub struct Sealer<W: Write> {
    inner: W,
    key: LessSafeKey,
    header: [u8; HEADER_LEN],
    buf: Vec<u8>,
    chunk: u64,
}

impl<W: Write> std::fmt::Debug for Sealer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl<W: Write> Sealer<W> {
    /// Start a sealed stream with key material `material`; the header is written at once.
    pub fn new(mut inner: W, material: &[u8]) -> std::io::Result<Self> {
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        getrandom::fill(&mut header[8..])
            .expect("the operating system's random number generator failed");
        inner.write_all(&header)?;
        Ok(Sealer {
            key: file_key(material, &header[8..]),
            inner,
            header,
            buf: Vec::with_capacity(CHUNK + TAG),
            chunk: 0,
        })
    }

    fn emit(&mut self, last: bool) -> std::io::Result<()> {
        let mut data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + TAG));
        self.key
            .seal_in_place_append_tag(
                nonce(self.chunk, last),
                Aad::from(&self.header[..]),
                &mut data,
            )
            .expect("AES-GCM sealing cannot fail for in-range sizes");
        self.chunk += 1;
        self.inner.write_all(&data)
    }

    /// Seal the last chunk and return the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.emit(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.emit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Read up to `buf.len()` bytes, fewer only at the end of the input.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Open a sealed stream from `input` into `out`; returns the number of bytes written. Bytes
/// are written only once their chunk is authenticated, but a damaged chunk late in the stream
/// is found after the earlier ones were written: treat the output as valid only on success.
pub fn unseal(
    input: &mut dyn Read,
    out: &mut dyn Write,
    material: &[u8],
) -> Result<u64, SealedError> {
    let mut header = [0u8; HEADER_LEN];
    if read_full(input, &mut header)? < HEADER_LEN || &header[..8] != MAGIC {
        return Err(SealedError::NotSealed);
    }
    let key = file_key(material, &header[8..]);
    let mut written = 0u64;
    let mut chunk = 0u64;
    let mut buf = vec![0u8; CHUNK + TAG];
    loop {
        let n = read_full(input, &mut buf)?;
        let last = n < CHUNK + TAG;
        if last && n < TAG {
            return Err(SealedError::Truncated);
        }
        let mut data = buf[..n].to_vec();
        let plain = key
            .open_in_place(nonce(chunk, last), Aad::from(&header[..]), &mut data)
            .map_err(|_| SealedError::Damaged(chunk))?;
        out.write_all(plain)?;
        written += plain.len() as u64;
        chunk += 1;
        if last {
            return Ok(written);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(data: &[u8], key: &[u8]) -> Vec<u8> {
        let mut s = Sealer::new(Vec::new(), key).unwrap();
        s.write_all(data).unwrap();
        s.finish().unwrap()
    }

    #[test]
    fn round_trips_at_every_boundary_and_refuses_tampering() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let sealed = seal(&data, b"key");
            assert_eq!(sealed.len() as u64, sealed_len(len as u64), "{len}");
            let mut out = Vec::new();
            assert_eq!(
                unseal(&mut &sealed[..], &mut out, b"key").unwrap(),
                len as u64
            );
            assert_eq!(out, data);
            assert!(unseal(&mut &sealed[..], &mut Vec::new(), b"other key").is_err());
            if len > 0 {
                let mut bad = sealed.clone();
                bad[HEADER_LEN + len / 2] ^= 1;
                assert!(matches!(
                    unseal(&mut &bad[..], &mut Vec::new(), b"key"),
                    Err(SealedError::Damaged(_))
                ));
            }
            // Cut at the end of any chunk, or anywhere: never opens.
            for cut in [
                sealed.len() - 1,
                HEADER_LEN + (CHUNK + TAG).min(sealed.len() - HEADER_LEN - 1),
            ] {
                assert!(
                    unseal(&mut &sealed[..cut], &mut Vec::new(), b"key").is_err(),
                    "{len} cut {cut}"
                );
            }
            let mut longer = sealed.clone();
            longer.extend_from_slice(&[0; 16]);
            assert!(
                unseal(&mut &longer[..], &mut Vec::new(), b"key").is_err(),
                "{len} extended"
            );
        }
        assert!(matches!(
            unseal(&mut &b"plain tar"[..], &mut Vec::new(), b"key"),
            Err(SealedError::NotSealed)
        ));
    }
}
