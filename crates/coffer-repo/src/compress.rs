//! Per-blob zstd compression with a shortcut for incompressible data.
//!
//! Compressing random-looking data (media, archives, encrypted files) costs CPU for nothing, so
//! a blob larger than `SAMPLE` first has a sample compressed at level 1; if the sample does not
//! shrink by at least 3 %, the blob is stored as is. A blob is also stored as is when the full
//! compression saves less than 1/64 of its size.

use serde::{Deserialize, Serialize};

const SAMPLE: usize = 8 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Compression {
    None = 0,
    Zstd = 1,
}

impl Compression {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// A reusable compression context (one per worker thread).
pub(crate) struct Compressor {
    level: i32,
    full: zstd::bulk::Compressor<'static>,
    sample: zstd::bulk::Compressor<'static>,
}

impl Compressor {
    pub fn new(level: i32) -> Self {
        Compressor {
            level,
            full: zstd::bulk::Compressor::new(level).expect("zstd context"),
            sample: zstd::bulk::Compressor::new(1).expect("zstd context"),
        }
    }

    /// The compressed bytes, or `None` when storing `data` as is is better.
    pub fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if self.level == 0 || data.len() < 64 {
            return None;
        }
        if data.len() > 4 * SAMPLE {
            let mid = data.len() / 2;
            let sample = &data[mid - SAMPLE / 2..mid + SAMPLE / 2];
            let c = self.sample.compress(sample).ok()?;
            if c.len() * 100 > sample.len() * 97 {
                return None;
            }
        }
        let c = self.full.compress(data).ok()?;
        (c.len() + data.len() / 64 < data.len()).then_some(c)
    }
}

/// Decompress a blob whose raw length is known; any mismatch is damage, described by the
/// error (the caller names the object).
pub(crate) fn decompress(data: &[u8], raw_len: usize) -> std::result::Result<Vec<u8>, String> {
    thread_local! {
        // A decompression context per thread: creating one per blob is measurable.
        static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
    }
    let out = DCTX
        .with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(zstd::bulk::Decompressor::new()?);
            }
            d.as_mut().expect("just created").decompress(data, raw_len)
        })
        .map_err(|e| format!("cannot be decompressed: {e}"))?;
    if out.len() != raw_len {
        return Err(format!(
            "decompressed to {} bytes instead of {raw_len}",
            out.len()
        ));
    }
    Ok(out)
}
