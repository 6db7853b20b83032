"""A ConvTranspose in canon's and the layered form: a BN (or per-channel Mul / Add) after it folds into it, and it is
a weighted layer whose channels can be removed (its weight is ``[in, out/group, *kernel]``: its input channels on
the first axis, its output channels on the second).

Before: canon wrote a BN after a ConvTranspose as a diagonal 1×1 Conv (C more connections), so compress on a cGAN
generator look-alike grew the network and wrote its input unchanged; the layered form took a ConvTranspose as a
pass-through and compress narrowed it through a transposed copy of its weight. A BatchNormalization counts its
non-zero scales as connections, as its diagonal-Conv form does.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_model
from onnx import helper

from nnxform.domain import Box
from nnxform.ir import Model, from_proto
from nnxform.layered import ConvTranspose, Relu, Site, aligned, from_model, model_size, remove_channels, sites
from nnxform.passes import PASSES, apply_checked
from nnxform.pruning import prune
from nnxform.runtime import OnnxRunner
from nnxform.workflows import compress_checked


def _same_in_onnxruntime(a: Model, b: Model, seed: int = 0) -> None:
    xs = np.random.default_rng(seed).uniform(-1, 1, (64, a.input_size))
    np.testing.assert_allclose(OnnxRunner(b)(xs), OnnxRunner(a)(xs), rtol=1e-5, atol=1e-5)


def _weights(model: Model, op: str) -> list[tuple[int, ...]]:
    return [model.constants[n.inputs[1]].shape for n in model.nodes if n.op == op]


# --- canon: a per-channel affine map after a ConvTranspose folds into it ---------------------------------------


def affine_after_transposed(group: int, bias: bool, kind: str, seed: int = 0) -> Model:
    """x [1, 4, 3, 3] → ConvTranspose (4 → 6, ``group``, stride 2, pads, output padding; a bias or none) → BN, or a
    Mul and an Add of per-channel constants → Relu."""
    rng = np.random.default_rng(seed)
    weights = {"T": rng.normal(0, 0.5, (4, 6 // group, 3, 3)), "c": rng.normal(0, 0.3, 6),
               "g": rng.uniform(0.5, 2, 6), "be": rng.normal(0, 0.5, 6), "mu": rng.normal(0, 0.5, 6),
               "var": rng.uniform(0.5, 2, 6), "s": rng.uniform(-2, 2, (1, 6, 1, 1)), "t": rng.normal(0, 1, (1, 6, 1, 1))}
    nodes = [helper.make_node("ConvTranspose", ["x", "T", "c"] if bias else ["x", "T"], ["u"], group=group,
                              kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])]
    if kind == "bn":
        nodes.append(helper.make_node("BatchNormalization", ["u", "g", "be", "mu", "var"], ["a"], epsilon=1e-3))
    else:
        nodes += [helper.make_node("Mul", ["u", "s"], ["m"]), helper.make_node("Add", ["m", "t"], ["a"])]
    nodes.append(helper.make_node("Relu", ["a"], ["y"]))
    return from_proto(make_model(nodes, [1, 4, 3, 3], weights=weights))


@pytest.mark.parametrize("kind", ["bn", "mul-add"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("group", [1, 2])
def test_canon_folds_a_per_channel_affine_after_a_conv_transpose_into_it(group, bias, kind):
    model = affine_after_transposed(group, bias, kind)
    canonical, report, check = apply_checked("canon", model, Box(np.full(36, -1.0), np.ones(36)))
    assert check.within and canonical.op_counts() == {"ConvTranspose": 1, "Relu": 1}  # no BN, no diagonal 1×1 Conv
    assert _weights(canonical, "ConvTranspose") == [(4, 6, 3, 3)]  # one group (block-diagonal), as canon writes it
    assert any("folded into ConvTranspose" in line for line in report.changes)
    _same_in_onnxruntime(model, canonical)


def test_a_batch_normalization_counts_as_many_connections_as_its_diagonal_conv():
    """Conv → Relu → BN (β ≠ 0) → zero-padded Conv: canon writes the BN as a diagonal 1×1 Conv (it cannot fold it),
    whose 3 channels counted as connections where the BN counted none."""
    rng = np.random.default_rng(0)
    weights = {"W1": rng.normal(0, 0.5, (3, 1, 3, 3)), "g": [1.0, 2.0, 0.5], "be": [0.3, 1.5, -0.2],
               "mu": np.zeros(3), "var": np.ones(3), "W2": rng.normal(0, 0.5, (2, 3, 3, 3))}
    nodes = [helper.make_node("Conv", ["x", "W1"], ["c1"]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("BatchNormalization", ["r1", "g", "be", "mu", "var"], ["n1"]),
             helper.make_node("Conv", ["n1", "W2"], ["y"], pads=[1, 1, 1, 1])]
    model = from_proto(make_model(nodes, [1, 1, 6, 6], weights=weights))
    canonical, _ = PASSES["canon"](model)
    assert canonical.op_counts()["Conv"] == 3
    assert model_size(canonical).connections == model_size(model).connections == 27 + 3 + 54


def generator(seed: int = 0, channels: int = 6, dead: int = 2) -> Model:
    """A cGAN generator look-alike, Gemm → Reshape → ConvTranspose → BN → Relu → ConvTranspose → BN → Relu →
    ConvTranspose → Relu, with a discriminator's dense tail (what compress compresses); channel ``dead`` of the
    first ConvTranspose is 0 after its ReLU on any input (zero filter, a BN shift of −3)."""
    rng = np.random.default_rng(seed)
    C, D = channels, channels // 2
    T1, be1 = rng.normal(0, 0.3, (C, C, 3, 3)), rng.normal(0, 0.3, C)
    T1[:, dead], be1[dead] = 0.0, -3.0

    def bn(name: str, n: int) -> dict:
        return {f"g{name}": rng.uniform(0.5, 2, n), f"mu{name}": rng.normal(0, 0.2, n),
                f"var{name}": rng.uniform(0.5, 2, n)}

    weights = {"W0": rng.normal(0, 0.5, (C * 4, 4)), "b0": rng.normal(0, 0.1, C * 4), "shape": np.array([1, C, 2, 2]),
               "T1": T1, "c1": rng.normal(0, 0.1, C), "be1": be1, **bn("1", C),
               "T2": rng.normal(0, 0.3, (C, D, 2, 2)), "c2": rng.normal(0, 0.1, D), "be2": rng.normal(0, 0.3, D),
               **bn("2", D), "T3": rng.normal(0, 0.3, (D, 1, 3, 3)), "c3": rng.normal(0, 0.1, 1),
               "W4": rng.normal(0, 0.1, (5, 64)), "b4": rng.normal(0, 0.1, 5), "W5": rng.normal(0, 0.5, (1, 5)),
               "b5": np.zeros(1)}
    nodes = [helper.make_node("Gemm", ["z", "W0", "b0"], ["h0"], transB=1), helper.make_node("Relu", ["h0"], ["r0"]),
             helper.make_node("Reshape", ["r0", "shape"], ["s0"]),
             helper.make_node("ConvTranspose", ["s0", "T1", "c1"], ["t1"], kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1], output_padding=[1, 1]),
             helper.make_node("BatchNormalization", ["t1", "g1", "be1", "mu1", "var1"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("ConvTranspose", ["r1", "T2", "c2"], ["t2"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("BatchNormalization", ["t2", "g2", "be2", "mu2", "var2"], ["n2"]),
             helper.make_node("Relu", ["n2"], ["r2"]),
             helper.make_node("ConvTranspose", ["r2", "T3", "c3"], ["t3"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["t3"], ["r3"]), helper.make_node("Flatten", ["r3"], ["f"]),
             helper.make_node("Gemm", ["f", "W4", "b4"], ["h4"], transB=1), helper.make_node("Relu", ["h4"], ["r4"]),
             helper.make_node("Gemm", ["r4", "W5", "b5"], ["y"], transB=1)]
    return from_proto(make_model(nodes, [1, 4], weights=weights, input_name="z"))


def test_canon_of_a_generator_has_no_batch_normalization_and_no_extra_conv():
    model = generator()
    canonical, _, check = apply_checked("canon", model, Box(np.full(4, -1.0), np.ones(4)))
    assert check.within and "BatchNormalization" not in canonical.op_counts() and "Conv" not in canonical.op_counts()
    assert canonical.op_counts()["ConvTranspose"] == 3


def test_compress_removes_a_dead_channel_before_a_conv_transpose_from_both():
    model = generator()  # 5 s, not 20: the MILP stage's solves run out of any budget and settle nothing removed here
    result = compress_checked(model, Box(np.full(4, -1.0), np.ones(4)), time_limit=5, samples=2000)
    assert result.check.within and result.compression.counts["removed_channels"] == 1
    assert "(channels 2)" in " ".join(result.compression.changes) and "unchanged" not in result.compression.counts
    assert _weights(result.model, "ConvTranspose")[:2] == [(6, 5, 3, 3), (5, 3, 2, 2)]
    assert result.after.parameters < result.before.parameters
    assert result.after.connections < result.before.connections and result.after.neurons < result.before.neurons
    _same_in_onnxruntime(model, result.model)


# --- the layered form: a ConvTranspose is a weighted layer ----------------------------------------------------


def transposed_chain(seed: int = 0, group: int = 1, tail: bool = False) -> Model:
    """x [1, 2, 3, 3] → ConvTranspose (2 → 4, stride 2) → Relu → ConvTranspose (4 → 4, ``group``, pads) → Relu →
    ConvTranspose (4 → 2) [→ Relu → Flatten → Gemm (3 outputs) with ``tail``]; channel 1 of the first is 0 after
    its ReLU (zero filter, bias −1)."""
    rng = np.random.default_rng(seed)
    T1, c1 = rng.normal(0, 0.5, (2, 4, 2, 2)), rng.normal(0, 0.1, 4)
    T1[:, 1], c1[1] = 0.0, -1.0
    weights = {"T1": T1, "c1": c1, "T2": rng.normal(0, 0.5, (4, 4 // group, 3, 3)), "c2": rng.normal(0, 0.1, 4),
               "T3": rng.normal(0, 0.5, (4, 2, 2, 2)), "c3": rng.normal(0, 0.1, 2)}
    nodes = [helper.make_node("ConvTranspose", ["x", "T1", "c1"], ["t1"], strides=[2, 2]),
             helper.make_node("Relu", ["t1"], ["r1"]),
             helper.make_node("ConvTranspose", ["r1", "T2", "c2"], ["t2"], group=group, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["t2"], ["r2"]),
             helper.make_node("ConvTranspose", ["r2", "T3", "c3"], ["t3" if tail else "y"])]
    if tail:
        nodes += [helper.make_node("Relu", ["t3"], ["r3"]), helper.make_node("Flatten", ["r3"], ["f"]),
                  helper.make_node("Gemm", ["f", "W", "b"], ["y"], transB=1)]
        weights.update(W=rng.normal(0, 0.1, (3, 2 * 7 * 7)), b=rng.normal(0, 0.1, 3))
    return from_proto(make_model(nodes, [1, 2, 3, 3], weights=weights))


def test_the_layered_form_round_trips_a_conv_transpose_chain():
    model = transposed_chain()
    net = from_model(model)
    assert [type(layer) for layer in net.layers] == [ConvTranspose, Relu] * 2 + [ConvTranspose]
    _same_in_onnxruntime(model, net.to_model())


def test_the_layered_form_writes_output_padding_only_where_it_is_not_zero():
    """What prune, compress and train write from the layered form reads in α,β-CROWN's converter, which refuses
    the attribute: the default (all zero) is left implicit, a non-zero one written."""
    net = from_model(transposed_chain())
    net.layers[0] = net.layers[0].replace(output_padding=(1, 0))
    written = [n.attrs for n in net.to_model().nodes if n.op == "ConvTranspose"]
    assert written[0]["output_padding"] == [1, 0]
    assert all("output_padding" not in attrs for attrs in written[1:])


def test_a_channel_is_removed_through_conv_transposes_and_laid_out_again():
    model = transposed_chain()
    net = from_model(model)
    found = sites(net)
    assert found == [Site(0, 2, [1], 1), Site(2, 4, [3], 1)]
    layers = remove_channels(net.layers, found[0], np.array([1]))
    assert [layer.W.shape for layer in layers[::2]] == [(2, 3, 2, 2), (3, 4, 3, 3), (4, 2, 2, 2)]
    assert layers[0].ids.tolist() == [0, 2, 3] and layers[0].b.size == 3
    thinned = net.like(model, layers).to_model()
    _same_in_onnxruntime(model, thinned)
    wide = aligned(layers, net.layers, net.shapes())
    assert [layer.W.shape for layer in wide[::2]] == [layer.W.shape for layer in net.layers[::2]]
    assert not wide[0].W[:, 1].any() and not wide[2].W[1].any()
    _same_in_onnxruntime(model, net.like(model, wide).to_model())


def test_a_grouped_conv_transpose_is_neither_a_site_nor_a_consumer():
    net = from_model(transposed_chain(group=2))
    assert sites(net) == []


def test_prune_removes_conv_transpose_channels_and_lays_them_out_at_their_places():
    """Before: the ConvTransposes were passed through (their channels never pruned) and the layers before the first
    Conv or Dense kept out of ``layered.aligned``."""
    model = transposed_chain(tail=True)
    pruned = prune(model, "neuron", 0.3, scope="layer")
    assert pruned.check.within and pruned.details["channels_removed"] == 2  # ⌊0.3·4⌋ of 4 and 4, none of 2
    assert _weights(pruned.model, "ConvTranspose") == [(2, 3, 2, 2), (3, 3, 3, 3), (3, 2, 2, 2)]
    assert pruned.after.parameters < pruned.before.parameters
    assert _weights(pruned.aligned, "ConvTranspose") == _weights(model, "ConvTranspose")
    xs = np.random.default_rng(2).uniform(-1, 1, (64, model.input_size))
    np.testing.assert_allclose(OnnxRunner(pruned.aligned)(xs), OnnxRunner(pruned.model)(xs), rtol=1e-5, atol=1e-5)
