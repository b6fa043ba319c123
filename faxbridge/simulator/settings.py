"""How the simulated account and service behave: the knobs tests and the admin API turn."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class AccountState(enum.StrEnum):
    ACTIVE = "active"
    EVALUATION = "evaluation"  # before the first payment: documents of at most 3 pages (SendJob -1309)
    EXPIRED = "expired"  # evaluation period over without payment
    LOCKED = "locked"


@dataclass
class Settings:
    """How the simulated account and service behave; changeable while the simulator runs."""

    account: str = "12345"
    password: str = field(default="secret", repr=False)
    account_state: AccountState = AccountState.ACTIVE
    polls_until_done: int = 1  # JobStatus answers 6 this many times per job (taken when the job is created)
    # Seconds in which an identical SendJob is refused with -77. FAX.de does not say how long; a minute
    # is the realistic guess the crash campaigns use (a longer one would hide a late re-send).
    duplicate_window: float = 60.0
    # "To dispose an email job / jobs with multiple recipients you need an according activation"
    # (FAXDE-API.md, SendJob, Note): both can be switched off to see the refusals.
    email_enabled: bool = True
    multi_recipient_enabled: bool = True
    foreign_enabled: bool = True  # False: fax/SMS numbers outside home_prefix are refused (-8)
    home_prefix: str = "+49"
    inbound_number: str = "+4930555000"  # CalledNumber of inbound faxes unless given

    def update(self, changes: dict[str, Any]) -> None:
        """Change settings by name, checking names and types (for the admin API's JSON)."""
        known = {f.name: f for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown setting {name!r}")
            current = getattr(self, name)
            if isinstance(current, AccountState):
                value = AccountState(value)
            elif isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{name}: expected true or false, got {value!r}")
            elif isinstance(current, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{name}: expected an integer, got {value!r}")
            elif isinstance(current, float):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{name}: expected a number, got {value!r}")
                value = float(value)
            elif not isinstance(value, str):
                raise ValueError(f"{name}: expected a string, got {value!r}")
            setattr(self, name, value)

    def to_json(self) -> dict[str, Any]:
        """Every setting except the password."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "password"}
