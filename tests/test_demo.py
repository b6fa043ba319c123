"""`make demo`'s configuration is one the daemon accepts, console login included."""

from __future__ import annotations

from pathlib import Path

from faxbridge.edges.http.console.auth import verify_password
from faxbridge.config import load_config
from faxbridge.demo import DEMO_CONSOLE_PASSWORD, write_config
from faxbridge.simulator import Simulator


def test_the_demo_config_loads_with_its_console_user(tmp_path: Path, simulator: Simulator) -> None:
    path = write_config(tmp_path, simulator, smtp_port=2525, sink_port=2526, console_port=8025)
    config = load_config(path)
    assert config.console is not None and config.smtp is not None and len(config.hotfolders) == 2
    [user] = config.console.users
    assert user.role.value == "admin"
    assert verify_password(DEMO_CONSOLE_PASSWORD, user.password_hash.reveal())
