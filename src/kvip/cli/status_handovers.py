"""`kvip status` lines for kvip.io/preferred-nodes handovers (kvip issue #20): the agent's counts, its pending
requests and the last handover of each Lease. Values come from the agent, so they are printed escaped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def print_handovers(console: Console, doc: Mapping[str, Any]) -> None:
    """Nothing when the node never asked for nor handed over a Lease (or the agent has no such section)."""
    section = doc.get("handovers") or {}
    counts = {k: section.get(k, 0) for k in ("asked", "received", "refused", "granted")}
    pending, last = section.get("pending") or [], section.get("last") or []
    if not any(counts.values()) and not pending:
        return
    console.print("handovers: " + ", ".join(f"{k} {escape(str(v))}" for k, v in counts.items()))
    if pending or last:
        table = Table("lease", "handover", "to", "seconds")
        for row in pending:
            table.add_row(escape(str(row.get("lease"))), "pending (ours)", "-", escape(str(row.get("waitingSeconds"))))
        for row in last:
            table.add_row(escape(str(row.get("lease"))), escape(str(row.get("outcome"))),
                          escape(str(row.get("to") or "-")), f"{escape(str(row.get('secondsAgo')))} ago")
        console.print(table)
