"""Input domains: an axis-aligned box over the flattened network input (row-major, no batch axis)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .errors import NnxformError

#: Used by function-preserving passes when the user gives no domain (stated in --help).
DEFAULT_LOW, DEFAULT_HIGH = -1.0, 1.0

#: The largest float32: networks compute in float32, where a larger input is infinite and every bound on it NaN.
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: What every box bound and data value must be, as error messages state it.
FLOAT32_RULE = f"a finite number within ±{FLOAT32_MAX:.6g} (float32's range, in which networks compute)"


def outside_float32(values: ArrayLike) -> int | None:
    """The flat index of the first value that is not ``FLOAT32_RULE`` (NaN, infinite or larger in magnitude), else
    None: the one check of network inputs (box bounds, data points), so that no analysis starts from an input that
    float32 cannot hold."""
    with np.errstate(over="ignore"):  # a wider float (float128) cast to float64 may overflow: refused just below
        flat = np.asarray(values, dtype=np.float64).ravel()
    bad = np.flatnonzero(~(np.abs(flat) <= FLOAT32_MAX))
    return int(bad[0]) if bad.size else None


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
        """Check the box matches a network input of ``size`` elements, within float32's range (``outside_float32``)."""
        if self.size != size:
            raise NnxformError(f"the domain has {self.size} elements but the network input has {size}")
        for values, side in ((self.lower, "lower"), (self.upper, "upper")):
            i = outside_float32(values)
            if i is not None:
                raise NnxformError(f"the box's {side} bound at input {i} is {values[i]:g}, not {FLOAT32_RULE}")
        return self

    def float32_points(self, xs: np.ndarray) -> np.ndarray:
        """The points as float32 (what onnxruntime runs), each coordinate moved inward by one ulp where rounding took it
        out of the box (where no float32 lies within the bounds, the nearest one stays)."""
        x = np.asarray(xs, np.float32)
        x = np.where(x < self.lower, np.nextafter(x, np.float32(np.inf)), x)
        return np.where(x > self.upper, np.nextafter(x, np.float32(-np.inf)), x).astype(np.float32)

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
