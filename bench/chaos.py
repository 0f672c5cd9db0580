"""Randomized soak (issue: chaos): seeded faults against real agents and BIRD, independent checker.

Run as root: python3 bench/chaos.py [--faults 1000] [--seed N] [--nodes 3] [--bound 10] [--egress]
[--dhcp] [--advertised-by-every N]. --egress: two Services SNAT their pods and nft tables get flushed; --dhcp
(with --election service): a DHCP Service, and its server restarted (kvip.lab.chaos_dataplane). Every Nth settled
step (default: each) also waits for kvip.io/advertised-by to name the nodes holding each route (0: never).
Prints one line per fault, then the table; writes bench/results/chaos.json. Replay a run with its seed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kvip.lab.chaos import soak, write_report  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--faults", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--bound", type=float, default=10.0, help="seconds a quiet system may take to converge")
    parser.add_argument("--election", choices=["none", "service"], default="none")
    parser.add_argument("--mode", choices=["table", "bgp"], default="table")
    parser.add_argument("--egress", action="store_true", help="egress Services and nftables flushes")
    parser.add_argument("--dhcp", action="store_true", help="a DHCP Service and DHCP server restarts")
    parser.add_argument("--advertised-by-every", dest="advertised_by", type=int, default=1, metavar="N",
                        help="check kvip.io/advertised-by after every Nth step (0: never)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    print(f"seed {seed}", flush=True)
    started = time.monotonic()

    def progress(n: int, kind: str, took: float | None) -> None:
        shown = "VIOLATION" if took is None else f"{took * 1000:.0f} ms"
        print(f"{n:5d} {kind:15s} {shown}", flush=True)

    with tempfile.TemporaryDirectory(prefix="kvip-chaos-") as tmp:
        report = asyncio.run(soak(Path(tmp), seed=seed, faults=args.faults, nodes=args.nodes, bound=args.bound,
                                  election=args.election, mode=args.mode, egress=args.egress,
                                  advertised_by=args.advertised_by, dhcp=args.dhcp, progress=progress))
    summary = write_report(report, RESULTS / f"chaos-{args.mode}-{args.election}.json")
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary, indent=2))
    return 0 if not summary["violations"] and not summary["foreign_routes_touched"] else 1


if __name__ == "__main__":
    sys.exit(main())
