"""Helpers of the console tests: users with real password hashes, a daemon with the console on a
free port, and a logged-in HTTP session that reads the CSRF token from the forms like a browser."""

from __future__ import annotations

import functools
import re
from typing import Any

import requests

from faxbridge.edges.http.console.auth import hash_password

PASSWORDS = {"viewer": "view-pw-1", "alice": "alice-pw-2", "bob": "bob-pw-3", "approver": "appr-pw-4",
             "admin": "admin-pw-5"}
ROLES = {"viewer": "viewer", "alice": "sender", "bob": "sender", "approver": "approver", "admin": "admin"}


@functools.cache
def _hash(password: str) -> str:
    return hash_password(password)


def console_section(**extra: Any) -> dict[str, Any]:
    users = [{"name": name, "password_hash": _hash(PASSWORDS[name]), "role": role} for name, role in ROLES.items()]
    return {"listen": "127.0.0.1:0", "users": users, **extra}


def console_url(daemon: Any) -> str:
    [edge] = [edge for edge in daemon.daemon.edges if edge.name == "console"]
    return f"http://127.0.0.1:{edge.port}"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def login(base: str, name: str, password: str | None = None) -> requests.Session:
    session = requests.Session()
    form = session.get(f"{base}/login")
    answer = session.post(f"{base}/login", data={
        "csrf": csrf_of(form.text), "username": name, "password": password or PASSWORDS[name]},
        allow_redirects=False)
    assert answer.status_code == 303, answer.text
    return session


def post_form(session: requests.Session, base: str, page: str, action: str, **data: str) -> requests.Response:
    """POST ``action`` with the CSRF token of the form on ``page``, as a browser would."""
    token = csrf_of(session.get(f"{base}{page}").text)
    return session.post(f"{base}{action}", data={"csrf": token, **data}, allow_redirects=False)


def cli(*argv: str) -> int:
    """``faxbridge.cli.main`` without leaving its log handler behind: that handler writes to this
    test's captured stderr, which pytest closes when the test ends, while daemons may still log."""
    import logging

    from faxbridge.cli import main

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return main(list(argv))
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
