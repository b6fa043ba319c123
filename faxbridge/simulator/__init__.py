"""A FAX.de-compatible SOAP server for tests, the demo, and users testing their own integration for free.

It speaks like the provider's Delphi server (rpc/encoded, typed response parts, the bundled WSDL), checks
requests with the spec's result codes, lets tests inject transport faults, and records every call.

Modules: control (the Simulator object), server (HTTP and admin endpoints), soap (envelopes), service (the
operations and their state), settings, state (persistence), documents (file types, page counts), recipients,
faults, record, samples (sample TIFF/PDF documents), cli (``python -m faxbridge.simulator``).
"""

from .control import Simulator
from .faults import Fault, FaultKind
from .settings import AccountState

__all__ = ["AccountState", "Fault", "FaultKind", "Simulator"]
