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


@dataclass
class StoredRow:
    """What an engine keeps for one (project, id) while applying pieces."""

    data: dict[str, Any]
    # Digest of the replace piece this row is based on; None while only merges arrived.
    base_digest: str | None = None
    # ``data`` already encoded as JSON, when that was needed anyway (saves a second encode).
    text: str | None = field(default=None, compare=False)


# A replace piece made ready to store (prepare_replace): the row as stored, the digest of the
# piece, the row's JSON when that is final (else None), and whether the server stamped
# ``created`` (the piece had none): under stored merges, the first merge's stamp then stays.
Replace = tuple[dict[str, Any], str, str | None, bool]


def prepare_replace(piece: Mapping[str, Any]) -> Replace:
    """A replace piece as stored data, its digest, its JSON when that is final, and whether
    ``created`` was stamped (see :data:`Replace`).

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
    return data, digest, text, stamped


def apply_piece(stored: StoredRow | None, piece: Mapping[str, Any]) -> StoredRow | None:
    """The stored row after ``piece`` lands on it, or None when nothing changes.

    Rules (docs/protocol.md, "Merge"): a merge piece deep-merges; a merge piece for an id not stored
    yet is stored as it is; a replace piece is applied by :func:`apply_replace`.
    """
    if is_merge(piece):
        if stored is None:
            data = strip_control(piece)
            data.setdefault("created", now_iso())
            return StoredRow(data=data, base_digest=None)
        return StoredRow(data=merge_into(stored.data, piece), base_digest=stored.base_digest)
    return apply_replace(stored, *prepare_replace(piece))


def apply_replace(stored: StoredRow | None, data: dict[str, Any], digest: str,
                  text: str | None, stamped: bool) -> StoredRow | None:
    """The stored row after a replace piece prepared as ``data``, ``digest``, ``text``,
    ``stamped`` (:func:`prepare_replace`) lands on it, or None when nothing changes.

    A replace piece replaces, except that when only merges were stored so far (feedback that
    overtook the span) it goes *underneath* them (``merge_under``). A replace piece identical
    to the one the row is based on is a retry and changes nothing, so retries leave the store
    as if the batch had been sent once.
    """
    if stored is None:
        return StoredRow(data=data, base_digest=digest, text=text)
    if stored.base_digest == digest:
        return None
    if stored.base_digest is None:
        merged = dict(stored.data)
        if not stamped:
            # The server stamped `created` on the first merge; the span's own value wins.
            merged.pop("created", None)
        data = merge_under(data, merged)
    else:
        data = merge_into(stored.data, data)
    data.setdefault("created", now_iso())
    return StoredRow(data=data, base_digest=digest)
