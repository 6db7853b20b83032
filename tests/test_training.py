"""The training engine (``nnxform.training``) and the ``init`` / ``train`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from nnxform import layered
from nnxform.errors import NnxformError
from nnxform.ir import load
from nnxform.training import TrainOptions, init_network, loss_and_gradients, train, trainable

from conftest import MODELS, run_cli


def _blobs(n: int = 120, features: int = 8, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable labelled points: one Gaussian blob per class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(0, 2, (classes, features))
    return centres[labels] + rng.normal(0, 0.5, (n, features)), labels


def _csv(path: Path, xs: np.ndarray, labels: np.ndarray) -> Path:
    path.write_text("\n".join(",".join([str(int(y))] + [f"{v:.6f}" for v in x]) for x, y in zip(xs, labels)) + "\n")
    return path


def _tiny_net(seed: int = 0) -> layered.Network:
    """Dense → BatchNorm → Relu → Dense → Relu → Dense with random non-zero parameters (and BN statistics)."""
    rng = np.random.default_rng(seed)
    layers = [layered.Dense(name="d0", W=rng.normal(size=(5, 3)), b=rng.normal(size=5)),
              layered.BatchNorm(name="bn", gamma=rng.normal(size=5), beta=rng.normal(size=5),
                                mean=rng.normal(size=5), var=rng.uniform(0.5, 2, 5)),
              layered.Relu(name="r0"),
              layered.Dense(name="d1", W=rng.normal(size=(4, 5)), b=rng.normal(size=4)),
              layered.Relu(name="r1"),
              layered.Dense(name="d2", W=rng.normal(size=(2, 4)), b=rng.normal(size=2))]
    return layered.Network(layers, "x", (1, 3), "y")


def _dense(net: layered.Network) -> list[layered.Dense]:
    return [layer for layer in net.layers if isinstance(layer, layered.Dense)]


def _conv_net(seed: int = 0) -> layered.Network:
    rng = np.random.default_rng(seed)
    layers = [layered.Conv(name="c0", W=rng.normal(0, 0.5, (3, 1, 3, 3)), b=np.zeros(3), strides=(1, 1),
                           pads=(1, 1, 1, 1), dilations=(1, 1)),
              layered.Relu(name="r0"),
              layered.AvgPool(name="p0", kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0)),
              layered.Flatten(name="f"),
              layered.Dense(name="d0", W=rng.normal(0, 0.3, (3, 12)), b=np.zeros(3))]
    return layered.Network(layers, "x", (1, 1, 4, 4), "y")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_step_lowers_the_loss_on_a_fixed_batch(optimizer: str) -> None:
    xs, labels = _blobs(32)
    net = init_network([8, 16, 3], seed=1)
    before, _ = loss_and_gradients(net, xs, labels)
    trained, result = train(net, xs, labels, options=TrainOptions(epochs=1, batch_size=32, lr=0.01,
                                                                  optimizer=optimizer))
    after, _ = loss_and_gradients(trained, xs, labels)
    assert after < before
    assert result.epochs[0].loss == pytest.approx(before)  # the epoch's loss is the batch's before the step


@pytest.mark.parametrize("kind", ["labels", "targets"])
def test_gradients_of_the_full_loss_match_finite_differences(kind: str) -> None:
    net = _tiny_net()
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(7, 3))
    data = {"labels": rng.integers(0, 2, 7)} if kind == "labels" else {"targets": rng.normal(size=(7, 2))}
    l1, l1_gamma = 0.03, 0.05
    _, grads = loss_and_gradients(net, xs, l1=l1, l1_bn_gamma=l1_gamma, **data)
    assert set(grads[1]) == {"gamma", "beta"}  # the running statistics are not trained
    h = 1e-6
    for k, layer in enumerate(net.layers):
        for name, g in grads[k].items():
            p = getattr(layer, name)
            numeric = np.zeros_like(p)
            for i in np.ndindex(p.shape):
                old = p[i]
                p[i] = old + h
                up, _ = loss_and_gradients(net, xs, l1=l1, l1_bn_gamma=l1_gamma, **data)
                p[i] = old - h
                down, _ = loss_and_gradients(net, xs, l1=l1, l1_bn_gamma=l1_gamma, **data)
                p[i] = old
                numeric[i] = (up - down) / (2 * h)
            np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-7, err_msg=f"{layer.name}.{name}")


def test_the_engine_agrees_with_the_layered_backward() -> None:
    """The engine's own Dense/Relu kernels give what the operator table gives (Network.backward)."""
    net = _tiny_net(1)
    xs = np.random.default_rng(0).normal(size=(6, 3))
    targets = np.zeros((6, 2))
    _, grads = loss_and_gradients(net, xs, targets=targets)
    out, reference = net.backward(xs, 2 * (net.forward(xs).reshape(6, 2) - targets) / 12)
    for mine, theirs in zip(grads, reference.params):
        for name in mine:
            np.testing.assert_allclose(mine[name], theirs[name], rtol=1e-12, atol=1e-12)


def test_keep_zeros_keeps_every_pruned_weight_at_zero() -> None:
    xs, labels = _blobs()
    net = init_network([8, 16, 16, 3], seed=2)
    rng = np.random.default_rng(0)
    for layer in _dense(net):
        layer.W[rng.random(layer.W.shape) < 0.5] = 0.0
    zeros = [layer.W == 0 for layer in _dense(net)]
    for optimizer in ("sgd", "adam"):
        trained, _ = train(net, xs, labels, options=TrainOptions(epochs=3, batch_size=16, lr=0.05, l1=1e-3,
                                                                 optimizer=optimizer, keep_zeros=True))
        for layer, zero, old in zip(_dense(trained), zeros, _dense(net)):
            assert np.all(layer.W[zero] == 0)
            assert np.any(layer.W[~zero] != old.W[~zero])  # the others did train


def test_l1_on_batchnorm_gamma_shrinks_gamma() -> None:
    xs, labels = _blobs(200)
    net = init_network([8, 32, 16, 3], batchnorm=True, seed=0)

    def total_gamma(n: layered.Network) -> float:
        return sum(float(np.abs(layer.gamma).sum()) for layer in n.layers if isinstance(layer, layered.BatchNorm))

    plain, _ = train(net, xs, labels, options=TrainOptions(epochs=10, lr=0.01))
    sparse, _ = train(net, xs, labels, options=TrainOptions(epochs=10, lr=0.01, l1_bn_gamma=0.05))
    assert total_gamma(sparse) < 0.8 * total_gamma(net)
    assert total_gamma(sparse) < total_gamma(plain)


def test_a_conv_network_trains() -> None:
    xs, labels = _blobs(96, features=16)
    xs = xs.reshape(96, 1, 4, 4)
    _, result = train(_conv_net(), xs, labels, options=TrainOptions(epochs=8, lr=0.01, batch_size=16))
    losses = [e.loss for e in result.epochs]
    assert losses[-1] < 0.7 * losses[0]


def test_mse_on_targets_and_early_stop_keep_the_best_epoch() -> None:
    xs, _ = _blobs(150)
    targets = np.stack([np.sin(xs[:, 0]), xs[:, 1] * xs[:, 2]], axis=1)
    net = init_network([8, 32, 2], seed=0)
    trained, result = train(net, xs, targets=targets, options=TrainOptions(epochs=40, lr=0.05, validation=0.2,
                                                                           patience=2))
    assert result.loss == "mse" and result.validation_samples == 30
    scores = [e.validation_loss for e in result.epochs]
    assert result.best_epoch == 1 + int(np.argmin(scores))
    assert result.stopped_early == (len(result.epochs) < 40)
    assert result.epochs[-1].accuracy is None


def test_fixed_layers_are_not_trained_and_weights_the_engine_cannot_train_are_refused() -> None:
    xs, labels = _blobs(40)
    net = init_network([8, 8, 3], seed=0)
    scale = layered.Fixed(name="scale", op="Mul", constants=[np.full((1, 8), 0.5)])
    net = layered.Network([scale, *net.layers], net.input_name, net.input_shape, net.output_name)
    trained, result = train(net, xs, labels, options=TrainOptions(epochs=1))
    assert result.untrained == ["scale"] and trained.layers[0] is scale
    with pytest.raises(NnxformError, match="MatMul"):
        trainable(load(MODELS / "test_small.onnx"))  # MatMul on a 1-D input: weights canon cannot make a Gemm


def test_the_network_s_input_is_not_changed_and_bad_options_are_refused() -> None:
    xs, labels = _blobs(20)
    net = init_network([8, 4, 3], seed=0)
    before = net.to_model().to_bytes()
    train(net, xs, labels, options=TrainOptions(epochs=1))
    assert net.to_model().to_bytes() == before
    for bad in (TrainOptions(lr=0), TrainOptions(epochs=0), TrainOptions(batch_size=0), TrainOptions(optimizer="x"),
                TrainOptions(validation=1.0), TrainOptions(l1_bn_gamma=0.1)):
        with pytest.raises(NnxformError):
            train(net, xs, labels, options=bad)
    with pytest.raises(NnxformError, match="labels"):
        train(net, xs, labels + 3)


def test_init_and_train_are_reproducible_for_a_seed(tmp_path: Path) -> None:
    xs, labels = _blobs(100, features=16, classes=4)
    data = _csv(tmp_path / "d.csv", xs, labels)
    files = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        out = tmp_path / f"{name}.onnx"
        r = run_cli("init", "--layers", "16,12,4", "--batchnorm", "--input-shape", "1,1,4,4", "--seed", seed, "-o", out)
        assert r.returncode == 0, r.stderr
        files[name] = out.read_bytes()
    assert files["a"] == files["b"] != files["c"]
    init = load(tmp_path / "a.onnx")
    assert init.input_shape == (1, 1, 4, 4) and init.op_counts()["BatchNormalization"] == 1
    trained = []
    for name in ("t1", "t2"):
        out = tmp_path / f"{name}.onnx"
        r = run_cli("train", tmp_path / "a.onnx", "--data", data, "-o", out, "--epochs", 3, "--seed", 5,
                    "--validation", 0.2, "--l1-bn-gamma", 1e-3, "--json", tmp_path / f"{name}.json")
        assert r.returncode == 0, r.stderr
        assert "epoch 3/3" in r.stdout
        trained.append(out.read_bytes())
    assert trained[0] == trained[1] != files["a"]
    proto = onnx.load_from_string(trained[0])
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["output"]
    meta = {p.key: p.value for p in proto.metadata_props}
    params = json.loads(meta["nnxform.parameters"])
    assert meta["nnxform.pass"] == "train" and params["seed"] == 5 and params["data"] == "d.csv"
    assert len(params["data_sha256"]) == 64 and params["l1_bn_gamma"] == 1e-3
    report = json.loads((tmp_path / "t1.json").read_text())
    assert len(report["epochs"]) == 3 and report["hyper_parameters"]["validation"] == 0.2
    assert load(tmp_path / "t1.onnx").op_counts()["BatchNormalization"] == 1  # γ kept trainable until folded


def test_a_diverging_loss_stops_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    xs, labels = _blobs(64)
    data = _csv(tmp_path / "d.csv", xs, labels)
    assert run_cli("init", "--layers", "8,16,16,3", "-o", tmp_path / "n.onnx").returncode == 0
    r = run_cli("train", tmp_path / "n.onnx", "--data", data, "-o", tmp_path / "out.onnx", "--optimizer", "sgd",
                "--lr", 1e6, "--epochs", 5, "--json", tmp_path / "r.json")
    assert r.returncode == 2 and "diverged" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.onnx").exists() and not (tmp_path / "r.json").exists()


def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    xs, labels = _blobs(30)
    good = _csv(tmp_path / "good.csv", xs, labels)
    out_of_range = _csv(tmp_path / "labels.csv", xs, labels + 5)
    narrow = _csv(tmp_path / "narrow.csv", xs[:, :5], labels)
    with_nan = xs.copy()
    with_nan[3, 2] = np.nan
    nan = _csv(tmp_path / "nan.csv", with_nan, labels)
    net = tmp_path / "n.onnx"
    assert run_cli("init", "--layers", "8,6,3", "-o", net).returncode == 0
    cases = [["--data", out_of_range], ["--data", narrow], ["--data", nan], ["--data", good, "--lr", 0],
             ["--data", good, "--lr", -1], ["--data", good, "--epochs", 0], ["--data", good, "--batch-size", 0],
             ["--data", good, "--optimizer", "rmsprop"], ["--data", good, "--validation", 1]]
    for case in cases:
        r = run_cli("train", net, *case, "-o", tmp_path / "out.onnx")
        assert r.returncode == 2, (case, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (case, r.stderr)
        assert not (tmp_path / "out.onnx").exists()
    for case in (["--layers", "8"], ["--layers", "8,0,3"], ["--layers", "8,3", "--input-shape", "1,9"]):
        r = run_cli("init", *case, "-o", tmp_path / "out.onnx")
        assert r.returncode == 2 and not (tmp_path / "out.onnx").exists(), (case, r.stderr)
