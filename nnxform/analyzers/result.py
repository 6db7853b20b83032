"""The analyzers' common currency: per-step bounds while analysing, ``Bounds`` when done."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..domain import Box
from .network import Activation, Linear, CompiledNetwork, Pool
from .rounding import cast_box, magnitude

#: Slack added to every affine step's bounds for the analysis's own float64 round-off and the LP/MILP
#: solvers' tolerances: ``REL·(|l| + |u|) + ABS``. The float network's rounding is not in it: that is
#: bounded rigorously, step by step, as noise (``rounding``).
MARGIN_REL, MARGIN_ABS = 1e-6, 1e-7

ACTIVE, INACTIVE, UNSTABLE = 1, -1, 0

Progress = Callable[[int, int], None]


def widen(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds widened by the float32 margin (see ``MARGIN_REL``)."""
    m = MARGIN_REL * (np.abs(lo) + np.abs(hi)) + MARGIN_ABS
    return lo - m, hi + m


def relu_status(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per neuron: ACTIVE when ``lo >= 0``, INACTIVE when ``hi <= 0``, else UNSTABLE."""
    return np.where(lo >= 0, ACTIVE, np.where(hi <= 0, INACTIVE, UNSTABLE)).astype(np.int8)


@dataclass
class State:
    """Lower/upper bounds of every step of the *float* network (None until computed), and the bound on
    each Linear step's rounding noise (``rounding``); with ``real``, of the real-valued network instead."""

    net: CompiledNetwork
    box: Box
    lo: list[np.ndarray | None]
    hi: list[np.ndarray | None]
    noise: list[np.ndarray | None] = field(default_factory=list)
    real: bool = False

    @classmethod
    def start(cls, net: CompiledNetwork, box: Box, real: bool = False) -> "State":
        """Bounds of the input: the box, widened to what casting its points to the network's type can give."""
        n = len(net.steps)
        s = cls(net, box, [None] * n, [None] * n, [None] * n, real)
        s.lo[0], s.hi[0] = (box.lower.copy(), box.upper.copy()) if real else cast_box(box.lower, box.upper, net.dtype)
        return s

    def copy(self) -> "State":
        return State(self.net, self.box, [None if a is None else a.copy() for a in self.lo],
                     [None if a is None else a.copy() for a in self.hi], list(self.noise), self.real)

    def linear_noise(self, i: int) -> np.ndarray:
        """Bound on the rounding of Linear step ``i`` from its sources' current bounds (kept: the smallest seen)."""
        s = self.net.steps[i]
        assert isinstance(s, Linear)
        if self.real:
            return np.zeros(s.size)
        m = s.float_rounding.noise([magnitude(self.lo[k], self.hi[k]) for k in s.sources], self.net.unit_roundoff)
        if self.noise[i] is not None:
            m = np.minimum(m, self.noise[i])
        self.noise[i] = m
        return m

    def set_linear(self, i: int, lo: np.ndarray, hi: np.ndarray) -> None:
        """Record bounds of Linear step ``i`` given those of its exact value over the float sources: widened by
        its rounding noise and the analysis slack, intersected with any already known."""
        m = self.linear_noise(i)
        lo, hi = widen(lo - m, hi + m)
        if self.lo[i] is not None:
            lo, hi = np.maximum(lo, self.lo[i]), np.minimum(hi, self.hi[i])
        self.lo[i], self.hi[i] = lo, hi

    def assume_signs(self, i: int, signs: np.ndarray) -> None:
        """Restrict Linear step ``i`` to signs proven elsewhere (ACTIVE: ``>= 0``, INACTIVE: ``<= 0``; others as they are).

        Call before the analysis fills the step: its bounds are then intersected with these.
        """
        lo, hi = np.where(signs == ACTIVE, 0.0, -np.inf), np.where(signs == INACTIVE, 0.0, np.inf)
        if self.lo[i] is not None:
            lo, hi = np.maximum(lo, self.lo[i]), np.minimum(hi, self.hi[i])
        self.lo[i], self.hi[i] = lo, hi

    def propagate_nonlinear(self, i: int) -> None:
        """Bounds of nonlinear step ``i`` from its (known) source bounds; monotone functions are exact."""
        s = self.net.steps[i]
        lo, hi = self.lo[s.source], self.hi[s.source]
        if isinstance(s, Pool):
            self.lo[i], self.hi[i] = _window_max(lo, s.windows), _window_max(hi, s.windows)
        else:
            kind = s.kind  # monotone non-decreasing: the ends map to the ends
            err = 0.0 if self.real else kind.margin(lo, hi)
            self.lo[i], self.hi[i] = kind.function(lo) - err, kind.function(hi) + err


def _window_max(v: np.ndarray, windows: np.ndarray) -> np.ndarray:
    return np.where(windows >= 0, v[windows], -np.inf).max(axis=1)


@dataclass
class LayerBounds:
    """Bounds of one nonlinear node's input (flat, row-major) and, for a piecewise-linear activation (ReLU,
    LeakyRelu), each neuron's status."""

    node: str
    op: str
    lower: np.ndarray
    upper: np.ndarray
    piecewise: bool = False  # a piecewise-linear activation: its neurons are active, inactive or unstable

    @property
    def status(self) -> np.ndarray:
        return relu_status(self.lower, self.upper)

    def counts(self) -> dict[str, int]:
        st = self.status
        return {"active": int((st == ACTIVE).sum()), "inactive": int((st == INACTIVE).sum()),
                "unstable": int((st == UNSTABLE).sum())}


@dataclass
class Bounds:
    """Sound bounds of a network over a box: every nonlinear node's input and the output."""

    method: str
    seconds: float
    exact: bool
    layers: list[LayerBounds]
    output_lower: np.ndarray
    output_upper: np.ndarray
    state: State = field(repr=False)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def relu_layers(self) -> list[LayerBounds]:
        """The layers of piecewise-linear activations (ReLU, LeakyRelu): those with a sign status."""
        return [layer for layer in self.layers if layer.piecewise]

    def stable_counts(self) -> dict[str, int]:
        """Total stably active / stably inactive / unstable neurons of the piecewise-linear layers."""
        total = {"active": 0, "inactive": 0, "unstable": 0}
        for layer in self.relu_layers:
            for k, v in layer.counts().items():
                total[k] += v
        return total

    @property
    def width_sum(self) -> float:
        return float(np.sum(self.output_upper - self.output_lower))

    def to_json(self) -> dict[str, Any]:
        """The ``nnxform bounds --json`` document (every neuron's bounds, flat lists, row-major)."""
        return {
            "method": self.method,
            "seconds": self.seconds,
            "exact": self.exact,
            "output": {"lower": self.output_lower.tolist(), "upper": self.output_upper.tolist()},
            "relu_layers": [
                {"node": l.node, "op": l.op, "lower": l.lower.tolist(), "upper": l.upper.tolist(), **l.counts()}
                for l in self.relu_layers
            ],
            "other_layers": [
                {"node": l.node, "op": l.op, "lower": l.lower.tolist(), "upper": l.upper.tolist()}
                for l in self.layers if not l.piecewise
            ],
            "stable": self.stable_counts(),
            **self.details,
        }


def finish(state: State, method: str, seconds: float, exact: bool = False, **details: Any) -> Bounds:
    """Package a fully bounded State as Bounds."""
    net = state.net
    layers = []
    for i in net.nonlinear:
        s = net.steps[i]
        piecewise = isinstance(s, Activation) and s.slopes is not None
        layers.append(LayerBounds(s.node, s.op, state.lo[s.source], state.hi[s.source], piecewise))
    return Bounds(method, seconds, exact, layers, state.lo[net.output], state.hi[net.output], state, dict(details))
