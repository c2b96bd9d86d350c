//! Where jobs may read and write on the host.
//!
//! Coffer usually runs with the rights to read and restore everything it protects (often as
//! root), so what a path in a request may name is decided here, once, for every kind of use:
//!
//! | use              | operators                 | admins                    |
//! |------------------|---------------------------|---------------------------|
//! | source           | inside a source root      | anywhere                  |
//! | repository       | inside a repository root  | inside a repository root  |
//! | restore target   | inside a restore root     | inside a restore root     |
//!
//! and, for everyone, Coffer's own data directory is never a source, nor the repository or the
//! target of anything but its own places in it: repositories only below `backups/`, restore
//! targets only in `restores/`. `backups/` and `restores/` of the data directory are always
//! roots; the admin adds others in the configuration. A path in a request is absolute (or,
//! for repositories and restore targets, relative to the data directory), without `..` or
//! control characters, and is judged by where it really leads: symlinks on the way are
//! resolved first.

use std::path::{Component, Path, PathBuf};

use coffer_types::Role;

use crate::spec::FieldError;

/// The roots the admin allows beyond the data directory's own places.
#[derive(Debug, Clone, Default)]
pub struct Roots {
    /// Where operators may name path and SQLite sources (admins may name any path).
    pub sources: Vec<PathBuf>,
    /// Where local repositories may live, besides `<data_dir>/backups`.
    pub repositories: Vec<PathBuf>,
    /// Where restores into a directory may write, besides `<data_dir>/restores`.
    pub restores: Vec<PathBuf>,
}

/// The data directory's folder for repositories.
pub const BACKUPS: &str = "backups";
/// The data directory's folder for restores into a directory.
pub const RESTORES: &str = "restores";
/// The data directory's scratch folder, emptied at every start.
pub const SCRATCH: &str = "tmp";

#[derive(Debug, Clone)]
pub(crate) struct Places {
    /// The data directory, symlinks resolved.
    data: PathBuf,
    roots: Roots,
}

fn error(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Whether one of the two paths lies inside the other (or they are the same).
pub(crate) fn overlap(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// `path` with every symlink of its deepest existing ancestor resolved (the rest, which does
/// not exist yet, appended as it is). A symlink that leads nowhere is an error: whatever is
/// made through it later would land where it points.
pub(crate) fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let mut existing = path;
    let mut rest = vec![];
    loop {
        match std::fs::canonicalize(existing) {
            Ok(real) => return Ok(rest.iter().rev().fold(real, |p, c| p.join(c))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::fs::symlink_metadata(existing).is_ok() {
                    return Err(std::io::Error::other(format!(
                        "{} is a symlink that leads nowhere",
                        existing.display()
                    )));
                }
                rest.push(existing.file_name().ok_or(e)?.to_owned());
                existing = existing.parent().unwrap_or(Path::new("/"));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A path as a request gives it: absolute (or relative to `base`), without `..`, NUL or other
/// control characters; symlinks resolved.
fn parse(field: &'static str, path: &str, base: Option<&Path>) -> Result<PathBuf, FieldError> {
    if path.is_empty() || path.chars().any(char::is_control) {
        return Err(error(
            field,
            format!("{path:?} is not a path: it is empty or holds control characters"),
        ));
    }
    let p = Path::new(path);
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(error(field, format!("{path:?}: '..' is not allowed")));
    }
    let full = match base {
        _ if p.is_absolute() => p.to_path_buf(),
        Some(base) => base.join(p),
        None => return Err(error(field, format!("{path:?} must be an absolute path"))),
    };
    resolve(&full).map_err(|e| error(field, format!("{path:?} cannot be used: {e}")))
}

impl Places {
    /// The places of the data directory `data_dir` (which exists), and the admin's `roots`.
    /// The data directory's own roots are created.
    pub(crate) fn new(data_dir: &Path, roots: Roots) -> std::io::Result<Places> {
        let data = std::fs::canonicalize(data_dir)?;
        for own in [BACKUPS, RESTORES] {
            std::fs::create_dir_all(data.join(own))?;
        }
        let resolve_all = |v: Vec<PathBuf>| -> Vec<PathBuf> {
            v.into_iter().map(|r| resolve(&r).unwrap_or(r)).collect()
        };
        Ok(Places {
            roots: Roots {
                sources: resolve_all(roots.sources),
                repositories: resolve_all(roots.repositories),
                restores: resolve_all(roots.restores),
            },
            data,
        })
    }

    /// Where the caches of remote repositories are kept (`<data_dir>/cache/<repository id>`).
    pub(crate) fn cache(&self) -> PathBuf {
        self.data.join("cache")
    }

    pub(crate) fn scratch(&self) -> PathBuf {
        self.data.join(SCRATCH)
    }

    /// Where private database servers are started to rebuild databases in (inside the scratch
    /// directory, so emptied at start-up too).
    pub(crate) fn scratch_servers(&self) -> PathBuf {
        self.scratch().join("servers")
    }

    /// Where jobs' local repositories live by default (and the server's own: binlog archives).
    pub(crate) fn backups(&self) -> PathBuf {
        self.data.join(BACKUPS)
    }

    /// Where binlogs are copied on their way to their archive (`<data_dir>/pitr/<credential>`).
    pub(crate) fn pitr(&self) -> PathBuf {
        self.data.join("pitr")
    }

    /// Whether `p` (resolved) touches Coffer's data directory anywhere but inside its folder
    /// `own` (`None`: nowhere).
    fn is_coffers(&self, p: &Path, own: Option<&str>) -> bool {
        match p.strip_prefix(&self.data) {
            Ok(inside) => own.is_none_or(|own| !inside.starts_with(own)),
            Err(_) => self.data.starts_with(p),
        }
    }

    fn inside_any(p: &Path, roots: &[PathBuf]) -> bool {
        roots.iter().any(|r| p.starts_with(r))
    }

    fn shown(roots: &[PathBuf]) -> String {
        roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Check a path or SQLite source named by someone with `role` (jobs keep the path as
    /// given).
    pub(crate) fn source(&self, path: &str, role: Role) -> Result<(), FieldError> {
        let real = parse("sources", path, None)?;
        self.source_is_not_coffers(path, &real)?;
        if role < Role::Admin && !Self::inside_any(&real, &self.roots.sources) {
            let allowed = if self.roots.sources.is_empty() {
                "no source roots are configured, so only an admin may name paths".to_string()
            } else {
                format!(
                    "operators may back up paths inside {}",
                    Self::shown(&self.roots.sources)
                )
            };
            return Err(error(
                "sources",
                format!("{path:?} is outside the allowed source roots: {allowed}"),
            ));
        }
        Ok(())
    }

    fn source_is_not_coffers(&self, path: &str, real: &Path) -> Result<(), FieldError> {
        if self.is_coffers(real, None) {
            return Err(error(
                "sources",
                format!(
                    "{path:?} overlaps Coffer's own data directory {}, which is never a source",
                    self.data.display()
                ),
            ));
        }
        Ok(())
    }

    /// Checked again before each run: a source must not have come to overlap Coffer's files
    /// (through a symlink changed since the job was made).
    pub(crate) fn check_source_now(&self, path: &Path) -> Result<(), FieldError> {
        match resolve(path) {
            Ok(real) => self.source_is_not_coffers(&path.to_string_lossy(), &real),
            Err(_) => Ok(()), // a missing source fails the run with its own message
        }
    }

    /// A local repository directory (`field` names it in errors), relative to the data
    /// directory or absolute; it must not overlap any of `taken` (other repositories).
    pub(crate) fn repository(
        &self,
        field: &'static str,
        dest: &str,
        taken: &[PathBuf],
    ) -> Result<PathBuf, FieldError> {
        let real = parse(field, dest, Some(&self.data))?;
        let own = self.data.join(BACKUPS);
        if real == own || self.is_coffers(&real, Some(BACKUPS)) {
            return Err(error(
                field,
                format!(
                    "{dest:?} overlaps Coffer's own files: inside the data directory, \
                     repositories live in {}/<name>",
                    own.display()
                ),
            ));
        }
        if !real.starts_with(&own) && !Self::inside_any(&real, &self.roots.repositories) {
            return Err(error(
                field,
                format!(
                    "{dest:?} is outside the allowed repository roots: {}",
                    Self::shown(&[&[own][..], &self.roots.repositories].concat())
                ),
            ));
        }
        if let Some(other) = taken.iter().find(|t| overlap(&real, t)) {
            return Err(error(
                field,
                format!(
                    "{dest:?} overlaps the repository at {}, which another job or registered \
                     repository uses",
                    other.display()
                ),
            ));
        }
        Ok(real)
    }

    /// A directory to restore into, relative to the data directory or absolute; it must not
    /// overlap any repository in `repositories`.
    pub(crate) fn restore_target(
        &self,
        target: &str,
        repositories: &[PathBuf],
    ) -> Result<PathBuf, FieldError> {
        let real = parse("target", target, Some(&self.data))?;
        let own = self.data.join(RESTORES);
        if self.is_coffers(&real, Some(RESTORES)) {
            return Err(error(
                "target",
                format!(
                    "{target:?} overlaps Coffer's own files: inside the data directory, \
                     restores go to {}",
                    own.display()
                ),
            ));
        }
        if !real.starts_with(&own) && !Self::inside_any(&real, &self.roots.restores) {
            return Err(error(
                "target",
                format!(
                    "{target:?} is outside the allowed restore roots: {}",
                    Self::shown(&[&[own][..], &self.roots.restores].concat())
                ),
            ));
        }
        if let Some(repo) = repositories.iter().find(|r| overlap(&real, r)) {
            return Err(error(
                "target",
                format!("{target:?} overlaps the repository at {}", repo.display()),
            ));
        }
        Ok(real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(roots: Roots) -> (tempfile::TempDir, Places) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let p = Places::new(&dir.path().join("data"), roots).unwrap();
        (dir, p)
    }

    #[test]
    fn coffers_own_files_are_never_a_source_repository_or_target() {
        let (dir, p) = places(Roots::default());
        let data = p.data.clone();
        let outer = dir.path().to_str().unwrap();
        for path in [
            data.to_str().unwrap().to_string(),
            data.join("coffer.db").display().to_string(),
            outer.to_string(),
            "/".to_string(),
        ] {
            assert!(p.source(&path, Role::Admin).is_err(), "{path}");
        }
        for dest in [
            ".",
            "tmp/repo",
            "restores",
            "coffer.db",
            "server.key",
            "backups",
            "/",
        ] {
            assert!(p.repository("dest_path", dest, &[]).is_err(), "{dest}");
        }
        assert!(p.repository("dest_path", "backups/a", &[]).is_ok());
        for target in [".", "tmp", "backups/x", "server.key", outer] {
            assert!(p.restore_target(target, &[]).is_err(), "{target}");
        }
        assert!(p.restore_target("restores/today", &[]).is_ok());
        assert!(p.restore_target("restores", &[]).is_ok());
    }

    #[test]
    fn roots_bind_operators_and_symlinks_cannot_leave_them() {
        let (dir, _) = places(Roots::default());
        let srv = dir.path().join("srv");
        std::fs::create_dir_all(srv.join("app")).unwrap();
        std::os::unix::fs::symlink("/etc", srv.join("etc")).unwrap();
        let (_d, p) = places(Roots {
            sources: vec![srv.clone()],
            repositories: vec![srv.join("repos")],
            restores: vec![srv.join("restored")],
        });
        let app = srv.join("app").display().to_string();
        assert!(p.source(&app, Role::Operator).is_ok());
        assert!(p.source("/etc", Role::Operator).is_err());
        assert!(p.source("/etc", Role::Admin).is_ok());
        let through = srv.join("etc/shadow").display().to_string();
        assert!(p.source(&through, Role::Operator).is_err());
        assert!(p.source(&format!("{app}/../x"), Role::Operator).is_err());
        assert!(p.source("relative", Role::Admin).is_err());
        assert!(p.source("/srv/a\0b", Role::Admin).is_err());
        let repo = srv.join("repos/one");
        assert!(
            p.repository("dest_path", repo.to_str().unwrap(), &[])
                .is_ok()
        );
        assert!(p.repository("dest_path", "/etc/coffer", &[]).is_err());
        let inside = repo.join("x").display().to_string();
        assert!(
            p.repository("dest_path", &inside, std::slice::from_ref(&repo))
                .is_err()
        );
        let target = srv.join("restored/new").display().to_string();
        assert!(p.restore_target(&target, &[]).is_ok());
        std::fs::create_dir_all(srv.join("restored")).unwrap();
        std::os::unix::fs::symlink("/nowhere/yet", srv.join("restored/dangling")).unwrap();
        let through = srv.join("restored/dangling/x").display().to_string();
        assert!(p.restore_target(&through, &[]).is_err());
        assert!(p.restore_target("/srv-other", &[]).is_err());
    }
}
