"""``nnxform evaluate`` on image data: channel-last points (``--layout nhwc``), per-channel normalisation
(``--mean``/``--std``) with FGSM's ε and clip bounds mapped through it, a network's own input normalisation, and
per-point predictions in the JSON report."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from onnx import helper

from conftest import MODELS, assert_clean_error, make_model, run_cli, save
from nnxform.accuracy import Preprocessing, fgsm, input_normalisation, load_data, measure
from nnxform.errors import NnxformError
from nnxform.ir import from_proto, load
from nnxform.runtime import OnnxRunner

C, H, W, CLASSES, N = 3, 4, 4, 4, 60
MEAN, STD = (0.5, 0.25, 0.375), (0.25, 0.5, 0.125)  # exact in float32, so both networks compute the same inputs


def cnn_proto(normalise: bool = False, seed: int = 0):
    """Conv(3→5, 3×3, pad 1) → Relu → Flatten → Gemm(80→4) on [1, 3, 4, 4]; ``normalise``: Sub(MEAN), Div(STD)
    per channel on the input first, as exported networks trained on normalised images do."""
    rng = np.random.default_rng(seed)
    ws = {"W": rng.normal(0, 0.5, (5, C, 3, 3)), "b": rng.normal(0, 0.1, 5),
          "G": rng.normal(0, 0.3, (CLASSES, 5 * H * W)), "g": rng.normal(0, 0.1, CLASSES)}
    nodes = [helper.make_node("Conv", ["xn", "W", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "G", "g"], ["y"], transB=1)]
    if normalise:
        ws.update(mean=np.reshape(MEAN, (1, C, 1, 1)), std=np.reshape(STD, (1, C, 1, 1)))
        nodes = [helper.make_node("Sub", ["x", "mean"], ["xc"]), helper.make_node("Div", ["xc", "std"], ["xn"])] + nodes
    else:
        nodes[0].input[0] = "x"
    return make_model(nodes, [1, C, H, W], weights=ws)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """The plain CNN, the same CNN normalising its input, and their files."""
    folder = tmp_path_factory.mktemp("nets")
    plain, normed = save(cnn_proto(), folder / "cnn.onnx"), save(cnn_proto(True), folder / "cnn_norm.onnx")
    return load(plain), load(normed), plain, normed


@pytest.fixture(scope="module")
def pixels(nets):
    """Integer pixels (n, H, W, C) and labels: the plain network's class on pixels / 255 for two thirds of the
    points, a random class for the rest (so the accuracy is neither 0 nor 1)."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (N, H, W, C)).astype(np.float64)
    labels = OnnxRunner(nets[0])(images.transpose(0, 3, 1, 2) / 255).argmax(axis=1)
    labels[::3] = rng.integers(0, CLASSES, len(labels[::3]))
    return images, labels


def write_csv(path, images, labels):
    """ERAN's CSV form: label, then the pixels row-major with the channels last."""
    rows = np.column_stack([labels, images.reshape(len(images), -1)])
    np.savetxt(path, rows, delimiter=",", fmt="%d")
    return path


def succeeded(result: subprocess.CompletedProcess) -> tuple[str, str]:
    """stdout and stderr of a ``run_cli`` result that must have succeeded."""
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr


def test_nhwc_csv_is_transposed_to_the_network_input(tmp_path, nets, pixels):
    plain, _, plain_path, _ = nets
    images, labels = pixels
    csv = write_csv(tmp_path / "cifar.csv", images, labels)
    expected = OnnxRunner(plain)(images.transpose(0, 3, 1, 2) / 255).argmax(axis=1)
    out, _ = succeeded(run_cli("evaluate", plain_path, "--data", csv, "--scale", 255,
                            "--layout", "nhwc", "--eps", 0.02, "--json", tmp_path / "e.json"))
    assert "channel-last points (H×W×C) transposed" in out
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["predictions"] == expected.tolist() and doc["layout"] == "nhwc"
    assert doc["accuracy"] == pytest.approx(np.mean(expected == labels)) and 0 < doc["accuracy"] < 1
    # the same rows read in the network's own order give other classes: the layout matters here
    assert not np.array_equal(measure(plain, load_data(csv, 255), []).predictions, expected)


def test_npz_images_channel_last_or_first(tmp_path, nets, pixels):
    plain = nets[0]
    images, labels = pixels
    expected = OnnxRunner(plain)(images.transpose(0, 3, 1, 2)).argmax(axis=1)
    np.savez(tmp_path / "hwc.npz", x=images, y=labels)
    np.savez(tmp_path / "chw.npz", x=images.transpose(0, 3, 1, 2), y=labels)
    np.savez(tmp_path / "flat.npz", x=images.reshape(N, -1), y=labels)
    for name, layout in (("hwc", "nhwc"), ("flat", "nhwc"), ("chw", "nchw")):
        result = measure(plain, load_data(tmp_path / f"{name}.npz"), [], prep=Preprocessing(layout))
        np.testing.assert_array_equal(result.predictions, expected)
    with pytest.raises(NnxformError, match=r"shape \(4, 4, 3\).*give --layout nhwc"):
        measure(plain, load_data(tmp_path / "hwc.npz"), [])
    with pytest.raises(NnxformError, match=r"shape \(3, 4, 4\).*leave out --layout nhwc"):
        measure(plain, load_data(tmp_path / "chw.npz"), [], prep=Preprocessing("nhwc"))


def test_mean_std_equal_the_network_that_normalises_itself(tmp_path, nets, pixels):
    _, _, plain_path, normed_path = nets
    images, labels = pixels
    csv = write_csv(tmp_path / "cifar.csv", images, labels)
    common = ["--data", csv, "--scale", 255, "--layout", "nhwc", "--eps", 0.01, "--eps", 0.05, "--eps", 0.3]
    out, _ = succeeded(run_cli("evaluate", normed_path, *common, "--json", tmp_path / "n.json"))
    assert f"{normed_path} normalises its input itself ('Sub_0', 'Div_1'): give pixels" in out
    out, _ = succeeded(run_cli("evaluate", plain_path, *common, "--mean", ",".join(map(str, MEAN)),
                            "--std", ",".join(map(str, STD)), "--json", tmp_path / "p.json"))
    assert "normalised (x − mean) / std per channel (mean 0.5,0.25,0.375; std 0.25,0.5,0.125)" in out
    assert "normalises its input itself" not in out
    normed, plain = (json.loads((tmp_path / f"{k}.json").read_text()) for k in "np")
    assert normed["input_normalisation"] == ["Sub_0", "Div_1"] and plain["input_normalisation"] == []
    assert plain["predictions"] == normed["predictions"] and plain["accuracy"] == normed["accuracy"]
    assert plain["robustness"] == normed["robustness"] and plain["clip"] == normed["clip"] == [0.0, 1.0]
    assert normed["robustness"]["0.3"] < normed["robustness"]["0.01"]  # the attack does something


def test_normalising_twice_is_warned_about_not_refused(tmp_path, nets, pixels):
    _, _, _, normed_path = nets
    csv = write_csv(tmp_path / "cifar.csv", *pixels)
    out, _ = succeeded(run_cli("evaluate", normed_path, "--data", csv, "--scale", 255, "--layout",
                            "nhwc", "--mean", "0.5", "--std", "0.25"))
    assert [line.strip() for line in out.splitlines() if "warning" in line] == [
        f"warning: {normed_path} normalises its input itself ('Sub_0', 'Div_1') and --mean/--std normalise the "
        "points too: the normalisation is applied twice"]
    out, err = succeeded(run_cli("evaluate", normed_path, "--data", csv, "--scale", 255, "--layout",
                              "nhwc", "--mean", "0.5", "--json", "-"))
    assert json.loads(out)["mean"] == [0.5] and "applied twice" in err


def test_clip_bounds_are_mapped_per_channel(nets, pixels):
    plain, normed = nets[:2]
    x = pixels[0].transpose(0, 3, 1, 2).reshape(N, -1) / 255
    y = pixels[1]
    prep = Preprocessing(mean=MEAN, std=STD)
    lo, hi = prep.clip(plain, (0.0, 1.0))
    channel = np.repeat(np.arange(C), H * W)
    np.testing.assert_allclose(lo, (0 - np.take(MEAN, channel)) / np.take(STD, channel))
    np.testing.assert_allclose(hi, (1 - np.take(MEAN, channel)) / np.take(STD, channel))
    assert prep.clip(plain, (None, 0.5))[0] is None
    z = (x - np.take(MEAN, channel)) / np.take(STD, channel)
    for eps in (0.05, 0.4):  # 0.4: most points hit a bound, on every channel
        adv_z = fgsm(plain, z, y, eps / np.take(STD, channel), (lo, hi))
        assert np.all(adv_z >= lo) and np.all(adv_z <= hi)
        back = adv_z * np.take(STD, channel) + np.take(MEAN, channel)  # to pixels
        adv_x = fgsm(normed, x, y, eps, (0.0, 1.0))  # the attack on pixels of the network that normalises them
        np.testing.assert_allclose(back, adv_x, atol=1e-12)
        assert np.abs(back - x).max() <= eps + 1e-12
    hit = np.isclose(back, 0.0) | np.isclose(back, 1.0)
    assert all(hit[:, channel == c].any() for c in range(C)) and not hit.all()


def test_input_normalisation_is_the_constant_chain_at_the_input(nets):
    assert input_normalisation(nets[0]) == [] and input_normalisation(nets[1]) == ["Sub_0", "Div_1"]
    scaled = make_model([helper.make_node("Mul", ["s", "x"], ["a"]), helper.make_node("Add", ["a", "t"], ["b"]),
                         helper.make_node("Sub", ["t", "b"], ["y"])], [1, 3], weights={"s": [2.0], "t": [1.0]})
    assert input_normalisation(from_proto(scaled)) == ["Mul_0", "Add_1"]  # t − b is no normalisation


@pytest.mark.parametrize("args, text", [
    (["--layout", "hwc"], "--layout must be nchw or nhwc, got 'hwc'"),
    (["--mean", "0.1,0.2"], "--mean has 2 values but the network input [1, 3, 4, 4] has 3 channels; give one value or 3"),
    (["--std", "0.2,0,0.2"], "--std values must be > 0, got 0.2,0,0.2"),
    (["--std", "-1"], "--std values must be > 0, got -1"),
    (["--mean", "0.1,,0.2"], "--mean must be a comma list of numbers"),
    (["--mean", "nan"], "--mean must be finite numbers"),
])
def test_bad_options_are_one_line_and_write_nothing(tmp_path, nets, pixels, args, text):
    csv = write_csv(tmp_path / "cifar.csv", *pixels)
    out = tmp_path / "e.json"
    err = assert_clean_error(run_cli("evaluate", nets[2], "--data", csv, "--layout", "nhwc",
                                   *args, "--json", out))
    assert text in err and not out.exists()


def test_a_layout_that_does_not_fit_is_refused(tmp_path, nets, pixels):
    images, labels = pixels
    out = tmp_path / "e.json"
    cartpole = write_csv(tmp_path / "cartpole.csv", np.ones((2, 4)), np.array([0, 1]))
    err = assert_clean_error(run_cli("evaluate", MODELS / "cartpole.onnx", "--data", cartpole,
                                   "--layout", "nhwc", "--json", out))
    assert "--layout nhwc needs a network input [1, C, H, W]; this one's is [1, 4]" in err
    err = assert_clean_error(run_cli("evaluate", MODELS / "cartpole.onnx", "--data", cartpole,
                                   "--mean", "0,0,0", "--json", out))
    assert "--mean with 3 values (one per channel) needs a network input [1, C, H, W]" in err
    short = write_csv(tmp_path / "short.csv", images[:, :, :3], labels)
    err = assert_clean_error(run_cli("evaluate", nets[2], "--data", short, "--layout", "nhwc",
                                   "--json", out))
    assert "points have 36 features but the network input has 48 elements" in err and not out.exists()


def test_json_lists_the_predictions_of_both_networks(tmp_path, nets, pixels):
    plain, normed, plain_path, normed_path = nets
    images, labels = pixels
    np.savez(tmp_path / "d.npz", x=images / 255, y=labels)
    out, _ = succeeded(run_cli("evaluate", plain_path, "--data", tmp_path / "d.npz", "--layout",
                            "nhwc", "--against", normed_path, "--eps", 0.01, "--json", "-"))
    doc = json.loads(out)
    chw = images.transpose(0, 3, 1, 2) / 255
    assert doc["predictions"] == OnnxRunner(plain)(chw).argmax(axis=1).tolist()
    assert doc["against"]["predictions"] == OnnxRunner(normed)(chw).argmax(axis=1).tolist()
    assert all(isinstance(p, int) for p in doc["predictions"]) and len(doc["predictions"]) == N
    assert doc["agreement"] == pytest.approx(np.mean(np.equal(doc["predictions"], doc["against"]["predictions"])))
