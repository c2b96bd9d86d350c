//! The web interface in a real browser: Debian's Chromium driven by Playwright for Python
//! (`tests/ui/browser.py`) against a real `coffer serve`. `scripts/test` installs both; run
//! alone, the test says what is missing instead of skipping.

#![allow(clippy::disallowed_methods)] // tests start the programs they test, and servers

use std::path::Path;
use std::process::Command;

use coffer_testkit::{MY_PASSWORD, MyInstance, ServerProcess, tempdir};

const BIN: &str = env!("CARGO_BIN_EXE_coffer");

/// Chromium and Playwright for Python, or a message that says how to get them.
fn browser_tools() {
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "the browser tests need Debian's Chromium: apt-get install chromium (scripts/test does)"
    );
    let playwright = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .expect("python3 runs");
    assert!(
        playwright.status.success(),
        "the browser tests need Playwright for Python: python3 -m pip install playwright \
         (scripts/test does; it never downloads a browser, /usr/bin/chromium is used)\n{}",
        String::from_utf8_lossy(&playwright.stderr)
    );
}

#[test]
fn the_interface_sets_up_creates_runs_restores_and_hides_what_a_viewer_may_not_do() {
    browser_tools();
    // A MariaDB server with a binary log, for a credential that archives it.
    let my = MyInstance::start_with(&["--log-bin=binlog", "--server-id=1", "--binlog-format=ROW"]);
    let dir = tempdir().unwrap();
    let data = dir.path().join("data");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let server = ServerProcess::start(
        BIN,
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/browser.py");
    let out = Command::new("python3")
        .arg(&script)
        .env("COFFER_UI_URL", server.url())
        .env("COFFER_UI_SRC", &src)
        .env("COFFER_UI_DATA", &data)
        .env("COFFER_UI_SHOTS", &shots)
        .env("COFFER_UI_MARIADB_PORT", my.port.to_string())
        .env("COFFER_UI_MARIADB_PASSWORD", MY_PASSWORD)
        // Playwright must use the system's Chromium, never fetch one.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the browser tests failed:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}
