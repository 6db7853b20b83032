"""Propagating the difference layer by layer, for one box or many at once (a batch axis): intervals, and
back-substitution of each ``Δz`` row to the input through the relaxations (``propagate``, ``back_substitute``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..boxes import BoxBounds, per_box
from ..conv import abs_of
from ..result import State
from ..rounding import magnitude
from ..symbolic import BACKSUB_BYTES
from .pairing import Matrix, PairLayer
from .relax import LayerDelta


@dataclass
class ChainBounds:
    """One network's bounds as the difference analysis reads them: ``lo[0]``/``hi[0]`` the input box as the float
    network reads it, ``lo[k + 1]``/``hi[k + 1]`` the pre-activations of hidden layer ``k``; each ``(size,)`` for one
    box or ``(B, size)`` for a batch of boxes. ``u``: the unit roundoff (0 for the real-valued network)."""

    lo: list[np.ndarray]
    hi: list[np.ndarray]
    u: float

    @classmethod
    def of(cls, bounds: "State | BoxBounds") -> "ChainBounds":
        """From one box's ``State`` or a batch's ``boxes.BoxBounds`` of a chain's ``layers_network(..., probe=True)``."""
        if isinstance(bounds, State):
            net, u = bounds.net, 0.0 if bounds.real else bounds.net.unit_roundoff
        else:
            net, u = bounds.net.net, bounds.net.u
        steps = [0] + net.linear_steps[:-1]
        return cls([bounds.lo[i] for i in steps], [bounds.hi[i] for i in steps], u)


def propagate(layers: list[PairLayer], a: ChainBounds, b: ChainBounds, symbolic: bool,
              prior: list[tuple[np.ndarray, np.ndarray]] | None = None) -> list[LayerDelta]:
    """Bounds of ``Δz`` at every affine layer of an aligned pair (``symbolic``: back-substitution too), for one box
    or, with a leading batch axis on every bound (dense layers only), for many at once.

    ``a``/``b``: each network's bounds (``ChainBounds``). Each layer's rounding is noise ``ε_A − ε_B`` on ``Δz`` and
    ``ε_B`` on ``z_B`` (``rounding``), bounded from the tightened bounds of the layer's inputs. ``prior``: per layer,
    bounds of the float ``Δz`` known to hold on the box (a parent box's), intersected with the computed ones before
    a hidden layer is back-substituted (rows they settle are not) and after the output layer is.
    """
    lo, hi = np.minimum(a.lo[0], b.lo[0]), np.maximum(a.hi[0], b.hi[0])  # the box as either network reads it
    mid, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
    cast = (lo, hi)
    out: list[LayerDelta] = []
    for k, L in enumerate(layers):
        if k == 0:  # one affine map of the box: the interval is exact
            c, r = _mv(L.d, mid) + L.db, _mv(L.abs_d, rad)
        else:
            dal, dah, bl, bh = out[-1].interval()
            c = _mv(L.wa, 0.5 * (dal + dah)) + _mv(L.d, 0.5 * (bl + bh)) + L.db
            r = _mv(L.abs_wa, 0.5 * (dah - dal)) + _mv(L.abs_d, 0.5 * (bh - bl))
        last = k == len(layers) - 1
        ins_a, ins_b = _inputs(cast, out, "a"), _inputs(cast, out, "b")
        ma = L.round_a.noise([magnitude(*ins_a)], a.u)
        mb = L.round_b.noise([magnitude(*ins_b)], b.u)
        if last:  # each network's output by interval from its (tightened) last hidden bounds
            la, ua = _affine_interval(L.wa, L.ba, *ins_a, ma)
            lb, ub = _affine_interval(L.wb, L.bb, *ins_b, mb)
        else:
            la, ua, lb, ub = a.lo[k + 1], a.hi[k + 1], b.lo[k + 1], b.hi[k + 1]
        cur = LayerDelta(la.copy(), ua.copy(), lb.copy(), ub.copy(), c - r - ma - mb, c + r + ma + mb, ma, mb,
                         L.kind, (a.u > 0, b.u > 0))
        if prior is not None and not last:
            _intersect(cur, *prior[k])
        cur.tighten()
        if symbolic and k > 0 and lo.ndim == 2 and not last:
            _tighten_boxes(layers, out, k, cur, mid, rad)
        elif symbolic and k > 0:
            rows = np.arange(L.size) if last else np.flatnonzero(cur.unsettled)
            chunk, coefs = _backsub_rows(layers[: k + 1], lo.size // lo.shape[-1]), []
            for start in range(0, rows.size, chunk):
                part = rows[start: start + chunk]
                low, coef = back_substitute(layers, out, k, part, mid, rad)
                low = low - np.concatenate([(ma + mb)[..., part]] * 2, axis=-1)
                coefs.append(coef.reshape(coef.shape[:-2] + (2, part.size, -1)))
                cur.lo_d[..., part] = np.maximum(cur.lo_d[..., part], low[..., : part.size])
                cur.hi_d[..., part] = np.minimum(cur.hi_d[..., part], -low[..., part.size:])
            if coefs:
                if last:
                    coef = np.concatenate(coefs, axis=-2)
                    cur.input_coef = coef.reshape(coef.shape[:-3] + (2 * rows.size, -1))
                cur.tighten()
        if prior is not None and last:
            _intersect(cur, *prior[k])
        if not last:
            cur.relax()
        out.append(cur)
    return out


def _intersect(cur: LayerDelta, lo: np.ndarray, hi: np.ndarray) -> None:
    """``Δz``'s bounds intersected with ``[lo, hi]`` (in place; where that would leave them empty, a point box's
    float noise, kept as they were)."""
    a, b = np.maximum(cur.lo_d, lo), np.minimum(cur.hi_d, hi)
    ok = a <= b
    cur.lo_d, cur.hi_d = np.where(ok, a, cur.lo_d), np.where(ok, b, cur.hi_d)


def _tighten_boxes(layers: list[PairLayer], out: list[LayerDelta], k: int, cur: LayerDelta, mid: np.ndarray,
                   rad: np.ndarray) -> None:
    """Back-substitute, per box of a batch, the hidden rows of layer ``k`` it leaves unsettled (each box's own
    rows, padded to the largest count), in parts that fit ``BACKSUB_BYTES``; then ``tighten``."""
    todo = cur.unsettled
    R = int(todo.sum(axis=1).max(initial=0))
    if R == 0:
        return
    rows = np.argsort(~todo, axis=1, kind="stable")[:, :R]  # per box, its unsettled rows first
    noise = np.take_along_axis(cur.noise_a + cur.noise_b, rows, axis=1)
    per_part = max(1, BACKSUB_BYTES // (128 * R * max(max(L.wa.shape) for L in layers[: k + 1])))
    for start in range(0, len(rows), per_part):
        part = slice(start, start + per_part)
        low, _ = back_substitute(layers, [d.boxes(part) for d in out], k, rows[part], mid[part], rad[part])
        low = low - np.concatenate([noise[part]] * 2, axis=1)
        keep = np.take_along_axis(todo[part], rows[part], axis=1)
        for side, new in ((cur.lo_d, low[:, :R]), (cur.hi_d, -low[:, R:])):
            old = np.take_along_axis(side[part], rows[part], axis=1)
            better = np.maximum(old, new) if side is cur.lo_d else np.minimum(old, new)
            np.put_along_axis(side[part], rows[part], np.where(keep, better, old), axis=1)
    cur.tighten()


def _backsub_rows(layers: list[PairLayer], boxes: int = 1) -> int:
    """Rows back-substituted together: their coefficient arrays (about eight of ``boxes × 2·rows × width``) stay
    within ``symbolic.BACKSUB_BYTES``, so wide convolutional layers (and large batches) are bounded in several passes."""
    widest = max(max(L.wa.shape) for L in layers)
    return max(1, BACKSUB_BYTES // (128 * widest * boxes))


def _inputs(box: tuple[np.ndarray, np.ndarray], out: list[LayerDelta], side: str) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of one network's input to the next layer: the box, or the activation of the last layer's bounds."""
    return box if not out else out[-1].outputs(side)


def _affine_interval(W: Matrix, bias: np.ndarray, lo: np.ndarray, hi: np.ndarray, noise: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    c, r = _mv(W, 0.5 * (lo + hi)) + bias, _mv(abs_of(W), 0.5 * (hi - lo)) + noise
    return c - r, c + r


def _mv(W: Matrix, v: np.ndarray) -> np.ndarray:
    """``W @ v`` for one vector ``(n,)`` or each row of a batch ``(B, n)``."""
    return W @ v if v.ndim == 1 else (W @ v.T).T


def _times(M: np.ndarray, W: Matrix) -> np.ndarray:
    """``M @ W`` for rows ``M`` ``([B,] R, n)`` (one product over all boxes' rows; ``W`` may be an operator)."""
    return (M.reshape(-1, M.shape[-1]) @ W).reshape(M.shape[:-1] + (-1,))


def back_substitute(layers: list[PairLayer], deltas: list[LayerDelta], k: int, rows: np.ndarray,
                    mid: np.ndarray, rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower bounds of ``[Δz_k[rows]; −Δz_k[rows]]`` over the box (without layer ``k``'s own rounding), walking
    back through the relaxations and the earlier layers' rounding noise, and the rows' final coefficients on the
    input; per box when the bounds carry a batch axis (``rows`` then shared ``(R,)`` or each box's ``(B, R)``)."""
    L = layers[k]
    ed, eb = np.concatenate([L.wa[rows], -L.wa[rows]], axis=-2), np.concatenate([L.d[rows], -L.d[rows]], axis=-2)
    const = np.concatenate([L.db[rows], -L.db[rows]], axis=-1)
    for j in range(k - 1, -1, -1):
        D, P = deltas[j], layers[j]
        gl, hl, gu, hu = D.relu_b
        pos, neg = np.maximum(ed, 0.0), np.minimum(ed, 0.0)
        cd = pos * D.lower[0][..., None, :] + neg * D.upper[0][..., None, :]
        cb = pos * D.lower[1][..., None, :] + neg * D.upper[1][..., None, :]
        const = const + per_box(pos, D.lower[2]) + per_box(neg, D.upper[2])
        pos, neg = np.maximum(eb, 0.0), np.minimum(eb, 0.0)
        cb += pos * gl[..., None, :] + neg * gu[..., None, :]
        const = const + per_box(pos, hl) + per_box(neg, hu) + cd @ P.db + cb @ P.bb
        # rounding: Δz_j carries ε_A − ε_B and z_B,j carries ε_B, so cd·ε_A + (cb − cd)·ε_B
        if D.noise_a.any() or D.noise_b.any():
            const = const - per_box(np.abs(cd), D.noise_a) - per_box(np.abs(cb - cd), D.noise_b)
        ed, eb = _times(cd, P.wa), _times(cd, P.d) + _times(cb, P.wb)
    return const + per_box(eb, mid) - per_box(np.abs(eb), rad), eb  # Δa_0 = 0, a_B,0 = x
