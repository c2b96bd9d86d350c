//! The walker: visits the sources in archive order, decides what is unchanged, reads and
//! chunks what is not, builds the trees, and tells the hasher the archive as it goes.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use crossbeam_channel::Sender;

use super::hasher::{HashMsg, StatGuard};
use super::known::Known;
use super::pipeline::Pipeline;
use super::{BackupCounts, BackupItem, Excludes, Progress, Source};
use crate::archive::{self, ArchiveWalk};
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::BlobKind;
use crate::reader::BlobReader;
use crate::repo::Repository;
use crate::tree::{Content, Node, NodeKind, Tree};

mod tar_tree;

/// Bytes read from a file at a time.
const READ_BUF: usize = 4 * 1024 * 1024;
/// Messages, and content bytes, per batch sent to the hasher.
const HASH_BATCH: usize = 512;
const HASH_BATCH_BYTES: usize = 2 * 1024 * 1024;

/// The items to back up, arranged as the directory tree they form in the snapshot.
#[derive(Default)]
struct VirtualDir {
    children: BTreeMap<Vec<u8>, VirtualDir>,
    source: Option<Source>,
    /// What the item at `source` leaves out.
    exclude: Excludes,
    /// For parents of items backed up under their absolute path: the real directory.
    disk_path: Option<PathBuf>,
}

/// A stored directory: its tree, and the newest modification time among its entries.
struct Listing {
    tree: Id,
    newest: Option<(i64, u32)>,
}

pub(super) struct Walker<'a> {
    repo: &'a Repository,
    known: &'a Known,
    reader: &'a BlobReader<'a>,
    pipeline: &'a Pipeline,
    hash: Option<Sender<Vec<HashMsg>>>,
    batch: Vec<HashMsg>,
    batch_bytes: usize,
    chunker: Chunker,
    /// The parent's archive, walked in step with ours while both are identical.
    parent_walk: Option<ArchiveWalk<'a>>,
    parent_root: Option<Id>,
    diverged: bool,
    /// First name and content of each hard-linked inode seen so far.
    linked: HashMap<(u64, u64), (Vec<u8>, Vec<Content>)>,
    time: DateTime<Utc>,
    progress: Option<Arc<Progress>>,
    cancel: Option<Arc<AtomicBool>>,
    /// What the item being walked leaves out.
    exclude: Excludes,
    pub stats: BackupCounts,
    pub warnings: Vec<String>,
}

fn meta_node(name: &[u8], m: &Metadata, kind: NodeKind) -> Node {
    let mut n = Node::new(name.to_vec(), kind);
    n.mode = m.mode() & 0o7777;
    n.uid = m.uid();
    n.gid = m.gid();
    n.mtime = (m.mtime(), m.mtime_nsec() as u32);
    n.ctime = (m.ctime(), m.ctime_nsec() as u32);
    n.inode = m.ino();
    n.dev = m.dev();
    if kind == NodeKind::File {
        n.nlink = m.nlink();
        n.size = m.size();
    } else {
        n.nlink = 0;
    }
    if matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
        n.rdev = m.rdev();
    }
    n
}

fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Ok(names) = xattr::list(path) else {
        return vec![];
    };
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = names
        .filter_map(|n| {
            let v = xattr::get(path, &n).ok().flatten()?;
            Some((n.into_vec(), v))
        })
        .collect();
    out.sort();
    out
}

/// Same file as last time: size, mtime, ctime and inode unchanged.
fn unchanged(prev: &Node, now: &Node) -> bool {
    prev.kind == NodeKind::File
        && prev.size == now.size
        && prev.mtime == now.mtime
        && prev.ctime == now.ctime
        && prev.inode == now.inode
}

/// The data regions and holes of a sparse file, in order: (offset, length, is_hole).
fn regions(f: &File, size: u64) -> Vec<(u64, u64, bool)> {
    use rustix::fs::{SeekFrom as S, seek};
    let whole = vec![(0, size, false)];
    let mut out = vec![];
    let mut pos = 0;
    while pos < size {
        let data = match seek(f, S::Data(pos)) {
            Ok(d) => d.min(size),
            Err(rustix::io::Errno::NXIO) => size,
            Err(_) => return whole,
        };
        if data > pos {
            out.push((pos, data - pos, true));
        }
        if data >= size {
            break;
        }
        let hole = match seek(f, S::Hole(data)) {
            Ok(h) => h.min(size),
            Err(_) => return whole,
        };
        out.push((data, hole - data, false));
        pos = hole;
    }
    out
}

impl<'a> Walker<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        repo: &'a Repository,
        known: &'a Known,
        reader: &'a BlobReader<'a>,
        pipeline: &'a Pipeline,
        hash: Sender<Vec<HashMsg>>,
        parent_root: Option<Id>,
        time: DateTime<Utc>,
        progress: Option<Arc<Progress>>,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Result<Self> {
        let parent_walk = parent_root.and_then(|r| ArchiveWalk::new(reader, &r).ok());
        Ok(Walker {
            repo,
            known,
            reader,
            pipeline,
            hash: Some(hash),
            batch: Vec::with_capacity(HASH_BATCH),
            batch_bytes: 0,
            chunker: repo.chunker(),
            diverged: parent_walk.is_none(),
            parent_walk,
            parent_root,
            linked: HashMap::new(),
            time,
            progress,
            cancel,
            exclude: Excludes::default(),
            stats: BackupCounts::default(),
            warnings: vec![],
        })
    }

    fn warn(&mut self, msg: String) {
        self.warnings.push(msg);
    }

    /// Queue a message for the hasher. Messages travel in batches: one channel hand-off per
    /// message costs more than hashing a small file.
    fn send(&mut self, msg: HashMsg) -> Result<()> {
        if let HashMsg::Bytes(b) = &msg {
            self.batch_bytes += b.len();
        }
        self.batch.push(msg);
        if self.batch.len() >= HASH_BATCH || self.batch_bytes >= HASH_BATCH_BYTES {
            self.flush_hash()?;
        }
        Ok(())
    }

    fn flush_hash(&mut self) -> Result<()> {
        self.batch_bytes = 0;
        let batch = std::mem::take(&mut self.batch);
        if batch.is_empty() {
            return Ok(());
        }
        self.hash
            .as_ref()
            .expect("archive open")
            .send(batch)
            .map_err(|_| Error::Interrupted)
    }

    fn check_cancel(&self) -> Result<()> {
        match &self.cancel {
            Some(c) if c.load(Ordering::Relaxed) => Err(Error::Interrupted),
            _ => Ok(()),
        }
    }

    /// Close the archive for the hasher: with its end when the walk succeeded; otherwise just
    /// hang up so that the hasher stops.
    pub fn finish_archive(&mut self, ok: bool) {
        if ok {
            let same = !self.diverged
                && match self.parent_walk.as_mut() {
                    Some(w) => matches!(w.next_entry(), Ok(None)),
                    None => false,
                };
            let _ = self
                .send(HashMsg::End { same })
                .and_then(|_| self.flush_hash());
        }
        self.hash = None;
    }

    /// Walk all items; returns the root tree.
    pub fn run(&mut self, items: Vec<BackupItem>) -> Result<Id> {
        let mut root = VirtualDir::default();
        let mut sorted = items;
        sorted.sort_by(|a, b| a.components.cmp(&b.components));
        for item in sorted {
            let mut dir = &mut root;
            let mut disk = PathBuf::from("/");
            let mut covered = dir.source.is_some();
            for c in &item.components {
                disk.push(std::ffi::OsStr::from_bytes(c));
                dir = dir.children.entry(c.clone()).or_default();
                if item.ancestors_on_disk && dir.disk_path.is_none() {
                    dir.disk_path = Some(disk.clone());
                }
                covered |= dir.source.is_some();
            }
            if covered {
                self.warn(format!(
                    "{}: skipped, it is inside another item of this backup",
                    item.label
                ));
                continue;
            }
            if !dir.children.is_empty() {
                self.warn(format!("{}: it contains other items of this backup; they are backed up once, as part of it", item.label));
                dir.children.clear();
            }
            dir.source = Some(item.source);
            dir.exclude = item.exclude;
        }
        let parent = self.parent_root.and_then(|r| self.reader.tree(&r).ok());
        match root.source.take() {
            // The whole filesystem ("/"): its entries are the snapshot's top level.
            Some(Source::Path(p)) => {
                self.exclude = std::mem::take(&mut root.exclude);
                self.walk_dir(&p, b"", parent)
            }
            Some(Source::Stream(_) | Source::Tar(_)) => {
                Err(Error::Invalid("a stream needs a name".into()))
            }
            None => Ok(self.walk_virtual(&mut root, b"", parent)?.tree),
        }
    }

    fn parent_subtree(&self, node: Option<&Node>) -> Option<Arc<Tree>> {
        let n = node.filter(|n| n.kind == NodeKind::Dir)?;
        self.reader.tree(&n.subtree?).ok()
    }

    fn walk_virtual(
        &mut self,
        dir: &mut VirtualDir,
        path: &[u8],
        parent: Option<Arc<Tree>>,
    ) -> Result<Listing> {
        let mut nodes = vec![];
        for (name, child) in dir.children.iter_mut() {
            let apath = archive::join(path, name);
            let prev = parent.as_ref().and_then(|t| t.find(name)).cloned();
            let node = match child.source.take() {
                Some(Source::Path(p)) => {
                    self.exclude = std::mem::take(&mut child.exclude);
                    self.entry(&p, name, &apath, prev.as_ref(), true)?
                }
                Some(Source::Stream(r)) => Some(self.stream(name, &apath, r)?),
                Some(Source::Tar(r)) => Some(self.tar(name, &apath, r, prev.as_ref())?),
                None => {
                    let sub = self.parent_subtree(prev.as_ref());
                    let listing = self.walk_virtual(child, &apath, sub)?;
                    let mut node = match child.disk_path.as_ref().map(fs::metadata) {
                        Some(Ok(m)) if m.is_dir() => meta_node(name, &m, NodeKind::Dir),
                        _ => self.made_up_dir(name, &listing),
                    };
                    self.stats.dirs += 1;
                    node.subtree = Some(listing.tree);
                    // A directory's archive entry follows its contents.
                    self.emit(&apath, &node, None, true)?;
                    Some(node)
                }
            };
            nodes.extend(node);
        }
        self.store_listing(nodes)
    }

    /// A directory the snapshot makes up (a parent of named items, one a tar stream leaves
    /// out): it was last changed when its newest entry was, so an unchanged backup gives the
    /// same archive; an empty one takes the backup's time.
    fn made_up_dir(&self, name: &[u8], listing: &Listing) -> Node {
        let mut n = self.synthetic(name, NodeKind::Dir, 0o755);
        if let Some(t) = listing.newest {
            (n.mtime, n.ctime) = (t, t);
        }
        n
    }

    fn synthetic(&self, name: &[u8], kind: NodeKind, mode: u32) -> Node {
        let mut n = Node::new(name.to_vec(), kind);
        n.mode = mode;
        n.uid = rustix::process::getuid().as_raw();
        n.gid = rustix::process::getgid().as_raw();
        n.mtime = (self.time.timestamp(), 0);
        n.ctime = n.mtime;
        n.nlink = if kind == NodeKind::File { 1 } else { 0 };
        n
    }

    /// Tell the hasher about an entry: its boundary, whether it is identical to the parent's
    /// entry at this position, and its header.
    fn emit(
        &mut self,
        path: &[u8],
        node: &Node,
        link: Option<&[u8]>,
        may_be_same: bool,
    ) -> Result<()> {
        let header = archive::entry_header(path, node, link);
        let content =
            (link.is_none() && node.kind == NodeKind::File).then_some(node.content.as_slice());
        let same = may_be_same && self.same_as_parent(&header, content);
        if !same {
            self.diverged = true;
        }
        self.send(HashMsg::Entry { same })?;
        self.send(HashMsg::Bytes(Bytes::from(header)))
    }

    fn same_as_parent(&mut self, header: &[u8], content: Option<&[Content]>) -> bool {
        if self.diverged {
            return false;
        }
        let Some(w) = self.parent_walk.as_mut() else {
            return false;
        };
        match w.next_entry() {
            Ok(Some(p)) => {
                archive::entry_header(&p.path, &p.node, p.link.as_deref()) == header
                    && match content {
                        Some(c) => p.has_content() && p.node.content == c,
                        None => !p.has_content(),
                    }
            }
            _ => false,
        }
    }

    /// One filesystem object. `top` marks an item the user named: its absence is an error,
    /// while things vanishing inside a directory are warnings.
    fn entry(
        &mut self,
        path: &Path,
        name: &[u8],
        apath: &[u8],
        prev: Option<&Node>,
        top: bool,
    ) -> Result<Option<Node>> {
        self.check_cancel()?;
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if top => return Err(Error::io(path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.warn(format!("{}: vanished during the backup", path.display()));
                return Ok(None);
            }
            Err(e) => {
                self.warn(format!("{}: skipped: {e}", path.display()));
                return Ok(None);
            }
        };
        let ft = meta.file_type();
        if ft.is_file() {
            return self.file(path, name, apath, meta, prev);
        }
        let kind = if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_symlink() {
            NodeKind::Symlink
        } else if ft.is_char_device() {
            NodeKind::CharDevice
        } else if ft.is_block_device() {
            NodeKind::BlockDevice
        } else if ft.is_fifo() {
            NodeKind::Fifo
        } else {
            self.warn(format!(
                "{}: skipped: sockets cannot be backed up",
                path.display()
            ));
            return Ok(None);
        };
        let mut node = meta_node(name, &meta, kind);
        node.xattrs = match prev {
            Some(p) if p.kind == kind && p.ctime == node.ctime && p.inode == node.inode => {
                p.xattrs.clone()
            }
            _ => read_xattrs(path),
        };
        if kind == NodeKind::Symlink {
            match fs::read_link(path) {
                Ok(t) => node.target = t.into_os_string().into_vec(),
                Err(e) => {
                    self.warn(format!("{}: skipped: {e}", path.display()));
                    return Ok(None);
                }
            }
        }
        if kind != NodeKind::Dir {
            self.emit(apath, &node, None, true)?;
            return Ok(Some(node));
        }
        self.stats.dirs += 1;
        let sub = self.parent_subtree(prev);
        node.subtree = Some(self.walk_dir(path, apath, sub)?);
        // A directory's archive entry follows its contents.
        self.emit(apath, &node, None, true)?;
        Ok(Some(node))
    }

    fn walk_dir(&mut self, path: &Path, apath: &[u8], parent: Option<Arc<Tree>>) -> Result<Id> {
        let mut names: Vec<OsString> = match fs::read_dir(path) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect(),
            Err(e) => {
                self.warn(format!(
                    "{}: its contents were skipped: {e}",
                    path.display()
                ));
                vec![]
            }
        };
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        if self.exclude.is_cache(path) {
            let before = names.len();
            names.retain(|n| n.as_bytes() == Excludes::cache_tag());
            self.stats.excluded += (before - names.len()) as u64;
        }
        let mut nodes = Vec::with_capacity(names.len());
        for name in names {
            let name = name.as_bytes();
            let child_path = path.join(std::ffi::OsStr::from_bytes(name));
            if self.exclude.excluded(&child_path) {
                self.stats.excluded += 1;
                continue;
            }
            let prev = parent.as_ref().and_then(|t| t.find(name)).cloned();
            let child = archive::join(apath, name);
            if let Some(n) = self.entry(&child_path, name, &child, prev.as_ref(), false)? {
                nodes.push(n);
            }
        }
        self.store_tree(nodes)
    }

    fn file(
        &mut self,
        path: &Path,
        name: &[u8],
        apath: &[u8],
        meta: Metadata,
        prev: Option<&Node>,
    ) -> Result<Option<Node>> {
        let mut node = meta_node(name, &meta, NodeKind::File);
        let key = (node.dev, node.inode);
        if node.is_hardlink_candidate()
            && let Some((first, content)) = self.linked.get(&key).cloned()
        {
            node.content = content;
            node.size = node.content.iter().map(Content::len).sum();
            node.xattrs = read_xattrs(path);
            self.emit(apath, &node, Some(&first), true)?;
            self.stats.files_unchanged += 1;
            self.count_file(0);
            return Ok(Some(node));
        }
        match prev.filter(|p| unchanged(p, &node)) {
            Some(p) if self.all_stored(&p.content)? => {
                node.content = p.content.clone();
                node.xattrs = p.xattrs.clone();
                self.emit(apath, &node, None, true)?;
                if node.size > 0 {
                    self.send(HashMsg::Reread {
                        path: path.to_path_buf(),
                        guard: StatGuard::of(&meta),
                        content: Arc::new(node.content.clone()),
                        size: node.size,
                    })?;
                }
                self.stats.files_unchanged += 1;
                self.count_file(0);
            }
            _ => {
                let mut f = match fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(path)
                {
                    Ok(f) => f,
                    Err(e) => {
                        let what = if e.kind() == std::io::ErrorKind::NotFound {
                            "vanished during the backup".to_string()
                        } else {
                            format!("skipped: {e}")
                        };
                        self.warn(format!("{}: {what}", path.display()));
                        return Ok(None);
                    }
                };
                let before = f.metadata().map_err(|e| Error::io(path, e))?;
                if !before.is_file() {
                    self.warn(format!(
                        "{}: skipped: it was replaced during the backup",
                        path.display()
                    ));
                    return Ok(None);
                }
                node = meta_node(name, &before, NodeKind::File);
                node.xattrs = read_xattrs(path);
                self.emit(apath, &node, None, false)?;
                node.content = self.read_file(&mut f, path, &before)?;
                match f.metadata() {
                    Ok(after) if StatGuard::of(&after) == StatGuard::of(&before) => {}
                    _ => self.warn(format!("{}: changed while it was read; the backup holds the state seen while reading", path.display())),
                }
                if prev.is_some() {
                    self.stats.files_changed += 1;
                } else {
                    self.stats.files_new += 1;
                }
            }
        }
        self.send(HashMsg::Zeros(archive::padding(node.size)))?;
        if node.is_hardlink_candidate() {
            self.linked
                .insert(key, (apath.to_vec(), node.content.clone()));
        }
        Ok(Some(node))
    }

    fn count_file(&self, bytes: u64) {
        if let Some(p) = &self.progress {
            p.files.fetch_add(1, Ordering::Relaxed);
            p.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Read exactly `meta.len()` bytes of an open file, skipping holes of sparse files.
    fn read_file(&mut self, f: &mut File, path: &Path, meta: &Metadata) -> Result<Vec<Content>> {
        let size = meta.len();
        let sparse = size > 0 && meta.blocks() * 512 < size;
        let parts = if sparse {
            regions(f, size)
        } else {
            vec![(0, size, false)]
        };
        let mut content = vec![];
        let mut short = false;
        for (off, len, hole) in parts {
            if hole {
                self.send(HashMsg::Zeros(len))?;
                match content.last_mut() {
                    Some(Content::Hole { len: l }) => *l += len,
                    _ => content.push(Content::Hole { len }),
                }
                continue;
            }
            f.seek(SeekFrom::Start(off))
                .map_err(|e| Error::io(path, e))?;
            let got = self
                .chunk(&mut f.take(len), Some(len), &mut content, true)
                .map_err(|e| Error::io(path, e))?;
            short |= got < len;
        }
        if short {
            self.warn(format!(
                "{}: shrank while it was read; the missing end was stored as zeros",
                path.display()
            ));
        }
        self.count_file(0);
        Ok(content)
    }

    /// A byte stream (database dump, stdin) as one regular file. Its length is known only at
    /// the end, so its archive entry is hashed from the repository once it is stored.
    fn stream(&mut self, name: &[u8], apath: &[u8], mut r: Box<dyn Read + Send>) -> Result<Node> {
        let mut node = self.synthetic(name, NodeKind::File, 0o644);
        let mut content = vec![];
        let size = self
            .chunk(&mut r, None, &mut content, false)
            .map_err(|e| Error::io(format!("stream {}", String::from_utf8_lossy(name)), e))?;
        node.size = size;
        node.content = content;
        if size == 0 {
            // An empty stream is most often a producer that failed before a pipe: say so.
            self.warn(format!(
                "{}: the stream was empty (if it comes through a pipe, did the command before it fail? `set -o pipefail` makes a script notice)",
                String::from_utf8_lossy(name)
            ));
        }
        self.pipeline.flush()?;
        self.emit(apath, &node, None, false)?;
        if size > 0 {
            self.send(HashMsg::Stored {
                content: Arc::new(node.content.clone()),
                size,
            })?;
        }
        self.send(HashMsg::Zeros(archive::padding(size)))?;
        self.stats.files_new += 1;
        self.count_file(0);
        Ok(node)
    }

    /// Cut `r` into chunks and store the new ones. With `limit`, exactly that many bytes are
    /// produced (zeros make up for a source that ends early). Returns the bytes actually read.
    fn chunk(
        &mut self,
        r: &mut dyn Read,
        limit: Option<u64>,
        content: &mut Vec<Content>,
        to_hasher: bool,
    ) -> std::io::Result<u64> {
        // The window must hold a whole chunk of the largest size, or no cut can be decided.
        let fill = READ_BUF.max(self.chunker.max_size());
        let mut window = BytesMut::new();
        let mut read = 0u64;
        let mut eof = false;
        loop {
            while !eof && window.len() < fill {
                if self
                    .cancel
                    .as_ref()
                    .is_some_and(|c| c.load(Ordering::Relaxed))
                {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::Interrupted,
                        "interrupted",
                    ));
                }
                let room = fill - window.len();
                let want = match limit {
                    Some(l) => (l - read).min(room as u64) as usize,
                    None => room,
                };
                if want == 0 {
                    eof = true;
                    break;
                }
                let start = window.len();
                window.resize(start + want, 0);
                let n = loop {
                    match r.read(&mut window[start..]) {
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        other => break other,
                    }
                };
                let n = n?;
                window.truncate(start + n);
                read += n as u64;
                if n == 0 {
                    eof = true;
                    // A file that shrank while being read: make up the promised length.
                    if let Some(l) = limit {
                        window.resize(window.len() + (l - read) as usize, 0);
                    }
                }
            }
            while !window.is_empty() {
                let Some(n) = self.chunker.cut(&window, eof) else {
                    break;
                };
                let chunk = window.split_to(n).freeze();
                self.add_chunk(chunk, content, to_hasher)
                    .map_err(std::io::Error::other)?;
            }
            if eof {
                break;
            }
        }
        self.stats.bytes_read += read;
        Ok(read)
    }

    fn add_chunk(
        &mut self,
        chunk: Bytes,
        content: &mut Vec<Content>,
        to_hasher: bool,
    ) -> Result<()> {
        let id = self.repo.blob_id(&chunk);
        let len = chunk.len() as u32;
        if !self.pipeline.has(&id) && !self.known.has_data(&id)? {
            self.stats.bytes_added += len as u64;
            self.pipeline.add(BlobKind::Data, id, chunk.clone())?;
        }
        content.push(Content::Chunk { id, len });
        if let Some(p) = &self.progress {
            p.bytes.fetch_add(len as u64, Ordering::Relaxed);
        }
        if to_hasher {
            self.send(HashMsg::Bytes(chunk))?;
        }
        Ok(())
    }

    /// Whether every chunk of `content` is stored, so that an unchanged file may reuse it.
    /// False when the parent's data was in a pack that is lost or about to be pruned: the
    /// file is then read again.
    fn all_stored(&self, content: &[Content]) -> Result<bool> {
        self.known
            .parent_content_stored(content, |id| self.pipeline.has(id))
    }

    fn store_tree(&mut self, nodes: Vec<Node>) -> Result<Id> {
        let data = Tree { nodes }.encode();
        let id = self.repo.blob_id(&data);
        if !self.known.has_tree(&id) && !self.pipeline.has(&id) {
            self.pipeline.add(BlobKind::Tree, id, Bytes::from(data))?;
        }
        Ok(id)
    }

    fn store_listing(&mut self, nodes: Vec<Node>) -> Result<Listing> {
        let newest = nodes.iter().map(|n| n.mtime).max();
        Ok(Listing {
            tree: self.store_tree(nodes)?,
            newest,
        })
    }
}
