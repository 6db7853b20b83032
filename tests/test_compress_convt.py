"""Issue 19 item 4: compress and transposed convolutions; a compression never grows the network.

A dead Conv channel read by a ConvTranspose goes from the ConvTranspose's input channels too (the first axis of
its weight ``[in, out, *kernel]``); a channel whose 0 reaches its reader as a constant (a BN after the ReLU) stays;
a rewrite that breaks the network is an internal error, not the user's; and a merged bottleneck never makes the
written network larger than its input. Prune, too, takes ConvTransposes before the layers it prunes.
``data/round3/convt`` holds the reported network and box.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_model
from onnx import helper

from nnxform import load
from nnxform.domain import Box
from nnxform.errors import NnxformError
from nnxform.ir import Model, from_proto
from nnxform.passes import Pass, PassReport, apply_checked
from nnxform.pruning import prune
from nnxform.workflows import compress_checked

DATA = Path(__file__).parent / "data" / "round3" / "convt"


def _model(nodes: list, shape: list[int], weights: dict) -> Model:
    return from_proto(make_model(nodes, shape, weights=weights))


def _tail(rng: np.random.Generator, features: int) -> tuple[list, dict]:
    """Flatten → Gemm → Relu → Gemm on tensor ``r``: the dense tail compress works on."""
    nodes = [helper.make_node("Flatten", ["r"], ["f"]), helper.make_node("Gemm", ["f", "W3", "b3"], ["h3"], transB=1),
             helper.make_node("Relu", ["h3"], ["r3"]), helper.make_node("Gemm", ["r3", "W4", "b4"], ["y"], transB=1)]
    return nodes, {"W3": rng.normal(0, 0.3, (5, features)), "b3": rng.normal(0, 0.1, 5),
                   "W4": rng.normal(0, 0.5, (1, 5)), "b4": np.zeros(1)}


def conv_then_transposed(seed: int = 0) -> Model:
    """Conv (channel 1 dead: zero filter, bias −5) → Relu → ConvTranspose → Relu → dense tail."""
    rng = np.random.default_rng(seed)
    W1, b1 = rng.normal(0, 0.5, (3, 1, 2, 2)), rng.normal(0, 0.1, 3)
    W1[1], b1[1] = 0.0, -5.0
    tail, weights = _tail(rng, 2 * 6 * 6)
    nodes = [helper.make_node("Conv", ["x", "W1", "b1"], ["c1"], kernel_shape=[2, 2]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("ConvTranspose", ["r1", "T", "c"], ["t"], kernel_shape=[2, 2]),
             helper.make_node("Relu", ["t"], ["r"])] + tail
    return _model(nodes, [1, 1, 6, 6], dict(weights, W1=W1, b1=b1, T=rng.normal(0, 0.5, (3, 2, 2, 2)), c=np.zeros(2)))


def dead_channel_before_a_bn(seed: int = 0) -> Model:
    """Conv (channel 1 dead) → Relu → BN (β ≠ 0: the dead channel reads β there) → padded Conv → Relu → dense tail."""
    rng = np.random.default_rng(seed)
    W1, b1 = rng.normal(0, 0.5, (3, 1, 3, 3)), rng.normal(0, 0.1, 3)
    W1[1], b1[1] = 0.0, -5.0
    tail, weights = _tail(rng, 2 * 4 * 4)
    nodes = [helper.make_node("Conv", ["x", "W1", "b1"], ["c1"], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("BatchNormalization", ["r1", "g", "be", "mu", "var"], ["n1"]),
             helper.make_node("Conv", ["n1", "W2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r"])] + tail
    return _model(nodes, [1, 1, 6, 6], dict(weights, W1=W1, b1=b1, g=[1.0, 2.0, 0.5], be=[0.3, 1.5, -0.2],
                                             mu=np.zeros(3), var=np.ones(3), W2=rng.normal(0, 0.5, (2, 3, 3, 3)),
                                             b2=rng.normal(0, 0.1, 2)))


def generator(seed: int = 0, channels: int = 8) -> Model:
    """A small cGAN generator look-alike (Gemm → Reshape → ConvTranspose + BN + ReLU → ConvTranspose) with a dense
    tail (a discriminator's): canon cannot fold the BN after the ConvTranspose and writes it as a diagonal Conv."""
    rng = np.random.default_rng(seed)
    C = channels
    tail, weights = _tail(rng, 2 * 8 * 8)
    nodes = [helper.make_node("Gemm", ["z", "W0", "b0"], ["h0"], transB=1), helper.make_node("Relu", ["h0"], ["r0"]),
             helper.make_node("Reshape", ["r0", "shape"], ["s0"]),
             helper.make_node("ConvTranspose", ["s0", "T1", "c1"], ["t1"], strides=[2, 2], pads=[1, 1, 1, 1],
                              output_padding=[1, 1]),
             helper.make_node("BatchNormalization", ["t1", "g", "be", "mu", "var"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("ConvTranspose", ["r1", "T2", "c2"], ["t2"], strides=[2, 2]),
             helper.make_node("Relu", ["t2"], ["r"])] + tail
    weights.update(W0=rng.normal(0, 0.5, (C * 4, 4)), b0=rng.normal(0, 0.1, C * 4), shape=np.array([1, C, 2, 2]),
                   T1=rng.normal(0, 0.3, (C, C, 3, 3)), c1=rng.normal(0, 0.1, C), g=rng.uniform(0.5, 2, C),
                   be=rng.normal(0, 0.5, C), mu=rng.normal(0, 0.5, C), var=rng.uniform(0.5, 2, C),
                   T2=rng.normal(0, 0.3, (C, 2, 2, 2)), c2=rng.normal(0, 0.1, 2))
    return from_proto(make_model(nodes, [1, 4], weights=weights, input_name="z"))


def bottleneck() -> Model:
    """20 → 20 (5 units dead) → 2 (both always active) → 20 → 1 on [−1, 1]: merging the 2-unit layer into the next
    would hold 20×15 weights where the two hold 2×15 + 20×2."""
    rng = np.random.default_rng(0)
    b1 = np.zeros(20)
    b1[:5] = -100.0
    W2, W3 = rng.normal(0, 0.3, (2, 20)), rng.normal(0, 1, (20, 2))
    weights = {"W1": rng.normal(0, 1, (20, 20)), "b1": b1, "W2": W2, "b2": [100.0, 100.0], "W3": W3,
               "b3": -W3 @ [100.0, 100.0], "W4": rng.normal(0, 0.3, (1, 20)), "b4": [0.0]}
    nodes = []
    for k in range(1, 5):
        nodes.append(helper.make_node("Gemm", [f"r{k - 1}" if k > 1 else "x", f"W{k}", f"b{k}"],
                                      [f"h{k}" if k < 4 else "y"], transB=1))
        if k < 4:
            nodes.append(helper.make_node("Relu", [f"h{k}"], [f"r{k}"]))
    return _model(nodes, [1, 20], weights)


def _convs(model: Model, op: str) -> list[tuple[int, ...]]:
    return [model.constants[n.inputs[1]].shape for n in model.nodes if n.op == op]


def test_the_reported_network_compresses_and_its_conv_transpose_is_narrowed():
    model = load(DATA / "n107.onnx")
    box = Box(np.load(DATA / "lo107.npy").reshape(-1), np.load(DATA / "hi107.npy").reshape(-1))
    result = compress_checked(model, box, seed=1, time_limit=20, samples=2000)
    assert result.check.within and result.compression.counts["removed_channels"] == 1
    assert _convs(result.model, "Conv")[0][0] == _convs(result.model, "ConvTranspose")[0][0] == 2


def test_a_dead_channel_read_by_a_conv_transpose_goes_from_both():
    model = conv_then_transposed()
    result = compress_checked(model, Box(np.full(36, -1.0), np.ones(36)), time_limit=20, samples=2000)
    assert result.check.within and "(channels 1)" in " ".join(result.compression.changes)
    assert _convs(result.model, "Conv") == [(2, 1, 2, 2)] and _convs(result.model, "ConvTranspose") == [(2, 2, 2, 2)]


def test_a_dead_channel_whose_zero_reaches_its_reader_as_a_constant_stays():
    """Before: the channel went with its BN's constant β and compress refused its own result ("please report")."""
    model = dead_channel_before_a_bn()
    result = compress_checked(model, Box(np.zeros(36), np.ones(36)), time_limit=20, samples=2000)
    assert result.check.within and "removed_channels" not in result.compression.counts
    assert _convs(result.model, "Conv")[0][0] == 3


def test_a_rewrite_that_breaks_the_network_is_an_internal_error():
    def broken(model: Model) -> tuple[Model, PassReport]:
        model = model.copy()
        weight = next(n.inputs[1] for n in model.nodes if n.op == "Gemm")
        model.constants[weight] = model.constants[weight][:, :-1]  # one input column short
        return model, PassReport("broken")

    with pytest.raises(RuntimeError, match="broken built a network that cannot be computed") as raised:
        apply_checked(Pass("broken", "drops a column", True, broken), bottleneck())
    assert not isinstance(raised.value, NnxformError)


@pytest.mark.parametrize("make, box", [(generator, Box(np.full(4, -1.0), np.ones(4))),
                                       (bottleneck, Box(np.full(20, -1.0), np.ones(20)))],
                         ids=["generator", "bottleneck"])
def test_a_compression_never_grows_the_network(make, box):
    # 5 s, not 20: the generator's MILP stage spends any budget on root solves that run out of time, and the
    # compression it gets is the same at 2 s as at 20 s
    result = compress_checked(make(), box, time_limit=5, samples=2000)
    assert result.check.within
    assert result.after.neurons <= result.before.neurons and result.after.connections <= result.before.connections


def test_a_stably_active_bottleneck_is_kept_rather_than_merged_into_more_weights():
    result = compress_checked(bottleneck(), Box(np.full(20, -1.0), np.ones(20)), time_limit=20, samples=2000)
    assert result.compression.counts.get("removed_inactive") == 5 and "merged" not in result.compression.counts
    assert result.after.connections < result.before.connections


def two_transposed(seed: int = 0) -> Model:
    """ConvTranspose (1 → 2) → BN → Relu → ConvTranspose (2 → 3) → Relu → dense tail: the BN becomes a per-channel
    affine Conv in canon's form, its 2 channels then widened to 3 by the second ConvTranspose."""
    rng = np.random.default_rng(seed)
    tail, weights = _tail(rng, 3 * 6 * 6)
    nodes = [helper.make_node("ConvTranspose", ["x", "T1", "c1"], ["t1"], kernel_shape=[2, 2]),
             helper.make_node("BatchNormalization", ["t1", "g", "be", "mu", "var"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("ConvTranspose", ["r1", "T2", "c2"], ["t2"], kernel_shape=[2, 2]),
             helper.make_node("Relu", ["t2"], ["r"])] + tail
    return _model(nodes, [1, 1, 4, 4], dict(weights, T1=rng.normal(0, 0.5, (1, 2, 2, 2)), c1=rng.normal(0, 0.1, 2),
                                             g=[1.0, 2.0], be=[0.1, -0.1], mu=[0.0, 0.2], var=[1.0, 0.5],
                                             T2=rng.normal(0, 0.5, (2, 3, 2, 2)), c2=rng.normal(0, 0.1, 3)))


@pytest.mark.parametrize("method", ["neuron", "weight", "saliency"])
def test_prune_takes_transposed_convolutions_before_the_layers_it_prunes(method):
    """Before: the pruned network laid out at the original widths followed stale channel ids through the
    ConvTransposes (``layered.aligned`` does not know them) and crashed with a shape mismatch."""
    result = prune(two_transposed(), method, 0.4)
    assert result.check.within and result.after.parameters < result.before.parameters
