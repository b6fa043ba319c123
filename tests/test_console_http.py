"""The console over plain HTTP against a running daemon and the simulator: logins, roles, CSRF,
sessions, downloads, escaping."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

import pytest
import requests

from faxbridge.edges.http.console import auth
from faxbridge.config import ConfigError, parse_config
from faxbridge.journal.inbound import InboundState
from faxbridge.model import Document, JobState, JobType, Recipient, SendRequest
from faxbridge.simulator.samples import make_pdf, make_tiff

from conftest import wait_until
from console_support import PASSWORDS, cli, console_section, console_url, csrf_of, login, post_form

NUMBER = "+494012345678"
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def console(make_config, run_daemon):
    daemon = run_daemon(make_config(console=console_section()))
    return daemon, console_url(daemon)


def _submit(daemon, tmp_path: Path, *, user: str | None = None, name: str = "letter.pdf",
            meta: dict | None = None):
    pdf = tmp_path / f"{time.monotonic_ns()}.pdf"
    pdf.write_bytes(make_pdf(1))
    request = SendRequest(JobType.FAX, (Recipient(NUMBER),), (Document(name, pdf),))
    notes = {"label": name, **({"user": user} if user else {}), **(meta or {})}
    return daemon.call(lambda: daemon.services.outbound.submit(
        request, source="console", source_ref=str(time.monotonic_ns()), meta=notes, allow_duplicate=True))


# -- passwords and config ---------------------------------------------------------------------

def test_hash_password_reads_stdin_and_the_hash_verifies(monkeypatch, capsys) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert cli("hash-password") == 0
    hashed = capsys.readouterr().out.strip()
    assert hashed.startswith("$scrypt$") and "correct horse" not in hashed
    assert auth.verify_password("correct horse", hashed)
    assert not auth.verify_password("correct horsf", hashed)
    config = parse_config({"faxde": {"account": "1", "password": "x"},
                           "console": {"users": [{"name": "ann", "password_hash": hashed, "role": "admin"}]}}, Path("."))
    assert config.console is not None and config.console.user("ann").role == "admin"
    assert "***" in repr(config.console) and hashed not in repr(config.console)


@pytest.mark.parametrize(("section", "where", "words"), [
    ({"users": [{"name": "ann", "password_hash": "hunter2"}]}, "console.users[0].password_hash", "hash-password"),
    ({"users": [{"name": "ann", "password_hash": auth.hash_password("a"), "role": "boss"}]},
     "console.users[0].role", "expected one of"),
    ({"users": [{"password_hash": auth.hash_password("a")}]}, "console.users[0].name", "required"),
    ({"listen": "nowhere"}, "console.listen", ""),
    ({"user": []}, "console.user", "did you mean 'users'"),
])
def test_a_wrong_console_section_is_named_by_its_key(section, where, words) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"faxde": {"account": "1", "password": "x"}, "console": section}, Path("."))
    assert where in str(caught.value) and words in str(caught.value)
    assert "hunter2" not in str(caught.value)


# -- sessions, CSRF, rate limit ---------------------------------------------------------------

ROUTES = ["/", "/jobs", "/jobs/1", "/jobs/1/status.csv", "/jobs/1/report.pdf", "/jobs/1/page-1.png",
          "/jobs/1/documents/0/a.pdf", "/held", "/held/1", "/inbound", "/inbound/1", "/inbound/1/fax.pdf",
          "/inbound/1/page-1.png", "/send", "/counts"]
POSTS = ["/jobs/1/cancel", "/jobs/1/retry", "/jobs/1/resend", "/held/1/approve", "/held/1/reject", "/send",
         "/logout"]


def test_every_route_without_a_session_leads_to_the_login(console) -> None:
    _, base = console
    for route in ROUTES:
        answer = requests.get(base + route, allow_redirects=False)
        assert answer.status_code == 303, route
        assert answer.headers["Location"].startswith("/login"), route
    for route in POSTS:
        answer = requests.post(base + route, data={"csrf": "x"}, allow_redirects=False)
        assert answer.status_code == 303 and answer.headers["Location"].startswith("/login"), route
    login_page = requests.get(base + "/login")
    assert login_page.status_code == 200
    assert len(re.findall(r'<input type="text"', login_page.text)) == 1
    assert len(re.findall(r'<input type="password"', login_page.text)) == 1


def test_the_session_cookie_is_httponly_samesite_and_signed(console) -> None:
    daemon, base = console
    session = login(base, "viewer")
    cookie = next(c for c in session.cookies if c.name == auth.COOKIE)
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite") == "Lax"
    assert not cookie.secure  # plain HTTP on loopback; Secure under console.tls
    assert session.get(base + "/jobs").status_code == 200
    # A cookie that names another user without the key's signature is no session.
    payload, _, signature = cookie.value.partition(".")
    forged = payload.replace(payload[:4], payload[:4])  # same payload, wrong signature
    jar = requests.Session()
    jar.cookies.set(auth.COOKIE, f"{forged}.{'0' * len(signature)}")
    assert jar.get(base + "/jobs", allow_redirects=False).status_code == 303


def test_a_post_without_the_csrf_token_is_refused(console, tmp_path) -> None:
    daemon, base = console
    job = _submit(daemon, tmp_path, user="alice")
    session = login(base, "admin")
    for data in ({}, {"csrf": "forged"}):
        answer = session.post(f"{base}/jobs/{job.id}/cancel", data=data, allow_redirects=False)
        assert answer.status_code == 403
    assert daemon.services.journal.jobs.get(job.id).state is not JobState.CANCELLED
    # The login form itself needs its token too.
    assert requests.post(f"{base}/login", data={"username": "admin", "password": PASSWORDS["admin"]},
                         allow_redirects=False).status_code == 403


def test_failed_logins_lock_the_name_out_across_a_restart(make_config, run_daemon) -> None:
    config = make_config(console=console_section())
    daemon = run_daemon(config)
    base = console_url(daemon)
    for _ in range(auth.MAX_FAILURES_PER_NAME):
        session = requests.Session()
        token = csrf_of(session.get(base + "/login").text)
        answer = session.post(base + "/login", data={"csrf": token, "username": "admin", "password": "wrong"})
        assert answer.status_code == 401 and "Wrong user name or password" in answer.text
    daemon.stop()
    daemon = run_daemon(config)
    base = console_url(daemon)
    session = requests.Session()
    token = csrf_of(session.get(base + "/login").text)
    answer = session.post(base + "/login", data={"csrf": token, "username": "admin", "password": PASSWORDS["admin"]})
    assert answer.status_code == 429 and "Too many failed logins" in answer.text
    audit = daemon.services.journal.audit.recent(50)
    assert sum(entry.action == "login_failed" and entry.user == "admin" for entry in audit) == 5
    assert PASSWORDS["admin"] not in str(audit) and "wrong" not in str(audit)
    login(base, "viewer")  # another name is not locked


# -- roles ------------------------------------------------------------------------------------

def test_a_viewer_can_read_but_not_cancel(console, tmp_path) -> None:
    daemon, base = console
    job = _submit(daemon, tmp_path, user="alice")
    viewer = login(base, "viewer")
    page = viewer.get(f"{base}/jobs/{job.id}")
    assert page.status_code == 200 and "Cancel job" not in page.text
    answer = post_form(viewer, base, f"/jobs/{job.id}", f"/jobs/{job.id}/cancel")
    assert answer.status_code == 403
    assert post_form(viewer, base, "/jobs", "/send").status_code == 403
    assert viewer.get(base + "/send").status_code == 403


def test_a_sender_sees_only_their_own_jobs(console, tmp_path) -> None:
    daemon, base = console
    mine = _submit(daemon, tmp_path, user="alice", name="alice-letter.pdf")
    theirs = _submit(daemon, tmp_path, user="bob", name="bob-letter.pdf")
    alice = login(base, "alice")
    listing = alice.get(base + "/jobs").text
    assert "alice-letter.pdf" in listing and "bob-letter.pdf" not in listing
    for route in (f"/jobs/{theirs.id}", f"/jobs/{theirs.id}/documents/0/bob-letter.pdf", f"/held/{theirs.id}"):
        assert alice.get(base + route).status_code == 404, route
    assert post_form(alice, base, "/jobs", f"/jobs/{theirs.id}/cancel").status_code == 404
    assert alice.get(f"{base}/jobs/{mine.id}").status_code == 200
    # An approver sees both.
    listing = login(base, "approver").get(base + "/jobs").text
    assert "alice-letter.pdf" in listing and "bob-letter.pdf" in listing


def test_downloads_name_only_the_jobs_own_files(console, tmp_path) -> None:
    daemon, base = console
    job = _submit(daemon, tmp_path, user="alice", name="letter.pdf")
    session = login(base, "admin")
    good = session.get(f"{base}/jobs/{job.id}/documents/0/letter.pdf")
    assert good.status_code == 200 and good.content.startswith(b"%PDF")
    assert "attachment" in good.headers["Content-Disposition"]
    for route in (f"/jobs/{job.id}/documents/0/..%2F..%2F..%2Fetc%2Fpasswd",
                  f"/jobs/{job.id}/documents/0/%2Fetc%2Fpasswd",
                  f"/jobs/{job.id}/documents/1/letter.pdf",
                  f"/jobs/{job.id}/documents/0/..%2Fletter.pdf",
                  "/static/..%2F..%2Fconsole%2Fauth.py",
                  "/static/../pages.py",
                  "/inbound/999/fax.tiff"):
        answer = session.get(base + route, allow_redirects=False)
        assert answer.status_code == 404, route


def test_markup_in_names_and_metadata_is_shown_escaped(console, tmp_path, simulator) -> None:
    daemon, base = console
    job = _submit(daemon, tmp_path, user="alice", name=f"{XSS}.pdf",
                  meta={"sender": XSS, "subject": XSS})
    session = login(base, "admin")
    for route in ("/jobs", f"/jobs/{job.id}", f"/jobs?q={XSS}", f"/held/{job.id}"):
        text = session.get(base + route).text
        assert "<script>alert" not in text and "<img src=x" not in text, route
        if route != f"/jobs?q={XSS}":
            assert html.escape(XSS, quote=False).split(">")[0] in text.replace("&#34;", '"'), route
    # Fax metadata from FAX.de (originator, station id) is escaped too.
    (tmp_path / "in.tif").write_bytes(make_tiff(1))
    daemon.services.journal.inbound.record(_fax(tmp_path), state=InboundState.STORED,
                                           path=str(tmp_path / "in.tif"), size=10, sha256="x")
    for route in ("/inbound", "/inbound/777"):
        text = session.get(base + route).text
        assert "<script>alert" not in text and "&lt;script&gt;" in text, route
    assert "script-src" not in session.get(base + "/").headers["Content-Security-Policy"]
    assert "default-src 'self'" in session.get(base + "/").headers["Content-Security-Policy"]


def _fax(tmp_path):
    import datetime as dt

    from faxbridge.model import InboundFax

    return InboundFax(777, "+493012345", dt.datetime.now(dt.timezone.utc), XSS, XSS, 1, b"")


# -- the send form ----------------------------------------------------------------------------

def _upload(session, base: str, files: list[tuple[str, bytes]], **fields: str) -> requests.Response:
    token = csrf_of(session.get(f"{base}/send").text)
    return session.post(f"{base}/send", data={"csrf": token, "recipients": NUMBER, **fields},
                        files=[("documents", (name, data)) for name, data in files], allow_redirects=False)


def test_an_uploaded_photo_is_converted_and_sent_like_any_channel(console, simulator, tmp_path) -> None:
    import io

    from PIL import Image

    daemon, base = console
    photo = io.BytesIO()
    Image.new("RGB", (800, 600), "white").save(photo, "JPEG")
    alice = login(base, "alice")
    answer = _upload(alice, base, [("whiteboard.jpg", photo.getvalue())], reference="order-7")
    assert answer.status_code == 303, answer.text
    job_id = int(answer.headers["Location"].rsplit("/", 1)[1])
    journal = daemon.services.journal
    job = wait_until(lambda: journal.jobs.get(job_id).state.is_final and journal.jobs.get(job_id), what="the job")
    assert job.state is JobState.DELIVERED and job.meta["user"] == "alice"
    [call] = simulator.calls_for("SendJob")
    assert call.params["SendFile1"].startswith(b"%PDF")  # converted, as in every other channel
    assert call.params["Recipient"] == f"{NUMBER}[order-7]"
    trail = [(entry.user, entry.action) for entry in journal.audit.for_job(job_id)]
    assert ("alice", "upload") in trail
    page = alice.get(f"{base}/jobs/{job_id}").text
    assert "whiteboard.jpg" in page and "upload" in page
    png = alice.get(f"{base}/jobs/{job_id}/page-1.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


@pytest.mark.parametrize(("files", "fields", "words"), [
    ([("tool.exe", b"MZ\x90\x00" * 10)], {}, "cannot be faxed"),
    ([("letter.pdf", make_pdf(1))], {"recipients": "12"}, ""),
    ([("letter.pdf", make_pdf(1))], {"send_at": "tomorrow-ish"}, "expected e.g."),
    ([], {}, "one to three documents"),
])
def test_a_bad_upload_is_refused_in_words_and_nothing_is_kept(console, simulator, tmp_path, files, fields,
                                                              words) -> None:
    daemon, base = console
    answer = _upload(login(base, "alice"), base, files, **fields)
    assert answer.status_code == 400
    assert words in html.unescape(answer.text)
    assert 'class="error"' in answer.text
    assert daemon.services.journal.jobs.recent(5) == []
    uploads = tmp_path / "state" / "console-uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []
    assert simulator.calls_for("SendJob") == []


# -- the job list ------------------------------------------------------------------------------

def test_the_job_list_filters_and_pages_by_keyset(console, tmp_path) -> None:
    from faxbridge.edges.http.console import pages

    daemon, base = console
    for index in range(pages.PAGE_SIZE + 5):
        _submit(daemon, tmp_path, user="alice" if index % 2 else "bob", name=f"doc-{index:03d}.pdf")
    session = login(base, "admin")
    first = session.get(f"{base}/jobs").text
    assert first.count('<tr>\n  <td><a href="/jobs/') == pages.PAGE_SIZE
    assert "doc-054.pdf" in first and "doc-004.pdf" not in first
    older = re.search(r'href="(/jobs\?before=\d+)"', first)
    assert older, "no link to older jobs"
    second = session.get(base + html.unescape(older.group(1))).text
    assert "doc-004.pdf" in second and "doc-000.pdf" in second and "doc-054.pdf" not in second
    assert 'rel="next"' not in second
    found = session.get(f"{base}/jobs", params={"q": "doc-017"}).text
    assert "doc-017.pdf" in found and "doc-018.pdf" not in found
    by_sender = session.get(f"{base}/jobs", params={"sender": "bob"}).text
    assert "doc-000.pdf" in by_sender and "doc-001.pdf" not in by_sender
    assert "doc-001.pdf" in session.get(f"{base}/jobs", params={"recipient": NUMBER[-6:], "q": "doc-001"}).text
    today = time.strftime("%Y-%m-%d", time.gmtime())  # the filter's days are UTC days
    assert "doc-054.pdf" in session.get(f"{base}/jobs", params={"since": today, "until": today}).text
    assert "doc-054.pdf" not in session.get(f"{base}/jobs", params={"until": "2001-01-01"}).text
    assert session.get(f"{base}/jobs", params={"since": "yesterday"}).status_code == 400
    assert "No jobs." in session.get(f"{base}/jobs", params={"state": "failed"}).text


def test_resend_makes_a_new_job_of_the_same_documents(console, simulator, tmp_path) -> None:
    daemon, base = console
    journal = daemon.services.journal
    job = _submit(daemon, tmp_path, user="alice", name="again.pdf")
    wait_until(lambda: journal.jobs.get(job.id).state.is_final, what="the first job")
    viewer = login(base, "viewer")
    assert post_form(viewer, base, f"/jobs/{job.id}", f"/jobs/{job.id}/resend").status_code == 403
    alice = login(base, "alice")
    answer = post_form(alice, base, f"/jobs/{job.id}", f"/jobs/{job.id}/resend")
    assert answer.status_code == 303
    new_id = int(answer.headers["Location"].rsplit("/", 1)[1])
    assert new_id != job.id
    wait_until(lambda: journal.jobs.get(new_id).state.is_final, what="the resent job")
    first, second = simulator.calls_for("SendJob")
    assert first.params["SendFile1"] == second.params["SendFile1"]
    assert ("alice", "resend") in [(e.user, e.action) for e in journal.audit.for_job(job.id)]


def test_under_tls_the_session_cookie_is_secure(make_config, run_daemon, tmp_path) -> None:
    import subprocess

    cert, key = tmp_path / "console.crt", tmp_path / "console.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    daemon = run_daemon(make_config(console=console_section(tls={"cert": str(cert), "key": str(key)})))
    base = console_url(daemon).replace("http://", "https://")
    with requests.Session() as session:  # verify= per request: REQUESTS_CA_BUNDLE overrides the session's
        token = csrf_of(session.get(f"{base}/login", verify=str(cert)).text)
        answer = session.post(f"{base}/login", data={"csrf": token, "username": "viewer",
                                                     "password": PASSWORDS["viewer"]}, allow_redirects=False,
                              verify=str(cert))
    assert answer.status_code == 303
    assert "Secure" in answer.headers["Set-Cookie"] and "HttpOnly" in answer.headers["Set-Cookie"]


def test_the_address_book_is_imported_by_csv_and_names_numbers(console, tmp_path) -> None:
    daemon, base = console
    job = _submit(daemon, tmp_path, user="alice")
    viewer = login(base, "viewer")
    token = csrf_of(viewer.get(f"{base}/addressbook").text)
    csv_file = "name;number\nMüller <Praxis>;040 12345678\n"
    refused = viewer.post(f"{base}/addressbook", data={"csrf": token},
                          files={"csv": ("book.csv", csv_file.encode())}, allow_redirects=False)
    assert refused.status_code == 403
    approver = login(base, "approver")
    token = csrf_of(approver.get(f"{base}/addressbook").text)
    bad = approver.post(f"{base}/addressbook", data={"csrf": token},
                        files={"csv": ("book.csv", b"Someone,0900 123456\n")}, allow_redirects=False)
    assert bad.status_code == 400 and "line 1" in bad.text and daemon.services.journal.address_book.all() == []
    answer = approver.post(f"{base}/addressbook", data={"csrf": token},
                           files={"csv": ("book.csv", csv_file.encode())}, allow_redirects=False)
    assert answer.status_code == 303
    page = approver.get(f"{base}/jobs/{job.id}").text
    assert f"Müller &lt;Praxis&gt; ({NUMBER})" in page
    assert f'<option value="{NUMBER}">Müller &lt;Praxis&gt; ({NUMBER})</option>' in login(base, "alice").get(
        f"{base}/send").text
    alice = login(base, "alice")
    token = csrf_of(alice.get(f"{base}/send").text)
    sent = alice.post(f"{base}/send", data={"csrf": token, "recipients": "", "contacts": NUMBER},
                      files=[("documents", ("picked.pdf", make_pdf(1, tag="picked")))], allow_redirects=False)
    assert sent.status_code == 303, sent.text  # the number picked from the address book is the recipient


def test_upload_folders_of_forgotten_jobs_are_swept(console, tmp_path) -> None:
    import os

    from faxbridge.edges.http.console.pages import UPLOADS, sweep_uploads

    daemon, base = console
    alice = login(base, "alice")
    answer = _upload(alice, base, [("kept.pdf", make_pdf(1, tag="kept"))])
    assert answer.status_code == 303
    job = daemon.services.journal.jobs.get(int(answer.headers["Location"].rsplit("/", 1)[1]))
    kept = Path(job.meta["uploads"])
    orphan, young = tmp_path / "state" / UPLOADS / "orphan", tmp_path / "state" / UPLOADS / "young"
    orphan.mkdir()
    young.mkdir()
    (orphan / "1.pdf").write_bytes(b"%PDF")
    old = time.time() - 7200
    for folder in (orphan, kept):
        os.utime(folder, (old, old))
    [edge] = [edge for edge in daemon.daemon.edges if edge.name == "console"]
    assert sweep_uploads(edge.console) == [orphan]
    assert kept.is_dir() and young.is_dir() and not orphan.exists()


def test_an_unknown_outcome_is_resolved_by_an_admin_only(make_config, run_daemon, simulator) -> None:
    from faxbridge.simulator import Fault, FaultKind

    # The answer to the first SendJob is lost; with no reconcile window the operator decides.
    simulator.set_faults(Fault(FaultKind.DROP_AFTER, operation="SendJob", calls=frozenset({1})))
    daemon = run_daemon(make_config(console=console_section(), faxde={"reconcile_window": "0s"}))
    base = console_url(daemon)
    answer = _upload(login(base, "alice"), base, [("lost.pdf", make_pdf(1, tag="lost"))])
    job_id = int(answer.headers["Location"].rsplit("/", 1)[1])
    journal = daemon.services.journal
    wait_until(lambda: journal.jobs.get(job_id).state is JobState.UNKNOWN, what="the outcome unknown")
    admin = login(base, "admin")
    dashboard = admin.get(base + "/").text
    assert "need the operator" in dashboard and f'href="/jobs/{job_id}"' in dashboard
    approver = login(base, "approver")
    assert "Send again" not in approver.get(f"{base}/jobs/{job_id}").text
    assert post_form(approver, base, f"/jobs/{job_id}", f"/jobs/{job_id}/retry").status_code == 403
    assert "Send again" in admin.get(f"{base}/jobs/{job_id}").text
    resolved = post_form(admin, base, f"/jobs/{job_id}", f"/jobs/{job_id}/retry")
    assert resolved.status_code == 303
    assert journal.jobs.get(job_id).state is JobState.CONFIRMED  # FAX.de: -77, it had the job
    assert [call.result for call in simulator.calls_for("SendJob")] == [0, -77]
    assert ("admin", "retry") in [(e.user, e.action) for e in journal.audit.for_job(job_id)]
