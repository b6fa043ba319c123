"""Approval rules: which new jobs wait in 'held' for an approver, and the sentence saying why.

Pure logic over plain values: the rules come from the config (per hotfolder, per SMTP sender or
domain, or everywhere), the facts from the request and the journal (earlier jobs, the address
book). ``HoldPolicy.reason_for`` answers None (send) or the reason the job is held.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import phonenumbers

from faxbridge.documents import inspect
from faxbridge.errors import FaxbridgeError
from faxbridge.model import SendRequest

if TYPE_CHECKING:
    from faxbridge.journal import Journal

# The rule names a config may use; "pages>N" (or {more_than_pages: N}) comes on top.
ALWAYS = "always"
FIRST_TIME = "first_time"
FOREIGN = "foreign"
NOT_IN_ADDRESS_BOOK = "not_in_address_book"
MORE_THAN_PAGES = "more_than_pages"
RULE_NAMES = (ALWAYS, FIRST_TIME, f"pages>N ({MORE_THAN_PAGES}: N)", FOREIGN, NOT_IN_ADDRESS_BOOK)

_PAGES_RE = re.compile(r"pages\s*>\s*(\d+)")


@dataclass(frozen=True)
class HoldRule:
    kind: str  # one of ALWAYS, FIRST_TIME, FOREIGN, NOT_IN_ADDRESS_BOOK, MORE_THAN_PAGES
    pages: int = 0  # MORE_THAN_PAGES: held above this many pages

    def __str__(self) -> str:
        return f"pages>{self.pages}" if self.kind == MORE_THAN_PAGES else self.kind


def parse_rules(value: Any) -> tuple[HoldRule, ...]:
    """``always`` | ``[first_time, pages>5]`` | ``{more_than_pages: 5}``; ValueError in words."""
    if value is None or value is False:
        return ()
    items = value if isinstance(value, list) else [value]
    rules = []
    for item in items:
        if isinstance(item, Mapping):
            if set(item) != {MORE_THAN_PAGES}:
                raise ValueError(f"expected {{{MORE_THAN_PAGES}: N}}; got {dict(item)!r}")
            pages = item[MORE_THAN_PAGES]
            if isinstance(pages, bool) or not isinstance(pages, int) or pages < 0:
                raise ValueError(f"{MORE_THAN_PAGES}: expected a number of pages; got {pages!r}")
            rules.append(HoldRule(MORE_THAN_PAGES, pages))
            continue
        if item is True:
            item = ALWAYS
        text = str(item).strip().lower().replace("-", "_").replace(" ", "_") if isinstance(item, str) else None
        if text in (ALWAYS, FIRST_TIME, FOREIGN, NOT_IN_ADDRESS_BOOK):
            rules.append(HoldRule(text))
            continue
        match = _PAGES_RE.fullmatch(str(item).strip().lower()) if isinstance(item, str) else None
        if match is None:
            raise ValueError(f"expected one of {', '.join(RULE_NAMES)}; got {item!r}")
        rules.append(HoldRule(MORE_THAN_PAGES, int(match.group(1))))
    return tuple(rules)


def sender_matches(pattern: str, address: str) -> bool:
    """``alice@example.com``, ``*@example.com``, ``*@*.example.com``, or a bare domain."""
    pattern = pattern.lower()
    if "@" not in pattern:
        pattern = "*@" + pattern
    local, _, domain = address.strip().lower().rpartition("@")
    want_local, _, want_domain = pattern.rpartition("@")
    if want_local not in ("*", local):
        return False
    if want_domain.startswith("*."):
        return domain.endswith(want_domain[1:])
    return domain == want_domain


@dataclass(frozen=True)
class HoldPolicy:
    """Every approval rule of a config. The sources are the edges' names (hotfolder, smtp …)."""

    everywhere: tuple[HoldRule, ...] = ()
    hotfolders: Mapping[str, tuple[HoldRule, ...]] = field(default_factory=dict)  # folder path → rules
    senders: tuple[tuple[str, tuple[HoldRule, ...]], ...] = ()  # SMTP sender pattern → rules
    home_country: str | None = "DE"  # numbers outside it are 'foreign'

    def rules_for(self, source: str, meta: Mapping[str, Any]) -> tuple[tuple[str, HoldRule], ...]:
        """The rules that apply to a job, each with where it was configured (for the reason)."""
        found = [("approval.hold", rule) for rule in self.everywhere]
        if source == "hotfolder" and meta.get("folder"):
            folder = str(Path(str(meta["folder"])))
            found += [("the hotfolder's hold rule", rule) for rule in self.hotfolders.get(folder, ())]
        if source == "smtp" and meta.get("sender"):
            for pattern, rules in self.senders:
                if sender_matches(pattern, str(meta["sender"])):
                    found += [(f"smtp.hold for {pattern}", rule) for rule in rules]
        return tuple(found)

    def reason_for(
        self, request: SendRequest, source: str, meta: Mapping[str, Any], journal: Journal
    ) -> str | None:
        """Why this job must wait for an approver, or None. Reads the documents when a page rule
        applies: call it from a worker thread."""
        pages: int | None = None
        for where, rule in self.rules_for(source, meta):
            if rule.kind == ALWAYS:
                return f"every job is held for approval ({where})"
            if rule.kind == MORE_THAN_PAGES:
                if pages is None:
                    pages = count_pages(request)
                if pages > rule.pages:
                    return f"{pages} pages, more than {rule.pages} ({where})"
                continue
            for address in (r.address for r in request.recipients):
                reason = self._recipient_reason(rule, address, request, journal)
                if reason:
                    return f"{reason} ({where})"
        return None

    def _recipient_reason(self, rule: HoldRule, address: str, request: SendRequest, journal: Journal) -> str | None:
        if rule.kind == FIRST_TIME and not journal.jobs.has_sent_to(address):
            return f"the first job to {address}"
        if rule.kind == FOREIGN and request.job_type.dials_numbers and self._foreign(address):
            return f"{address} is outside {self.home_country}"
        if rule.kind == NOT_IN_ADDRESS_BOOK and not journal.address_book.contains(address):
            return f"{address} is not in the address book"
        return None

    def _foreign(self, address: str) -> bool:
        if self.home_country is None:
            return False
        try:
            region = phonenumbers.region_code_for_number(phonenumbers.parse(address, None))
        except phonenumbers.NumberParseException:
            return True  # not a number we can place: let a person look at it
        return region != self.home_country

    @property
    def empty(self) -> bool:
        return not (self.everywhere or any(self.hotfolders.values()) or any(r for _, r in self.senders))


def count_pages(request: SendRequest) -> int:
    """Pages of the job's documents as faxbridge can count them (a text-only job: 1)."""
    total = 0
    for document in request.documents:
        try:
            total += inspect(document.path, document.filename).pages
        except (OSError, FaxbridgeError):
            total += 1  # the check before sending names the problem; here it is one page at least
    return total or 1

