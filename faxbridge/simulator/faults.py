"""Fault injection: which SOAP call goes wrong, and how.

A plan is a list of rules. Each rule names a kind of failure, the operation it applies to (or all), and
when it fires: on given call numbers (1-based, counted per operation — or over all operations for a rule
without one — since the plan was set) or at a rate drawn from a seeded random generator, so a run can be
repeated exactly. Delays add up; of the other kinds the first matching rule wins.

Where each kind strikes matters to the client (see server.py):
  http_500, soap_fault, result, drop_before: the request is NOT processed — no job is created;
  drop_after: the request IS processed (a SendJob creates its job), then the connection is closed without
      an answer — the client cannot know the outcome;
  delay: the request is processed, the answer comes ``seconds`` later (a client timeout → outcome unknown).
"""

from __future__ import annotations

import enum
import random
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class FaultKind(enum.StrEnum):
    HTTP_500 = "http_500"  # plain-text HTTP 500, as a proxy or a crashed ISAPI module would answer
    SOAP_FAULT = "soap_fault"  # HTTP 500 with a SOAP-ENV:Fault
    DROP_BEFORE = "drop_before"  # connection closed before processing
    DROP_AFTER = "drop_after"  # processed, then connection closed without an answer
    DELAY = "delay"  # processed, answered after ``seconds``
    RESULT = "result"  # answered normally, but with result ``code`` (e.g. -4 server error), not processed


@dataclass(frozen=True)
class Fault:
    """One rule. Without ``calls`` it fires at ``rate`` (default: every call)."""

    kind: FaultKind
    operation: str | None = None  # None: every operation
    calls: frozenset[int] = frozenset()
    rate: float = 1.0
    seconds: float = 0.0  # DELAY only
    code: int = -4  # RESULT only; -4 is SendJob's "Server error"
    message: str = "Simulated server fault"  # SOAP_FAULT only

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        object.__setattr__(self, "calls", frozenset(self.calls))
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, got {self.rate}")
        if self.seconds < 0:
            raise ValueError("fault delay must not be negative")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        """A rule from the admin API's JSON: the same field names, ``calls`` as a list."""
        known = {"kind", "operation", "calls", "rate", "seconds", "code", "message"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        if "kind" not in data:
            raise ValueError("a fault needs a 'kind'")
        return cls(**{**data, "calls": frozenset(int(n) for n in data.get("calls", ()))})

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "operation": self.operation,
            "calls": sorted(self.calls),
            "rate": self.rate,
            "seconds": self.seconds,
            "code": self.code,
            "message": self.message,
        }


@dataclass(frozen=True)
class Decision:
    """What to do with one call: wait ``delay`` seconds, and fail as ``fault`` says (None: answer normally)."""

    delay: float = 0.0
    fault: Fault | None = None


@dataclass
class FaultPlan:
    """The rules in force and the call counters they are matched against; safe to use from many threads."""

    rules: list[Fault] = field(default_factory=list)
    seed: int | None = None
    _random: random.Random = field(init=False, repr=False)
    _counts: Counter[str] = field(init=False, repr=False, default_factory=Counter)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def replace(self, rules: Iterable[Fault], seed: int | None = None) -> None:
        """New rules; counting and the random sequence start again."""
        with self._lock:
            self.rules = list(rules)
            self.seed = seed
            self._random = random.Random(seed)
            self._counts.clear()

    def decide(self, operation: str) -> Decision:
        """Count this call and say which rules fire for it."""
        with self._lock:
            self._counts[operation] += 1
            self._counts["*"] += 1
            delay = 0.0
            chosen: Fault | None = None
            for rule in self.rules:
                if rule.operation not in (None, operation):
                    continue
                number = self._counts[operation if rule.operation else "*"]
                if rule.calls:
                    fires = number in rule.calls
                else:
                    # Always draw, even at rate 1: the sequence then depends only on the rules and the calls.
                    fires = self._random.random() < rule.rate
                if not fires:
                    continue
                if rule.kind is FaultKind.DELAY:
                    delay += rule.seconds
                elif chosen is None:
                    chosen = rule
            return Decision(delay, chosen)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {"seed": self.seed, "faults": [rule.to_json() for rule in self.rules]}
