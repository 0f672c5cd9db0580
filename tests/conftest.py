"""Session rules shared by every test: root-marked tests may never be skipped in CI."""

from __future__ import annotations

import os

import pytest

_skipped_root: list[str] = []
_ran_root: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "root" not in report.keywords:
        return
    if report.skipped:
        _skipped_root.append(report.nodeid)
    elif report.when == "call":
        _ran_root.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("KVIP_REQUIRE_ROOT") != "1":
        return
    if _skipped_root:
        print(f"\nKVIP_REQUIRE_ROOT: {len(_skipped_root)} root test(s) skipped: {_skipped_root[:5]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif not _ran_root and session.testscollected:
        print("\nKVIP_REQUIRE_ROOT: no root test ran at all")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (network namespaces); CI runs these with KVIP_REQUIRE_ROOT=1")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
