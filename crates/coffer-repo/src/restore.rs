//! Restore a snapshot (or part of it) into a directory.
//!
//! The calling thread walks the snapshot's trees, creating directories, symlinks and special
//! files; regular files are written by a pool of workers (reading, decrypting and decompressing
//! blobs in parallel). Hard links are made once the workers are done, directory metadata last.
//!
//! Safety rules:
//! - Every name comes from a validated tree (one path component, never "." or ".."), and paths
//!   are only ever built by joining such names under the target: nothing lands outside it.
//! - Nothing is written through a symlink: an existing symlink or file where a directory must be
//!   is removed first. A file is created under its own name when that name is free
//!   (`O_EXCL | O_NOFOLLOW`: never over anything, never through a symlink), the common case of
//!   a restore into a new or emptied directory; where something is already there, the file is
//!   written to a fresh temporary name and renamed into place, which replaces it.
//! - Only the walking thread creates names (directories, files, links); the workers write data
//!   and set metadata through their open files. Threads never contend for a directory, and a
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
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender, bounded};
use serde::Serialize;

use crate::archive::Damage;
use crate::backup::Progress;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::reader::BlobReader;
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
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    let mut walker = Walker {
        reader: &reader,
        include,
        shared: &shared,
        jobs: None,
        links: HashMap::new(),
        pending_links: vec![],
        dirs: vec![],
        dirs_restored: 0,
        other: 0,
    };
    std::thread::scope(|s| {
        let (tx, rx) = bounded::<FileJob>(workers * 4);
        for _ in 0..workers {
            let (rx, reader, shared) = (rx.clone(), &reader, &shared);
            s.spawn(move || worker(reader, shared, rx));
        }
        walker.jobs = Some(tx);
        for pass in [Pass::Dirs, Pass::Rest] {
            if let Err(e) = walker.restore_tree(pass, &snap.tree, target, &mut vec![]) {
                shared.fail(e);
                break;
            }
        }
        // Closing the queue lets the workers finish what is queued and stop.
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
    jobs: Option<Sender<FileJob>>,
    /// First destination of each hard-linked inode, and the links to make afterwards.
    links: HashMap<(u64, u64), PathBuf>,
    pending_links: Vec<(PathBuf, PathBuf)>,
    /// Directories whose metadata is set once their contents are in place (deepest last).
    dirs: Vec<(PathBuf, Node)>,
    dirs_restored: u64,
    other: u64,
}

impl Walker<'_> {
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
                let job = FileJob {
                    node: node.clone(),
                    dest: dest.to_path_buf(),
                    path,
                    file,
                    temporary,
                };
                // A closed queue means the workers stopped on an error, reported by them.
                let _ = self.jobs.as_ref().expect("restore running").send(job);
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

fn worker(reader: &BlobReader, shared: &Shared, jobs: Receiver<FileJob>) {
    for job in jobs {
        if shared.stopped() {
            // Drain the queue so the walker never blocks; what it created goes again.
            let _ = fs::remove_file(job.written());
            continue;
        }
        if let Err(e) = restore_file(reader, shared, job) {
            shared.fail(e);
        }
    }
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

/// Write one file the walker created, then rename it into place if it was created under a
/// temporary name.
fn restore_file(reader: &BlobReader, shared: &Shared, mut job: FileJob) -> Result<()> {
    let written = job.written().to_path_buf();
    if let Err(e) = write_content(reader, shared, &mut job.file, &job.node, &written) {
        drop(job.file);
        let _ = fs::remove_file(&written);
        if !e.is_damage() {
            return Err(e);
        }
        shared
            .damaged
            .lock()
            .expect("damaged")
            .push(Damage::new(&job.path, &e));
        return Ok(());
    }
    set_metadata(&written, &job.node, Some(&job.file), shared);
    drop(job.file);
    if job.temporary.is_some() {
        let dest = &job.dest;
        if fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
            remove_any(dest)?;
        }
        fs::rename(&written, dest).map_err(|e| Error::io(dest, e))?;
    }
    shared.files.fetch_add(1, Ordering::Relaxed);
    shared.bytes.fetch_add(job.node.size, Ordering::Relaxed);
    if let Some(p) = &shared.progress {
        p.files.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn write_content(
    reader: &BlobReader,
    shared: &Shared,
    f: &mut File,
    node: &Node,
    path: &Path,
) -> Result<()> {
    let io = |e| Error::io(path, e);
    for c in &node.content {
        if shared.stopped() {
            return Err(Error::Interrupted);
        }
        match c {
            Content::Hole { len } => {
                f.seek(SeekFrom::Current(*len as i64)).map_err(io)?;
            }
            Content::Chunk { id, len } => {
                let data = reader.chunk(id, *len)?;
                f.write_all(&data).map_err(io)?;
                if let Some(p) = &shared.progress {
                    p.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
        }
    }
    // Extends a trailing hole without writing it.
    f.set_len(node.size).map_err(io)?;
    Ok(())
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
