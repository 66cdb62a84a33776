"""How an incoming piece lands on a stored row: merges, replaces and retries
(docs/protocol.md, "Merge"), built on the SDK's own merge rules (``spanlog._merge``).

Both engines apply pieces with :func:`apply_piece`, so a row ends the same on either."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spanlog._merge import CONTROL_FIELDS, is_merge, merge_into, merge_under, strip_control
from spanlog.server.rows._json import dumps_bytes
from spanlog.server.rows._model import now_iso


@dataclass(slots=True)
class Replace:
    """A replace piece made ready to store: the row, its digest, its JSON when final."""

    data: dict[str, Any]
    digest: str
    text: str | None
    # Whether the server stamped ``created`` (the piece had none): under stored merges, the
    # first merge's stamp then stays.
    stamped: bool = False


@dataclass
class StoredRow:
    """What an engine keeps for one (project, id) while applying pieces."""

    data: dict[str, Any]
    # Digest of the replace piece this row is based on; None while only merges arrived.
    base_digest: str | None = None
    # ``data`` already encoded as JSON, when that was needed anyway (saves a second encode).
    text: str | None = field(default=None, compare=False)


def prepare_replace(piece: Mapping[str, Any]) -> Replace:
    """A replace piece as stored data, its digest, and its JSON when that is final.

    Pure, so an engine may call it before its write transaction (off the writer thread).
    """
    # strip_control, done as one C-level copy: this runs for every incoming row.
    data = dict(piece)
    for control in CONTROL_FIELDS:
        data.pop(control, None)
    encoded = dumps_bytes(data)
    # A retry re-sends the same piece, so the same bytes: the digest of our own encoding of
    # it recognises the retry without a second, key-sorted encoding.
    digest = hashlib.blake2b(encoded, digest_size=16).hexdigest()
    text: str | None = encoded.decode()
    stamped = data.get("created") is None
    if stamped:
        data["created"] = now_iso()
        text = None
    if data.get("span_id") is None and data.get("root_span_id") is None \
            and data.get("origin") is None:
        # A plain event (no span ids, not a comment): a trace of one span, as the seed
        # platform's API treats it, so it lists, opens and filters like any other trace.
        data["span_id"] = data["root_span_id"] = data["id"]
        text = None
    return Replace(data, digest, text, stamped)


def apply_piece(stored: StoredRow | None, piece: Mapping[str, Any],
                replace: Replace | None = None) -> StoredRow | None:
    """The stored row after ``piece`` lands on it, or None when nothing changes.

    Rules (docs/protocol.md, "Merge"): a merge piece deep-merges; a merge piece for an id not stored
    yet is stored as it is; a replace piece replaces, except that when only merges were stored
    so far (feedback that overtook the span) it goes *underneath* them (``merge_under``). A
    replace piece identical to the one the row is based on is a retry and changes nothing,
    so retries leave the store as if the batch had been sent once. ``replace`` is
    ``prepare_replace(piece)`` when the caller computed it already.
    """
    if is_merge(piece):
        if stored is None:
            data = strip_control(piece)
            data.setdefault("created", now_iso())
            return StoredRow(data=data, base_digest=None)
        return StoredRow(data=merge_into(stored.data, piece), base_digest=stored.base_digest)
    ready = replace or prepare_replace(piece)
    base, digest = ready.data, ready.digest
    if stored is None:
        return StoredRow(data=base, base_digest=digest, text=ready.text)
    if stored.base_digest == digest:
        return None
    if stored.base_digest is None:
        merged = dict(stored.data)
        if not ready.stamped:
            # The server stamped `created` on the first merge; the span's own value wins.
            merged.pop("created", None)
        data = merge_under(base, merged)
    else:
        data = merge_into(stored.data, base)
    data.setdefault("created", now_iso())
    return StoredRow(data=data, base_digest=digest)
