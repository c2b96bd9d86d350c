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

/// Prefix of in-progress files; never listed, so a crash leaves nothing the engine sees.
const TEMP_PREFIX: &str = ".tmp-";

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
            let mut rnd = [0u8; 8];
            crate::crypto::fill_random(&mut rnd);
            let tmp = dir.join(format!("{TEMP_PREFIX}{}", hex::encode(rnd)));
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
}
