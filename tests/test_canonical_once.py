"""Canonicalisation runs once per command (issue 20, item 6): canon marks its settled result ``CANONICAL``, the mark
holds only for the graph marked (``Model.fingerprint``), and every pass or tool requiring canonical input runs canon
only on an input without the mark. Each command path below counts the canon runs and the graphs they were given."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import MODELS, run_cli

from nnxform.domain import Box
from nnxform.ir import load
from nnxform.merge import MERGE
from nnxform.passes import CANONICAL, PASSES
from nnxform.pruning import PRUNE
from nnxform.stable import classify
from nnxform.verifiers import PROFILES

MNIST = MODELS / "mnist-net_256x2.onnx"
MNIST_BOX = ("--vnnlib", MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib")
BN_CNN, BN_MLP = MODELS / "bn_cnn.onnx", MODELS / "bn_mlp.onnx"
GROUPED = MODELS / "bn_after_relu_conv.onnx"  # BatchNormalization after a Relu and a group=2 Conv
LINEAR_BN = MODELS / "marabou_layerzoo_batchnorm.onnx"  # canon --for nnenum adds the one-chain step (pad)


@pytest.fixture
def canon_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Each canon run from here on, as (the fingerprint of the graph it was given, whether that graph was already
    marked canonical)."""
    runs: list[tuple[str, bool]] = []
    canon = PASSES["canon"]

    def counted(model, **parameters):
        runs.append((model.fingerprint(), CANONICAL.holds(model)))
        return canon.run(model, **parameters)

    monkeypatch.setitem(PASSES, "canon", dataclasses.replace(canon, run=counted))
    return runs


def _once_each(runs: list[tuple[str, bool]]) -> None:
    """No graph canonicalised twice, and none that was marked canonical."""
    fingerprints = [f for f, _ in runs]
    assert len(set(fingerprints)) == len(fingerprints), "a graph was canonicalised twice"
    assert not any(marked for _, marked in runs), "a canonical graph was canonicalised"


# --- the mark ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.onnx")), ids=lambda p: p.stem)
def test_a_model_marked_canonical_is_a_fixed_point_of_canon(path: Path) -> None:
    model = load(path)
    try:
        canonical, _ = PASSES["canon"](model)
    except Exception as exc:  # noqa: BLE001 - a model canon refuses gets no mark: nothing to check
        pytest.skip(f"canon refuses it: {exc}")
    assert CANONICAL.holds(canonical) and not CANONICAL.holds(model)
    again, report = PASSES["canon"](canonical)
    assert report.changes == [] and again.fingerprint() == canonical.fingerprint()
    assert again.to_bytes() == canonical.to_bytes()


def test_any_edit_voids_the_mark_and_a_copy_or_provenance_keeps_it() -> None:
    canonical, _ = PASSES["canon"](load(BN_MLP))
    copy = canonical.copy()
    copy.with_provenance("canon", {})
    assert CANONICAL.holds(copy)  # the same graph: provenance is no part of it
    gemm = next(n for n in copy.nodes if n.op == "Gemm")
    edits = [lambda m: m.constants[gemm.inputs[1]].__iadd__(1.0),  # in place, through no method of the IR
             lambda m: m.nodes[0].attrs.update(edited=1),
             lambda m: m.output_names.append("extra"),
             lambda m: m.nodes.reverse()]
    for edit in edits:
        edited = copy.copy()
        edit(edited)
        assert not CANONICAL.holds(edited)
    assert CANONICAL.holds(copy)


def test_establish_runs_canon_only_without_the_mark(canon_runs: list) -> None:
    model = load(BN_MLP)
    canonical = CANONICAL.establish(model)
    assert len(canon_runs) == 1 and CANONICAL.holds(canonical)
    assert CANONICAL.establish(canonical) is canonical and len(canon_runs) == 1


def test_canon_refuses_to_mark_what_does_not_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sub-pass that changes the graph every round: canon gives up with an internal error, and marks nothing."""
    from nnxform.passes import PassReport, canonicalize

    def drifting(model):
        model = model.copy()
        model.constants[next(iter(model.constants))] = model.constants[next(iter(model.constants))] + 1.0
        return model, PassReport("drift")

    monkeypatch.setattr(canonicalize, "_STEPS", canonicalize._STEPS + (drifting,))
    with pytest.raises(RuntimeError, match="did not settle"):
        PASSES["canon"](load(BN_MLP))


# --- the registry --------------------------------------------------------------------------------------------

#: modules of nnxform/passes that register no pass: helpers of the passes beside them
HELPERS = {"scale_shift"}


def test_every_pass_module_is_registered_and_every_pass_declares_requires_and_ensures() -> None:
    import pkgutil

    import nnxform.passes

    modules = {info.name for info in pkgutil.iter_modules(nnxform.passes.__path__)}
    registering = {p.run.__module__.rsplit(".", 1)[1] for p in PASSES.values()}
    assert registering == modules - HELPERS
    for p in [*PASSES.values(), MERGE, PRUNE]:
        for facts in (p.requires, p.ensures):
            assert isinstance(facts, frozenset) and all(f is CANONICAL for f in facts), p.name
    assert {p.name for p in [*PASSES.values(), MERGE, PRUNE] if CANONICAL in p.requires} == \
        {"pad", "compress", "merge", "prune"}
    assert {name for name, p in PASSES.items() if p.ensures} == {"canon"}
    with pytest.raises(TypeError):
        nnxform.passes.register("undeclared")  # type: ignore[call-arg]


def _parameters(model) -> dict[str, dict]:
    """The parameters each pass needs to run on ``model`` (bn_mlp); merge's second network is set per run."""
    stability = classify(model, Box.default(model.input_size), time_limit=30, samples=256)
    return {"pad": {"depth": 4}, "compress": {"stability": stability}, "quantize": {"bits": 4},
            "prune": {"method": "neuron", "ratio": 0.3}}


def test_each_pass_canonicalises_exactly_as_it_declares(canon_runs: list) -> None:
    """A pass requiring CANONICAL runs canon once on an unmarked input and never on a marked one; any other pass
    never runs it (canon itself aside)."""
    raw = load(BN_MLP)
    canonical = CANONICAL.establish(load(BN_MLP))
    parameters = _parameters(raw)
    for p in [*PASSES.values(), MERGE, PRUNE]:
        if p.name == "canon":
            continue
        kwargs = parameters.get(p.name, {})
        for model, expected in ((raw, int(CANONICAL in p.requires)), (canonical, 0)):
            if p is MERGE:
                kwargs = {"second": model.copy()}
                expected *= 2
            canon_runs.clear()
            p(model, **kwargs)
            assert len(canon_runs) == expected, (p.name, CANONICAL.holds(model))


# --- the commands --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained digits network, its 2-bit quantisation, ten test rows, and bn_cnn with channels pruned."""
    d = tmp_path_factory.mktemp("canon-once")
    data = MODELS / "data" / "digits_train.csv"
    for args in (["init", "--layers", "64,16,10", "--seed", "0", "-o", d / "init.onnx"],
                 ["init", "--layers", "64,16,10", "--batchnorm", "--seed", "0", "-o", d / "init_bn.onnx"],
                 ["train", d / "init.onnx", "--data", data, "--scale", "16", "--epochs", "2", "-o", d / "digits.onnx"],
                 ["quantize", d / "digits.onnx", "--bits", "2", "--per-channel", "-o", d / "q2.onnx"],
                 ["prune", BN_CNN, "--method", "neuron", "--ratio", "0.3", "-o", d / "bn_cnn_pruned.onnx"]):
        assert run_cli(*args).returncode == 0, args
    (d / "ten.csv").write_text("\n".join((MODELS / "data" / "digits_test.csv").read_text().splitlines()[:10]) + "\n")
    return d


#: command line (``{d}``: the trained fixture's folder, ``{o}``: the output) → canon runs: one per network read
COMMANDS = {
    "pad": (["pad", MNIST, "--depth", "4", *MNIST_BOX], 1),
    "pad-cnn": (["pad", BN_CNN, "--depth", "5"], 1),
    "pad-like": (["pad", MNIST, "--like", MODELS / "marabou_fc1.onnx", *MNIST_BOX], 2),  # two networks
    "merge": (["merge", "{d}/digits.onnx", "{d}/q2.onnx"], 2),  # two networks
    "merge-cnn": (["merge", BN_CNN, "{d}/bn_cnn_pruned.onnx"], 2),
    "compress": (["compress", MNIST, *MNIST_BOX], 1),
    "compress-cnn": (["compress", BN_CNN, "--time-limit", "30"], 1),
    "prune-neuron": (["prune", MNIST, "--method", "neuron", "--ratio", "0.3", *MNIST_BOX], 1),
    "prune-channel": (["prune", BN_CNN, "--method", "neuron", "--ratio", "0.3"], 1),
    "prune-graph": (["prune", MODELS / "torch_resnet.onnx", "--method", "neuron", "--ratio", "0.3"], 1),
    "train": (["train", "{d}/init.onnx", "--data", MODELS / "data" / "digits_train.csv", "--scale", "16",
               "--epochs", "1"], 1),
    "train-bn": (["train", "{d}/init_bn.onnx", "--data", MODELS / "data" / "digits_train.csv", "--scale", "16",
                  "--epochs", "1"], 0),  # BatchNormalization trained as it is: no canon
    # the compressed network, the original (its layers: round 1 searches the grid's steps for its weights), and (it
    # is on a grid) the repaired one as written and read back, whose grid is checked
    "repair": (["repair", "{d}/digits.onnx", "{d}/q2.onnx", "--data", "{d}/ten.csv", "--eps", "0.02",
                "--clip-lower", "0", "--clip-upper", "1", "--scale", "16", "--rounds", "1", "--epochs", "1"], 3),
    **{f"canon-for-{v}-{m.stem}": (["canon", m, "--for", v], 1) for v in sorted(PROFILES) for m in (GROUPED, LINEAR_BN)},
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_canonicalises_each_network_once(name: str, trained: Path, tmp_path: Path,
                                                      canon_runs: list) -> None:
    args, expected = COMMANDS[name]
    args = [str(a).format(d=trained) for a in args] + ["-o", tmp_path / "out.onnx"]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    _once_each(canon_runs)
    assert len(canon_runs) == expected, canon_runs


def test_canon_for_a_canonical_file_rewritten_as_one_chain_canonicalises_once(canon_runs: list) -> None:
    """canon --for nnenum on a linear network: canon, then the one-chain rewrite (pad) reads canon's result as it
    is (before the marks: 7 canon runs)."""
    from nnxform.workflows import prepare_for

    prepared = prepare_for(load(LINEAR_BN), "nnenum", samples=100)
    assert [s.name for s in prepared.steps] == ["canon", "one chain (pad --depth 2)"]
    assert len(canon_runs) == 1
