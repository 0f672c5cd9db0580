"""Balance of per-service leaders: N LeaseElectors contending for the same L per-service Leases.

Runs N in-process electors (one per node) against the in-process API stand-in, all wanting the same
L `kubevip-<svc>` leases from the same instant (a burst of new Services, the worst case), waits until
every lease is held, and reports how many each node holds: max/min, and the time to elect all. Runs
twice in one process: with the old rule (a hashed delay alone, kept below as the baseline) and with
the load-aware `spread_delay`; then both once more with a single elector (what the ramp that keeps a
node from taking a whole burst before it sees the others costs a node that is really alone). Timing is
kube-vip's defaults unless --retry is given (the lease duration and renew deadline scale with it).
Then failover, twice per takeover rule (at once, the rule before; and load-aware `takeover_delay`):
node-00 stops without releasing (a crash: its leases expire) and with releasing (a clean stop); we report
the survivors' leases per node once all are held again, and the seconds from the stop until then.
Run: python3 bench/bench_leader_balance.py [--nodes 10] [--leases 1000] [--retry 2.0]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lightkube import AsyncClient, KubeConfig  # noqa: E402

from kvip.core.election_rules import LeaseKey, spread_delay, takeover_delay  # noqa: E402
from kvip.core.model import ServiceKey  # noqa: E402
from kvip.kube import election  # noqa: E402
from kvip.kube.election import LeaseElector, LeaseTiming, service_lease_key  # noqa: E402
from kvip.lab.apiserver import serving  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def hashed_delay_only(identity: str, key: LeaseKey, timing: LeaseTiming, **_load: Any) -> float:
    """The rule before issue #20: a delay in [0, 2 retry periods) hashed from (node, lease), blind to load."""
    digest = hashlib.blake2b(f"{identity}/{key}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**32 * 2 * timing.retry_period


async def elect(rule: Callable[..., float], *, nodes: int, leases: int, timing: LeaseTiming,
                deadline: float = 300.0) -> tuple[Counter[str], float]:
    """Leases held per node once all `leases` are held, and the seconds that took."""
    election.spread_delay = rule  # type: ignore[attr-defined]  # the one call site reads the module global
    try:
        async with serving(namespaces=("default",)) as api:
            clients = [AsyncClient(config=KubeConfig.from_dict(api.kubeconfig())) for _ in range(nodes)]
            electors = [LeaseElector(c, identity=f"node-{i:02d}", timing=timing, on_change=lambda: None)
                        for i, c in enumerate(clients)]
            keys = [service_lease_key(ServiceKey("default", f"svc-{i:04d}")) for i in range(leases)]
            for elector in electors:
                elector.want(keys)
            tasks = [asyncio.create_task(e.run()) for e in electors]
            started = time.monotonic()
            try:
                while sum(len(e.held()) for e in electors) < leases:
                    if time.monotonic() - started > deadline:
                        raise SystemExit(f"not all {leases} leases held after {deadline:g} s")
                    await asyncio.sleep(0.05)
                took = time.monotonic() - started
                counts = Counter({e.identity: len(e.held()) for e in electors})
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                for client in clients:
                    await client.close()
    finally:
        election.spread_delay = spread_delay  # type: ignore[attr-defined]
    return counts, took


def no_takeover_delay(timing: LeaseTiming, **_load: Any) -> float:
    """The takeover rule before: a released or expired lease is taken at once, blind to load."""
    return 0.0


async def failover(rule: Callable[..., float], *, nodes: int, leases: int, timing: LeaseTiming, clean: bool,
                   deadline: float = 300.0) -> tuple[Counter[str], Counter[str], float]:
    """Elect `leases` over `nodes` (load-aware), then stop node-00, releasing (`clean`) or not (a crash),
    and wait until every lease is held again under takeover `rule`. Returns the leases per node
    before, after (survivors only) and the seconds from the stop until all were held again."""
    election.takeover_delay = rule  # type: ignore[attr-defined]  # the one call site reads the module global
    try:
        async with serving(namespaces=("default",)) as api:
            clients = [AsyncClient(config=KubeConfig.from_dict(api.kubeconfig())) for _ in range(nodes)]
            electors = [LeaseElector(c, identity=f"node-{i:02d}", timing=timing, on_change=lambda: None)
                        for i, c in enumerate(clients)]
            keys = [service_lease_key(ServiceKey("default", f"svc-{i:04d}")) for i in range(leases)]
            for elector in electors:
                elector.want(keys)
            tasks = [asyncio.create_task(e.run()) for e in electors]

            async def all_held(among: list[LeaseElector]) -> None:
                started = time.monotonic()
                while sum(len(e.held()) for e in among) < leases:
                    if time.monotonic() - started > deadline:
                        raise SystemExit(f"not all {leases} leases held after {deadline:g} s")
                    await asyncio.sleep(0.02)
            try:
                await all_held(electors)
                await asyncio.sleep(3 * timing.retry_period)  # settled: every elector has renewed
                before = Counter({e.identity: len(e.held()) for e in electors})
                tasks[0].cancel()
                await asyncio.gather(tasks[0], return_exceptions=True)
                stopped = time.monotonic()
                if clean:
                    await electors[0].release_all()
                await all_held(electors[1:])
                took = time.monotonic() - stopped
                after = Counter({e.identity: len(e.held()) for e in electors[1:]})
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                for client in clients:
                    await client.close()
    finally:
        election.takeover_delay = takeover_delay  # type: ignore[attr-defined]
    return before, after, took


def summary(counts: Counter[str], nodes: int, took: float) -> dict[str, Any]:
    per_node = [counts.get(f"node-{i:02d}", 0) for i in range(nodes)]
    low, high = min(per_node), max(per_node)
    return {"per_node": per_node, "min": low, "max": high,
            "max_over_min": round(high / low, 2) if low else None, "elect_all_s": round(took, 2)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--leases", type=int, default=1000)
    parser.add_argument("--retry", type=float, default=2.0, help="retry period, s (duration 7.5x, deadline 5x)")
    args = parser.parse_args()
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # requests cut off by the electors' cancel
    timing = LeaseTiming(lease_duration=7.5 * args.retry, renew_deadline=5 * args.retry, retry_period=args.retry)
    result: dict[str, Any] = {"nodes": args.nodes, "leases": args.leases, "retry_period": args.retry}
    print(f"{args.leases} per-service leases created at once, retry period {args.retry:g} s")
    print(f"{'electors':<10}{'rule':<16}{'min':>6}{'max':>6}{'max/min':>9}{'elect all (s)':>15}   per node")
    for nodes in (args.nodes, 1):
        for name, rule in (("hashed_delay", hashed_delay_only), ("load_aware", spread_delay)):
            counts, took = await elect(rule, nodes=nodes, leases=args.leases, timing=timing)
            row = result[name if nodes > 1 else f"{name}_alone"] = summary(counts, nodes, took)
            ratio = "inf" if row["max_over_min"] is None else f"{row['max_over_min']:.2f}"
            shown = row["per_node"] if nodes > 1 else ""
            print(f"{nodes:<10}{name:<16}{row['min']:>6}{row['max']:>6}{ratio:>9}{row['elect_all_s']:>15.1f}   {shown}")
    print(f"\nthen node-00 stops holding ~{args.leases // args.nodes}; lease duration {timing.lease_duration:g} s")
    print(f"{'stop':<10}{'takeover':<16}{'min':>6}{'max':>6}{'max/min':>9}{'all held (s)':>15}   survivors")
    for clean in (False, True):
        stop = "release" if clean else "crash"
        for name, rule in (("at_once", no_takeover_delay), ("load_aware", takeover_delay)):
            before, after, took = await failover(rule, nodes=args.nodes, leases=args.leases, timing=timing,
                                                 clean=clean)
            row = summary(after, args.nodes, took)
            row = {**row, "per_node": row["per_node"][1:], "min": min(row["per_node"][1:])}
            row["max_over_min"] = round(row["max"] / row["min"], 2) if row["min"] else None
            row["before"] = summary(before, args.nodes, 0.0)["per_node"]
            row["all_held_again_s"] = row.pop("elect_all_s")
            result[f"failover_{stop}_{name}"] = row
            ratio = "inf" if row["max_over_min"] is None else f"{row['max_over_min']:.2f}"
            print(f"{stop:<10}{name:<16}{row['min']:>6}{row['max']:>6}{ratio:>9}{took:>15.2f}   {row['per_node']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "leader_balance.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
