"""`kvip status` and `kvip audit` print the DHCP, egress and drift rows literally: a Service name, a MAC or
a drift line carrying rich markup is shown as text, never read as markup (kvip issues #17 and #19)."""

from __future__ import annotations

from rich.console import Console

from kvip.cli.status_dataplane import print_dataplane, print_drift

HOSTILE = "x[/bold] [red]FAKE OK[/red]"


def rendered(doc: dict[str, object]) -> str:
    console = Console(width=400, record=True, color_system=None)
    print_dataplane(console, doc)
    return console.export_text()


def test_lease_and_egress_rows_and_drift_lines_are_printed_literally() -> None:
    doc = {
        "dhcp": [{"service": f"default/{HOSTILE}", "interface": "vip-1", "mac": "02:00:00:00:00:01",
                  "address": "10.250.200.11", "state": "bound", "expiresInSeconds": 97.4, "server": "10.250.0.1",
                  "renewals": 3, "lost": None}],
        "egress": [{"service": "default/web", "vip": "10.96.0.10", "pods": ["10.244.1.5", HOSTILE],
                    "table": "inet kvip_egress"}],
        "dataplaneDrift": [f"dhcp default/{HOSTILE}: led here, no lease"],
    }
    text = rendered(doc)
    assert f"default/{HOSTILE}" in text and "10.250.200.11" in text and "97s" in text
    assert f"10.244.1.5, {HOSTILE}" in text and "inet kvip_egress" in text
    assert f"dataplane drift: dhcp default/{HOSTILE}: led here, no lease" in text


def test_an_agent_without_the_sections_prints_nothing_more() -> None:
    assert rendered({"services": {}}) == ""
    console = Console(width=200, record=True, color_system=None)
    print_drift(console, [])
    assert console.export_text() == ""
