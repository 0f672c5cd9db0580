"""API cost of leader election at scale: one LeaseElector holding N per-service Leases.

Counts the requests the stand-in receives (by verb) from one elector holding 1,000 `kubevip-<svc>`
leases with kube-vip's default timing (15 s lease, 10 s renew deadline, 2 s retry period), once
they are all held, over a steady-state window. Reports requests per second and, as the
machine-independent figure, the ratio to the naive design of one GET plus one PUT per lease per
retry period (2 * N / retry_period requests/s), which is what one client-go elector per service
would cost. Also reports the time to acquire all N, whether any lease was ever dropped, and the
oldest renewal age seen (how close a lease came to its renew-deadline fence).
Run: python3 bench/bench_election.py [--leases 1000] [--namespaces 1] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lightkube import AsyncClient, KubeConfig  # noqa: E402

from kvip.core.model import ServiceKey  # noqa: E402
from kvip.kube.election import LeaseElector, LeaseTiming, service_lease_key  # noqa: E402
from kvip.lab.apiserver import StandIn  # noqa: E402
from kvip.lab.objects import namespace  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leases", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    timing = LeaseTiming()  # kube-vip defaults
    api = StandIn(history_limit=100_000)
    await api.start()
    spaces = [f"ns-{i}" for i in range(args.namespaces)]
    for ns in spaces:
        api.create(namespace(ns))
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()))
    changes = 0

    def changed() -> None:
        nonlocal changes
        changes += 1

    elector = LeaseElector(client, identity="node-a", timing=timing, on_change=changed)
    keys = [service_lease_key(ServiceKey(spaces[i % len(spaces)], f"svc-{i}")) for i in range(args.leases)]
    elector.want(keys)
    task = asyncio.create_task(elector.run())
    started = time.monotonic()
    while len(elector.held()) < args.leases:
        if time.monotonic() - started > 120:
            raise SystemExit(f"only {len(elector.held())}/{args.leases} leases held after 120 s")
        await asyncio.sleep(0.05)
    acquire_all = time.monotonic() - started

    changes_before, before = changes, dict(api.request_counts)
    window_start, fewest_held = time.monotonic(), args.leases
    oldest_renewal = 0.0  # how close any lease came to its renew deadline (the fence)
    while time.monotonic() - window_start < args.seconds:
        fewest_held = min(fewest_held, len(elector.held()))
        now = time.monotonic()
        ages = [now - s.renewed_at for s in elector.status().values() if s.renewed_at is not None]
        oldest_renewal = max([oldest_renewal, *ages])
        await asyncio.sleep(0.1)
    window = time.monotonic() - window_start
    after = api.request_counts
    by_verb = {verb: after.get(verb, 0) - before.get(verb, 0) for verb in sorted(after)}
    by_verb = {verb: n for verb, n in by_verb.items() if n}
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await client.close()
    await api.stop()

    total = sum(by_verb.values())
    per_second = total / window
    naive = 2 * args.leases / timing.retry_period
    result = {
        "leases": args.leases, "namespaces": args.namespaces,
        "timing": {"lease_duration": timing.lease_duration, "renew_deadline": timing.renew_deadline,
                   "retry_period": timing.retry_period, "renew_after": timing.renew_after},
        "window_s": round(window, 1), "requests_by_verb": by_verb,
        "requests_per_s": round(per_second, 1), "naive_requests_per_s": naive,
        "ratio_to_naive": round(per_second / naive, 3),
        "acquire_all_s": round(acquire_all, 2), "fewest_held_in_window": fewest_held,
        "held_changes_in_window": changes - changes_before, "oldest_renewal_age_s": round(oldest_renewal, 2),
    }
    print(f"one elector, {args.leases} leases in {args.namespaces} namespace(s), kube-vip timing "
          f"{timing.lease_duration:g}/{timing.renew_deadline:g}/{timing.retry_period:g} s")
    print(f"{'':<34}{'value':>12}")
    print(f"{'acquire all (s)':<34}{acquire_all:>12.2f}")
    for verb, n in by_verb.items():
        print(f"{verb + ' requests/s':<34}{n / window:>12.1f}")
    print(f"{'total requests/s':<34}{per_second:>12.1f}")
    print(f"{'naive GET+PUT per lease per period':<34}{naive:>12.1f}")
    print(f"{'ratio to naive (lower is better)':<34}{per_second / naive:>12.3f}")
    print(f"{'fewest leases held in window':<34}{fewest_held:>12d}")
    print(f"{'oldest renewal age seen (s)':<34}{oldest_renewal:>12.2f}   (fence at {timing.renew_deadline:g})")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "election.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
