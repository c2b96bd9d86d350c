//! The index: which pack holds each blob, at which offset.
//!
//! Index files are sealed objects ("CFIX") listing packs and their blobs; every backup writes
//! one (or several) after its packs are stored and before its snapshot. The in-memory `Index`
//! merges all index files. Packs condemned by a pending prune plan stay readable but are not
//! used for deduplication, so a backup never makes a new snapshot depend on them.

use std::collections::{HashMap, HashSet};

use crate::backend::BackendErrorKind;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::{self, BlobEntry, Seed};
use crate::repo::{self, INDEX, Repository};
use crate::wire;

const MAGIC: &[u8; 4] = b"CFIX";

/// `added` is folded into the sorted list once it holds this many blobs and an eighth of it.
const FOLD_AT: usize = 65_536;

/// One pack and its blobs, as an index file lists them.
#[derive(Clone, Debug)]
pub(crate) struct PackEntries {
    pub id: Id,
    pub seed: Seed,
    pub blobs: Vec<BlobEntry>,
}

/// Where one blob is stored: everything needed to read and decrypt it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Location {
    pub pack: Id,
    pub seed: Seed,
    pub entry: BlobEntry,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct PackRef {
    pub id: Id,
    pub seed: Seed,
    pub condemned: bool,
    /// Storage listed the pack, at least as long as its blobs need.
    pub held: bool,
}

#[derive(Clone, Copy, Debug)]
/// A blob's place, as the in-memory index keeps it (the blob's id is the map's key: a
/// repository of millions of small files holds millions of these).
struct BlobLoc {
    pack: u32,
    offset: u32,
    length: u32,
    raw_length: u32,
    kind: pack::BlobKind,
    compression: crate::compress::Compression,
}

impl BlobLoc {
    fn new(pack: u32, e: &BlobEntry) -> Self {
        BlobLoc {
            pack,
            offset: e.offset,
            length: e.length,
            raw_length: e.raw_length,
            kind: e.kind,
            compression: e.compression,
        }
    }

    fn entry(&self, id: Id) -> BlobEntry {
        BlobEntry {
            kind: self.kind,
            compression: self.compression,
            id,
            offset: self.offset,
            length: self.length,
            raw_length: self.raw_length,
        }
    }
}

#[derive(Default)]
pub struct Index {
    packs: Vec<PackRef>,
    pack_pos: HashMap<Id, u32>,
    /// Every blob loaded from the index files, sorted by id: no hash table's slack for the
    /// millions of entries of a repository of small files.
    sorted: Vec<(Id, BlobLoc)>,
    /// `fanout[k]` is the first position in `sorted` of an id whose first two bytes are `k` or
    /// more (ids are uniformly random): a lookup then searches a few entries, not the whole
    /// list, which would cost a cache miss per step.
    fanout: Vec<u32>,
    /// Blobs added after loading (packs found without an index file, packs a prune wrote, a
    /// backup's own packs); an entry here overrides one in `sorted`, into which they are folded
    /// once they are many (`fold_added`).
    added: HashMap<Id, BlobLoc>,
    /// Index files that were read.
    pub(crate) files: Vec<Id>,
    /// Index files that could not be read, with why.
    pub(crate) damaged: Vec<Error>,
    /// The packs in storage (id → size), listed before the index files were read.
    pub(crate) listed: HashMap<Id, u64>,
}

pub(crate) fn encode_file(packs: &[PackEntries]) -> Vec<u8> {
    let n: usize = packs.iter().map(|p| 60 + p.blobs.len() * 46).sum();
    let mut w = wire::Writer::with_capacity(5 + n);
    w.u8(1);
    w.u32(packs.len() as u32);
    for p in packs {
        w.id(&p.id);
        w.buf.extend_from_slice(&p.seed);
        w.u32(p.blobs.len() as u32);
        for b in &p.blobs {
            b.encode(&mut w);
        }
    }
    w.buf
}

fn decode_file(data: &[u8]) -> Option<Vec<PackEntries>> {
    let mut r = wire::Reader::new(data);
    if r.u8()? != 1 {
        return None;
    }
    let n = r.count(60)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.id()?;
        let seed: Seed = r.take(24)?.try_into().ok()?;
        let m = r.count(46)?;
        let mut blobs = Vec::with_capacity(m);
        for _ in 0..m {
            blobs.push(BlobEntry::decode(&mut r)?);
        }
        out.push(PackEntries { id, seed, blobs });
    }
    r.is_empty().then_some(out)
}

/// Store an index file for `packs`; returns its id and stored size.
pub(crate) fn write_file(repo: &Repository, packs: &[PackEntries]) -> Result<(Id, u64)> {
    repo.write_object(INDEX, MAGIC, encode_file(packs))
}

pub(crate) fn read_file(repo: &Repository, id: &Id) -> Result<Vec<PackEntries>> {
    let data = repo.read_object(INDEX, id, MAGIC)?;
    decode_file(&data)
        .ok_or_else(|| Error::damaged(repo::object_name(INDEX, id), "its content is malformed"))
}

impl Index {
    /// Load every index file; packs named in pending prune plans are marked condemned.
    /// Damaged index files are recorded in `damaged`, not fatal: their packs can still be found
    /// by `add_unindexed_packs`.
    ///
    /// A blob stored twice is read from the copy in a pack that storage holds in full, else
    /// from one that is not condemned: after a pack was lost, the next backup stores its data
    /// again, and every reader (and prune, which keeps the packs of these locations) then uses
    /// the new copy.
    pub fn load(repo: &Repository) -> Result<Index> {
        Self::load_kinds(repo, false)
    }

    /// `load`, keeping only the blobs of listings (trees and the like) but every pack: what a
    /// backup needs to walk its parent, a small fraction of a repository's blobs.
    pub(crate) fn load_trees(repo: &Repository) -> Result<Index> {
        Self::load_kinds(repo, true)
    }

    fn load_kinds(repo: &Repository, trees_only: bool) -> Result<Index> {
        let condemned = crate::prune::condemned_packs(repo)?;
        let mut index = Index {
            listed: repo::list_packs(repo)?,
            ..Index::default()
        };
        let listed = repo.backend().list(INDEX)?;
        repo.forget_unlisted(INDEX, listed.iter().map(|o| o.name.as_str()));
        // Room for every entry the files can hold (46 bytes each), so that the list is not
        // grown, and briefly held twice, while it fills.
        if !trees_only {
            let entries: u64 = listed.iter().map(|o| o.size / 46).sum();
            index.sorted.reserve_exact(entries as usize);
        }
        let ids: Vec<Id> = listed
            .iter()
            .filter_map(|f| repo::id_of_name(&f.name))
            .collect();
        // Several files read and decoded at once (each a request to object storage), a few
        // batches of them at a time so that no more than a batch is held decoded, merged in
        // the order listed.
        let threads = crate::fetch::ReadTuning::of(repo).parallel;
        for batch in ids.chunks(threads * 4) {
            type Slot = std::sync::Mutex<Option<Result<Vec<PackEntries>>>>;
            let read: Vec<(Id, Slot)> = batch.iter().map(|id| (*id, Slot::default())).collect();
            crate::fetch::each_parallel(&read, threads, &|(id, slot)| {
                *slot.lock().expect("index file") = Some(read_file(repo, id));
                true
            });
            for (id, slot) in read {
                let file = slot.into_inner().expect("index file");
                index.merge_file(
                    id,
                    file.expect("every file is read"),
                    &condemned,
                    trees_only,
                )?;
            }
        }
        // Sorted by id, the best copy of each blob first; then one entry per blob.
        let mut sorted = std::mem::take(&mut index.sorted);
        sorted.sort_unstable_by(|(a, la), (b, lb)| {
            a.cmp(b).then_with(|| index.rank(lb).cmp(&index.rank(la)))
        });
        sorted.dedup_by(|(later, _), (first, _)| later == first);
        sorted.shrink_to_fit();
        index.sorted = sorted;
        index.index_sorted();
        Ok(index)
    }

    /// Add what the index file `id` holds (read as `file`) to the list being loaded; a damaged
    /// file is recorded, one a concurrent prune deleted is passed over.
    fn merge_file(
        &mut self,
        id: Id,
        file: Result<Vec<PackEntries>>,
        condemned: &HashSet<Id>,
        trees_only: bool,
    ) -> Result<()> {
        match file {
            Ok(packs) => {
                self.files.push(id);
                for p in packs {
                    let pos = self.add_pack_ref(&p, condemned.contains(&p.id));
                    let blobs = p
                        .blobs
                        .iter()
                        .filter(|b| !trees_only || b.kind == pack::BlobKind::Tree);
                    self.sorted
                        .extend(blobs.map(|b| (b.id, BlobLoc::new(pos, b))));
                }
            }
            // Deleted by a concurrent prune after we listed it: its packs are in a newer file.
            Err(Error::Backend(e)) if e.kind == BackendErrorKind::NotFound => {}
            Err(e) if e.is_damage() => self.damaged.push(e),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Rebuild `fanout` after `sorted` changed.
    fn index_sorted(&mut self) {
        let mut fanout = vec![0u32; 65537];
        for (id, _) in &self.sorted {
            fanout[Self::bucket(id) + 1] += 1;
        }
        for k in 1..fanout.len() {
            fanout[k] += fanout[k - 1];
        }
        self.fanout = fanout;
    }

    fn bucket(id: &Id) -> usize {
        u16::from_be_bytes([id.0[0], id.0[1]]) as usize
    }

    /// Add a pack and its blobs after loading.
    pub(crate) fn add_pack(&mut self, p: &PackEntries, condemned: bool) {
        let pos = self.add_pack_ref(p, condemned);
        for b in &p.blobs {
            let loc = BlobLoc::new(pos, b);
            match self.get(&b.id) {
                Some(old) if self.rank(old) >= self.rank(&loc) => {}
                _ => {
                    self.added.insert(b.id, loc);
                }
            }
        }
        if self.added.len() >= FOLD_AT.max(self.sorted.len() / 8) {
            self.fold_added();
        }
    }

    /// Move the blobs of `added` into `sorted`, in place: a backup that stores millions of
    /// blobs keeps where they went at 52 bytes each, not in a hash table twice that size.
    fn fold_added(&mut self) {
        let mut new = Vec::with_capacity(self.added.len());
        for (id, loc) in std::mem::take(&mut self.added) {
            match self.position(&id) {
                Some(at) => self.sorted[at].1 = loc,
                None => new.push((id, loc)),
            }
        }
        new.sort_unstable_by_key(|(id, _)| *id);
        // Merge from the back into the grown list: each entry moves once.
        let (mut i, mut j) = (self.sorted.len(), new.len());
        self.sorted.extend_from_slice(&new);
        let mut k = self.sorted.len();
        while j > 0 {
            k -= 1;
            if i > 0 && self.sorted[i - 1].0 > new[j - 1].0 {
                i -= 1;
                self.sorted[k] = self.sorted[i];
            } else {
                j -= 1;
                self.sorted[k] = new[j];
            }
        }
        self.index_sorted();
    }

    /// Where `id` is stored, if anywhere.
    fn get(&self, id: &Id) -> Option<&BlobLoc> {
        self.added
            .get(id)
            .or_else(|| Some(&self.sorted[self.position(id)?].1))
    }

    /// The position of `id` in `sorted`.
    fn position(&self, id: &Id) -> Option<usize> {
        let b = Self::bucket(id);
        let (from, to) = (*self.fanout.get(b)? as usize, self.fanout[b + 1] as usize);
        let at = self.sorted[from..to]
            .binary_search_by(|(k, _)| k.cmp(id))
            .ok()?;
        Some(from + at)
    }

    /// Every blob once, with its place.
    fn blobs(&self) -> impl Iterator<Item = (&Id, &BlobLoc)> {
        let from_load = self
            .sorted
            .iter()
            .filter(|(id, _)| !self.added.contains_key(id))
            .map(|(id, l)| (id, l));
        from_load.chain(self.added.iter())
    }

    /// The position of pack `p` in `packs`, added if new.
    fn add_pack_ref(&mut self, p: &PackEntries, condemned: bool) -> u32 {
        let end = p
            .blobs
            .iter()
            .map(|b| b.offset as u64 + b.length as u64)
            .max();
        let held = self
            .listed
            .get(&p.id)
            .is_some_and(|&size| end.unwrap_or(0) <= size);
        match self.pack_pos.get(&p.id) {
            Some(&pos) => {
                self.packs[pos as usize].held &= held;
                pos
            }
            None => {
                let pos = self.packs.len() as u32;
                self.packs.push(PackRef {
                    id: p.id,
                    seed: p.seed,
                    condemned,
                    held,
                });
                self.pack_pos.insert(p.id, pos);
                pos
            }
        }
    }

    /// How good a location is to read from: in a pack that storage holds in full first, then
    /// in one that is not about to be deleted.
    fn rank(&self, l: &BlobLoc) -> (bool, bool) {
        let pack = &self.packs[l.pack as usize];
        (pack.held, !pack.condemned)
    }

    /// Where the blob is stored, for reading.
    pub(crate) fn lookup(&self, id: &Id) -> Option<Location> {
        self.get(id).map(|l| {
            let p = &self.packs[l.pack as usize];
            Location {
                pack: p.id,
                seed: p.seed,
                entry: l.entry(*id),
            }
        })
    }

    /// True when a backup may reuse the stored blob instead of storing it again.
    pub fn has_blob(&self, id: &Id) -> bool {
        self.get(id)
            .is_some_and(|l| !self.packs[l.pack as usize].condemned)
    }

    /// Forget the blobs of packs that storage did not list or lists shorter than their blobs
    /// need, so that they count as not stored. Returns those packs' names, sorted.
    pub(crate) fn forget_lost_packs(&mut self) -> Vec<String> {
        let packs = &self.packs;
        self.sorted.retain(|(_, l)| packs[l.pack as usize].held);
        self.added.retain(|_, l| packs[l.pack as usize].held);
        let mut names: Vec<String> = packs
            .iter()
            .filter(|p| !p.held)
            .map(|p| repo::pack_name(&p.id))
            .collect();
        self.index_sorted();
        names.sort();
        names
    }

    /// Whether every blob the index files list is stored and stays: no index file was
    /// unreadable, every pack they name is held in full by storage and condemned by no prune
    /// plan, and every pack storage lists is indexed. Then every blob an existing snapshot
    /// references is stored, without a lookup per blob: a snapshot is written only after the
    /// index files of its blobs, and a prune deletes only blobs no snapshot references (see
    /// ARCHITECTURE.md).
    pub(crate) fn intact(&self) -> bool {
        self.damaged.is_empty()
            && self.packs.iter().all(|p| p.held && !p.condemned)
            && self.listed.keys().all(|id| self.has_pack(id))
    }

    pub(crate) fn packs(&self) -> &[PackRef] {
        &self.packs
    }

    pub(crate) fn has_pack(&self, id: &Id) -> bool {
        self.pack_pos.contains_key(id)
    }

    /// For each indexed pack: how many blobs the index places in it, and whether they are
    /// listings (packs hold one kind).
    pub(crate) fn pack_counts(&self) -> HashMap<Id, (u32, bool)> {
        let mut m: HashMap<Id, (u32, bool)> = HashMap::new();
        for (_, l) in self.blobs() {
            let e = m.entry(self.packs[l.pack as usize].id).or_default();
            e.0 += 1;
            e.1 |= l.kind == pack::BlobKind::Tree;
        }
        m
    }

    /// Every blob of every indexed pack, grouped by pack.
    pub(crate) fn pack_contents(&self) -> HashMap<Id, Vec<BlobEntry>> {
        let mut m: HashMap<Id, Vec<BlobEntry>> = HashMap::new();
        for (id, l) in self.blobs() {
            m.entry(self.packs[l.pack as usize].id)
                .or_default()
                .push(l.entry(*id));
        }
        m
    }

    /// The index for reading data: loaded, and where an index file cannot be read, completed
    /// from the packs no readable index file lists, so that its damage hides no data.
    pub(crate) fn load_readable(repo: &Repository) -> Result<Index> {
        let mut index = Index::load(repo)?;
        if !index.damaged.is_empty() {
            index.add_unindexed_packs(repo)?;
        }
        Ok(index)
    }

    /// Read the trailers of packs that no readable index file lists (after index damage or an
    /// interrupted backup) and add them. Returns how many packs were added.
    pub(crate) fn add_unindexed_packs(&mut self, repo: &Repository) -> Result<usize> {
        let condemned = crate::prune::condemned_packs(repo)?;
        let mut added = 0;
        let unindexed: Vec<(Id, u64)> = self
            .listed
            .iter()
            .filter(|(id, _)| !self.has_pack(id))
            .map(|(id, size)| (*id, *size))
            .collect();
        for (id, size) in unindexed {
            if let Ok((seed, blobs)) = read_trailer(repo, &repo::pack_name(&id), size) {
                self.add_pack(&PackEntries { id, seed, blobs }, condemned.contains(&id));
                added += 1;
            }
        }
        Ok(added)
    }
}

/// Read only the header and trailer of a pack (three small range reads).
pub(crate) fn read_trailer(
    repo: &Repository,
    name: &str,
    size: u64,
) -> Result<(Seed, Vec<BlobEntry>)> {
    let bad = || Error::damaged(name, "it is not a complete pack");
    let head_len = pack::header_len(repo) as u64;
    if size < head_len + 8 {
        return Err(bad());
    }
    let head = repo.backend().read_range(name, 0, head_len)?;
    let foot: [u8; 8] = repo
        .backend()
        .read_range(name, size - 8, 8)?
        .try_into()
        .map_err(|_| bad())?;
    let tlen = pack::trailer_len(name, &foot)? as u64;
    if tlen + 8 + head_len > size {
        return Err(bad());
    }
    let tstart = size - 8 - tlen;
    let trailer = repo.backend().read_range(name, tstart, tlen)?;
    if trailer.len() as u64 != tlen {
        return Err(bad());
    }
    pack::parse_trailer(repo, name, &head, &trailer, tstart as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::Compression;

    fn pack(n: u8, ids: impl Iterator<Item = u32>) -> PackEntries {
        let blobs = ids
            .map(|i| BlobEntry {
                kind: pack::BlobKind::Data,
                compression: Compression::None,
                id: Id::of_object(&i.to_le_bytes()),
                offset: i,
                length: 1,
                raw_length: 1,
            })
            .collect();
        PackEntries {
            id: Id::of_object(&[n]),
            seed: [n; crate::crypto::SEED_LEN],
            blobs,
        }
    }

    /// Packs added one after another are folded into the sorted list along the way; every
    /// blob is still found where it was stored, and a later copy in a better pack wins.
    #[test]
    fn added_packs_fold_into_the_sorted_list() {
        let mut index = Index::default();
        for p in 0..10u32 {
            index.add_pack(&pack(p as u8, p * 20_000..(p + 1) * 20_000), false);
        }
        assert!(index.added.len() < 65_536, "folded: {}", index.added.len());
        assert_eq!(index.sorted.len() + index.added.len(), 200_000);
        assert!(index.sorted.windows(2).all(|w| w[0].0 < w[1].0));
        for i in (0..200_000u32).step_by(997) {
            let at = index
                .lookup(&Id::of_object(&i.to_le_bytes()))
                .expect("found");
            assert_eq!(at.pack, Id::of_object(&[(i / 20_000) as u8]));
            assert_eq!(at.entry.offset, i);
        }
        assert!(
            index
                .lookup(&Id::of_object(&200_000u32.to_le_bytes()))
                .is_none()
        );
        // A condemned pack's copy gives way to one in a pack that stays, folded or not.
        index.packs[0].condemned = true;
        index.add_pack(&pack(99, (0..70_000).chain(200_000..210_000)), false);
        assert!(index.added.is_empty(), "folded again");
        let moved = index.lookup(&Id::of_object(&5u32.to_le_bytes())).unwrap();
        assert_eq!(moved.pack, Id::of_object(&[99]));
        let kept = index
            .lookup(&Id::of_object(&25_000u32.to_le_bytes()))
            .unwrap();
        assert_eq!(kept.pack, Id::of_object(&[1]));
        assert_eq!(index.blobs().count(), 210_000);
    }
}
