//! The storing half of a backup: compression workers → packer → uploaders → index files.
//!
//! ```text
//! walker ──blobs──▶ compressors (one per core) ──▶ packer (encrypts, fills packs)
//!                                                     └──packs──▶ uploaders ──▶ backend
//!                                                                    └─ every 32 packs: index file
//! ```
//! Every channel is bounded, so memory stays bounded whatever the size of the data. A pack is
//! listed in an index file only after its upload returned (durable), and the snapshot is written
//! only after `finish` has written the last index file: the write order of PRODUCT.md §2.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, bounded};

use crate::compress::{Compression, Compressor};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{self, Index, Location, PackEntries};
use crate::pack::{BlobKind, FinishedPack, PackBuilder};
use crate::repo::{self, Repository};

/// Packs per index file written during a backup.
const PACKS_PER_INDEX: usize = 32;

struct RawBlob {
    kind: BlobKind,
    id: Id,
    data: Bytes,
}

struct ReadyBlob {
    kind: BlobKind,
    id: Id,
    raw_len: usize,
    compression: Compression,
    data: Vec<u8>,
}

enum PackerMsg {
    Blobs(Vec<ReadyBlob>),
    Flush,
}

/// Blobs travel to the compressors in batches of about this many bytes (or blobs): a hand-off
/// between threads costs more than compressing a small file.
const BATCH_BYTES: usize = 1024 * 1024;
const BATCH_BLOBS: usize = 64;

#[derive(Default)]
struct Counts {
    sent: u64,
    packed: u64,
    durable: u64,
}

/// State shared by the pipeline's threads.
struct Shared {
    counts: Mutex<Counts>,
    changed: Condvar,
    error: Mutex<Option<Error>>,
    failed: AtomicBool,
    /// Durable packs not yet listed in an index file.
    unindexed: Mutex<Vec<PackEntries>>,
    /// Every blob stored by this backup, for reading back before the index is written.
    stored: StoredBlobs,
    /// Blobs queued but not yet in `stored`; one leaves only after it is there.
    pending: Mutex<HashSet<Id>>,
    stored_bytes: AtomicU64,
    packs: AtomicU64,
}

impl Shared {
    fn fail(&self, e: Error) {
        let mut slot = self.error.lock().expect("error slot");
        if slot.is_none() {
            *slot = Some(e);
        }
        self.failed.store(true, Ordering::SeqCst);
        let _guard = self.counts.lock().expect("counts");
        self.changed.notify_all();
    }

    fn take_error(&self) -> Option<Error> {
        self.error.lock().expect("error slot").take()
    }
}

/// Where each blob stored so far by this backup is (an index of its own, folded into its
/// sorted list as it grows: a first backup of millions of small files stores millions of
/// blobs).
#[derive(Clone, Default)]
pub(crate) struct StoredBlobs(Arc<Mutex<Index>>);

impl StoredBlobs {
    pub fn get(&self, id: &Id) -> Option<Location> {
        self.0.lock().expect("stored").lookup(id)
    }

    fn add(&self, pack: &PackEntries) {
        self.0.lock().expect("stored").add_pack(pack, false);
    }
}

/// What the pipeline stored, returned by `finish`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StoreStats {
    pub stored_bytes: u64,
    pub packs: u64,
}

pub(crate) struct Pipeline {
    repo: Repository,
    blobs: Option<Sender<Vec<RawBlob>>>,
    /// Blobs waiting to be sent as one batch, and their total size.
    batch: Mutex<(Vec<RawBlob>, usize)>,
    packer: Option<Sender<PackerMsg>>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Pipeline {
    pub fn start(repo: &Repository) -> Pipeline {
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 8);
        let uploaders = 2;
        let shared = Arc::new(Shared {
            counts: Mutex::new(Counts::default()),
            changed: Condvar::new(),
            error: Mutex::new(None),
            failed: AtomicBool::new(false),
            unindexed: Mutex::new(vec![]),
            stored: StoredBlobs::default(),
            pending: Mutex::new(HashSet::new()),
            stored_bytes: AtomicU64::new(0),
            packs: AtomicU64::new(0),
        });
        let (blob_tx, blob_rx) = bounded::<Vec<RawBlob>>(workers * 2);
        let (packer_tx, packer_rx) = bounded::<PackerMsg>(workers * 2);
        let (upload_tx, upload_rx) = bounded::<FinishedPack>(uploaders);
        let mut threads = vec![];
        for i in 0..workers {
            let (rx, tx, sh) = (blob_rx.clone(), packer_tx.clone(), shared.clone());
            let level = repo.config().compression_level;
            threads.push(spawn(&format!("coffer-compress-{i}"), move || {
                compress_loop(level, rx, tx, sh)
            }));
        }
        {
            let (repo, sh) = (repo.clone(), shared.clone());
            threads.push(spawn("coffer-packer", move || {
                packer_loop(&repo, packer_rx, upload_tx, sh)
            }));
        }
        for i in 0..uploaders {
            let (repo, rx, sh) = (repo.clone(), upload_rx.clone(), shared.clone());
            threads.push(spawn(&format!("coffer-upload-{i}"), move || {
                upload_loop(&repo, rx, sh)
            }));
        }
        Pipeline {
            repo: repo.clone(),
            blobs: Some(blob_tx),
            batch: Mutex::new((vec![], 0)),
            packer: Some(packer_tx),
            shared,
            threads,
        }
    }

    fn check(&self) -> Result<()> {
        if self.shared.failed.load(Ordering::SeqCst) {
            return Err(self.shared.take_error().unwrap_or(Error::Interrupted));
        }
        Ok(())
    }

    /// Queue a new blob for storing. The caller has already decided it is not a duplicate.
    pub fn add(&self, kind: BlobKind, id: Id, data: Bytes) -> Result<()> {
        self.check()?;
        self.shared.pending.lock().expect("pending").insert(id);
        self.shared.counts.lock().expect("counts").sent += 1;
        let full = {
            let mut batch = self.batch.lock().expect("batch");
            batch.1 += data.len();
            batch.0.push(RawBlob { kind, id, data });
            batch.0.len() >= BATCH_BLOBS || batch.1 >= BATCH_BYTES
        };
        if full { self.send_batch() } else { Ok(()) }
    }

    /// Whether this backup has queued the blob already (stored or on its way). No set of its
    /// own beside `stored`: a first backup of millions of small files would hold one more
    /// entry per blob.
    pub fn has(&self, id: &Id) -> bool {
        // `pending` first: a blob leaves it only after it is in `stored`.
        self.shared.pending.lock().expect("pending").contains(id)
            || self.shared.stored.get(id).is_some()
    }

    fn send_batch(&self) -> Result<()> {
        let batch = std::mem::take(&mut *self.batch.lock().expect("batch")).0;
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self.blobs.as_ref().expect("pipeline running");
        if tx.send(batch).is_err() {
            self.check()?;
            return Err(Error::Interrupted);
        }
        Ok(())
    }

    /// Wait until every blob queued so far is durably stored (used before reading a just-stored
    /// stream back). Closes the open packs early, which is fine: they are just smaller.
    pub fn flush(&self) -> Result<()> {
        self.send_batch()?;
        self.wait_until(|c| c.packed == c.sent)?;
        if self
            .packer
            .as_ref()
            .expect("pipeline running")
            .send(PackerMsg::Flush)
            .is_err()
        {
            self.check()?;
        }
        self.wait_until(|c| c.durable == c.sent)
    }

    fn wait_until(&self, done: impl Fn(&Counts) -> bool) -> Result<()> {
        let mut c = self.shared.counts.lock().expect("counts");
        while !done(&c) {
            if self.shared.failed.load(Ordering::SeqCst) {
                drop(c);
                return self.check();
            }
            c = self.shared.changed.wait(c).expect("counts");
        }
        Ok(())
    }

    /// Where the blobs stored by this backup live, for reading them back before the index
    /// file that lists them is written.
    pub fn stored_blobs(&self) -> StoredBlobs {
        self.shared.stored.clone()
    }

    /// Store everything still queued, write the last index file, stop the threads.
    pub fn finish(mut self) -> Result<StoreStats> {
        self.send_batch()?;
        drop(self.blobs.take());
        drop(self.packer.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(e) = self.shared.take_error() {
            return Err(e);
        }
        write_index(&self.repo, &self.shared, true)?;
        Ok(StoreStats {
            stored_bytes: self.shared.stored_bytes.load(Ordering::SeqCst),
            packs: self.shared.packs.load(Ordering::SeqCst),
        })
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // On an early return the threads see closed channels (or the failure flag) and stop.
        self.shared.failed.store(true, Ordering::SeqCst);
        drop(self.blobs.take());
        drop(self.packer.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawn pipeline thread")
}

fn compress_loop(level: i32, rx: Receiver<Vec<RawBlob>>, tx: Sender<PackerMsg>, sh: Arc<Shared>) {
    let mut c = Compressor::new(level);
    for batch in rx {
        if sh.failed.load(Ordering::Relaxed) {
            return;
        }
        let ready = batch
            .into_iter()
            .map(|b| {
                let raw_len = b.data.len();
                let (compression, data) = match c.compress(&b.data) {
                    Some(z) => (Compression::Zstd, z),
                    None => {
                        // Room for the AEAD tag, so sealing does not copy again.
                        let mut v = Vec::with_capacity(raw_len + crate::crypto::TAG_LEN);
                        v.extend_from_slice(&b.data);
                        (Compression::None, v)
                    }
                };
                ReadyBlob {
                    kind: b.kind,
                    id: b.id,
                    raw_len,
                    compression,
                    data,
                }
            })
            .collect();
        if tx.send(PackerMsg::Blobs(ready)).is_err() {
            return;
        }
    }
}

fn packer_loop(
    repo: &Repository,
    rx: Receiver<PackerMsg>,
    tx: Sender<FinishedPack>,
    sh: Arc<Shared>,
) {
    let target = repo.config().pack_size as usize;
    // Trees and data go to separate packs, so that reading all trees (prune, incremental
    // backups) never downloads file content.
    let mut open: [Option<PackBuilder>; 2] = [None, None];
    let send = |p: PackBuilder| tx.send(p.finish()).is_ok();
    for msg in rx {
        match msg {
            PackerMsg::Blobs(blobs) => {
                let n = blobs.len() as u64;
                for b in blobs {
                    let slot = &mut open[b.kind as usize];
                    let pack = slot.get_or_insert_with(|| PackBuilder::new(repo, target));
                    pack.add(b.kind, b.id, b.raw_len, b.compression, b.data);
                    if pack.len() >= target && !send(slot.take().expect("just filled")) {
                        return;
                    }
                }
                let mut c = sh.counts.lock().expect("counts");
                c.packed += n;
                sh.changed.notify_all();
            }
            PackerMsg::Flush => {
                for slot in &mut open {
                    if let Some(p) = slot.take().filter(|p| !p.is_empty())
                        && !send(p)
                    {
                        return;
                    }
                }
            }
        }
    }
    for slot in &mut open {
        if let Some(p) = slot.take().filter(|p| !p.is_empty())
            && !send(p)
        {
            return;
        }
    }
}

fn upload_loop(repo: &Repository, rx: Receiver<FinishedPack>, sh: Arc<Shared>) {
    for pack in rx {
        if sh.failed.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = repo.backend().write(&repo::pack_name(&pack.id), &pack.data) {
            sh.fail(e.into());
            return;
        }
        sh.stored_bytes
            .fetch_add(pack.data.len() as u64, Ordering::SeqCst);
        sh.packs.fetch_add(1, Ordering::SeqCst);
        let n = pack.entries.len() as u64;
        let entries = PackEntries {
            id: pack.id,
            seed: pack.seed,
            blobs: pack.entries,
        };
        sh.stored.add(&entries);
        {
            let mut pending = sh.pending.lock().expect("pending");
            for b in &entries.blobs {
                pending.remove(&b.id);
            }
        }
        sh.unindexed.lock().expect("unindexed").push(entries);
        {
            let mut c = sh.counts.lock().expect("counts");
            c.durable += n;
            sh.changed.notify_all();
        }
        if let Err(e) = write_index(repo, &sh, false) {
            sh.fail(e);
            return;
        }
    }
}

/// Write an index file for durable packs not yet indexed: when enough have gathered, or all of
/// them when `all` (end of the backup).
fn write_index(repo: &Repository, sh: &Shared, all: bool) -> Result<()> {
    let batch = {
        let mut u = sh.unindexed.lock().expect("unindexed");
        if u.is_empty() || (!all && u.len() < PACKS_PER_INDEX) {
            return Ok(());
        }
        std::mem::take(&mut *u)
    };
    let (_, size) = index::write_file(repo, &batch)?;
    sh.stored_bytes.fetch_add(size, Ordering::SeqCst);
    Ok(())
}
