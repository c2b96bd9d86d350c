//! Restore a snapshot (or part of it) into a directory.
//!
//! The calling thread walks the snapshot's trees, creating directories, symlinks and special
//! files, and regular files (empty), which it hands over in batches. For each batch, the blobs
//! its files need are read planned per pack (`fetch`: few large range requests, several at a
//! time), decoded, and written at their offsets into every file that holds them; a file is
//! complete (length, metadata, its name) when its last blob is in. Hard links are made once
//! the batches are done, directory metadata last.
//!
//! Safety rules:
//! - Every name comes from a validated tree (one path component, never "." or ".."), and paths
//!   are only ever built by joining such names under the target: nothing lands outside it.
//! - Nothing is written through a symlink: an existing symlink or file where a directory must be
//!   is removed first. A file is created under its own name when that name is free
//!   (`O_EXCL | O_NOFOLLOW`: never over anything, never through a symlink), the common case of
//!   a restore into a new or emptied directory; where something is already there, the file is
//!   written to a fresh temporary name and renamed into place, which replaces it.
//! - Only the walking thread creates names (directories, files, links); the readers write data
//!   and set metadata through the open files. Threads never contend for a directory, and a
//!   fresh target costs one create per file, not a create and a rename.
//! - The walker makes every directory first, then walks again for the rest. Created together,
//!   directories sit together and their files get inodes of their own elsewhere; made one by one
//!   between files, on a file system that avoids reusing recently freed inodes (ext4 without a
//!   journal) each new file searched past the inodes of the files just wiped, and a restore
//!   onto a wiped target took several times longer.
//! - A file whose data is damaged or missing is not written at all; it is reported by name and
//!   the rest of the restore goes on. The caller turns any such report into a failure.
//! - Holes of sparse files are skipped, not written, so they stay holes.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender, bounded};
use serde::Serialize;

use crate::archive::Damage;
use crate::backup::Progress;
use crate::error::{Error, Result};
use crate::fetch;
use crate::id::Id;
use crate::reader::{BlobReader, checked_len};
use crate::session::SnapshotReader;
use crate::tree::{Content, Node, NodeKind, valid_name};

#[derive(Debug, Default)]
pub struct RestoreOptions {
    /// Restore only these paths of the snapshot (and what is below them). Empty: everything.
    pub include: Vec<String>,
    pub progress: Option<Arc<Progress>>,
    pub cancel: Option<Arc<AtomicBool>>,
}

#[derive(Debug, Default, Serialize)]
pub struct RestoreSummary {
    pub snapshot_id: Id,
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    pub bytes: u64,
    /// Files not restored because their data is damaged or missing.
    pub damaged: Vec<Damage>,
    pub warnings: Vec<String>,
    pub duration_ms: u64,
}

/// Parse an include path (`home/me/docs`, `/home/me/docs/`) into tree components.
fn include_components(s: &str) -> Result<Vec<Vec<u8>>> {
    let parts: Vec<Vec<u8>> = s
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(|c| c.as_bytes().to_vec())
        .collect();
    if parts.is_empty() || parts.iter().any(|c| !valid_name(c)) {
        return Err(Error::Invalid(format!(
            "{s:?} is not a path inside the snapshot"
        )));
    }
    Ok(parts)
}

/// What a walk over the trees does: make the directories, or restore the rest.
#[derive(Clone, Copy)]
enum Pass {
    Dirs,
    Rest,
}

enum Selection {
    /// Restore this node and everything below.
    All,
    /// Only a way to something included further down.
    Ancestor,
    Skip,
}

/// A regular file for the workers, created (empty) by the walker.
struct FileJob {
    node: Node,
    dest: PathBuf,
    /// Path inside the snapshot, for reports.
    path: String,
    file: File,
    /// Where `file` was created when something was at `dest` already: renamed over it once
    /// written.
    temporary: Option<PathBuf>,
}

impl FileJob {
    /// Where the data goes until the job is done.
    fn written(&self) -> &Path {
        self.temporary.as_deref().unwrap_or(&self.dest)
    }
}

/// What workers and the walker report, shared between them.
struct Shared {
    as_root: bool,
    files: AtomicU64,
    bytes: AtomicU64,
    damaged: Mutex<Vec<Damage>>,
    warnings: Mutex<Vec<String>>,
    /// The first error that stops the restore.
    failure: Mutex<Option<Error>>,
    stop: AtomicBool,
    progress: Option<Arc<Progress>>,
    cancel: Option<Arc<AtomicBool>>,
}

impl Shared {
    fn warn(&self, msg: String) {
        self.warnings.lock().expect("warnings").push(msg);
    }

    fn fail(&self, e: Error) {
        self.failure.lock().expect("failure").get_or_insert(e);
        self.stop.store(true, Ordering::SeqCst);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// Restore the open snapshot `session` into `target` (`SnapshotReader::restore`).
pub(crate) fn restore(
    session: &SnapshotReader<'_>,
    target: &Path,
    opts: RestoreOptions,
) -> Result<RestoreSummary> {
    let started = std::time::Instant::now();
    let (snap, snapshot_id) = (session.snapshot(), session.id());
    let reader = session.blobs();
    let include = opts
        .include
        .iter()
        .map(|s| include_components(s))
        .collect::<Result<Vec<_>>>()?;
    fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    if !fs::symlink_metadata(target)
        .map_err(|e| Error::io(target, e))?
        .is_dir()
    {
        return Err(Error::Invalid(format!(
            "{}: the restore target is not a directory",
            target.display()
        )));
    }
    let shared = Shared {
        as_root: rustix::process::geteuid().is_root(),
        files: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        damaged: Mutex::new(vec![]),
        warnings: Mutex::new(vec![]),
        failure: Mutex::new(None),
        stop: AtomicBool::new(false),
        progress: opts.progress,
        cancel: opts.cancel.clone(),
    };
    let mut walker = Walker {
        reader: &reader,
        include,
        shared: &shared,
        batch: vec![],
        batch_limit: batch_limit(),
        jobs: None,
        links: HashMap::new(),
        pending_links: vec![],
        dirs: vec![],
        dirs_restored: 0,
        other: 0,
    };
    std::thread::scope(|s| {
        // Batches are read while the walker creates the next ones.
        let (tx, rx) = bounded::<Vec<FileJob>>(1);
        let readers = reader.tuning().parallel;
        let (range_tx, range_rx) = bounded(readers * 2);
        let (reader, shared) = (&reader, &shared);
        s.spawn(move || plan_batches(reader, shared, rx, range_tx));
        for _ in 0..readers {
            let range_rx = range_rx.clone();
            s.spawn(move || read_ranges(reader, shared, range_rx));
        }
        walker.jobs = Some(tx);
        for pass in [Pass::Dirs, Pass::Rest] {
            if let Err(e) = walker.restore_tree(pass, &snap.tree, target, &mut vec![]) {
                shared.fail(e);
                break;
            }
        }
        walker.send_batch();
        // Closing the queue lets the reader finish what is queued and stop.
        walker.jobs = None;
    });
    if let Some(e) = shared.failure.lock().expect("failure").take() {
        return Err(e);
    }
    if shared.stopped() {
        return Err(Error::Interrupted);
    }
    // Hard links need their first name in place.
    for (first, dest) in std::mem::take(&mut walker.pending_links) {
        clear_for(&dest)?;
        match fs::hard_link(&first, &dest) {
            Ok(()) => {
                shared.files.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => shared.warn(format!(
                "{}: not restored as a hard link of {}: {e}",
                dest.display(),
                first.display()
            )),
        }
    }
    while let Some((path, node)) = walker.dirs.pop() {
        set_metadata(&path, &node, None, &shared);
    }
    let (dirs, other) = (walker.dirs_restored, walker.other);
    Ok(RestoreSummary {
        snapshot_id: *snapshot_id,
        files: shared.files.load(Ordering::Relaxed),
        dirs,
        other,
        bytes: shared.bytes.load(Ordering::Relaxed),
        damaged: shared.damaged.into_inner().expect("damaged"),
        warnings: shared.warnings.into_inner().expect("warnings"),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Walks the trees on the calling thread.
struct Walker<'a> {
    reader: &'a BlobReader<'a>,
    include: Vec<Vec<Vec<u8>>>,
    shared: &'a Shared,
    /// Files created and not handed over yet.
    batch: Vec<FileJob>,
    batch_limit: usize,
    jobs: Option<Sender<Vec<FileJob>>>,
    /// First destination of each hard-linked inode, and the links to make afterwards.
    links: HashMap<(u64, u64), PathBuf>,
    pending_links: Vec<(PathBuf, PathBuf)>,
    /// Directories whose metadata is set once their contents are in place (deepest last).
    dirs: Vec<(PathBuf, Node)>,
    dirs_restored: u64,
    other: u64,
}

impl Walker<'_> {
    fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        // A closed queue means the reader stopped on an error, reported by it.
        let _ = self.jobs.as_ref().expect("restore running").send(batch);
    }

    fn select(&self, path: &[Vec<u8>]) -> Selection {
        if self.include.is_empty() {
            return Selection::All;
        }
        let mut sel = Selection::Skip;
        for inc in &self.include {
            if path.starts_with(inc) {
                return Selection::All;
            }
            if inc.starts_with(path) {
                sel = Selection::Ancestor;
            }
        }
        sel
    }

    fn restore_tree(
        &mut self,
        pass: Pass,
        tree_id: &Id,
        dir: &Path,
        apath: &mut Vec<Vec<u8>>,
    ) -> Result<()> {
        let tree = self.reader.tree(tree_id)?;
        for node in &tree.nodes {
            if self.shared.stopped() {
                return Ok(());
            }
            apath.push(node.name.clone());
            let dest = dir.join(OsStr::from_bytes(&node.name));
            let result = match self.select(apath) {
                Selection::Skip => Ok(()),
                Selection::Ancestor if node.kind != NodeKind::Dir => Ok(()),
                _ => match (pass, node.kind) {
                    (Pass::Dirs, NodeKind::Dir) => self.make_dir(node, &dest, apath),
                    (Pass::Dirs, _) => Ok(()),
                    (Pass::Rest, NodeKind::Dir) => self.restore_tree(
                        pass,
                        &node.subtree.expect("validated at decode"),
                        &dest,
                        apath,
                    ),
                    (Pass::Rest, _) => self.restore_node(node, &dest, apath),
                },
            };
            apath.pop();
            result?;
        }
        Ok(())
    }

    /// Make the directory `node` at `dest`, and the directories below it.
    fn make_dir(&mut self, node: &Node, dest: &Path, apath: &mut Vec<Vec<u8>>) -> Result<()> {
        match make_dir(dest) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if !fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
                    remove_any(dest)?;
                    make_dir(dest).map_err(|e| Error::io(dest, e))?;
                }
            }
            created => created.map_err(|e| Error::io(dest, e))?,
        }
        self.dirs_restored += 1;
        self.dirs.push((dest.to_path_buf(), node.clone()));
        let subtree = node.subtree.expect("validated at decode");
        self.restore_tree(Pass::Dirs, &subtree, dest, apath)
    }

    /// Restore what is not a directory.
    fn restore_node(&mut self, node: &Node, dest: &Path, apath: &[Vec<u8>]) -> Result<()> {
        match node.kind {
            NodeKind::Dir => unreachable!("directories are made in their own pass"),
            NodeKind::File => {
                if node.is_hardlink_candidate() {
                    let key = (node.dev, node.inode);
                    if let Some(first) = self.links.get(&key) {
                        self.pending_links.push((first.clone(), dest.to_path_buf()));
                        return Ok(());
                    }
                    self.links.insert(key, dest.to_path_buf());
                }
                let path = apath
                    .iter()
                    .map(|c| String::from_utf8_lossy(c))
                    .collect::<Vec<_>>()
                    .join("/");
                let (file, temporary) = match create(dest) {
                    Ok(f) => (f, None),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let mut rnd = [0u8; 8];
                        crate::crypto::fill_random(&mut rnd);
                        let tmp = dest.with_file_name(temporary_name(&rnd));
                        (create(&tmp).map_err(|e| Error::io(&tmp, e))?, Some(tmp))
                    }
                    Err(e) => return Err(Error::io(dest, e)),
                };
                self.batch.push(FileJob {
                    node: node.clone(),
                    dest: dest.to_path_buf(),
                    path,
                    file,
                    temporary,
                });
                if self.batch.len() >= self.batch_limit {
                    self.send_batch();
                }
                Ok(())
            }
            NodeKind::Symlink => {
                let link = || std::os::unix::fs::symlink(OsStr::from_bytes(&node.target), dest);
                match link() {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        remove_any(dest)?;
                        link().map_err(|e| Error::io(dest, e))?;
                    }
                    made => made.map_err(|e| Error::io(dest, e))?,
                }
                self.other += 1;
                set_metadata(dest, node, None, self.shared);
                Ok(())
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                clear_for(dest)?;
                let ft = match node.kind {
                    NodeKind::Fifo => rustix::fs::FileType::Fifo,
                    NodeKind::CharDevice => rustix::fs::FileType::CharacterDevice,
                    _ => rustix::fs::FileType::BlockDevice,
                };
                let mode = rustix::fs::Mode::from_raw_mode(node.mode);
                match rustix::fs::mknodat(rustix::fs::CWD, dest, ft, mode, node.rdev) {
                    Ok(()) => {
                        self.other += 1;
                        set_metadata(dest, node, None, self.shared);
                    }
                    Err(e) => self
                        .shared
                        .warn(format!("{}: not created: {e}", dest.display())),
                }
                Ok(())
            }
        }
    }
}

/// How many files a batch holds: their blobs are planned together, and each is open until
/// written, so the process's limit on open files bounds it (raised to the hard limit first, as
/// the kernel allows any process to).
fn batch_limit() -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    let open_files = getrlimit(Resource::Nofile).current.unwrap_or(1 << 20);
    // `BATCHES_IN_FLIGHT` batches are read while the walker makes the next two; leave room
    // for the rest of the process.
    (open_files / (4 * (BATCHES_IN_FLIGHT as u64 + 2))).clamp(16, 1024) as usize
}

/// Batches whose blobs are being read at the same time, at most: enough that the readers never
/// wait for a batch's last range, few enough to bound the files open.
const BATCHES_IN_FLIGHT: usize = 4;

/// Plan each batch the walker hands over and queue its ranges for the readers.
fn plan_batches<'a>(
    reader: &BlobReader,
    shared: &'a Shared,
    batches: Receiver<Vec<FileJob>>,
    ranges: Sender<(Arc<Batch<'a>>, usize)>,
) {
    let (slots, freed) = bounded::<()>(BATCHES_IN_FLIGHT);
    for jobs in batches {
        if shared.stopped() {
            // Drain the queue so the walker never blocks; what it created goes again.
            for job in jobs {
                let _ = fs::remove_file(job.written());
            }
            continue;
        }
        if slots.send(()).is_err() {
            return;
        }
        let batch = Arc::new(Batch::new(reader, shared, jobs, freed.clone()));
        if let Err(e) = batch.start() {
            shared.fail(e);
        }
        for i in 0..batch.ranges.len() {
            if ranges.send((batch.clone(), i)).is_err() {
                return;
            }
        }
    }
}

/// Read the ranges queued, writing their blobs into the files of their batch.
fn read_ranges(reader: &BlobReader, shared: &Shared, ranges: Receiver<(Arc<Batch>, usize)>) {
    for (batch, i) in ranges {
        if shared.stopped() {
            continue;
        }
        let read = fetch::read_range(reader.repo(), &batch.ranges[i], &mut |b, data| {
            if let Err(e) = batch.put(&b.id, &data) {
                shared.fail(e);
            }
        });
        if let Err(e) = read {
            shared.fail(e);
        }
    }
}

/// A file of a batch being filled.
struct Filling {
    job: FileJob,
    /// Blobs still to be written.
    remaining: usize,
    /// The first damage found: the file is dropped once its last blob is in.
    damage: Option<Error>,
}

/// Files handed over together; their blobs are read planned per pack and written at their
/// offsets into every file that holds them. Shared by the readers of its ranges: when the last
/// one is done with it, what a stop or a failure left unfinished is removed (it goes again).
struct Batch<'a> {
    files: Vec<Mutex<Filling>>,
    /// Where each blob goes: (file, offset, length).
    targets: HashMap<Id, Vec<(usize, u64, u32)>>,
    ranges: Vec<fetch::PackRange>,
    missing: Vec<Id>,
    shared: &'a Shared,
    /// Frees this batch's place among those in flight when it is dropped.
    slot: Receiver<()>,
}

impl<'a> Batch<'a> {
    fn new(
        reader: &BlobReader,
        shared: &'a Shared,
        jobs: Vec<FileJob>,
        slot: Receiver<()>,
    ) -> Batch<'a> {
        let mut targets: HashMap<Id, Vec<(usize, u64, u32)>> = HashMap::new();
        let mut order = vec![];
        let mut files = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.into_iter().enumerate() {
            let (mut offset, mut remaining) = (0u64, 0);
            for c in &job.node.content {
                match *c {
                    Content::Hole { len } => offset += len,
                    Content::Chunk { id, len } => {
                        let places = targets.entry(id).or_default();
                        if places.is_empty() {
                            order.push(id);
                        }
                        places.push((i, offset, len));
                        remaining += 1;
                        offset += len as u64;
                    }
                }
            }
            files.push(Mutex::new(Filling {
                job,
                remaining,
                damage: None,
            }));
        }
        let (ranges, missing) = fetch::plan(reader.index(), order, &reader.tuning());
        Batch {
            files,
            targets,
            ranges,
            missing,
            shared,
            slot,
        }
    }

    /// Complete the files that need no blob, and give up the blobs no index lists.
    fn start(&self) -> Result<()> {
        for f in &self.files {
            let mut f = f.lock().expect("file");
            if f.remaining == 0 {
                finish_file(self.shared, &mut f)?;
            }
        }
        for id in &self.missing {
            self.put(id, &Err(Error::MissingBlob(id.to_hex())))?;
        }
        Ok(())
    }

    /// Write the blob `id` (or its damage) into every file of the batch that holds it.
    fn put(&self, id: &Id, data: &Result<bytes::Bytes>) -> Result<()> {
        for &(i, offset, len) in &self.targets[id] {
            let mut f = self.files[i].lock().expect("file");
            if f.damage.is_none() {
                let checked = match data {
                    Ok(d) => checked_len(d.clone(), id, len),
                    Err(e) => Err(e.copy_damage()),
                };
                match checked {
                    Ok(d) => {
                        let path = f.job.written();
                        f.job
                            .file
                            .write_all_at(&d, offset)
                            .map_err(|e| Error::io(path, e))?;
                        if let Some(p) = &self.shared.progress {
                            p.bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
                        }
                    }
                    Err(e) => f.damage = Some(e),
                }
            }
            f.remaining -= 1;
            if f.remaining == 0 {
                finish_file(self.shared, &mut f)?;
            }
        }
        Ok(())
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        for f in &mut self.files {
            let f = f.get_mut().expect("file");
            if f.remaining > 0 {
                let _ = fs::remove_file(f.job.written());
            }
        }
        let _ = self.slot.try_recv();
    }
}

/// A file whose last blob is in: dropped if damaged, else its length and metadata set and, if
/// it was written under a temporary name, renamed into place.
fn finish_file(shared: &Shared, f: &mut Filling) -> Result<()> {
    let job = &f.job;
    let written = job.written();
    if let Some(e) = f.damage.take() {
        let _ = fs::remove_file(written);
        let damage = Damage::new(&job.path, &e);
        shared.damaged.lock().expect("damaged").push(damage);
        return Ok(());
    }
    // Extends a trailing hole without writing it.
    job.file
        .set_len(job.node.size)
        .map_err(|e| Error::io(written, e))?;
    set_metadata(written, &job.node, Some(&job.file), shared);
    if job.temporary.is_some() {
        let dest = &job.dest;
        if fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
            remove_any(dest)?;
        }
        fs::rename(written, dest).map_err(|e| Error::io(dest, e))?;
    }
    shared.files.fetch_add(1, Ordering::Relaxed);
    shared.bytes.fetch_add(job.node.size, Ordering::Relaxed);
    if let Some(p) = &shared.progress {
        p.files.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// The name of a file being restored, before it is renamed into place.
fn temporary_name(random: &[u8; 8]) -> String {
    format!("{TEMPORARY_PREFIX}{}", hex::encode(random))
}

const TEMPORARY_PREFIX: &str = ".coffer-restore-";

/// Remove what a restore into `target` that was killed left behind: its temporary files
/// (`.coffer-restore-` and 16 hex digits), anywhere below `target`. Returns what it did.
pub fn remove_leftovers(target: &Path) -> Vec<String> {
    let is_temporary = |name: &std::ffi::OsStr| {
        name.to_str()
            .and_then(|n| n.strip_prefix(TEMPORARY_PREFIX))
            .is_some_and(|rest| rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let (mut removed, mut pending) = (0, vec![target.to_path_buf()]);
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => pending.push(e.path()),
                Ok(t) if t.is_file() && is_temporary(&e.file_name()) => {
                    removed += usize::from(fs::remove_file(e.path()).is_ok());
                }
                _ => {}
            }
        }
    }
    match removed {
        0 => vec![],
        n => vec![format!(
            "removed {n} temporary files under {}",
            target.display()
        )],
    }
}

/// Create `path` for writing, empty and private; never over anything, never through a
/// symlink.
fn create(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Owner (as root), extended attributes, mode and times; problems become warnings. Through
/// `open` when the file is open (no path lookups), else by path, never following a symlink.
fn set_metadata(path: &Path, node: &Node, open: Option<&File>, shared: &Shared) {
    let warn = |what: &str, e: &dyn std::fmt::Display| {
        shared.warn(format!("{}: {what} not restored: {e}", path.display()))
    };
    if shared.as_root {
        let owner = (
            Some(rustix::fs::Uid::from_raw(node.uid)),
            Some(rustix::fs::Gid::from_raw(node.gid)),
        );
        let done = match open {
            Some(f) => rustix::fs::fchown(f, owner.0, owner.1),
            None => rustix::fs::chownat(
                rustix::fs::CWD,
                path,
                owner.0,
                owner.1,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            ),
        };
        if let Err(e) = done {
            warn("owner", &e);
        }
    }
    for (k, v) in &node.xattrs {
        let name = OsStr::from_bytes(k);
        let done = match open {
            Some(f) => xattr::FileExt::set_xattr(f, name, v),
            None => xattr::set(path, name, v),
        };
        if let Err(e) = done {
            warn(
                &format!("extended attribute {}", String::from_utf8_lossy(k)),
                &e,
            );
        }
    }
    if node.kind != NodeKind::Symlink {
        let perm = fs::Permissions::from_mode(node.mode);
        let done = match open {
            Some(f) => f.set_permissions(perm),
            None => fs::set_permissions(path, perm),
        };
        if let Err(e) = done {
            warn("mode", &e);
        }
    }
    let ts = rustix::time::Timespec {
        tv_sec: node.mtime.0,
        tv_nsec: node.mtime.1 as _,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    let done = match open {
        Some(f) => rustix::fs::futimens(f, &times),
        None => rustix::fs::utimensat(
            rustix::fs::CWD,
            path,
            &times,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        ),
    };
    if let Err(e) = done {
        warn("modification time", &e);
    }
}

/// A new directory, owner-writable until its final mode is applied after its contents
/// (modes like 0555).
fn make_dir(p: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new().create(p)?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o700))
}

/// Make room for a non-directory at `p`: remove whatever is there.
fn clear_for(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(_) => remove_any(p),
        Err(_) => Ok(()),
    }
}

fn remove_any(p: &Path) -> Result<()> {
    let m = fs::symlink_metadata(p).map_err(|e| Error::io(p, e))?;
    let r = if m.is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    };
    r.map_err(|e| Error::io(p, e))
}
