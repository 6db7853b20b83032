"""Input domains: an axis-aligned box over the flattened network input (row-major, no batch axis)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import NnxformError

#: Used by function-preserving passes when the user gives no domain (stated in --help).
DEFAULT_LOW, DEFAULT_HIGH = -1.0, 1.0


@dataclass(frozen=True)
class Box:
    """Per-element bounds ``lower <= x <= upper`` of the flattened input."""

    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        lo = np.asarray(self.lower, dtype=np.float64).ravel()
        hi = np.asarray(self.upper, dtype=np.float64).ravel()
        if lo.shape != hi.shape:
            raise NnxformError(f"box bounds have {lo.size} lower and {hi.size} upper values; give the same number")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise NnxformError("box bounds must be finite numbers")
        bad = np.flatnonzero(lo > hi)
        if bad.size:
            i = int(bad[0])
            raise NnxformError(f"empty box: lower > upper at input {i} ({lo[i]:g} > {hi[i]:g}); swap or fix the bounds")
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)

    @property
    def size(self) -> int:
        return int(self.lower.size)

    @classmethod
    def default(cls, size: int) -> "Box":
        return cls(np.full(size, DEFAULT_LOW), np.full(size, DEFAULT_HIGH))

    def fit(self, size: int) -> "Box":
        """Check the box matches a network input of ``size`` elements."""
        if self.size != size:
            raise NnxformError(f"the domain has {self.size} elements but the network input has {size}")
        return self

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` uniform points, shape ``(n, size)``."""
        return rng.uniform(self.lower, self.upper, size=(n, self.size))

    def corners(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Up to ``n`` distinct vertices (all of them when there are few, random ones otherwise)."""
        d = self.size
        if d <= 20 and 2**d <= n:
            bits = (np.arange(2**d)[:, None] >> np.arange(d)) & 1
        else:
            bits = rng.integers(0, 2, size=(n, d))
            bits[0], bits[-1] = 0, 1
        return np.where(bits == 1, self.upper, self.lower)

    def points(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform samples plus box corners plus the centre: what sampled checks evaluate."""
        centre = 0.5 * (self.lower + self.upper)
        return np.vstack([self.sample(n, rng), self.corners(min(n, 256), rng), centre[None]])
