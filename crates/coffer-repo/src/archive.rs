//! The canonical archive: the deterministic tar stream of a snapshot.
//!
//! Its SHA-256 is the snapshot's `checksum`; `coffer dump` writes exactly these bytes. The
//! rules (also in docs/repository-format.md):
//! - entries depth first, children sorted by name bytes, each directory *after* its contents
//!   (so a directory whose mtime changed only changes the archive from that point on, and tar
//!   sets directory times after filling them); paths relative, joined by '/', directories with
//!   a trailing '/';
//! - POSIX ustar headers, user and group names empty; a PAX extended header (named
//!   `././@PaxHeader`, mode 0644, everything else zero) precedes an entry when it needs one of:
//!   `path` (longer than 100 bytes), `linkpath` (longer than 100), `size` (8 GiB or more),
//!   `uid`/`gid` (2^21 or more), `mtime` (sub-second part, negative, or too large), and
//!   `SCHILY.xattr.<name>` for each extended attribute, in that order;
//! - the second and later names of a hard-linked file (same device and inode, link count > 1)
//!   are hard link entries (type '1') to the first name;
//! - sparse files are written in full (holes as zeros); the archive ends with two zero blocks.
//!
//! The backup pipeline hashes the archive as it reads the files, using the same functions, so
//! the checksum is known when the snapshot is written.

use std::collections::HashMap;
use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::reader::{BlobReader, chunk_of};
use crate::tree::{Content, Node, NodeKind, Tree};

pub(crate) const BLOCK: u64 = 512;
pub(crate) const END_OF_ARCHIVE: [u8; 1024] = [0; 1024];
const PAX_NAME: &[u8] = b"././@PaxHeader";

/// Bytes of zero padding after `size` bytes of content.
pub(crate) fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// Zero-padded octal digits followed by NUL (values are checked to fit by the caller).
fn octal(field: &mut [u8], mut v: u64) {
    let digits = field.len() - 1;
    field[digits] = 0;
    for d in field[..digits].iter_mut().rev() {
        *d = b'0' + (v & 7) as u8;
        v >>= 3;
    }
}

const MAX_OCTAL_7: u64 = 0o7777777;
const MAX_OCTAL_11: u64 = 0o77777777777;

/// A value for a fixed-width octal field; values too large travel in a PAX record instead.
fn fits_or_zero(v: u64, max: u64) -> u64 {
    if v <= max { v } else { 0 }
}

fn pax_mtime(sec: i64, nsec: u32) -> String {
    let total = sec as i128 * 1_000_000_000 + nsec as i128;
    let sign = if total < 0 { "-" } else { "" };
    let abs = total.unsigned_abs();
    let (whole, frac) = (abs / 1_000_000_000, abs % 1_000_000_000);
    if frac == 0 {
        format!("{sign}{whole}")
    } else {
        let f = format!("{frac:09}");
        format!("{sign}{whole}.{}", f.trim_end_matches('0'))
    }
}

/// One PAX record: `<length> <key>=<value>\n`, the length counting itself.
pub fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // "<len> <key>=<value>\n" where <len> counts the whole record including its own digits.
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

struct Ustar<'a> {
    name: &'a [u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    linkname: &'a [u8],
    dev: Option<(u64, u64)>,
}

fn ustar(h: &Ustar) -> [u8; 512] {
    let mut b = [0u8; 512];
    let n = h.name.len().min(100);
    b[..n].copy_from_slice(&h.name[..n]);
    octal(&mut b[100..108], h.mode as u64);
    octal(&mut b[108..116], h.uid);
    octal(&mut b[116..124], h.gid);
    octal(&mut b[124..136], h.size);
    octal(&mut b[136..148], h.mtime);
    b[156] = h.typeflag;
    let l = h.linkname.len().min(100);
    b[157..157 + l].copy_from_slice(&h.linkname[..l]);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    if let Some((major, minor)) = h.dev {
        octal(&mut b[329..337], major.min(MAX_OCTAL_7));
        octal(&mut b[337..345], minor.min(MAX_OCTAL_7));
    }
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| x as u32).sum();
    octal(&mut b[148..155], sum as u64);
    b[155] = b' ';
    b
}

/// The header block(s) of one archive entry. `path` has no trailing slash; `link` is the first
/// name of a hard-linked file.
pub(crate) fn entry_header(path: &[u8], node: &Node, link: Option<&[u8]>) -> Vec<u8> {
    let mut name = path.to_vec();
    if node.kind == NodeKind::Dir {
        name.push(b'/');
    }
    let (typeflag, linkname, size): (u8, &[u8], u64) = match (link, node.kind) {
        (Some(l), _) => (b'1', l, 0),
        (None, NodeKind::File) => (b'0', b"", node.size),
        (None, NodeKind::Symlink) => (b'2', &node.target, 0),
        (None, NodeKind::CharDevice) => (b'3', b"", 0),
        (None, NodeKind::BlockDevice) => (b'4', b"", 0),
        (None, NodeKind::Dir) => (b'5', b"", 0),
        (None, NodeKind::Fifo) => (b'6', b"", 0),
    };
    let (sec, nsec) = node.mtime;
    let mut pax = vec![];
    if name.len() > 100 {
        pax_record(&mut pax, b"path", &name);
    }
    if linkname.len() > 100 {
        pax_record(&mut pax, b"linkpath", linkname);
    }
    if size > MAX_OCTAL_11 {
        pax_record(&mut pax, b"size", size.to_string().as_bytes());
    }
    if node.uid as u64 > MAX_OCTAL_7 {
        pax_record(&mut pax, b"uid", node.uid.to_string().as_bytes());
    }
    if node.gid as u64 > MAX_OCTAL_7 {
        pax_record(&mut pax, b"gid", node.gid.to_string().as_bytes());
    }
    let mtime_fits = (0..=MAX_OCTAL_11 as i64).contains(&sec);
    if nsec != 0 || !mtime_fits {
        pax_record(&mut pax, b"mtime", pax_mtime(sec, nsec).as_bytes());
    }
    for (k, v) in &node.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(k);
        pax_record(&mut pax, &key, v);
    }
    let dev = matches!(node.kind, NodeKind::CharDevice | NodeKind::BlockDevice).then(|| {
        (
            rustix::fs::major(node.rdev) as u64,
            rustix::fs::minor(node.rdev) as u64,
        )
    });
    let main = ustar(&Ustar {
        name: &name,
        mode: node.mode,
        uid: fits_or_zero(node.uid as u64, MAX_OCTAL_7),
        gid: fits_or_zero(node.gid as u64, MAX_OCTAL_7),
        size: fits_or_zero(size, MAX_OCTAL_11),
        mtime: if mtime_fits { sec as u64 } else { 0 },
        typeflag,
        linkname,
        dev,
    });
    let mut out = Vec::with_capacity(512 * 3);
    if !pax.is_empty() {
        let ph = ustar(&Ustar {
            name: PAX_NAME,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: pax.len() as u64,
            mtime: 0,
            typeflag: b'x',
            linkname: b"",
            dev: None,
        });
        out.extend_from_slice(&ph);
        let pad = padding(pax.len() as u64) as usize;
        out.extend_from_slice(&pax);
        out.resize(out.len() + pad, 0);
    }
    out.extend_from_slice(&main);
    out
}

/// Decides which names of a hard-linked file become hard link entries: the first name seen in
/// archive order carries the content, later ones link to it.
#[derive(Default)]
pub(crate) struct HardLinks {
    first: HashMap<(u64, u64), Vec<u8>>,
}

impl HardLinks {
    pub fn check(&mut self, path: &[u8], node: &Node) -> Option<Vec<u8>> {
        if !node.is_hardlink_candidate() {
            return None;
        }
        match self.first.entry((node.dev, node.inode)) {
            std::collections::hash_map::Entry::Occupied(o) => Some(o.get().clone()),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(path.to_vec());
                None
            }
        }
    }
}

pub(crate) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
        p.extend_from_slice(dir);
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }
}

/// One entry of the archive, in archive order.
pub(crate) struct ArchiveEntry {
    pub path: Vec<u8>,
    pub node: Node,
    pub link: Option<Vec<u8>>,
}

impl ArchiveEntry {
    /// Whether this entry carries file content in the archive.
    pub fn has_content(&self) -> bool {
        self.link.is_none() && self.node.kind == NodeKind::File
    }
}

/// One directory being walked: its listing, the next position, its path, and its own node
/// (emitted once its contents are done; none for the root).
struct Frame {
    tree: Arc<Tree>,
    pos: usize,
    path: Vec<u8>,
    node: Option<Node>,
}

/// Walks a snapshot's trees in archive order: depth first, a directory after its contents.
pub(crate) struct ArchiveWalk<'a> {
    reader: &'a BlobReader<'a>,
    stack: Vec<Frame>,
    links: HardLinks,
}

impl<'a> ArchiveWalk<'a> {
    pub fn new(reader: &'a BlobReader<'a>, root: &Id) -> Result<Self> {
        Ok(Self::of_tree(reader, reader.tree(root)?))
    }

    pub fn of_tree(reader: &'a BlobReader<'a>, tree: Arc<Tree>) -> Self {
        let root = Frame {
            tree,
            pos: 0,
            path: vec![],
            node: None,
        };
        ArchiveWalk {
            reader,
            stack: vec![root],
            links: HardLinks::default(),
        }
    }

    pub fn next_entry(&mut self) -> Result<Option<ArchiveEntry>> {
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            if frame.pos >= frame.tree.nodes.len() {
                let done = self.stack.pop().expect("not empty");
                match done.node {
                    Some(node) => {
                        return Ok(Some(ArchiveEntry {
                            path: done.path,
                            node,
                            link: None,
                        }));
                    }
                    None => continue,
                }
            }
            let node = frame.tree.nodes[frame.pos].clone();
            frame.pos += 1;
            let path = join(&frame.path, &node.name);
            if node.kind == NodeKind::Dir {
                let tree = self
                    .reader
                    .tree(&node.subtree.expect("validated at decode"))?;
                self.stack.push(Frame {
                    tree,
                    pos: 0,
                    path,
                    node: Some(node),
                });
                continue;
            }
            let link = self.links.check(&path, &node);
            return Ok(Some(ArchiveEntry { path, node, link }));
        }
    }
}

/// A problem found while reading a snapshot's data.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Damage {
    /// The file (archive path) whose content is affected.
    pub file: String,
    /// The object that is damaged or missing (a pack, a blob, an index file).
    pub object: String,
    /// What is wrong with it.
    pub detail: String,
}

impl Damage {
    /// The damage `e` (an error for which `is_damage()` holds) found reading `file`.
    pub(crate) fn new(file: &str, e: &Error) -> Damage {
        let (object, detail) = e.damaged_object();
        Damage {
            file: file.to_string(),
            object,
            detail,
        }
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} is damaged: {}",
            self.file, self.object, self.detail
        )
    }
}

/// One step of writing an archive, in order.
enum Piece {
    /// Header bytes of the next entry, and its path (for damage reports).
    Header(Vec<u8>, Arc<str>),
    Zeros(u64),
    /// A blob of the given length; a worker fills in its data.
    Blob(Id, u32, Option<Result<bytes::Bytes>>),
}

/// Consecutive pieces decoded by one worker: handing each small file's blob to another thread
/// on its own would cost more than decoding it, and the segment's blobs are read together,
/// planned per pack.
type Segment = Vec<Piece>;

/// Read the blobs of a segment, planned per pack, into their pieces.
fn fill(reader: &BlobReader, segment: &mut Segment) {
    let wanted: Vec<(Id, u32)> = segment
        .iter()
        .filter_map(|p| match p {
            Piece::Blob(id, len, _) => Some((*id, *len)),
            _ => None,
        })
        .collect();
    match reader.chunks(&wanted, 1) {
        Ok(read) => {
            for piece in segment.iter_mut() {
                if let Piece::Blob(id, _, data) = piece {
                    *data = Some(chunk_of(&read, id));
                }
            }
        }
        // Storage failed: the writer stops at the first blob, with the error.
        Err(e) => {
            let mut error = Some(e);
            for piece in segment.iter_mut() {
                if let Piece::Blob(_, _, data) = piece {
                    *data = Some(Err(error.take().unwrap_or(Error::Interrupted)));
                }
            }
        }
    }
}

/// Write the canonical archive of the snapshot whose root tree is `root` to `out`.
///
/// A producer thread walks the trees and hands segments to worker threads, which read (planned
/// per pack), decrypt, decompress and check their blobs ahead of this thread, which writes
/// everything in order. Memory stays bounded by a few segments per worker.
///
/// With `damage: None` the first unreadable blob is an error (dump never writes wrong data
/// silently). With `Some`, damaged blobs are recorded, replaced by zeros, and the walk goes on,
/// so that verify can name every affected file. Returns the archive size.
pub(crate) fn write_archive(
    reader: &BlobReader,
    root: &Id,
    out: &mut dyn Write,
    damage: Option<&mut Vec<Damage>>,
) -> Result<u64> {
    write_tree(reader, reader.tree(root)?, out, damage)
}

/// Write the archive of the directory `node` of a snapshot: its contents as `./<path>`, then
/// itself as `./` (what Docker's archive endpoint takes to fill a volume, owner and mode of its
/// top directory included). Every blob is checked as it is read; damage is an error.
/// Returns the files and content bytes written (hard links counted once).
pub(crate) fn write_dir(
    reader: &BlobReader,
    node: &Node,
    out: &mut dyn Write,
) -> Result<(u64, u64)> {
    let mut top = node.clone();
    top.name = b".".to_vec();
    let tree = Arc::new(Tree { nodes: vec![top] });
    let (mut files, mut bytes) = (0, 0);
    let mut walk = ArchiveWalk::of_tree(reader, tree.clone());
    while let Some(e) = walk.next_entry()? {
        if e.has_content() {
            files += 1;
            bytes += e.node.size;
        }
    }
    write_tree(reader, tree, out, None)?;
    Ok((files, bytes))
}

fn write_tree(
    reader: &BlobReader,
    root: Arc<Tree>,
    out: &mut dyn Write,
    mut damage: Option<&mut Vec<Damage>>,
) -> Result<u64> {
    let io = |e: std::io::Error| Error::io("archive output", e);
    let tuning = reader.tuning();
    // A segment closes once its blobs reach the segment size, or its pieces the limit.
    let (workers, segment_bytes) = (tuning.parallel, tuning.segment);
    let lookahead = workers + 2;
    // std's channels, not crossbeam's: they put a waiting thread to sleep at once, where
    // crossbeam's spin and yield first, which on two cores takes the CPU from the very threads
    // being waited for.
    std::thread::scope(|s| {
        let (work_tx, work_rx) = sync_channel::<(Segment, SyncSender<Segment>)>(lookahead);
        // The workers take turns at the queue; the others sleep on the lock.
        let work_rx = Arc::new(Mutex::new(work_rx));
        let (segment_tx, segment_rx) = sync_channel::<Receiver<Segment>>(lookahead);
        for _ in 0..workers {
            let work_rx = work_rx.clone();
            s.spawn(move || {
                // The lock is released as soon as a segment is taken.
                let next = || work_rx.lock().expect("work queue").recv();
                while let Ok((mut segment, tx)) = next() {
                    fill(reader, &mut segment);
                    let _ = tx.send(segment);
                }
            });
        }
        let producer = s.spawn(move || -> Result<()> {
            let mut walk = ArchiveWalk::of_tree(reader, root);
            let (mut segment, mut bytes) = (Segment::new(), 0usize);
            let send = |segment: Segment| -> Result<()> {
                let (tx, rx) = sync_channel(1);
                work_tx
                    .send((segment, tx))
                    .map_err(|_| Error::Interrupted)?;
                segment_tx.send(rx).map_err(|_| Error::Interrupted)
            };
            while let Some(entry) = walk.next_entry()? {
                let header = entry_header(&entry.path, &entry.node, entry.link.as_deref());
                let path: Arc<str> = String::from_utf8_lossy(&entry.path).into();
                segment.push(Piece::Header(header, path));
                if entry.has_content() {
                    for c in &entry.node.content {
                        segment.push(match *c {
                            Content::Hole { len } => Piece::Zeros(len),
                            Content::Chunk { id, len } => {
                                bytes += len as usize;
                                Piece::Blob(id, len, None)
                            }
                        });
                        if bytes >= segment_bytes || segment.len() >= tuning.segment_pieces {
                            send(std::mem::take(&mut segment))?;
                            bytes = 0;
                        }
                    }
                    segment.push(Piece::Zeros(padding(entry.node.size)));
                }
            }
            send(segment)
        });
        let mut size = 0u64;
        let mut path: Arc<str> = Arc::from("");
        let written = (|| -> Result<()> {
            for rx in segment_rx.iter() {
                for piece in rx.recv().map_err(|_| Error::Interrupted)? {
                    match piece {
                        Piece::Header(h, p) => {
                            out.write_all(&h).map_err(io)?;
                            size += h.len() as u64;
                            path = p;
                        }
                        Piece::Zeros(n) => {
                            write_zeros(out, n).map_err(io)?;
                            size += n;
                        }
                        Piece::Blob(_, len, data) => {
                            match data.unwrap_or(Err(Error::Interrupted)) {
                                Ok(bytes) => out.write_all(&bytes).map_err(io)?,
                                Err(e) => match damage.as_deref_mut() {
                                    Some(list) if e.is_damage() => {
                                        list.push(Damage::new(&path, &e));
                                        write_zeros(out, len as u64).map_err(io)?;
                                    }
                                    _ => return Err(with_file(e, &path)),
                                },
                            }
                            size += len as u64;
                        }
                    }
                }
            }
            Ok(())
        })();
        // On an early return the producer sees the closed channel and stops.
        drop(segment_rx);
        let produced = producer
            .join()
            .map_err(|_| Error::Invalid("the archive walker crashed".into()))?;
        written?;
        produced?;
        out.write_all(&END_OF_ARCHIVE).map_err(io)?;
        Ok(size + END_OF_ARCHIVE.len() as u64)
    })
}

/// Name the file in a damage error.
fn with_file(e: Error, path: &str) -> Error {
    match e {
        Error::Damaged { object, detail } => Error::Damaged {
            object,
            detail: format!("{detail} (file {path})"),
        },
        other => other,
    }
}

fn write_zeros(out: &mut dyn Write, mut n: u64) -> std::io::Result<()> {
    static Z: [u8; 64 * 1024] = [0; 64 * 1024];
    while n > 0 {
        let k = n.min(Z.len() as u64) as usize;
        out.write_all(&Z[..k])?;
        n -= k as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_lengths_count_themselves() {
        let mut v = vec![];
        pax_record(&mut v, b"path", &[b'a'; 90]);
        let s = String::from_utf8(v.clone()).unwrap();
        let (len, _) = s.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), v.len());
        assert_eq!(pax_mtime(-2, 500_000_000), "-1.5");
        assert_eq!(pax_mtime(5, 120_000_000), "5.12");
        assert_eq!(pax_mtime(5, 0), "5");
    }

    #[test]
    fn headers_carry_checksums_and_long_names() {
        let mut n = Node::new(b"f".to_vec(), NodeKind::File);
        n.mode = 0o644;
        n.size = 3;
        let h = entry_header(b"dir/f", &n, None);
        assert_eq!(h.len(), 512);
        assert_eq!(&h[..5], b"dir/f");
        let long = vec![b'x'; 150];
        let h = entry_header(&long, &n, None);
        assert_eq!(h.len(), 512 * 3);
        assert_eq!(h[156], b'x');
    }
}
