"""Content negotiation as the real server does it: `Accept: application/json;as=<Kind>;g=meta.k8s.io;v=v1`
turns responses into PartialObjectMetadata(List) or Table, and `Accept-Encoding: gzip` compresses
responses of 128 KiB and more (never watch streams: those are written event by event)."""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from typing import Any

from kvip.lab.apiserver.kinds import Kind
from kvip.lab.apiserver.tables import META_V1, as_table, partial

TABLE, PARTIAL, PARTIAL_LIST = "Table", "PartialObjectMetadata", "PartialObjectMetadataList"
GZIP_THRESHOLD = 128 * 1024  # the real server's: smaller responses are not worth compressing
INCLUDE_OBJECT = ("Metadata", "None", "Object")


class NotAcceptable(Exception):
    """The negotiated form does not exist for this response (406, as the real server answers)."""


def negotiate(accept: str) -> str | None:
    """The transform the first servable Accept clause asks for, None for plain objects. Clauses we
    cannot serve (protobuf, Table in meta.k8s.io/v1beta1) are skipped; nothing servable → plain JSON."""
    for clause in accept.split(","):
        parts = [p.strip() for p in clause.split(";")]
        if parts[0].lower() not in ("application/json", "application/*", "*/*"):
            continue
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        target = params.get("as")
        if target is None:
            return None
        if target in (TABLE, PARTIAL, PARTIAL_LIST) and params.get("g") == "meta.k8s.io" and params.get("v") == "v1":
            return target
    return None


def wants_gzip(accept_encoding: str) -> bool:
    """Only a bare `gzip` token counts, as in the real server's negotiateContentEncoding."""
    return any(token.strip() == "gzip" for token in accept_encoding.split(","))


def compress(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=1)  # the real server's level: BestSpeed


def include_object(query: Mapping[str, str]) -> str:
    value = query.get("includeObject") or "Metadata"
    if value not in INCLUDE_OBJECT:
        raise ValueError(f'Unable to convert to Table as requested: includeObject: Unsupported value: "{value}": '
                         'supported values: "Metadata", "None", "Object"')
    return value


def shape_object(obj: dict[str, Any], kind: Kind, target: str | None, include: str) -> dict[str, Any]:
    """A single object (get, watch event) in the negotiated form."""
    if target is None:
        return obj
    if target == PARTIAL:
        return partial(obj)
    if target == TABLE:
        rv = (obj.get("metadata") or {}).get("resourceVersion", "")
        return as_table(kind, [obj], {"resourceVersion": rv}, include_object=include)
    raise NotAcceptable(f"you requested {PARTIAL_LIST}, but the requested object is not a list (*v1.{kind.kind})")


def shape_list(body: dict[str, Any], kind: Kind, target: str | None, include: str) -> dict[str, Any]:
    """A `<Kind>List` body in the negotiated form (list metadata kept: resourceVersion, continue, remainingItemCount)."""
    if target is None:
        return body
    if target == PARTIAL_LIST:
        return {"kind": PARTIAL_LIST, "apiVersion": META_V1, "metadata": body["metadata"],
                "items": [partial(o) for o in body["items"]]}
    if target == TABLE:
        return as_table(kind, body["items"], body["metadata"], include_object=include)
    raise NotAcceptable(f"you requested {PARTIAL}, but the requested object is a list (*v1.{kind.kind}List)")


def shape_event(obj: dict[str, Any], kind: Kind, target: str | None, include: str, *, first: bool) -> dict[str, Any]:
    """A watch event's object. The real server shapes bookmarks like any object; a failed transform
    (PartialObjectMetadataList of one object) sends the object as it is; a Table's column
    definitions come with the first event only."""
    if target == PARTIAL:
        return partial(obj)
    if target == TABLE:
        rv = (obj.get("metadata") or {}).get("resourceVersion", "")
        return as_table(kind, [obj], {"resourceVersion": rv}, include_object=include, headers=first)
    return obj
