//! The local filesystem backend: write to a temporary file, fsync it, rename it into place,
//! fsync the directory. Deletions fsync the directory too, so that the engine's ordering of
//! deletes (old index files before the packs they list) holds after a power loss.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Backend, BackendError, BackendResult, ObjectInfo};

#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
}

/// Prefix of in-progress files; never listed, so a crash leaves nothing the engine sees. The
/// writer's process and host follow (`.tmp-<random>-<pid>@<host>`), so that what a killed
/// writer left is told from what a live one is writing.
const TEMP_PREFIX: &str = ".tmp-";

fn temp_name() -> String {
    let mut rnd = [0u8; 8];
    crate::crypto::fill_random(&mut rnd);
    format!(
        "{TEMP_PREFIX}{}-{}@{}",
        hex::encode(rnd),
        std::process::id(),
        crate::repo::hostname()
    )
}

/// Whether the temporary file `name`, last written at `modified`, was left by a writer that
/// is gone: a process of this host that no longer runs; one of another host (or without a
/// process id) once it is a day old.
fn abandoned(name: &str, modified: std::time::SystemTime) -> bool {
    let old = modified
        .elapsed()
        .is_ok_and(|age| age > std::time::Duration::from_secs(24 * 3600));
    let writer = name
        .strip_prefix(TEMP_PREFIX)
        .and_then(|rest| rest.split_once('@'))
        .and_then(|(left, host)| Some((left.rsplit_once('-')?.1.parse::<u32>().ok()?, host)));
    match writer {
        Some((pid, host)) if host == crate::repo::hostname() => {
            !crate::lock::process_alive(pid, None)
        }
        _ => old,
    }
}

impl LocalBackend {
    pub fn new(root: PathBuf) -> Self {
        LocalBackend { root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn err(&self, op: &'static str, name: &str, e: &std::io::Error) -> BackendError {
        BackendError::from_io(op, self.path(name).display().to_string(), e)
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `create_dir_all` that makes each new directory durable in its parent.
fn create_dirs_durably(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs_durably(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                fsync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> BackendResult<()> {
        create_dirs_durably(&self.root).map_err(|e| self.err("create", "", &e))
    }

    fn read(&self, name: &str) -> BackendResult<Vec<u8>> {
        fs::read(self.path(name)).map_err(|e| self.err("read", name, &e))
    }

    fn read_range(&self, name: &str, offset: u64, len: u64) -> BackendResult<Vec<u8>> {
        let run = || -> std::io::Result<Vec<u8>> {
            let mut f = File::open(self.path(name))?;
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = Vec::with_capacity(len.min(64 << 20) as usize);
            f.take(len).read_to_end(&mut buf)?;
            Ok(buf)
        };
        run().map_err(|e| self.err("read", name, &e))
    }

    fn write(&self, name: &str, data: &[u8]) -> BackendResult<()> {
        let dest = self.path(name);
        let dir = dest
            .parent()
            .expect("object names have a parent")
            .to_path_buf();
        let run = || -> std::io::Result<()> {
            create_dirs_durably(&dir)?;
            let tmp = dir.join(temp_name());
            let result = (|| {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)?;
                f.write_all(data)?;
                f.sync_all()?;
                drop(f);
                fs::rename(&tmp, &dest)?;
                fsync_dir(&dir)
            })();
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            result
        };
        run().map_err(|e| self.err("write", name, &e))
    }

    fn list(&self, dir: &str) -> BackendResult<Vec<ObjectInfo>> {
        fn walk(root: &Path, rel: &str, out: &mut Vec<ObjectInfo>) -> std::io::Result<()> {
            let entries = match fs::read_dir(root.join(rel)) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if name.starts_with('.') {
                    continue;
                }
                let child = format!("{rel}/{name}");
                let ft = entry.file_type()?;
                if ft.is_dir() {
                    walk(root, &child, out)?;
                } else if ft.is_file() {
                    match entry.metadata() {
                        Ok(m) => out.push(ObjectInfo {
                            name: child,
                            size: m.len(),
                        }),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(())
        }
        let mut out = vec![];
        walk(&self.root, dir, &mut out).map_err(|e| self.err("list", dir, &e))?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn delete(&self, name: &str) -> BackendResult<()> {
        let p = self.path(name);
        match fs::remove_file(&p) {
            Ok(()) => fsync_dir(p.parent().expect("object names have a parent"))
                .map_err(|e| self.err("delete", name, &e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("delete", name, &e)),
        }
    }

    fn size(&self, name: &str) -> BackendResult<Option<u64>> {
        match fs::symlink_metadata(self.path(name)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("stat", name, &e)),
        }
    }

    fn remove_leftovers(&self) -> BackendResult<u64> {
        fn walk(dir: &Path, removed: &mut u64) -> std::io::Result<()> {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let ft = entry.file_type()?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if ft.is_dir() {
                    walk(&entry.path(), removed)?;
                } else if ft.is_file()
                    && name.starts_with(TEMP_PREFIX)
                    && entry
                        .metadata()?
                        .modified()
                        .is_ok_and(|m| abandoned(&name, m))
                {
                    match fs::remove_file(entry.path()) {
                        Ok(()) => *removed += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(())
        }
        let mut removed = 0;
        walk(&self.root, &mut removed).map_err(|e| self.err("clean", "", &e))?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_killed_writers_left_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().to_path_buf());
        b.write("data/ab/abcd", b"an object").unwrap();
        let host = crate::repo::hostname();
        let at = |name: &str| dir.path().join("data/ab").join(name);
        // A writer that is gone (no process has id 0), one that runs (this one), another
        // host's, an older version's without a process.
        let dead = at(&format!("{TEMP_PREFIX}00-0@{host}"));
        let live = at(&format!("{TEMP_PREFIX}01-{}@{host}", std::process::id()));
        let foreign = at(&format!("{TEMP_PREFIX}02-0@another-host"));
        let unnamed = at(&format!("{TEMP_PREFIX}0123"));
        for f in [&dead, &live, &foreign, &unnamed] {
            fs::write(f, b"half written").unwrap();
        }
        assert_eq!(b.remove_leftovers().unwrap(), 1);
        assert!(!dead.exists() && live.exists() && foreign.exists() && unnamed.exists());
        assert_eq!(b.read("data/ab/abcd").unwrap(), b"an object");
        // A day later, the ones nobody can vouch for go too.
        let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(25 * 3600);
        for f in [&foreign, &unnamed] {
            File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(day_ago)
                .unwrap();
        }
        assert_eq!(b.remove_leftovers().unwrap(), 2);
        assert!(live.exists());
    }
}
