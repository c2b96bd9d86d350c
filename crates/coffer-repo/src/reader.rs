//! Reading blobs and trees back from the repository, fully checked.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::fetch::{self, ReadTuning};
use crate::id::Id;
use crate::index::Index;
use crate::repo::Repository;
use crate::tree::Tree;

/// How many decoded trees to keep; directories are visited once per walk, so this only needs
/// to cover the current path plus the parent snapshot's matching directories.
const TREE_CACHE: usize = 8192;

/// Recently decoded data blobs, up to a byte budget, oldest evicted first.
struct BlobCache {
    map: HashMap<Id, Bytes>,
    order: VecDeque<Id>,
    bytes: usize,
    budget: usize,
}

impl BlobCache {
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
        // A copy: the blob may be a slice of a whole range read, which it would keep alive.
        self.map.insert(id, Bytes::copy_from_slice(&data));
    }
}

pub struct BlobReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    trees: Mutex<HashMap<Id, Arc<Tree>>>,
    blobs: Option<Mutex<BlobCache>>,
    tuning: ReadTuning,
}

impl<'a> BlobReader<'a> {
    pub fn new(repo: &'a Repository, index: &'a Index) -> Self {
        BlobReader {
            repo,
            index,
            trees: Mutex::new(HashMap::new()),
            blobs: None,
            tuning: ReadTuning::of(repo),
        }
    }

    pub(crate) fn repo(&self) -> &'a Repository {
        self.repo
    }

    pub(crate) fn index(&self) -> &'a Index {
        self.index
    }

    /// How this reader's reads are shaped.
    pub(crate) fn tuning(&self) -> ReadTuning {
        self.tuning
    }

    /// A reader that also keeps up to `budget` bytes of recently decoded data blobs, for
    /// several walks over similar snapshots at the same time.
    pub fn with_blob_cache(repo: &'a Repository, index: &'a Index, budget: usize) -> Self {
        let cache = BlobCache {
            map: HashMap::new(),
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

    /// Many chunks of file content at once, read as planned (`fetch`) with up to `parallel`
    /// requests at a time: each id with its data or the damage found. Storage that cannot be
    /// reached is the error returned.
    pub(crate) fn chunks(&self, wanted: &[(Id, u32)], parallel: usize) -> Result<Chunks> {
        let mut out = HashMap::with_capacity(wanted.len());
        let mut lengths = HashMap::with_capacity(wanted.len());
        for &(id, len) in wanted {
            match self.cached(&id) {
                Some(b) => {
                    out.insert(id, Ok(b));
                }
                None => {
                    lengths.insert(id, len);
                }
            }
        }
        let tuning = ReadTuning {
            parallel,
            ..self.tuning
        };
        let read = fetch::read_blobs(self.repo, self.index, lengths.keys().copied(), &tuning)?;
        for (id, data) in read {
            let data = data.and_then(|d| checked_len(d, &id, lengths[&id]));
            if let (Some(cache), Ok(d)) = (&self.blobs, &data) {
                cache.lock().expect("blob cache").insert(id, d.clone());
            }
            out.insert(id, data);
        }
        Ok(out)
    }

    fn cached(&self, id: &Id) -> Option<Bytes> {
        let cache = self.blobs.as_ref()?.lock().expect("blob cache");
        cache.map.get(id).cloned()
    }

    /// A directory listing. When the listings below it are not cached, they are read ahead,
    /// level by level, each level in as few requests as its packs allow (`prefetch_below`): a
    /// walk then costs a few requests per level of the tree, not one per directory.
    pub fn tree(&self, id: &Id) -> Result<Arc<Tree>> {
        let cached = self.trees.lock().expect("tree cache").get(id).cloned();
        let tree = match cached {
            Some(t) => t,
            None => {
                let data = self.read_blob(id)?;
                let tree = Arc::new(Tree::decode(&data, || format!("tree {}", id.short()))?);
                self.keep_tree(*id, tree.clone());
                tree
            }
        };
        self.prefetch_below(&tree)?;
        Ok(tree)
    }

    fn keep_tree(&self, id: Id, tree: Arc<Tree>) {
        let mut cache = self.trees.lock().expect("tree cache");
        if cache.len() >= TREE_CACHE {
            cache.clear();
        }
        cache.insert(id, tree);
    }

    /// Read the listings below `tree` that are not cached yet, breadth first, up to a quarter
    /// of the cache. A listing that cannot be read or decoded is left out: `tree` reads it
    /// again and reports what is wrong with it.
    fn prefetch_below(&self, tree: &Tree) -> Result<()> {
        let mut budget = TREE_CACHE / 4;
        let mut level: Vec<Id> = tree.nodes.iter().filter_map(|n| n.subtree).collect();
        while !level.is_empty() && budget > 0 {
            let wanted: Vec<Id> = {
                let cache = self.trees.lock().expect("tree cache");
                level
                    .iter()
                    .filter(|id| !cache.contains_key(id))
                    .take(budget)
                    .copied()
                    .collect()
            };
            if wanted.is_empty() {
                return Ok(());
            }
            budget -= wanted.len();
            let mut next = vec![];
            for (id, data) in fetch::read_blobs(self.repo, self.index, wanted, &self.tuning)? {
                let Ok(tree) =
                    data.and_then(|d| Tree::decode(&d, || format!("tree {}", id.short())))
                else {
                    continue;
                };
                next.extend(tree.nodes.iter().filter_map(|n| n.subtree));
                self.keep_tree(id, Arc::new(tree));
            }
            level = next;
        }
        Ok(())
    }
}

/// Chunks read together (`BlobReader::chunks`): each id with its data or its damage.
pub(crate) type Chunks = HashMap<Id, Result<Bytes>>;

/// The chunk `id` out of `read`.
pub(crate) fn chunk_of(read: &Chunks, id: &Id) -> Result<Bytes> {
    match read.get(id) {
        Some(Ok(b)) => Ok(b.clone()),
        Some(Err(e)) => Err(e.copy_damage()),
        None => Err(Error::MissingBlob(id.to_hex())),
    }
}

/// A chunk's plaintext, checked against the length its tree records.
fn checked_len(data: Bytes, id: &Id, len: u32) -> Result<Bytes> {
    if data.len() != len as usize {
        return Err(Error::damaged(
            format!("blob {}", id.short()),
            "its length differs from the tree's record",
        ));
    }
    Ok(data)
}
