//! The kinds of source a job backs up, one module each behind [`Kind`]: what a source of the
//! kind is checked for when a job is made, whether it exists now, the engine items that back
//! it up, and what restoring it brings back. [`of`] is the one place that tells the kinds
//! apart: a new kind is a new module and one line there.
//!
//! A restore is a plan of [`Restore`] items, each of one source (or a part of it: a file of a
//! path source, one database of a whole server). Files and trees come back in place through a
//! staging directory (`inplace`); volumes and databases through their own tools.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use coffer_db::Restored;
use coffer_repo::{BackupItem, SnapshotReader};
use coffer_types::{Role, Source};

use crate::places::Places;
use crate::spec::FieldError;
use crate::{JobsError, Result, inplace};

pub(crate) mod database;
mod path;
pub(crate) mod sqlite;
pub(crate) mod volume;

pub(crate) use database::{Logins, ServerDumps};

/// What Coffer does with one kind of source.
pub(crate) trait Kind {
    /// Refuse a source that cannot work as named, when a job is made or changed.
    fn check(&self, judge: &Judge<'_>) -> Result<(), FieldError>;

    /// The file or tree on this node the source is, if it is one: judged again before each
    /// run, and what an interrupted in-place restore may have left moved aside.
    fn on_disk(&self) -> Option<PathBuf> {
        None
    }

    /// What of it does not exist now, in words; none when it all does (blocking).
    fn missing(&self, logins: &Logins) -> Option<String>;

    /// The engine items that back it up (blocking).
    fn items(&self, run: &mut Run<'_>) -> Result<Vec<BackupItem>>;

    /// What restoring it whole brings back; `servers` says what a record holds of each
    /// whole database server, by credential id.
    fn restores(&self, servers: &HashMap<String, ServerDumps>) -> Vec<Restore>;
}

/// The kind of `source`.
pub(crate) fn of(source: &Source) -> Box<dyn Kind + '_> {
    match source {
        Source::Path {
            path,
            exclude,
            exclude_caches,
        } => Box::new(path::Tree {
            path,
            exclude,
            exclude_caches: *exclude_caches,
        }),
        Source::Sqlite { path } => Box::new(sqlite::Database { path }),
        Source::Volume { name } => Box::new(volume::Volume { name }),
        Source::Postgres { .. } | Source::Mysql { .. } => {
            Box::new(database::Server::of(source).expect("a database source"))
        }
    }
}

/// How a source is judged when a job is made or changed: where sources may be, and the role
/// of whoever names it.
pub(crate) struct Judge<'a> {
    pub places: &'a Places,
    pub role: Role,
}

/// What backing a source up works with: a directory for temporary copies (removed when the
/// run ends), the snapshot's labels (a kind may record how to recreate its source), and the
/// logins of database sources.
pub(crate) struct Run<'a> {
    pub scratch_dir: &'a Path,
    pub scratch: &'a mut Scratch,
    /// Whether to store what is there even when it cannot be read as what it should be (a
    /// safety record before a restore saves a broken SQLite file as raw bytes).
    pub keep_unreadable: bool,
    pub labels: &'a mut BTreeMap<String, String>,
    pub logins: &'a Logins,
}

/// Temporary copies made for a run, removed when it ends (whatever the outcome).
#[derive(Default)]
pub(crate) struct Scratch(pub Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// A source that cannot be read, in words that name it.
fn unreadable(what: impl std::fmt::Display, e: impl std::fmt::Display) -> JobsError {
    JobsError::Source(coffer_sources::SourceError::Failed {
        what: format!("source {what}"),
        message: e.to_string(),
    })
}

/// A file or tree of this node that is not there now.
fn missing_on_disk(path: &str) -> Option<String> {
    std::fs::symlink_metadata(path)
        .is_err()
        .then(|| path.to_string())
}

/// One thing to restore: where it lives on the node, and its path inside the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// A file or tree of a path source (the source itself or something inside it).
    Path(PathBuf),
    /// A SQLite source's database file.
    Sqlite(PathBuf),
    /// A Docker volume, by name.
    Volume(String),
    /// A database's dump, restored into the database `into` of the same server.
    Database {
        credential_id: String,
        database: String,
        into: String,
    },
    /// A whole server's roles or accounts, restored before its databases.
    Globals { credential_id: String },
}

impl Restore {
    /// Its path inside the snapshot (or an uploaded archive).
    pub(crate) fn inside(&self, logins: &Logins) -> String {
        match self {
            Restore::Path(p) => p.display().to_string(),
            Restore::Sqlite(p) => sqlite::inside(p),
            Restore::Volume(name) => volume::folder(name),
            Restore::Database {
                credential_id,
                database,
                ..
            } => logins.dump_path(credential_id, database),
            Restore::Globals { credential_id } => logins.globals_path(credential_id),
        }
    }

    /// The file or tree it replaces on this node, if it is one: restored in place through a
    /// staging directory (`inplace`), and from an uploaded archive.
    pub(crate) fn live(&self) -> Option<&Path> {
        match self {
            Restore::Path(live) | Restore::Sqlite(live) => Some(live),
            _ => None,
        }
    }

    /// Before its staged copy replaces the live file or tree: check the copy, and name the
    /// files beside it that move with it (suffixes of its name).
    pub(crate) fn ready(&self, staged: &Path, force: bool) -> Result<&'static [&'static str]> {
        match self {
            Restore::Sqlite(db) => sqlite::ready(staged, db, force),
            _ => Ok(&[]),
        }
    }

    /// A database's dump: the credential it is restored through, and the database it goes
    /// into.
    pub(crate) fn database_into(&mut self) -> Option<(&str, &mut String)> {
        match self {
            Restore::Database {
                credential_id,
                into,
                ..
            } => Some((credential_id, into)),
            _ => None,
        }
    }

    /// Restore it in place from the snapshot, when it is no file (see [`Restore::live`]).
    pub(crate) fn apply(&self, session: &SnapshotReader<'_>, logins: &Logins) -> Result<Restored> {
        match self {
            Restore::Path(_) | Restore::Sqlite(_) => {
                unreachable!("files are restored through a staging directory")
            }
            Restore::Volume(name) => volume::restore(session, name).map(inplace::counts),
            Restore::Database {
                credential_id,
                database,
                into,
            } => database::restore(session, logins, credential_id, database, into)
                .map(inplace::counts),
            Restore::Globals { credential_id } => {
                database::restore_globals(session, logins.login(credential_id)?)
                    .map(inplace::counts)
            }
        }
    }

    /// Restore it in place from an uploaded (and checked) archive, when it is no file.
    pub(crate) fn apply_archive(&self, archive: &Path) -> Result<Restored> {
        match self {
            Restore::Volume(name) => volume::restore_from_archive(archive, name),
            _ => Err(crate::upload::refuse(
                crate::upload::NO_DATABASES_IN_UPLOADS.into(),
            )),
        }
    }

    /// The volume this restores, if it is one.
    pub fn volume(&self) -> Option<&str> {
        match self {
            Restore::Volume(name) => Some(name),
            _ => None,
        }
    }
}

/// The names of the volumes `plan` restores.
pub fn volumes_in(plan: &[Restore]) -> Vec<String> {
    plan.iter()
        .filter_map(|r| r.volume().map(str::to_string))
        .collect()
}

/// The paths inside the snapshot (or an uploaded archive) that restoring `plan` reads.
pub fn needed(plan: &[Restore], logins: &Logins) -> Vec<String> {
    plan.iter().map(|r| r.inside(logins)).collect()
}

/// What to restore for `paths`, `volumes` and `databases` (all empty: every source). Each path
/// must be a source, or lie inside a path source (`..` is refused before: see
/// `spec::absolute`); each volume a volume source; each database a database source or one
/// that `servers` (by credential id) says the record holds of a whole server. A whole server
/// comes back as its roles or accounts, then its databases.
pub fn plan(
    sources: &[Source],
    servers: &HashMap<String, ServerDumps>,
    paths: &[String],
    volumes: &[String],
    databases: &[String],
) -> Result<Vec<Restore>, FieldError> {
    let all: Vec<Restore> = sources
        .iter()
        .flat_map(|s| of(s).restores(servers))
        .collect();
    if paths.is_empty() && volumes.is_empty() && databases.is_empty() {
        return Ok(all);
    }
    let chosen_paths = paths.iter().map(|p| {
        let p = Path::new(p);
        all.iter()
            .find_map(|r| match r {
                Restore::Path(src) if p.starts_with(src) => Some(Restore::Path(p.to_path_buf())),
                Restore::Sqlite(db) if p == db => Some(r.clone()),
                _ => None,
            })
            .ok_or_else(|| FieldError {
                field: "paths",
                message: format!("{} is not part of this job's sources", p.display()),
            })
    });
    let chosen_volumes = volumes.iter().map(|v| {
        all.iter()
            .find(|r| r.volume() == Some(v.as_str()))
            .cloned()
            .ok_or_else(|| FieldError {
                field: "volumes",
                message: format!("{v} is not one of this job's volumes"),
            })
    });
    let chosen_databases = databases.iter().map(|name| {
        all.iter()
            .find(|r| matches!(r, Restore::Database { database, .. } if database == name))
            .cloned()
            .ok_or_else(|| FieldError {
                field: "databases",
                message: format!("{name} is not one of this job's databases"),
            })
    });
    chosen_paths
        .chain(chosen_volumes)
        .chain(chosen_databases)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources() -> Vec<Source> {
        vec![
            Source::Path {
                path: "/srv/data".into(),
                exclude: vec![],
                exclude_caches: false,
            },
            Source::Sqlite {
                path: "/srv/app.db".into(),
            },
            Source::Volume {
                name: "media".into(),
            },
            Source::Postgres {
                credential_id: "pg".into(),
                database: None,
                all: true,
            },
            Source::Mysql {
                credential_id: "my".into(),
                database: Some("shop".into()),
                all: false,
                backup_tool: None,
            },
        ]
    }

    fn db(credential_id: &str, name: &str) -> Restore {
        Restore::Database {
            credential_id: credential_id.into(),
            database: name.into(),
            into: name.into(),
        }
    }

    fn servers() -> HashMap<String, ServerDumps> {
        let pg = ServerDumps {
            globals: true,
            databases: vec!["a".into(), "b".into()],
        };
        [("pg".to_string(), pg)].into()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn everything_comes_back_when_nothing_is_chosen_roles_before_databases() {
        let plan = plan(&sources(), &servers(), &[], &[], &[]).unwrap();
        assert_eq!(
            plan,
            vec![
                Restore::Path("/srv/data".into()),
                Restore::Sqlite("/srv/app.db".into()),
                Restore::Volume("media".into()),
                Restore::Globals {
                    credential_id: "pg".into()
                },
                db("pg", "a"),
                db("pg", "b"),
                db("my", "shop"),
            ]
        );
        // A whole server whose record holds nothing of it restores nothing of it.
        let plan = super::plan(&sources(), &HashMap::new(), &[], &[], &[]).unwrap();
        assert!(!plan.iter().any(|r| matches!(r, Restore::Globals { .. })));
        assert_eq!(plan.last(), Some(&db("my", "shop")));
    }

    #[test]
    fn chosen_paths_must_lie_inside_a_source() {
        let chosen = |paths: &[&str]| plan(&sources(), &servers(), &strings(paths), &[], &[]);
        assert_eq!(
            chosen(&["/srv/data/sub/file", "/srv/app.db"]).unwrap(),
            vec![
                Restore::Path("/srv/data/sub/file".into()),
                Restore::Sqlite("/srv/app.db".into())
            ]
        );
        for outside in ["/srv/database", "/srv", "/etc/passwd", "/srv/app.db/x"] {
            let e = chosen(&[outside]).unwrap_err();
            assert_eq!(e.field, "paths", "{outside}");
            assert!(e.message.contains(outside), "{}", e.message);
        }
    }

    #[test]
    fn chosen_volumes_and_databases_must_be_the_jobs() {
        let p = plan(
            &sources(),
            &servers(),
            &[],
            &strings(&["media"]),
            &strings(&["b", "shop"]),
        )
        .unwrap();
        assert_eq!(
            p,
            vec![
                Restore::Volume("media".into()),
                db("pg", "b"),
                db("my", "shop")
            ]
        );
        let e = plan(&sources(), &servers(), &[], &strings(&["other"]), &[]).unwrap_err();
        assert_eq!(e.field, "volumes");
        let e = plan(&sources(), &servers(), &[], &[], &strings(&["c"])).unwrap_err();
        assert_eq!(e.field, "databases");
    }
}
