"""The console in a real headless Chromium (the distribution's chromium and chromium-driver, through
Selenium) against the daemon in-process and the FAX.de simulator.

FAXBRIDGE_SCREENSHOTS=docs keeps PNGs of the main pages in that folder (the README shows them).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from faxbridge.simulator.samples import make_pdf

from conftest import wait_until
from textpdf import text_pdf
from console_support import PASSWORDS, console_section, console_url

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
NUMBER = "+494012345678"
SETTLE = 0.15
LETTER = [("Example GmbH - Offer 2026-117", 20.0, 0.0), "", "Dear Ms Lindqvist,", "",
          "thank you for your enquiry. We offer 40 units at EUR 12.50 each,",
          "delivery within two weeks of your order.", "", "Kind regards,", "Example GmbH, Sales"]

pytestmark = [
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs the Debian packages chromium and chromium-driver (.ci/system-deps)"),
    pytest.mark.timeout(120),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="faxbridge-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # No sandbox: CI runs as root. No background networking: the machine has no network, and
    # Chromium would fill its log with refused connections.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def chrome(browser):
    browser.delete_all_cookies()  # every test logs in afresh
    return browser


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "hold"
    path.mkdir()
    return path


@pytest.fixture
def site(make_config, run_daemon, simulator, tmp_path: Path, folder: Path) -> str:
    simulator.polls_until_done = 0
    daemon = run_daemon(make_config(
        console=console_section(),
        hotfolders=[{"path": str(folder), "settle_time": f"{SETTLE}s", "hold": "always"}],
        inbound={"output": str(tmp_path / "received"), "interval": "200ms"},
    ))
    return console_url(daemon)


def log_in(driver, base: str, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login")
    driver.find_element(By.NAME, "username").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(PASSWORDS[name])
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_until(lambda: not driver.current_url.endswith("/login") and "/login" not in driver.current_url,
               what=f"{name} logged in")
    assert driver.find_element(By.CSS_SELECTOR, ".who").text.startswith(name)


def screenshot(driver, name: str) -> None:
    target = os.environ.get("FAXBRIDGE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(target) / f"console-{name}.png"))


def reload_until(driver, predicate, what: str):
    """Reload the page until ``predicate(driver)``: the server renders state; nothing pushes it."""
    def check():
        driver.refresh()
        return predicate(driver)

    return wait_until(check, timeout=30, what=what)


def fax_tiff(pages: list[list]) -> bytes:
    """A received fax as FAX.de delivers one: a multi-page G4 TIFF, 1728 px wide, 204×196 dpi."""
    import io

    import pypdfium2

    pdf = pypdfium2.PdfDocument(text_pdf(pages))
    images = []
    for page in pdf:
        images.append(page.render(scale=1728 / page.get_width()).to_pil().convert("1"))
        page.close()
    pdf.close()
    out = io.BytesIO()
    images[0].save(out, "TIFF", compression="group4", dpi=(204, 196), save_all=True, append_images=images[1:])
    return out.getvalue()


def images_loaded(driver, css: str) -> list[int]:
    """The natural widths of the images matched by ``css`` (0 for one that did not load)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(i => i.complete ? i.naturalWidth : 0);", css)


def test_log_in_send_a_pdf_from_the_form_and_watch_it_delivered(chrome, site, simulator, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    document = tmp_path / "offer.pdf"
    document.write_bytes(text_pdf([LETTER, ["Page 2 of the offer"]]))
    log_in(chrome, site, "alice")
    chrome.get(f"{site}/send")
    chrome.find_element(By.NAME, "documents").send_keys(str(document))
    chrome.find_element(By.NAME, "recipients").send_keys(NUMBER)
    screenshot(chrome, "send")
    chrome.find_element(By.CSS_SELECTOR, "form.send button[type=submit]").click()
    wait_until(lambda: "/jobs/" in chrome.current_url, what="the job page")
    job_id = int(chrome.current_url.rsplit("/", 1)[1])
    reload_until(chrome, lambda d: "delivered" in d.find_element(By.TAG_NAME, "h1").text, "the job delivered")
    [call] = simulator.calls_for("SendJob")
    assert call.params["SendFile1"] == document.read_bytes()
    assert call.params["SendFilename1"] == "offer.pdf"
    page = chrome.find_element(By.TAG_NAME, "main").text
    assert "alice" in page and "upload" in page  # the audit entry in the timeline
    assert images_loaded(chrome, "img.thumb") and all(images_loaded(chrome, "img.thumb"))
    screenshot(chrome, "job")
    chrome.get(f"{site}/jobs")
    assert str(job_id) in chrome.find_element(By.CSS_SELECTOR, "table.jobs").text


def test_approve_one_held_document_and_reject_another(chrome, site, simulator, folder) -> None:
    from selenium.webdriver.common.by import By

    good, bad = text_pdf([["Purchase order 4711", *LETTER[1:]]]), make_pdf(1, tag="bad")
    (folder / f"{NUMBER}_good.pdf").write_bytes(good)
    (folder / f"{NUMBER}_bad.pdf").write_bytes(bad)
    log_in(chrome, site, "approver")
    chrome.get(f"{site}/held")
    reload_until(chrome, lambda d: "good.pdf" in d.page_source and "bad.pdf" in d.page_source, "two held jobs")
    screenshot(chrome, "held")
    assert simulator.calls_for("SendJob") == []

    rows = chrome.find_elements(By.CSS_SELECTOR, "tbody tr")
    links = {row.text: row.find_element(By.TAG_NAME, "a").get_attribute("href") for row in rows}
    [good_url] = [url for text, url in links.items() if "good.pdf" in text]
    [bad_url] = [url for text, url in links.items() if "bad.pdf" in text]

    chrome.get(good_url)
    assert all(images_loaded(chrome, "img.preview")) and images_loaded(chrome, "img.preview")
    screenshot(chrome, "held-job")
    chrome.find_element(By.XPATH, "//button[normalize-space()='Approve']").click()
    wait_until(lambda: simulator.calls_for("SendJob"), what="the approved job at the simulator")
    [call] = simulator.calls_for("SendJob")
    assert call.params["SendFile1"] == good

    chrome.get(bad_url)
    chrome.find_element(By.NAME, "reason").send_keys("wrong customer <b>X</b>")
    chrome.find_element(By.XPATH, "//button[normalize-space()='Reject']").click()
    error = folder / "failed" / f"{NUMBER}_bad.error.txt"
    wait_until(error.exists, what="the rejected document in failed/")
    assert "wrong customer <b>X</b>" in error.read_text()
    assert (folder / "failed" / f"{NUMBER}_bad.pdf").read_bytes() == bad
    assert len(simulator.calls_for("SendJob")) == 1
    # The reason is in the timeline, as text.
    assert "wrong customer <b>X</b>" in chrome.find_element(By.CSS_SELECTOR, "table.timeline").text
    chrome.get(site)
    assert "held" in chrome.find_element(By.TAG_NAME, "main").text
    screenshot(chrome, "dashboard")
    chrome.get(f"{site}/jobs")
    jobs = chrome.find_element(By.CSS_SELECTOR, "table.jobs").text
    assert "rejected" in jobs and "good.pdf" in jobs
    screenshot(chrome, "jobs")


def test_open_an_inbound_fax_and_its_page_images(chrome, site, simulator) -> None:
    from selenium.webdriver.common.by import By

    simulator.add_inbound(fax_tiff([LETTER, ["Page 2: terms and conditions"]]), originator="+4930999888",
                          remote_id="ACME <GmbH>")
    log_in(chrome, site, "viewer")
    chrome.get(f"{site}/inbound")
    reload_until(chrome, lambda d: d.find_elements(By.CSS_SELECTOR, ".faxes img.thumb"), "the received fax listed")
    wait_until(lambda: all(images_loaded(chrome, ".faxes img.thumb")), what="the thumbnail")
    assert "ACME <GmbH>" in chrome.find_element(By.CSS_SELECTOR, ".faxes").text
    assert "NEW" in chrome.find_element(By.CSS_SELECTOR, ".faxes").text.upper()
    screenshot(chrome, "inbound")
    chrome.find_element(By.CSS_SELECTOR, ".faxes a").click()
    wait_until(lambda: len(images_loaded(chrome, ".pages img")) == 2, what="two page images")
    wait_until(lambda: all(images_loaded(chrome, ".pages img")), what="both pages rendered")
    assert images_loaded(chrome, ".pages img") == [900, 900]
    assert chrome.find_element(By.LINK_TEXT, "Download as PDF").get_attribute("href").endswith("/fax.pdf")
    chrome.get(f"{site}/inbound")  # opened: no longer new for this user
    assert "NEW" not in chrome.find_element(By.CSS_SELECTOR, ".faxes").text.upper()


def test_download_the_send_report_of_a_delivered_job(chrome, site, simulator, tmp_path) -> None:
    import hashlib

    from pypdf import PdfReader
    from selenium.webdriver.common.by import By

    document = tmp_path / "contract.pdf"
    document.write_bytes(make_pdf(1, tag="contract"))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    chrome.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    log_in(chrome, site, "alice")
    chrome.get(f"{site}/send")
    chrome.find_element(By.NAME, "documents").send_keys(str(document))
    chrome.find_element(By.NAME, "recipients").send_keys(NUMBER)
    chrome.find_element(By.CSS_SELECTOR, "form.send button[type=submit]").click()
    wait_until(lambda: "/jobs/" in chrome.current_url, what="the job page")
    reload_until(chrome, lambda d: d.find_elements(By.LINK_TEXT, "Send report (PDF)"), "the report link")
    chrome.find_element(By.LINK_TEXT, "Send report (PDF)").click()
    [report] = wait_until(lambda: [p for p in downloads.glob("*.pdf")], what="the report downloaded")
    text = "\n".join(page.extract_text() for page in PdfReader(report).pages)
    assert hashlib.sha256(document.read_bytes()).hexdigest() in text.replace("\n", "").replace(" ", "")
    assert "OK" in text and "delivered" in text


def test_a_form_without_its_csrf_token_is_refused(chrome, site, folder, simulator) -> None:
    from selenium.webdriver.common.by import By

    (folder / f"{NUMBER}_csrf.pdf").write_bytes(make_pdf(1, tag="csrf"))
    log_in(chrome, site, "approver")
    chrome.get(f"{site}/held")
    reload_until(chrome, lambda d: "csrf.pdf" in d.page_source, "the held job")
    chrome.find_element(By.CSS_SELECTOR, "tbody tr a").click()
    chrome.execute_script("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove());")
    chrome.find_element(By.XPATH, "//button[normalize-space()='Approve']").click()
    wait_until(lambda: "security token" in chrome.page_source, what="the refusal")
    assert simulator.calls_for("SendJob") == []


def test_a_viewer_sees_no_approve_button_and_the_route_refuses(chrome, site, folder, simulator) -> None:
    from selenium.webdriver.common.by import By

    (folder / f"{NUMBER}_viewer.pdf").write_bytes(make_pdf(1, tag="viewer"))
    log_in(chrome, site, "viewer")
    chrome.get(f"{site}/held")
    reload_until(chrome, lambda d: "viewer.pdf" in d.page_source, "the held job")
    chrome.find_element(By.CSS_SELECTOR, "tbody tr a").click()
    assert chrome.find_elements(By.XPATH, "//button[normalize-space()='Approve']") == []
    assert chrome.find_elements(By.XPATH, "//button[normalize-space()='Reject']") == []
    job_id = chrome.current_url.rsplit("/", 1)[1]
    # The viewer's own valid token (from the log-out form), posted straight at the route.
    status = chrome.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const token = document.querySelector('input[name=csrf]').value;"
        "fetch('/held/' + arguments[0] + '/approve', {method: 'POST', headers: {'X-CSRF-Token': token},"
        " redirect: 'manual'}).then(r => done(r.status));", job_id)
    assert status == 403
    assert simulator.calls_for("SendJob") == []
