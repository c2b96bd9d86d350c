//! Restores from an uploaded archive (as `download` produces it). Such an archive comes from
//! outside, so it is checked before anything is written — every entry stays inside the target,
//! links too, and every item the restore replaces is in it — and it never brings what could
//! give the uploader more rights on the host than writing files: device nodes and FIFOs are
//! left out, setuid and setgid bits dropped, each with a warning. (A restore of a recorded
//! snapshot keeps what was recorded.)

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;

use coffer_db::Restored;

use crate::inplace::in_place;
use crate::kinds::{Logins, Restore};
use crate::spec::FieldError;
use crate::{JobsError, Result};

/// Why a job with database sources cannot restore from an uploaded archive.
pub(crate) const NO_DATABASES_IN_UPLOADS: &str =
    "databases are restored from records, not from uploaded archives";

/// The mode bits an uploaded file never gets.
pub(crate) const SET_ID_BITS: u32 = 0o6000;

/// What an uploaded entry may not bring.
pub(crate) enum Refused {
    /// A device node or FIFO: left out.
    Skip(String),
    /// Setuid or setgid bits: dropped.
    Strip(String),
}

/// Whether the entry at `path` with `header` brings something an upload may not.
pub(crate) fn refused(header: &tar::Header, path: &Path) -> Option<Refused> {
    use tar::EntryType::{Block, Char, Fifo};
    let kind = header.entry_type();
    if matches!(kind, Char | Block | Fifo) {
        return Some(Refused::Skip(format!(
            "{}: left out (an uploaded archive never creates device nodes or FIFOs)",
            path.display()
        )));
    }
    let mode = header.mode().unwrap_or(0);
    (mode & SET_ID_BITS != 0).then(|| {
        Refused::Strip(format!(
            "{}: setuid/setgid bits dropped (an uploaded archive never sets them)",
            path.display()
        ))
    })
}

/// Check an uploaded archive before anything is written: every entry a relative path without
/// `..`, links staying inside the archive, and each of `needed` (paths inside the archive, the
/// items the restore replaces) present. Returns its SHA-256 (hex).
pub fn check_archive(archive: &Path, needed: &[String]) -> Result<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(archive).map_err(|e| JobsError::io("the upload", e))?;
    let mut start = [0u8; 8];
    let n =
        std::io::Read::read(&mut file, &mut start).map_err(|e| JobsError::io("the upload", e))?;
    if let Some(what) = not_tar(&start[..n]) {
        return Err(refuse(what.into()));
    }
    std::io::Seek::rewind(&mut file).map_err(|e| JobsError::io("the upload", e))?;
    let mut hasher = sha2::Sha256::new();
    let reader = HashingReader {
        inner: file,
        hasher: &mut hasher,
    };
    let mut tar = tar::Archive::new(reader);
    let bad =
        |what: &str, p: &Path| refuse(format!("the archive is refused: {what} {}", p.display()));
    let unreadable =
        |e: std::io::Error| refuse(format!("the archive is damaged or truncated: {e}"));
    let needed: Vec<PathBuf> = needed
        .iter()
        .map(|n| PathBuf::from(n.trim_start_matches('/')))
        .collect();
    let mut found = vec![false; needed.len()];
    for entry in tar
        .entries()
        .map_err(|e| refuse(format!("not a tar archive: {e}")))?
    {
        let entry = entry.map_err(unreadable)?;
        let path = entry.path().map_err(unreadable)?.into_owned();
        let escapes =
            |p: &Path| p.is_absolute() || p.components().any(|c| c == Component::ParentDir);
        if path.as_os_str().is_empty() || escapes(&path) {
            return Err(bad("an entry leaves the target:", &path));
        }
        if let Some(link) = entry.link_name().map_err(unreadable)? {
            let kind = entry.header().entry_type();
            // A symlink is resolved from its directory, a hard link from the archive root.
            let resolved = if kind.is_symlink() {
                path.parent().unwrap_or(Path::new("")).join(&link)
            } else {
                link.to_path_buf()
            };
            if link.is_absolute() || !stays_inside(&resolved) {
                return Err(bad("a link points outside the target:", &path));
            }
        }
        let path = entry_path(&path);
        for (n, f) in needed.iter().zip(found.iter_mut()) {
            *f |= path.starts_with(n);
        }
    }
    if let Some((n, _)) = needed.iter().zip(&found).find(|(_, f)| !**f) {
        return Err(refuse(format!(
            "the archive holds nothing of /{}: it is not an archive of this job",
            n.display()
        )));
    }
    // Hash what follows the last entry too (the end-of-archive blocks).
    let mut rest = tar.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(unreadable)?;
    Ok(hex::encode(hasher.finalize()))
}

/// An entry's path without `./` components (GNU tar writes `./dir/file` when told `-C dir .`).
pub(crate) fn entry_path(p: &Path) -> PathBuf {
    p.components().filter(|c| *c != Component::CurDir).collect()
}

/// An upload refused for `message`.
pub(crate) fn refuse(message: String) -> JobsError {
    JobsError::Field(FieldError {
        field: "archive",
        message,
    })
}

/// What an upload is when its first bytes say it is no tar archive, in words that say what to
/// do with it.
fn not_tar(start: &[u8]) -> Option<&'static str> {
    let is = |magic: &[u8]| start.starts_with(magic);
    if is(b"CFSEAL01") {
        Some(
            "this is a sealed archive (a download with ?encrypted=true): open it with `coffer decrypt --key-file KEY` first, then upload the archive it writes",
        )
    } else if is(&[0x1f, 0x8b]) {
        Some("this is a gzip file: unpack it (`gunzip`) and upload the tar archive inside")
    } else if is(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("this is a zstd file: unpack it (`zstd -d`) and upload the tar archive inside")
    } else if is(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("this is an xz file: unpack it (`xz -d`) and upload the tar archive inside")
    } else if is(b"BZh") {
        Some("this is a bzip2 file: unpack it (`bunzip2`) and upload the tar archive inside")
    } else if is(b"PK\x03\x04") || is(b"PK\x05\x06") {
        Some("this is a zip file: upload the record's tar archive (as a download gives it) instead")
    } else {
        None
    }
}

/// Whether a relative path, followed component by component, never climbs above its root.
fn stays_inside(p: &Path) -> bool {
    let mut depth: i64 = 0;
    for c in p.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

struct HashingReader<'a, R> {
    inner: R,
    hasher: &'a mut sha2::Sha256,
}

impl<R: std::io::Read> std::io::Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The exact modification time of a pax header (`mtime=SECONDS.FRACTION`), which the plain
/// header rounds to seconds.
fn pax_mtime<R: std::io::Read>(entry: &mut tar::Entry<'_, R>) -> Option<rustix::fs::Timespec> {
    let exts = entry.pax_extensions().ok()??;
    let value = exts
        .filter_map(Result::ok)
        .find(|e| e.key() == Ok("mtime"))?
        .value()
        .ok()?
        .to_string();
    let (secs, frac) = value.split_once('.').unwrap_or((&value, "0"));
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    Some(rustix::fs::Timespec {
        tv_sec: secs.parse().ok()?,
        tv_nsec: digits.parse().ok()?,
    })
}

/// Set the modification time of `path` itself (not of a symlink's target).
fn set_mtime(path: &Path, t: rustix::fs::Timespec) -> std::io::Result<()> {
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(std::io::Error::from)
}

/// An error with what caused it (the tar crate says "failed to unpack" and keeps the why in
/// the source).
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Write the entries of `archive` below `include` into `staging`, as they are but for what an
/// upload may not bring.
fn unpack(
    archive: &Path,
    include: &Path,
    staging: &Path,
    progress: &coffer_repo::Progress,
) -> Result<Restored> {
    let file = std::fs::File::open(archive).map_err(|e| JobsError::io("the upload", e))?;
    let unreadable =
        |e: std::io::Error| refuse(format!("the archive is damaged or truncated: {e}"));
    let mut tar = tar::Archive::new(file);
    tar.set_preserve_permissions(true);
    tar.set_mask(SET_ID_BITS);
    tar.set_preserve_mtime(true);
    tar.set_preserve_ownerships(rustix::process::geteuid().is_root());
    tar.set_unpack_xattrs(true);
    std::fs::create_dir_all(staging).map_err(|e| JobsError::io(staging.display(), e))?;
    let mut done = Restored::default();
    for entry in tar.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let path = entry_path(&entry.path().map_err(unreadable)?);
        if !path.starts_with(include) {
            continue;
        }
        match refused(entry.header(), &path) {
            Some(Refused::Skip(warning)) => {
                done.warnings.push(warning);
                continue;
            }
            Some(Refused::Strip(warning)) => done.warnings.push(warning),
            None => {}
        }
        if entry.header().entry_type().is_file() {
            done.files += 1;
            done.bytes += entry.size();
            progress.files.fetch_add(1, Ordering::Relaxed);
            progress.bytes.fetch_add(entry.size(), Ordering::Relaxed);
        }
        let mtime = pax_mtime(&mut entry);
        let unpacked = entry
            .unpack_in(staging)
            .map_err(|e| JobsError::Internal(format!("{}: {}", path.display(), with_causes(&e))))?;
        if !unpacked {
            return Err(refuse(format!(
                "the archive is refused: {} leaves the target",
                path.display()
            )));
        }
        if let Some(t) = mtime {
            set_mtime(&staging.join(&path), t).map_err(|e| JobsError::io(path.display(), e))?;
        }
    }
    Ok(done)
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
            unpack(
                archive,
                Path::new(include.trim_start_matches('/')),
                staging,
                progress,
            )
        },
        |item| item.apply_archive(archive),
    )
}
