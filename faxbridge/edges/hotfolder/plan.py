"""Which files of a folder go together into one job, and which must still wait.

A *unit* is what one job takes from the folder: its documents and the sidecars that describe
them. ``plan_units`` is a pure function of what the watcher knows, so the rules have a table test:

* a document takes the sidecars with its stem (``Invoice.pdf`` ← ``Invoice.yaml``, ``Invoice.csv``);
  stems compare as Unicode NFC, since macOS saves "ü" decomposed and most other programs composed;
* a YAML sidecar with ``files:`` bundles those documents (and its own namesake document, first);
  a document listed there is never sent on its own;
* a unit waits until every file in it is complete and quiet (settle time), so a sidecar written
  shortly after its document still counts;
* a sidecar without a document waits for it; one that cannot be read and has no document
  becomes a unit of its own, so that the error reaches failed/ instead of hiding.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Set
from dataclasses import dataclass

from faxbridge.edges.hotfolder.names import is_sidecar, is_yaml, stem

# A bundle's file list as read from its YAML; None: the YAML cannot be read (the error is
# reported when the unit is processed).
BundleFiles = tuple[str, ...] | None


@dataclass(frozen=True)
class Unit:
    key: str  # the decisive file: the main document, or a bundle sidecar without one
    documents: tuple[str, ...]
    sidecars: tuple[str, ...]
    problem: str = ""  # set when the files cannot make a job (reported to failed/)

    @property
    def names(self) -> tuple[str, ...]:
        return self.documents + self.sidecars

    @property
    def stem(self) -> str:
        return stem(self.key)


def plan_units(
    ready: Set[str], waiting: Set[str], bundles: Mapping[str, BundleFiles]
) -> list[Unit]:
    """Units whose files are all ready. ``ready``: complete and settled; ``waiting``: present but
    still being written or settling; ``bundles``: for each ready YAML sidecar, its ``files``
    (empty: none given)."""
    present = ready | waiting
    units: list[Unit] = []
    taken: set[str] = set()
    # Names by stem, built once: looking each document's namesakes up in all names instead made a
    # burst of n files cost n² (20 000 files renamed in at once: minutes, issue 7).
    documents_by_stem: dict[str, list[str]] = {}
    sidecars_by_stem: dict[str, list[str]] = {}
    present_by_form: dict[str, str] = {}
    for name in present:
        index = sidecars_by_stem if is_sidecar(name) else documents_by_stem
        index.setdefault(_same(stem(name)), []).append(name)
        present_by_form.setdefault(_same(name), name)

    def documents_named(name_stem: str) -> list[str]:
        return sorted(documents_by_stem.get(_same(name_stem), ()))

    def sidecars_named(name_stem: str) -> list[str]:
        return sorted(sidecars_by_stem.get(_same(name_stem), ()))

    def add(unit: Unit) -> None:
        if all(n in ready and n not in taken for n in unit.names):
            units.append(unit)
        taken.update(unit.names)  # ready or not: no file goes into two units

    # Bundles first: their files must not leave on their own.
    for sidecar in sorted(n for n in ready if is_yaml(n)):
        files = bundles.get(sidecar, ())
        if sidecar in taken or files == ():
            continue
        namesakes = documents_named(stem(sidecar))
        sidecars = sidecars_named(stem(sidecar))
        if files is None:
            if not namesakes:  # unreadable and no document to wait for: report it
                add(Unit(sidecar, (), tuple(sidecars)))
            continue
        # A listed name means the file of that name as it is on disk, however it is composed.
        listed = [present_by_form.get(_same(f), f) for f in files]
        documents = list(dict.fromkeys(namesakes + listed))
        missing = [f for f in documents if f not in present]
        if missing:
            taken.update(f for f in documents if f in present)
            continue  # wait for the missing ones (sidecar written before its documents)
        owned_elsewhere = [f for f in documents if f in taken]
        problem = ""
        if owned_elsewhere:
            problem = f"{', '.join(owned_elsewhere)} belongs to another bundle already"
        elif len(documents) > 3:
            problem = f"{len(documents)} documents; FAX.de takes at most 3 per job (SendFile1..3)"
        key = namesakes[0] if namesakes else sidecar
        add(Unit(key, tuple(documents), tuple(sidecars), problem))

    for document in sorted(n for n in ready if not is_sidecar(n)):
        if document in taken:
            continue
        sidecars = sidecars_named(stem(document))
        twins = documents_named(stem(document))
        if sidecars and len(twins) > 1:
            # Invoice.pdf and Invoice.tif next to Invoice.yaml: which one does it describe?
            add(Unit(twins[0], tuple(twins), tuple(sidecars),
                     f"{' and '.join(twins)} share the sidecar {sidecars[0]}; rename one, or list"
                     " both under files: to send them together"))
            continue
        add(Unit(document, (document,), tuple(sidecars)))
    return units


def _same(name: str) -> str:
    """The form names are compared in: NFC (file systems keep whatever bytes they were given)."""
    return unicodedata.normalize("NFC", name)

