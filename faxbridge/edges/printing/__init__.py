"""Printing: a CUPS queue whose backend hands each print job to the daemon over a Unix socket.

Modules: wire (the hand-over's format, stdlib only), backend (the program CUPS runs for each job,
stdlib only), intake (a print job → letters), edge (the socket server and the spool), outcome
(failed/ with NAME.error.txt, report mails), cups (``faxbridge cups install/uninstall``). The README's "Printing"
section says how to set it up and share the queue.
"""

from __future__ import annotations

from typing import Any


def build(services: Any) -> Any:
    """The daemon's entry point: None when the config has no print section."""
    if services.config.print is None:
        return None
    # Imported here: the backend (a separate program CUPS runs) imports this package too, and
    # must start fast and need nothing but the standard library.
    from faxbridge.edges.printing.edge import PrintEdge

    return PrintEdge(services)
