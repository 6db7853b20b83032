"""Which ReLUs are stable on an input box: ``classify(model, box)`` (DESIGN.md, "Stable neurons and exact compression").

A ReLU is *stably inactive* when its pre-activation ``z <= 0`` on the whole box, *stably active*
when ``z >= 0``, *unstable* when both signs occur. Every piecewise-linear activation of the operator table (its
``slopes``: ReLU, LeakyRelu) is classified the same way: stable, it is one linear piece on the box. Evidence is
gathered cheapest first:

- **sampling** (uniform points, box corners of several densities, the centre) and **gradient**
  (signed-gradient steps pushing each remaining candidate towards the sign it has not shown)
  prove *instability*: a neuron seen ``> 0`` at one point and ``< 0`` at another, in float64 and
  again in float32 onnxruntime at the same points;
- **interval** and **symbolic** bounds, then **alpha** bounds (α-CROWN: the lower slopes of the
  unstable ReLUs optimised per neuron, for every neuron the bounds leave unstable, layer by layer,
  which also tightens the big-M constants of the MILP) prove *stability*, with the analyzers'
  float32 margin;
- **search** (networks with more than ``FEW_INPUTS`` inputs): per layer, first to last, one branch and bound over
  the signs of the ReLUs before it for all its undecided neurons (``analyzers.branching.prove_signs``: bounds per
  branch from the batched engine, slopes and split multipliers optimised), starting from the signs proved so far; a
  neuron is proved stable when its pending sign's bound holds on every branch, and the bounds' minimising corners are
  replayed as witnesses of instability;
- **milp**: one HiGHS big-M model of the float network (each row with its rounding noise), grown
  layer by layer and rescaled by powers of two so that the solver's absolute tolerances are
  relative to each neuron; each remaining candidate gets a feasibility solve "is there an input
  with ``z`` on the wrong side of its margin?" (a column bound, objective pushing ``z`` further),
  the margin being the float margin plus the solver's tolerance times the row's activity.
  Infeasible proves the neuron stable; a solution is replayed in numpy and onnxruntime and marks
  the neurons it flips unstable. Neurons proven stable become linear in the model before the next
  layer is added.

A neuron that no evidence settles (time limit, a solution that does not replay, bounds within the
solver's tolerances of 0) is ``undecided`` and must be treated as unstable: stability is only ever
claimed from a proven bound, never from a solver's primal value or from samples. A classification
read from a file holds claims, not proofs: ``reprove`` proves them again.

The package: ``results`` (what a classification says, and its JSON), ``classifier`` (the stages), ``rescaling`` (the
milp stage's network, scaled for the solver's tolerances).
"""

from .classifier import Progress, _Classifier, classify, reprove
from .results import STATUS_NAMES, UNDECIDED, LayerStability, Stability, Stage, Witnesses, box_sha256
from ..analyzers.result import ACTIVE, INACTIVE, UNSTABLE

__all__ = ["ACTIVE", "INACTIVE", "STATUS_NAMES", "UNDECIDED", "UNSTABLE", "LayerStability", "Progress", "Stability",
           "Stage", "Witnesses", "box_sha256", "classify", "reprove"]
