//! Prune: delete data no snapshot references, safely while backups run.
//!
//! Two phases (see the locking table in lib.rs):
//! 1. **Mark.** Compute every blob referenced by a snapshot. Packs holding none are condemned;
//!    packs where at least a quarter of the bytes are unused are first repacked (their used
//!    blobs copied into new packs, which are indexed) and then condemned too. The condemned
//!    packs are written to a plan (`prune/<id>`) together with the ids of the locks alive at that
//!    moment. From then on, backups do not deduplicate against condemned packs.
//! 2. **Sweep.** A plan is carried out once none of the locks it recorded is alive any more: every
//!    process that might have deduplicated against a condemned pack before the plan existed has
//!    finished. The sweep re-reads the snapshots, keeps any condemned pack a snapshot now needs,
//!    writes a new index without the others, deletes the old index files, and only then deletes
//!    the packs. When no other process holds a lock, both phases happen in one run.
//!
//! Every step is idempotent, so a prune killed at any moment is completed by the next one.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::BackendErrorKind;
use crate::compress::{Compression, Compressor};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{self, Index, PackEntries};
use crate::lock::{self, LockKind};
use crate::pack::{self, PackBuilder};
use crate::reader::BlobReader;
use crate::repo::{self, PLANS, Repository};
use crate::snapshot::{self, Snapshot};
use crate::tree::Content;

const MAGIC: &[u8; 4] = b"CFPL";
/// Blobs per index file written by a sweep.
const BLOBS_PER_INDEX: usize = 100_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Plan {
    created: DateTime<Utc>,
    packs: Vec<Id>,
    /// Locks alive just after the plan was written; the sweep waits until all are gone.
    /// `None` when the pruner stopped before recording them: then the sweep waits until no
    /// other process holds any lock.
    waiting_for: Option<Vec<Id>>,
}

impl Plan {
    fn ready(&self, live: &[Id]) -> bool {
        match &self.waiting_for {
            Some(w) => w.iter().all(|l| !live.contains(l)),
            None => live.is_empty(),
        }
    }
}

fn write_plan(repo: &Repository, id: &Id, plan: &Plan) -> Result<()> {
    let sealed = repo.seal(MAGIC, serde_json::to_vec(plan).expect("plan serializes"));
    repo.backend()
        .write(&repo::object_name(PLANS, id), &sealed)?;
    Ok(())
}

fn load_plans(repo: &Repository) -> Result<Vec<(Id, Plan)>> {
    let mut out = vec![];
    for obj in repo.backend().list(PLANS)? {
        let Some(id) = repo::id_of_name(&obj.name) else {
            continue;
        };
        let data = match repo.backend().read(&obj.name) {
            Ok(d) => d,
            Err(e) if e.kind == BackendErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        // An unreadable plan deletes nothing; its packs simply stay.
        if let Ok(p) = repo.unseal(MAGIC, &obj.name, &data).and_then(|p| {
            serde_json::from_slice::<Plan>(&p).map_err(|e| Error::damaged(&obj.name, e.to_string()))
        }) {
            out.push((id, p));
        }
    }
    Ok(out)
}

/// Packs named by pending plans: readable, but not to be used for deduplication.
pub(crate) fn condemned_packs(repo: &Repository) -> Result<HashSet<Id>> {
    Ok(load_plans(repo)?
        .into_iter()
        .flat_map(|(_, p)| p.packs)
        .collect())
}

#[derive(Debug, Default, Clone)]
pub struct PruneOptions {
    /// Only report what would be done.
    pub dry_run: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub snapshots: u64,
    pub referenced_blobs: u64,
    pub packs_deleted: u64,
    pub bytes_deleted: u64,
    pub packs_repacked: u64,
    pub bytes_repacked: u64,
    /// Packs marked for deletion that wait for running operations to finish.
    pub packs_waiting: u64,
    pub bytes_waiting: u64,
    /// The operations they wait for.
    pub waiting_for: Vec<String>,
    pub index_files_written: u64,
    pub index_files_removed: u64,
    pub warnings: Vec<String>,
    pub dry_run: bool,
    pub duration_ms: u64,
}

/// Every blob the given snapshots reference: trees, file data and checkpoint blobs.
/// Refuses (errors) when a tree cannot be read: prune must know everything that is needed.
fn referenced_blobs(
    reader: &BlobReader,
    snaps: &[(Id, Snapshot)],
    into: &mut HashSet<Id>,
    seen_trees: &mut HashSet<Id>,
) -> Result<()> {
    for (id, s) in snaps {
        if let Some(cp) = s.checkpoints {
            into.insert(cp);
        }
        let mut stack = vec![s.tree];
        while let Some(t) = stack.pop() {
            if !seen_trees.insert(t) {
                continue;
            }
            into.insert(t);
            let tree = reader.tree(&t).map_err(|e| {
                Error::Invalid(format!("prune stopped: snapshot {} cannot be read completely ({e}); run `coffer verify` first", id.short()))
            })?;
            for n in &tree.nodes {
                if let Some(sub) = n.subtree {
                    stack.push(sub);
                }
                for c in &n.content {
                    if let Content::Chunk { id, .. } = c {
                        into.insert(*id);
                    }
                }
            }
        }
    }
    Ok(())
}

struct State<'a> {
    repo: &'a Repository,
    index: Index,
    listed: HashMap<Id, u64>,
    snaps: Vec<(Id, Snapshot)>,
    referenced: HashSet<Id>,
    seen_trees: HashSet<Id>,
    report: PruneReport,
    dry_run: bool,
}

pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let started = Instant::now();
    let own = lock::acquire(repo, LockKind::Prune)?;
    // Half-written files of killed writers (a backup's pack, a lock) are litter nobody reads.
    if let Err(e) = repo.backend().remove_leftovers() {
        tracing::warn!(error = %e, "prune could not remove what killed writers left behind");
    }
    // Order matters: packs are listed before locks, so any pack a running backup has written
    // belongs to a backup whose lock we see.
    let listed = repo::list_packs(repo)?;
    let live: Vec<Id> = lock::live_locks(repo)?
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| *id != own.id)
        .collect();
    // Snapshots before the index: a backup writes its index files before its snapshot, so
    // every snapshot listed here finds its blobs in the index loaded next. A snapshot that
    // appears later belongs to a backup whose lock is live, and plans wait for it.
    let snapshot::Listing {
        snapshots: snaps,
        damaged,
    } = snapshot::list(repo)?;
    let mut index = Index::load(repo)?;
    index.add_unindexed_packs(repo)?;
    if let Some(e) = damaged.first() {
        return Err(Error::Invalid(format!(
            "prune stopped: {e}; remove or repair that snapshot first (run `coffer verify`)"
        )));
    }
    let mut st = State {
        repo,
        index,
        listed,
        snaps,
        referenced: HashSet::new(),
        seen_trees: HashSet::new(),
        report: PruneReport {
            dry_run: opts.dry_run,
            ..Default::default()
        },
        dry_run: opts.dry_run,
    };
    {
        let reader = BlobReader::new(repo, &st.index);
        referenced_blobs(&reader, &st.snaps, &mut st.referenced, &mut st.seen_trees)?;
    }
    st.report.snapshots = st.snaps.len() as u64;
    st.report.referenced_blobs = st.referenced.len() as u64;

    // Sweep plans whose waiting is over.
    let plans = load_plans(repo)?;
    let (ready, pending): (Vec<_>, Vec<_>) = plans.into_iter().partition(|(_, p)| p.ready(&live));
    if !ready.is_empty() {
        st.sweep(&ready)?;
    }

    // Mark new garbage.
    let already: HashSet<Id> = pending
        .iter()
        .flat_map(|(_, p)| p.packs.iter().copied())
        .collect();
    let condemned = st.mark(&already)?;
    if !condemned.is_empty() && !st.dry_run {
        // The plan is written before the locks are listed: whoever starts after that listing
        // reads the plan and leaves the condemned packs alone; whoever started before is listed.
        let plan_id = Id::random();
        let mut plan = Plan {
            created: Utc::now(),
            packs: condemned,
            waiting_for: None,
        };
        write_plan(repo, &plan_id, &plan)?;
        let others: Vec<Id> = lock::live_locks(repo)?
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| *id != own.id)
            .collect();
        plan.waiting_for = Some(others);
        write_plan(repo, &plan_id, &plan)?;
        if plan.waiting_for.as_ref().is_some_and(Vec::is_empty) {
            st.sweep(&[(plan_id, plan)])?;
        } else {
            st.wait_report(&plan);
        }
    } else if st.dry_run {
        st.report.packs_deleted += condemned.len() as u64;
        st.report.bytes_deleted += condemned
            .iter()
            .filter_map(|p| st.listed.get(p))
            .sum::<u64>();
    }
    for (_, p) in &pending {
        st.wait_report(p);
    }
    let live_now = lock::live_locks(repo)?;
    st.report.waiting_for = live_now
        .iter()
        .filter(|(id, _)| *id != own.id && st.report.packs_waiting > 0)
        .map(|(_, l)| l.describe())
        .collect();
    st.report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(st.report)
}

impl State<'_> {
    fn wait_report(&mut self, plan: &Plan) {
        self.report.packs_waiting += plan.packs.len() as u64;
        self.report.bytes_waiting += plan
            .packs
            .iter()
            .filter_map(|p| self.listed.get(p))
            .sum::<u64>();
    }

    /// Packs that hold the current location of a referenced blob.
    fn needed_packs(&self) -> HashSet<Id> {
        self.referenced
            .iter()
            .filter_map(|b| self.index.lookup(b).map(|l| l.pack))
            .collect()
    }

    /// Condemn unreferenced packs, repacking the mostly unused ones first.
    fn mark(&mut self, already: &HashSet<Id>) -> Result<Vec<Id>> {
        let contents = self.index.pack_contents();
        let mut condemned = vec![];
        let mut repack = vec![];
        for (pack, size) in &self.listed {
            if already.contains(pack) || !self.index.has_pack(pack) {
                continue;
            }
            let used: u64 = contents
                .get(pack)
                .map(|blobs| {
                    blobs
                        .iter()
                        .filter(|b| self.referenced.contains(&b.id))
                        .map(|b| b.length as u64)
                        .sum()
                })
                .unwrap_or(0);
            if used == 0 {
                condemned.push(*pack);
            } else if (size - used.min(*size)) * 4 >= *size {
                repack.push(*pack);
            }
        }
        for id in &self.listed.keys().copied().collect::<Vec<_>>() {
            if !self.index.has_pack(id) {
                self.report.warnings.push(format!(
                    "{} is not a readable pack; it was left alone (see `coffer verify`)",
                    repo::pack_name(id)
                ));
            }
        }
        if !repack.is_empty() && !self.dry_run {
            self.repack(&repack, &contents)?;
        }
        self.report.packs_repacked = repack.len() as u64;
        self.report.bytes_repacked = repack.iter().filter_map(|p| self.listed.get(p)).sum();
        condemned.extend(repack);
        Ok(condemned)
    }

    /// Copy the referenced blobs of `packs` into new packs, and index them.
    fn repack(&mut self, packs: &[Id], contents: &HashMap<Id, Vec<pack::BlobEntry>>) -> Result<()> {
        let repo = self.repo;
        let target = repo.config().pack_size as usize;
        let mut compressor = Compressor::new(repo.config().compression_level);
        let mut new_packs: Vec<PackEntries> = vec![];
        let mut builder: [Option<PackBuilder>; 2] = [None, None];
        let flush = |b: PackBuilder, new_packs: &mut Vec<PackEntries>| -> Result<()> {
            let p = b.finish();
            repo.backend().write(&repo::pack_name(&p.id), &p.data)?;
            new_packs.push(PackEntries {
                id: p.id,
                seed: p.seed,
                blobs: p.entries,
            });
            Ok(())
        };
        for pack_id in packs {
            let Some(pref) = self
                .index
                .packs()
                .iter()
                .find(|p| p.id == *pack_id)
                .copied()
            else {
                continue;
            };
            let data = repo.backend().read(&repo::pack_name(pack_id))?;
            for e in contents
                .get(pack_id)
                .into_iter()
                .flatten()
                .filter(|b| self.referenced.contains(&b.id))
            {
                let plain = pack::decode_blob(
                    repo,
                    pack_id,
                    &pref.seed,
                    e,
                    pack::blob_bytes(&data, e).to_vec(),
                )?;
                let (compression, stored) = match compressor.compress(&plain) {
                    Some(z) => (Compression::Zstd, z),
                    None => (Compression::None, plain.clone()),
                };
                let slot = &mut builder[e.kind as usize];
                let b = slot.get_or_insert_with(|| PackBuilder::new(repo, target));
                b.add(e.kind, e.id, plain.len(), compression, stored);
                if b.len() >= target {
                    flush(slot.take().expect("just filled"), &mut new_packs)?;
                }
            }
        }
        for b in builder.into_iter().flatten().filter(|b| !b.is_empty()) {
            flush(b, &mut new_packs)?;
        }
        if !new_packs.is_empty() {
            index::write_file(repo, &new_packs)?;
            for p in &new_packs {
                self.index.add_pack(p, false);
            }
        }
        Ok(())
    }

    fn reload_index(&mut self) -> Result<()> {
        let mut fresh = Index::load(self.repo)?;
        fresh.add_unindexed_packs(self.repo)?;
        self.index = fresh;
        Ok(())
    }

    /// Carry out plans: keep what snapshots now need, rewrite the index, delete the rest.
    fn sweep(&mut self, plans: &[(Id, Plan)]) -> Result<()> {
        // Snapshots written since we listed them may need condemned packs: read them too.
        let now = snapshot::list(self.repo)?.snapshots;
        let known: HashSet<Id> = self.snaps.iter().map(|(id, _)| *id).collect();
        let new: Vec<(Id, Snapshot)> = now
            .into_iter()
            .filter(|(id, _)| !known.contains(id))
            .collect();
        if !new.is_empty() {
            // Their index files were written before them, perhaps after our index was loaded.
            self.reload_index()?;
        }
        {
            let reader = BlobReader::new(self.repo, &self.index);
            referenced_blobs(&reader, &new, &mut self.referenced, &mut self.seen_trees)?;
        }
        self.snaps.extend(new);
        let needed = self.needed_packs();
        let delete: HashSet<Id> = plans
            .iter()
            .flat_map(|(_, p)| p.packs.iter().copied())
            .filter(|p| !needed.contains(p))
            .collect();
        let bytes: u64 = delete.iter().filter_map(|p| self.listed.get(p)).sum();
        if self.dry_run {
            self.report.packs_deleted += delete.len() as u64;
            self.report.bytes_deleted += bytes;
            return Ok(());
        }
        if !delete.is_empty() {
            // 1. A new index without the doomed packs, 2. old index files gone, 3. packs gone:
            // at no moment does an index file list a pack that no longer exists.
            let mut surviving: Vec<PackEntries> = self
                .index
                .pack_contents()
                .into_iter()
                .filter(|(id, _)| !delete.contains(id))
                .map(|(id, blobs)| {
                    let seed = self
                        .index
                        .packs()
                        .iter()
                        .find(|p| p.id == id)
                        .map(|p| p.seed)
                        .unwrap_or_default();
                    PackEntries { id, seed, blobs }
                })
                .collect();
            surviving.sort_by_key(|p| p.id);
            let mut batch: Vec<PackEntries> = vec![];
            let mut blobs = 0;
            for p in surviving {
                blobs += p.blobs.len();
                batch.push(p);
                if blobs >= BLOBS_PER_INDEX {
                    index::write_file(self.repo, &std::mem::take(&mut batch))?;
                    self.report.index_files_written += 1;
                    blobs = 0;
                }
            }
            if !batch.is_empty() {
                index::write_file(self.repo, &batch)?;
                self.report.index_files_written += 1;
            }
            for f in &self.index.files {
                self.repo
                    .backend()
                    .delete(&repo::object_name(repo::INDEX, f))?;
                self.report.index_files_removed += 1;
            }
            for p in &delete {
                self.repo.backend().delete(&repo::pack_name(p))?;
            }
            self.report.packs_deleted += delete.len() as u64;
            self.report.bytes_deleted += bytes;
            self.reload_index()?;
            self.listed.retain(|id, _| !delete.contains(id));
        }
        for (id, _) in plans {
            self.repo.backend().delete(&repo::object_name(PLANS, id))?;
        }
        Ok(())
    }
}
