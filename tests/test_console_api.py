"""/api/v1 against a running daemon and the simulator: tokens, idempotent submission, roles, the OpenAPI description."""

from __future__ import annotations

import base64

import pytest
import requests

from faxbridge.journal import Journal
from faxbridge.model import JobState
from faxbridge.simulator.samples import make_pdf

from conftest import wait_until
from console_support import cli, console_section, console_url

NUMBER = "+494012345678"


@pytest.fixture
def api(make_config, run_daemon, tmp_path, capsys):
    config = make_config(console=console_section(), hotfolders=[
        {"path": str(tmp_path / "hold"), "settle_time": "0.15s", "hold": "always"}])
    (tmp_path / "hold").mkdir()
    tokens = {}
    for user in ("viewer", "alice", "bob", "approver"):
        assert cli("api-token", "-c", str(config), user, "--label", "test") == 0
        tokens[user] = capsys.readouterr().out.strip()
    daemon = run_daemon(config)
    base = console_url(daemon) + "/api/v1"

    def call(method: str, path: str, user: str | None, **kwargs):
        headers = kwargs.pop("headers", {})
        if user:
            headers["Authorization"] = f"Bearer {tokens[user]}"
        return requests.request(method, base + path, headers=headers, timeout=30, **kwargs)

    return daemon, call, tokens


def _document(tag: str) -> dict[str, str]:
    return {"filename": f"{tag}.pdf", "content_base64": base64.b64encode(make_pdf(1, tag=tag)).decode()}


def test_the_openapi_description_is_valid_and_names_every_route(api) -> None:
    from openapi_spec_validator import validate

    daemon, call, _ = api
    answer = call("GET", "/openapi.json", None)
    assert answer.status_code == 200
    spec = answer.json()
    validate(spec)
    for path in ("/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/cancel", "/api/v1/jobs/{job_id}/approve",
                 "/api/v1/jobs/{job_id}/reject", "/api/v1/inbound", "/api/v1/inbound/{fax_id}/fax.{kind}"):
        assert path in spec["paths"], path


def test_a_token_is_needed_and_only_its_hash_is_kept(api, tmp_path) -> None:
    _, call, tokens = api
    assert call("GET", "/jobs", None).status_code == 401
    assert call("GET", "/jobs", None, headers={"Authorization": "Bearer fbx_forged"}).status_code == 401
    assert call("GET", "/jobs", "viewer").status_code == 200
    with Journal.open(tmp_path / "state") as journal:
        stored = [row["sha256"] for row in journal.query("SELECT sha256 FROM console_api_tokens")]
    assert len(stored) == 4 and not any(token in stored for token in tokens.values())
    assert all(token[4:] not in (tmp_path / "state" / "journal.sqlite3").read_bytes().decode("latin-1")
               for token in tokens.values())


def test_submit_with_an_idempotency_key_sends_once(api, simulator) -> None:
    daemon, call, _ = api
    body = {"recipients": [NUMBER], "documents": [_document("order")], "reference": "ERP-1"}
    first = call("POST", "/jobs", "alice", json=body, headers={"Idempotency-Key": "erp-0001"})
    assert first.status_code == 201, first.text
    again = call("POST", "/jobs", "alice", json=body, headers={"Idempotency-Key": "erp-0001"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    job_id = first.json()["id"]
    wait_until(lambda: call("GET", f"/jobs/{job_id}", "alice").json()["state"] == "delivered", what="delivered")
    assert len(simulator.calls_for("SendJob")) == 1
    job = call("GET", f"/jobs/{job_id}", "alice").json()
    assert job["user"] == "alice" and job["recipients"] == [f"{NUMBER}[ERP-1]"]
    assert any(event["what"] == "upload" and event["user"] == "alice" for event in job["events"])
    # Another sender cannot see it; a viewer can; nobody below sender may submit.
    assert call("GET", f"/jobs/{job_id}", "bob").status_code == 404
    assert [j["id"] for j in call("GET", "/jobs", "bob").json()["jobs"]] == []
    assert call("GET", f"/jobs/{job_id}", "viewer").status_code == 200
    assert call("POST", "/jobs", "viewer", json=body).status_code == 403


def test_multipart_submission_and_refusals_in_words(api, simulator) -> None:
    _, call, _ = api
    answer = call("POST", "/jobs", "alice", data={"recipients": NUMBER},
                  files=[("documents", ("scan.pdf", make_pdf(1, tag="scan")))])
    assert answer.status_code == 201, answer.text
    bad = call("POST", "/jobs", "alice", json={"recipients": [NUMBER], "documents": [{"filename": "x.pdf",
                                                                                       "content_base64": "%%%"}]})
    assert bad.status_code == 400 and "not base64" in bad.json()["error"]
    assert call("POST", "/jobs", "alice", data=b"x", headers={"Content-Type": "text/plain"}).status_code == 400
    assert "recipients" in call("POST", "/jobs", "alice", json={"recipients": "123"}).json()["error"]


def test_approve_and_reject_by_role(api, simulator, tmp_path) -> None:
    daemon, call, _ = api
    (tmp_path / "hold" / f"{NUMBER}_one.pdf").write_bytes(make_pdf(1, tag="one"))
    (tmp_path / "hold" / f"{NUMBER}_two.pdf").write_bytes(make_pdf(1, tag="two"))
    held = wait_until(lambda: (lambda jobs: len(jobs) == 2 and jobs)(
        call("GET", "/jobs?state=held", "viewer").json()["jobs"]), what="two held jobs")
    one, two = sorted(held, key=lambda job: job["documents"][0])
    assert call("POST", f"/jobs/{one['id']}/approve", "viewer").status_code == 403
    assert call("POST", f"/jobs/{one['id']}/cancel", "viewer").status_code == 403
    approved = call("POST", f"/jobs/{one['id']}/approve", "approver")
    assert approved.status_code == 200 and approved.json()["state"] in ("queued", "submitting", "submitted", "delivered")
    wait_until(lambda: simulator.calls_for("SendJob"), what="the approved job sent")
    assert call("POST", f"/jobs/{two['id']}/reject", "approver", json={}).status_code == 400
    rejected = call("POST", f"/jobs/{two['id']}/reject", "approver", json={"reason": "not today"})
    assert rejected.status_code == 200 and rejected.json()["state"] == JobState.REJECTED.value
    assert call("POST", f"/jobs/{two['id']}/approve", "approver").status_code == 409
    assert len(simulator.calls_for("SendJob")) == 1


def test_inbound_list_and_unknown_fax(api, simulator) -> None:
    _, call, _ = api
    assert call("GET", "/inbound", "viewer").json() == {"faxes": []}
    assert call("GET", "/inbound/1/fax.tiff", "viewer").status_code == 404
