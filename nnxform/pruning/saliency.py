"""Data-free saliency pruning with simulated annealing (paper 003, Algorithm 1).

Primitive operation: a *nominee* unit ``i`` of hidden layer ``l`` is removed and its outgoing
weights are added to those of a *delegate* ``j`` of the same layer, ``W_{l+1}[:, j] += W_{l+1}[:, i]``.
Pairs are ranked by the saliency

    S(i, j) = (‖W_l[i, :] − W_l[j, :]‖₂ + |b_i − b_j| / |b_i + b_j|) · ‖W_{l+1}[:, i]‖₂

(the bias ratio is 0 when ``b_i = b_j``, and its denominator is floored at 1e-12). The change the
operation causes at the next pre-activation is ``Δz = W_{l+1}[:, i]·(a_j − a_i)``, an interval from
interval-arithmetic bounds of the units over the box; it is pushed to the output through every
later layer (through a ReLU, ``relu(z + d) − relu(z)`` lies in
``[max(min(d⁻, 0), −max(z⁺, 0)), min(max(d⁺, 0), max(z⁺ + d⁺, 0))]``, no bias added) and the
output intervals of the accepted operations are summed into the *cumulative impact*. Its energy is
``α·σ(NORM) + β·σ(ENT)``: NORM the sum of the output intervals' widths, ENT the entropy of their
φ-similarity densities (paper, eq. 4–8).

Pruning runs in epochs. In each epoch every pool of layers (each hidden layer with ``--scope
layer``; all of them together with ``global``) prunes up to ``⌈step·n⌉`` units (``n`` its original
width): walking its pairs by ascending saliency, the first candidate is accepted, and a later one
whose energy ``E'`` (of the cumulative impact before this pool plus its own) exceeds the last
accepted energy ``E`` is accepted with probability ``exp(−(E' − E)/T)``, ``T`` being the share of the
pruning still to do. Each unit takes part in one operation per pool visit, and at most
``16·⌈step·n⌉`` candidates are examined per visit. Neuron bounds are recomputed before every pool.
The same seed gives the same result.

This estimate only guides the search. The bound the report gives on ``|f_pruned − f|`` comes from
the discrepancy analysis of the two networks (``pruning.impact``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..analyzers.difference import ChainLayer, layers_network
from ..analyzers.interval import interval
from ..analyzers.result import State
from ..domain import Box
from ..layered import Chain
from .chain import quota, remove_units

#: Candidates whose impact is computed together, and the examination cap per pool visit (× its step).
_WINDOW, _EXAMINE = 256, 16
#: Floor of ``|b_i + b_j|`` in the saliency's bias ratio.
_BIAS_FLOOR = 1e-12


@dataclass
class SaliencyOptions:
    """Parameters of the search (paper 003 defaults)."""

    step: float = 0.025
    alpha: float = 0.75
    beta: float = 0.25
    phi: float = 0.9
    seed: int = 0


@dataclass
class _Search:
    """The state of one run: layers being pruned (with their units' original ids), cumulative impact, counters."""

    layers: Chain
    lower: np.ndarray
    upper: np.ndarray
    pairs: list[tuple[int, int, int]] = field(default_factory=list)
    done: int = 0


def interval_bounds(layers: Chain, box: Box) -> list[tuple[np.ndarray, np.ndarray]]:
    """Interval bounds (``analyzers.interval``, real arithmetic) of every layer's pre-activation over ``box``."""
    net = layers_network([ChainLayer.of_dense(layer) for layer in layers])
    state = interval(State.start(net, box, real=True))
    return [(state.lo[i], state.hi[i]) for i in net.linear_steps]


def saliency_matrix(W: np.ndarray, b: np.ndarray, W_next: np.ndarray) -> np.ndarray:
    """``S[i, j]``: saliency of removing nominee ``i`` into delegate ``j`` (``+inf`` on the diagonal)."""
    sq = (W**2).sum(axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (W @ W.T), 0.0))
    diff, total = np.abs(b[:, None] - b[None, :]), np.abs(b[:, None] + b[None, :])
    ratio = np.where(diff == 0.0, 0.0, diff / np.maximum(total, _BIAS_FLOOR))
    S = (dist + ratio) * np.sqrt((W_next**2).sum(axis=0))[:, None]
    np.fill_diagonal(S, np.inf)
    return S


def output_impact(layers: Chain, bounds: list[tuple[np.ndarray, np.ndarray]], layer: int, nominee: np.ndarray,
                  delegate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intervals ``(B, outputs)`` of the output change of removing each ``nominee`` into its ``delegate``."""
    alo, ahi = np.maximum(bounds[layer][0], 0.0), np.maximum(bounds[layer][1], 0.0)
    dlo, dhi = alo[delegate] - ahi[nominee], ahi[delegate] - alo[nominee]
    w = layers[layer + 1].W[:, nominee].T  # (B, next width)
    lo = np.minimum(w * dlo[:, None], w * dhi[:, None])
    hi = np.maximum(w * dlo[:, None], w * dhi[:, None])
    for k in range(layer + 1, len(layers) - 1):
        zhi = np.maximum(bounds[k][1], 0.0)
        lo, hi = np.maximum(np.minimum(lo, 0.0), -zhi), np.minimum(np.maximum(hi, 0.0), np.maximum(zhi + hi, 0.0))
        W = layers[k + 1].W
        c, r = 0.5 * (lo + hi) @ W.T, 0.5 * (hi - lo) @ np.abs(W).T
        lo, hi = c - r, c + r
    return lo, hi


def energy(lower: np.ndarray, upper: np.ndarray, alpha: float, beta: float, phi: float) -> np.ndarray:
    """``α·σ(NORM) + β·σ(ENT)`` of interval vectors ``(B, outputs)`` (paper 003, eq. 4–8)."""
    norm = (upper - lower).sum(axis=1)
    m = lower.shape[1]
    span = upper.max(axis=1) - lower.min(axis=1)
    gap = np.abs(lower[:, :, None] - lower[:, None, :]) + np.abs(upper[:, :, None] - upper[:, None, :])
    sim = 1.0 - 0.5 * gap / np.where(span > 0, span, 1.0)[:, None, None]
    similar = (sim >= phi) & ~np.eye(m, dtype=bool)
    density = similar.sum(axis=2) / m
    ent = -(density * np.log(np.where(density > 0, density, 1.0))).sum(axis=1)
    return alpha * _sigmoid(norm) + beta * _sigmoid(ent)


def ranked_pairs(saliencies: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every finite entry ``(key, nominee i, delegate j)`` of the saliency matrices, lowest saliency first."""
    keys, nominees, delegates, scores = [], [], [], []
    for key, S in saliencies.items():
        i, j = np.nonzero(np.isfinite(S))
        keys.append(np.full(i.size, key))
        nominees.append(i)
        delegates.append(j)
        scores.append(S[i, j])
    order = np.argsort(np.concatenate(scores), kind="stable")
    return tuple(np.concatenate(a)[order] for a in (keys, nominees, delegates))  # type: ignore[return-value]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def prune_saliency(layers: Chain, prunable: list[int], ratio: float, scope: str, box: Box,
                   options: SaliencyOptions, progress: Callable[[int, int], None] | None = None,
                   ) -> tuple[Chain, dict, list[str]]:
    """Remove the requested share of hidden units by saliency-ranked, annealed delegate pruning.

    Returns the layers (each unit's original index in its ``ids``), details and notes.
    """
    widths = {l: layers[l].units for l in prunable}
    notes: list[str] = []
    if scope == "layer":
        pools = [[l] for l in prunable]
        targets = {(l,): min(quota(ratio, widths[l]), widths[l] - 1) for l in prunable}
        for l in prunable:
            if quota(ratio, widths[l]) > widths[l] - 1:
                notes.append(f"hidden layer {l + 1}: the ratio asks for all {widths[l]} units; 1 kept")
    else:
        pools = [list(prunable)]
        total_units = sum(widths.values())
        want = quota(ratio, total_units)
        targets = {tuple(prunable): min(want, total_units - len(prunable))}
        if want > targets[tuple(prunable)]:
            notes.append(f"the ratio asks for {want} of {total_units} units; {targets[tuple(prunable)]} removed so "
                         "that every hidden layer keeps one")
    steps = {tuple(p): max(1, math.ceil(options.step * sum(widths[l] for l in p))) for p in pools}
    total = sum(targets.values())
    m = layers[-1].units
    state = _Search(list(layers), np.zeros(m), np.zeros(m))
    pruned = {tuple(p): 0 for p in pools}
    rng = np.random.default_rng(options.seed)
    epochs = 0
    while state.done < total:
        epochs += 1
        for pool in pools:
            key = tuple(pool)
            left = targets[key] - pruned[key]
            if left <= 0:
                continue
            temperature = (total - state.done) / total
            accepted = _visit(state, pool, min(left, steps[key]), temperature, box, options, rng)
            pruned[key] += accepted
            state.done += accepted
            if progress is not None:
                progress(state.done, total)
    step_units = {",".join(str(l + 1) for l in p): steps[tuple(p)] for p in pools}
    details = {"units_removed": state.done, "epochs": epochs, "step_units": step_units,
               "alpha": options.alpha, "beta": options.beta, "phi": options.phi, "step": options.step,
               "seed": options.seed,
               "heuristic_impact": {"lower": state.lower.tolist(), "upper": state.upper.tolist(),
                                    "note": "interval estimate that guided the search; not the reported bound"},
               "pairs": [{"layer": l + 1, "nominee": i, "delegate": j} for l, i, j in state.pairs]}
    return state.layers, details, notes


def _visit(state: _Search, pool: list[int], k: int, temperature: float, box: Box, options: SaliencyOptions,
           rng: np.random.Generator) -> int:
    """One pool visit of Algorithm 1: accept up to ``k`` operations, apply them, return how many."""
    layers = state.layers
    bounds = interval_bounds(layers, box)
    c_layer, c_i, c_j = ranked_pairs({l: saliency_matrix(layers[l].W, layers[l].b, layers[l + 1].W) for l in pool})
    locked = {l: np.zeros(layers[l].units, dtype=bool) for l in pool}
    room = {l: layers[l].units - 1 for l in pool}
    chosen: list[tuple[int, int, int, np.ndarray, np.ndarray]] = []
    last, examined, budget = 0.0, 0, _EXAMINE * k
    for start in range(0, c_layer.size, _WINDOW):
        if len(chosen) == k or examined >= budget:
            break
        wl, wi, wj = c_layer[start:start + _WINDOW], c_i[start:start + _WINDOW], c_j[start:start + _WINDOW]
        valid = np.zeros(wl.size, dtype=bool)
        for l in pool:
            sel = wl == l
            valid[sel] = ~locked[l][wi[sel]] & ~locked[l][wj[sel]] & (room[l] > 0)
        wl, wi, wj = wl[valid], wi[valid], wj[valid]
        if wl.size == 0:
            continue
        lo, hi = np.empty((wl.size, state.lower.size)), np.empty((wl.size, state.lower.size))
        for l in np.unique(wl):
            sel = wl == l
            lo[sel], hi[sel] = output_impact(layers, bounds, int(l), wi[sel], wj[sel])
        energies = energy(state.lower + lo, state.upper + hi, options.alpha, options.beta, options.phi)
        for c in range(wl.size):  # the annealing walk is sequential by nature; its arithmetic is above
            l, i, j = int(wl[c]), int(wi[c]), int(wj[c])
            if len(chosen) == k or examined >= budget:
                break
            if locked[l][i] or locked[l][j] or room[l] == 0:
                continue
            examined += 1
            e = float(energies[c])
            if last > 0 and e > last and rng.random() >= math.exp(-(e - last) / temperature):
                continue
            chosen.append((l, i, j, lo[c], hi[c]))
            locked[l][i] = locked[l][j] = True
            room[l] -= 1
            last = e
    for l in pool:
        mine = [(i, j) for ll, i, j, _, _ in chosen if ll == l]
        if not mine:
            continue
        nominees, delegates = np.array([p[0] for p in mine]), np.array([p[1] for p in mine])
        Wn = layers[l + 1].W.copy()
        Wn[:, delegates] += Wn[:, nominees]
        layers[l + 1] = layers[l + 1].replace(W=Wn)
        ids = layers[l].ids
        state.pairs.extend((l, int(ids[i]), int(ids[j])) for i, j in mine)
        state.layers = layers = remove_units(layers, l, nominees)
    for _, _, _, lo_c, hi_c in chosen:
        state.lower = state.lower + lo_c
        state.upper = state.upper + hi_c
    return len(chosen)
