"""Oversized batches: the braintrust SDK's "logs3 overflow" upload path, served locally.

When one batch is larger than ``logs3_payload_max_bytes`` (in practice: one row bigger than
the limit), the braintrust SDK asks ``POST /logs3/overflow`` for a signed upload URL, PUTs the
payload there, then posts ``/logs3`` with ``{"rows": {"type": "logs3_overflow", "key": ...}}``.
The seed platform hands out object-storage URLs; a spanlog collector hands out its own
``PUT /logs3/overflow/{key}`` and keeps the upload in a temporary file until it is
ingested (or expires). The key is a 256-bit secret: like a signed URL, holding it is the
permission, so the PUT carries no API key.

Uploads live on the collector that issued the key: behind a load balancer, route
``/logs3/overflow*`` and the following ``/logs3`` to the same collector (sticky sessions).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from aiohttp import web

from spanlog.server.http._body import BadBody, BodyReader, BodyTooLarge, decoder_for, inflate
from spanlog.server.store._errors import Unavailable

UPLOAD_TTL_SECONDS = 3600.0
# An overflow upload may be larger than a normal request, but not unboundedly so.
DEFAULT_MAX_UPLOAD_BYTES = 256 * 1024 * 1024
# Reservations pending at once per organization (docs/collector.md, "What it guarantees"):
# a client that asks for upload URLs and never uses them holds disk until they expire.
MAX_PENDING_UPLOADS = 16
MAX_PENDING_UPLOAD_BYTES = 4 * DEFAULT_MAX_UPLOAD_BYTES


@dataclass
class _Upload:
    org_id: str
    size: int
    path: str
    created: float = field(default_factory=time.monotonic)
    done: bool = False


class OverflowUploads:
    """The pending uploads of one collector, in a private temporary directory."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> None:
        self.max_bytes = max_bytes
        self._uploads: dict[str, _Upload] = {}
        self._dir: str | None = None

    def _expire(self) -> None:
        now = time.monotonic()
        for key, upload in list(self._uploads.items()):
            if now - upload.created > UPLOAD_TTL_SECONDS:
                self.discard(key)

    def create(self, org_id: str, size: int) -> str:
        """Reserve an upload of ``size`` bytes for ``org_id``; return its secret key."""
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise BadBody("body.size_bytes: must be a positive integer")
        if size > self.max_bytes:
            raise BodyTooLarge(f"body.size_bytes: {size} bytes is over the overflow upload "
                               f"limit of {self.max_bytes} bytes")
        self._expire()
        pending = [u for u in self._uploads.values() if u.org_id == org_id]
        reserved = sum(u.size for u in pending)
        if len(pending) >= MAX_PENDING_UPLOADS or \
                reserved + size > max(MAX_PENDING_UPLOAD_BYTES, self.max_bytes):
            raise Unavailable(f"overflow uploads: {len(pending)} pending for this organization "
                              f"({reserved} bytes reserved), the limit is "
                              f"{MAX_PENDING_UPLOADS} uploads and "
                              f"{MAX_PENDING_UPLOAD_BYTES} bytes; use or let expire the "
                              "ones reserved", retry_after=60.0)
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="spanlog-overflow-")
        key = secrets.token_urlsafe(32)
        self._uploads[key] = _Upload(org_id, size, os.path.join(self._dir, key))
        return key

    async def receive(self, key: str, request: web.Request) -> None:
        """Store the body of ``PUT /logs3/overflow/{key}`` (at most the reserved size)."""
        upload = self._uploads.get(key)
        if upload is None or upload.done:
            raise web.HTTPNotFound(text="overflow upload key unknown, used or expired")
        received = 0
        encoding, decoder = decoder_for(request)
        body = BodyReader(request)  # the same body deadline as every other request
        with open(upload.path, "wb") as out:
            while True:
                chunk = await body.read()
                if not chunk:
                    break
                if decoder is not None:
                    chunk = inflate(decoder, encoding, chunk, upload.size - received)
                received += len(chunk)
                if received > upload.size:
                    self.discard(key)
                    raise BodyTooLarge(f"overflow upload: more than the {upload.size} bytes "
                                       "reserved for it")
                out.write(chunk)
        upload.done = True

    def take(self, key: str, org_id: str) -> bytes:
        """The uploaded payload for ``key`` (uploaded by ``org_id``), removed from storage."""
        upload = self._uploads.get(key)
        if upload is None or not upload.done or upload.org_id != org_id:
            raise BadBody(f"rows.key: no completed overflow upload {key[:8]}... for this key")
        try:
            with open(upload.path, "rb") as data:
                return data.read()
        finally:
            self.discard(key)

    def discard(self, key: str) -> None:
        """Forget an upload and delete its file."""
        upload = self._uploads.pop(key, None)
        if upload is not None:
            try:
                os.unlink(upload.path)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        """Delete every pending upload."""
        self._uploads.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
