"""HTTP/1.1 for the agent's listeners: h11 on an asyncio protocol, behind the gate (kvip issues #17, #21).

A small server for a handful of fixed endpoints whose answers are computed at once (no handler awaits),
so a connection is a protocol object and no task: the request's head is parsed by h11 (which refuses
what is malformed, a head above MAX_HEAD, and smuggling-style framing: Content-Length with
Transfer-Encoding, two Content-Lengths), its body (at most MAX_BODY, else 413) read and dropped, then the
route's answer written. Keep-alive and pipelining as HTTP/1.1 says; a bad request is answered 400 and
the connection closed. Its deadlines and its place under the cap are the gate's (kvip.agent.http_gate).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import h11

from kvip.agent.http_gate import ConnectionGate, GatedConnection

log = logging.getLogger("kvip.agent.http")

MAX_HEAD = 8192  # a request's line and headers (as before, a line of 8190); probes and scrapers send < 1 KiB
MAX_BODY = 4096  # no endpoint reads a body; a bound on what is read and dropped
TEXT = "text/plain; charset=utf-8"
JSON = "application/json; charset=utf-8"
_REASONS = {100: b"Continue", 200: b"OK", 202: b"Accepted", 400: b"Bad Request", 404: b"Not Found",
            405: b"Method Not Allowed", 413: b"Request Entity Too Large", 500: b"Internal Server Error",
            503: b"Service Unavailable"}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str = TEXT


def text(body: str, status: int = 200) -> Answer:
    return Answer(status, body.encode())


def json_answer(doc: Any, status: int = 200) -> Answer:
    return Answer(status, json.dumps(doc).encode(), JSON)


@dataclass(frozen=True, slots=True)
class Route:
    method: str  # GET routes answer HEAD too
    handler: Callable[[], Answer]


App = Mapping[str, Route]  # path -> its one route


def route(app: App, method: str, target: bytes) -> tuple[Answer, tuple[tuple[bytes, bytes], ...]]:
    """The answer to `method target` and any extra headers (Allow on a 405)."""
    path = _path(target)
    found = app.get(path) if path is not None else None
    if found is None:
        return text("404: Not Found", 404), ()
    allowed = ("GET", "HEAD") if found.method == "GET" else (found.method,)
    if method not in allowed:
        return text("405: Method Not Allowed", 405), ((b"Allow", ",".join(allowed).encode()),)
    try:
        return found.handler(), ()
    except Exception:  # a bug behind one endpoint: that request fails, the listener goes on
        log.exception("HTTP %s %s failed", method, path)
        return text("500 Internal Server Error\n\nServer got itself in trouble", 500), ()


def _path(target: bytes) -> str | None:
    """The decoded path of an origin-form or absolute-form target; None for any other form."""
    raw = target.decode("latin-1")
    if not raw.startswith("/"):
        if not raw.lower().startswith(("http://", "https://")):
            return None
        raw = urlsplit(raw).path or "/"
    return unquote(raw.partition("?")[0].partition("#")[0], errors="replace")


def _date() -> bytes:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()).encode()


# A request we cannot parse gets this and the connection closes (h11 cannot frame an answer for it).
def _refusal(status: int) -> bytes:
    body = b"%d: %s" % (status, _REASONS[status])
    return (b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
            b"Date: %s\r\nConnection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), _date(), body))


class HttpConnection(GatedConnection):
    """One client connection: requests in order, each answered once its body is in."""

    def __init__(self, gate: ConnectionGate, app: App) -> None:
        super().__init__(gate)
        self.app = app
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.request: h11.Request | None = None
        self.body = 0  # bytes of the current request's body so far
        self.paused = False  # the client is not reading: neither are we
        self.closing = False

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # after a refusal or the last answer: dropped unread
        self.first_byte()
        self.h11.receive_data(data)
        self._process()
        self.gate.trim()  # read now: if this was a stalled request, it may be the one to go

    def eof_received(self) -> bool | None:
        if not self.closing:
            self.h11.receive_data(b"")
            self._process()
        return None  # the transport closes once what is written is sent

    def pause_writing(self) -> None:
        self.paused = True
        if isinstance(self.transport, asyncio.ReadTransport):
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if isinstance(self.transport, asyncio.ReadTransport) and not self.transport.is_closing():
            self.transport.resume_reading()
        if self.closing:
            return
        self._between_requests()
        self._process()

    def _process(self) -> None:
        """Every complete event in what was received, until more is needed (or the client stops reading)."""
        try:
            while not self.paused and not self.closing:
                try:
                    event = self.h11.next_event()
                except (h11.RemoteProtocolError, ValueError) as exc:  # ValueError: a 5,000-digit length
                    log.debug("bad request: %s", exc)
                    self._refuse(400)
                    return
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, h11.Request):
                    self._head(event)
                elif isinstance(event, h11.Data):
                    self.body += len(event.data)
                    if self.body > MAX_BODY:
                        self._refuse(413)
                elif isinstance(event, h11.EndOfMessage):
                    self._answer()
                elif isinstance(event, h11.ConnectionClosed):
                    self._close()
        except Exception:  # never a traceback per request out of the event loop: this connection goes
            log.exception("HTTP connection failed")
            self.drop()

    def _head(self, request: h11.Request) -> None:
        self.request, self.body = request, 0
        headers = dict(request.headers)  # names in lower case
        length = headers.get(b"content-length")
        # h11 bounds a head only while it is incomplete: one that came whole in one read is measured here.
        size = len(request.target) + sum(len(name) + len(value) + 4 for name, value in request.headers.raw_items())
        if (size > MAX_HEAD or request.http_version not in (b"1.1", b"1.0")
                or (length is not None and b"transfer-encoding" in headers)):
            self._refuse(400)  # too big; not HTTP/1; a body framed two ways (h11 takes the chunks, a proxy may not)
            return
        if length is not None and int(length) > MAX_BODY:  # h11 made it one number, digits only
            self._refuse(413)
            return
        self.receiving(self.gate.limits.body_timeout)
        if self.h11.they_are_waiting_for_100_continue:
            self._write(self.h11.send(h11.InformationalResponse(status_code=100, headers=[], reason=_REASONS[100])))

    def _answer(self) -> None:
        assert self.request is not None
        self.handling()
        method = self.request.method.decode("latin-1")
        answer, extra = route(self.app, method, self.request.target)
        headers = [(b"Content-Type", answer.content_type.encode()), *extra,
                   (b"Content-Length", b"%d" % len(answer.body)), (b"Date", _date())]
        out = [self.h11.send(h11.Response(status_code=answer.status, headers=headers,
                                          reason=_REASONS.get(answer.status, b"")))]
        if method != "HEAD" and answer.body:
            out.append(self.h11.send(h11.Data(data=answer.body)))
        out.append(self.h11.send(h11.EndOfMessage()))
        self.request = None
        self._write(b"".join(x for x in out if x))
        if self.h11.our_state is h11.MUST_CLOSE:
            self._close()
            return
        self.h11.start_next_cycle()
        self._between_requests()

    def _between_requests(self) -> None:
        if self.paused:  # the answer is not taken yet: it must be, within the idle time
            self.handling(self.gate.limits.idle_timeout)
        elif self.h11.trailing_data[0]:  # the next request has begun already (pipelined)
            self.receiving(self.gate.limits.header_timeout)
        else:
            self.idle()

    def _refuse(self, status: int) -> None:
        """Answer `status` and close. The client may still be sending: closing with its bytes unread would
        reset the connection and lose the answer, so ours is ended (half-close) and theirs read and dropped
        until it ends, within `body_timeout`; as a stalled request, the first to go for a newcomer."""
        self.request = None
        self._write(_refusal(status))
        if not (isinstance(self.transport, asyncio.WriteTransport) and self.transport.can_write_eof()):
            self._close()
            return
        self.closing = True
        self.transport.write_eof()  # after what is buffered
        self.receiving(self.gate.limits.body_timeout)

    def _close(self) -> None:
        """Close once what is written is sent; a client that does not take it is cut after the idle time."""
        self.closing = True
        self.handling(self.gate.limits.idle_timeout)
        if self.transport is not None:
            self.transport.close()

    def _write(self, data: bytes) -> None:
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.write(data)
