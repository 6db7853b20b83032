"""CNNs through every command (issue 12's targets): bounds, prune, merge + discrepancy, dead-channel compression.

``python bench/cnn.py [--only bounds,prune,merge,compress] [--timeout S]``. Networks (``bench/cnn_nets.py``,
seeded, written to ``build/bench_cnn/``): verivital-style conv+pool networks (1×28×28, 24 and 32 channels,
MaxPool or AveragePool, dense tail, 10 outputs), a dronet-style residual CNN with BatchNormalization
(1×200×200, strided stem, MaxPool, two residual blocks, Gemm 2) and a 3×32×32 CNN with BN for pruning; and
the bundled ``models/cifar_base_kw.onnx`` with its oval21 box from ``../shared/testdata/oval21`` (rows
skipped when it is missing). Generated boxes: a seeded uniform image ± 2/255 clipped to [0, 1].

Every measurement is one ``nnxform`` command in its own process (``python -m nnxform … --json``), with a
time-out (300 s by default) and an address-space limit (8 GiB, so that a run that would eat the shared
machine fails with MemoryError instead); peak memory is that process's maximum resident set (``wait4``'s
``ru_maxrss``). Wall time includes starting Python and loading the model (≈ 1–2 s); the analysis's own
seconds come from the command's JSON. A failed command (exit code ≠ 0, time-out, memory) is a row with its
one-line reason. Agreement after pruning: the share of 500 seeded points (250 uniform images over the
network's input range, 250 uniform in an L∞ ball of 8× the box radius around the box centre) on which the
pruned network's argmax equals the original's, in onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from cnn_nets import image_box, write_all
from common import MODELS, ROOT, SHARED, machine, print_table

OUT = ROOT / "build" / "bench_cnn"
OVAL = SHARED / "oval21" / "cifar_base_kw-img2578-eps0.021176470588235297.vnnlib"
CIFAR = MODELS / "cifar_base_kw.onnx"
EPS = 2 / 255
MEM_LIMIT = 8 << 30
RATIOS = [0.1, 0.3, 0.5, 0.7]
METHODS = ["neuron", "weight", "saliency"]
RETRY_MARKERS = ("ImportError", "SyntaxError", "ModuleNotFoundError", "IndentationError", "NameError")


class Run:
    """One finished command: exit code, wall seconds, peak RSS in MB, its output and its JSON (if written)."""

    def __init__(self, rc: int | None, wall: float, peak_mb: float, out: str, err: str, data: dict | None,
                 reason: str) -> None:
        self.rc, self.wall, self.peak_mb, self.out, self.err, self.data, self.reason = rc, wall, peak_mb, out, err, data, reason

    @property
    def ok(self) -> bool:
        return self.rc == 0


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEM_LIMIT, MEM_LIMIT))
    os.setsid()


def _reason(rc: int | None, err: str, out: str, timeout: float) -> str:
    if rc is None:
        return f"time-out after {timeout:g} s"
    if rc < 0:
        return f"killed by signal {-rc} ({signal.Signals(-rc).name})"
    lines = [l.strip() for l in (err or out).splitlines() if l.strip()]
    for l in reversed(lines):  # the exception line of a traceback, else the last line
        if "Error" in l or "error" in l or "refus" in l:
            return _short(l)
    return _short(lines[-1]) if lines else f"exit {rc}"


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def nnx(args: list, timeout: float, json_path: Path | None = None, retries: int = 2) -> Run:
    """``python -m nnxform ARGS`` in a fresh process group; wall time, peak RSS, and its JSON when json_path."""
    cmd = [sys.executable, "-m", "nnxform", *map(str, args)]
    if json_path is not None:
        cmd += ["--json", str(json_path)]
        json_path.unlink(missing_ok=True)
    log_out, log_err = OUT / "last.stdout", OUT / "last.stderr"
    with open(log_out, "w") as fo, open(log_err, "w") as fe:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fo, stderr=fe, preexec_fn=_limit)
        rc, usage = None, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                rc = os.waitstatus_to_exitcode(status)
                break
            if time.perf_counter() - t > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                rc = None
                break
            time.sleep(0.02)
        wall = time.perf_counter() - t
        proc.returncode = rc if rc is not None else -9  # reaped by wait4 already
    out, err = log_out.read_text(errors="replace"), log_err.read_text(errors="replace")
    peak = usage.ru_maxrss / 1024 if usage else float("nan")
    if rc not in (0, None) and any(m in err for m in RETRY_MARKERS) and "MemoryError" not in err and retries:
        print(f"    ({_short(err.strip().splitlines()[-1], 100)}: code being edited? retrying in 60 s)", flush=True)
        time.sleep(60)
        return nnx(args, timeout, json_path, retries - 1)
    data = None
    if rc == 0 and json_path is not None and json_path.exists():
        try:
            data = json.loads(json_path.read_text())
        except ValueError:
            data = None
    return Run(rc, wall, peak, out, err, data, "" if rc == 0 else _reason(rc, err, out, timeout))


def fmt(x: float | None, digits: int = 3) -> str:
    return "" if x is None else f"{x:.{digits}g}"


def gen_box(name: str, shape: tuple[int, ...], seed: int) -> list[str]:
    """Domain options of a seeded image ± EPS clipped to [0, 1] (writes the centre as .npy)."""
    centre, _, _ = image_box(shape, EPS, seed)
    path = OUT / f"{name}.centre.npy"
    np.save(path, centre)
    return ["--center", path, "--eps", repr(EPS), "--clip-lower", "0", "--clip-upper", "1"]


def box_arrays(domain: list) -> tuple[np.ndarray, np.ndarray]:
    if domain[0] == "--vnnlib":
        from nnxform.vnnlib import read_box
        b = read_box(domain[1])
        return np.asarray(b.lower, np.float32), np.asarray(b.upper, np.float32)
    c = np.load(domain[1]).ravel()
    return np.clip(c - EPS, 0, 1).astype(np.float32), np.clip(c + EPS, 0, 1).astype(np.float32)


def params(path: Path) -> int:
    """Float parameters of an ONNX file (all float initialisers' elements)."""
    import onnx
    m = onnx.load(str(path))
    return int(sum(np.prod(t.dims) for t in m.graph.initializer if t.data_type in (1, 10, 11)))


# ---------------------------------------------------------------------------------------------------- (i) bounds

def table_bounds(nets: dict[str, Path], timeout: float) -> None:
    rows = []
    cases = [(n, nets[n], gen_box(n, s, 1)) for n, s in
             (("verivital_maxpool", (1, 1, 28, 28)), ("verivital_avgpool", (1, 1, 28, 28)), ("dronet_style", (1, 1, 200, 200)),
              ("dronet_chain", (1, 1, 200, 200)))]
    folded = OUT / "dronet_style.fold-bn.onnx"
    r = nnx(["fold-bn", nets["dronet_style"], "-o", folded], timeout)
    if r.ok:
        cases.insert(3, ("dronet_style after fold-bn", folded, cases[2][2]))
    else:
        print(f"  fold-bn dronet_style failed: {r.reason}")
    if OVAL.exists():
        cases.append(("cifar_base_kw (oval21)", CIFAR, ["--vnnlib", OVAL]))
    for name, path, domain in cases:
        for method in ("interval", "symbolic"):
            r = nnx(["bounds", path, "--method", method, *domain], timeout, OUT / "bounds.json")
            target = "< 1 s" if method == "interval" else "peak < 2 GB"
            if r.ok and r.data:
                d = r.data
                width = sum(u - l for l, u in zip(d["output"]["lower"], d["output"]["upper"])) if "lower" in d["output"] else None
                st = d.get("stable", {})
                work = d["seconds"] + d.get("compile_seconds", 0.0)
                met = (work < 1.0) if method == "interval" else (r.peak_mb < 2048)
                rows.append([name, method, "ok", round(r.wall, 2), round(d.get("compile_seconds", 0.0), 3),
                             round(d["seconds"], 3), round(r.peak_mb), fmt(width, 6),
                             f"{st.get('active', '')}/{st.get('inactive', '')}/{st.get('unstable', '')}",
                             f"{target}: {'met' if met else 'MISSED'}"])
            else:
                rows.append([name, method, r.reason, round(r.wall, 2), "", "", round(r.peak_mb), "", "",
                             f"{target}: MISSED (no bounds)"])
            print(f"  bounds {name} {method}: {rows[-1][2]} {r.wall:.1f} s {r.peak_mb:.0f} MB", flush=True)
            _interim_rows("bounds", rows)
    print_table(f"(i) bounds on CNNs (generated boxes: seeded image ± 2/255 clipped to [0, 1]; time-out {timeout:g} s, "
                "address space 8 GiB)",
                ["network", "method", "result", "wall s", "compile s", "bound s", "peak MB", "output width sum",
                 "active/inactive/unstable", "target (compile + bound s; peak RSS)"], rows)


# ---------------------------------------------------------------------------------------------------- (ii) prune

def agreement_points(path: Path, domain: list, n: int = 500, seed: int = 0) -> np.ndarray:
    lo, hi = box_arrays(domain)
    rng = np.random.default_rng(seed)
    half = n // 2
    uni = rng.uniform(float(lo.min()), float(hi.max()), (half, lo.size))
    c, r = (lo + hi) / 2, 8 * float((hi - lo).max()) / 2
    near = np.clip(c + rng.uniform(-r, r, (n - half, lo.size)), lo.min(), hi.max())
    return np.concatenate([uni, near]).astype(np.float32)


def predict(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    i = s.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in i.shape]
    return np.array([np.argmax(s.run(None, {i.name: xi.reshape(shape)})[0]) for xi in x])


def table_prune(nets: dict[str, Path], timeout: float) -> dict[str, Path]:
    cases = [("slim_cnn", nets["slim_cnn"], gen_box("slim_cnn", (1, 3, 32, 32), 2))]
    if OVAL.exists():
        cases.insert(0, ("cifar_base_kw", CIFAR, ["--vnnlib", OVAL]))
    rows, written = [], {}
    for name, path, domain in cases:
        x = agreement_points(path, domain)
        base = predict(path, x)
        first = len(rows)
        rows.append([name, "original", 0, "", "", "", "", "", f"labels: {len(set(base.tolist()))} classes", ""])
        for method in METHODS:
            for ratio in RATIOS:
                pct = int(round(ratio * 100))
                out = OUT / f"{name}.{method}{pct}.onnx"
                out.unlink(missing_ok=True)
                r = nnx(["prune", path, "-m", method, "-r", ratio, "-o", out, *domain], timeout, OUT / "prune.json")
                if r.ok and r.data:
                    d = r.data
                    agree = float(np.mean(predict(out, x) == base))
                    imp = d.get("impact", {})
                    rows.append([name, method, pct, f"{d['before']['parameters']} → {d['after']['parameters']}",
                                 f"{d['after']['connections']}", round(d["seconds"], 3), round(r.wall, 2),
                                 f"{d['impact_bound']:.4g} / {imp.get('found', float('nan')):.3g}"
                                 if d.get("impact_bound") is not None else "",
                                 round(agree, 3), round(imp.get("seconds", float("nan")), 2)])
                    written[f"{name}.{method}{pct}"] = out
                    rows[first][3] = rows[first][3] or str(d["before"]["parameters"])
                    rows[first][4] = rows[first][4] or str(d["before"]["connections"])
                else:
                    rows.append([name, method, pct, "refused" if r.rc == 2 else "failed", "", "", round(r.wall, 2),
                                 r.reason, "", ""])
                print(f"  prune {name} {method} {pct}%: {rows[-1][3]} {r.wall:.1f} s", flush=True)
                _interim_rows("prune", rows)
    print_table("(ii) prune by each method without retraining (impact bound: symbolic discrepancy on the box; agreement "
                "of the argmax with the original on 500 seeded points)",
                ["network", "method", "%", "parameters", "nonzero weights", "prune s", "wall s",
                 "impact bound / seen (or reason)", "agreement", "impact s"], rows)
    return written


# ---------------------------------------------------------------------------------------------------- (iii) merge

def table_merge(pruned: dict[str, Path], timeout: float) -> None:
    if not OVAL.exists():
        print(f"\n(iii) skipped: {OVAL} not found")
        return
    small = pruned.get("cifar_base_kw.neuron30")
    if small is None or not small.exists():
        small = OUT / "cifar_base_kw.neuron30.onnx"
        r = nnx(["prune", CIFAR, "-m", "neuron", "-r", 0.3, "-o", small], timeout)
        if not r.ok:
            print(f"\n(iii) skipped: 30 % neuron pruning failed: {r.reason}")
            return
    domain = ["--vnnlib", OVAL]
    pa, pb = params(CIFAR), params(small)
    merged = OUT / "cifar_merged30.onnx"
    merged.unlink(missing_ok=True)
    r = nnx(["merge", CIFAR, small, "-o", merged, *domain], timeout)
    rows = []
    if r.ok:
        pm = params(merged)
        rows.append(["merge", "ok", round(r.wall, 2), round(r.peak_mb), f"{pm} vs 2×({pa} + {pb}) = {2 * (pa + pb)}",
                     f"{pm / (pa + pb):.2f}× the sum: {'met' if pm <= 2 * (pa + pb) else 'MISSED'}"])
    else:
        rows.append(["merge", r.reason, round(r.wall, 2), round(r.peak_mb), "", "MISSED"])
    for method in ("symbolic", "interval", "merged-symbolic"):
        r = nnx(["discrepancy", CIFAR, small, "--method", method, *domain], timeout, OUT / "disc.json")
        if r.ok and r.data:
            d = r.data
            sec = d.get("bound_seconds", d.get("seconds", float("nan")))
            target = f"< 2 s: {'met' if sec < 2 else 'MISSED'}" if method == "symbolic" else ""
            rows.append([f"discrepancy {method}", f"δ_max ≤ {d.get('delta_max', float('nan')):.4g}, seen "
                         f"{d.get('found', float('nan')):.3g}", round(r.wall, 2), round(r.peak_mb),
                         f"bound {sec:.3f} s + witness {d.get('witness_seconds', float('nan')):.2f} s", target])
        else:
            rows.append([f"discrepancy {method}", r.reason, round(r.wall, 2), round(r.peak_mb), "",
                         "< 2 s: MISSED" if method == "symbolic" else ""])
        print(f"  {rows[-1][0]}: {rows[-1][1]} {r.wall:.1f} s", flush=True)
    print_table("(iii) merge of cifar_base_kw with its 30 %-channel-pruned copy (neuron, layer scope) and the "
                "discrepancy on the oval21 box", ["step", "result", "wall s", "peak MB", "size / analysis time",
                                                  "target"], rows)


# ---------------------------------------------------------------------------------------------------- (iv) compress

def table_compress(nets: dict[str, Path], timeout: float) -> None:
    cases = []
    if OVAL.exists():
        cases.append(("cifar_base_kw", CIFAR, "oval21 box", ["--vnnlib", OVAL]))
    cases.append(("cifar_base_kw", CIFAR, "[0.45, 0.55]^3072", ["--lower", "0.45", "--upper", "0.55"]))
    cases.append(("slim_cnn", nets["slim_cnn"], "image ± 2/255", gen_box("slim_cnn", (1, 3, 32, 32), 2)))
    cases.append(("verivital_maxpool", nets["verivital_maxpool"], "image ± 2/255",
                  gen_box("verivital_maxpool", (1, 1, 28, 28), 1)))
    rows = []
    for name, path, dname, domain in cases:
        out = OUT / f"{name}.compressed.onnx"
        out.unlink(missing_ok=True)
        r = nnx(["compress", path, "-o", out, "--certify", "--time-limit", min(120, timeout / 2), *domain], timeout,
                OUT / "compress.json")
        if r.ok and r.data:
            rows.append([name, dname, *_compress_cells(r.data, path, out), round(r.wall, 2), round(r.peak_mb)])
        else:
            rows.append([name, dname, r.reason, "", "", "", "", round(r.wall, 2), round(r.peak_mb)])
        print(f"  compress {name} {dname}: {rows[-1][2]} {r.wall:.1f} s", flush=True)
    print_table("(iv) dead-channel compression, compress --certify",
                ["network", "box", "channels removed", "ReLUs stable (active/inactive/unstable/undecided)",
                 "parameters", "certified |f - f_c| <=", "classify / certify s", "wall s", "peak MB"], rows)


def _compress_cells(d: dict, path: Path, out: Path) -> list:
    import re
    import onnx
    removed = 0
    for line in d.get("changes", []):
        m = re.match(r"\S+: (\d+) of (\d+) channels", line)
        if m:
            removed += int(m.group(1))
    model = onnx.load(str(path))
    dims = {t.name: t.dims for t in model.graph.initializer}
    total = sum(dims[n.input[1]][0] for n in model.graph.node if n.op_type == "Conv" and n.input[1] in dims)
    channels = f"{removed} of {total}"  # of all Conv output channels (a Conv with none removed prints no line)
    t = d.get("stable", {}).get("totals", {})
    stab = "/".join(str(t.get(k, "?")) for k in ("active", "inactive", "unstable", "undecided"))
    cert = d.get("certificate") or {}
    bound = cert.get("delta_max")
    cert_s = f"{bound:.3g} (real {cert.get('real_delta_max', float('nan')):.3g})" if isinstance(bound, (int, float)) \
        else "not certified"
    secs = f"{d.get('stable', {}).get('seconds', float('nan')):.2f} / {cert.get('seconds', float('nan')):.2f}"
    return [channels, stab, f"{d['before']['parameters']} → {d['after']['parameters']}", cert_s, secs]


# ---------------------------------------------------------------------------------------------------- interim

INTERIM: dict[str, list] = {}


def _interim_rows(key: str, rows: list) -> None:
    INTERIM[key] = [list(r) for r in rows]
    path = os.environ.get("CNN_BENCH_INTERIM")
    if not path:
        return
    lines = [f"# bench/cnn.py interim ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()})", ""]
    for k, rs in INTERIM.items():
        lines += [f"## {k}", ""] + [" | ".join(map(str, r)) for r in rs] + [""]
    Path(path).write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="bounds,prune,merge,compress")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per command")
    args = parser.parse_args()
    parts = args.only.split(",")
    OUT.mkdir(parents=True, exist_ok=True)
    nets = write_all(OUT, seed=0)
    print(f"CNN benchmark: {machine()}; networks in {OUT}"
          + ("" if OVAL.exists() else f"; {OVAL} not found: cifar_base_kw rows on the oval21 box skipped"), flush=True)
    if "bounds" in parts:
        table_bounds(nets, args.timeout)
    pruned = table_prune(nets, args.timeout) if "prune" in parts else {}
    if "merge" in parts:
        table_merge(pruned, args.timeout)
    if "compress" in parts:
        table_compress(nets, args.timeout)


if __name__ == "__main__":
    main()
