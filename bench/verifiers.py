"""``make verifiers``: which external verifiers read what nnxform writes (issue 14, item 4).

Installs each verifier the package index offers in its own virtual environment under ``build/verifiers/``
(maraboupy 2.0.0; pynever; onnx2torch, which α,β-CROWN loads ONNX with; auto_LiRPA), writes the outputs of
every nnxform command on the bundled models and the VNN-LIB files nnxform writes or normalises, then runs each
verifier on each file in its own environment: does it load, does it compute what onnxruntime computes on 100
inputs of the command's box (within 1e-5·(1 + max |y|)), how long did it take, and does that agree with
``nnxform info --for``. Prints the table (markdown); ``--out FILE`` also writes it.

Run with the project's venv (``.venv/bin/python bench/verifiers.py``); the same file is the worker each
verifier's environment runs (``--worker``), which imports nothing from nnxform.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "verifiers"
INSTALL_TIMEOUT = 600.0  # a verifier whose install takes longer is "not installable here"
TORCH_CPU = "https://download.pytorch.org/whl/cpu"  # may be unreachable: then torch comes from the default index
SAMPLES, TOL = 100, 1e-5
EVALUATION_BUDGET = 60.0  # seconds of evaluateWithMarabou per network (one solve per input)

#: column → (environment, packages, module that must import afterwards, needs torch, profile of nnxform info --for)
VERIFIERS = {
    "Marabou 2.0.0": ("marabou", ["maraboupy==2.0.0", "onnxruntime", "onnx"], "maraboupy", False, "marabou"),
    "pynever": ("pynever", ["pynever", "onnxruntime"], "pynever", True, "pynever"),
    "onnx2torch (α,β-CROWN)": ("onnx2torch", ["onnx2torch", "onnxruntime", "onnx"], "onnx2torch", True, "abcrown"),
    "auto_LiRPA": ("auto_lirpa", ["auto_LiRPA", "onnx2torch", "onnxruntime", "onnx"], "auto_LiRPA", True, "abcrown"),
}
#: verifiers with a profile but no package on the index: their rules are checked from their source only
NOT_ON_INDEX = {"nnenum": "not on the package index", "NNV": "MATLAB toolbox", "ERAN": "needs ELINA/Gurobi builds"}


# --- installing ------------------------------------------------------------------------------------------


def _pip(env: Path, args: list[str], deadline: float) -> subprocess.CompletedProcess:
    """``pip install ARGS`` in ``env``, within what is left of the install's time (not quiet: -q hides a conflict's
    cause)."""
    return subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", *args], capture_output=True,
                          text=True, timeout=max(1.0, deadline - time.monotonic()))


def install(env_name: str, packages: list[str], module: str, torch: bool) -> tuple[bool, str]:
    """Create ``build/verifiers/ENV`` with ``packages``: torch from the CPU index first, else all from the default."""
    env = BUILD / env_name
    python = env / "bin" / "python"
    imports = lambda: subprocess.run([str(python), "-c", f"import {module}"], capture_output=True)  # noqa: E731
    if python.exists() and imports().returncode == 0:
        return True, "installed earlier"
    start = time.monotonic()
    deadline = start + INSTALL_TIMEOUT
    # the CPU wheels are a tenth of the default ones, but their index may be unreachable or mismatch a dependency
    attempts = [["--index-url", TORCH_CPU, "--timeout", "20", "--retries", "0", "torch"], None] if torch else [None]
    failure = "pip failed"
    for first in attempts:
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True, capture_output=True)
            if first is not None and _pip(env, first, deadline).returncode != 0:
                continue
            done = _pip(env, packages, deadline)
        except subprocess.TimeoutExpired:
            return False, f"not installable here (install over {INSTALL_TIMEOUT / 60:.0f} min)"
        if done.returncode != 0:  # the cause pip names (a dependency), else its first error
            lines = (done.stdout + done.stderr).splitlines()  # pip prints the conflict's cause on stdout
            error = [line for line in lines if " depends on " in line] or \
                [line for line in lines if line.startswith("ERROR")] or ["pip failed"]
            failure = error[0].strip().removeprefix("ERROR: ")[:120]
        elif imports().returncode != 0:
            failure = f"installed, but `import {module}` fails"
        else:
            return True, f"installed in {time.monotonic() - start:.0f} s"
    return False, f"not installable here ({failure})"


# --- what nnxform writes ---------------------------------------------------------------------------------

M = ROOT / "models"
V = M / "vnnlib"


def _commands(out: Path) -> list[tuple[str, str, list[str], str | None]]:
    """(label, output file, nnxform arguments, VNN-LIB file giving the box or None) for every artefact."""
    mnist, mnist_box = M / "mnist-net_256x2.onnx", V / "mnist_prop_0_0.03.vnnlib"
    acas, acas_box = M / "ACASXU_run2a_1_1_batch_2000.onnx", V / "acasxu_prop_1.vnnlib"
    box = lambda v: ["--vnnlib", str(v)]  # noqa: E731
    jobs: list[tuple[str, str, list[str], str | None]] = []
    for model in sorted(M.glob("*.onnx")):
        if model.name.startswith("torch_dynamo"):  # external data: its canon output is torch_resnet's twin
            continue
        jobs.append((f"canon {model.name}", f"{model.stem}.canon.onnx", ["canon", str(model)], None))
    for name in ("bn_after_relu_conv", "bn_cnn", "bn_mlp", "bn_on_input", "marabou_layerzoo_batchnorm"):
        jobs.append((f"fold-bn {name}.onnx", f"{name}.fold-bn.onnx", ["fold-bn", str(M / f"{name}.onnx")], None))
    for verifier in ("marabou", "nnenum", "pynever", "abcrown", "nnv", "eran"):
        jobs.append((f"canon --for {verifier} bn_after_relu_conv.onnx", f"bn_after_relu_conv.for-{verifier}.onnx",
                     ["canon", str(M / "bn_after_relu_conv.onnx"), "--for", verifier], None))
    jobs += [
        ("canon --for nnenum marabou_layerzoo_batchnorm.onnx", "layerzoo.for-nnenum.onnx",
         ["canon", str(M / "marabou_layerzoo_batchnorm.onnx"), "--for", "nnenum"], None),
        ("prune mnist-net_256x2 (neuron 30%)", "mnist.prune.onnx",
         ["prune", str(mnist), "--method", "neuron", "--ratio", "0.3", *box(mnist_box)], str(mnist_box)),
        ("prune ACAS Xu (weight 50%)", "acas.prune.onnx",
         ["prune", str(acas), "--method", "weight", "--ratio", "0.5", *box(acas_box)], str(acas_box)),
        ("compress mnist-net_256x2", "mnist.compress.onnx", ["compress", str(mnist), *box(mnist_box)], str(mnist_box)),
        ("pad ACAS Xu --depth 9", "acas.pad9.onnx", ["pad", str(acas), "--depth", "9"], None),
        ("pad cartpole --depth 4", "cartpole.pad4.onnx", ["pad", str(M / "cartpole.onnx"), "--depth", "4"], None),
        ("merge mnist-net_256x2 − pruned", "mnist.merge.onnx",
         ["merge", str(mnist), str(out / "mnist.prune.onnx"), *box(mnist_box),
          "--write-vnnlib", str(out / "mnist.merge.vnnlib"), "--equiv-eps", "0.01"], str(mnist_box)),
        ("merge ACAS Xu − pruned", "acas.merge.onnx",
         ["merge", str(acas), str(out / "acas.prune.onnx"), *box(acas_box)], str(acas_box)),
    ]
    return jobs


def _vnnlib_jobs(out: Path) -> list[tuple[str, str, list[str], str]]:
    """(label, VNN-LIB file, nnxform arguments, the network it is about) for the properties nnxform writes."""
    acas = M / "ACASXU_run2a_1_1_batch_2000.onnx"
    jobs = [(f"vnnlib-normalize {v.name}", f"{v.stem}.normalized.vnnlib", ["vnnlib-normalize", str(v)], str(network))
            for v, network in ((V / "acasxu_prop_1.vnnlib", acas), (V / "acasxu_prop_3.vnnlib", acas),
                               (V / "mnist_prop_0_0.03.vnnlib", M / "mnist-net_256x2.onnx"),
                               (V / "test_small.vnnlib", M / "test_small.onnx"))]
    jobs += [
        ("vnnlib --property robustness (ACAS Xu)", "acas.robustness.vnnlib",
         ["vnnlib", str(acas), "--property", "robustness", "--label", "0", "--vnnlib", str(V / "acasxu_prop_1.vnnlib")],
         str(acas)),
        ("vnnlib --property bounds (ACAS Xu)", "acas.bounds.vnnlib",
         ["vnnlib", str(acas), "--property", "bounds", "--output-lower", "-10", "--output-upper", "10",
          "--vnnlib", str(V / "acasxu_prop_1.vnnlib")], str(acas)),
        ("merge --write-vnnlib (equivalence, ε 0.01)", "mnist.merge.vnnlib", [], str(out / "mnist.merge.onnx")),
    ]
    return jobs


def _nnxform(args: list[str]) -> tuple[bool, str]:
    """Run ``nnxform ARGS``; (succeeded, its last stderr line)."""
    try:
        run = subprocess.run([sys.executable, "-m", "nnxform", *args], capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    except subprocess.TimeoutExpired:
        return False, "nnxform took over 10 min"
    return run.returncode == 0, (run.stderr.strip().splitlines() or [""])[-1]


def write_artefacts(out: Path) -> tuple[list[dict], list[dict]]:
    """Run every nnxform command; the ONNX and VNN-LIB artefacts, each with its inputs, box and profile verdicts."""
    from nnxform.domain import Box
    from nnxform.ir import load
    from nnxform.verifiers import PROFILES, readability, written
    from nnxform.vnnlib import read_box

    out.mkdir(parents=True, exist_ok=True)
    models, properties = [], []
    rng = np.random.default_rng(0)
    for label, name, args, box_file in _commands(out):
        path = out / name
        ok, message = _nnxform([*args, "-o", str(path)])
        entry = {"label": label, "path": str(path), "error": None if ok else message}
        if ok:
            model = written(load(path))
            size = int(np.prod(model.input_shape))
            box = read_box(box_file).fit(size) if box_file else Box.default(size)
            inputs = rng.uniform(box.lower, box.upper, size=(SAMPLES, size)).astype(np.float32)
            np.save(out / f"{name}.inputs.npy", inputs)
            entry.update(inputs=str(out / f"{name}.inputs.npy"),
                         claims={p: readability(model, p)["readable"] for p in PROFILES})
        models.append(entry)
    for label, name, args, network in _vnnlib_jobs(out):
        path = out / name
        ok, message = _nnxform([*args, "-o", str(path)]) if args else (path.exists(), "merge wrote no property")
        properties.append({"label": label, "path": str(path), "network": network, "error": None if ok else message})
    return models, properties


# --- the worker, run in each verifier's environment --------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:100] if text else ''}".rstrip(": ")


def _loader(verifier: str):
    """(load(path) → object, evaluate(object, batch) → outputs [n, k], parse_vnnlib(path, network) or None)."""
    if verifier == "marabou":
        from maraboupy import Marabou, MarabouCore

        def evaluate(net, xs):
            rows, start = [], time.perf_counter()
            for x in xs:
                if time.perf_counter() - start > EVALUATION_BUDGET:  # a big network: compare what was solved
                    break
                y = net.evaluateWithMarabou([x.reshape(net.inputVars[0].shape)], filename="marabou.log",
                                            options=Marabou.createOptions(verbosity=0))
                unsat = np.full(net.outputVars[0].size, np.nan)  # evaluateWithMarabou's None: no solution found
                rows.append(np.concatenate([v.ravel() for v in y]) if y is not None else unsat)
            return np.array(rows)

        def vnnlib(path, network):
            MarabouCore.loadProperty(Marabou.read_onnx(network).getInputQuery(), path)

        return Marabou.read_onnx, evaluate, vnnlib
    import torch
    if verifier == "pynever":
        from pynever.strategies.conversion.converters.onnx import ONNXConverter
        from pynever.strategies.conversion.converters.pytorch import PyTorchConverter
        from pynever.strategies.conversion.representation import ONNXNetwork, load_network_path
        from pynever.strategies.verification.properties import VnnLibProperty

        def load(path):
            representation = load_network_path(path)
            assert isinstance(representation, ONNXNetwork)
            network = ONNXConverter().to_neural_network(representation)
            for layer in network.nodes.values():  # pynever 1.3.2's ONNX converter stores Conv weights as tensors,
                for key in ("weight", "bias"):     # its PyTorch converter reads them with torch.from_numpy
                    if type(layer).__name__ == "ConvNode" and isinstance(getattr(layer, key, None), torch.Tensor):
                        setattr(layer, key, getattr(layer, key).numpy())
            return PyTorchConverter().from_neural_network(network).pytorch_network.float().eval()

        return load, _torch_evaluate, lambda path, network: VnnLibProperty(path)
    from onnx2torch import convert
    if verifier == "onnx2torch":
        return lambda path: convert(path).eval(), _torch_evaluate, None
    from auto_LiRPA import BoundedModule

    def lirpa(path):
        import onnx
        shape = [d.dim_value or 1 for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim]
        return BoundedModule(convert(path).eval(), torch.zeros(shape), device="cpu")

    return lirpa, _torch_evaluate, None


def _torch_evaluate(module, xs):
    import torch
    with torch.no_grad():
        return np.stack([module(torch.from_numpy(x)).numpy().ravel() for x in xs])


def worker(verifier: str, manifest: Path, result: Path) -> None:
    """Load and evaluate every artefact of ``manifest`` with ``verifier``; write one verdict per artefact."""
    import onnxruntime as ort
    load, evaluate, vnnlib = _loader(verifier)
    job = json.loads(manifest.read_text())
    verdicts = {}
    for m in job["models"]:
        if m["error"]:
            continue
        start = time.perf_counter()
        try:
            network = load(m["path"])
        except BaseException as exc:  # a parser's assertion or crash is the answer being measured
            verdicts[m["path"]] = {"loads": False, "error": _first_line(exc)}
            continue
        session = ort.InferenceSession(m["path"])
        feed = session.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in feed.shape]
        xs = np.load(m["inputs"]).reshape([-1, *shape])
        want = np.stack([np.concatenate([o.ravel() for o in session.run(None, {feed.name: x})]) for x in xs])
        try:
            got = evaluate(network, xs)
            want = want[:len(got)]
            got = got.reshape(want.shape)
            scale = 1 + float(np.abs(want).max())  # |y| as nnxform's own check takes it: the largest output
            diff = float(np.abs(got - want).max() - TOL * scale) if not np.isnan(got).any() else np.inf
            verdicts[m["path"]] = {"loads": True, "excess": diff, "max_abs": float(np.nanmax(np.abs(got - want))),
                                   "seconds": time.perf_counter() - start, "inputs": len(got)}
        except BaseException as exc:
            verdicts[m["path"]] = {"loads": True, "error": _first_line(exc), "seconds": time.perf_counter() - start}
    for p in job["properties"]:
        if p["error"] or vnnlib is None:
            continue
        try:
            vnnlib(p["path"], p["network"])
            verdicts[p["path"]] = {"loads": True}
        except BaseException as exc:
            verdicts[p["path"]] = {"loads": False, "error": _first_line(exc)}
    result.write_text(json.dumps(verdicts))


# --- the table -------------------------------------------------------------------------------------------


def _cell(verdict: dict | None, claim: bool | None, notes: list[str]) -> str:
    """✓ time / ✗ (footnote) / ≠ max |difference|; '!' where ``nnxform info --for``'s profile said otherwise."""
    if verdict is None:
        return "—"
    if verdict.get("error") or not verdict["loads"]:
        notes.append(verdict.get("error", "refused"))
        text = f"✗ [{len(notes)}]"
    elif "excess" in verdict and verdict["excess"] > 0:
        text = f"≠ {verdict['max_abs']:.1e}"
    else:
        text = f"✓ {verdict['seconds']:.2f} s" if "seconds" in verdict else "✓"
        if verdict.get("inputs", SAMPLES) < SAMPLES:
            text += f" ({verdict['inputs']} inputs)"
    disagree = claim is not None and claim != (text.startswith("✓"))
    return text + (" !" if disagree else "")


def table(models: list[dict], properties: list[dict], results: dict[str, dict | str]) -> str:
    """The markdown matrix: one row per artefact, one column per verifier, and the footnotes."""
    names = list(VERIFIERS)
    lines = ["| nnxform output | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    notes: list[str] = []
    installed = {n: isinstance(results[n], dict) for n in names}
    lines.append("| *install* | " + " | ".join("ok" if installed[n] else results[n] for n in names) + " |")
    for m in models + properties:
        if m["error"]:
            notes.append(m["error"])
            lines.append(f"| {m['label']} | nnxform failed [{len(notes)}] |" + " |" * (len(names) - 1))
            continue
        cells = []
        for n in names:
            claim = m.get("claims", {}).get(VERIFIERS[n][4])
            cells.append(_cell(results[n].get(m["path"]), claim, notes) if installed[n] else "n/a")
        lines.append(f"| {m['label']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("✓ loads and computes what onnxruntime computes on 100 inputs of the command's box within "
                 "1e-5·(1 + max |y|), as nnxform's own check (time: load + 100 evaluations; Marabou evaluates by "
                 "solving, at most 60 s of it per network); ≠ loads but differs (max |difference|); "
                 "✗ refused (footnote); — not tried (no VNN-LIB parser); "
                 "! disagrees with `nnxform info --for` (onnx2torch and auto_LiRPA: the abcrown profile). "
                 "Not on the package index, so checked only by their profiles: "
                 + ", ".join(f"{k} ({v})" for k, v in NOT_ON_INDEX.items()) + ".")
    lines += [""] + [f"- [{i}] {note}" for i, note in enumerate(notes, start=1)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="Also write the table (markdown) here.")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, Path(args.manifest), Path(args.result))
        return
    BUILD.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict | str] = {}
    for column, (env, packages, module, torch, _) in VERIFIERS.items():
        ok, message = install(env, packages, module, torch)
        print(f"{column}: {message}", flush=True)
        results[column] = {} if ok else message
    models, properties = write_artefacts(BUILD / "outputs")
    manifest = BUILD / "manifest.json"
    manifest.write_text(json.dumps({"models": models, "properties": properties}))
    for column, (env, *_rest) in VERIFIERS.items():
        if not isinstance(results[column], dict):
            continue
        result = BUILD / f"{env}.result.json"
        with tempfile.TemporaryDirectory() as cwd:  # Marabou writes its log into the working directory
            run = subprocess.run([str(BUILD / env / "bin" / "python"), str(Path(__file__).resolve()), "--worker",
                                  env, "--manifest",
                                  str(manifest), "--result", str(result)], cwd=cwd, capture_output=True, text=True,
                                 env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
        if run.returncode != 0:
            results[column] = f"worker failed: {(run.stderr.strip().splitlines() or [''])[-1][:100]}"
        else:
            results[column] = json.loads(result.read_text())
        print(f"{column}: done", flush=True)
    text = (f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}\n\n" + table(models, properties, results))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
