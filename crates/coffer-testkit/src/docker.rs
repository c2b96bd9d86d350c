//! The Docker engine for tests: the one that answers on the default socket, or `dockerd`
//! started here (Debian's `docker.io`, which scripts/test installs) without a bridge or
//! iptables rules, so that containers have no network at all. Containers are driven with the
//! `docker` command line, independent of the API client Coffer uses.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::{find_binary, wait_until};

/// An image with a static busybox as its only program, for containers a test runs.
pub const BUSYBOX: &str = "coffer-test/busybox:1";

fn answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Make sure an engine answers (starting `dockerd` if needed) and the busybox image exists.
/// Panics with what to do when that is impossible.
pub fn docker_engine() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        assert!(
            find_binary("docker").is_some(),
            "the docker command is not installed: run scripts/test (it installs docker.io), or apt-get install docker.io"
        );
        if !answers() {
            let dockerd = find_binary("dockerd").expect(
                "no Docker engine answers and dockerd is not installed: run scripts/test (it installs docker.io), or apt-get install docker.io",
            );
            let log = std::fs::File::create(std::env::temp_dir().join("coffer-test-dockerd.log"))
                .expect("dockerd log");
            // Another test process may be starting it at the same time: one of them wins.
            let _ = Command::new(dockerd)
                .args(["--bridge=none", "--iptables=false"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn();
            wait_until(Duration::from_secs(60), || {
                answers().then_some(()).ok_or_else(|| {
                    format!(
                        "dockerd did not answer within 60 s (see {})",
                        std::env::temp_dir().join("coffer-test-dockerd.log").display()
                    )
                })
            });
        }
        if docker_ok(&["image", "inspect", BUSYBOX]).is_err() {
            import_busybox();
        }
    });
}

fn import_busybox() {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: run scripts/test (it installs busybox-static), or apt-get install busybox-static"
    );
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("bin")).expect("bin");
    std::fs::copy(busybox, root.path().join("bin/busybox")).expect("copy busybox");
    std::os::unix::fs::symlink("busybox", root.path().join("bin/sh")).expect("sh");
    let tar = root.path().join("image.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .args(["-cf"])
        .arg(&tar)
        .arg("bin")
        .status()
        .expect("tar");
    assert!(ok.success(), "packing the busybox image failed");
    // Concurrent imports of the same tag are harmless.
    docker(&["import", tar.to_str().expect("utf-8 path"), BUSYBOX]);
}

/// Run the docker command line; its standard output, or the error it printed.
pub fn docker_ok(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Run the docker command line; panics when it fails.
pub fn docker(args: &[&str]) -> String {
    docker_ok(args).unwrap_or_else(|e| panic!("docker {}: {e}", args.join(" ")))
}

/// Run a shell script in a throwaway busybox container (no network) with `volume` at /data.
pub fn in_volume(volume: &str, script: &str) -> String {
    docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{volume}:/data"),
        BUSYBOX,
        "/bin/sh",
        "-c",
        script,
    ])
}

/// What a volume holds: every entry with its type, size, mode, owner and modification time,
/// and a checksum of every file's content, sorted.
pub fn volume_manifest(volume: &str) -> String {
    in_volume(
        volume,
        "cd /data && find . -mindepth 1 -exec stat -c '%n %F %s %a %u:%g %Y %h' {} + | sort \
         && find . -type f -exec md5sum {} + | sort",
    )
}
