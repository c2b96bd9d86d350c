//! Reading blobs and trees back from the repository, fully checked.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::fetch::{self, ReadTuning};
use crate::id::Id;
use crate::index::Index;
use crate::repo::Repository;
use crate::tree::Tree;

/// Memory for decoded trees: directories are visited once per walk, so this only needs to
/// cover the current path, the parent snapshot's matching directories and what is read ahead.
/// A budget in bytes, not in trees: one directory of 100,000 files decodes to tens of MiB.
const TREE_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Recently used values up to a byte budget, oldest evicted first.
struct Budgeted<V> {
    map: HashMap<Id, (V, usize)>,
    order: VecDeque<Id>,
    bytes: usize,
    budget: usize,
}

impl<V: Clone> Budgeted<V> {
    fn new(budget: usize) -> Self {
        Budgeted {
            map: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    fn get(&self, id: &Id) -> Option<V> {
        self.map.get(id).map(|(v, _)| v.clone())
    }

    fn contains(&self, id: &Id) -> bool {
        self.map.contains_key(id)
    }

    /// Whether a value of `size` bytes is small enough to be worth keeping.
    fn fits(&self, size: usize) -> bool {
        size <= self.budget / 4
    }

    /// Keep `value` (taking `size` bytes) unless it is too large to be worth keeping.
    fn insert(&mut self, id: Id, value: V, size: usize) {
        if !self.fits(size) || self.map.contains_key(&id) {
            return;
        }
        while self.bytes + size > self.budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some((_, n)) = self.map.remove(&old) {
                self.bytes -= n;
            }
        }
        self.bytes += size;
        self.order.push_back(id);
        self.map.insert(id, (value, size));
    }
}

/// Decoded data blobs shared by several walks at once, and the blobs one of them is decoding.
struct SharedBlobs {
    state: Mutex<SharedState>,
    decoded: Condvar,
}

struct SharedState {
    cache: Budgeted<Bytes>,
    decoding: HashSet<Id>,
}

impl SharedBlobs {
    /// `id` once the walk decoding it is done: `None` when it could not be decoded or is no
    /// longer cached.
    fn wait_for(&self, id: &Id) -> Option<Bytes> {
        let mut state = self.state.lock().expect("blob cache");
        while state.decoding.contains(id) {
            state = self.decoded.wait(state).expect("blob cache");
        }
        state.cache.get(id)
    }
}

/// Unmarks the blobs a walk was decoding, and wakes the walks waiting for them, however the
/// read ended.
struct Unmark<'s>(&'s SharedBlobs, &'s HashMap<Id, u32>);

impl Drop for Unmark<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        for id in self.1.keys() {
            state.decoding.remove(id);
        }
        self.0.decoded.notify_all();
    }
}

pub struct BlobReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    trees: Mutex<Budgeted<Arc<Tree>>>,
    /// Listings a read-ahead found no room for, in the order a walk reaches them.
    pending: Mutex<Vec<Id>>,
    blobs: Option<SharedBlobs>,
    tuning: ReadTuning,
}

impl<'a> BlobReader<'a> {
    pub fn new(repo: &'a Repository, index: &'a Index) -> Self {
        BlobReader {
            repo,
            index,
            trees: Mutex::new(Budgeted::new(TREE_CACHE_BYTES)),
            pending: Mutex::new(vec![]),
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
        BlobReader {
            blobs: Some(SharedBlobs {
                state: Mutex::new(SharedState {
                    cache: Budgeted::new(budget),
                    decoding: HashSet::new(),
                }),
                decoded: Condvar::new(),
            }),
            ..Self::new(repo, index)
        }
    }

    /// The plaintext of a blob: authenticated, decompressed, and checked against its id.
    pub fn read_blob(&self, id: &Id) -> Result<Bytes> {
        let loc = self
            .index
            .lookup(id)
            .ok_or_else(|| Error::MissingBlob(id.to_hex()))?;
        fetch::read_one(self.repo, &loc)
    }

    /// Many chunks of file content at once, read as planned (`fetch`) with up to `parallel`
    /// requests at a time: each id with its data or the damage found. Storage that cannot be
    /// reached is the error returned.
    pub(crate) fn chunks(&self, wanted: &[(Id, u32)], parallel: usize) -> Result<Chunks> {
        let mut out = HashMap::with_capacity(wanted.len());
        let Some(shared) = &self.blobs else {
            self.read_chunks(&wanted.iter().copied().collect(), parallel, &mut out, None)?;
            return Ok(out);
        };
        // Blobs another walk is decoding are waited for, not decoded a second time: two walks
        // at the same pace would otherwise both miss the cache, blob after blob.
        let (mut mine, mut awaited) = (HashMap::with_capacity(wanted.len()), vec![]);
        {
            let mut state = shared.state.lock().expect("blob cache");
            let SharedState { cache, decoding } = &mut *state;
            for &(id, len) in wanted {
                if out.contains_key(&id) || mine.contains_key(&id) {
                    continue;
                }
                match cache.get(&id) {
                    Some(b) => {
                        out.insert(id, Ok(b));
                    }
                    None if decoding.contains(&id) => awaited.push((id, len)),
                    None => {
                        if cache.fits(len as usize) {
                            decoding.insert(id);
                        }
                        mine.insert(id, len);
                    }
                }
            }
        }
        self.read_chunks(&mine, parallel, &mut out, Some(shared))?;
        let mut missed = HashMap::new();
        for (id, len) in awaited {
            match shared.wait_for(&id) {
                Some(b) => {
                    out.insert(id, Ok(b));
                }
                // Damaged, or already evicted: read here.
                None => {
                    missed.insert(id, len);
                }
            }
        }
        self.read_chunks(&missed, parallel, &mut out, None)?;
        Ok(out)
    }

    /// Read `lengths` (ids and the lengths their trees record) into `out`. With `shared`, the
    /// blobs this walk marked as decoding are cached and unmarked, whatever happens.
    fn read_chunks(
        &self,
        lengths: &HashMap<Id, u32>,
        parallel: usize,
        out: &mut Chunks,
        shared: Option<&SharedBlobs>,
    ) -> Result<()> {
        let _unmark = shared.map(|s| Unmark(s, lengths));
        if lengths.is_empty() {
            return Ok(());
        }
        let tuning = ReadTuning {
            parallel,
            ..self.tuning
        };
        let read = fetch::read_blobs(self.repo, self.index, lengths.keys().copied(), &tuning)?;
        for (id, data) in read {
            let data = data.and_then(|d| checked_len(d, &id, lengths[&id]));
            if let (Some(shared), Ok(d)) = (shared, &data) {
                let mut state = shared.state.lock().expect("blob cache");
                if state.cache.fits(d.len()) {
                    // A copy: the blob may be a slice of a whole range read, which it would
                    // keep alive.
                    state.cache.insert(id, Bytes::copy_from_slice(d), d.len());
                }
            }
            out.insert(id, data);
        }
        Ok(())
    }

    /// A directory listing. When the listings below it are not cached, they are read ahead,
    /// level by level, each level in as few requests as its packs allow (`read_ahead`): a
    /// walk then costs a few requests per level of the tree, not one per directory.
    pub fn tree(&self, id: &Id) -> Result<Arc<Tree>> {
        let mut cached = self.trees.lock().expect("tree cache").get(id);
        if cached.is_none() {
            // Left for later by an earlier read-ahead: read it with the listings after it.
            let later = {
                let mut pending = self.pending.lock().expect("pending trees");
                match pending.iter().position(|p| p == id) {
                    Some(at) => pending.split_off(at),
                    None => vec![],
                }
            };
            if !later.is_empty() {
                self.read_ahead(later)?;
                cached = self.trees.lock().expect("tree cache").get(id);
            }
        }
        let tree = match cached {
            Some(t) => t,
            None => {
                let data = self.read_blob(id)?;
                let tree = Arc::new(Tree::decode(&data, || format!("tree {}", id.short()))?);
                self.keep_tree(*id, tree.clone());
                tree
            }
        };
        self.read_ahead(tree.nodes.iter().filter_map(|n| n.subtree).collect())?;
        Ok(tree)
    }

    fn keep_tree(&self, id: Id, tree: Arc<Tree>) {
        let size = tree.memory();
        self.trees
            .lock()
            .expect("tree cache")
            .insert(id, tree, size);
    }

    /// Read the listings of `level` and below that are not cached yet, breadth first, until
    /// they fill a quarter of the cache; what of a level does not fit is remembered, to be read
    /// together when the walk gets there. A listing that cannot be read or decoded is left out:
    /// `tree` reads it again and reports what is wrong with it.
    fn read_ahead(&self, mut level: Vec<Id>) -> Result<()> {
        let mut budget = TREE_CACHE_BYTES / 4;
        while !level.is_empty() {
            let wanted: Vec<(Id, u64)> = {
                let cache = self.trees.lock().expect("tree cache");
                level
                    .iter()
                    .filter(|id| !cache.contains(id))
                    .filter_map(|id| Some((*id, self.index.lookup(id)?.entry.raw_length as u64)))
                    .collect()
            };
            // Listings decode to a few times their stored size: stop where the budget ends.
            let mut planned = 0usize;
            let fits = wanted
                .iter()
                .take_while(|(_, raw)| {
                    planned += 4 * *raw as usize;
                    planned <= budget
                })
                .count();
            if fits < wanted.len() {
                *self.pending.lock().expect("pending trees") =
                    wanted[fits..].iter().map(|(id, _)| *id).collect();
            }
            if fits == 0 {
                return Ok(());
            }
            let mut next = vec![];
            let ids = wanted[..fits].iter().map(|(id, _)| *id);
            for (id, data) in fetch::read_blobs(self.repo, self.index, ids, &self.tuning)? {
                let Ok(tree) =
                    data.and_then(|d| Tree::decode(&d, || format!("tree {}", id.short())))
                else {
                    continue;
                };
                budget = budget.saturating_sub(tree.memory());
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
pub(crate) fn checked_len(data: Bytes, id: &Id, len: u32) -> Result<Bytes> {
    if data.len() != len as usize {
        return Err(Error::damaged(
            format!("blob {}", id.short()),
            "its length differs from the tree's record",
        ));
    }
    Ok(data)
}
