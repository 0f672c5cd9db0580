"""`kvip status` and `kvip audit` tables for DHCP leases, egress rules and their drift (kvip issue #19).
Every value comes from the cluster or the agent, so it is printed as literal text (`rich.markup.escape`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _e(value: Any) -> str:
    return "-" if value is None or value == "" else escape(str(value))


def _seconds(value: Any) -> str:
    """A timer from the document; "-" when absent (no lease, or an agent older than the field)."""
    return f"{value:.0f}s" if isinstance(value, int | float) else "-"


def print_dataplane(console: Console, doc: Mapping[str, Any]) -> None:
    """The agent document's `dhcp`, `egress` and `dataplaneDrift` sections; nothing when all are empty
    (an agent older than these sections has none)."""
    leases = doc.get("dhcp") or []
    if leases:
        table = Table("service", "DHCP interface", "MAC", "address", "state", "renews in", "expires in", "server",
                      "renewals", "lost")
        for row in leases:
            table.add_row(_e(row.get("service")), _e(row.get("interface")), _e(row.get("mac")), _e(row.get("address")),
                          _e(row.get("state")), _seconds(row.get("renewsInSeconds")),
                          _seconds(row.get("expiresInSeconds")), _e(row.get("server")), _e(row.get("renewals")),
                          _e(row.get("lost")))
        console.print(table)
    rules = doc.get("egress") or []
    if rules:
        table = Table("service", "egress VIP", "pods SNATed", "nftables table")
        for row in rules:
            table.add_row(_e(row.get("service")), _e(row.get("vip")), escape(", ".join(row.get("pods") or ())) or "-",
                          _e(row.get("table")))
        console.print(table)
    print_drift(console, doc.get("dataplaneDrift") or ())


def print_drift(console: Console, lines: Sequence[str]) -> None:
    for line in lines:
        console.print(f"[red]dataplane drift:[/red] {escape(str(line))}")
