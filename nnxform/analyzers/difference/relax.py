"""The difference through one two-piece piecewise-linear activation ``f(x) = (p if x < 0 else q)·x`` (the table's
``slopes``; ReLU is (0, 1), LeakyRelu (α, 1)): per neuron, the bounds of ``Δa = f(z_B + Δz) − f(z_B)`` from the two
neurons' states and the best of three linear relaxations in ``(Δz, z_B)`` (``LayerDelta``, ``candidate_lines``).

Since ``f(x) = p·x + (q − p)·relu(x)``, ``Δa = p·Δz + (q − p)·Δr`` with ``Δr = relu(z_A) − relu(z_B)``: every bound
of ``Δr`` (the lines, the constants, the interval per state) gives one of ``Δa`` by this map, exact in the
slopes, and with ``(p, q) = (0, 1)`` it is the identity. The relaxation chosen for ``Δr`` (the smallest largest
gap) is the one for ``Δa``, whose gaps are ``q − p`` times as large. A float network's activation may miss ``f``
by its table ``margin`` (LeakyRelu's rounded ``α·x``; ReLU's is 0): ``Δa`` is widened by both networks', ``a_B``
by its own.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ...operators import activations


#: A linear bound ``p·Δz + q·z_B + r`` per neuron.
Line = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class LayerDelta:
    """Bounds at one affine layer: per-network pre-activations (tightened), ``Δz``; relaxations after it."""

    lo_a: np.ndarray
    hi_a: np.ndarray
    lo_b: np.ndarray
    hi_b: np.ndarray
    lo_d: np.ndarray
    hi_d: np.ndarray
    noise_a: np.ndarray  # bound on each float network's rounding of this layer (``rounding``)
    noise_b: np.ndarray
    kind: activations.Elementwise = activations.RELU  # the activation after the layer, in both networks
    rounded: tuple[bool, bool] = (False, False)  # whether each network's activation is the float one (its margin)
    relu_b: activations.Relaxation | None = None  # a_B >= gl z_B + hl, a_B <= gu z_B + hu
    lower: Line | None = None  # Δa >= p Δz + q z_B + r
    upper: Line | None = None  # Δa <= p Δz + q z_B + r
    const: tuple[np.ndarray, np.ndarray] | None = None  # constant bounds of Δa
    input_coef: np.ndarray | None = None  # output layer, symbolic: [lower; −upper] rows' coefficients on x

    def boxes(self, part: slice) -> "LayerDelta":
        """The bounds and relaxations of the boxes ``part`` of a batch (views)."""
        def cut(x: Any) -> Any:
            if isinstance(x, tuple) and x and isinstance(x[0], np.ndarray):
                return tuple(t[part] for t in x)
            return x[part] if isinstance(x, np.ndarray) else x
        return LayerDelta(*(cut(getattr(self, f.name)) for f in fields(self)))

    def tighten(self) -> None:
        """Intersect ``Δz`` with ``[l_A − u_B, u_A − l_B]``, each network's bounds with ``z_B + Δz`` (in place)."""
        lo_d, hi_d = np.maximum(self.lo_d, self.lo_a - self.hi_b), np.minimum(self.hi_d, self.hi_a - self.lo_b)
        lo_a, hi_a = np.maximum(self.lo_a, self.lo_b + lo_d), np.minimum(self.hi_a, self.hi_b + hi_d)
        lo_b, hi_b = np.maximum(self.lo_b, lo_a - hi_d), np.minimum(self.hi_b, hi_a - lo_d)
        ok = (lo_d <= hi_d) & (lo_a <= hi_a) & (lo_b <= hi_b)  # float noise on a point: keep the old bounds
        new = {"lo_d": lo_d, "hi_d": hi_d, "lo_a": lo_a, "hi_a": hi_a, "lo_b": lo_b, "hi_b": hi_b}
        for name, value in new.items():
            setattr(self, name, np.where(ok, value, getattr(self, name)))

    @property
    def slopes(self) -> tuple[float, float]:
        """``(p, q)``: the activation's slopes below and above 0."""
        return self.kind.slopes  # type: ignore[return-value]  # a paired layer's activation has slopes

    @property
    def margins(self) -> tuple[np.ndarray | float, np.ndarray | float]:
        """How far each float network's activation may miss ``f`` on this layer's bounds (0 for a real one)."""
        return tuple(self.kind.margin(lo, hi) if rounded else 0.0  # type: ignore[return-value]
                     for rounded, lo, hi in zip(self.rounded, (self.lo_a, self.lo_b), (self.hi_a, self.hi_b)))

    def outputs(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of one network's (``"a"`` or ``"b"``) activation outputs: ``f`` is monotone, plus its margin."""
        lo, hi = getattr(self, f"lo_{side}"), getattr(self, f"hi_{side}")
        err = self.margins[side == "b"]
        return self.kind.function(lo) - err, self.kind.function(hi) + err

    def of_relu(self, line: Line, sign: float) -> Line:
        """The bound of ``Δa`` (lower: ``sign`` −1, upper: +1) from the same bound of ``Δr = relu(z_A) − relu(z_B)``:
        ``p·Δz + (q − p)·line``, widened by both networks' activation margins."""
        (p, q), (ea, eb) = self.slopes, self.margins
        if (p, q) == (0.0, 1.0):  # ReLU: Δa = Δr
            return line[0], line[1], line[2] + sign * (ea + eb)
        return p + (q - p) * line[0], (q - p) * line[1], (q - p) * line[2] + sign * (ea + eb)

    def of_relu_const(self, c: np.ndarray, d: np.ndarray, sign: float) -> np.ndarray:
        """A constant bound of ``Δa`` from one of ``Δr`` (``c``) and the same of ``Δz`` (``d``): ``p·d + (q − p)·c``,
        widened by the activation margins."""
        p = self.slopes[0]
        bound = self.of_relu((0.0, 0.0, c), sign)[2]
        return bound if p == 0 else bound + p * d

    @property
    def unsettled(self) -> np.ndarray:
        """Neurons where ``Δa`` is not an exact linear function (one of the two activations is unstable)."""
        stable_a = (self.lo_a >= 0) | (self.hi_a <= 0)
        stable_b = (self.lo_b >= 0) | (self.hi_b <= 0)
        return ~(stable_a & stable_b)

    def relax(self) -> None:
        """Choose the relaxations of ``a_B`` and ``Δa`` for the activations after this layer (those of ``Δr``, mapped:
        see the module doc)."""
        eb = self.margins[1]
        gl, hl, gu, hu = self.kind.relax(self.lo_b, self.hi_b)
        self.relu_b = (gl, hl - eb, gu, hu + eb)
        la, ua, lb, ub, dl, du = self.lo_a, self.hi_a, self.lo_b, self.hi_b, self.lo_d, self.hi_d
        c_lo, c_hi = self.relu_const()
        lowers, uppers = candidate_lines(la, ua, lb, ub, dl, du, c_lo, c_hi)
        m = self.unsettled  # elsewhere S is exact
        at = [x[m] for x in (la, ua, lb, ub, dl, du)]
        gaps = np.stack([[max_gap(tuple(t[m] for t in lo), tuple(t[m] for t in up), *at) for up in uppers]
                         for lo in lowers])
        n_up = len(uppers)
        best = np.zeros(la.shape, int)
        best[m] = np.argmin(gaps.reshape(len(lowers) * n_up, -1), axis=0)  # first minimum: S wins ties
        i_lo, i_up = best // n_up, best % n_up
        self.lower = self.of_relu(tuple(np.choose(i_lo, [lo[t] for lo in lowers]) for t in range(3)), -1.0)
        self.upper = self.of_relu(tuple(np.choose(i_up, [up[t] for up in uppers]) for t in range(3)), 1.0)
        self.const = self.of_relu_const(c_lo, dl, -1.0), self.of_relu_const(c_hi, du, 1.0)

    def relu_const(self) -> tuple[np.ndarray, np.ndarray]:
        """Constant bounds of ``Δr = relu(z_A) − relu(z_B)``: C of the module doc (``Δr`` lies between 0 and ``Δz``,
        and between the ReLUs of the ends)."""
        la, ua, lb, ub, dl, du = self.lo_a, self.hi_a, self.lo_b, self.hi_b, self.lo_d, self.hi_d
        c_lo = np.maximum(np.minimum(dl, 0.0), np.maximum(la, 0.0) - np.maximum(ub, 0.0))
        c_hi = np.minimum(np.maximum(du, 0.0), np.maximum(ua, 0.0) - np.maximum(lb, 0.0))
        return np.minimum(c_lo, c_hi), c_hi

    def interval(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Interval bounds of ``Δa`` and ``a_B`` after the activation: ``Δr`` exact per state, else the constants."""
        la, ua, lb, ub = self.lo_a, self.hi_a, self.lo_b, self.hi_b
        act_a, act_b, off_a, off_b = la >= 0, lb >= 0, ua <= 0, ub <= 0
        c_lo, c_hi = self.relu_const()
        lo = np.select([act_a & act_b, off_a & off_b, act_a & off_b, off_a & act_b], [self.lo_d, 0.0, la, -ub], c_lo)
        hi = np.select([act_a & act_b, off_a & off_b, act_a & off_b, off_a & act_b], [self.hi_d, 0.0, ua, -lb], c_hi)
        lo, hi = np.maximum(lo, c_lo), np.minimum(hi, c_hi)
        hi = np.maximum(lo, hi)
        return (self.of_relu_const(lo, self.lo_d, -1.0), self.of_relu_const(hi, self.hi_d, 1.0), *self.outputs("b"))


def candidate_lines(la, ua, lb, ub, dl, du, c_lo, c_hi) -> tuple[list[Line], list[Line]]:
    """Sound lower and upper lines of ``relu(z_B + Δz) − relu(z_B)`` in ``(Δz, z_B)``: S, N, C (see module doc)."""
    zero, one = np.zeros_like(la), np.ones_like(la)
    al_a, _, s_a, t_a = activations.RELU.relax(la, ua)
    al_b, _, s_b, t_b = activations.RELU.relax(lb, ub)
    s_lower = (al_a, al_a - s_b, -t_b)  # α_A z_A − (s_B z_B + t_B), z_A = Δz + z_B
    s_upper = (s_a, s_a - al_b, t_a)  # s_A z_A + t_A − α_B z_B
    cross = (dl < 0) & (du > 0)
    span = np.where(cross, du - dl, 1.0)
    lam_lo, lam_up = np.where(cross, -dl / span, 0.0), np.where(cross, du / span, 0.0)
    n_lower = (np.where(cross, lam_lo, np.where(du <= 0, one, zero)), zero, np.where(cross, -lam_lo * du, 0.0))
    n_upper = (np.where(cross, lam_up, np.where(dl >= 0, one, zero)), zero, np.where(cross, -lam_up * dl, 0.0))
    return [s_lower, n_lower, (zero, zero, c_lo)], [s_upper, n_upper, (zero, zero, c_hi)]


def max_gap(lower: Line, upper: Line, la, ua, lb, ub, dl, du) -> np.ndarray:
    """Largest ``upper − lower`` over each neuron's feasible ``(z_A, z_B)`` polygon (at its candidate vertices)."""
    za = np.stack([la, la, ua, ua, la, la, ua, ua, lb + dl, lb + du, ub + dl, ub + du], axis=-1)
    zb = np.stack([lb, ub, lb, ub, la - dl, la - du, ua - dl, ua - du, lb, lb, ub, ub], axis=-1)
    tol = 1e-9 * (1.0 + np.abs(np.stack([la, ua, lb, ub], axis=-1)).max(axis=-1, keepdims=True))
    d = za - zb
    feasible = ((za >= la[..., None] - tol) & (za <= ua[..., None] + tol) & (zb >= lb[..., None] - tol)
                & (zb <= ub[..., None] + tol) & (d >= dl[..., None] - tol) & (d <= du[..., None] + tol))
    feasible |= ~feasible.any(axis=-1, keepdims=True)
    gap = ((upper[0] - lower[0])[..., None] * d + (upper[1] - lower[1])[..., None] * zb
           + (upper[2] - lower[2])[..., None])
    return np.where(feasible, gap, -np.inf).max(axis=-1)
