"""Coffer's web interface in a real Chromium, driven by Playwright, against a running `coffer
serve` (started by `tests/ui.rs`, which passes its address and directories in the environment).

Inputs are found by their labels and buttons by their roles, as a user (or a screen reader)
finds them. Every step asserts what the user would see; the first failure ends the run with a
traceback. Screenshots of the main pages go to COFFER_UI_SHOTS.
"""

import base64
import http.server
import os
import pathlib
import re
import subprocess
import sys
import threading
import time

from playwright.sync_api import expect, sync_playwright

URL = os.environ["COFFER_UI_URL"]
SRC = pathlib.Path(os.environ["COFFER_UI_SRC"])
DATA = pathlib.Path(os.environ["COFFER_UI_DATA"])
SHOTS = pathlib.Path(os.environ["COFFER_UI_SHOTS"])
MARIADB_PORT = os.environ["COFFER_UI_MARIADB_PORT"]
MARIADB_PASSWORD = os.environ["COFFER_UI_MARIADB_PASSWORD"]
PASSWORD = "correct horse battery staple"
TIMEOUT = 60_000

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def shot(page, name, full_page=True):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def log_in(page, username, password):
    page.goto(URL)
    expect(page.get_by_role("heading", name="Log in to Coffer")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def mariadb_sql(sql, check=True):
    """Run SQL on the test's MariaDB server as Coffer's user (the password in the
    environment, not on the command line); its output, or None when it failed and `check` is off."""
    out = subprocess.run(
        ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", MARIADB_PORT, "-u", "coffer", "-N", "-B", "-e", sql],
        env={**os.environ, "MYSQL_PWD": MARIADB_PASSWORD},
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        assert not check, f"{sql}: {out.stderr}"
        return None
    return out.stdout.strip()


def until(condition, what, timeout=60):
    """Wait until `condition()` holds, polling."""
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.2)


def record_rows(page):
    return page.locator("table.records tbody tr")


# What the page reported as errors (shown with any failure: a script error explains a timeout).
errors = []


def receiver():
    """An HTTP server on a loopback port that keeps the request line of each POST it gets."""
    got = []

    class Keep(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.append(self.requestline)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Keep)
    server.got = got
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    (SRC / "notes.txt").write_text("first version\n")
    (SRC / "sub").mkdir(exist_ok=True)
    (SRC / "sub" / "deep.txt").write_text("deep file\n")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        # Answers of 4xx and 5xx are logged by the browser as failed loads: the tests provoke
        # some on purpose. Anything else the page logs as an error is a failure.
        page.on(
            "console",
            lambda m: m.type == "error"
            and not m.text.startswith("Failed to load resource")
            and errors.append(f"console: {m.text}"),
        )

        # First start: set up the first administrator, then land on the dashboard.
        page.goto(URL)
        expect(page.get_by_role("heading", name="Welcome to Coffer")).to_be_visible()
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill("short")
        page.get_by_role("button", name="Create administrator").click()
        # The server's reason, next to the field it names.
        expect(page.locator('[data-field="password"] .field-error')).to_contain_text("12")
        shot(page, "setup")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Create administrator").click()
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        expect(page.get_by_text("No backup jobs yet")).to_be_visible()

        # A path job through the form, with a bad cron first.
        page.get_by_role("link", name="New job").click()
        expect(page.get_by_role("heading", name="New backup job")).to_be_visible()
        page.get_by_label("Name", exact=True).fill("documents")
        page.get_by_label("Path", exact=True).fill(str(SRC))
        page.get_by_label("Schedule (cron)").fill("61 * * * *")
        page.get_by_label("Time zone of the schedule").fill("Europe/Berlin")
        schedule_field = page.locator('[data-field="schedule"]')
        # As it is typed: what is wrong with it.
        expect(schedule_field.locator(".preview")).to_contain_text("is not a five-field cron expression")
        page.get_by_role("button", name="Create job").click()
        # Saved anyway: the server refuses it, and says so at the field.
        expect(schedule_field.locator(".field-error").first).to_contain_text("61 * * * *")
        expect(page.get_by_label("Schedule (cron)")).to_have_attribute("aria-invalid", "true")
        page.get_by_label("Schedule (cron)").fill("30 2 * * *")
        expect(schedule_field.locator(".next-runs li")).to_have_count(5)
        expect(schedule_field.locator(".preview")).to_contain_text("Europe/Berlin")
        page.get_by_label("Keep the last N records").fill("10")
        shot(page, "job-form")
        page.get_by_role("button", name="Create job").click()
        expect(page.get_by_role("heading", name=re.compile("^documents"))).to_be_visible()
        expect(page.get_by_text("No records yet.")).to_be_visible()

        # Run it, and watch the record turn successful without a reload.
        page.evaluate("window.__sameDocument = true")
        page.get_by_role("button", name="Run now").click()
        expect(record_rows(page).first.locator(".badge.success")).to_be_visible()
        assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
        expect(page.get_by_role("heading", name=re.compile("^documents"))).to_contain_text("successful")

        # The records can be filtered.
        page.get_by_label("Status", exact=True).select_option("failed")
        expect(page.get_by_text("No records match.")).to_be_visible()
        page.get_by_label("Status", exact=True).select_option("")
        expect(record_rows(page)).to_have_count(1)

        # Verify it: the result shows inline.
        row = record_rows(page).first
        row.get_by_role("button", name="Verify").click()
        expect(row.locator(".inline-result")).to_contain_text("Verified")

        # Prove it restorable: a drill restores it elsewhere and checks every file; the job
        # then says when its data was last proven restorable and what a restore took.
        expect(page.locator("dd.proven")).to_contain_text("not yet")
        page.get_by_role("button", name="Drill now").click()
        drill = page.locator("table.drills tbody tr").first
        expect(drill.locator(".badge.success")).to_be_visible()
        expect(drill.locator("ul.checks li.ok")).to_contain_text("entries compared")
        expect(page.locator("dd.proven")).to_contain_text("restoring it took")
        shot(page, "job")

        # Browse the record, pick one file, and restore it into another directory.
        record_id = row.get_attribute("data-record")
        row.get_by_role("link", name="Browse").click()
        expect(page.get_by_role("heading", name=re.compile("^documents, "))).to_be_visible()
        for part in (SRC / "sub").parts[1:]:
            folder = page.get_by_role("button", name=f"{part}/", exact=True)
            folder.click()
            expect(folder).to_have_attribute("aria-expanded", "true")
        # Only what lies inside a source can be chosen; the folders above it cannot.
        expect(page.get_by_label(f"Choose /{SRC.parts[1]}", exact=True)).to_have_count(0)
        expect(page.get_by_label(f"Choose {SRC}", exact=True)).to_have_count(1)
        deep = str(SRC / "sub" / "deep.txt")
        expect(page.get_by_text("deep.txt", exact=True)).to_be_visible()
        page.get_by_label(f"Choose {deep}").check()
        expect(page.get_by_text("1 chosen to restore.")).to_be_visible()
        shot(page, "browse")
        target = DATA / "restores" / "one"
        page.get_by_role("button", name="Restore…").click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_label("Only these paths (one per line)")).to_have_value(deep)
        dialog.get_by_label("Into another directory").fill(str(target))
        shot(page, "restore-dialog")
        dialog.get_by_role("button", name="Restore", exact=True).click()
        # Back on the job's page, the restore is listed and finishes.
        expect(page.get_by_role("heading", name=re.compile("^documents"))).to_be_visible()
        expect(page.locator("table.restores tbody tr").first.locator(".badge.success")).to_be_visible()
        row = record_rows(page).first
        restored = target / str(SRC / "sub" / "deep.txt").lstrip("/")
        assert restored.read_text() == "deep file\n", restored
        assert not (target / str(SRC / "notes.txt").lstrip("/")).exists(), "only the chosen file is restored"

        # Restore by dropping an archive onto the job's page: the record's own archive, after
        # the live file changed.
        job_url = page.url
        job_id = job_url.rsplit("/", 1)[1]
        archive = page.request.get(f"{URL}/api/backup-jobs/{job_id}/records/{record_id}/download")
        assert archive.ok, archive.status
        (SRC / "notes.txt").write_text("changed after the backup\n")
        data_transfer = page.evaluate_handle(
            """([name, b64]) => {
                const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const dt = new DataTransfer();
                dt.items.add(new File([bin], name, { type: 'application/x-tar' }));
                return dt;
            }""",
            ["documents.tar", base64.b64encode(archive.body()).decode()],
        )
        page.dispatch_event(".dropzone", "drop", {"dataTransfer": data_transfer})
        upload = page.get_by_role("dialog", name=re.compile("^Restore documents.tar"))
        upload.get_by_label("SHA-256 of the archive").fill(archive.headers["x-checksum-sha256"])
        upload.get_by_role("button", name="Upload and restore").click()
        confirm = page.get_by_role("dialog", name=re.compile("Overwrite documents"))
        confirm.get_by_label(re.compile("Type the job's name")).fill("wrong name")
        confirm.get_by_role("button", name="Restore in place").click()
        expect(confirm.get_by_role("alert")).to_contain_text("Type documents exactly")
        confirm.get_by_label(re.compile("Type the job's name")).fill("documents")
        confirm.get_by_role("button", name="Restore in place").click()
        expect(page.locator("table.restores tbody tr")).to_have_count(2)
        expect(page.locator("table.restores tbody tr").first.locator(".badge.success")).to_be_visible()
        assert (SRC / "notes.txt").read_text() == "first version\n", "the dropped archive was restored"

        # A job whose last run failed: the dashboard says so.
        gone = SRC.parent / "gone"
        gone.mkdir(exist_ok=True)
        made = page.request.post(f"{URL}/api/backup-jobs", data={"name": "vanished", "sources": [{"type": "path", "path": str(gone)}]})
        assert made.ok, made.text()
        gone.rmdir()
        run = page.request.post(f"{URL}/api/backup-jobs/{made.json()['id']}/run")
        assert run.ok, run.text()
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
        warnings = page.get_by_role("list", name="Warnings")
        expect(warnings).to_contain_text("vanished")
        expect(warnings).to_contain_text("The last run failed")
        expect(page.locator('tr[data-job="vanished"] .badge.failed')).to_be_visible()
        expect(page.locator('tr[data-job="documents"] .badge.success')).to_be_visible()
        # Its proven-restorable column: when, and what a restore takes.
        expect(page.locator('tr[data-job="documents"] td').nth(3)).to_contain_text("restore ")
        expect(page.locator('tr[data-job="vanished"] td').nth(3)).to_contain_text("not yet")
        shot(page, "dashboard")

        # The same page on a phone, and in the dark.
        phone = browser.new_context(viewport={"width": 375, "height": 800}, color_scheme="dark", storage_state=context.storage_state())
        phone_page = phone.new_page()
        phone_page.goto(URL)
        expect(phone_page.get_by_role("heading", name="Dashboard")).to_be_visible()
        expect(phone_page.get_by_role("list", name="Warnings")).to_be_visible()
        width = phone_page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the dashboard is {width} px wide on a 375-px phone"
        shot(phone_page, "dashboard-phone-dark")
        phone.close()

        # The pages around the jobs.
        nav = page.get_by_role("navigation", name="Main")

        # A notification channel: a webhook to a receiver started here, tested from its row;
        # the delivery log shows the test.
        hook = receiver()
        nav.get_by_role("link", name="Notifications").click()
        page.get_by_role("button", name="Add channel").click()
        add = page.get_by_role("dialog")
        add.get_by_label("Name").fill("ops hook")
        expect(add.get_by_label("SMTP server")).to_be_hidden()
        add.get_by_label("URL").fill(f"http://127.0.0.1:{hook.server_port}/hook")
        add.get_by_label("Signing secret").fill("hook secret")
        add.get_by_role("button", name="Add channel").click()
        row = page.locator('tr[data-channel="ops hook"]')
        expect(row).to_contain_text(f"http://127.0.0.1:{hook.server_port}")
        expect(row).not_to_contain_text("/hook")
        row.get_by_role("button", name="Test").click()
        expect(row.locator(".inline-result .ok")).to_contain_text("answered 200")
        assert hook.got and hook.got[0].startswith("POST /hook"), hook.got
        expect(page.locator("table.notifications tbody tr").first).to_contain_text("delivered")
        shot(page, "notifications")

        nav.get_by_role("link", name="Credentials").click()
        page.get_by_role("button", name="Add credential").click()
        add = page.get_by_role("dialog")
        add.get_by_label("Name").fill("local postgres")
        add.get_by_label("Host").fill("127.0.0.1")
        add.get_by_label("User").fill("postgres")
        add.get_by_role("button", name="Add credential").click()
        row = page.locator('tr[data-credential="local postgres"]')
        expect(row).to_contain_text("not set")
        row.get_by_role("button", name="Test").click()
        expect(row.locator(".inline-result .ok")).to_be_visible()
        expect(row).to_contain_text("—")

        # A MariaDB server whose binary log is archived: the table says what is covered.
        page.get_by_role("button", name="Add credential").click()
        add = page.get_by_role("dialog")
        add.get_by_label("Name").fill("binlogged")
        add.get_by_label("Server type").select_option("mysql")
        add.get_by_label("Host").fill("127.0.0.1")
        add.get_by_label("Port").fill(MARIADB_PORT)
        add.get_by_label("User").fill("coffer")
        add.get_by_label("Password").fill(MARIADB_PASSWORD)
        add.get_by_label("TLS").select_option("disable")
        add.get_by_label(re.compile("Archive the binary log")).check()
        add.get_by_role("button", name="Add credential").click()
        mariadb = page.locator('tr[data-credential="binlogged"]')
        mariadb.get_by_role("button", name="Test").click()
        expect(mariadb.locator(".inline-result")).to_contain_text("allows point-in-time recovery")
        # The archiver stores within seconds; the row reads the coverage again by itself.
        expect(mariadb).to_contain_text("transactions", timeout=TIMEOUT)
        shot(page, "credentials")

        # Point-in-time recovery: a full backup of a database through that credential, a row
        # committed after it, another a second later; recovered to the second between them.
        credential = next(c for c in page.request.get(f"{URL}/api/credentials").json() if c["name"] == "binlogged")
        mariadb_sql("CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, note TEXT); INSERT INTO shop.orders VALUES (1, 'before the backup')")
        made = page.request.post(f"{URL}/api/backup-jobs", data={"name": "shop", "sources": [{"type": "mysql", "credential_id": credential["id"], "database": "shop"}]})
        assert made.ok, made.text()
        shop = made.json()["id"]
        assert page.request.post(f"{URL}/api/backup-jobs/{shop}/run").ok
        until(lambda: page.request.get(f"{URL}/api/backup-jobs/{shop}").json().get("last_status") == "success", "the shop backup")
        time.sleep(1.1)
        mariadb_sql("INSERT INTO shop.orders VALUES (2, 'kept')")
        kept_at = int(time.time())
        while int(time.time()) == kept_at:
            time.sleep(0.05)
        mariadb_sql("INSERT INTO shop.orders VALUES (3, 'too late')")
        coverage = f"{URL}/api/credentials/{credential['id']}/pitr/coverage"
        after = time.time()
        until(lambda: (page.request.get(coverage).json().get("archived_until") or "") > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(after)), "the archive")
        page.locator('tr[data-credential="binlogged"]').get_by_role("link", name="Point-in-time recovery").click()
        expect(page.get_by_role("heading", name="Point-in-time recovery: binlogged")).to_be_visible()
        expect(page.locator(".timeline .baseline")).to_have_count(1)
        expect(page.locator(".coverage-summary")).to_contain_text("1 full backup")
        local = lambda t: page.evaluate("(ms) => { const d = new Date(ms); return new Date(ms - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19); }", t * 1000)
        page.get_by_label(re.compile("^Recover to")).fill(local(int(time.time()) + 3600))
        page.get_by_role("button", name="Recover", exact=True).click()
        expect(page.locator('[data-field="target_time"] .field-error')).to_contain_text("in the future")
        page.get_by_label(re.compile("^Recover to")).fill(local(kept_at))
        page.get_by_role("button", name="Recover", exact=True).click()
        runs = page.locator("table.pitr-runs tbody tr")
        expect(runs).to_have_count(1)
        expect(runs.first.locator(".badge.success")).to_be_visible(timeout=TIMEOUT)
        shot(page, "pitr")
        runs.first.get_by_role("link", name="the record in its job").click()
        expect(page.get_by_role("heading", name=re.compile("^shop"))).to_be_visible()
        expect(record_rows(page).first).to_contain_text("recovered to")
        recovered = page.request.get(f"{URL}/api/backup-jobs/{shop}/records?trigger=pitr").json()[0]
        restored = page.request.post(f"{URL}/api/backup-jobs/{shop}/records/{recovered['id']}/restore", data={"target_database": "shop_then"})
        assert restored.ok, restored.text()
        until(lambda: mariadb_sql("SELECT group_concat(id ORDER BY id) FROM shop_then.orders", check=False) == "1,2", "the recovered rows")
        # A database job: the credential's server lists its databases in the form.
        nav.get_by_role("link", name="New job").click()
        page.get_by_label("Name", exact=True).fill("postgres database")
        page.get_by_role("button", name="Remove this files and folders source").click()
        page.get_by_label("Type of the source to add").select_option("postgres")
        page.get_by_role("button", name="Add source").click()
        expect(page.get_by_text(re.compile("databases on that server: .*postgres"))).to_be_visible()
        page.get_by_label("Database", exact=True).fill("postgres")
        page.get_by_role("button", name="Create job").click()
        expect(page.get_by_role("heading", name=re.compile("^postgres database"))).to_be_visible()
        expect(page.locator("dl.facts")).to_contain_text("PostgreSQL postgres")
        nav.get_by_role("link", name="API keys").click()
        page.get_by_label("Name").fill("nightly script")
        page.get_by_role("button", name="Create key").click()
        expect(page.locator(".new-key")).to_contain_text("shown only this once")
        assert page.locator(".new-key code").inner_text().startswith("cf_")
        expect(page.locator('tr[data-key="nightly script"]')).to_be_visible()
        shot(page, "keys")
        nav.get_by_role("link", name="System backups").click()
        page.get_by_role("button", name="Back up now").click()
        expect(page.locator("table.system-backups tbody tr")).to_have_count(1)
        nav.get_by_role("link", name="Audit log").click()
        expect(page.locator("table.audit")).to_contain_text("POST /api/keys")
        shot(page, "audit", full_page=False)
        nav.get_by_role("link", name="Nodes").click()
        expect(page.locator("table.tools")).to_contain_text("pg_dump")
        nav.get_by_role("link", name="Settings").click()
        expect(page.get_by_label("general.auto_backup")).to_be_visible()

        # A viewer sees everything, and no button that changes anything.
        made = page.request.post(f"{URL}/api/users", data={"username": "watcher", "password": PASSWORD, "role": "viewer"})
        assert made.ok, made.text()
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("heading", name="Log in to Coffer")).to_be_visible()
        log_in(page, "watcher", PASSWORD)
        expect(page.get_by_role("link", name="New job")).to_have_count(0)
        expect(page.get_by_role("list", name="Warnings")).to_contain_text("vanished")
        page.get_by_role("link", name="documents").click()
        expect(page.get_by_role("heading", name=re.compile("^documents"))).to_be_visible()
        expect(record_rows(page).first).to_be_visible()
        for name in ["Run now", "Edit", "Disable", "Delete job", "Restore", "Verify", "Delete", "Download"]:
            expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
            expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
        expect(page.locator(".dropzone")).to_have_count(0)

        # Cross-site requests that would act with the session cookie are refused.
        refused = page.request.post(f"{URL}/api/auth/logout", headers={"Origin": "http://evil.example"})
        assert refused.status == 403 and refused.json()["code"] == "cross_origin", refused.text()
        csp = page.request.get(URL).headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp

        browser.close()
    if errors:
        raise AssertionError("the page reported errors:\n" + "\n".join(errors))
    print("browser tests passed; screenshots in", SHOTS)


if __name__ == "__main__":
    try:
        main()
    except Exception:
        import traceback

        traceback.print_exc()
        if errors:
            print("the page reported:\n" + "\n".join(errors), file=sys.stderr)
        sys.exit(1)
