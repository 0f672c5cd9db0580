"""`kvip status` prints whatever the cluster holds literally (kvip issue #17, row 13).

A problem message quotes a tenant's annotation; `x[/bold]` in it used to reach rich as markup and
crash the command (MarkupError), and `[red]` would have restyled the output.
"""

from __future__ import annotations

import argparse
import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from kvip.cli.tools import run_status

HOSTILE = "x[/bold] [red]FAKE OK[/red] [link=http://evil]y[/link] \\[z]"


def status_doc() -> dict[str, object]:
    return {
        "node": f"node-{HOSTILE}", "mode": "table", "synced": True, "passes": 3,
        "sources": [{"resource": "services", "state": "synced", "objects": 1, "relists": 1,
                     "lastError": f"403: {HOSTILE}"}],
        "services": {f"default/{HOSTILE}": {"vips": ["10.96.0.10"], "advertised": False, "reason": HOSTILE,
                                            "localEndpoints": [HOSTILE], "lastKnownGoodEndpoint": None}},
        "backends": {"bgp": {"sessions": {HOSTILE: "Established"}, "speakerRunning": True, "speakerRestarts": 0,
                             "announced": 1, "runDir": "/run/kvip/bgp"}},
        "problems": [{"service": f"default/{HOSTILE}", "reason": "InvalidVIP",
                      "message": f"annotation kube-vip.io/loadbalancerIPs: '{HOSTILE}' is not an IP address"}],
        "lastPass": {"diffs": [{"failed": {HOSTILE: "EPERM"}}]},
    }


@pytest.fixture
def agent() -> Iterator[str]:
    body = json.dumps(status_doc()).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_markup_in_cluster_values_is_printed_literally(agent: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_status(argparse.Namespace(address=agent, output="table")) == 0
    out = capsys.readouterr().out
    assert "x[/bold]" in out and "[red]FAKE OK[/red]" in out and "\\[z]" in out
    assert "InvalidVIP" in out
