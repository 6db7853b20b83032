"""``make verifiers``: which external verifiers read what nnxform writes (issue 14), and what the verifiers
themselves answer on it (issue 24).

Installs each verifier the package index offers in its own virtual environment (maraboupy 2.0.0; pynever;
onnx2torch, which auto_LiRPA's users convert ONNX with; auto_LiRPA), and the two built from source trees when
``NNENUM_SRC`` / ``ABCROWN_SRC`` point at them (nnenum; α,β-CROWN on torch 2.8, CPU, with the auto_LiRPA submodule
of its tree and its onnx2pytorch fork: ``ONNX2PYTORCH_SRC``, else the git URL its requirements name). Then:

1. *Loads*: writes the outputs of every nnxform command on the bundled models (and a ConvTranspose generator shaped
   like VNN-COMP's cGAN) and the VNN-LIB files nnxform writes, and runs each verifier's own loader on each file in
   its environment: does it load, does it compute what onnxruntime computes on 100 inputs of the command's box
   (within 1e-5·(1 + max |y|)), how long did it take, and does that agree with ``nnxform info --for``.
2. *Answers* (the source-built verifiers, which verify): each runs, with ``OMP_NUM_THREADS=1``, (a) every
   command's output with an output-bounds property nnxform proves on a small box (unsat expected), (b) the merged
   ε-queries at 10× and 0.5× of ``discrepancy``'s δ_max for a dense and a CNN pair, and (c) a sample of the VNN-COMP
   2022 rows in ``../shared/testdata/vnncomp2022/``, on the original file and on ``canon --for`` its output. A
   ``sat`` answer's counterexample is replayed in onnxruntime. An answer that contradicts nnxform's sound bound
   (sat beyond it, with a counterexample that replays) or its replayed witness (unsat where the witness is in the
   unsafe region) fails the run (exit 1, after the tables).

Prints the tables (markdown); ``--out FILE`` also writes them. Run with the project's venv
(``.venv/bin/python bench/verifiers.py``); the same file is the worker each verifier's environment runs
(``--worker``, ``--nnenum-query``), which imports nothing from nnxform.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "testdata" / "vnncomp2022"
BUILD = ROOT / "build" / "verifiers"  # --envs moves the environments elsewhere (they are gigabytes)
INSTALL_TIMEOUT = 600.0  # a verifier whose install takes longer is "not installable here"
TORCH_CPU = "https://download.pytorch.org/whl/cpu"  # may be unreachable: then torch comes from the default index
SAMPLES, TOL = 100, 1e-5
EVALUATION_BUDGET = 60.0  # seconds of evaluateWithMarabou per network (one solve per input)

#: column → (environment, packages, module that must import afterwards, needs torch, profile of nnxform info --for)
VERIFIERS = {
    "Marabou 2.0.0": ("marabou", ["maraboupy==2.0.0", "onnxruntime", "onnx"], "maraboupy", False, "marabou"),
    "pynever": ("pynever", ["pynever", "onnxruntime"], "pynever", True, "pynever"),
    "onnx2torch": ("onnx2torch", ["onnx2torch", "onnxruntime", "onnx"], "onnx2torch", True, "auto_lirpa"),
    "auto_LiRPA": ("auto_lirpa", ["auto_LiRPA", "onnx2torch", "onnxruntime", "onnx"], "auto_LiRPA", True,
                   "auto_lirpa"),  # with ABCROWN_SRC: its auto_LiRPA submodule on torch 2.8 instead of PyPI's 0.3
}
#: column → (environment, variable naming its source tree, profile): built from source when the variable is set
FROM_SOURCE = {"α,β-CROWN": ("abcrown", "ABCROWN_SRC", "abcrown"), "nnenum": ("nnenum", "NNENUM_SRC", "nnenum")}
#: verifiers with a profile but neither a package nor a source build here: their rules are checked from source only
NOT_RUN = {"NNV": "MATLAB toolbox", "ERAN": "needs ELINA/Gurobi builds"}
ENVS = BUILD  # where the environments go (main() sets it from --envs)
#: α,β-CROWN's torch: below 2.9 (its setup.py), the CPU build first; torchvision to match (auto_LiRPA imports it)
ABCROWN_TORCH = ["torch==2.8.0", "torchvision==0.23.0"]
#: what α,β-CROWN imports beyond complete_verifier/requirements.txt (its and auto_LiRPA's setup.py)
ABCROWN_EXTRA = ["tqdm", "appdirs", "packaging", "graphviz", "ninja", "scipy", "numpy"]


# --- installing ------------------------------------------------------------------------------------------


def _pip(env: Path, args: list[str], deadline: float) -> subprocess.CompletedProcess:
    """``pip install ARGS`` in ``env``, within what is left of the install's time (not quiet: -q hides a conflict's
    cause)."""
    return subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", *args], capture_output=True,
                          text=True, timeout=max(1.0, deadline - time.monotonic()))


def _imports(python: Path, code: str, extra_path: str = "") -> bool:
    """Whether ``code`` (imports) runs in the environment of ``python``."""
    env = dict(os.environ, PYTHONPATH=extra_path) if extra_path else None
    return subprocess.run([str(python), "-c", code], capture_output=True, env=env).returncode == 0


def _pip_failure(done: subprocess.CompletedProcess) -> str:
    """The cause pip names (a dependency), else its first error."""
    lines = (done.stdout + done.stderr).splitlines()  # pip prints the conflict's cause on stdout
    error = [line for line in lines if " depends on " in line] or \
        [line for line in lines if line.startswith("ERROR")] or ["pip failed"]
    return error[0].strip().removeprefix("ERROR: ")[:160]


def install(env_name: str, packages: list[str], module: str, torch: bool) -> tuple[bool, str]:
    """Create ``ENVS/ENV`` with ``packages``: torch from the CPU index first, else all from the default."""
    env = ENVS / env_name
    python = env / "bin" / "python"
    if python.exists() and _imports(python, f"import {module}"):
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
        if done.returncode != 0:
            failure = _pip_failure(done)
        elif not _imports(python, f"import {module}"):
            failure = f"installed, but `import {module}` fails"
        else:
            return True, f"installed in {time.monotonic() - start:.0f} s"
    return False, f"not installable here ({failure})"


def abcrown_path(src: Path) -> str:
    """The PYTHONPATH α,β-CROWN runs with: complete_verifier/, whose auto_LiRPA links to the submodule's package."""
    return str(src / "complete_verifier")


def install_from_source(env_name: str, src: Path) -> tuple[bool, str]:
    """``ENVS/ENV`` with the verifier of source tree ``src`` (nnenum: ``pip install SRC``; α,β-CROWN: torch 2.8,
    its requirements, its onnx2pytorch fork, and its tree on the PYTHONPATH), within ``INSTALL_TIMEOUT`` × 3."""
    env = ENVS / env_name
    python = env / "bin" / "python"
    if env_name == "nnenum":
        check, path = "import nnenum.onnx_network, nnenum.nnenum", ""
    else:
        if not (src / "auto_LiRPA" / "auto_LiRPA" / "__init__.py").exists():
            return False, f"not installable here ({src} has no auto_LiRPA submodule: clone with --recursive)"
        check, path = "import torch, onnx2pytorch, gurobipy, auto_LiRPA, abcrown", abcrown_path(src)
    if python.exists() and _imports(python, check, path):
        return True, "installed earlier"
    start = time.monotonic()
    deadline = start + 3 * INSTALL_TIMEOUT  # torch and its CUDA libraries when the CPU index is out of reach
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True, capture_output=True)
        if env_name == "nnenum":
            steps = [[str(src)]]
        else:
            requirements = [line.strip() for line in (src / "complete_verifier" / "requirements.txt").read_text()
                            .splitlines() if line.strip() and not line.startswith("#")]
            fork = os.environ.get("ONNX2PYTORCH_SRC") or next(r for r in requirements if "onnx2pytorch" in r)
            cpu = _pip(env, ["--index-url", TORCH_CPU, "--timeout", "20", "--retries", "0", *ABCROWN_TORCH], deadline)
            steps = ([] if cpu.returncode == 0 else [ABCROWN_TORCH]) + \
                [[r for r in requirements if "onnx2pytorch" not in r] + ABCROWN_EXTRA, ["--no-deps", fork]]
        for args in steps:
            done = _pip(env, args, deadline)
            if done.returncode != 0:
                return False, f"not installable here ({_pip_failure(done)})"
    except subprocess.TimeoutExpired:
        return False, f"not installable here (install over {3 * INSTALL_TIMEOUT / 60:.0f} min)"
    if not _imports(python, check, path):
        return False, f"installed, but `{check}` fails"
    return True, f"installed in {time.monotonic() - start:.0f} s"


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
    for verifier in ("marabou", "nnenum", "pynever", "abcrown", "auto_lirpa", "nnv", "eran"):
        jobs.append((f"canon --for {verifier} bn_after_relu_conv.onnx", f"bn_after_relu_conv.for-{verifier}.onnx",
                     ["canon", str(M / "bn_after_relu_conv.onnx"), "--for", verifier], None))
    jobs.append(("canon cGAN look-alike (ConvTranspose)", "cgan.canon.onnx", ["canon", str(out / "cgan.onnx")], None))
    for verifier in ("abcrown", "auto_lirpa", "nnenum"):  # nnenum has no ConvTranspose: refused from the graph
        jobs.append((f"canon --for {verifier} cGAN look-alike", f"cgan.for-{verifier}.onnx",
                     ["canon", str(out / "cgan.onnx"), "--for", verifier], None))
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
    sys.path.insert(0, str(ROOT / "bench"))
    import cnn_nets
    import onnx
    onnx.save(cnn_nets.cgan(), out / "cgan.onnx")  # VNN-COMP 2022's cGAN_imgSz32_nCh_1 shape, default attributes
    models, properties = [], []
    rng = np.random.default_rng(0)
    for label, name, args, box_file in _commands(out):
        path = out / name
        ok, message = _nnxform([*args, "-o", str(path)])
        entry = {"label": label, "path": str(path), "error": None if ok else message,
                 "source": args[1] if args[1].endswith(".onnx") else None}
        if ok:
            model = written(load(path))
            size = int(np.prod(model.input_shape))
            box = read_box(box_file).fit(size) if box_file else Box.default(size)
            inputs = rng.uniform(box.lower, box.upper, size=(SAMPLES, size)).astype(np.float32)
            np.save(out / f"{name}.inputs.npy", inputs)
            entry.update(inputs=str(out / f"{name}.inputs.npy"), box=[box.lower.tolist(), box.upper.tolist()],
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
    if verifier == "nnenum":
        from nnenum.onnx_network import load_onnx_network, load_onnx_network_optimized

        def nnenum_load(path):
            try:  # nnenum.py main(): the optimized loader first, on any failure the general one
                return load_onnx_network_optimized(path)
            except Exception:
                return load_onnx_network(path)

        def nnenum_evaluate(net, xs):
            return np.stack([np.asarray(net.execute(x.astype(np.float32).ravel())).ravel() for x in xs])

        return nnenum_load, nnenum_evaluate, None
    import torch
    if verifier == "abcrown":
        import onnx
        import auto_LiRPA
        import onnx2pytorch

        def abcrown_load(path):
            proto = onnx.load(path)
            shape = [d.dim_value or 1 for d in proto.graph.input[0].type.tensor_type.shape.dim]
            # load_model.py load_model_onnx: the fork's conversion, then what α,β-CROWN bounds it with
            module = onnx2pytorch.ConvertModel(proto, experimental=True, quirks={}).eval().to(torch.float32)
            auto_LiRPA.BoundedModule(module, torch.zeros(shape), device="cpu")
            return module

        return abcrown_load, _torch_evaluate, None
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


# --- answers: the source-built verifiers on questions nnxform can judge --------------------------------------

QUERY_TIMEOUT = 60.0  # seconds per query (the VNN-COMP rows: their own timeout, at most this)
SMALL = 0.01  # (a): the box is the command's box shrunk to this fraction around its centre
MARGIN = 1e-4  # (a): the proved bounds widened by MARGIN·(1 + |b|) for the verifiers' own float arithmetic
VNNCOMP_ROWS = {"acasxu": (0, 47, 95, 140), "mnist_fc": (0, 16)}  # rows of each benchmark's instances.csv
ABCROWN_CONFIGS = {"acasxu": "exp_configs/vnncomp21/acasxu.yaml", "mnist_fc": "exp_configs/vnncomp22/mnistfc.yaml",
                   "ConvTranspose": "exp_configs/vnncomp23/cgan.yaml"}  # its defaults ran out of memory on the cGAN
MEMORY_LIMIT = 12 * 2**30  # address space of one verifier process: the machine (24 GiB) is shared


def _nnxform_json(args: list[str]) -> dict:
    """``nnxform ARGS --json -``'s report (a one-line error is raised as RuntimeError)."""
    run = subprocess.run([sys.executable, "-m", "nnxform", *args, "--json", "-"], capture_output=True, text=True,
                         timeout=600, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    if run.returncode != 0:
        raise RuntimeError((run.stderr.strip().splitlines() or ["nnxform failed"])[-1])
    return json.loads(run.stdout)


def _box_args(folder: Path, name: str, lower: np.ndarray, upper: np.ndarray) -> list[str]:
    """``--lower L.npy --upper U.npy`` for a box."""
    np.save(folder / f"{name}.lower.npy", lower)
    np.save(folder / f"{name}.upper.npy", upper)
    return ["--lower", str(folder / f"{name}.lower.npy"), "--upper", str(folder / f"{name}.upper.npy")]


def _query(label: str, group: str, onnx_path: str, vnnlib: str, box: tuple, expect: str | None, check: dict,
           claim: str, only: str | None = None, config: str | None = None, timeout: float = QUERY_TIMEOUT,
           source: str | None = None) -> dict:
    """One question for the verifiers, with what nnxform knows of its answer (``expect``) and how to replay a
    counterexample (``check``); ``only``: for one verifier's environment alone; ``source``: the file the command
    read, asked the same when the verifier fails on the command's output."""
    from nnxform.ir import load
    from nnxform.verifiers import PROFILES, readability, written
    model = written(load(onnx_path))
    claims = {env: readability(model, prof)["readable"] for _, (env, _, prof) in FROM_SOURCE.items()}
    if config is None and any(n.op == "ConvTranspose" for n in model.nodes):
        config = ABCROWN_CONFIGS["ConvTranspose"]
    return {"label": label, "group": group, "onnx": str(Path(onnx_path).resolve()),
            "vnnlib": str(Path(vnnlib).resolve()), "box": [list(box[0]), list(box[1])],
            "expect": expect, "check": check, "claim": claim, "only": only, "config": config, "timeout": timeout,
            "inputs": int(np.prod(model.input_shape)), "claims": claims,
            "abcrown_options": PROFILES["abcrown"].needs(model),  # what `nnxform info --for abcrown` prints
            "source": str(Path(source).resolve()) if source else None}


def bounds_queries(out: Path, models: list[dict]) -> list[dict]:
    """(a) every command's output: outputs outside the bounds nnxform proves on a small box (unsat expected)."""
    from nnxform.domain import Box
    from nnxform.vnnlib import bounds_property
    folder = out / "queries"
    folder.mkdir(exist_ok=True)
    queries = []
    for k, m in enumerate(models):
        if m["error"]:
            continue
        lo, hi = (np.asarray(b, np.float64) for b in m["box"])
        centre, radius = (lo + hi) / 2, SMALL * (hi - lo) / 2
        lower, upper = centre - radius, centre + radius
        try:
            proved = _nnxform_json(["bounds", m["path"], "--method", "symbolic",
                                    *_box_args(folder, f"a{k}", lower, upper)])["output"]
        except RuntimeError as exc:
            print(f"  (a) {m['label']}: no query, nnxform bounds refused: {exc}", flush=True)
            continue
        low, up = np.asarray(proved["lower"]), np.asarray(proved["upper"])
        low, up = low - MARGIN * (1 + np.abs(low)), up + MARGIN * (1 + np.abs(up))
        vnnlib = folder / f"a{k}.vnnlib"
        vnnlib.write_text(bounds_property(Box(lower, upper), low, up))
        queries.append(_query(m["label"], "a", m["path"], str(vnnlib), (lower, upper), "unsat",
                              {"kind": "bounds", "lower": low.tolist(), "upper": up.tolist()},
                              "nnxform bounds (symbolic) proves every output inside", source=m.get("source")))
    return queries


def equivalence_queries(out: Path) -> list[dict]:
    """(b) the merged ε-queries at 10× and 0.5× of ``discrepancy``'s δ_max, for a dense and a CNN pair."""
    from nnxform.domain import Box
    from nnxform.vnnlib import equivalence_property, read_box
    folder = out / "queries"
    folder.mkdir(exist_ok=True)
    mnist_box = read_box(V / "mnist_prop_0_0.03.vnnlib")
    cnn_box = Box(np.full(128, -0.05), np.full(128, 0.05))
    pairs = [("dense: mnist-net_256x2 − pruned 30%", M / "mnist-net_256x2.onnx", out / "mnist.prune.onnx", mnist_box,
              None),
             ("CNN: bn_cnn − pruned 30% of weights", M / "bn_cnn.onnx", out / "bn_cnn.prune.onnx", cnn_box,
              ["prune", str(M / "bn_cnn.onnx"), "--method", "weight", "--ratio", "0.3"])]
    queries = []
    for k, (label, a, b, box, make) in enumerate(pairs):
        args = _box_args(folder, f"b{k}", box.lower, box.upper)
        if make is not None and not b.exists():
            ok, message = _nnxform([*make, *args, "-o", str(b)])
            if not ok:
                print(f"  (b) {label}: {message}", flush=True)
                continue
        found = _nnxform_json(["discrepancy", str(a), str(b), "--method", "symbolic", *args])
        merged = folder / f"b{k}.merged.onnx"
        ok, message = _nnxform(["merge", str(a), str(b), *args, "-o", str(merged)])
        if not ok:
            print(f"  (b) {label}: merge refused: {message}", flush=True)
            continue
        delta, witness = float(found["delta_max"]), float(found["found"])
        outputs = len(found["upper"])
        for factor in (10.0, 0.5):
            eps = factor * delta
            vnnlib = folder / f"b{k}.{factor:g}.vnnlib"
            vnnlib.write_text(equivalence_property(box, outputs, eps))
            expect = "unsat" if factor > 1 else "sat" if witness >= eps * (1 + 1e-6) else None
            claim = (f"δ_max ≤ {delta:.4g} (sound), witness {witness:.4g} replayed: " +
                     ("unsat" if expect == "unsat" else "sat" if expect == "sat" else "either answer"))
            queries.append(_query(f"{label}, ε = {factor:g}·δ_max", "b", str(merged), str(vnnlib),
                                  (box.lower, box.upper), expect, {"kind": "equiv", "eps": eps}, claim))
    return queries


def vnncomp_queries(out: Path) -> list[dict]:
    """(c) a sample of the VNN-COMP 2022 rows: the original file, and ``canon --for`` each verifier of it."""
    from nnxform.vnnlib import read_box
    folder = out / "queries"
    folder.mkdir(exist_ok=True)
    queries = []
    for bench, rows in VNNCOMP_ROWS.items():
        lines = (SHARED / bench / "instances.csv").read_text().splitlines()
        for row in rows:
            onnx_rel, vnnlib_rel, timeout = lines[row].split(",")
            onnx_path, vnnlib = SHARED / bench / onnx_rel, str(SHARED / bench / vnnlib_rel)
            box = read_box(vnnlib)
            label = f"{bench} {Path(onnx_rel).stem} {Path(vnnlib_rel).stem}"
            limit = min(float(timeout), QUERY_TIMEOUT)
            queries.append(_query(label, "c", str(onnx_path), vnnlib, (box.lower, box.upper), None, {"kind": "vnnlib"},
                                  "the original file", config=ABCROWN_CONFIGS[bench], timeout=limit))
            for _, (env, _, prof) in FROM_SOURCE.items():
                written_to = folder / f"c.{bench}.{row}.for-{prof}.onnx"
                ok, message = _nnxform(["canon", str(onnx_path), "--vnnlib", vnnlib, "--for", prof,
                                        "-o", str(written_to)])
                if not ok:
                    print(f"  (c) {label} --for {prof}: {message}", flush=True)
                    continue
                queries.append(_query(f"{label} (canon --for {prof})", "c", str(written_to), vnnlib,
                                      (box.lower, box.upper), None, {"kind": "vnnlib"}, "canon --for of the original",
                                      only=env, config=ABCROWN_CONFIGS[bench], timeout=limit))
    return queries


def nnenum_query(onnx_path: str, vnnlib: str, timeout: float, result: Path) -> None:
    """Runs in nnenum's environment: nnenum.py main()'s steps on one query, keeping the counterexample."""
    start = time.perf_counter()
    try:
        from nnenum import nnenum as front
        from nnenum.enumerate import enumerate_network
        from nnenum.onnx_network import load_onnx_network, load_onnx_network_optimized
        from nnenum.settings import Settings
        Settings.NUM_PROCESSES = 1  # one core each: the two verifiers run side by side on the 2-core machine
        specs, dtype = front.make_spec(vnnlib, onnx_path)
        try:
            network = load_onnx_network_optimized(onnx_path)
        except Exception:  # main(): "cannot do optimized load due to unsupported layers"
            network = load_onnx_network(onnx_path)
        (front.set_control_settings if len(specs[0][0]) < 700 else front.set_image_settings)()
        answer, x = "unsat", None
        for box, spec in specs:
            left = timeout - (time.perf_counter() - start)
            if left <= 0:
                answer = "timeout"
                break
            Settings.TIMEOUT = left
            res = enumerate_network(np.array(box, dtype=dtype), network, spec)
            if res.result_str != "safe":
                answer = "sat" if "unsafe" in res.result_str else res.result_str
                x = list(res.cinput) if res.cinput is not None else None
                break
    except BaseException as exc:  # a parser's assertion is the answer being measured
        answer, x = f"error: {_first_line(exc)}", None
    result.write_text(json.dumps({"answer": answer, "x": x, "seconds": time.perf_counter() - start}))


def _limited() -> None:
    """In the verifier's process before it starts: at most ``MEMORY_LIMIT`` of address space."""
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _run_nnenum(python: Path, q: dict, work: Path) -> dict:
    """One query in nnenum's environment, in a process of its own."""
    result = work / "result.json"
    try:
        subprocess.run([str(python), str(Path(__file__).resolve()), "--nnenum-query", q["onnx"], q["vnnlib"],
                        str(q["timeout"]), str(result)], cwd=work, capture_output=True, text=True,
                       timeout=q["timeout"] + 120, env=dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1"),
                       preexec_fn=_limited)
    except subprocess.TimeoutExpired:
        return {"answer": "timeout", "x": None, "seconds": q["timeout"] + 120}
    return json.loads(result.read_text()) if result.exists() else {"answer": "error: no result", "x": None,
                                                                    "seconds": 0.0}


def _abcrown_error(log: str) -> str:
    """The error α,β-CROWN's output ends with (its parser's, when loading failed)."""
    lines = [line.strip() for line in log.splitlines() if re.match(r"[\w.]*(Error|Exception)\b", line.strip())]
    return (lines[-1] if lines else (log.strip().splitlines() or ["no output"])[-1])[:160]


def _run_abcrown(python: Path, src: Path, q: dict, work: Path) -> dict:
    """One query through abcrown.py, as vnncomp_main.py runs it (config, --save_adv_example), on the CPU."""
    onnx_path, vnnlib = work / Path(q["onnx"]).name, work / Path(q["vnnlib"]).name
    shutil.copy(q["onnx"], onnx_path)
    shutil.copy(q["vnnlib"], vnnlib)  # α,β-CROWN writes its parsed property beside the file
    config = src / "complete_verifier" / q["config"] if q["config"] else work / "cpu.yaml"
    (work / "cpu.yaml").write_text("general:\n  device: cpu\n")
    args = [str(python), str(src / "complete_verifier" / "abcrown.py"), "--config", str(config),
            "--onnx_path", str(onnx_path), "--vnnlib_path", str(vnnlib), "--results_file", str(work / "out.txt"),
            "--timeout", str(q["timeout"]), "--save_adv_example", "--cex_path", str(work / "cex.txt"),
            "--device", "cpu"]
    if q["inputs"] > 20:  # auto would pick bab-refine's MIP, which gurobipy without a licence cannot size
        args += ["--complete_verifier", "bab"]
    for option in q["abcrown_options"]:  # the options `nnxform info --for abcrown` says this network needs
        args += option
    start = time.perf_counter()
    try:
        run = subprocess.run(args, cwd=work, capture_output=True, text=True, timeout=q["timeout"] + 180,
                             env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=abcrown_path(src)),
                             preexec_fn=_limited)
    except subprocess.TimeoutExpired:
        return {"answer": "timeout", "x": None, "seconds": time.perf_counter() - start}
    seconds = time.perf_counter() - start
    (work / "log.txt").write_text(run.stdout + run.stderr)
    text = (work / "out.txt").read_text() if (work / "out.txt").exists() else ""
    if not text.strip():
        why = f"killed by signal {-run.returncode}" if run.returncode < 0 else _abcrown_error(run.stdout + run.stderr)
        return {"answer": f"error: {why}", "x": None, "seconds": seconds}
    answer = text.split()[0]
    xs = {int(i): float(v) for i, v in re.findall(r"\(X_(\d+)\s+([-+0-9.eE]+)\)", text)}
    x = [xs[i] for i in range(len(xs))] if answer == "sat" and xs else None
    return {"answer": answer, "x": x, "seconds": seconds}


def _unsafe(q: dict, y: np.ndarray) -> bool:
    """Whether outputs ``y`` lie in the query's unsafe region (what ``sat`` claims)."""
    check = q["check"]
    if check["kind"] == "bounds":
        return bool((y <= np.asarray(check["lower"])).any() or (y >= np.asarray(check["upper"])).any())
    if check["kind"] == "equiv":
        return bool((np.abs(y) >= check["eps"]).any())
    from nnxform.vnnlib import read_property

    def value(term: str) -> float:
        return float(y[int(term[2:])]) if term.startswith("Y_") else float(term)

    def holds(comparison: str) -> bool:
        op, a, b = comparison.strip("()").split()
        return value(a) <= value(b) if op == "<=" else value(a) >= value(b)

    return any(all(holds(c) for c in conj) for _, disjuncts in read_property(Path(q["vnnlib"]).read_text())
               for conj in disjuncts)


def judge(q: dict, r: dict) -> str:
    """'' for an answer consistent with nnxform, else why not: a contradiction ('CONTRADICTS …') fails the run; a
    counterexample that does not replay is the verifier's own error."""
    if r["answer"] == "unsat" and q["expect"] == "sat":
        return "CONTRADICTS nnxform's replayed witness"
    if r["answer"] != "sat" or r["x"] is None:
        return ""
    import onnxruntime as ort
    x = np.asarray(r["x"], np.float32)
    lo, hi = (np.asarray(b) for b in q["box"])
    tol = 1e-6 * (1 + np.abs(hi - lo))
    session = ort.InferenceSession(q["onnx"])
    feed = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in feed.shape]
    y = np.concatenate([o.ravel() for o in session.run(None, {feed.name: x.reshape(shape)})]).astype(np.float64)
    if (x < lo - tol).any() or (x > hi + tol).any() or not _unsafe(q, y):
        return "its counterexample does not replay in onnxruntime"
    return "CONTRADICTS nnxform's sound bound (the counterexample replays)" if q["expect"] == "unsat" else ""


def run_answers(queries: list[dict], sources: dict[str, Path]) -> dict[str, dict[int, dict]]:
    """Every query in every source-built verifier, the two side by side (one core each); answers by query index."""
    results: dict[str, dict[int, dict]] = {env: {} for env in sources}
    lock = threading.Lock()

    def one_verifier(env: str, src: Path) -> None:
        python = ENVS / env / "bin" / "python"
        for i, q in enumerate(queries):
            if q["only"] not in (None, env):
                continue
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                r = _run_nnenum(python, q, work) if env == "nnenum" else _run_abcrown(python, src, q, work)
            if r["answer"].startswith("error") and q["source"]:  # the verifier's own failure, or nnxform's?
                with tempfile.TemporaryDirectory() as tmp:
                    again = _query(q["label"], q["group"], q["source"], q["vnnlib"], q["box"], q["expect"], q["check"],
                                   q["claim"], config=q["config"], timeout=q["timeout"])
                    r["on_source"] = (_run_nnenum(python, again, Path(tmp)) if env == "nnenum" else
                                      _run_abcrown(python, src, again, Path(tmp)))["answer"]
            r["verdict"] = judge(q, r)
            with lock:
                results[env][i] = r
                print(f"  {env}: {q['label']}: {r['answer']} ({r['seconds']:.1f} s) {r['verdict']}", flush=True)

    threads = [threading.Thread(target=one_verifier, args=(env, src)) for env, src in sources.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def answers_table(queries: list[dict], results: dict[str, dict[int, dict]], columns: dict[str, str]) -> tuple[str, int]:
    """The markdown table of answers (one row per query, one column per source-built verifier) and the number of
    contradictions."""
    names = list(columns)
    lines = ["| question | nnxform's claim | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    notes: list[str] = []
    contradictions = 0
    for i, q in enumerate(queries):
        cells = []
        for name in names:
            env = columns[name]
            r = results.get(env, {}).get(i)
            if r is None:
                cells.append("—")
                continue
            answer = r["answer"]
            if answer.startswith("error"):
                source = r.get("on_source")  # the verifier on the file the command read
                caused = source is not None and not source.startswith("error")  # it answered there: nnxform's
                notes.append(answer.removeprefix("error: ") + (
                    "" if source is None else " — the same on the command's input file" if source == answer else
                    f" — on the command's input file it answers {source}" if caused else
                    f" — the command's input file fails too ({source.removeprefix('error: ')})"))
                text = f"✗ nnxform ‼ [{len(notes)}]" if caused else f"✗ [{len(notes)}]"
                contradictions += caused
            else:
                text = f"{answer} {r['seconds']:.1f} s" + (" (cex replays)" if answer == "sat" and r["x"] and
                                                             not r["verdict"] else "")
            if r["verdict"]:
                notes.append(r["verdict"])
                text += f" ‼ [{len(notes)}]" if r["verdict"].startswith("CONTRADICTS") else f" [{len(notes)}]"
                contradictions += r["verdict"].startswith("CONTRADICTS")
            loads = not answer.startswith("error")
            if q["claims"].get(env) is not None and q["claims"][env] != loads:
                text += " !"
            cells.append(text)
        lines.append(f"| ({q['group']}) {q['label']} | {q['claim']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("(a) outputs outside the bounds `nnxform bounds --method symbolic` proves on the command's box shrunk "
                 f"to {SMALL:g} of its width around its centre, widened by {MARGIN:g}·(1 + |b|): unsat expected. "
                 "(b) the merged network's ε-equivalence query at 10× `discrepancy`'s sound δ_max (unsat expected) "
                 "and at 0.5× (sat expected when its replayed witness reaches ε). (c) VNN-COMP 2022 rows: the "
                 "original file and `canon --for` the verifier of it. Times include each verifier's start-up; "
                 f"timeouts {QUERY_TIMEOUT:g} s. ✗ the verifier failed (footnote: its own error, and what it does "
                 "on the file the command read); ‼ an answer that contradicts nnxform, or a failure on a command's "
                 "output whose input file the verifier answers; ! disagrees with `nnxform info --for`.")
    lines += [""] + [f"- [{k}] {note}" for k, note in enumerate(notes, start=1)]
    return "\n".join(lines), contradictions


# --- the cost of a profile's answer (issue 24's target) ----------------------------------------------------

COST_SECONDS, COST_MIB = 10.0, 2048.0  # the target: each `info --for` and `canon --for` under 10 s and 2 GB


def _measured(args: list[str]) -> tuple[float, float, int]:
    """``nnxform ARGS`` in a process of its own: wall seconds, peak resident MiB, exit status."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nnxform", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, proc.returncode


def profile_costs(out: Path) -> tuple[str, int]:
    """``info --for X`` and ``canon --for X`` for every profile on every bundled model and the cGAN look-alike: the
    slowest and largest run per verifier and command (markdown), and how many runs miss the target."""
    from nnxform.verifiers import PROFILES
    models = sorted(M.glob("*.onnx")) + [out / "cgan.onnx"]
    lines = ["| command | verifier | slowest (s) | on | largest (MiB) | on | refused |",
             "|---|---|---|---|---|---|---|"]
    misses = 0
    for command in ("info", "canon"):
        for verifier in PROFILES:
            runs = []
            for model in models:
                written_to = ["-o", str(out / "cost.onnx")] if command == "canon" else []
                seconds, mib, status = _measured([command, str(model), "--for", verifier, *written_to])
                runs.append((seconds, mib, status, model.name))
                misses += seconds > COST_SECONDS or mib > COST_MIB
            slow, big = max(runs), max(runs, key=lambda r: r[1])
            refused = sum(r[2] != 0 for r in runs)
            lines.append(f"| {command} --for | {verifier} | {slow[0]:.1f} | {slow[3]} | {big[1]:.0f} | {big[3]} | "
                         f"{refused} of {len(runs)} |")
    lines += ["", f"Each a process of its own (start-up included), on the {len(models)} models: the bundled ones and "
                  "the cGAN look-alike (bench/cnn_nets.py, 28,800 units after its first Conv). Target: under "
                  f"{COST_SECONDS:g} s and {COST_MIB / 1024:g} GiB each; runs over it: {misses}."]
    return "\n".join(lines), misses


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


def table(models: list[dict], properties: list[dict], results: dict[str, dict | str],
          profiles: dict[str, str]) -> str:
    """The markdown matrix: one row per artefact, one column per verifier (``profiles``: column → the profile of
    ``nnxform info --for`` it checks), and the footnotes."""
    names = list(profiles)
    lines = ["| nnxform output | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    notes: list[str] = []
    installed = {n: isinstance(results[n], dict) for n in names}
    lines.append("| *install* | " + " | ".join("ok" if installed[n] else results[n] for n in names) + " |")
    for m in models + properties:
        if m["error"]:
            notes.append(m["error"])
            lines.append(f"| {m['label']} | nnxform refused [{len(notes)}] |" + " |" * (len(names) - 1))
            continue
        cells = []
        for n in names:
            claim = m.get("claims", {}).get(profiles[n])
            cells.append(_cell(results[n].get(m["path"]), claim, notes) if installed[n] else "n/a")
        lines.append(f"| {m['label']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("✓ loads and computes what onnxruntime computes on 100 inputs of the command's box within "
                 "1e-5·(1 + max |y|), as nnxform's own check (time: load + 100 evaluations; Marabou evaluates by "
                 "solving, at most 60 s of it per network); ≠ loads but differs (max |difference|); "
                 "✗ refused (footnote); — not tried (no VNN-LIB parser); "
                 "! disagrees with `nnxform info --for` (" + ", ".join(f"{n}: {p}" for n, p in profiles.items())
                 + "). Not run here, so checked only by their profiles: "
                 + ", ".join(f"{k} ({v})" for k, v in NOT_RUN.items()) + ".")
    lines += [""] + [f"- [{i}] {note}" for i, note in enumerate(notes, start=1)]
    return "\n".join(lines)


def main() -> None:
    global ENVS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="Also write the tables (markdown) here.")
    parser.add_argument("--envs", help="Where the verifiers' environments go (default build/verifiers).")
    parser.add_argument("--skip-index", action="store_true", help="Only the verifiers built from source.")
    parser.add_argument("--skip-costs", action="store_true", help="Leave out the cost of `info/canon --for`.")
    parser.add_argument("--reuse-loads", action="store_true",
                        help="Take the artefacts and the loaders' verdicts of the last run (build/verifiers/).")
    parser.add_argument("--costs-only", action="store_true",
                        help="Only the cost of `info --for` and `canon --for` (no verifier installed or run).")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--nnenum-query", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, Path(args.manifest), Path(args.result))
        return
    if args.nnenum_query:
        onnx_path, vnnlib, timeout, result = args.nnenum_query
        nnenum_query(onnx_path, vnnlib, float(timeout), Path(result))
        return
    if args.costs_only:
        (BUILD / "outputs").mkdir(parents=True, exist_ok=True)
        sys.path.insert(0, str(ROOT / "bench"))
        import cnn_nets
        import onnx
        onnx.save(cnn_nets.cgan(), BUILD / "outputs" / "cgan.onnx")
        text, misses = profile_costs(BUILD / "outputs")
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
        sys.exit(1 if misses else 0)
    ENVS = Path(args.envs).resolve() if args.envs else BUILD
    ENVS.mkdir(parents=True, exist_ok=True)
    BUILD.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict | str] = {}
    profiles: dict[str, str] = {}
    envs: dict[str, str] = {}
    for column, (env, packages, module, torch, profile) in ({} if args.skip_index else VERIFIERS).items():
        if env == "auto_lirpa" and os.environ.get("ABCROWN_SRC"):  # PyPI's auto_LiRPA 0.3 needs torch < 1.13
            packages = [*ABCROWN_TORCH, str(Path(os.environ["ABCROWN_SRC"]) / "auto_LiRPA"),
                        *[p for p in packages if p != "auto_LiRPA"]]
        ok, message = install(env, packages, module, torch)
        print(f"{column}: {message}", flush=True)
        results[column], profiles[column], envs[column] = ({} if ok else message), profile, env
    sources: dict[str, Path] = {}
    for column, (env, variable, profile) in FROM_SOURCE.items():
        src = os.environ.get(variable)
        ok, message = install_from_source(env, Path(src)) if src else \
            (False, f"not built ({variable} names no source tree)")
        print(f"{column}: {message}", flush=True)
        results[column], profiles[column], envs[column] = ({} if ok else message), profile, env
        if ok:
            sources[env] = Path(src)
    manifest = BUILD / "manifest.json"
    if args.reuse_loads:
        job = json.loads(manifest.read_text())
        models, properties = job["models"], job["properties"]
        read = {label: args[1] for label, _, args, _ in _commands(BUILD / "outputs")}
        for m in models:  # a manifest written before the command's input was recorded
            m.setdefault("source", read[m["label"]] if read.get(m["label"], "").endswith(".onnx") else None)
    else:
        models, properties = write_artefacts(BUILD / "outputs")
        manifest.write_text(json.dumps({"models": models, "properties": properties}))
    for column, env in envs.items():
        if not isinstance(results[column], dict):
            continue
        if args.reuse_loads:
            results[column] = json.loads((BUILD / f"{env}.result.json").read_text())
            continue
        result = BUILD / f"{env}.result.json"
        extra = {"PYTHONPATH": abcrown_path(sources[env])} if env == "abcrown" else {}
        with tempfile.TemporaryDirectory() as cwd:  # Marabou writes its log into the working directory
            run = subprocess.run([str(ENVS / env / "bin" / "python"), str(Path(__file__).resolve()), "--worker",
                                  env, "--manifest", str(manifest), "--result", str(result)], cwd=cwd,
                                 capture_output=True, text=True,
                                 env=dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", **extra))
        if run.returncode != 0:
            results[column] = f"worker failed: {(run.stderr.strip().splitlines() or [''])[-1][:100]}"
        else:
            results[column] = json.loads(result.read_text())
        print(f"{column}: loaded", flush=True)
    text = (f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}\n\n" +
            table(models, properties, results, profiles))
    contradictions = 0
    if sources:
        queries = bounds_queries(BUILD / "outputs", models) + equivalence_queries(BUILD / "outputs") + \
            vnncomp_queries(BUILD / "outputs")
        answers = run_answers(queries, sources)
        (BUILD / "answers.json").write_text(json.dumps({"queries": queries, "answers": answers}))
        columns = {name: env for name, (env, _, _) in FROM_SOURCE.items() if env in sources}
        answer_text, contradictions = answers_table(queries, answers, columns)
        text += "\n\n" + answer_text
    misses = 0
    if not args.skip_costs:
        cost_text, misses = profile_costs(BUILD / "outputs")
        text += "\n\n" + cost_text
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if contradictions or misses:
        print(f"{contradictions} answer(s) contradict nnxform; {misses} profile run(s) over the target",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
