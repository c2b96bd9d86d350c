//! Crash safety and concurrency: `kill -9` of backups and prunes at random moments, and backups
//! running while prune runs. The repository must always verify clean, earlier snapshots must
//! restore unchanged, and the next operation must succeed without any manual unlock.
//!
//! `COFFER_CRASH_TRIALS=N` raises the number of trials (default 12 backup kills and 10 prune
//! kills) for a stress run.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use coffer_testkit::{Cli, assert_same_tree, seeded, tempdir};

const BIN: &str = env!("CARGO_BIN_EXE_coffer");

/// A small deterministic generator, so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn trials(default: usize) -> usize {
    std::env::var("COFFER_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn write_files(dir: &Path, count: usize, size: usize, seed: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        std::fs::write(
            dir.join(format!("{seed}-{i}")),
            seeded(size, &format!("{seed}/{i}")),
        )
        .unwrap();
    }
}

fn restore_and_compare(cli: &Cli, snapshot: &str, src: &Path, scratch: &Path) {
    let target = scratch.join(format!("r-{}", &snapshot[..12]));
    let _ = std::fs::remove_dir_all(&target);
    cli.ok(&["restore", snapshot, "--target", target.to_str().unwrap()]);
    assert_same_tree(src, &target.join(src.strip_prefix("/").unwrap()));
    std::fs::remove_dir_all(&target).unwrap();
}

fn assert_verifies(cli: &Cli, when: &str) {
    let out = cli.run(&["--json", "verify"]);
    assert!(
        out.status.success(),
        "verify after {when}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Start `args`, kill -9 it after `delay` (if still running). Returns whether it was killed.
fn kill_after(cli: &Cli, args: &[&str], delay: Duration) -> bool {
    let mut child = cli
        .command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    child.wait().unwrap();
    true
}

fn timed(cli: &Cli, args: &[&str]) -> Duration {
    let start = Instant::now();
    cli.ok(args);
    start.elapsed()
}

#[test]
fn killing_backups_and_prunes_at_random_moments_never_damages_the_repository() {
    let dir = tempdir().unwrap();
    let scratch = dir.path().join("scratch");
    let cli = Cli::new(BIN, dir.path().join("repo").to_str().unwrap());
    cli.init(&[]);
    let base = dir.path().join("base");
    write_files(&base, 8, 2 * 1024 * 1024, "base");
    let s0 = cli.backup(&[&base]);

    let work = dir.path().join("work");
    write_files(&work, 6, 4 * 1024 * 1024, "w0");
    let full = timed(&cli, &["backup", work.to_str().unwrap()]);
    let mut rng = Rng(0x5eed_c0ff_ee00_0001);

    for t in 0..trials(12) {
        write_files(&work, 6, 4 * 1024 * 1024, &format!("b{t}"));
        let delay = Duration::from_micros(rng.below(full.as_micros() as u64 * 3 / 2 + 1));
        kill_after(&cli, &["backup", work.to_str().unwrap()], delay);
        assert_verifies(&cli, &format!("backup killed after {delay:?}"));
        if t % 4 == 0 {
            restore_and_compare(&cli, &s0, &base, &scratch);
        }
        // The next backup succeeds, with no manual unlock.
        let latest = cli.backup(&[&work]);
        if t % 4 == 1 {
            restore_and_compare(&cli, &latest, &work, &scratch);
        }
    }

    for t in 0..trials(10) {
        // Make garbage: new data in new snapshots, then forget all but the newest of each group.
        let dir_t = work.join(format!("p{t}"));
        write_files(&dir_t, 3, 3 * 1024 * 1024, &format!("p{t}"));
        cli.backup(&[&work]);
        std::fs::remove_dir_all(&dir_t).unwrap();
        write_files(&work, 2, 1024 * 1024, &format!("q{t}"));
        let keep = cli.backup(&[&work]);
        cli.ok(&["forget", "--keep-last", "1"]);
        let full = timed(&cli, &["prune", "--dry-run"]) * 3;
        let delay = Duration::from_micros(rng.below(full.as_micros() as u64 + 1));
        kill_after(&cli, &["prune"], delay);
        assert_verifies(&cli, &format!("prune killed after {delay:?}"));
        restore_and_compare(&cli, &s0, &base, &scratch);
        restore_and_compare(&cli, &keep, &work, &scratch);
        // The next backup and the next prune succeed, with no manual unlock.
        cli.backup(&[&work]);
        if t % 3 == 2 {
            let p = cli.json(&["prune"]);
            assert_eq!(p["packs_waiting"], 0, "nothing runs, so nothing waits: {p}");
        }
    }
    let p = cli.json(&["prune"]);
    assert_eq!(p["packs_waiting"], 0, "{p}");
    assert_verifies(&cli, "the final prune");
    restore_and_compare(&cli, &s0, &base, &scratch);
}

/// A backup that deduplicates against data prune has condemned in the meantime: the prune
/// must wait for that backup, and a later prune must keep what its snapshot needs.
#[test]
fn prune_during_a_backup_that_reuses_condemned_data_loses_nothing() {
    let dir = tempdir().unwrap();
    let cli = Cli::new(BIN, dir.path().join("repo").to_str().unwrap());
    cli.init(&[]);
    let dump = seeded(24 * 1024 * 1024, "database dump");
    let stdin_backup = |data: &[u8], pause_after: usize, during: &dyn Fn()| -> serde_json::Value {
        let mut child = cli
            .command(&["--json", "backup", "--stdin", "--stdin-name", "db.sql"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&data[..pause_after]).unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        during();
        stdin.write_all(&data[pause_after..]).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };

    // S1 stores the dump; then S1 is forgotten, so its packs are garbage.
    let s1 = stdin_backup(&dump, dump.len(), &|| {});
    let s1 = s1["snapshot_id"].as_str().unwrap().to_string();
    cli.ok(&["forget", &s1]);

    // The same dump again: the backup deduplicates against S1's packs while prune runs.
    let s2 = stdin_backup(&dump, dump.len() / 2, &|| {
        let p = cli.json(&["prune"]);
        assert!(
            p["packs_waiting"].as_u64().unwrap() > 0,
            "prune must wait for the running backup: {p}"
        );
        assert_eq!(p["packs_deleted"], 0, "{p}");
    });
    assert!(
        s2["bytes_added"].as_u64().unwrap() < dump.len() as u64,
        "the backup reused stored data: {s2}"
    );
    let s2 = s2["snapshot_id"].as_str().unwrap().to_string();

    // Now the prune can finish: it keeps every pack S2 needs.
    cli.json(&["prune"]);
    assert_verifies(&cli, "the sweep");
    let target = dir.path().join("out");
    cli.ok(&["restore", &s2, "--target", target.to_str().unwrap()]);
    assert_eq!(std::fs::read(target.join("db.sql")).unwrap(), dump);

    // And once S2 is gone too, everything is deleted for real.
    cli.ok(&["forget", &s2]);
    let p = cli.json(&["prune"]);
    assert!(p["packs_deleted"].as_u64().unwrap() > 0, "{p}");
    let data = std::fs::read_dir(dir.path().join("repo/data"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .count();
    assert_eq!(data, 0, "no snapshot left, so no data left");
}

#[test]
fn a_backup_and_a_prune_at_the_same_time_both_succeed_and_both_snapshots_restore() {
    let dir = tempdir().unwrap();
    let scratch = dir.path().join("scratch");
    let cli = Cli::new(BIN, dir.path().join("repo").to_str().unwrap());
    cli.init(&[]);
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    write_files(&a, 10, 2 * 1024 * 1024, "a");
    for round in 0..4 {
        // Garbage for prune to work on.
        let g = dir.path().join(format!("garbage{round}"));
        write_files(&g, 6, 2 * 1024 * 1024, &format!("g{round}"));
        cli.backup(&[&g]);
        cli.ok(&["forget", "latest"]);
        let sa = cli.backup(&[&a]);
        write_files(&b, 10, 2 * 1024 * 1024, &format!("b{round}"));

        let backup = cli
            .command(&["--json", "backup", b.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 * round));
        let prune = cli.run(&["--json", "prune"]);
        let out = backup.wait_with_output().unwrap();
        assert!(
            prune.status.success(),
            "prune: {}",
            String::from_utf8_lossy(&prune.stdout)
        );
        assert!(
            out.status.success(),
            "backup: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let sb: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

        assert_verifies(&cli, "a concurrent backup and prune");
        restore_and_compare(&cli, &sa, &a, &scratch);
        restore_and_compare(&cli, sb["snapshot_id"].as_str().unwrap(), &b, &scratch);
    }
}

#[test]
fn a_second_prune_is_refused_while_one_runs_and_a_dead_one_blocks_nothing() {
    let dir = tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let cli = Cli::new(BIN, repo_dir.to_str().unwrap());
    cli.init(&[]);
    let a = dir.path().join("a");
    write_files(&a, 2, 1024, "a");
    cli.backup(&[&a]);

    // This test process holds a prune lock, as a running prune would.
    let backend = coffer_repo::Location::Local(repo_dir.clone())
        .open(None)
        .unwrap();
    let secret = coffer_repo::Secret::Password(coffer_testkit::PASSWORD.into());
    let repo = coffer_repo::Repository::open(backend, Some(&secret)).unwrap();
    let held = coffer_repo::lock(&repo, coffer_repo::LockKind::Prune).unwrap();
    let out = cli.run(&["prune"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("locked by a prune")
            && err.contains(&format!("process {}", std::process::id())),
        "{err}"
    );
    // Backups are never blocked by it.
    cli.backup(&[&a]);
    drop(held);
    cli.ok(&["prune"]);

    // A prune killed at once leaves at most a lock of a dead process, which blocks nothing.
    kill_after(&cli, &["prune"], Duration::from_millis(30));
    cli.ok(&["prune"]);
    cli.backup(&[&a]);
    assert_eq!(
        std::fs::read_dir(repo_dir.join("locks")).unwrap().count(),
        0,
        "no lock is left behind"
    );
}
