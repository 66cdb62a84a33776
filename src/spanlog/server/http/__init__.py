"""The collector's HTTP side: the aiohttp app and its routes (docs/protocol.md), who is
calling, request bodies, ingest, the viewer, and running it all (``spanlog serve``)."""
