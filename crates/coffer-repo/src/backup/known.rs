//! What a backup knows to be stored already.
//!
//! The blobs of listings are indexed at once: the walk reads its parent's listings, and stores
//! a listing only when it is new. Where data blobs are is loaded only when the backup first
//! asks for it (a new chunk to deduplicate, a file's stored copy to read back, a parent whose
//! packs are not all intact): a backup that finds nothing new never loads it, so its memory
//! does not grow with the number of blobs in the repository.

use std::sync::{Mutex, OnceLock};

use crate::error::Result;
use crate::id::Id;
use crate::index::{Index, Location};
use crate::repo::Repository;
use crate::tree::Content;

pub(super) struct Known {
    repo: Repository,
    trees: Index,
    /// `Index::intact`, answered once.
    intact: bool,
    data: OnceLock<Index>,
    /// Held while the data index loads, so that two threads do not load it twice.
    loading: Mutex<()>,
}

impl Known {
    /// Load the index of listings. Returns the names of the packs that storage lost: their
    /// blobs count as not stored.
    pub fn load(repo: &Repository) -> Result<(Known, Vec<String>)> {
        let mut trees = Index::load_trees(repo)?;
        let lost = trees.forget_lost_packs();
        let known = Known {
            repo: repo.clone(),
            intact: trees.intact(),
            trees,
            data: OnceLock::new(),
            loading: Mutex::new(()),
        };
        Ok((known, lost))
    }

    /// The index of listings, for reading the parent's.
    pub fn trees(&self) -> &Index {
        &self.trees
    }

    /// The whole index, loaded on first use.
    fn data(&self) -> Result<&Index> {
        if let Some(index) = self.data.get() {
            return Ok(index);
        }
        let _loading = self.loading.lock().expect("index loading");
        if let Some(index) = self.data.get() {
            return Ok(index);
        }
        let mut index = Index::load(&self.repo)?;
        index.forget_lost_packs();
        Ok(self.data.get_or_init(|| index))
    }

    /// True when a backup may reuse the stored listing instead of storing it again.
    pub fn has_tree(&self, id: &Id) -> bool {
        self.trees.has_blob(id)
    }

    /// True when a backup may reuse the stored data blob instead of storing it again.
    pub fn has_data(&self, id: &Id) -> Result<bool> {
        Ok(self.data()?.has_blob(id))
    }

    /// Where a data blob is stored, if anywhere.
    pub fn lookup(&self, id: &Id) -> Result<Option<Location>> {
        Ok(self.data()?.lookup(id))
    }

    /// Whether every chunk of a file of the parent snapshot is stored (`queued`: queued by
    /// this backup). When the repository is intact this needs no lookup at all.
    pub fn parent_content_stored(
        &self,
        content: &[Content],
        queued: impl Fn(&Id) -> bool,
    ) -> Result<bool> {
        if self.intact {
            return Ok(true);
        }
        let data = self.data()?;
        Ok(content.iter().all(|c| match c {
            Content::Chunk { id, .. } => data.has_blob(id) || queued(id),
            Content::Hole { .. } => true,
        }))
    }
}
