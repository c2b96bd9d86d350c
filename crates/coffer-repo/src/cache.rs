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
//! past its limit at open) and optional: without it every read goes to the repository. The cache
//! of a repository not opened for 30 days (deleted, moved, unregistered) is removed when another
//! one under the same base is opened.
//!
//! **Architecture Invariant:** the cache never decides what exists. Listings always come from
//! the repository; the cache only saves reading again what a listing names.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::backend::BackendResult;
use crate::id::Id;
use crate::repo;

/// The size a cache is trimmed to when it is opened, by default.
pub const DEFAULT_LIMIT: u64 = 2 << 30;

const TEMPORARY: &str = ".tmp-";
/// Names the repository a cache directory belongs to; its modification time is when the cache
/// was last opened.
const OWNER: &str = "repository";
/// A cache not opened for this long is removed.
const UNUSED_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
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

/// Mark `path` as used now (its modification time).
fn touch(path: &Path) {
    let _ = fs::File::open(path).and_then(|f| f.set_modified(SystemTime::now()));
}

/// Remove the caches under `base`, other than `open`, that no one opened for `UNUSED_FOR`.
/// Only directories named like a repository id and holding an owner file are touched.
fn remove_unused(base: &Path, open: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let named_like_a_cache = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.parse::<Id>().is_ok());
        if path == open || !named_like_a_cache {
            continue;
        }
        let last_opened = fs::metadata(path.join(OWNER)).and_then(|m| m.modified());
        if let Ok(t) = last_opened
            && t.elapsed().is_ok_and(|age| age > UNUSED_FOR)
        {
            let _ = fs::remove_dir_all(&path);
        }
    }
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
            // Opened now: not removed as unused (a new owner file is as recent already).
            Ok(s) if s.trim() == id.to_hex() => touch(&owner),
            Ok(_) => {
                // Not this repository's: nothing in it is used.
                for folder in [repo::INDEX, repo::SNAPSHOTS, repo::DATA] {
                    let _ = fs::remove_dir_all(dir.join(folder));
                }
                fs::write(&owner, id.to_hex()).ok()?;
            }
            Err(_) => fs::write(&owner, id.to_hex()).ok()?,
        }
        remove_unused(base, &dir);
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
        touch(&self.path(name));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Opening a cache removes the caches of other repositories not opened for 30 days, and
    /// leaves alone recent ones and whatever else is in the directory.
    #[test]
    fn caches_unused_for_a_month_are_removed() {
        let base = tempfile::tempdir().unwrap();
        let (old, recent) = (Id::random(), Id::random());
        Cache::open(base.path(), &old, DEFAULT_LIMIT).unwrap();
        Cache::open(base.path(), &recent, DEFAULT_LIMIT).unwrap();
        let month_ago = SystemTime::now() - UNUSED_FOR - Duration::from_secs(3600);
        let owner = base.path().join(old.to_hex()).join(OWNER);
        fs::File::open(&owner)
            .and_then(|f| f.set_modified(month_ago))
            .unwrap();
        let unrelated = base.path().join("not-a-cache");
        fs::create_dir(&unrelated).unwrap();
        fs::File::open(&unrelated)
            .and_then(|f| f.set_modified(month_ago))
            .unwrap();

        let current = Cache::open(base.path(), &Id::random(), DEFAULT_LIMIT).unwrap();
        assert!(!base.path().join(old.to_hex()).exists());
        assert!(base.path().join(recent.to_hex()).exists());
        assert!(unrelated.exists());
        assert!(current.dir().exists());
        // Opening it again keeps it: it was just used.
        Cache::open(base.path(), &recent, DEFAULT_LIMIT).unwrap();
        assert!(base.path().join(recent.to_hex()).exists());
    }
}
