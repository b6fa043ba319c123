"""Edges: each package translates one outside system into the core's plain values and back.

hotfolder (watched folders), smtp (mail in, reports out), inbox (received faxes to folders and mail),
printing (the CUPS queue), http (one aiohttp app: /healthz, /metrics, the console, /api/v1, callbacks).
Edges import the core; the core never imports an edge.
"""
