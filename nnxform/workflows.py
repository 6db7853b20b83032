"""Workflows the commands run, callable from Python: ``compress_checked`` (classify → compress → check → certify →
provenance), ``prune_with_impact`` (prune → impact bound → accuracy), ``quantize_with_drift`` (quantize →
provenance → drift bound → sampled check) and ``prepare_for`` (a verifier's profile → canon → one chain). Each
returns a result whose ``to_json()``
is the command's JSON report; the command line only parses options, calls, prints and writes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .accuracy import DEFAULT_EPS, Dataset, Evaluation, measure
from .discrepancy import METHODS as IMPACT_METHODS
from .discrepancy import Discrepancy, Pair, discrepancy
from .domain import Box
from .errors import NnxformError, NotExact
from .exactness import ATOL, Comparison, allowed, beyond_rule, compare
from .stopping import time_left
from .ir import Model
from .passes import apply_checked
from .layered import Size, model_size
from .passes.compress import RANK_TOL, Compression
from .passes.quantize import LayerQuantization, grid_name, quantize
from .pruning import PruneResult, SaliencyOptions, prune
from .pruning.impact import impact_bound
from .runtime import OnnxRunner
from .stable import Progress, Stability, classify, reprove
from .verifiers import options_text, profile, written
from .verifiers.profile import Blocker, Profile
from .passes import PassReport
from .passes.pad import MAX_DENSE_IDENTITY, affine_depth

#: Samples of the classification's sampling stage (as ``nnxform stable``).
STABLE_SAMPLES = 4096


def certify(original: Model, compression: Compression, stability: Stability, box: Box, tol: float,
            time_limit: float, exact: bool = False, progress: Callable[[int, int], None] | None = None
            ) -> Discrepancy:
    """Sound bounds of ``f − f_compressed`` on the whole box by the difference analysis (all of it within
    ``time_limit`` seconds: the symbolic bound, then the MILP in what is left; ``progress(done, total)`` as it goes).

    The original is paired unit by unit with ``compression.aligned`` (the same function as the result) and
    each network's bounds start from the signs the classification proved (in this run: ``stability.proven``;
    a classification read from a file is refused until ``stable.reprove``), so on a correct compression the
    real-valued symbolic bound is zero up to the analysis's slack and what is left is the two float networks'
    rounding (``details["float_margin"]``). The MILP runs when the real-valued bound exceeds ``tol``, or when
    ``exact`` asks for it (39 s on mnist-net_256x4, every gap closed).
    """
    if not stability.proven:
        raise NnxformError("a certificate rests only on signs proved in this run: prove the classification read from "
                           "a file again first (stable.reprove)")
    end = time.perf_counter() + time_limit
    other = compression.aligned or compression.model
    pair = Pair(original, other)
    signs: list[np.ndarray] | None = [layer.status for layer in stability.layers]
    try:
        cert = pair.analyse(box, "symbolic", signs_a=signs, total_time=time_limit)
    except NnxformError:  # not a plain ReLU chain (a convolutional head): each network starts from its own bounds
        signs = None
        cert = pair.analyse(box, "symbolic", total_time=max(end - time.perf_counter(), 0.0))
    real = cert.details.get("real_delta_max", cert.delta_max)  # the bound for the real-valued networks
    left = end - time.perf_counter()
    if (exact or real > tol) and left > 0:
        cert = pair.analyse(box, "milp", time_limit=left, signs_a=signs, total_time=left, progress=progress)
        real = cert.details.get("real_delta_max", cert.delta_max)
    elif exact or real > tol:
        cert.details["time_limit_reached"] = True
    cert.seconds = time.perf_counter() - (end - time_limit)  # the whole certificate, both analyses
    cert.details["proven_signs"] = signs is not None
    cert.details["float_margin"] = max(cert.delta_max - real, 0.0)  # what the float networks' rounding adds
    return cert


@dataclass
class CompressResult:
    """The compressed network and how it was made: the classification, what compress did, the sizes, the check
    in onnxruntime and the certificate (None without ``certify``)."""

    model: Model
    stability: Stability
    compression: Compression
    before: Size
    after: Size
    check: Comparison
    certificate: Discrepancy | None
    domain: dict[str, Any] | None

    def to_json(self, model: str, output: str) -> dict[str, Any]:
        """The report of ``nnxform compress`` (``model``, ``output``: the files read and written)."""
        s = self.stability
        return {"model": model, "output": output, "domain": self.domain,
                "stable": {"seconds": s.seconds, "totals": s.counts(), "stages": s.to_json()["stages"], "notes": s.notes,
                           "reproof": s.reproof},
                "changes": self.compression.changes, "counts": self.compression.counts,
                "before": self.before.totals(), "after": self.after.totals(), "check": self.check.to_json(),
                "certificate": None if self.certificate is None else self.certificate.to_json()}


def compress_checked(model: Model, box: Box, *, stability: Stability | None = None, time_limit: float = 300.0,
                     node_limit: int | None = None, seed: int = 0, rank_tol: float = RANK_TOL, samples: int = 10000,
                     tol: float = ATOL, certify_box: bool = False, certify_exact: bool = False,
                     certify_time_limit: float = 10.0, domain: dict[str, Any] | None = None,
                     progress: Progress | None = None, solver: str = "highs", started: float | None = None
                     ) -> CompressResult:
    """``model`` without its stable ReLUs on ``box``, checked in onnxruntime on ``samples`` points and, with
    ``certify_box``, bounded on the whole box; raises NotExact (nothing returned) beyond the rule of ``allowed``
    (at the sampled points, and at the certificate's witness).

    ``stability`` reuses a classification of this model and box; one read from a file (not ``proven``) has its
    stable claims proved again first (``stable.reprove``, within ``time_limit``: a claim not re-proved keeps its
    neuron), so that nothing is removed or certified on a claim this run did not prove. Otherwise the ReLUs are
    classified (``time_limit``, ``node_limit``, ``seed``, ``solver`` as ``nnxform stable``). ``domain`` describes the
    box in the provenance and report; ``progress(stage, done, total)`` reports the classification's stages, then the
    certificate's solves. The time limits count from ``started`` (``time.monotonic()`` when the command began;
    default: now).
    """
    if certify_exact and not certify_box:
        raise NnxformError("--certify-exact goes with --certify")
    start = time.monotonic() if started is None else started
    classifying = max(time_left(time_limit, start) - _check_seconds(model, box, samples), time_limit / 2)  # check fits
    if stability is None:
        stability = classify(model, box, time_limit=classifying, samples=STABLE_SAMPLES, seed=seed,
                             progress=progress, node_limit=node_limit, solver=solver)
    elif not stability.proven:
        stability = reprove(model, box, stability, time_limit=classifying, progress=progress, node_limit=node_limit,
                            solver=solver)
    provenance = {"domain": domain, "time_limit": time_limit, "seed": seed, "stable": stability.counts()}
    result, compression, cmp = apply_checked("compress", model, box, samples, tol, provenance, stability=stability,
                                             rank_tol=rank_tol)
    cert = None
    if certify_box:
        limit = allowed(tol, cmp.scale)
        budget = min(certify_time_limit, time_left(time_limit + certify_time_limit, start))
        cert = certify(model, compression, stability, box, limit, budget, certify_exact,
                       progress=_stage(progress, "certificate"))
        if cert.found > limit and beyond_rule(model, result, cert.witness_input, cert.witness_delta, tol):
            raise NotExact(f"compress changed the function: the discrepancy analysis found |f - f_compressed| = "
                           f"{cert.found:.3g} > {cmp.tolerance(tol)} at a point of the box; nothing written (please "
                           "report this network)")
    return CompressResult(result, stability, compression, model_size(model), model_size(result), cmp, cert, domain)


@dataclass
class PruneReport:
    """A pruned network and what is known of it: the pruning, the sound bound on its drift over the domain (None
    without one), and accuracy and FGSM robustness before and after on labelled data (empty without)."""

    pruning: PruneResult
    impact: dict[str, Any] | None
    evaluations: list[Evaluation]
    data: Dataset | None
    scale: float | None
    domain: dict[str, Any] | None

    @property
    def model(self) -> Model:
        return self.pruning.model

    def to_json(self, model: str, output: str) -> dict[str, Any]:
        """The report of ``nnxform prune`` (``model``, ``output``: the files read and written)."""
        report: dict[str, Any] = {"model": model, "output": output, **self.pruning.to_json(), "domain": self.domain}
        if self.impact is not None:
            report.update(self.impact)
        if self.data is not None:
            report["data"] = {"path": self.data.path, "scale": self.scale, "clip": list(self.evaluations[0].clip)}
            for side, evaluation in zip(("before", "after"), self.evaluations):
                report[side].update({k: v for k, v in evaluation.to_json().items() if k in ("accuracy", "robustness")})
        return report


def prune_with_impact(model: Model, box: Box | None, method: str, ratio: float, *, scope: str | None = None,
                      options: SaliencyOptions | None = None, impact_method: str = "symbolic",
                      time_limit: float = 60.0, data: Dataset | None = None, scale: float | None = None,
                      fgsm_eps: list[float] | None = None, clip: tuple[float | None, float | None] = (None, None),
                      domain: dict[str, Any] | None = None, progress: Progress | None = None,
                      started: float | None = None) -> PruneReport:
    """``model`` pruned by ``method`` (``nnxform.pruning.prune``), with a sound bound on ``max |f_pruned − f|`` over
    ``box`` by ``impact_method`` when a box is given, and with ``data`` (features already divided by ``scale``)
    accuracy and FGSM robustness at ``fgsm_eps`` (points clipped to ``clip``) before and after.

    ``progress(stage, done, total)`` reports saliency's units (stage ``"units"``), then the impact's solves
    (``"impact"``); ``domain`` describes the box in the report. ``time_limit`` counts from ``started``
    (``time.monotonic()`` when the command began; default: now): the bound gets what pruning leaves of it."""
    if impact_method not in IMPACT_METHODS:
        raise NnxformError(f"unknown impact method '{impact_method}'; choose one of {', '.join(IMPACT_METHODS)}")
    if data is not None:
        data.fit(model)
    start = time.monotonic() if started is None else started
    result = prune(model, method, ratio, scope=scope, box=box, options=options, progress=_stage(progress, "units"))
    impact = None if box is None else impact_bound(model, result, box, impact_method,
                                                   time_limit=time_left(time_limit, start),
                                                   progress=_stage(progress, "impact"))
    evaluations = [] if data is None else [measure(m, data, list(fgsm_eps or DEFAULT_EPS), clip)
                                           for m in (model, result.model)]
    return PruneReport(result, impact, evaluations, data, scale, domain)


@dataclass
class QuantizeResult:
    """A quantised network and what is known of it: per-layer errors, and with a box the sound bound on its drift
    ``max ‖f_q − f‖∞`` there and the largest difference seen in onnxruntime (which never exceeds it)."""

    model: Model
    bits: int | None
    per_channel: bool
    layers: list[LayerQuantization]
    seconds: float
    drift: Discrepancy | None = None
    sampled: Comparison | None = None
    domain: dict[str, Any] | None = None

    @property
    def grid(self) -> str:
        return grid_name(self.bits, self.per_channel)

    @property
    def sampled_max(self) -> float:
        """The largest ``‖f_q − f‖∞`` seen: over the samples, and at the discrepancy analysis's witness."""
        if self.drift is None or self.sampled is None:
            return float("nan")
        return max(self.sampled.max_abs, self.drift.found)

    def to_json(self, model: str, output: str) -> dict[str, Any]:
        """The report of ``nnxform quantize`` (``model``, ``output``: the files read and written)."""
        report: dict[str, Any] = {
            "model": model, "output": output, "grid": self.grid, "bits": self.bits, "per_channel": self.per_channel,
            "float16": self.bits is None, "stored_as": "float32 (the weights' own float type)",
            "biases": "unchanged (float32)", "seconds": self.seconds,
            "layers": [layer.to_json() for layer in self.layers], "domain": self.domain,
        }
        if self.drift is not None and self.sampled is not None:
            report.update(drift_bound=self.drift.delta_max, drift_method=self.drift.method,
                          sampled_max=self.sampled_max,
                          sampled={"samples": self.sampled.samples, "max_abs": self.sampled.max_abs,
                                   "mean_abs": self.sampled.mean_abs},
                          drift=self.drift.to_json())
        return report


def quantize_with_drift(model: Model, bits: int | None = None, per_channel: bool = False, float16: bool = False, *,
                        box: Box | None = None, method: str = "symbolic", time_limit: float = 60.0,
                        samples: int = 10000, seed: int = 0, domain: dict[str, Any] | None = None,
                        progress: Progress | None = None, started: float | None = None) -> QuantizeResult:
    """``model`` quantised (``passes.quantize``: ``bits`` or ``float16``) with provenance, and with ``box`` the sound
    bound on ``max ‖f_q − f‖∞`` by the discrepancy analysis (``method``, all of it within ``time_limit``) and the
    largest difference over ``samples`` uniform points (plus corners and centre) in onnxruntime; a sampled
    difference beyond the bound is refused (it would be a bug of the analysis). ``progress(stage, done, total)``
    reports the bound's solves (stage ``"impact"``). ``time_limit`` counts from ``started`` (``time.monotonic()``
    when the command began; default: now): the bound gets what quantising and the sampled check leave of it."""
    if method not in IMPACT_METHODS:
        raise NnxformError(f"unknown drift method '{method}'; choose one of {', '.join(IMPACT_METHODS)}")
    start, t0 = time.monotonic() if started is None else started, time.perf_counter()
    result, report = quantize(model, bits=bits, per_channel=per_channel, float16=float16)
    seconds = time.perf_counter() - t0
    result.with_provenance("quantize", {"bits": bits, "per_channel": per_channel, "float16": float16,
                                        "domain": domain})
    out = QuantizeResult(result, bits, per_channel, report.layers, seconds, domain=domain)
    if box is None:
        return out
    box = box.fit(model.input_size)
    out.sampled = compare(model, result, box, samples=samples, seed=seed, chain=False)  # measured, not judged
    left = time_left(time_limit, start)
    out.drift = discrepancy(result, model, box, method, time_limit=left, progress=_stage(progress, "impact"),
                            total_time=left)
    if out.sampled_max > out.drift.delta_max:
        raise NnxformError(f"the sampled difference {out.sampled_max:.6g} exceeds the sound drift bound "
                           f"{out.drift.delta_max:.6g}; nothing written (please report this network)")
    return out


def _check_seconds(model: Model, box: Box, samples: int) -> float:
    """The sampled check's time of ``samples`` points through two models (the original and its compression, at
    most as large), foreseen from a run of a tenth of them through ``model`` in onnxruntime (fewer points run at
    a higher cost per point: a fiftieth foresaw 4× the time on a MNIST CNN)."""
    probe = max(samples // 10, 1)
    runner = OnnxRunner(model)
    xs = box.fit(model.input_size).points(probe, np.random.default_rng(0))
    runner(xs[:2])  # sessions made and the batched form checked: set-up, not the check's cost per point
    t0 = time.perf_counter()
    runner(xs)
    return 2 * (time.perf_counter() - t0) * samples / probe


def _stage(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    """``progress`` as the ``progress(done, total)`` of one stage."""
    return None if progress is None else lambda done, total: progress(stage, done, total)


# --- canon --for ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One checked pass of ``prepare_for``: its name, its report and its onnxruntime comparison with its input."""

    name: str
    report: PassReport
    check: Comparison

    def to_json(self) -> dict[str, Any]:
        """The step for a JSON report."""
        return {"pass": self.name, "counts": self.report.counts, "changes": self.report.changes,
                "check": self.check.to_json()}


@dataclass(frozen=True)
class Preparation:
    """What ``canon --for`` produced: the model the verifier reads and the checked passes that made it."""

    verifier: str
    source: str
    model: Model
    steps: tuple[Step, ...]
    options: str  # the verifier's command-line options the result needs (shell-quoted; '' for none)

    def to_json(self) -> dict[str, Any]:
        """The JSON report of ``nnxform canon --for``."""
        return {"verifier": self.verifier, "parser": self.source, "readable": True, "options": self.options,
                "steps": [s.to_json() for s in self.steps], "operators_after": self.model.op_counts()}


def _refused(chosen: Profile, verifier: str, what: str, blockers: list[Blocker]) -> NnxformError:
    """The one-line refusal naming the first blocker (a node, when one is named) and how many more there are."""
    first = next((b for b in blockers if b.node), blockers[0])
    more = f" (and {len(blockers) - 1} more: nnxform info --for {verifier})" if len(blockers) > 1 else ""
    return NnxformError(f"{chosen.name} cannot read {what}: {first.reason}{more}; no nnxform command removes it")


def _chain_depth(model: Model) -> int:
    """The affine depth at which ``pad`` writes ``model`` as one ReLU chain (0: it cannot), decided from the graph
    before any matrix is formed: convolutions are kept as they are, or written as dense Gemms only when each of those
    has at most ``MAX_DENSE_IDENTITY``² entries (a cGAN's ConvTranspose would be gigabytes)."""
    try:
        return affine_depth(model, relu=True, most=MAX_DENSE_IDENTITY ** 2)
    except NnxformError:  # not a ReLU chain, or too large as dense layers
        return 0


def prepare_for(model: Model, verifier: str, box: Box | None = None, samples: int = 1000, tol: float = ATOL,
                parameters: dict[str, Any] | None = None) -> Preparation:
    """Rewrite ``model`` with checked passes into what ``verifier``'s parser reads, or raise naming what remains.

    First, from the graph alone, a refusal on what no command removes (``Profile.final``: an operator the parser
    lacks or an attribute it misreads, on a node canon keeps), before any rewriting. Then ``canon`` (which folds
    BatchNormalization and writes convolutions as verifiers read them); if the verifier still refuses it and the
    network is a ReLU chain whose convolutions ``pad`` keeps, it is rewritten as one chain by ``pad`` at the
    network's own depth (no identity layer added; a single affine layer, which has no Relu, at depth 2:
    ``[W; −W] → Relu → [I, −I]``), kept when the verifier refuses less of it. Every pass output is checked in
    onnxruntime on ``box`` against its input; the result is never returned unchecked.
    """
    chosen = profile(verifier)
    final = chosen.final(model)
    if final:
        raise _refused(chosen, verifier, model.source.get("path") or "this model", final)
    recorded = dict(parameters or {}, verifier=verifier)
    result, report, check = apply_checked("canon", model, box, samples=samples, tol=tol, parameters=recorded)
    steps = [Step("canon", report, check)]
    blockers = chosen.blockers(written(result))
    depth = _chain_depth(result) if blockers else 0
    # one affine layer and no Relu (nnenum needs one): depth 2 splits it exactly, relu(y) − relu(−y)
    for tried in ([depth, 2] if depth == 1 else [depth] if depth else []):
        chain, report, check = apply_checked("pad", result, box, samples=samples, tol=tol, parameters=recorded,
                                             depth=tried)
        remaining = chosen.blockers(written(chain))
        if len(remaining) < len(blockers):
            result, blockers = chain, remaining
            steps.append(Step(f"one chain (pad --depth {tried})", report, check))
            break
    if blockers:
        raise _refused(chosen, verifier, f"the result of {' and '.join(s.name for s in steps)}", blockers)
    return Preparation(verifier, chosen.source, result, tuple(steps), options_text(chosen.needs(written(result))))
