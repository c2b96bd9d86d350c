//! A local cache of what is small and read often from a remote repository: index files,
//! snapshot objects and the packs that hold trees.
//!
//! Every cached object is kept exactly as the repository stores it (sealed, so encrypted when
//! the repository is), under its object name, in `<base>/<repository id>/`. Its name is the
//! BLAKE3 of its bytes, so an entry is checked before use: its bytes must hash to its name (a
//! damaged entry is removed and the object read from the repository again), and it is used only
//! for an object the repository lists (entries of objects the repository no longer lists are
//! removed when the listing is read: a stale cache never serves what was pruned, and a cache
//! copied from another repository serves nothing, as its directory names another repository
//! and is emptied). Writes go to a temporary name and are renamed: a crash leaves no partial
//! entry under a real name. The cache is bounded (oldest entries removed first when it grows
//! past its limit at open) and optional: without it every read goes to the repository.
//!
//! **Architecture Invariant:** the cache never decides what exists. Listings always come from
//! the repository; the cache only saves reading again what a listing names.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::backend::BackendResult;
use crate::id::Id;
use crate::repo;

/// The size a cache is trimmed to when it is opened, by default.
pub const DEFAULT_LIMIT: u64 = 2 << 30;

const TEMPORARY: &str = ".tmp-";
/// Names the repository a cache directory belongs to.
const OWNER: &str = "repository";
/// Marks the directory as a cache (<https://bford.info/cachedir/>): backups leave it out.
const TAG: &str = "CACHEDIR.TAG";
const TAG_TEXT: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file marks the directory as a cache of Coffer (coffer.dev); it can be deleted.\n";

/// Tag `dir` as a cache, so that backups that leave caches out leave it out.
pub(crate) fn mark_as_cache(dir: &Path) {
    let _ = fs::write(dir.join(TAG), TAG_TEXT);
}

#[derive(Debug)]
pub(crate) struct Cache {
    dir: PathBuf,
    /// Entries whose bytes were checked against their name by this process.
    checked: Mutex<HashSet<String>>,
}

impl Cache {
    /// The cache of repository `id` under `base`, created if needed. A directory that belongs to
    /// another repository is emptied first. `None` when it cannot be made (no cache then).
    pub fn open(base: &Path, id: &Id, limit: u64) -> Option<Cache> {
        let dir = base.join(id.to_hex());
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .ok()?;
        let owner = dir.join(OWNER);
        match fs::read_to_string(&owner) {
            Ok(s) if s.trim() == id.to_hex() => {}
            Ok(_) => {
                // Not this repository's: nothing in it is used.
                for folder in [repo::INDEX, repo::SNAPSHOTS, repo::DATA] {
                    let _ = fs::remove_dir_all(dir.join(folder));
                }
                fs::write(&owner, id.to_hex()).ok()?;
            }
            Err(_) => fs::write(&owner, id.to_hex()).ok()?,
        }
        mark_as_cache(&dir);
        let cache = Cache {
            dir,
            checked: Mutex::new(HashSet::new()),
        };
        cache.trim(limit);
        Some(cache)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The object `name` (`index/<id>`, `snapshots/<id>`, `data/<xx>/<id>`), if cached and intact.
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        let id = repo::id_of_name(name)?;
        let data = fs::read(self.path(name)).ok()?;
        if Id::of_object(&data) != id {
            let _ = fs::remove_file(self.path(name));
            return None;
        }
        // Used now: trimmed last.
        let _ = fs::File::open(self.path(name))
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        self.checked.lock().expect("cache").insert(name.to_string());
        Some(data)
    }

    /// Keep the object `name` (read from the repository and checked against its name).
    pub fn put(&self, name: &str, data: &[u8]) {
        let path = self.path(name);
        let Some(parent) = path.parent() else {
            return;
        };
        let mut rnd = [0u8; 8];
        crate::crypto::fill_random(&mut rnd);
        let tmp = parent.join(format!("{TEMPORARY}{}", hex::encode(rnd)));
        let written = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .and_then(|()| {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)?;
                f.write_all(data)
            })
            .and_then(|()| fs::rename(&tmp, &path));
        match written {
            Ok(()) => {
                self.checked.lock().expect("cache").insert(name.to_string());
            }
            Err(_) => {
                let _ = fs::remove_file(&tmp);
            }
        }
    }

    /// `len` bytes at `offset` of the object `name`, read from the cache when it holds it
    /// intact, else from `whole` (the object read from the repository), which is kept.
    pub fn range(
        &self,
        name: &str,
        offset: u64,
        len: u64,
        whole: impl FnOnce() -> BackendResult<Vec<u8>>,
    ) -> BackendResult<Vec<u8>> {
        let slice = |data: &[u8]| {
            let from = (offset as usize).min(data.len());
            data[from..(from + len as usize).min(data.len())].to_vec()
        };
        let checked = self.checked.lock().expect("cache").contains(name);
        if checked && let Some(part) = self.read_at(name, offset, len) {
            return Ok(part);
        }
        if !checked && let Some(data) = self.get(name) {
            return Ok(slice(&data));
        }
        let data = whole()?;
        if repo::id_of_name(name).is_some_and(|id| Id::of_object(&data) == id) {
            self.put(name, &data);
        }
        Ok(slice(&data))
    }

    fn read_at(&self, name: &str, offset: u64, len: u64) -> Option<Vec<u8>> {
        let mut f = fs::File::open(self.path(name)).ok()?;
        f.seek(SeekFrom::Start(offset)).ok()?;
        let mut buf = Vec::with_capacity(len as usize);
        f.take(len).read_to_end(&mut buf).ok()?;
        Some(buf)
    }

    /// Remove the entries of `folder` that the repository does not list (any more).
    pub fn retain<'a>(&self, folder: &str, listed: impl Iterator<Item = &'a str>) {
        let listed: HashSet<&str> = listed.collect();
        let mut pending = vec![self.dir.join(folder)];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    pending.push(path);
                    continue;
                }
                let name = path
                    .strip_prefix(&self.dir)
                    .ok()
                    .and_then(|p| p.to_str())
                    .unwrap_or_default();
                if !listed.contains(name) {
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }

    /// Remove temporary files a crash left, then the oldest entries while the cache is larger
    /// than `limit`.
    fn trim(&self, limit: u64) {
        let mut files = vec![];
        let mut pending = vec![self.dir.clone()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let Ok(meta) = e.metadata() else {
                    continue;
                };
                if meta.is_dir() {
                    pending.push(e.path());
                } else if e.file_name().to_string_lossy().starts_with(TEMPORARY) {
                    let _ = fs::remove_file(e.path());
                } else if dir != self.dir {
                    files.push((meta.modified().ok(), meta.len(), e.path()));
                }
            }
        }
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, size, path) in files {
            if total <= limit {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= size;
            }
        }
    }
}
