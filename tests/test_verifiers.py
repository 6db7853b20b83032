"""Verifier profiles (``nnxform info --for``): each reads a canon output and names what blocks it in a model it
cannot read; the Marabou profile agrees with Marabou's own parser; what a profile says canon removes, canon removes,
on every bundled model. ``prepare_for`` (``canon --for``) gives what a verifier reads, the same function, or refuses
naming the node — from the graph alone, before any rewriting, when no command removes it (a cGAN-like generator's
ConvTranspose for the verifiers that have none)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, make_model, run_cli, save
from onnx import helper

from nnxform import workflows
from nnxform.errors import NnxformError
from nnxform.ir import Model, from_proto, load
from nnxform.passes import PASSES
from nnxform.verifiers import PROFILES, readability, written
from nnxform.workflows import prepare_for

GROUPED = MODELS / "bn_after_relu_conv.onnx"  # BatchNormalization and a group=2 Conv ('conv3')


@pytest.fixture(scope="module")
def canon_of_grouped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``nnxform canon`` of the grouped-conv model: what every profile should read."""
    out = tmp_path_factory.mktemp("verifiers") / "canon.onnx"
    result = run_cli("canon", GROUPED, "-o", out)
    assert result.returncode == 0, result.stderr
    return out


def sub_of_two_branches(tmp_path: Path) -> Path:
    """Relu(W1 x) − Relu(W2 x): a Sub of two data tensors, and a graph that is not one chain."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Gemm", ["x", "W1", "b"], ["g1"], transB=1), helper.make_node("Relu", ["g1"], ["r1"]),
             helper.make_node("Gemm", ["x", "W2", "b"], ["g2"], transB=1), helper.make_node("Relu", ["g2"], ["r2"]),
             helper.make_node("Sub", ["r1", "r2"], ["y"], name="diff")]
    weights = {"W1": rng.normal(size=(3, 4)), "W2": rng.normal(size=(3, 4)), "b": np.zeros(3)}
    return save(make_model(nodes, [1, 4], weights=weights), tmp_path / "sub.onnx")


def asymmetric_conv_transpose(tmp_path: Path) -> Path:
    """A ConvTranspose with pads [0, 0, 1, 1], which onnx2torch refuses, then a Relu."""
    nodes = [helper.make_node("ConvTranspose", ["x", "W"], ["c"], name="up", kernel_shape=[2, 2], pads=[0, 0, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    weights = {"W": np.random.default_rng(1).normal(size=(2, 2, 2, 2))}
    return save(make_model(nodes, [1, 2, 3, 3], weights=weights), tmp_path / "convt.onnx")


@pytest.mark.parametrize("verifier", sorted(PROFILES))
def test_every_profile_reads_canon_output(canon_of_grouped: Path, verifier: str) -> None:
    verdict = readability(load(canon_of_grouped), verifier)
    assert verdict["readable"], verdict["blockers"]


def test_marabou_blocks_grouped_conv_and_sub_of_data(tmp_path: Path) -> None:
    grouped = readability(load(GROUPED), "marabou")["blockers"]
    assert [(b["node"], b["fix"]) for b in grouped] == [("conv3", "nnxform canon")]
    assert "group=2" in grouped[0]["reason"] and "input_channels == filter_channels" in grouped[0]["reason"]
    sub = readability(load(sub_of_two_branches(tmp_path)), "marabou")["blockers"]
    assert [b["node"] for b in sub] == ["diff"] and "subtracts a data tensor" in sub[0]["reason"]


def test_nnenum_blocks_batchnorm_and_branches(tmp_path: Path) -> None:
    bn = readability(load(GROUPED), "nnenum")["blockers"]
    assert {b["node"] for b in bn} == {"bn1", "bn2", "bn3"} and all(b["fix"] == "nnxform canon" for b in bn)
    branches = readability(load(sub_of_two_branches(tmp_path)), "nnenum")["blockers"]
    assert any("does not follow the previous Relu" in b["reason"] and b["fix"] is None for b in branches)


def test_pynever_blocks_group_attribute_implicit_pads_and_skipped_sub(tmp_path: Path) -> None:
    grouped = {b["node"]: b for b in readability(load(GROUPED), "pynever")["blockers"]}
    assert "reads 'groups', not 'group'" in grouped["conv3"]["reason"]
    no_pads = make_model([helper.make_node("Conv", ["x", "W"], ["c"], name="c1", kernel_shape=[1, 1]),
                          helper.make_node("Relu", ["c"], ["y"])], [1, 1, 2, 2], weights={"W": np.ones((1, 1, 1, 1))})
    implicit = readability(load(save(no_pads, tmp_path / "nopads.onnx")), "pynever")["blockers"]
    assert [(b["node"], b["fix"]) for b in implicit] == [("c1", "nnxform canon")] and "pads" in implicit[0]["reason"]
    sub = readability(load(sub_of_two_branches(tmp_path)), "pynever")["blockers"]
    assert any(b["node"] == "diff" and "skipped" in b["reason"] for b in sub)


def test_abcrown_reads_through_its_onnx2pytorch_fork(tmp_path: Path) -> None:
    """α,β-CROWN's converter pads an asymmetric ConvTranspose's input (a different function) and refuses attributes
    it cannot extract; it reads ACAS Xu's opset-8 file, which onnx2torch does not."""
    blockers = readability(load(asymmetric_conv_transpose(tmp_path)), "abcrown")["blockers"]
    assert [(b["node"], b["fix"]) for b in blockers] == [("up", None)]
    assert "pads the input instead of cropping the output" in blockers[0]["reason"]
    assert readability(load(MODELS / "ACASXU_run2a_1_1_batch_2000.onnx"), "abcrown")["readable"]
    dynamo = readability(load(MODELS / "torch_dynamo_resnet.onnx"), "abcrown")["blockers"]  # MaxPool storage_order
    assert [b["fix"] for b in dynamo] == ["nnxform canon"] and "storage_order not implemented" in dynamo[0]["reason"]


def test_auto_lirpa_blocks_asymmetric_conv_transpose_and_old_opsets(tmp_path: Path) -> None:
    blockers = readability(load(asymmetric_conv_transpose(tmp_path)), "auto_lirpa")["blockers"]
    assert [b["node"] for b in blockers] == ["up"] and "non symmetrical padding" in blockers[0]["reason"]
    acas = readability(load(MODELS / "ACASXU_run2a_1_1_batch_2000.onnx"), "auto_lirpa")["blockers"]  # opset 8
    assert [(b["node"], b["fix"]) for b in acas] == [("Operation_1_Flatten", "nnxform canon")]
    assert "version 1 at opset 8" in acas[0]["reason"]


BUNDLED = sorted(MODELS.glob("*.onnx"))


@pytest.fixture(scope="module")
def canonical() -> dict[str, Model]:
    """``canon`` of every bundled model, as its file reads back."""
    return {path.name: written(PASSES["canon"](load(path))[0]) for path in BUNDLED}


@pytest.mark.parametrize("verifier", sorted(PROFILES))
def test_canon_removes_what_each_profile_says_it_removes(canonical: dict[str, Model], verifier: str) -> None:
    """On every bundled model: no blocker whose fix is `nnxform canon` is left in canon's output, what is left names
    no fix or ``canon --for`` (the one-chain rewrite), and what ``canon --for`` refuses on from the graph is left."""
    for name, model in canonical.items():
        left = PROFILES[verifier].blockers(model)
        assert not [b.text() for b in left if b.fix == "nnxform canon"], name
        assert all(b.fix in (None, f"nnxform canon --for {verifier}") for b in left), name
        # what canon --for refuses on before rewriting is still there after canon (the node, kept as it was)
        final = PROFILES[verifier].final(load(MODELS / name, supported_only=False))
        assert {b.node for b in final} <= {b.node for b in left}, name


def generator(seed: int = 0) -> Model:
    """A cGAN-like generator and discriminator: z [1, 4] → Gemm → Relu → Reshape [1, 4, 2, 2] → ConvTranspose (every
    attribute left to its default) → Relu → ConvTranspose (stride 2) → Relu → Conv → Relu → Flatten → Gemm."""
    rng = np.random.default_rng(seed)
    weights = {"W0": rng.normal(0, 0.5, (16, 4)), "b0": rng.normal(0, 0.1, 16), "shape": np.array([1, 4, 2, 2]),
               "T1": rng.normal(0, 0.3, (4, 3, 3, 3)), "c1": rng.normal(0, 0.1, 3),
               "T2": rng.normal(0, 0.3, (3, 2, 2, 2)), "c2": rng.normal(0, 0.1, 2),
               "K": rng.normal(0, 0.3, (2, 2, 3, 3)), "k": rng.normal(0, 0.1, 2),
               "W4": rng.normal(0, 0.1, (1, 2 * 6 * 6)), "b4": np.zeros(1)}
    nodes = [helper.make_node("Gemm", ["z", "W0", "b0"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r0"]),
             helper.make_node("Reshape", ["r0", "shape"], ["s"]),
             helper.make_node("ConvTranspose", ["s", "T1", "c1"], ["t1"], name="up1"),
             helper.make_node("Relu", ["t1"], ["r1"]),
             helper.make_node("ConvTranspose", ["r1", "T2", "c2"], ["t2"], name="up2", strides=[2, 2]),
             helper.make_node("Relu", ["t2"], ["r2"]),
             helper.make_node("Conv", ["r2", "K", "k"], ["d"], name="down"), helper.make_node("Relu", ["d"], ["r3"]),
             helper.make_node("Flatten", ["r3"], ["f"]), helper.make_node("Gemm", ["f", "W4", "b4"], ["y"], transB=1)]
    return from_proto(make_model(nodes, [1, 4], weights=weights, input_name="z"))


@pytest.mark.parametrize("verifier", sorted(PROFILES))
def test_a_generator_is_written_as_each_profile_reads_it_or_refused_from_the_graph(verifier: str, monkeypatch) -> None:
    """Verifiers whose parser has ConvTranspose get the generator in the form they read (the same function);
    the others are refused before canon runs (it would be the densification that ran out of memory)."""
    model = generator()
    if "ConvTranspose" not in PROFILES[verifier].operators:
        monkeypatch.setattr(workflows, "apply_checked", lambda *a, **k: pytest.fail("rewrote a refused model"))
        refusal = r"ConvTranspose node 'up1'.*\(and 1 more.*no nnxform command removes it"
        with pytest.raises(NnxformError, match=refusal):
            prepare_for(model, verifier, samples=50)
        return
    prepared = prepare_for(model, verifier, samples=200)
    assert [s.name for s in prepared.steps] == ["canon"]
    assert readability(written(prepared.model), verifier)["readable"]
    transposed = [n for n in written(prepared.model).nodes if n.op == "ConvTranspose"]
    assert len(transposed) == 2 and all("output_padding" not in n.attrs and "kernel_shape" in n.attrs
                                        for n in transposed)
    _same_in_onnxruntime(model, prepared.model)


def test_info_for_reads_the_auto_pad_its_loaded_form_resolved(tmp_path: Path) -> None:
    """The loader resolves auto_pad into pads, so only the file shows it; α,β-CROWN's onnx2pytorch raises on it,
    nnenum runs the Conv in onnxruntime."""
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="c1", kernel_shape=[3, 3], auto_pad="SAME_UPPER"),
             helper.make_node("Relu", ["c"], ["y"])]
    path = save(make_model(nodes, [1, 1, 4, 4], weights={"W": np.ones((1, 1, 3, 3))}), tmp_path / "same.onnx")
    blockers = readability(load(path), "abcrown", str(path))["blockers"]
    assert [(b["node"], b["fix"]) for b in blockers] == [("c1", "nnxform canon")] and "auto_pad=SAME_UPPER" in \
        blockers[0]["reason"]
    assert readability(load(path), "nnenum", str(path))["readable"]
    assert readability(written(prepare_for(load(path), "abcrown", samples=50).model), "abcrown")["readable"]


def test_abcrown_names_the_options_its_defaults_lack() -> None:
    """What α,β-CROWN's own configs set for such networks: conv_mode matrix for a MaxPool, the Reshape quirk for a
    written batch of 1, input_shape for a one-input network (each failed with its defaults in the matrix)."""
    quirk = '--onnx_quirks "{\'Reshape\': {\'fix_batch_size\': True}}"'
    assert readability(load(MODELS / "torch_resnet.onnx"), "abcrown")["options"] == f"--conv_mode matrix {quirk}"
    assert readability(load(MODELS / "test_nano.onnx"), "abcrown")["options"] == "--input_shape -1 1"
    assert readability(generator(), "abcrown")["options"] == quirk
    assert readability(load(MODELS / "mnist-net_256x2.onnx"), "abcrown")["options"] == ""
    assert readability(generator(), "nnenum")["options"] == ""


def test_info_for_through_the_cli(tmp_path: Path, canon_of_grouped: Path) -> None:
    blocked = run_cli("info", GROUPED, "--for", "marabou")
    assert blocked.returncode == 0, blocked.stderr
    assert "readable by marabou: no" in blocked.stdout
    assert "Conv node 'conv3' has group=2: Marabou's parser asserts input_channels == filter_channels; " \
           "run `nnxform canon`" in blocked.stdout
    readable = run_cli("info", canon_of_grouped, "--for", "pynever")
    assert readable.returncode == 0 and "readable by pynever: yes" in readable.stdout
    as_json = run_cli("info", GROUPED, "--for", "nnenum", "--json", "-")
    verdict = json.loads(as_json.stdout)["for"]
    assert verdict["verifier"] == "nnenum" and verdict["readable"] is False and len(verdict["blockers"]) == 3
    unknown = run_cli("info", GROUPED, "--for", "reluplex")
    assert unknown.returncode != 0 and "unknown verifier 'reluplex'" in unknown.stderr


def test_marabou_profile_agrees_with_marabous_parser(tmp_path: Path, canon_of_grouped: Path) -> None:
    with warnings.catch_warnings():  # maraboupy warns that its TensorFlow parser is unavailable
        warnings.simplefilter("ignore")
        marabou = pytest.importorskip("maraboupy.Marabou", reason="maraboupy (the 'test' extra) is not installed")
    network = marabou.read_onnx(str(canon_of_grouped))
    model = load(canon_of_grouped)
    assert network.outputVars[0].size == np.prod(model.shapes()[model.output_name])  # it loaded, every output
    for rejected in (GROUPED, sub_of_two_branches(tmp_path)):
        assert not readability(load(rejected), "marabou")["readable"]
        with pytest.raises(AssertionError):
            marabou.read_onnx(str(rejected))


def test_nnv_blocks_grouped_conv_and_eran_drops_batchnorm() -> None:
    nnv = readability(load(GROUPED), "nnv")["blockers"]
    assert [(b["node"], b["fix"]) for b in nnv] == [("conv3", "nnxform canon")] and "matlab2nnv" in nnv[0]["reason"]
    eran = {b["node"]: b for b in readability(load(GROUPED), "eran")["blockers"]}
    assert set(eran) == {"bn1", "bn2", "bn3", "conv3"} and all(b["fix"] == "nnxform canon" for b in eran.values())
    assert "operations_to_be_ignored" in eran["bn1"]["reason"] and "group=2" in eran["conv3"]["reason"]


def test_eran_needs_written_strides_and_an_axes_attribute(tmp_path: Path) -> None:
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="c1", kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Unsqueeze", ["f", "axes"], ["y"], name="u")]
    path = save(make_model(nodes, [1, 1, 2, 2], weights={"W": np.ones((1, 1, 1, 1)), "axes": np.array([0])}),
                tmp_path / "implicit.onnx")
    found = {b["node"]: b for b in readability(load(path), "eran")["blockers"]}
    assert "strides" in found["c1"]["reason"] and "axes" in found["u"]["reason"]
    assert readability(written(prepare_for(load(path), "eran", samples=50).model), "eran")["readable"]


def _same_in_onnxruntime(a: Model, b: Model) -> None:
    """``a`` and ``b`` as written give the same outputs on 200 random inputs (independently of the pass check)."""
    import onnxruntime as ort
    runs = [ort.InferenceSession(m.to_bytes()) for m in (a, b)]
    x = np.random.default_rng(2).uniform(-1, 1, size=(200, *a.input_shape)).astype(np.float32)
    ya, yb = (np.stack([r.run(None, {r.get_inputs()[0].name: row})[0] for row in x]) for r in runs)
    np.testing.assert_allclose(yb, ya, rtol=1e-5, atol=1e-5)


def test_prepare_for_nnenum_folds_batchnorm_and_keeps_the_function() -> None:
    model = load(GROUPED)
    prepared = prepare_for(model, "nnenum", samples=200)
    assert [s.name for s in prepared.steps] == ["canon"] and "BatchNormalization" not in prepared.model.op_counts()
    assert readability(written(prepared.model), "nnenum")["readable"]
    _same_in_onnxruntime(model, prepared.model)
    report = prepared.to_json()
    assert report["verifier"] == "nnenum" and report["steps"][0]["check"]["max_abs"] < 1e-4


def test_prepare_for_nnenum_reads_a_linear_network_through_its_first_loader() -> None:
    """nnenum's general loader asserts a Relu, but load_onnx_network_optimized, which nnenum.py tries first, reads a
    Gemm chain without one: canon's single Gemm is what nnenum reads (the matrix loads it in nnenum itself)."""
    model = load(MODELS / "marabou_linear2-3_bn1-linear3-1.onnx")  # Gemm, BN, Gemm: no Relu
    assert any("no Relu" in b["reason"] for b in readability(model, "nnenum")["blockers"])
    prepared = prepare_for(model, "nnenum", samples=200)
    assert [s.name for s in prepared.steps] == ["canon"] and prepared.model.op_counts() == {"Gemm": 1}
    assert readability(written(prepared.model), "nnenum")["readable"]
    _same_in_onnxruntime(model, prepared.model)


def test_prepare_for_nnenum_gives_a_small_linear_cnn_a_relu() -> None:
    """A BatchNormalization alone becomes a 1×1 Conv, which neither nnenum loader reads without a Relu: the chain
    rewrite writes it as relu(y) − relu(−y) (dense, it is small)."""
    model = load(MODELS / "marabou_layerzoo_batchnorm.onnx")
    prepared = prepare_for(model, "nnenum", samples=200)
    assert [s.name for s in prepared.steps] == ["canon", "one chain (pad --depth 2)"]
    assert prepared.model.op_counts().get("Relu") == 1
    assert readability(written(prepared.model), "nnenum")["readable"]
    _same_in_onnxruntime(model, prepared.model)


def test_prepare_for_refuses_what_no_command_removes() -> None:
    with pytest.raises(NnxformError, match=r"nnenum cannot read .*torch_nhwc_mlp.onnx: Tanh node '/Tanh'.*no nnxform "
                                           r"command removes it"):
        prepare_for(load(MODELS / "torch_nhwc_mlp.onnx"), "nnenum", samples=50)
    with pytest.raises(NnxformError, match="unknown verifier 'reluplex'"):
        prepare_for(load(GROUPED), "reluplex")
