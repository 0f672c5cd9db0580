"""The lab's BGP fabric: BIRD on every node exporting kernel table 198, BIRD on the router learning
the ECMP set. This is how operators run kube-vip's routing-table mode (BIRD/FRR export the table);
the router's view is what clients of the VIP would actually follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kvip.lab.bird import BirdProcess, node_exporter_config, router_config
from kvip.lab.topology import Topology

ROUTER_ASN = 65000


def node_asn(index: int) -> int:
    return 65001 + index


@dataclass
class BgpFabric:
    topology: Topology
    workdir: Path
    table_id: int = 198
    router: BirdProcess | None = None
    nodes: dict[str, BirdProcess] = field(default_factory=dict)

    def start(self) -> None:
        topo = self.topology
        peers = [(str(n.address), node_asn(i)) for i, n in enumerate(topo.nodes)]
        try:
            self.router = BirdProcess(
                topo.router_netns, self.workdir / "bird-router",
                router_config(router_id=str(topo.router_address), asn=ROUTER_ASN, peers=peers),
            )
            self.router.start()
            for i, node in enumerate(topo.nodes):
                bird = BirdProcess(
                    node.netns, self.workdir / f"bird-{node.node_name}",
                    node_exporter_config(router_id=str(node.address), asn=node_asn(i),
                                         router_address=str(topo.router_address), router_asn=ROUTER_ASN,
                                         table_id=self.table_id),
                )
                bird.start()
                self.nodes[node.node_name] = bird
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for bird in self.nodes.values():
            bird.stop()
        self.nodes.clear()
        if self.router is not None:
            self.router.stop()
            self.router = None

    def agent_env(self, node_name: str) -> dict[str, str]:
        """Nothing to add: in this fabric the agents run routing-table mode with the lab's defaults."""
        return {}

    def established(self) -> set[str]:
        assert self.router is not None
        by_address = {str(n.address): n.node_name for n in self.topology.nodes}
        return {by_address.get(peer, peer) for peer in self.router.established_peers()}

    def ecmp(self) -> dict[str, frozenset[str]]:
        """prefix → the node names the router would forward it to."""
        assert self.router is not None
        by_address = {str(n.address): n.node_name for n in self.topology.nodes}
        return {
            prefix: frozenset(by_address.get(hop, hop) for hop in hops)
            for prefix, hops in self.router.routes("master4").items()
        }
