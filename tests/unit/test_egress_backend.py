"""The egress backend's read-back and transactions, against canned `nft -j` output (no root needed)."""

from __future__ import annotations

import json
from ipaddress import ip_address
from typing import Any

from kvip.core.model import DesiredState, EgressRule, ServiceKey
from kvip.dataplane.egress import NftEgress, digest, render

RULE = EgressRule(ServiceKey("default", "web"), ip_address("10.96.0.10"), ip_address("10.244.1.5"))
CHAIN = {"family": "inet", "table": "kvip_egress", "name": "postrouting", "handle": 1, "type": "nat",
         "hook": "postrouting", "prio": 100, "policy": "accept"}
EXPR = [{"snat": {"family": "ip", "addr": "10.96.0.10"}}]


class FakeNft(NftEgress):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.listing: list[dict[str, Any]] | None = None  # None: no table
        self.scripts: list[str] = []

    async def _nft(self, *args: str, script: str | None = None) -> tuple[int, str, str]:
        if script is not None:
            self.scripts.append(script)
            return 0, "", ""
        if self.listing is None:
            return 1, "", "Error: No such file or directory"
        return 0, json.dumps({"nftables": [{"table": {"name": self.table}}, *self.listing]}), ""


def ours(handle: int, expr: list[dict[str, Any]] = EXPR) -> dict[str, Any]:
    comment = f"kvip {digest(render(RULE))} 10.96.0.10 10.244.1.5 default/web"
    return {"rule": {"chain": "postrouting", "handle": handle, "comment": comment, "expr": expr}}


async def converge(backend: FakeNft) -> None:
    want, have = backend.desired(DesiredState({}, egress=frozenset({RULE}))), await backend.observe()
    if want != have:
        await backend.apply(want - have, have - want)


async def test_our_rule_read_back_is_the_desired_item_and_nothing_is_written() -> None:
    backend = FakeNft()
    backend.listing = [{"chain": CHAIN}, ours(4)]
    await converge(backend)
    assert backend.scripts == []


async def test_a_foreign_rule_in_our_chain_and_a_rule_changed_behind_our_back_are_replaced() -> None:
    backend = FakeNft()
    backend.listing = [{"chain": CHAIN}, ours(4)]
    await converge(backend)  # first sight: these expressions are what we wrote
    backend.listing = [{"chain": CHAIN}, ours(4, [{"snat": {"family": "ip", "addr": "10.96.0.99"}}]),
                       {"rule": {"chain": "postrouting", "handle": 7, "expr": EXPR}}]
    await converge(backend)
    script = backend.scripts[-1]
    assert "delete rule inet kvip_egress postrouting handle 4" in script
    assert "delete rule inet kvip_egress postrouting handle 7" in script
    assert f"add rule inet kvip_egress postrouting {render(RULE)} comment" in script


async def test_a_chain_that_is_not_ours_as_declared_makes_the_table_be_rebuilt() -> None:
    backend = FakeNft(instance_name="blue")
    backend.listing = [{"chain": {**CHAIN, "policy": "drop"}}, ours(4)]
    await converge(backend)
    lines = backend.scripts[-1].splitlines()
    assert lines[:3] == ["add table inet kvip_egress_blue", "delete table inet kvip_egress_blue",
                         "add table inet kvip_egress_blue"]
    assert any(line.startswith("add rule inet kvip_egress_blue postrouting ip saddr 10.244.1.5") for line in lines)


async def test_the_last_rule_removed_takes_the_table_with_it() -> None:
    backend = FakeNft()
    backend.listing = [{"chain": CHAIN}, ours(4)]
    have = await backend.observe()
    await backend.apply(frozenset(), have)
    assert backend.scripts[-1].splitlines() == ["add table inet kvip_egress", "delete table inet kvip_egress"]


async def test_no_table_and_nothing_wanted_reads_as_empty() -> None:
    backend = FakeNft()
    assert await backend.observe() == frozenset()
