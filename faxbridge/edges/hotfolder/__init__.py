"""Hotfolders: documents dropped into a folder are sent through FAX.de, reports land beside them.

Modules: edge (lifecycle, periodic jobs), watching (file events from watchdog: inotify, polling,
native observers), watcher (one folder: when a file is complete, which files form a job), plan
(grouping documents and sidecars, pure), names (what a file name means, pure), instructions
(sidecar YAML, CSV lists, file-name numbers → SendRequest), files (claiming and moving files),
outcome (sent/, failed/, NAME.error.txt, NAME.status.csv).
The folder conventions are documented in README.md ("Hotfolders").
"""

from faxbridge.edges.hotfolder.edge import HotfolderEdge, build

__all__ = ["HotfolderEdge", "build"]
