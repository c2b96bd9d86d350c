//! Pack files: many blobs in one object, each blob individually compressed and encrypted, with a
//! trailer that lists them so the index can always be rebuilt from the packs alone.
//!
//! ```text
//! "CFPK" | version=1 | flags (bit 0: encrypted) | 0 0 | seed[24] (encrypted only)
//! blob 0 | blob 1 | ...            each: AES-256-GCM(pack key, nonce = offset, aad = kind||id)
//! trailer                          sealed with nonce ff..ff
//! trailer length: u32 LE | "CFPE"
//! ```
//! A pack's name is the BLAKE3 of all its bytes.

use serde::{Deserialize, Serialize};

use crate::compress::{self, Compression};
use crate::crypto::{self, ObjectKey, SEED_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::wire;

const MAGIC: &[u8; 4] = b"CFPK";
const END_MAGIC: &[u8; 4] = b"CFPE";
const ENTRY_LEN: usize = 46;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum BlobKind {
    /// File or stream content.
    Data = 0,
    /// A directory listing (tree) or other snapshot metadata.
    Tree = 1,
}

impl BlobKind {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            _ => None,
        }
    }
}

/// Where one blob sits in its pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobEntry {
    pub kind: BlobKind,
    pub compression: Compression,
    pub id: Id,
    pub offset: u32,
    /// Stored length (after compression and encryption).
    pub length: u32,
    /// Length of the plaintext.
    pub raw_length: u32,
}

impl BlobEntry {
    pub(crate) fn encode(&self, w: &mut wire::Writer) {
        w.u8(self.kind as u8);
        w.u8(self.compression as u8);
        w.id(&self.id);
        w.u32(self.offset);
        w.u32(self.length);
        w.u32(self.raw_length);
    }

    pub(crate) fn decode(r: &mut wire::Reader) -> Option<Self> {
        Some(BlobEntry {
            kind: BlobKind::from_u8(r.u8()?)?,
            compression: Compression::from_u8(r.u8()?)?,
            id: r.id()?,
            offset: r.u32()?,
            length: r.u32()?,
            raw_length: r.u32()?,
        })
    }

    pub(crate) fn aad(&self) -> [u8; 33] {
        let mut a = [0u8; 33];
        a[0] = self.kind as u8;
        a[1..].copy_from_slice(&self.id.0);
        a
    }
}

/// The public per-pack value needed to decrypt its blobs (all zero in plain repositories).
pub type Seed = [u8; SEED_LEN];

/// A pack being assembled in memory.
pub(crate) struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<BlobEntry>,
    key: Option<ObjectKey>,
    seed: Seed,
}

/// A complete pack, ready to upload.
pub(crate) struct FinishedPack {
    pub id: Id,
    pub seed: Seed,
    pub data: Vec<u8>,
    pub entries: Vec<BlobEntry>,
}

impl PackBuilder {
    pub fn new(repo: &Repository, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 64 * 1024);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&[1, 0, 0, 0]);
        let (key, seed) = match repo.keys() {
            Some(keys) => {
                buf[5] = 1;
                let seed = Repository::new_seed();
                buf.extend_from_slice(&seed);
                (Some(keys.object_key(&seed)), seed)
            }
            None => (None, [0; SEED_LEN]),
        };
        PackBuilder {
            buf,
            entries: vec![],
            key,
            seed,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Append a blob whose bytes are already compressed (or not); encrypts them here because the
    /// nonce is the blob's offset in this pack.
    pub fn add(
        &mut self,
        kind: BlobKind,
        id: Id,
        raw_length: usize,
        compression: Compression,
        mut data: Vec<u8>,
    ) {
        let offset = self.buf.len();
        let mut entry = BlobEntry {
            kind,
            compression,
            id,
            offset: u32::try_from(offset).expect("packs stay below 4 GiB"),
            length: 0,
            raw_length: u32::try_from(raw_length).expect("blobs stay below 4 GiB"),
        };
        if let Some(key) = &self.key {
            key.seal(
                crypto::counter_nonce(offset as u64),
                &entry.aad(),
                &mut data,
            );
        }
        entry.length = u32::try_from(data.len()).expect("blobs stay below 4 GiB");
        self.buf.extend_from_slice(&data);
        self.entries.push(entry);
    }

    pub fn finish(mut self) -> FinishedPack {
        let mut w = wire::Writer::with_capacity(4 + self.entries.len() * ENTRY_LEN + TAG_LEN);
        w.u32(self.entries.len() as u32);
        for e in &self.entries {
            e.encode(&mut w);
        }
        let mut trailer = w.buf;
        if let Some(key) = &self.key {
            key.seal(crypto::final_nonce(), &self.buf[..8], &mut trailer);
        }
        self.buf.extend_from_slice(&trailer);
        self.buf
            .extend_from_slice(&(trailer.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(END_MAGIC);
        FinishedPack {
            id: Id::of_object(&self.buf),
            seed: self.seed,
            data: self.buf,
            entries: self.entries,
        }
    }
}

/// Decode one stored blob (as read from its pack) back to its plaintext, checking everything:
/// authentication, decompression, and that the plaintext hashes to the blob's id.
pub(crate) fn decode_blob(
    repo: &Repository,
    pack: &Id,
    seed: &Seed,
    e: &BlobEntry,
    mut stored: Vec<u8>,
) -> Result<Vec<u8>> {
    Ok(match open_blob(repo, pack, seed, e, &mut stored)? {
        Opened::Decompressed(plain) => plain,
        Opened::InPlace(len) => {
            stored.truncate(len);
            stored
        }
    })
}

/// A blob opened where it lay.
pub(crate) enum Opened {
    /// The plaintext is the first `n` bytes of the stored bytes.
    InPlace(usize),
    /// The blob was compressed: its plaintext.
    Decompressed(Vec<u8>),
}

/// `decode_blob` in place: `stored` is authenticated and decrypted where it lies, and checked.
pub(crate) fn open_blob(
    repo: &Repository,
    pack: &Id,
    seed: &Seed,
    e: &BlobEntry,
    stored: &mut [u8],
) -> Result<Opened> {
    // The pack is what a user can act on; the blob is named in the detail.
    let damaged = |detail: &str| {
        Error::damaged(
            crate::repo::pack_name(pack),
            format!("blob {}: {detail}", e.id.short()),
        )
    };
    if stored.len() != e.length as usize {
        return Err(damaged(
            "the pack is shorter than the index says (truncated)",
        ));
    }
    let stored = match repo.keys() {
        Some(keys) => {
            let key = keys.object_key(seed);
            match key.open_in_place(crypto::counter_nonce(e.offset as u64), &e.aad(), stored) {
                Some(plain) => plain,
                None => return Err(damaged("it fails authentication (modified or corrupted)")),
            }
        }
        None => stored,
    };
    let decompressed = match e.compression {
        Compression::None => None,
        Compression::Zstd => Some(
            compress::decompress(stored, e.raw_length as usize)
                .map_err(|detail| damaged(&detail))?,
        ),
    };
    let plain = decompressed.as_deref().unwrap_or(stored);
    if plain.len() != e.raw_length as usize || repo.blob_id(plain) != e.id {
        return Err(damaged("its content does not hash to its id"));
    }
    Ok(match decompressed {
        Some(plain) => Opened::Decompressed(plain),
        None => Opened::InPlace(stored.len()),
    })
}

/// Parse a whole pack read from storage: check its name, header and trailer.
pub(crate) fn parse_pack(
    repo: &Repository,
    id: &Id,
    data: &[u8],
) -> Result<(Seed, Vec<BlobEntry>)> {
    let name = crate::repo::pack_name(id);
    if Id::of_object(data) != *id {
        return Err(Error::damaged(
            &name,
            "its content does not match its name (bytes changed or truncated)",
        ));
    }
    parse_pack_unchecked(repo, &name, data)
}

/// Parse header and trailer without checking the name hash (used to salvage data).
pub(crate) fn parse_pack_unchecked(
    repo: &Repository,
    name: &str,
    data: &[u8],
) -> Result<(Seed, Vec<BlobEntry>)> {
    let head_len = header_len(repo);
    if data.len() < head_len + 8 {
        return Err(Error::damaged(
            name,
            "it is not a complete pack (too short)",
        ));
    }
    let footer: [u8; 8] = data[data.len() - 8..].try_into().expect("8 bytes");
    let tlen = trailer_len(name, &footer)?;
    let tstart = (data.len() - 8)
        .checked_sub(tlen)
        .ok_or_else(|| Error::damaged(name, "its trailer length is impossible"))?;
    parse_trailer(
        repo,
        name,
        &data[..head_len],
        &data[tstart..data.len() - 8],
        tstart,
    )
}

/// Length of the pack header: magic, version, flags, and the seed when encrypted.
pub(crate) fn header_len(repo: &Repository) -> usize {
    if repo.is_encrypted() { 8 + SEED_LEN } else { 8 }
}

/// The trailer length stored in a pack's last 8 bytes.
pub(crate) fn trailer_len(name: &str, footer: &[u8; 8]) -> Result<usize> {
    if &footer[4..] != END_MAGIC {
        return Err(Error::damaged(
            name,
            "it is not a complete pack (no end marker)",
        ));
    }
    Ok(u32::from_le_bytes(footer[..4].try_into().expect("4 bytes")) as usize)
}

/// Check a pack's header and decode its trailer, which starts at byte `tstart` of the pack.
pub(crate) fn parse_trailer(
    repo: &Repository,
    name: &str,
    header: &[u8],
    trailer: &[u8],
    tstart: usize,
) -> Result<(Seed, Vec<BlobEntry>)> {
    let head_len = header_len(repo);
    if header.len() != head_len || &header[..4] != MAGIC || tstart < head_len {
        return Err(Error::damaged(
            name,
            "it is not a complete pack (bad header)",
        ));
    }
    if header[4] != 1 || (header[5] & 1 == 1) != repo.is_encrypted() {
        return Err(Error::damaged(
            name,
            "unknown pack version or wrong encryption flag",
        ));
    }
    let mut seed = [0u8; SEED_LEN];
    if repo.is_encrypted() {
        seed.copy_from_slice(&header[8..]);
    }
    let mut trailer = trailer.to_vec();
    if let Some(keys) = repo.keys()
        && !keys
            .object_key(&seed)
            .open(crypto::final_nonce(), &header[..8], &mut trailer)
    {
        return Err(Error::damaged(name, "its trailer fails authentication"));
    }
    let mut r = wire::Reader::new(&trailer);
    let bad = || Error::damaged(name, "its trailer is malformed");
    let n = r.count(ENTRY_LEN).ok_or_else(bad)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let e = BlobEntry::decode(&mut r).ok_or_else(bad)?;
        if (e.offset as usize) < head_len || e.offset as usize + e.length as usize > tstart {
            return Err(bad());
        }
        entries.push(e);
    }
    Ok((seed, entries))
}

/// The bytes of one blob inside a whole pack buffer.
pub(crate) fn blob_bytes<'a>(data: &'a [u8], e: &BlobEntry) -> &'a [u8] {
    let start = (e.offset as usize).min(data.len());
    let end = (e.offset as usize + e.length as usize).min(data.len());
    &data[start..end]
}
