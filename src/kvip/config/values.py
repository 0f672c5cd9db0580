"""Value parsers for configuration text: each returns a typed value or raises ValueError, nothing else.

Every option of the table (`kvip.config.options`) goes through one of these, for its environment
variable and its flag alike, so `ValueError` is the one failure the loader has to turn into a line
naming the variable. They take any `str` (hypothesis checks it): digits are ASCII only (Python's
`int()` and `str.isdigit()` also accept other scripts' digits and superscripts), numbers are
length-capped before conversion, and durations must be finite. Imports nothing of kvip: it sits
below both the agent and the BGP configuration.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from collections.abc import Callable
from typing import TypeVar

E = TypeVar("E", bound=enum.Enum)

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INT = re.compile(r"[+-]?[0-9]{1,20}")
_DURATION = re.compile(r"([0-9]{1,15}(?:\.[0-9]{1,9})?)\s*(ms|s|m|h)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Beyond this a deadline overflows datetime arithmetic; nobody means a 30-year lease.
MAX_SECONDS = 1e9


def text(value: str) -> str:
    """Free text, taken as it is."""
    return value


def parse_bool(value: str) -> bool:
    """Go's strconv.ParseBool, which is what kube-vip accepts."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean (use true or false)")


def parse_int(value: str) -> int:
    """A decimal integer of ASCII digits (surrounding blanks allowed, as int() allows)."""
    stripped = value.strip()
    if not _INT.fullmatch(stripped):
        raise ValueError(f"{value!r} is not an integer")
    return int(stripped)


def int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = parse_int(value)
        if not low <= number <= high:
            raise ValueError(f"{number} is outside {low}..{high}")
        return number

    parse.__name__ = f"int_range({low}, {high})"
    return parse


def milliseconds_as_seconds(low: int, high: int) -> Callable[[str], float]:
    """Whole milliseconds in low..high (kube-vip's unit for vip_arpRate), as seconds."""
    in_range = int_range(low, high)

    def parse(value: str) -> float:
        return in_range(value) / 1000.0

    parse.__name__ = f"milliseconds_as_seconds({low}, {high})"
    return parse


def parse_duration(value: str) -> float:
    """Seconds from '30', '30s', '1.5s', '500ms', '2m', '1h'; finite and at most MAX_SECONDS."""
    match = _DURATION.fullmatch(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 500ms, 2m)")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise ValueError(f"{value!r} is too long a duration")
    return seconds


def positive_seconds(value: str) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"{value!r}: must be positive")
    return seconds


def ip_address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def choice(kind: type[E]) -> Callable[[str], E]:
    """One of an enum's values, e.g. `table` for Mode.TABLE."""
    names = ", ".join(str(member.value) for member in kind)

    def parse(value: str) -> E:
        for member in kind:
            if member.value == value.strip().lower():
                return member
        raise ValueError(f"{value!r} is not one of {names}")

    parse.__name__ = f"choice({kind.__name__})"
    return parse


def api_server_address(value: str) -> str:
    """An API server address as kube-vip's `kubernetes_addr` takes it: `host:port` (https is meant) or an
    http(s) URL with a host and no path."""
    from urllib.parse import urlsplit

    candidate = value.strip()
    if not candidate or len(candidate) > 256 or not candidate.isascii() or any(c.isspace() for c in candidate):
        raise ValueError(f"{value!r} is not an API server address (host:port or https://host:port)")
    try:
        parts = urlsplit(candidate if "://" in candidate else f"https://{candidate}")
        port = parts.port
    except ValueError:
        raise ValueError(f"{value!r} is not an API server address (host:port or https://host:port)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{value!r} is not an API server address (host:port or https://host:port)")
    del port
    return candidate
