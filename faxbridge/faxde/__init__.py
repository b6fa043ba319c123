"""FAX.de, the one outward provider: the async client, its HTTP, result codes, the WSDL and wire formats.

Modules: client (the five SOAP operations on the event loop; zeep builds and parses envelopes),
http (aiohttp session, "maybe sent" classification), codes (every result code and what it means),
statusfile (the JobStatus CSV). Kept import-light: the simulator reads ``codes`` without zeep or aiohttp.
"""
