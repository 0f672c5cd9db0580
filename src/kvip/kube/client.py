"""Builds the one lightkube AsyncClient an agent uses: kubeconfig file or in-cluster service account.

Owns nothing else; callers decide what to do with API errors (see `kvip.kube.errors`).
"""

from __future__ import annotations

import os

import httpx2 as httpx  # lightkube 1.x ships its own httpx fork
from lightkube import AsyncClient, KubeConfig


class KubeClientError(Exception):
    """No usable cluster credentials were found."""


def load_kubeconfig(path: str | None) -> KubeConfig:
    """`path`, else $KUBECONFIG, else the in-cluster service account."""
    candidate = path or os.environ.get("KUBECONFIG")
    try:
        if candidate:
            return KubeConfig.from_file(candidate)
        return KubeConfig.from_service_account()
    except Exception as exc:  # lightkube raises several unrelated types here
        where = candidate or "in-cluster service account"
        raise KubeClientError(f"cannot load Kubernetes credentials from {where}: {exc}") from exc


def make_client(kubeconfig: str | None, *, request_timeout: float = 10.0) -> AsyncClient:
    config = load_kubeconfig(kubeconfig)
    # Requests time out so a hung API shows up as an error (a 30,000-object list still fits in the
    # read budget); lightkube lifts the read timeout for watches, which the reflector bounds by its
    # resync deadline instead.
    timeout = httpx.Timeout(request_timeout, read=max(30.0, request_timeout))
    return AsyncClient(config=config, timeout=timeout, field_manager="kvip", trust_env=False)
