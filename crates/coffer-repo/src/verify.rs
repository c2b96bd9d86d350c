//! Verification: prove that snapshots can be restored, byte for byte.
//!
//! Full mode, for each snapshot checked:
//! 1. regenerate its canonical archive from the repository, authenticating, decompressing and
//!    re-hashing every blob it references, and compare the SHA-256 and size with the snapshot's
//!    record (identical archives are computed once);
//! 2. meanwhile, on a second thread, read every pack involved in full and check that its bytes
//!    still hash to its name and that its trailer matches the index.
//!
//! Quick mode reads only metadata: snapshots, index, trees, and the sizes of packs.
//! Every problem names the damaged object and the snapshots and files it affects.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::archive::{self, ArchiveWalk, Damage};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::fetch::{self, ReadTuning};
use crate::id::Id;
use crate::index::Index;
use crate::lock::{self, LockKind};
use crate::pack;
use crate::reader::BlobReader;
use crate::repo::{self, Repository};
use crate::sha256::Sha256;
use crate::snapshot::{self, Snapshot};
use crate::spool::Spool;
use crate::tree::{Content, NodeKind};

#[derive(Debug, Default, Clone)]
pub struct VerifyOptions {
    /// Snapshots to check; `None` checks all of them and every pack in the repository.
    pub snapshots: Option<Vec<Id>>,
    /// Metadata only: do not read file data.
    pub quick: bool,
}

/// One damaged or missing object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The object: `config`, `keys/…`, `snapshots/…`, `index/…`, `data/…/…`.
    pub object: String,
    pub error: String,
    /// Snapshots (ids) that cannot be restored completely because of it.
    pub snapshots: Vec<String>,
    /// Files (paths inside the snapshot) whose data it affects.
    pub files: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub snapshots_checked: u64,
    pub packs_checked: u64,
    pub blobs_checked: u64,
    pub bytes_read: u64,
    /// Archive checksum per snapshot checked (full mode).
    pub checksums: BTreeMap<String, String>,
    pub problems: Vec<Problem>,
    pub duration_ms: u64,
}

/// Collects problems, merging those about the same object.
#[derive(Default)]
struct Problems {
    by_object: BTreeMap<String, (String, BTreeSet<String>, BTreeSet<String>)>,
}

impl Problems {
    fn add(&mut self, object: String, error: String, snapshot: Option<&Id>, file: Option<String>) {
        let e = self
            .by_object
            .entry(object)
            .or_insert_with(|| (error, BTreeSet::new(), BTreeSet::new()));
        if let Some(s) = snapshot {
            e.1.insert(s.to_hex());
        }
        if let Some(f) = file {
            e.2.insert(f);
        }
    }

    fn add_error(&mut self, e: &Error, snapshot: Option<&Id>, file: Option<String>) {
        let (object, error) = e.damaged_object();
        self.add(object, error, snapshot, file);
    }

    fn into_vec(self) -> Vec<Problem> {
        self.by_object
            .into_iter()
            .map(|(object, (error, s, f))| Problem {
                object,
                error,
                snapshots: s.into_iter().collect(),
                files: f.into_iter().collect(),
            })
            .collect()
    }
}

/// Decoded blobs shared by concurrent archive passes.
const SHARED_BLOB_CACHE: usize = 16 * 1024 * 1024;
/// Archive passes run at the same time.
const CONCURRENT_ARCHIVES: usize = 2;

pub fn verify(repo: &Repository, opts: &VerifyOptions) -> Result<VerifyReport> {
    let started = Instant::now();
    // Where packs read whole can be kept for the archive passes (remote repositories): beside
    // the cache, else in the temporary directory.
    let spool_base = repo.backend().is_remote().then(|| {
        repo.cache_dir()
            .and_then(|d| d.parent())
            .map_or_else(|| std::env::temp_dir().join("coffer"), |d| d.to_path_buf())
    });
    // What is checked is the repository, never a cached copy of it. Only finding which packs
    // the snapshots use may read listings from the cache, when the archive passes then read
    // every listing again from the repository through the spool.
    let cached = repo;
    let repo = &repo.without_cache();
    let _lock = lock::acquire(repo, LockKind::Read)?;
    let mut problems = Problems::default();
    let mut report = VerifyReport::default();

    let snapshot::Listing {
        snapshots: all,
        damaged: damaged_snaps,
    } = snapshot::list(repo)?;
    for e in &damaged_snaps {
        problems.add_error(e, None, None);
    }
    let mut index = Index::load(repo)?;
    for e in &index.damaged {
        problems.add_error(e, None, None);
    }
    // Find the packs that no readable index lists, so data checks can go on.
    index.add_unindexed_packs(repo)?;

    let selected: Vec<(Id, Snapshot)> = match &opts.snapshots {
        None => all,
        Some(ids) => ids
            .iter()
            .map(|id| {
                Ok((
                    *id,
                    all.iter()
                        .find(|(i, _)| i == id)
                        .map(|(_, s)| s.clone())
                        .map_or_else(|| snapshot::load(repo, id), Ok)?,
                ))
            })
            .collect::<Result<_>>()?,
    };
    let walker = match spool_base.is_some() && !opts.quick {
        true => BlobReader::new(cached, &index),
        false => BlobReader::new(repo, &index),
    };
    let listed = &index.listed;

    // Every pack the selected snapshots need, found through their trees, with the snapshots
    // that use it, to name them if the pack turns out damaged, and when the archive passes
    // first need it: they run `CONCURRENT_ARCHIVES` at a time over the distinct root trees, at
    // about the same pace, so at the least (round, offset in the archive) of its uses.
    let mut users: HashMap<Id, BTreeSet<Id>> = HashMap::new();
    let mut first_needed: HashMap<Id, (usize, u64)> = HashMap::new();
    let mut trees: Vec<Id> = vec![];
    for (id, snap) in &selected {
        report.snapshots_checked += 1;
        let round = match trees.iter().position(|t| *t == snap.tree) {
            Some(i) => i,
            None => {
                trees.push(snap.tree);
                trees.len() - 1
            }
        } / CONCURRENT_ARCHIVES;
        walk_references(
            &walker,
            snap,
            &mut |file, blob, offset| match index.lookup(blob) {
                Some(loc) => {
                    let (p, e) = (loc.pack, loc.entry);
                    let when = (round, offset);
                    first_needed
                        .entry(p)
                        .and_modify(|w| *w = (*w).min(when))
                        .or_insert(when);
                    users.entry(p).or_default().insert(*id);
                    match listed.get(&p) {
                        None => problems.add(repo::pack_name(&p), "missing".into(), Some(id), file),
                        Some(size) if *size < e.offset as u64 + e.length as u64 => problems.add(
                            repo::pack_name(&p),
                            "truncated: shorter than its blobs need".into(),
                            Some(id),
                            file,
                        ),
                        Some(_) => {}
                    }
                }
                None => problems.add_error(&Error::MissingBlob(blob.to_hex()), Some(id), file),
            },
        )
        .unwrap_or_else(|e| problems.add_error(&e, Some(id), None));
        if let Some(cp) = &snap.checkpoints
            && index.lookup(cp).is_none()
        {
            problems.add(
                format!("blob {}", cp.short()),
                "missing checkpoint data (only slows the next backup)".into(),
                Some(id),
                None,
            );
        }
    }

    if !opts.quick {
        let counts = index.pack_counts();
        let holds_trees = |p: &Id| counts.get(p).is_some_and(|c| c.1);
        // Packs of listings first, then data packs in the order the archives need them: a
        // spool then hands the archive passes each pack soon after they ask for it.
        let mut packs: Vec<Id> = match opts.snapshots {
            None => listed.keys().copied().filter(|p| holds_trees(p)).collect(),
            Some(_) => vec![],
        };
        let mut needed: Vec<(&Id, &(usize, u64))> = first_needed.iter().collect();
        needed.sort_unstable_by_key(|&(p, when)| (*when, *p));
        packs.extend(
            needed
                .into_iter()
                .map(|(p, _)| *p)
                .filter(|p| listed.contains_key(p)),
        );
        let expected = packs.len();
        if opts.snapshots.is_none() {
            let seen: HashSet<Id> = packs.iter().copied().collect();
            packs.extend(listed.keys().filter(|p| !seen.contains(p)));
        }
        let spool = spool_base.as_deref().and_then(|base| {
            let names = packs[..expected].iter().map(repo::pack_name);
            Spool::new(base, repo.backend().clone(), names)
        });
        let spooled = spool
            .as_ref()
            .map(|s| repo.reading_through(s.clone() as Arc<dyn Backend>));
        let reader = BlobReader::with_blob_cache(
            spooled.as_ref().unwrap_or(repo),
            &index,
            SHARED_BLOB_CACHE,
        );
        let pack_problems = Mutex::new(vec![]);
        let queue = Mutex::new(trees.into_iter());
        let computed: Mutex<HashMap<Id, Result<ArchiveCheck>>> = Mutex::new(HashMap::new());
        let (bytes, blobs) = std::thread::scope(|s| {
            let checker = s.spawn(|| {
                check_packs(
                    repo,
                    &index,
                    &counts,
                    &packs,
                    spool.as_deref(),
                    &pack_problems,
                )
            });
            // The archive depends only on the root tree: compute each distinct one once, two at
            // a time, oldest first. Similar snapshots then share decoded blobs through the
            // reader's cache: the pass that falls behind finds the blobs the other just decoded.
            let passes: Vec<_> = (0..CONCURRENT_ARCHIVES)
                .map(|_| {
                    s.spawn(|| {
                        let next_tree = || queue.lock().expect("queue").next();
                        while let Some(tree) = next_tree() {
                            let result = check_archive(&reader, &tree);
                            computed.lock().expect("results").insert(tree, result);
                        }
                    })
                })
                .collect();
            for p in passes {
                p.join().expect("archive pass");
            }
            let computed = computed.lock().expect("results");
            for (id, snap) in &selected {
                let check = match &computed[&snap.tree] {
                    Ok(c) => c.clone(),
                    Err(e) => {
                        problems.add_error(e, Some(id), None);
                        continue;
                    }
                };
                let ArchiveCheck {
                    checksum: sum,
                    size,
                    damage,
                } = check;
                for d in damage {
                    problems.add(d.object, d.detail, Some(id), Some(d.file));
                }
                report.checksums.insert(id.to_hex(), sum.clone());
                if sum != snap.checksum || size != snap.size_bytes {
                    problems.add(
                        repo::object_name(repo::SNAPSHOTS, id),
                        format!(
                            "checksum mismatch: the archive now hashes to {sum} ({size} bytes), the snapshot recorded {} ({} bytes)",
                            snap.checksum, snap.size_bytes
                        ),
                        Some(id),
                        None,
                    );
                }
            }
            checker.join().expect("pack checker")
        });
        report.bytes_read = bytes;
        report.blobs_checked = blobs;
        report.packs_checked = packs.len() as u64;
        for (pack, e) in pack_problems.into_inner().expect("problems") {
            let (object, error) = e.damaged_object();
            problems.add(object.clone(), error.clone(), None, None);
            // The files a damaged pack affects are named by the blob-level check above; a
            // pack whose blobs all still decode (damage in its trailer) affects no file.
            for s in users.get(&pack).into_iter().flatten() {
                problems.add(object.clone(), error.clone(), Some(s), None);
            }
        }
    }

    report.problems = problems.into_vec();
    report.ok = report.problems.is_empty();
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

#[derive(Clone)]
struct ArchiveCheck {
    checksum: String,
    size: u64,
    damage: Vec<Damage>,
}

/// Regenerate an archive from the repository, hashing it and collecting damage.
fn check_archive(reader: &BlobReader, tree: &Id) -> Result<ArchiveCheck> {
    let mut sha = Sha256::new();
    let mut damage = vec![];
    let size = archive::write_archive(reader, tree, &mut sha, Some(&mut damage))?;
    Ok(ArchiveCheck {
        checksum: sha.finalize_hex(),
        size,
        damage,
    })
}

/// Call `f(file, blob, offset)` for every data blob a snapshot references (reading every
/// tree), with the file content that comes before it in the walk.
fn walk_references(
    reader: &BlobReader,
    snap: &Snapshot,
    f: &mut dyn FnMut(Option<String>, &Id, u64),
) -> Result<()> {
    let mut offset = 0;
    let mut walk = ArchiveWalk::new(reader, &snap.tree)?;
    while let Some(e) = walk.next_entry()? {
        if e.node.kind != NodeKind::File || e.link.is_some() {
            continue;
        }
        let path = String::from_utf8_lossy(&e.path).into_owned();
        for c in &e.node.content {
            if let Content::Chunk { id, len } = c {
                f(Some(path.clone()), id, offset);
                offset += u64::from(*len);
            }
        }
    }
    Ok(())
}

/// Read whole packs (several at a time, as the backend likes), in the order given: name hash,
/// trailer, agreement with the index. Each pack read is offered to `spool`. Returns bytes and
/// blobs read.
fn check_packs(
    repo: &Repository,
    index: &Index,
    counts: &HashMap<Id, (u32, bool)>,
    packs: &[Id],
    spool: Option<&Spool>,
    problems: &Mutex<Vec<(Id, Error)>>,
) -> (u64, u64) {
    // Whatever happens here, the archive passes stop waiting for packs when it ends.
    struct Closing<'a>(Option<&'a Spool>);
    impl Drop for Closing<'_> {
        fn drop(&mut self) {
            if let Some(s) = self.0 {
                s.close();
            }
        }
    }
    let _closing = Closing(spool);
    let (bytes, blobs) = (AtomicU64::new(0), AtomicU64::new(0));
    let report = |id: &Id, e: Error| problems.lock().expect("problems").push((*id, e));
    let check = |id: &Id| {
        let name = repo::pack_name(id);
        let data = match repo.backend().read(&name) {
            Ok(d) => d,
            Err(e) => {
                if let Some(s) = spool {
                    s.pass(&name);
                }
                report(id, Error::damaged(name, format!("cannot be read: {e}")));
                return;
            }
        };
        if let Some(s) = spool {
            s.offer(&name, &data);
        }
        bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        match pack::parse_pack(repo, id, &data) {
            Ok((_, entries)) => {
                blobs.fetch_add(entries.len() as u64, Ordering::Relaxed);
                // The blobs the trailer lists that the index places here are a subset of those
                // the index places here: as many means all of them.
                if let Some(&(indexed, _)) = counts.get(id) {
                    let here: HashSet<&Id> = entries
                        .iter()
                        .map(|e| &e.id)
                        .filter(|b| index.lookup(b).is_some_and(|l| l.pack == *id))
                        .collect();
                    if here.len() != indexed as usize {
                        report(
                            id,
                            Error::damaged(
                                name,
                                "its trailer does not list blobs the index places in it",
                            ),
                        );
                    }
                }
            }
            Err(e) => report(id, e),
        }
    };
    // On a local disk one thread keeps up, beside the archive passes that use the CPU.
    let threads = match repo.backend().is_remote() {
        true => ReadTuning::of(repo).parallel,
        false => 1,
    };
    fetch::each_parallel(packs, threads, &|id| {
        check(id);
        true
    });
    (bytes.into_inner(), blobs.into_inner())
}
