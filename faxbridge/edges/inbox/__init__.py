"""The inbox edge: received faxes as files (TIFF, PDF, JSON sidecar, received.csv) and as mail.

Modules: files (names, placement, the index), mail (a fax as a mail), edge (the scheduled collection
and the ``receive``/``release`` commands). The core (``faxbridge.inbound``) decides; this edge writes.
"""
