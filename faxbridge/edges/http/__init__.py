"""The HTTP edge: one aiohttp application for status (/healthz, /metrics), FAX.de's status callback,
the web console and the JSON API (``console``). Modules: app (the server), status, callback, console/.
"""
