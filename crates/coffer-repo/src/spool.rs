//! Packs read whole once during a verify of a remote repository, kept on local disk so that the
//! archive passes of the same run read them from there instead of from storage a second time.
//!
//! The pack checker reads every pack whole anyway (to prove that its bytes hash to its name)
//! and hands each to the spool, in the order the archive passes first need them. A read of a
//! pack the spool still expects waits for it; a pack it has no room for, or that could not be
//! read, is read from storage as before. Packs are kept as stored (so encrypted), under
//! `<cache base>/.spool/<pid>-<random>/`, removed when the verify ends; what a crashed process
//! left is removed by the next spool.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use crate::backend::{Backend, BackendResult, ObjectInfo};

/// At most this much is kept, and never more than half the free space of the disk.
const LIMIT: u64 = 4 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The checker will hand it over.
    Expected,
    /// On local disk.
    Kept,
    /// Not kept: read from storage.
    Passed,
}

#[derive(Debug)]
pub(crate) struct Spool {
    inner: Arc<dyn Backend>,
    dir: PathBuf,
    state: Mutex<(HashMap<String, Slot>, u64)>,
    changed: Condvar,
}

impl Spool {
    /// A spool under `base` in front of `inner`, expecting the packs `expected` (object names).
    /// `None` when no directory can be made there.
    pub fn new(
        base: &Path,
        inner: Arc<dyn Backend>,
        expected: impl IntoIterator<Item = String>,
    ) -> Option<Arc<Spool>> {
        let root = base.join(".spool");
        remove_abandoned(&root);
        let mut rnd = [0u8; 8];
        crate::crypto::fill_random(&mut rnd);
        let dir = root.join(format!("{}-{}", std::process::id(), hex::encode(rnd)));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .ok()?;
        crate::cache::mark_as_cache(&root);
        let room = free_space(&dir).map_or(0, |free| (free / 2).min(LIMIT));
        let slots = expected.into_iter().map(|n| (n, Slot::Expected)).collect();
        Some(Arc::new(Spool {
            inner,
            dir,
            state: Mutex::new((slots, room)),
            changed: Condvar::new(),
        }))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name.replace('/', "_"))
    }

    /// The checker read `name` whole: keep it if there is room, else let readers use storage.
    pub fn offer(&self, name: &str, data: &[u8]) {
        let room = {
            let mut state = self.state.lock().expect("spool");
            if state.0.get(name) != Some(&Slot::Expected) {
                return;
            }
            let fits = data.len() as u64 <= state.1;
            if fits {
                state.1 -= data.len() as u64;
            }
            fits
        };
        let path = self.path(name);
        let kept = room
            && fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, data))
                .inspect_err(|_| {
                    let _ = fs::remove_file(&path);
                })
                .is_ok();
        self.settle(name, if kept { Slot::Kept } else { Slot::Passed });
    }

    /// The checker could not read `name`: readers go to storage.
    pub fn pass(&self, name: &str) {
        self.settle(name, Slot::Passed);
    }

    /// The checker is done: nothing more is waited for.
    pub fn close(&self) {
        let mut state = self.state.lock().expect("spool");
        for slot in state.0.values_mut() {
            if *slot == Slot::Expected {
                *slot = Slot::Passed;
            }
        }
        self.changed.notify_all();
    }

    fn settle(&self, name: &str, to: Slot) {
        let mut state = self.state.lock().expect("spool");
        if let Some(slot) = state.0.get_mut(name) {
            *slot = to;
        }
        self.changed.notify_all();
    }

    /// Whether `name` is on local disk, waiting for the checker if it is still expected.
    fn kept(&self, name: &str) -> bool {
        let mut state = self.state.lock().expect("spool");
        loop {
            match state.0.get(name) {
                Some(Slot::Expected) => state = self.changed.wait(state).expect("spool"),
                Some(Slot::Kept) => return true,
                Some(Slot::Passed) | None => return false,
            }
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Spools of processes that are gone.
fn remove_abandoned(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten().filter(|e| e.path().is_dir()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.split('-').next().unwrap_or_default();
        if !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

fn free_space(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

impl Backend for Spool {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> BackendResult<()> {
        self.inner.create()
    }
    fn read(&self, name: &str) -> BackendResult<Vec<u8>> {
        if self.kept(name)
            && let Ok(data) = fs::read(self.path(name))
        {
            return Ok(data);
        }
        self.inner.read(name)
    }
    fn read_range(&self, name: &str, offset: u64, len: u64) -> BackendResult<Vec<u8>> {
        if self.kept(name)
            && let Ok(f) = fs::File::open(self.path(name))
        {
            let size = f.metadata().map_or(0, |m| m.len());
            let end = (offset + len).min(size);
            let mut buf = vec![0u8; end.saturating_sub(offset) as usize];
            if f.read_exact_at(&mut buf, offset).is_ok() {
                return Ok(buf);
            }
        }
        self.inner.read_range(name, offset, len)
    }
    fn write(&self, name: &str, data: &[u8]) -> BackendResult<()> {
        self.inner.write(name, data)
    }
    fn list(&self, dir: &str) -> BackendResult<Vec<ObjectInfo>> {
        self.inner.list(dir)
    }
    fn delete(&self, name: &str) -> BackendResult<()> {
        self.inner.delete(name)
    }
    fn size(&self, name: &str) -> BackendResult<Option<u64>> {
        self.inner.size(name)
    }
    fn remove_leftovers(&self) -> BackendResult<u64> {
        self.inner.remove_leftovers()
    }
    // Reads are shaped for the local disk: the packs readers need are there (or on the way).
}
