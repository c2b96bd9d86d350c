//! Command-line interface: argument parsing and one function per command.
//!
//! Secrets are never taken from arguments (which `ps` shows): the repository password comes
//! from `COFFER_PASSWORD` or a file, the master key from a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, Parser, Subcommand};
use coffer_repo::forget::{self, Decision};
use coffer_repo::prune::{self, PruneOptions, PruneReport};
use coffer_repo::restore::RestoreOptions;
use coffer_repo::verify::{self, VerifyOptions};
use coffer_repo::{
    BackupItem, BackupOptions, ChunkerParams, Error, Excludes, GroupBy, Id, InitOptions, KdfParams,
    KeyExport, Location, ParentChoice, Progress, Repository, RetentionPolicy, Secret, Source,
    snapshot,
};

use coffer_types::RestoreRequest;

use crate::output::{ProgressLine, bytes, millis, print_json};

#[derive(Parser, Debug)]
#[command(
    name = "coffer",
    version,
    about = "Coffer: deduplicated, encrypted, verifiable backups"
)]
pub struct Args {
    /// Repository: a directory, file:///path, or s3://bucket/prefix (before the command).
    #[arg(long, env = "COFFER_REPO")]
    repo: Option<String>,
    /// Read the repository password from this file (otherwise from COFFER_PASSWORD).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Open the repository with a master key written by `coffer key export` instead of a password.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Print one JSON document instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
    /// Read everything from an S3 repository itself, without the local cache of its index,
    /// snapshots and trees (in $XDG_CACHE_HOME/coffer, else ~/.cache/coffer).
    #[arg(long, global = true)]
    no_cache: bool,
    /// The server the commands that drive one talk to [env: COFFER_URL] [default:
    /// http://127.0.0.1:7480]. Their API key comes from COFFER_API_KEY or --api-key-file.
    #[arg(long, global = true)]
    url: Option<String>,
    /// A file holding the API key for --url.
    #[arg(long, global = true, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Repository administration.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Back up files, directories, or a byte stream from stdin.
    Backup(BackupArgs),
    /// List snapshots.
    Snapshots,
    /// Restore a snapshot (or some of its paths) into a directory.
    Restore(RestoreArgs),
    /// Write the canonical tar archive of a snapshot to stdout.
    Dump {
        /// Snapshot id, unique id prefix, or `latest`.
        snapshot: String,
    },
    /// Re-read and check everything snapshots reference (exit code 1 when damage is found).
    Verify {
        /// Check only this snapshot (id, prefix or `latest`); default: all.
        snapshot: Option<String>,
        /// Check metadata only, without reading file data.
        #[arg(long)]
        quick: bool,
    },
    /// Remove snapshots according to a retention policy.
    Forget(ForgetArgs),
    /// Delete data that no snapshot references.
    Prune {
        /// Only show what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Master key management.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Run the Coffer server.
    Serve(ServeArgs),
    /// Coffer's own data.
    #[command(subcommand)]
    System(SystemCommand),
    /// A running server's jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// A job's records on a running server.
    Records { job: String },
    /// Download a record's archive from a running server (resuming a partial file).
    Download {
        job: String,
        record: String,
        /// Where to write it [default: RECORD.tar].
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Restore a record on a running server: in place, or as its options say (those of
    /// `POST /api/backup-jobs/{id}/records/{rid}/restore`).
    RestoreRecord {
        job: String,
        record: String,
        /// A directory (inside the server's restore roots) to restore into instead of in place.
        #[arg(long)]
        target: Option<String>,
        /// Only this path of the record (repeatable).
        #[arg(long = "path")]
        paths: Vec<String>,
        /// Only this volume of the job (repeatable).
        #[arg(long = "volume")]
        volumes: Vec<String>,
        /// Only this database of the job (repeatable).
        #[arg(long = "database")]
        databases: Vec<String>,
        /// Restore the job's one database into this database instead.
        #[arg(long)]
        target_database: Option<String>,
        /// Replace the --target-database if it exists.
        #[arg(long)]
        replace: bool,
        /// Stop running containers that use the volumes, and start them again afterwards.
        #[arg(long)]
        stop_containers: bool,
        /// Restore SQLite databases in place even while processes hold them open.
        #[arg(long)]
        force: bool,
        /// Wait until it ends.
        #[arg(long)]
        wait: bool,
    },
    /// Open a sealed archive (a download with `?encrypted=true`): the archive goes to stdout.
    Decrypt {
        /// File holding the repository key, as `GET /api/admin/repository-key` shows it (the
        /// key's text, or the JSON string).
        #[arg(long)]
        key_file: PathBuf,
        /// The sealed archive (default: stdin).
        input: Option<PathBuf>,
    },
}

/// Settings come, by priority, from these flags, `COFFER_*` variables, the config file, and
/// the defaults (see `coffer::serve`).
#[derive(ClapArgs, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on [env: COFFER_LISTEN] [default: 127.0.0.1:7480].
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Where the server keeps its data [env: COFFER_DATA_DIR] [default: coffer-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A TOML configuration file.
    #[arg(long, env = "COFFER_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum JobsCommand {
    /// The jobs and their last outcome.
    List,
    /// Run a job now.
    Run {
        job: String,
        /// Wait until the record ends, showing its progress on a terminal.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Subcommand, Debug)]
enum SystemCommand {
    /// Make a system backup: through the server when one answers at --url (downloaded into
    /// --output), otherwise — or with --local — from the data directory directly (refused
    /// while a server runs on it). Says which it did.
    Backup {
        /// The directory to write it into.
        #[arg(long, default_value = ".")]
        output: PathBuf,
        /// Seal the server's secrets into it with the passphrase from COFFER_SYSTEM_PASSPHRASE.
        #[arg(long)]
        include_secrets: bool,
        /// Work on the data directory, not through a server.
        #[arg(long)]
        local: bool,
        /// The data directory for --local [env: COFFER_DATA_DIR] [default: coffer-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Restore a running server from a system backup file.
    Restore { file: PathBuf },
    /// Build a data directory from a system backup, on a machine that has none; then
    /// `coffer serve` starts with everything it held. The passphrase of a backup with secrets
    /// comes from COFFER_SYSTEM_PASSPHRASE or --passphrase-file.
    Recover {
        /// The system backup (`coffer-system-….zip`).
        #[arg(
            long = "from",
            required_unless_present = "repo",
            conflicts_with = "repo"
        )]
        from: Option<PathBuf>,
        /// Take the newest copy of a system backup from this repository (the one the setting
        /// system.offsite_repository named: a directory, file:///path or s3://bucket/prefix,
        /// S3 credentials from AWS_*), opened with the system passphrase.
        #[arg(long)]
        repo: Option<String>,
        /// The data directory to build (empty or missing) [env: COFFER_DATA_DIR] [default:
        /// coffer-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A file holding the passphrase the backup's secrets are sealed with.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum RepoCommand {
    /// Create a new repository.
    Init(InitArgs),
}

#[derive(ClapArgs, Debug)]
struct InitArgs {
    /// Create an unencrypted repository (still compressed and checksummed).
    #[arg(long)]
    no_encryption: bool,
    /// zstd compression level for the repository's data (0 turns compression off).
    #[arg(long, default_value_t = InitOptions::default().compression_level, value_parser = clap::value_parser!(i32).range(0..=19))]
    compression_level: i32,
    /// Average chunk size in KiB (a power of two); chunks range from a quarter to four times it.
    #[arg(long, default_value_t = ChunkerParams::default().avg / 1024, value_parser = parse_chunk_kib)]
    average_chunk_kib: u32,
    /// Memory for the password key derivation (argon2id), in KiB.
    #[arg(long, default_value_t = KdfParams::default().m_cost, value_parser = clap::value_parser!(u32).range(8192..=4194304))]
    kdf_memory_kib: u32,
    /// Iterations of the password key derivation.
    #[arg(long, default_value_t = KdfParams::default().t_cost, value_parser = clap::value_parser!(u32).range(1..=64))]
    kdf_iterations: u32,
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Print the master key (JSON), to keep somewhere safe. Anyone holding it can read the data.
    Export,
}

#[derive(ClapArgs, Debug)]
struct BackupArgs {
    /// Files and directories to back up.
    paths: Vec<PathBuf>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Host name recorded in the snapshot (default: this machine's).
    #[arg(long)]
    host: Option<String>,
    /// Compare with this snapshot instead of the newest one of the same paths.
    #[arg(long, conflicts_with = "no_parent")]
    parent: Option<String>,
    /// Read every file, ignoring earlier snapshots.
    #[arg(long)]
    no_parent: bool,
    /// Back up standard input as one file.
    #[arg(long, requires = "stdin_name")]
    stdin: bool,
    /// Name of the file that holds standard input in the snapshot.
    #[arg(long, value_name = "NAME")]
    stdin_name: Option<String>,
    /// Leave out what matches this pattern (repeatable): `*.tmp`, `node_modules`,
    /// `/home/*/.cache`, `**` for any depth, `!pattern` to bring something back.
    #[arg(long, value_name = "PATTERN")]
    exclude: Vec<String>,
    /// Read exclude patterns from this file, one per line (# for comments; repeatable).
    #[arg(long, value_name = "FILE")]
    exclude_file: Vec<PathBuf>,
    /// Leave out the contents of cache directories (those with a CACHEDIR.TAG).
    #[arg(long)]
    exclude_caches: bool,
}

#[derive(ClapArgs, Debug)]
struct RestoreArgs {
    /// Snapshot id, unique id prefix, or `latest`.
    snapshot: String,
    /// Directory to restore into (created if missing).
    #[arg(long)]
    target: PathBuf,
    /// Restore only this path of the snapshot (repeatable), e.g. home/me/docs.
    #[arg(long)]
    include: Vec<String>,
}

#[derive(ClapArgs, Debug)]
struct ForgetArgs {
    /// Remove these snapshots (ids or unique prefixes) instead of applying a policy.
    #[arg(conflicts_with_all = ["keep_last", "keep_within_days", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"])]
    snapshots: Vec<String>,
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    /// Keep every snapshot of the last DAYS days.
    #[arg(long, value_name = "DAYS")]
    keep_within_days: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days that have one.
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N weeks that have one.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months that have one.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years that have one.
    #[arg(long, value_name = "N")]
    keep_yearly: Option<u32>,
    /// Run prune afterwards.
    #[arg(long)]
    prune: bool,
    /// Only show what would be removed.
    #[arg(long)]
    dry_run: bool,
}

/// Print a result: as one JSON document, or as text for people with its warnings on stderr.
fn report<T: serde::Serialize>(ctx: &Ctx, value: &T, warnings: &[String], text: impl FnOnce()) {
    if ctx.json {
        ctx.print_json(value);
    } else {
        for w in warnings {
            eprintln!("warning: {w}");
        }
        text();
    }
}

/// `items` joined and wrapped, or nothing when there are none.
fn bracketed(open: &str, items: &[String], sep: &str, close: &str) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("{open}{}{close}", items.join(sep))
    }
}

fn parse_chunk_kib(s: &str) -> Result<u32> {
    let v: u32 = s
        .parse()
        .with_context(|| format!("{s:?} is not a number"))?;
    if !(64..=4096).contains(&v) || !v.is_power_of_two() {
        bail!("give a power of two between 64 and 4096");
    }
    Ok(v)
}

struct Ctx {
    repo: Option<String>,
    password_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    json: bool,
    no_cache: bool,
    /// The repository the command opened, whose requests its JSON summary reports.
    opened: std::cell::RefCell<Option<Repository>>,
}

impl Ctx {
    fn location(&self) -> Result<Location> {
        let r = self
            .repo
            .as_deref()
            .context("no repository given: pass --repo or set COFFER_REPO")?;
        Ok(Location::parse(r)?)
    }

    fn password(&self) -> Result<Option<String>> {
        if let Some(f) = &self.password_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the password file {}", f.display()))?;
            let pw = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text);
            return Ok(Some(pw.to_string()));
        }
        Ok(std::env::var("COFFER_PASSWORD").ok())
    }

    fn secret(&self) -> Result<Option<Secret>> {
        if let Some(f) = &self.key_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the key file {}", f.display()))?;
            let (_, key) = KeyExport::parse(&text)?;
            return Ok(Some(Secret::MasterKey(key)));
        }
        Ok(self.password()?.map(Secret::Password))
    }

    fn open(&self) -> Result<Repository> {
        let backend = self.location()?.open(None)?;
        let mut repo = Repository::open(backend, self.secret()?.as_ref())?;
        if let Some(base) = cache_base().filter(|_| !self.no_cache) {
            repo = repo.with_cache(&base);
        }
        *self.opened.borrow_mut() = Some(repo.clone());
        Ok(repo)
    }

    /// `v` as JSON, with what the command asked of storage (`"storage": {"requests",
    /// "bytes_read", "bytes_written"}`) when it opened a repository.
    fn json_summary<T: serde::Serialize>(&self, v: &T) -> serde_json::Value {
        let mut value = serde_json::to_value(v).expect("output serializes");
        if let (Some(repo), Some(map)) = (self.opened.borrow().as_ref(), value.as_object_mut()) {
            let stats = serde_json::to_value(repo.request_stats()).expect("serializes");
            map.insert("storage".into(), stats);
        }
        value
    }

    fn print_json<T: serde::Serialize>(&self, v: &T) {
        print_json(&self.json_summary(v));
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let ctx = Ctx {
        repo: args.repo,
        password_file: args.password_file,
        key_file: args.key_file,
        json: args.json,
        no_cache: args.no_cache,
        opened: Default::default(),
    };
    let remote = crate::remote::Remote {
        url: args.url,
        api_key_file: args.api_key_file,
        json: args.json,
    };
    if !matches!(args.command, Command::Serve(_)) {
        // Commands say what went wrong in their error; the details of each failed request
        // (an S3 server's status and headers) are for `COFFER_LOG=warn` and up.
        crate::serve::init_logging("off");
    }
    match args.command {
        Command::Repo(RepoCommand::Init(a)) => init(&ctx, &a),
        Command::Backup(a) => backup(&ctx, a),
        Command::Snapshots => snapshots(&ctx),
        Command::Restore(a) => restore(&ctx, a),
        Command::Dump { snapshot } => dump(&ctx, &snapshot),
        Command::Verify { snapshot, quick } => verify(&ctx, snapshot.as_deref(), quick),
        Command::Forget(a) => forget(&ctx, a),
        Command::Prune { dry_run } => {
            let repo = ctx.open()?;
            let report = prune::prune(&repo, &PruneOptions { dry_run })?;
            print_prune(&ctx, &report);
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(a) => crate::serve::run(a),
        Command::Jobs(JobsCommand::List) => crate::remote::jobs_list(&remote),
        Command::Jobs(JobsCommand::Run { job, wait }) => {
            crate::remote::jobs_run(&remote, &job, wait)
        }
        Command::Records { job } => crate::remote::records(&remote, &job),
        Command::Download {
            job,
            record,
            output,
        } => crate::remote::download(&remote, &job, &record, output),
        Command::RestoreRecord {
            job,
            record,
            target,
            paths,
            volumes,
            databases,
            target_database,
            replace,
            stop_containers,
            force,
            wait,
        } => {
            let request = RestoreRequest {
                paths,
                volumes,
                databases,
                stop_containers,
                target_database,
                replace,
                force,
                target,
            };
            crate::remote::restore_record(&remote, &job, &record, request, wait)
        }
        Command::System(SystemCommand::Backup {
            output,
            include_secrets,
            local,
            data_dir,
        }) => crate::remote::system_backup(&remote, &output, include_secrets, local, data_dir),
        Command::System(SystemCommand::Restore { file }) => {
            crate::remote::system_restore(&remote, &file)
        }
        Command::System(SystemCommand::Recover {
            from,
            repo,
            data_dir,
            passphrase_file,
        }) => {
            let from = match (from, repo) {
                (Some(zip), _) => RecoverFrom::Zip(zip),
                (None, Some(url)) => RecoverFrom::Repository(url),
                (None, None) => bail!("give --from FILE.zip or --repo URL"),
            };
            recover(&ctx, from, data_dir, passphrase_file.as_deref())
        }
        Command::Decrypt { key_file, input } => decrypt(&key_file, input.as_deref()),
        Command::Key(KeyCommand::Export) => {
            let repo = ctx.open()?;
            let key = repo
                .export_key()
                .context("the repository is not encrypted: there is no key to export")?;
            print_json(&key);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Where the caches of remote repositories are kept: `$XDG_CACHE_HOME/coffer`, else
/// `~/.cache/coffer`.
fn cache_base() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_CACHE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".cache"))
        })
        .map(|base| base.join("coffer"))
}

/// The fewest characters a new repository's password may have.
const MIN_PASSWORD: usize = 8;

fn init(ctx: &Ctx, a: &InitArgs) -> Result<ExitCode> {
    let password = if a.no_encryption {
        None
    } else {
        let password = ctx.password()?.context(
            "a new repository needs a password: set COFFER_PASSWORD or pass --password-file FILE (or --no-encryption)",
        )?;
        if password.chars().count() < MIN_PASSWORD {
            bail!(
                "the password is too short: a new repository needs at least {MIN_PASSWORD} characters (a passphrase of several words is best)"
            );
        }
        Some(password)
    };
    let location = ctx.location()?;
    let repo = Repository::init(
        location.open(None)?,
        password.as_deref(),
        InitOptions {
            kdf: KdfParams {
                m_cost: a.kdf_memory_kib,
                t_cost: a.kdf_iterations,
                p_cost: KdfParams::default().p_cost,
            },
            compression_level: a.compression_level,
            chunker: ChunkerParams {
                min: a.average_chunk_kib * 256,
                avg: a.average_chunk_kib * 1024,
                max: (a.average_chunk_kib * 4096).min(16 << 20),
            },
            ..Default::default()
        },
    )?;
    if ctx.json {
        print_json(&serde_json::json!({
            "repository": repo.config().id,
            "location": repo.location(),
            "encrypted": repo.is_encrypted(),
        }));
    } else {
        let kind = if repo.is_encrypted() {
            "encrypted"
        } else {
            "unencrypted"
        };
        println!(
            "created {kind} repository {} at {}",
            repo.config().id.short(),
            repo.location()
        );
        if repo.is_encrypted() {
            println!(
                "Without the password or the exported key (`coffer key export`) the data cannot be read: keep them safe."
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn resolve(repo: &Repository, spec: &str) -> Result<Id> {
    Ok(snapshot::find(repo, spec)?.0)
}

fn backup(ctx: &Ctx, a: BackupArgs) -> Result<ExitCode> {
    let repo = ctx.open()?;
    let mut patterns = a.exclude;
    for f in &a.exclude_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading the exclude file {}", f.display()))?;
        patterns.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    let exclude = Excludes::new(&patterns, a.exclude_caches)?;
    let mut items = a
        .paths
        .iter()
        .map(|p| Ok(BackupItem::path(p)?.excluding(exclude.clone())))
        .collect::<coffer_repo::Result<Vec<_>>>()?;
    if a.stdin {
        let name = a.stdin_name.as_deref().expect("required by clap");
        items.push(BackupItem::named(
            name,
            Source::Stream(Box::new(std::io::stdin())),
        )?);
    }
    if items.is_empty() {
        bail!("nothing to back up: give paths, or --stdin --stdin-name NAME");
    }
    let parent = match (&a.parent, a.no_parent) {
        (_, true) => ParentChoice::None,
        (Some(p), _) => ParentChoice::Snapshot(resolve(&repo, p)?),
        (None, false) => ParentChoice::Auto,
    };
    let progress = Arc::new(Progress::default());
    let line = ProgressLine::start(&progress, !ctx.json, "backed up");
    let opts = BackupOptions {
        host: a.host,
        tags: a.tags,
        parent,
        progress: Some(progress),
        ..Default::default()
    };
    let s = coffer_repo::backup(&repo, items, opts)?;
    drop(line);
    report(ctx, &s, &s.warnings, || {
        println!("snapshot {} saved", s.snapshot_id.short());
        println!(
            "  files:   {} new, {} changed, {} unchanged; {} directories{}",
            s.counts.files_new,
            s.counts.files_changed,
            s.counts.files_unchanged,
            s.counts.dirs,
            match s.counts.excluded {
                0 => String::new(),
                n => format!("; {n} left out by excludes"),
            }
        );
        println!(
            "  data:    {} read, {} new before compression, {} stored",
            bytes(s.counts.bytes_read),
            bytes(s.counts.bytes_added),
            bytes(s.stored_bytes)
        );
        println!("  archive: {} sha256 {}", bytes(s.size_bytes), s.checksum);
        println!("  took {}", millis(s.duration_ms));
    });
    Ok(ExitCode::SUCCESS)
}

fn snapshots(ctx: &Ctx) -> Result<ExitCode> {
    let repo = ctx.open()?;
    let snapshot::Listing {
        snapshots: all,
        damaged,
    } = snapshot::list(&repo)?;
    if ctx.json {
        let list: Vec<_> = all
            .iter()
            .map(|(id, s)| {
                serde_json::json!({
                    "id": id, "short_id": id.short(), "time": s.time, "host": s.host, "tags": s.tags,
                    "paths": s.paths, "parent": s.parent, "checksum": s.checksum, "size_bytes": s.size_bytes,
                    "stored_bytes": s.stored_bytes, "file_count": s.file_count, "labels": s.labels,
                })
            })
            .collect();
        let problems: Vec<String> = damaged.iter().map(|e| e.to_string()).collect();
        ctx.print_json(&serde_json::json!({ "snapshots": list, "problems": problems }));
    } else {
        println!(
            "{:<10} {:<20} {:<16} {:>9} {:>10}  PATHS",
            "ID", "TIME (UTC)", "HOST", "FILES", "SIZE"
        );
        for (id, s) in &all {
            let tags = bracketed(" [", &s.tags, ",", "]");
            println!(
                "{:<10} {:<20} {:<16} {:>9} {:>10}  {}{tags}",
                id.short(),
                s.time.format("%Y-%m-%d %H:%M:%S"),
                s.host,
                s.file_count,
                bytes(s.size_bytes),
                s.paths.join(" ")
            );
        }
        println!("{} snapshots", all.len());
        for e in &damaged {
            eprintln!("warning: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn restore(ctx: &Ctx, a: RestoreArgs) -> Result<ExitCode> {
    let repo = ctx.open()?;
    let id = resolve(&repo, &a.snapshot)?;
    let progress = Arc::new(Progress::default());
    let line = ProgressLine::start(&progress, !ctx.json, "restored");
    let s = repo.open_snapshot(&id)?.restore(
        &a.target,
        RestoreOptions {
            include: a.include,
            progress: Some(progress),
            cancel: None,
        },
    )?;
    drop(line);
    report(ctx, &s, &s.warnings, || {
        println!(
            "restored {} files, {} directories, {} other entries ({}) from snapshot {} into {} in {}",
            s.files,
            s.dirs,
            s.other,
            bytes(s.bytes),
            id.short(),
            a.target.display(),
            millis(s.duration_ms)
        );
        for d in &s.damaged {
            eprintln!("not restored: {d}");
        }
    });
    if !s.damaged.is_empty() {
        if !ctx.json {
            eprintln!(
                "coffer: {} file(s) not restored because their data is damaged or missing (run `coffer verify` for a full report)",
                s.damaged.len()
            );
        }
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

fn dump(ctx: &Ctx, spec: &str) -> Result<ExitCode> {
    let repo = ctx.open()?;
    let id = resolve(&repo, spec)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let s = repo.open_snapshot(&id)?.dump(&mut out)?;
    out.flush().context("writing the archive")?;
    if ctx.json {
        // stdout carries the archive; the summary goes to stderr.
        let summary = ctx.json_summary(&s);
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("serializes")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(ctx: &Ctx, spec: Option<&str>, quick: bool) -> Result<ExitCode> {
    let repo = match ctx.open() {
        Ok(r) => r,
        // A damaged key file or config is a finding of verify, not a usage error.
        Err(e) if e.downcast_ref::<Error>().is_some_and(Error::is_damage) => {
            let Some(Error::Damaged { object, detail }) = e.downcast_ref::<Error>() else {
                return Err(e);
            };
            let problem = verify::Problem {
                object: object.clone(),
                error: detail.clone(),
                snapshots: vec![],
                files: vec![],
            };
            let report = verify::VerifyReport {
                ok: false,
                problems: vec![problem],
                ..Default::default()
            };
            print_verify(ctx, &report);
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e),
    };
    let snapshots = spec
        .map(|s| resolve(&repo, s))
        .transpose()?
        .map(|id| vec![id]);
    let report = verify::verify(&repo, &VerifyOptions { snapshots, quick })?;
    print_verify(ctx, &report);
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_verify(ctx: &Ctx, r: &verify::VerifyReport) {
    if ctx.json {
        ctx.print_json(r);
        return;
    }
    for p in &r.problems {
        println!("DAMAGED {}: {}", p.object, p.error);
        for s in &p.snapshots {
            println!("  affects snapshot {}", &s[..8.min(s.len())]);
        }
        for f in &p.files {
            println!("  affects file {f}");
        }
    }
    let what = format!(
        "{} snapshots, {} packs, {} blobs, {} read in {}",
        r.snapshots_checked,
        r.packs_checked,
        r.blobs_checked,
        bytes(r.bytes_read),
        millis(r.duration_ms)
    );
    if r.ok {
        println!("no problems found ({what})");
    } else {
        println!("{} damaged objects found ({what})", r.problems.len());
    }
}

fn forget(ctx: &Ctx, a: ForgetArgs) -> Result<ExitCode> {
    let repo = ctx.open()?;
    let policy = RetentionPolicy {
        keep_last: a.keep_last,
        keep_within: a
            .keep_within_days
            .map(|d| chrono::TimeDelta::days(d as i64)),
        keep_hourly: a.keep_hourly,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
        keep_yearly: a.keep_yearly,
    };
    let report = if a.snapshots.is_empty() {
        forget::forget(
            &repo,
            &policy,
            &GroupBy::HostAndPaths,
            &|_| true,
            &chrono::Local,
            a.dry_run,
        )?
    } else {
        let ids = a
            .snapshots
            .iter()
            .map(|s| resolve(&repo, s))
            .collect::<Result<Vec<_>>>()?;
        forget::forget_ids(&repo, &ids, a.dry_run)?
    };
    let pruned = if a.prune && !a.dry_run {
        Some(prune::prune(&repo, &PruneOptions::default())?)
    } else {
        None
    };
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "forget": report, "prune": pruned }));
    } else {
        let line = |verb: &str, d: &Decision| {
            let why = bracketed(" (", &d.reasons, ", ", ")");
            println!(
                "{verb} {} {}{why}",
                d.id.short(),
                d.time.format("%Y-%m-%d %H:%M:%S")
            );
        };
        for d in &report.kept {
            line("keep  ", d);
        }
        for d in &report.removed {
            line(if a.dry_run { "would remove" } else { "remove" }, d);
        }
        println!(
            "{} kept, {} removed",
            report.kept.len(),
            report.removed.len()
        );
        if let Some(p) = &pruned {
            print_prune(ctx, p);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_prune(ctx: &Ctx, r: &PruneReport) {
    report(ctx, r, &r.warnings, || print_prune_text(r));
}

fn print_prune_text(r: &PruneReport) {
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    println!(
        "prune: {verb} {} packs ({}), repacked {} packs ({}), in {}",
        r.packs_deleted,
        bytes(r.bytes_deleted),
        r.packs_repacked,
        bytes(r.bytes_repacked),
        millis(r.duration_ms)
    );
    if r.packs_waiting > 0 {
        println!(
            "{} packs ({}) are marked for deletion and will be deleted by a later prune, once these have finished:",
            r.packs_waiting,
            bytes(r.bytes_waiting)
        );
        for w in &r.waiting_for {
            println!("  {w}");
        }
    }
}

fn decrypt(key_file: &std::path::Path, input: Option<&std::path::Path>) -> Result<ExitCode> {
    let text = std::fs::read_to_string(key_file)
        .with_context(|| format!("reading the key file {}", key_file.display()))?;
    let text = text.trim();
    let key = serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_string());
    let mut reader: Box<dyn std::io::Read> = match input {
        Some(p) => {
            Box::new(std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?)
        }
        None => Box::new(std::io::stdin().lock()),
    };
    let stdout = std::io::stdout().lock();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout);
    coffer_repo::sealed::unseal(&mut reader, &mut out, key.as_bytes())
        .context("the archive cannot be opened (nothing written is to be trusted)")?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Where `coffer system recover` takes the system backup from.
enum RecoverFrom {
    Zip(PathBuf),
    /// The newest copy in a repository (`offsite`).
    Repository(String),
}

/// `coffer system recover`.
fn recover(
    ctx: &Ctx,
    from: RecoverFrom,
    data_dir: Option<PathBuf>,
    passphrase_file: Option<&Path>,
) -> Result<ExitCode> {
    let data_dir = crate::remote::data_dir(data_dir);
    let passphrase = match passphrase_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading {}", f.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        ),
        None => std::env::var("COFFER_SYSTEM_PASSPHRASE").ok(),
    };
    // A copy in a repository is fetched next to the data directory first, and removed after.
    let fetched = matches!(from, RecoverFrom::Repository(_));
    let zip = match from {
        RecoverFrom::Zip(zip) => zip,
        RecoverFrom::Repository(url) => {
            let passphrase = passphrase.clone().context(
                "the repository opens with the system passphrase: set COFFER_SYSTEM_PASSPHRASE or give --passphrase-file",
            )?;
            let backend = Location::parse(&url)?.open(None)?;
            let repo = Repository::open(backend, Some(&Secret::Password(passphrase)))?;
            let parent = std::path::absolute(&data_dir)?
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(std::env::temp_dir);
            let zip = parent.join(format!(".coffer-recover-{}.zip", std::process::id()));
            let name = coffer_system::offsite::fetch_newest(&repo, &zip)?
                .with_context(|| format!("{url} holds no copy of a system backup"))?;
            if !ctx.json {
                println!("taking {name}, the newest system backup in {url}");
            }
            zip
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let done = runtime.block_on(coffer_system::recover(
        &zip,
        &data_dir,
        passphrase.as_deref(),
    ));
    if fetched {
        let _ = std::fs::remove_file(&zip);
    }
    let done = done?;
    let m = &done.manifest;
    if ctx.json {
        print_json(&serde_json::json!({
            "data_dir": data_dir,
            "created_at": m.created_at,
            "host": m.host,
            "tables": m.tables,
            "secrets": done.with_secrets,
            "config": done.config,
        }));
    } else {
        println!(
            "recovered {} from the system backup of {} made {}: {} users, {} jobs, {} records",
            data_dir.display(),
            m.host,
            m.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
            m.tables.get("users").unwrap_or(&0),
            m.tables.get("backup_jobs").unwrap_or(&0),
            m.tables.get("backup_records").unwrap_or(&0),
        );
        if !done.with_secrets {
            println!(
                "it held no secrets: stored passwords, secret keys and the repository key do not open; enter them again"
            );
        }
        match &done.config {
            Some(config) => println!(
                "start the server with: coffer serve --data-dir {} --config {}",
                data_dir.display(),
                config.display()
            ),
            None => println!(
                "start the server with: coffer serve --data-dir {}",
                data_dir.display()
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
