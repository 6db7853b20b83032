"""Bounds of ``f_A − f_B`` propagated as a difference, layer by layer (ReluDiff ICSE'20, NeuroDiff ASE'20).

Two ReLU chains (or LeakyRelu ones, below) of the same shape are analysed together. ``pair_chains`` makes
them so, exactly, in one form for dense and convolutional layers alike (the channel form: a layer's units
are channels × positions, a dense layer's channels of one position): padded with identity layers (``padded_chain``) and widened
channel by channel with dead ones (``aligned_chains``), convolutions kept as ``ConvMap`` operators. With
``Δ = a_A − a_B`` the difference of the pre-activations is
``Δz = W_A·Δa + (W_A − W_B)·a_B + (b_A − b_B)``, so it never subtracts two loose bounds of the
copies: the small terms stay small. Through the ReLUs ``Δa = relu(z_B + Δz) − relu(z_B)``, whose
bounds come from a case analysis of the two neurons' states and a linear relaxation in
``(Δz, z_B)`` chosen per neuron among three (all sound):

- ``S`` ("separate"): the CROWN relaxations of ``relu(z_A)`` and ``relu(z_B)`` subtracted — exact
  when both neurons are stable (both active ``Δa = Δz``, both inactive ``0``, one of each ``z_A``
  or ``−z_B``);
- ``N`` (NeuroDiff): ``Δa`` lies between 0 and ``Δz`` (ReLU is monotone and 1-Lipschitz), so the
  chords of ``min(Δz, 0)`` and ``max(Δz, 0)`` over ``[Δl, Δu]`` bound it whatever ``z_B`` is;
- ``C``: constants, ``[max(min(Δl,0), relu(l_A) − relu(u_B)), min(max(Δu,0), relu(u_A) − relu(l_B))]``;

the pair with the smallest largest gap over the neuron's feasible ``(z_A, z_B)`` polygon wins.

Any two-piece piecewise-linear activation of the table (``slopes`` ``(p, q)``: LeakyRelu is ``(α, 1)``) goes the same
way, the same slopes in both networks at each layer: ``f(x) = p·x + (q − p)·relu(x)``, so
``Δa = p·Δz + (q − p)·(relu(z_A) − relu(z_B))`` takes every bound above through that map (the identity for ReLU),
widened by the float activation's margin; identity layers through it split the values,
``y = (f(y) − f(−y)) / (p + q)``.

``interval`` propagates ``Δ`` as intervals; ``symbolic`` back-substitutes each ``Δz`` row to the
input through the relaxations of ``Δa`` and ``a_B`` (CROWN on the pair), intersected with the
interval result and with ``[l_A − u_B, u_A − l_B]``. Per-network bounds (symbolic) fix the ReLU
states and are tightened in turn by ``z_A = z_B + Δz``. ``DifferenceEncoder`` puts all of it on
top of the merged network's LP/MILP encoding: the relaxation rows above are valid inequalities,
so the LP is at least as tight as ``symbolic`` and the MILP stays exact.

The package: ``pairing`` (the two chains made one shape), ``relax`` (the difference through one activation),
``propagate`` (layer by layer, one box or many), ``encode`` (LP and MILP in difference variables).
"""

from .encode import DifferenceEncoder, solve
from .pairing import (MAX_IDENTITY_ENTRIES, ChainLayer, ChainPair, NotAligned, PairLayer, Placement, aligned_chains,
                      analysis_chain, identity_width, joint_network, layers_network, padded_chain, pair_chains, widen)
from .propagate import ChainBounds, back_substitute, propagate
from .relax import LayerDelta, candidate_lines, max_gap

__all__ = ["MAX_IDENTITY_ENTRIES", "ChainBounds", "ChainLayer", "ChainPair", "DifferenceEncoder", "LayerDelta",
           "NotAligned", "PairLayer", "Placement", "aligned_chains", "analysis_chain", "back_substitute",
           "candidate_lines", "identity_width", "joint_network", "layers_network", "max_gap", "padded_chain",
           "pair_chains", "propagate", "solve", "widen"]
