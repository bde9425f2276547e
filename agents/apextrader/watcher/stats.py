"""Rolling mean/standard deviation over the last N values in O(1) per update, for z-scores."""

from __future__ import annotations

import math
from collections import deque


class RollingStats:
    def __init__(self, size: int) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self._sum = 0.0
        self._sumsq = 0.0

    def push(self, x: float) -> None:
        if len(self.values) == self.values.maxlen:
            old = self.values[0]
            self._sum -= old
            self._sumsq -= old * old
        self.values.append(x)
        self._sum += x
        self._sumsq += x * x

    def __len__(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return self._sum / len(self.values) if self.values else 0.0

    @property
    def std(self) -> float:
        n = len(self.values)
        if n < 2:
            return 0.0
        var = (self._sumsq - self._sum * self._sum / n) / (n - 1)
        return math.sqrt(max(var, 0.0))

    def z(self, x: float, min_count: int = 30) -> float | None:
        """z-score of `x` against the window (None while the window is too short or flat)."""
        if len(self.values) < min_count:
            return None
        sd = self.std
        if sd <= 1e-12 * max(1.0, abs(self.mean)):
            return None
        return (x - self.mean) / sd
