"""An agent loads only the code its configuration uses (kvip issue #21: each module is resident memory).

`kvip agent` in table mode, without probes, control plane or advertised-by, built as the CLI builds it,
must not load the lab, the manifests, the status tools, BIRD, the DHCP clients, aiohttp or the optional parts;
each is imported where (and only when) it is used. Run in a fresh interpreter: this one has them all.
"""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
from lightkube import AsyncClient, KubeConfig
from kvip.cli.main import _command_of, build_parser
from kvip.agent.wiring import Agent
from kvip.config.agent import config_from_args

argv = ["agent", "--node-name", "n1"]
args = build_parser(_command_of(argv)).parse_args(argv)
config = config_from_args(args, {"kvip_advertised_by": "false"}, host_name="n1")
kubeconfig = {"clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
              "users": [{"name": "u", "user": {"token": "t"}}],
              "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}], "current-context": "x"}
Agent(config, client=AsyncClient(config=KubeConfig.from_dict(kubeconfig)), backends=[])
print(json.dumps(sorted(sys.modules)))
"""

NEVER_IN_TABLE_MODE = (
    "kvip.lab", "kvip.deploy", "kvip.cli.tools", "kvip.config.controller", "rich",
    "kvip.dataplane.bird", "kvip.dataplane.dhcp.client", "kvip.dataplane.dhcp.client6",
    "kvip.dataplane.dhcp.lease_client", "kvip.agent.control_plane", "kvip.agent.probes",
    "kvip.kube.advertised_by",
    "aiohttp",  # ~10 MiB, 99 modules: the agent's listeners are h11 on asyncio (the lab's stand-in uses aiohttp)
)


def test_table_mode_agent_loads_no_unused_code() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.splitlines()[-1])
    assert "kvip.agent.wiring" in loaded and "kvip.dataplane.dhcp.macvlan" in loaded  # (the probe works)
    unused = sorted(m for m in loaded if any(m == n or m.startswith(n + ".") for n in NEVER_IN_TABLE_MODE))
    assert not unused, f"modules a table-mode agent never uses, loaded anyway: {unused}"
