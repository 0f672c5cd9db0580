"""Classifies errors from the API client, so reflectors and electors react to kinds, not types."""

from __future__ import annotations

import enum

import httpx2 as httpx  # lightkube 1.x ships its own httpx fork
from lightkube import ApiError


class ApiFailure(enum.Enum):
    FORBIDDEN = "forbidden"  # 401/403: RBAC revoked or credentials rejected
    GONE = "gone"  # 410: resourceVersion too old, relist
    CONFLICT = "conflict"  # 409
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"  # transport errors, 5xx, 429, timeouts


def status_code(exc: BaseException) -> int | None:
    if isinstance(exc, ApiError):
        return exc.status.code
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code
    return None


def classify(exc: BaseException) -> ApiFailure:
    code = status_code(exc)
    if code in (401, 403):
        return ApiFailure.FORBIDDEN
    if code == 410:
        return ApiFailure.GONE
    if code == 409:
        return ApiFailure.CONFLICT
    if code == 404:
        return ApiFailure.NOT_FOUND
    return ApiFailure.UNAVAILABLE


def describe(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.status.code} {exc.status.reason}: {exc.status.message}"
    if isinstance(exc, httpx.HTTPStatusError):
        # A refused watch arrives as a bare HTTP error (its body is a stream nobody read): name the
        # permission from the request itself, so the log says what is missing.
        request = exc.request
        verb = "watch" if request.url.params.get("watch") in ("true", "1") else request.method.lower()
        resource = request.url.path.rstrip("/").split("/")[-1]
        return f"{exc.response.status_code} {exc.response.reason_phrase}: cannot {verb} resource \"{resource}\""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
