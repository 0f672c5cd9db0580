"""BIRD 2's control socket, spoken directly (no `birdc` process per command), and its route listing.

The protocol is line based: each reply line starts with a 4-digit code and '-' (more follows) or
' ' (last line); a line starting with a space continues the previous code. Codes 8xxx and 9xxx are
errors. `parse_routes` reads `show route ... all` text (from this client or from `birdc`) into
paths with their BGP attributes; kvip's BGP backend uses it to read back what it announces, and
the lab uses it to read a router's RIB.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass


class BirdControlError(Exception):
    """BIRD is not reachable on its control socket, or refused a command."""


@dataclass(frozen=True)
class RoutePath:
    prefix: str
    protocol: str
    kind: str  # unicast, blackhole, unreachable...
    primary: bool
    next_hop: str | None = None
    communities: frozenset[str] = frozenset()
    large_communities: frozenset[str] = frozenset()
    local_pref: int | None = None
    as_path: str = ""


def _pairs(text: str) -> frozenset[str]:
    return frozenset(":".join(p.strip() for p in m.split(",")) for m in re.findall(r"\(([^)]*)\)", text))


def parse_routes(lines: Iterable[str]) -> list[RoutePath]:
    """Paths from `show route [table X] [where ...] all` output, in order.

    Plain string splitting, no regex per line: the BGP backend reads its whole RIB every pass.
    """
    paths: list[RoutePath] = []
    current: dict[str, object] | None = None
    prefix: str | None = None
    for line in lines:
        if not line or line.startswith(("Table ", "BIRD ")):
            continue
        if line[0] == "\t":
            if current is None:
                continue
            text = line[1:]
            if text.startswith("via "):
                current.setdefault("next_hop", text.split()[1])
            elif text.startswith("BGP."):
                name, _, value = text[4:].partition(":")
                value = value.strip()
                if name == "next_hop":
                    current["next_hop"] = value.split()[0]
                elif name == "community":
                    current["communities"] = _pairs(value)
                elif name == "large_community":
                    current["large_communities"] = _pairs(value)
                elif name == "local_pref":
                    current["local_pref"] = int(value)
                elif name == "as_path":
                    current["as_path"] = value
            continue
        fields = line.split()
        if line[0] != " ":
            if "/" not in fields[0] or len(fields) < 3:
                continue
            prefix, fields = fields[0], fields[1:]
        if prefix is None or len(fields) < 2 or not fields[1].startswith("["):
            continue
        if current is not None:
            paths.append(RoutePath(**current))  # type: ignore[arg-type]
        current = {"prefix": prefix, "protocol": fields[1][1:].rstrip("]"), "kind": fields[0],
                   "primary": "*" in fields[2:]}
    if current is not None:
        paths.append(RoutePath(**current))  # type: ignore[arg-type]
    return paths


def reply_text(raw_lines: Iterable[str]) -> list[str]:
    """Strip the protocol's codes: what `birdc` would print."""
    out = []
    for line in raw_lines:
        if len(line) >= 5 and line[:4].isdigit() and line[4] in "- ":
            out.append(line[5:])
        elif line.startswith(" "):
            out.append(line[1:])
        else:
            out.append(line)
    return out


class BirdControl:
    """One connection to BIRD's control socket, reopened after any failure; commands serialized."""

    def __init__(self, socket_path: str, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def command(self, text: str) -> list[str]:
        """Run one command; its reply as text lines. Raises BirdControlError on errors."""
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._command(text)
            except BirdControlError:
                raise
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                await self.close()
                raise BirdControlError(f"BIRD control socket {self.socket_path}: {exc!r}") from exc

    async def _command(self, text: str) -> list[str]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_unix_connection(self.socket_path, limit=2**24)
            await self._read_reply()  # the greeting
        assert self._reader is not None and self._writer is not None
        self._writer.write(text.encode() + b"\n")
        await self._writer.drain()
        raw, code = await self._read_reply()
        if code >= 8000:
            raise BirdControlError(f"BIRD refused {text!r}: {' '.join(reply_text(raw)).strip()}")
        return reply_text(raw)

    async def _read_reply(self) -> tuple[list[str], int]:
        assert self._reader is not None
        lines: list[str] = []
        code = 0
        while True:
            raw = await self._reader.readline()
            if not raw:
                raise asyncio.IncompleteReadError(b"", None)
            line = raw.decode(errors="replace").rstrip("\n")
            lines.append(line)
            if len(line) >= 5 and line[:4].isdigit():
                code = int(line[:4])
                if line[4] == " " or len(line) == 4:
                    return lines, code
            elif len(line) == 4 and line.isdigit():
                return lines, int(line)

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):  # already gone: nothing to release
                await writer.wait_closed()
