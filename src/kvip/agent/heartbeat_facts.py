"""The agent's heartbeat publisher, with the facts it publishes beside its view (issue #20).

`kvip audit` needs the agents' kvip_node_selector (a node outside it advertises nothing, and the audit
must not expect it to), and `kvip.io/advertised-by` the BGP peers each node exports its VIPs to. Both are
read here, where the config and the dataplane meet, so that kube/ never imports dataplane/.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lightkube import AsyncClient

from kvip.config.agent import AgentConfig, Mode
from kvip.dataplane.base import Dataplane
from kvip.kube.heartbeat import HeartbeatPublisher


def heartbeat_publisher(client: AsyncClient, config: AgentConfig, backends: Iterable[Dataplane[Any]]
                        ) -> HeartbeatPublisher:
    bgp_peers = None
    if config.mode is Mode.BGP:  # only BGP mode has a speaker: another mode never loads BIRD's modules
        from kvip.dataplane.bird.speaker import BgpSpeaker

        speakers = [b for b in backends if isinstance(b, BgpSpeaker)]
        bgp_peers = speakers[0].exported_peers if speakers else None
    return HeartbeatPublisher(client, node_name=config.node_name, namespace=config.namespace,
                              mode=config.mode.value, period=config.resync_period,
                              node_selector=config.node_selector.text if config.node_selector is not None else "",
                              bgp_peers=bgp_peers)
