"""Capped exponential backoff with full jitter (AWS style), as a small value object."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float = 0.2
    cap: float = 10.0
    factor: float = 2.0
    _attempt: int = field(default=0, init=False)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * self.factor**self._attempt)
        self._attempt += 1
        # Jitter in [ceiling/2, ceiling] keeps a herd of agents apart without ever waiting ~0.
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0
