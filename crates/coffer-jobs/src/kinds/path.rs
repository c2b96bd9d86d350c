//! Path sources: a file or directory tree of this node, kept in the snapshot under its
//! absolute path, less what its excludes leave out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use coffer_repo::{BackupItem, Excludes};

use super::{Judge, Kind, Logins, Restore, Run, ServerDumps, missing_on_disk, unreadable};
use crate::Result;
use crate::spec::{FieldError, field};

pub(super) struct Tree<'a> {
    pub path: &'a str,
    pub exclude: &'a [String],
    pub exclude_caches: bool,
}

impl Tree<'_> {
    fn excludes(&self) -> coffer_repo::Result<Excludes> {
        Excludes::new(self.exclude, self.exclude_caches)
    }
}

impl Kind for Tree<'_> {
    fn check(&self, judge: &Judge<'_>) -> Result<(), FieldError> {
        self.excludes()
            .map_err(|e| field("sources", e.to_string()))?;
        judge.places.source(self.path, judge.role)
    }

    fn on_disk(&self) -> Option<PathBuf> {
        Some(PathBuf::from(self.path))
    }

    fn missing(&self, _: &Logins) -> Option<String> {
        missing_on_disk(self.path)
    }

    fn items(&self, _: &mut Run<'_>) -> Result<Vec<BackupItem>> {
        let p = Path::new(self.path);
        std::fs::symlink_metadata(p).map_err(|e| unreadable(self.path, e))?;
        let item = BackupItem::path(p).map_err(|e| unreadable(self.path, e))?;
        Ok(vec![item.excluding(self.excludes()?)])
    }

    fn restores(&self, _: &HashMap<String, ServerDumps>) -> Vec<Restore> {
        vec![Restore::Path(PathBuf::from(self.path))]
    }
}
