//! Reading many blobs at once, planned per pack.
//!
//! Object storage answers each request after tens of milliseconds and bills it; a read that asks
//! for one blob at a time is a read of hours. Every path that reads many blobs (restore, dump,
//! download, verify, the tree walks) hands the blobs it is about to need to `plan`, which groups
//! them by pack, sorts them by offset and coalesces neighbours into ranges (reading a gap of up
//! to `ReadTuning::gap` bytes rather than making a second request), and `fetch` reads the ranges,
//! several at a time, decoding and checking every blob as it arrives.
//!
//! Damage stays as precise as with single reads: a missing pack or a blob that fails its checks
//! is an error for that blob alone, handed to the caller with the blob; only storage that cannot
//! be reached stops the whole read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{Index, Location};
use crate::pack::{self, BlobEntry, BlobKind, Opened, Seed};
use crate::repo::Repository;

/// How reads are shaped for a backend: a local disk wants many small reads in parallel with the
/// CPU; object storage wants few large ones, many at a time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadTuning {
    /// Ranges read at the same time.
    pub parallel: usize,
    /// A gap between two wanted blobs of a pack up to this size is read rather than skipped.
    pub gap: u64,
    /// A range grows no larger than this.
    pub max_range: u64,
    /// How much plaintext one unit of ordered work (an archive segment) gathers, and in at
    /// most how many pieces (headers, blobs, padding).
    pub segment: usize,
    pub segment_pieces: usize,
}

impl ReadTuning {
    pub fn of(repo: &Repository) -> ReadTuning {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let backend = repo.backend();
        if backend.is_remote() {
            ReadTuning {
                parallel: backend.connections(),
                gap: 1 << 20,
                max_range: 4 << 20,
                segment: 4 << 20,
                segment_pieces: 8192,
            }
        } else {
            ReadTuning {
                parallel: cores.clamp(1, 8),
                gap: 64 << 10,
                max_range: 8 << 20,
                segment: 512 << 10,
                segment_pieces: 192,
            }
        }
    }
}

/// Consecutive blobs of one pack, read with one request.
#[derive(Debug)]
pub(crate) struct PackRange {
    pub pack: Id,
    pub seed: Seed,
    pub start: u64,
    pub end: u64,
    /// Sorted by offset, each blob once.
    pub blobs: Vec<BlobEntry>,
}

/// Group the blobs `ids` by pack and coalesce them into ranges. Blobs the index does not know
/// are returned apart (the caller reports them missing). Duplicates are read once.
pub(crate) fn plan(
    index: &Index,
    ids: impl IntoIterator<Item = Id>,
    tuning: &ReadTuning,
) -> (Vec<PackRange>, Vec<Id>) {
    // Packs in the order the blobs are first wanted: the order a backup wrote them, which a
    // disk reads fastest and which gets a caller's first files complete first.
    let mut by_pack: HashMap<Id, usize> = HashMap::new();
    let mut packs: Vec<(Id, Seed, Vec<BlobEntry>)> = vec![];
    let mut missing = vec![];
    for id in ids {
        match index.lookup(&id) {
            Some(loc) => {
                let i = *by_pack.entry(loc.pack).or_insert_with(|| {
                    packs.push((loc.pack, loc.seed, vec![]));
                    packs.len() - 1
                });
                packs[i].2.push(loc.entry);
            }
            None => missing.push(id),
        }
    }
    missing.sort();
    missing.dedup();
    let mut ranges = vec![];
    for (pack, seed, mut blobs) in packs {
        blobs.sort_by_key(|b| b.offset);
        blobs.dedup_by_key(|b| b.offset);
        let mut current: Option<PackRange> = None;
        for b in blobs {
            let (start, end) = (b.offset as u64, b.offset as u64 + b.length as u64);
            match &mut current {
                Some(r) if start <= r.end + tuning.gap && end - r.start <= tuning.max_range => {
                    r.end = r.end.max(end);
                    r.blobs.push(b);
                }
                _ => {
                    ranges.extend(current.take());
                    current = Some(PackRange {
                        pack,
                        seed,
                        start,
                        end,
                        blobs: vec![b],
                    });
                }
            }
        }
        ranges.extend(current);
    }
    (ranges, missing)
}

/// Read one range and decode each of its blobs (in place: plaintext that needed no
/// decompression is handed out as a part of the range's buffer), handing each to `deliver`
/// with its plaintext or the damage found. A missing pack is damage of each blob; storage that
/// fails otherwise is the error returned.
pub(crate) fn read_range(
    repo: &Repository,
    range: &PackRange,
    deliver: &mut dyn FnMut(&BlobEntry, Result<Bytes>),
) -> Result<()> {
    // Trees are packed apart from data: a range of trees is a range of a pack of trees.
    let trees = range.blobs.iter().all(|b| b.kind == BlobKind::Tree);
    let mut bytes =
        match repo.read_pack_range(&range.pack, range.start, range.end - range.start, trees) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                for b in &range.blobs {
                    deliver(b, Err(Error::pack_missing(&range.pack, &b.id)));
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
    let span = |b: &BlobEntry, len: usize| {
        let from = ((b.offset as u64 - range.start) as usize).min(len);
        from..(from + b.length as usize).min(len)
    };
    let len = bytes.len();
    let opened: Vec<Result<Opened>> = range
        .blobs
        .iter()
        .map(|b| {
            let stored = &mut bytes[span(b, len)];
            pack::open_blob(repo, &range.pack, &range.seed, b, stored)
        })
        .collect();
    let bytes = Bytes::from(bytes);
    for (b, opened) in range.blobs.iter().zip(opened) {
        let plain = opened.map(|o| match o {
            Opened::InPlace(n) => {
                let at = span(b, len).start;
                bytes.slice(at..at + n)
            }
            Opened::Decompressed(plain) => Bytes::from(plain),
        });
        deliver(b, plain);
    }
    Ok(())
}

/// One blob, read and decoded like a range of one.
pub(crate) fn read_one(repo: &Repository, loc: &Location) -> Result<Bytes> {
    let (start, len) = (loc.entry.offset as u64, loc.entry.length as u64);
    let range = PackRange {
        pack: loc.pack,
        seed: loc.seed,
        start,
        end: start + len,
        blobs: vec![loc.entry],
    };
    let mut read = None;
    read_range(repo, &range, &mut |_, r| read = Some(r))?;
    read.expect("a range of one blob delivers it")
}

/// Read every range on up to `tuning.parallel` threads; `deliver` is called from those threads.
/// Stops early (with the first storage error, or once `stop` says so) without reading the rest.
pub(crate) fn read_all(
    repo: &Repository,
    ranges: &[PackRange],
    tuning: &ReadTuning,
    stop: &(dyn Fn() -> bool + Sync),
    deliver: &(dyn Fn(&BlobEntry, Result<Bytes>) + Sync),
) -> Result<()> {
    let failed = AtomicBool::new(false);
    let first_error = std::sync::Mutex::new(None);
    each_parallel(ranges, tuning.parallel, &|range| {
        if failed.load(Ordering::Relaxed) || stop() {
            return false;
        }
        if let Err(e) = read_range(repo, range, &mut |b, r| deliver(b, r)) {
            failed.store(true, Ordering::Relaxed);
            first_error.lock().expect("fetch error").get_or_insert(e);
            return false;
        }
        true
    });
    match first_error.into_inner().expect("fetch error") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Call `work` on the items from up to `threads` threads, each taking the next item no thread
/// has taken, until the items run out or `work` returns false (that thread then stops).
pub(crate) fn each_parallel<T: Sync>(
    items: &[T],
    threads: usize,
    work: &(dyn Fn(&T) -> bool + Sync),
) {
    let next = AtomicUsize::new(0);
    let run = || {
        while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
            if !work(item) {
                return;
            }
        }
    };
    match threads.min(items.len()) {
        0 | 1 => run(),
        n => std::thread::scope(|s| {
            for _ in 0..n {
                s.spawn(run);
            }
        }),
    }
}

/// The plaintext of the blobs `ids` (each checked against its id), read as planned: a map from
/// id to its data or the damage found. Blobs the index does not know are `Error::MissingBlob`.
pub(crate) fn read_blobs(
    repo: &Repository,
    index: &Index,
    ids: impl IntoIterator<Item = Id>,
    tuning: &ReadTuning,
) -> Result<HashMap<Id, Result<Bytes>>> {
    let (ranges, missing) = plan(index, ids, tuning);
    let out = std::sync::Mutex::new(HashMap::new());
    read_all(repo, &ranges, tuning, &|| false, &|b, r| {
        out.lock().expect("blobs read").insert(b.id, r);
    })?;
    let mut out = out.into_inner().expect("blobs read");
    for id in missing {
        out.insert(id, Err(Error::MissingBlob(id.to_hex())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::Compression;
    use crate::pack::BlobKind;

    fn entry(n: u8, offset: u32, length: u32) -> BlobEntry {
        BlobEntry {
            kind: BlobKind::Data,
            compression: Compression::None,
            id: Id([n; 32]),
            offset,
            length,
            raw_length: length,
        }
    }

    #[test]
    fn neighbours_coalesce_and_far_blobs_do_not() {
        let mut index = Index::default();
        let pack = Id([9; 32]);
        index.add_pack(
            &crate::index::PackEntries {
                id: pack,
                seed: [0; 24],
                blobs: vec![
                    entry(1, 8, 100),
                    entry(2, 108, 100),
                    entry(3, 300, 50),
                    entry(4, 10_000_000, 10),
                ],
            },
            false,
        );
        let tuning = ReadTuning {
            parallel: 1,
            gap: 1000,
            max_range: 8 << 20,
            segment: 0,
            segment_pieces: 0,
        };
        let ids = [1u8, 2, 3, 4, 2, 7].map(|n| Id([n; 32]));
        let (ranges, missing) = plan(&index, ids, &tuning);
        assert_eq!(missing, vec![Id([7; 32])]);
        let spans: Vec<(u64, u64, usize)> = ranges
            .iter()
            .map(|r| (r.start, r.end, r.blobs.len()))
            .collect();
        assert_eq!(spans, vec![(8, 350, 3), (10_000_000, 10_000_010, 1)]);
        let ranges = plan(&index, [4u8, 1].map(|n| Id([n; 32])), &tuning).0;
        assert_eq!(
            ranges.len(),
            2,
            "a range grows up to max_range, not over a far gap"
        );
    }
}
