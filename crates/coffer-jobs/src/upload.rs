//! Restores from an uploaded archive (as `download` produces it). The engine checks such an
//! archive before anything is written and unpacks it without what could give the uploader more
//! rights on the host (`coffer_repo::tarball`); here its items are swapped in, as for a restore
//! of a record. (A restore of a recorded snapshot keeps what was recorded.)

use std::path::Path;

use coffer_db::Restored;
use coffer_repo::tarball;

use crate::inplace::in_place;
use crate::kinds::{Logins, Restore};
use crate::spec::FieldError;
use crate::{JobsError, Result};

/// Why a job with database sources cannot restore from an uploaded archive.
pub(crate) const NO_DATABASES_IN_UPLOADS: &str =
    "databases are restored from records, not from uploaded archives";

/// An upload refused for `message`.
pub(crate) fn refuse(message: String) -> JobsError {
    JobsError::Field(FieldError {
        field: "archive",
        message,
    })
}

/// What the engine wrote from an upload, as a restore's outcome.
pub(crate) fn restored(u: tarball::Unpacked) -> Restored {
    Restored {
        files: u.files,
        bytes: u.bytes,
        warnings: u.warnings,
    }
}

/// Restore `plan` in place from an uploaded (and checked) archive.
pub fn restore_archive(
    archive: &Path,
    plan: &[Restore],
    task: &str,
    force: bool,
    progress: &coffer_repo::Progress,
) -> Result<Restored> {
    in_place(
        plan,
        task,
        force,
        |staging, item| {
            let include = item.inside(&Logins::default());
            let include = Path::new(include.trim_start_matches('/'));
            Ok(restored(tarball::unpack(
                archive, include, staging, progress,
            )?))
        },
        |item| item.apply_archive(archive),
    )
}
