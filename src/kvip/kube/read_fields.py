"""Service and EndpointSlice lists and watch events decoded into only the fields `kvip.kube.convert` reads
(kvip issue #21).

A list of 10,000 Services and 10,000 slices decoded whole into dicts is a transient 48 MiB (150 MiB
with the managedFields a real API server sends); decoding only what kvip reads skips the rest while
parsing. The fields read keep their JSON as it came (Any), so the converters still refuse a wrong
type one field at a time; a body the envelope does not fit (metadata not an object) is decoded whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgspec


class _Meta(msgspec.Struct):
    name: Any = msgspec.UNSET
    namespace: Any = msgspec.UNSET
    uid: Any = msgspec.UNSET
    resourceVersion: Any = msgspec.UNSET
    annotations: Any = msgspec.UNSET
    labels: Any = msgspec.UNSET


class _Object(msgspec.Struct):  # a Service or an EndpointSlice
    metadata: _Meta | msgspec.UnsetType = msgspec.UNSET
    spec: Any = msgspec.UNSET
    status: Any = msgspec.UNSET
    endpoints: Any = msgspec.UNSET
    ports: Any = msgspec.UNSET


class _List(msgspec.Struct):
    metadata: Any = msgspec.UNSET
    items: list[_Object] | msgspec.UnsetType = msgspec.UNSET


class _Event(msgspec.Struct):
    type: Any = msgspec.UNSET
    object: _Object | msgspec.UnsetType = msgspec.UNSET


_LIST = msgspec.json.Decoder(_List)
_EVENT = msgspec.json.Decoder(_Event)


def _object(decoded: _Object) -> dict[str, Any]:
    """What msgspec.to_builtins gives, without its deep copy: the fields read keep the very dicts, lists
    and texts the parser made (decoded as Any, they are JSON builtins already). Spelled out field by
    field: a loop over the fields took three times as long as this (a watch event is on the hot path)."""
    obj: dict[str, Any] = {}
    if (value := decoded.spec) is not _UNSET:
        obj["spec"] = value
    if (value := decoded.status) is not _UNSET:
        obj["status"] = value
    if (value := decoded.endpoints) is not _UNSET:
        obj["endpoints"] = value
    if (value := decoded.ports) is not _UNSET:
        obj["ports"] = value
    if (meta := decoded.metadata) is not _UNSET:
        obj["metadata"] = kept = {}
        if (value := meta.name) is not _UNSET:
            kept["name"] = value
        if (value := meta.namespace) is not _UNSET:
            kept["namespace"] = value
        if (value := meta.uid) is not _UNSET:
            kept["uid"] = value
        if (value := meta.resourceVersion) is not _UNSET:
            kept["resourceVersion"] = value
        if (value := meta.annotations) is not _UNSET:
            kept["annotations"] = value
        if (value := meta.labels) is not _UNSET:
            kept["labels"] = value
    return obj


_UNSET = msgspec.UNSET


def _each(items: list[Any]) -> Iterator[dict[str, Any]]:
    # Each decoded object is let go once its turn has come, so that a page's objects are freed one by
    # one while the views are made (reusing their memory) rather than all at the end of the page.
    for index, item in enumerate(items):
        items[index] = None
        if item is not None:
            yield _object(item)


def decode_list(body: bytes | str) -> dict[str, Any]:
    """A Service or EndpointSlice list, as json.loads would give it minus the fields never read. Its
    `items` is an iterator: each object becomes a dict only when its turn comes, so the whole list is
    never held twice (as structs and as dicts)."""
    try:
        listed = _LIST.decode(body)
    except msgspec.MsgspecError:
        decoded: dict[str, Any] = json.loads(body)
        return decoded
    items: list[Any] = [] if listed.items is msgspec.UNSET else listed.items
    listed.items = msgspec.UNSET
    return {**msgspec.to_builtins(listed), "items": _each(items)}


def decode_event(line: bytes | str) -> dict[str, Any]:
    """One watch event, likewise; an ERROR event's Status is decoded whole."""
    try:
        event = _EVENT.decode(line)
    except msgspec.MsgspecError:
        return dict(json.loads(line))
    if event.type == "ERROR":
        return dict(json.loads(line))
    decoded: dict[str, Any] = {} if event.type is msgspec.UNSET else {"type": event.type}
    if event.object is not msgspec.UNSET:
        decoded["object"] = _object(event.object)
    return decoded
