//! Tar archives from outside the repository: an archive a user uploads to restore from, as a
//! download gave it. Such an archive is checked before anything is written ([`check`]: every
//! entry and link stays inside it, and it holds what the restore needs), and it never brings
//! what could give the uploader more rights on the host than writing files: device nodes and
//! FIFOs are left out and setuid/setgid bits dropped, each with a warning ([`unpack`],
//! [`extract_dir`]). A refused archive is [`Error::Refused`], in words that say what to do.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;

use sha2::Digest;

use crate::backup::Progress;
use crate::{Error, Result};

/// The mode bits an uploaded file never gets.
const SET_ID_BITS: u32 = 0o6000;

/// What unpacking an archive (or a folder of it) wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unpacked {
    pub files: u64,
    pub bytes: u64,
    /// What was left out or changed, per entry.
    pub warnings: Vec<String>,
}

/// An exact time of a PAX record (`SECONDS.FRACTION`), which a plain tar header rounds to
/// seconds: (seconds, nanoseconds).
pub(crate) fn pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let v = std::str::from_utf8(v).ok()?;
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    Some((secs.parse().ok()?, digits.parse().ok()?))
}

/// The exact modification time an entry's PAX header gives, if it gives one.
fn pax_mtime<R: Read>(entry: &mut tar::Entry<'_, R>) -> Option<(i64, u32)> {
    let exts = entry.pax_extensions().ok()??;
    let mtime = exts
        .filter_map(Result::ok)
        .find(|e| e.key_bytes() == b"mtime")?;
    pax_time(mtime.value_bytes())
}

fn refused(message: impl Into<String>) -> Error {
    Error::Refused(message.into())
}

fn unreadable(e: std::io::Error) -> Error {
    refused(format!("the archive is damaged or truncated: {e}"))
}

/// An entry's path without `./` components (GNU tar writes `./dir/file` when told `-C dir .`).
fn entry_path(p: &Path) -> PathBuf {
    p.components().filter(|c| *c != Component::CurDir).collect()
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

/// What an archive is when its first bytes say it is no tar archive, in words that say what to
/// do with it.
fn not_tar(start: &[u8]) -> Option<&'static str> {
    let is = |magic: &[u8]| start.starts_with(magic);
    if is(crate::sealed::MAGIC) {
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

/// What an entry may not bring: `Some(true)` leaves it out (a device node or FIFO),
/// `Some(false)` drops its setuid/setgid bits; with the warning that says so.
fn refusal(header: &tar::Header, path: &Path) -> Option<(bool, String)> {
    use tar::EntryType::{Block, Char, Fifo};
    if matches!(header.entry_type(), Char | Block | Fifo) {
        let warning = format!(
            "{}: left out (an uploaded archive never creates device nodes or FIFOs)",
            path.display()
        );
        return Some((true, warning));
    }
    let mode = header.mode().unwrap_or(0);
    (mode & SET_ID_BITS != 0).then(|| {
        let warning = format!(
            "{}: setuid/setgid bits dropped (an uploaded archive never sets them)",
            path.display()
        );
        (false, warning)
    })
}

/// A reader that hashes what it reads.
struct Hashing<'a, R> {
    inner: R,
    hasher: &'a mut sha2::Sha256,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Check the archive at `archive` before anything is written: a tar archive (else what it is
/// and what to do with it), every entry a relative path without `..`, links staying inside
/// the archive, and each of `needed` (paths inside the archive: what a restore replaces)
/// present. Returns its SHA-256 (hex), of every byte, the end-of-archive blocks too.
pub fn check(archive: &Path, needed: &[String]) -> Result<String> {
    let what = "the uploaded archive";
    let mut file = std::fs::File::open(archive).map_err(|e| Error::io(what, e))?;
    let mut start = [0u8; 8];
    let n = file.read(&mut start).map_err(|e| Error::io(what, e))?;
    if let Some(what) = not_tar(&start[..n]) {
        return Err(refused(what));
    }
    std::io::Seek::rewind(&mut file).map_err(|e| Error::io(what, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut tar = tar::Archive::new(Hashing {
        inner: file,
        hasher: &mut hasher,
    });
    let bad =
        |what: &str, p: &Path| refused(format!("the archive is refused: {what} {}", p.display()));
    let needed: Vec<PathBuf> = needed
        .iter()
        .map(|n| PathBuf::from(n.trim_start_matches('/')))
        .collect();
    let mut found = vec![false; needed.len()];
    let entries = tar
        .entries()
        .map_err(|e| refused(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(unreadable)?;
        let path = entry.path().map_err(unreadable)?.into_owned();
        let escapes =
            |p: &Path| p.is_absolute() || p.components().any(|c| c == Component::ParentDir);
        if path.as_os_str().is_empty() || escapes(&path) {
            return Err(bad("an entry leaves the target:", &path));
        }
        if let Some(link) = entry.link_name().map_err(unreadable)? {
            // A symlink is resolved from its directory, a hard link from the archive root.
            let resolved = match entry.header().entry_type().is_symlink() {
                true => path.parent().unwrap_or(Path::new("")).join(&link),
                false => link.to_path_buf(),
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
        return Err(refused(format!(
            "the archive holds nothing of /{}: it is not an archive of this job",
            n.display()
        )));
    }
    // Hash what follows the last entry too (the end-of-archive blocks).
    let mut rest = tar.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(unreadable)?;
    Ok(hex::encode(hasher.finalize()))
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

/// Set the modification time of `path` itself (not of a symlink's target).
fn set_mtime(path: &Path, (secs, nanos): (i64, u32)) -> std::io::Result<()> {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: nanos.into(),
    };
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

/// Write the entries of the (checked) archive at `archive` that lie below `include` into
/// `into`, under their paths, as they are — exact times, permissions, extended attributes,
/// owners when running as root — but for what an upload may not bring.
pub fn unpack(
    archive: &Path,
    include: &Path,
    into: &Path,
    progress: &Progress,
) -> Result<Unpacked> {
    let file = std::fs::File::open(archive).map_err(|e| Error::io("the uploaded archive", e))?;
    let mut tar = tar::Archive::new(file);
    tar.set_preserve_permissions(true);
    tar.set_mask(SET_ID_BITS);
    tar.set_preserve_mtime(true);
    tar.set_preserve_ownerships(rustix::process::geteuid().is_root());
    tar.set_unpack_xattrs(true);
    std::fs::create_dir_all(into).map_err(|e| Error::io(into, e))?;
    let mut done = Unpacked::default();
    for entry in tar.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let path = entry_path(&entry.path().map_err(unreadable)?);
        if !path.starts_with(include) {
            continue;
        }
        if let Some((skip, warning)) = refusal(entry.header(), &path) {
            done.warnings.push(warning);
            if skip {
                continue;
            }
        }
        if entry.header().entry_type().is_file() {
            done.files += 1;
            done.bytes += entry.size();
            progress.files.fetch_add(1, Ordering::Relaxed);
            progress.bytes.fetch_add(entry.size(), Ordering::Relaxed);
        }
        let mtime = pax_mtime(&mut entry);
        let unpacked = entry
            .unpack_in(into)
            .map_err(|e| Error::io(&path, std::io::Error::new(e.kind(), with_causes(&e))))?;
        if !unpacked {
            return Err(refused(format!(
                "the archive is refused: {} leaves the target",
                path.display()
            )));
        }
        if let Some(t) = mtime {
            set_mtime(&into.join(&path), t).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(done)
}

/// Write the entries below the folder `dir` of the (checked) archive at `archive` to `out` as
/// a tar archive of their own (`./…`), PAX records (exact times, extended attributes) kept,
/// but none of what an upload may not bring. Refused when the archive has no such folder.
pub fn extract_dir(archive: &Path, dir: &Path, out: &mut dyn Write) -> Result<Unpacked> {
    let what = "the uploaded archive";
    let err = |e: std::io::Error| Error::io(what, e);
    let inside = |p: &Path| {
        p.strip_prefix(dir)
            .ok()
            .map(|rest| Path::new(".").join(rest))
    };
    let mut tar = tar::Archive::new(std::fs::File::open(archive).map_err(err)?);
    let mut b = tar::Builder::new(out);
    let (mut done, mut found) = (Unpacked::default(), false);
    for entry in tar.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let path = entry_path(&entry.path().map_err(unreadable)?);
        let Some(new) = inside(&path) else {
            continue;
        };
        found = true;
        let mut h = entry.header().clone();
        if let Some((skip, warning)) = refusal(&h, &path) {
            done.warnings.push(warning);
            if skip {
                continue;
            }
            h.set_mode(h.mode().map_err(unreadable)? & !SET_ID_BITS);
        }
        // What the PAX header said beyond names and sizes, which the builder writes itself.
        let mut pax = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(unreadable)? {
            for ext in exts.flatten() {
                if !matches!(ext.key_bytes(), b"path" | b"linkpath" | b"size") {
                    crate::archive::pax_record(&mut pax, ext.key_bytes(), ext.value_bytes());
                }
            }
        }
        if !pax.is_empty() {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_path("././@PaxHeader").map_err(err)?;
            h.set_size(pax.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, &pax[..]).map_err(err)?;
        }
        let kind = h.entry_type();
        if kind.is_hard_link() || kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(unreadable)?
                .unwrap_or_default()
                .into_owned();
            // A hard link names another entry of the archive; a symlink keeps its text.
            let target = match kind.is_hard_link() {
                true => inside(&entry_path(&target)).ok_or_else(|| {
                    refused(format!(
                        "{}: its hard link leaves {}",
                        path.display(),
                        dir.display()
                    ))
                })?,
                false => target,
            };
            b.append_link(&mut h, &new, &target).map_err(err)?;
        } else {
            if kind.is_file() {
                done.files += 1;
                done.bytes += entry.size();
            }
            b.append_data(&mut h, &new, &mut entry).map_err(err)?;
        }
    }
    if !found {
        return Err(refused(format!(
            "the archive has no folder {}",
            dir.display()
        )));
    }
    b.finish().map_err(err)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar archive of `entries`: (path, type, mode, link target, content).
    fn archive(entries: &[(&str, tar::EntryType, u32, &str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(file.reopen().unwrap());
        for (path, kind, mode, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            h.set_size(data.len() as u64);
            h.set_mtime(1_000_000_000);
            h.set_uid(0);
            h.set_gid(0);
            // Set the raw name: the builder refuses `..`, which hostile archives have.
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            if !link.is_empty() {
                h.set_link_name_literal(link).unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.finish().unwrap();
        file
    }

    use tar::EntryType::{Directory, Fifo, Link, Regular, Symlink};

    fn refusal_of(e: Error) -> String {
        match e {
            Error::Refused(m) => m,
            other => panic!("not refused: {other}"),
        }
    }

    #[test]
    fn hostile_entries_and_links_are_refused_before_anything_is_written() {
        for (entries, says) in [
            (
                vec![("../etc/passwd", Regular, 0o644, "", &b"x"[..])],
                "leaves the target",
            ),
            (
                vec![("/etc/passwd", Regular, 0o644, "", &b"x"[..])],
                "leaves the target",
            ),
            (
                vec![("a/link", Symlink, 0o777, "../../etc", &b""[..])],
                "points outside",
            ),
            (
                vec![("a/link", Symlink, 0o777, "/etc", &b""[..])],
                "points outside",
            ),
            (
                vec![("a/hard", Link, 0o644, "../x", &b""[..])],
                "points outside",
            ),
        ] {
            let a = archive(&entries);
            let message = refusal_of(check(a.path(), &[]).unwrap_err());
            assert!(message.contains(says), "{message}");
        }
        // Links that stay inside are fine; the archive must hold what the restore needs.
        let a = archive(&[
            ("./srv/", Directory, 0o755, "", b""),
            ("./srv/a", Regular, 0o644, "", b"x"),
            ("./srv/up", Symlink, 0o777, "../srv/a", b""),
            ("./srv/b", Link, 0o644, "srv/a", b""),
        ]);
        let sha = check(a.path(), &["/srv".into()]).unwrap();
        assert_eq!(
            sha,
            hex::encode(sha2::Sha256::digest(std::fs::read(a.path()).unwrap()))
        );
        let message = refusal_of(check(a.path(), &["/srv".into(), "/etc".into()]).unwrap_err());
        assert!(message.contains("nothing of /etc"), "{message}");
    }

    #[test]
    fn what_is_no_tar_archive_is_named() {
        for (start, says) in [
            (&b"CFSEAL01rest"[..], "coffer decrypt"),
            (&[0x1f, 0x8b, 8, 0][..], "gunzip"),
            (&[0x28, 0xb5, 0x2f, 0xfd][..], "zstd -d"),
            (&b"PK\x03\x04...."[..], "zip file"),
        ] {
            let f = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(f.path(), start).unwrap();
            let message = refusal_of(check(f.path(), &[]).unwrap_err());
            assert!(message.contains(says), "{message}");
        }
    }

    #[test]
    fn uploads_bring_no_devices_fifos_or_setuid_bits() {
        let a = archive(&[
            ("srv/", Directory, 0o755, "", b""),
            ("srv/tool", Regular, 0o4755, "", b"#!/bin/sh\n"),
            ("srv/pipe", Fifo, 0o644, "", b""),
        ]);
        let into = tempfile::tempdir().unwrap();
        let done = unpack(
            a.path(),
            Path::new("srv"),
            into.path(),
            &Progress::default(),
        )
        .unwrap();
        assert_eq!((done.files, done.bytes), (1, 10));
        assert_eq!(done.warnings.len(), 2, "{:?}", done.warnings);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(into.path().join("srv/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        assert!(std::fs::symlink_metadata(into.path().join("srv/pipe")).is_err());
        let mtime = std::fs::metadata(into.path().join("srv/tool"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(
            mtime,
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000)
        );
    }

    #[test]
    fn a_folder_comes_out_as_an_archive_of_its_own() {
        let a = archive(&[
            ("volume/v/", Directory, 0o755, "", b""),
            ("volume/v/a", Regular, 0o6755, "", b"data"),
            ("volume/v/b", Link, 0o644, "volume/v/a", b""),
            ("volume/v/p", Fifo, 0o644, "", b""),
            ("volume/w/c", Regular, 0o644, "", b"other"),
        ]);
        let mut out = vec![];
        let done = extract_dir(a.path(), Path::new("volume/v"), &mut out).unwrap();
        assert_eq!(
            (done.files, done.warnings.len()),
            (1, 2),
            "{:?}",
            done.warnings
        );
        let mut read = tar::Archive::new(&out[..]);
        let entries: Vec<(String, u32, Option<String>)> = read
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name().unwrap().map(|l| l.display().to_string());
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                    link,
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                ("./".to_string(), 0o755, None),
                ("a".to_string(), 0o755, None),
                ("b".to_string(), 0o644, Some("./a".to_string())),
            ]
        );
        let message =
            refusal_of(extract_dir(a.path(), Path::new("volume/x"), &mut vec![]).unwrap_err());
        assert!(message.contains("no folder volume/x"), "{message}");
    }

    #[test]
    fn pax_times_keep_their_fraction() {
        assert_eq!(
            pax_time(b"1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(pax_time(b"12"), Some((12, 0)));
        assert_eq!(pax_time(b"1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(pax_time(b"x.1"), None);
    }
}
