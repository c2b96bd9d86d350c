//! The archive hasher: computes the snapshot's checksum (SHA-256 of its canonical tar stream)
//! on its own thread while the walker reads and stores the data.
//!
//! The walker sends the archive as a sequence of messages: entry boundaries, literal bytes
//! (headers, padding, and the content it just read), and references to content it did not read
//! (unchanged files; streams already stored). Each entry is flagged `same` when it is identical
//! to the parent snapshot's entry at the same position.
//!
//! While every entry is `same`, nothing is hashed: the parent's archive has the very same
//! prefix, and the parent's checkpoints (SHA-256 midstates at deterministic entry boundaries)
//! give the hash state at those offsets. At the first difference, hashing resumes from the last
//! checkpoint, replaying the few entries buffered since. A backup in which nothing changed thus
//! reuses the parent's checksum without reading a single file.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::archive::END_OF_ARCHIVE;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::sha256::{Midstate, Sha256};
use crate::tree::Content;
use crate::wire;

/// A checkpoint is recorded at the first entry boundary after this many archive bytes...
const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;
/// ...or after this many entries, whichever comes first.
const CHECKPOINT_ENTRIES: u64 = 8192;
/// Deferred messages kept before giving up on the parent's checkpoints and hashing for real.
const MAX_DEFERRED: usize = 4 * CHECKPOINT_ENTRIES as usize;

/// What the file looked like when the walker decided it was unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StatGuard {
    pub size: u64,
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    pub inode: u64,
}

impl StatGuard {
    pub fn of(m: &std::fs::Metadata) -> Self {
        StatGuard {
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec() as u32),
            ctime: (m.ctime(), m.ctime_nsec() as u32),
            inode: m.ino(),
        }
    }
}

pub(crate) enum HashMsg {
    Entry {
        same: bool,
    },
    Bytes(Bytes),
    Zeros(u64),
    /// Content of an unchanged file: read it again from disk (if it is still unchanged) or
    /// from the repository.
    Reread {
        path: PathBuf,
        guard: StatGuard,
        content: Arc<Vec<Content>>,
        size: u64,
    },
    /// Content already stored in the repository (a stream).
    Stored {
        content: Arc<Vec<Content>>,
        size: u64,
    },
    /// End of the archive; `same` when the parent's archive also ends here.
    End {
        same: bool,
    },
}

impl HashMsg {
    fn len(&self) -> u64 {
        match self {
            HashMsg::Entry { .. } | HashMsg::End { .. } => 0,
            HashMsg::Bytes(b) => b.len() as u64,
            HashMsg::Zeros(n) => *n,
            HashMsg::Reread { size, .. } | HashMsg::Stored { size, .. } => *size,
        }
    }
}

/// The parent snapshot's archive, as far as hashing needs it.
pub(crate) struct ParentArchive {
    pub checksum: String,
    pub size: u64,
    pub checkpoints: Vec<Midstate>,
}

pub(crate) struct HashResult {
    pub checksum: String,
    pub size: u64,
    pub checkpoints: Vec<Midstate>,
    /// Unchanged files that had changed by the time they were re-read (hashed from the
    /// repository instead).
    pub warnings: Vec<String>,
    /// Archive bytes that had to be hashed (0 when the parent's checksum was reused whole).
    pub hashed: u64,
}

/// Reads stored blobs for the hasher.
pub(crate) trait BlobSource {
    fn read(&self, id: &Id) -> Result<Bytes>;
}

pub(crate) struct Hasher<'a> {
    source: &'a dyn BlobSource,
    parent: Option<ParentArchive>,
    sha: Sha256,
    offset: u64,
    deferred: bool,
    base: Midstate,
    buffer: Vec<HashMsg>,
    checkpoints: Vec<Midstate>,
    last_checkpoint: u64,
    entries_since: u64,
    warnings: Vec<String>,
    hashed: u64,
    /// Where unchanged files are read back; allocated once, not once per file.
    read_buf: Vec<u8>,
}

impl<'a> Hasher<'a> {
    pub fn new(source: &'a dyn BlobSource, parent: Option<ParentArchive>) -> Self {
        Hasher {
            source,
            deferred: parent.is_some(),
            parent,
            sha: Sha256::new(),
            offset: 0,
            base: Sha256::new()
                .midstate()
                .expect("the empty state is aligned"),
            buffer: vec![],
            read_buf: vec![0u8; 1 << 20],
            checkpoints: vec![],
            last_checkpoint: 0,
            entries_since: 0,
            warnings: vec![],
            hashed: 0,
        }
    }

    /// Consume messages until `End`.
    pub fn run(mut self, rx: crossbeam_channel::Receiver<Vec<HashMsg>>) -> Result<HashResult> {
        for msg in rx.into_iter().flatten() {
            match msg {
                HashMsg::Entry { same } => self.entry(same)?,
                HashMsg::End { same } => return self.end(same),
                other => {
                    self.offset += other.len();
                    if self.deferred {
                        self.buffer.push(other);
                        if self.buffer.len() > MAX_DEFERRED {
                            self.activate()?;
                        }
                    } else {
                        self.hash(other)?;
                    }
                }
            }
        }
        Err(Error::Interrupted)
    }

    fn entry(&mut self, same: bool) -> Result<()> {
        if self.deferred && !same {
            self.activate()?;
        }
        let due = self.offset - self.last_checkpoint >= CHECKPOINT_BYTES
            || self.entries_since >= CHECKPOINT_ENTRIES;
        if due && self.offset > 0 {
            let cp = if self.deferred {
                let found = self
                    .parent
                    .as_ref()
                    .and_then(|p| p.checkpoints.iter().find(|c| c.len == self.offset).copied());
                match found {
                    Some(cp) => {
                        self.base = cp;
                        self.buffer.clear();
                        cp
                    }
                    None => {
                        self.activate()?;
                        self.sha
                            .midstate()
                            .expect("entry boundaries are block aligned")
                    }
                }
            } else {
                self.sha
                    .midstate()
                    .expect("entry boundaries are block aligned")
            };
            self.checkpoints.push(cp);
            self.last_checkpoint = self.offset;
            self.entries_since = 0;
        }
        self.entries_since += 1;
        Ok(())
    }

    /// Stop deferring: resume from the last known state and hash what was buffered.
    fn activate(&mut self) -> Result<()> {
        if !self.deferred {
            return Ok(());
        }
        self.deferred = false;
        self.sha = Sha256::resume(self.base);
        for msg in std::mem::take(&mut self.buffer) {
            self.hash(msg)?;
        }
        debug_assert_eq!(self.sha.len(), self.offset);
        Ok(())
    }

    fn end(mut self, same: bool) -> Result<HashResult> {
        self.offset += END_OF_ARCHIVE.len() as u64;
        if self.deferred
            && same
            && let Some(p) = self.parent.take()
            && p.size == self.offset
        {
            return Ok(HashResult {
                checksum: p.checksum,
                size: self.offset,
                checkpoints: self.checkpoints,
                warnings: self.warnings,
                hashed: self.hashed,
            });
        }
        self.activate()?;
        self.sha.update(&END_OF_ARCHIVE);
        Ok(HashResult {
            hashed: self.hashed + END_OF_ARCHIVE.len() as u64,
            checksum: self.sha.finalize_hex(),
            size: self.offset,
            checkpoints: self.checkpoints,
            warnings: self.warnings,
        })
    }

    fn hash(&mut self, msg: HashMsg) -> Result<()> {
        self.hashed += msg.len();
        match msg {
            HashMsg::Bytes(b) => self.sha.update(&b),
            HashMsg::Zeros(n) => self.sha.update_zeros(n),
            HashMsg::Stored { content, .. } => self.hash_stored(&content)?,
            HashMsg::Reread {
                path,
                guard,
                content,
                size,
            } => {
                let saved = self.sha.clone();
                match reread(&path, guard, size, &mut self.sha, &mut self.read_buf) {
                    Ok(true) => {}
                    _ => {
                        self.sha = saved;
                        self.warnings.push(format!(
                            "{}: changed during the backup; its checksum was computed from the stored copy",
                            path.display()
                        ));
                        self.hash_stored(&content)?;
                    }
                }
            }
            HashMsg::Entry { .. } | HashMsg::End { .. } => {}
        }
        Ok(())
    }

    fn hash_stored(&mut self, content: &[Content]) -> Result<()> {
        for c in content {
            match c {
                Content::Chunk { id, .. } => self.sha.update(&self.source.read(id)?),
                Content::Hole { len } => self.sha.update_zeros(*len),
            }
        }
        Ok(())
    }
}

/// Hash `size` bytes of an unchanged file if it still matches `guard` before and after the
/// read. Returns false (having hashed garbage into `sha`, which the caller discards) otherwise.
fn reread(
    path: &std::path::Path,
    guard: StatGuard,
    size: u64,
    sha: &mut Sha256,
    buf: &mut [u8],
) -> std::io::Result<bool> {
    let mut f = File::open(path)?;
    if StatGuard::of(&f.metadata()?) != guard {
        return Ok(false);
    }
    let mut left = size;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            return Ok(false);
        }
        sha.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(StatGuard::of(&f.metadata()?) == guard)
}

/// Checkpoints as stored in their blob: version byte, count, then (length, 8 state words).
pub(crate) fn encode_checkpoints(cps: &[Midstate]) -> Vec<u8> {
    let mut w = wire::Writer::with_capacity(5 + cps.len() * 40);
    w.u8(1);
    w.u32(cps.len() as u32);
    for c in cps {
        w.u64(c.len);
        for s in c.state {
            w.u32(s);
        }
    }
    w.buf
}

pub(crate) fn decode_checkpoints(data: &[u8]) -> Option<Vec<Midstate>> {
    let mut r = wire::Reader::new(data);
    if r.u8()? != 1 {
        return None;
    }
    let n = r.count(40)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.u64()?;
        let mut state = [0u32; 8];
        for s in &mut state {
            *s = r.u32()?;
        }
        out.push(Midstate { len, state });
    }
    Some(out)
}
