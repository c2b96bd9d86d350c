//! Reading blobs and trees back from the repository, fully checked.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::Index;
use crate::repo::Repository;
use crate::tree::Tree;

/// How many decoded trees to keep; directories are visited once per walk, so this only needs
/// to cover the current path plus the parent snapshot's matching directories.
const TREE_CACHE: usize = 8192;

/// A blob some thread is decoding right now; others wait for it instead of decoding it too.
/// The slot becomes `Some(outcome)` when the decode is over (`Some(None)`: it failed).
type Pending = Arc<(Mutex<Option<Option<Bytes>>>, Condvar)>;

/// Recently decoded data blobs, up to a byte budget, oldest evicted first.
struct BlobCache {
    map: HashMap<Id, Bytes>,
    pending: HashMap<Id, Pending>,
    order: VecDeque<Id>,
    bytes: usize,
    budget: usize,
}

/// What a reader finds in the cache.
enum Lookup {
    Hit(Bytes),
    /// Another thread decodes it: wait.
    Wait(Pending),
    /// Nobody has it: decode it, then `finish`.
    Decode,
}

impl BlobCache {
    fn lookup(&mut self, id: &Id) -> Lookup {
        if let Some(b) = self.map.get(id) {
            return Lookup::Hit(b.clone());
        }
        if let Some(p) = self.pending.get(id) {
            return Lookup::Wait(p.clone());
        }
        self.pending
            .insert(*id, Arc::new((Mutex::new(None), Condvar::new())));
        Lookup::Decode
    }

    /// Publish the outcome of a decode (`None` when it failed: waiters then try themselves).
    fn finish(&mut self, id: &Id, data: Option<&Bytes>) {
        if let Some(p) = self.pending.remove(id) {
            *p.0.lock().expect("pending blob") = Some(data.cloned());
            p.1.notify_all();
        }
        if let Some(d) = data {
            self.insert(*id, d.clone());
        }
    }

    fn insert(&mut self, id: Id, data: Bytes) {
        if data.len() > self.budget / 4 || self.map.contains_key(&id) {
            return;
        }
        while self.bytes + data.len() > self.budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(b) = self.map.remove(&old) {
                self.bytes -= b.len();
            }
        }
        self.bytes += data.len();
        self.order.push_back(id);
        self.map.insert(id, data);
    }
}

pub struct BlobReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    trees: Mutex<HashMap<Id, Arc<Tree>>>,
    blobs: Option<Mutex<BlobCache>>,
}

impl<'a> BlobReader<'a> {
    pub fn new(repo: &'a Repository, index: &'a Index) -> Self {
        BlobReader {
            repo,
            index,
            trees: Mutex::new(HashMap::new()),
            blobs: None,
        }
    }

    /// A reader that also keeps up to `budget` bytes of recently decoded data blobs, for
    /// several walks over similar snapshots at the same time.
    pub fn with_blob_cache(repo: &'a Repository, index: &'a Index, budget: usize) -> Self {
        let cache = BlobCache {
            map: HashMap::new(),
            pending: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            budget,
        };
        BlobReader {
            blobs: Some(Mutex::new(cache)),
            ..Self::new(repo, index)
        }
    }

    /// The plaintext of a blob: authenticated, decompressed, and checked against its id.
    pub fn read_blob(&self, id: &Id) -> Result<Bytes> {
        let loc = self
            .index
            .lookup(id)
            .ok_or_else(|| Error::MissingBlob(id.to_hex()))?;
        Ok(loc.read(self.repo)?.into())
    }

    /// One chunk of file content, checked against the length the tree records.
    pub fn chunk(&self, id: &Id, len: u32) -> Result<Bytes> {
        let Some(cache) = &self.blobs else {
            return self.decode_chunk(id, len);
        };
        let lookup = cache.lock().expect("blob cache").lookup(id);
        match lookup {
            Lookup::Hit(b) => Ok(b),
            Lookup::Wait(p) => {
                let slot =
                    p.1.wait_while(p.0.lock().expect("pending blob"), |s| s.is_none())
                        .expect("pending blob");
                match slot.clone().flatten() {
                    Some(b) => Ok(b),
                    None => self.decode_chunk(id, len),
                }
            }
            Lookup::Decode => {
                let result = self.decode_chunk(id, len);
                cache
                    .lock()
                    .expect("blob cache")
                    .finish(id, result.as_ref().ok());
                result
            }
        }
    }

    fn decode_chunk(&self, id: &Id, len: u32) -> Result<Bytes> {
        let data = self.read_blob(id)?;
        if data.len() != len as usize {
            return Err(Error::damaged(
                format!("blob {}", id.short()),
                "its length differs from the tree's record",
            ));
        }
        Ok(data)
    }

    pub fn tree(&self, id: &Id) -> Result<Arc<Tree>> {
        if let Some(t) = self.trees.lock().expect("tree cache").get(id) {
            return Ok(t.clone());
        }
        let data = self.read_blob(id)?;
        let tree = Arc::new(Tree::decode(&data, || format!("tree {}", id.short()))?);
        let mut cache = self.trees.lock().expect("tree cache");
        if cache.len() >= TREE_CACHE {
            cache.clear();
        }
        cache.insert(*id, tree.clone());
        Ok(tree)
    }
}
