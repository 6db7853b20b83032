"""Resources on public networks' kinds (issue 19): every row under 2 GB peak, within its time limit + 10 %, with an answer.

``python bench/resources.py [--only ROW[,ROW…]] [--json PATH] [--dir DIR]``. The networks are look-alikes with the
public networks' layer shapes, generated seeded (``bench/cnn_nets.py``; the files themselves are not bundled):
verivital's ``Convnet_maxpool`` / ``Convnet_avgpool`` (VNN-COMP 2022, 1×28×28, box: a seeded image ± 0.02 clipped to
[0, 1]), DNNV's ``dronet`` (1×200×200 residual with BN, image ± 0.01), VNN-COMP's ``cGAN_imgSz32_nCh_1`` (ConvTranspose
generator and conv discriminator, latent [1, 5] in [−1, 1]) and ``resnet_2b`` (VNN-COMP 2022, 3×32×32, image ± 2/255);
and ACAS Xu 3_3 on box 0 of ``prop_6`` (split by ``nnxform vnnlib-normalize``) from
``../shared/testdata/vnncomp2022/acasxu`` when present (rows skipped, with a note, when not). Boxes are written as
``--lower``/``--upper`` .npy files.

Every row is one command of the real CLI (the ``nnxform`` script beside this Python) in its own process group with
``OPENBLAS_NUM_THREADS=1``, one at a time. Seconds: wall time of that process, Python start and model loading
included. Peak MB (MiB; "within 2 GB": below 2048): that process's maximum resident set (``os.wait4``'s ``ru_maxrss``;
"> N" for a killed row); a row is killed when its resident set passes 4 GB (polled every 0.05 s) or it runs 3× its
limit. Limit: the sum of the command's time limits, the CLI's default where the row sets none (prune, quantize,
discrepancy: 60 s for the bound; compress ``--certify``: ``--time-limit`` + ``--certify-time-limit``). The answer is
the command's key result from its ``--json``: settled counts (active/inactive/unstable/undecided) for stable, the
sound bound (and the largest difference seen) for quantize, prune and discrepancy (with the analysis: "merged" when
the pair is not analysed as a difference), connections before → after for compress (a compression must never grow the
network: "GREW" otherwise) and the certified bound with ``--certify`` (its method and analysis, and the bound in real
arithmetic when it gives one); "limit reached" when the command stopped a stage at its time limit (its result is still
sound); the exit status always.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from cnn_nets import cgan, dronet, image_box, resnet_2b, verivital
from common import SHARED, machine, print_table

ACAS = SHARED / "vnncomp2022" / "acasxu"
ACAS_NET = ACAS / "onnx" / "ACASXU_run2a_3_3_batch_2000.onnx"
ACAS_PROP = ACAS / "vnnlib" / "prop_6.vnnlib"
PEAK_LIMIT_MB = 2048          # the target: peak under 2 GB
KILL_RSS = 4 << 30            # a row past 4 GB resident is killed
KILL_FACTOR = 3.0             # … or past 3× its limit
SLACK = 1.10                  # the target: within the limit + 10 %
DEFAULT_LIMITS = {"stable": {"--time-limit": 300.0}, "compress": {"--time-limit": 300.0},
                  "prune": {"--time-limit": 60.0}, "quantize": {"--time-limit": 60.0},
                  "discrepancy": {"--time-limit": 60.0}}  # the CLI's defaults (nnxform CMD --help)
SEED = 1                      # of the boxes' centre images (bench/cnn.py's seed for these networks)


@dataclass
class Row:
    """One measured command: ``name`` for ``--only``, the network, the command's arguments after the model files."""

    name: str
    network: str
    command: str                              # the subcommand
    args: list[str]                           # everything after it except --json; {dir} is the work folder
    shown: str                                # the command as the table shows it
    needs: Callable[[], str | None] = field(default=lambda: None)  # a reason to skip, or None

    @property
    def limit(self) -> float:
        """The sum of the command's time limits (explicit, else the CLI's defaults)."""
        given = {a: float(self.args[i + 1]) for i, a in enumerate(self.args[:-1]) if a.endswith("time-limit")}
        limits = {**DEFAULT_LIMITS[self.command], **given}
        if self.command == "compress" and "--certify" in self.args:
            limits.setdefault("--certify-time-limit", 10.0)
        elif self.command == "compress":
            limits.pop("--certify-time-limit", None)
        return sum(limits.values())


@dataclass
class Measured:
    rc: int | None                 # None: killed by this script
    seconds: float
    peak_mb: float
    stdout: str
    stderr: str
    data: dict | None
    killed: str = ""               # why this script killed it


def cli() -> list[str]:
    """The real ``nnxform`` script of this Python's environment (``python -m nnxform`` without one)."""
    script = Path(os.path.abspath(sys.executable)).parent / "nnxform"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nnxform"]


def memory(pid: int | str) -> tuple[int, int]:
    """Resident bytes of ``pid`` now and their high-water mark since its last exec (VmRSS, VmHWM; 0 once gone)."""
    now, high = 0, 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    now = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    high = int(line.split()[1]) * 1024
    except OSError:
        pass
    return now, high


def run(cmd: list[str], limit: float, json_path: Path, folder: Path) -> Measured:
    """``cmd`` with ``--json json_path``, alone in its process group: wall time, its own peak RSS, its JSON; killed past
    ``KILL_RSS`` resident or ``KILL_FACTOR × limit`` seconds.

    The peak is ``wait4``'s ``ru_maxrss``, which Linux carries across exec from the forked copy of this process: when
    it is not above this process's own high-water mark it may be ours, and the child's VmHWM last polled is taken."""
    json_path.unlink(missing_ok=True)
    floor = memory("self")[1]
    polled = 0
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    out, err = folder / "last.stdout", folder / "last.stderr"
    killed = ""
    with open(out, "w") as fo, open(err, "w") as fe:
        t = time.perf_counter()
        proc = subprocess.Popen([*cmd, "--json", str(json_path)], cwd=folder, stdout=fo, stderr=fe, env=env,
                                start_new_session=True)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.perf_counter() - t
            if elapsed > KILL_FACTOR * limit:
                killed = f"killed after {elapsed:.0f} s (3× the limit)"
            now, high = memory(proc.pid)
            polled = high or polled  # the last reading: the mark is monotonic after exec (and 0 once exited)
            if not killed and now > KILL_RSS:
                killed = f"killed at {now / 2**20:.0f} MB resident (> {KILL_RSS / 2**30:g} GB)"
            if killed:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4 already
    data = None
    if not killed and json_path.exists():
        try:
            data = json.loads(json_path.read_text())
        except ValueError:
            data = None
    peak = usage.ru_maxrss * 1024 if usage.ru_maxrss * 1024 > floor else polled
    return Measured(None if killed else proc.returncode, seconds, peak / 2**20, out.read_text(errors="replace"),
                    err.read_text(errors="replace"), data, killed)


# ---------------------------------------------------------------------------------------------------- answers

def _g(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) else str(x)


def _limit_reached(doc: Any) -> bool:
    """Whether any stage of a JSON report says it stopped at its time limit (``time_limit_reached``, or the
    classification's note inside ``compress``'s report)."""
    if isinstance(doc, str):
        return doc.startswith("the time limit bound")
    if isinstance(doc, dict):
        return any((k == "time_limit_reached" and v is True) or _limit_reached(v) for k, v in doc.items())
    if isinstance(doc, list):
        return any(_limit_reached(v) for v in doc)
    return False


def _stable(t: dict) -> str:
    return "/".join(str(t.get(k, "?")) for k in ("active", "inactive", "unstable", "undecided"))


def answer(row: Row, m: Measured) -> str:
    """The command's key result, from its JSON (the last line of its output when there is none)."""
    status = f"exit {m.rc}" if m.rc is not None else m.killed
    d = m.data
    if d is None:
        lines = [l.strip() for l in (m.stderr + "\n" + m.stdout).splitlines() if l.strip()]
        why = next((l for l in reversed(lines) if "rror" in l or "refus" in l), lines[-1] if lines else "")
        return f"{status}; {' '.join(why.split())[:160]}" if why else status
    if row.command == "stable":
        text = f"a/i/u/undecided {_stable(d.get('totals', {}))} of {d.get('neurons')}"
    elif row.command == "quantize":
        text = f"drift <= {_g(d.get('drift_bound'))} (seen {_g(d.get('sampled_max'))})"
    elif row.command == "prune":
        b, a = d.get("before", {}), d.get("after", {})
        found = (d.get("impact") or {}).get("found")
        text = (f"impact <= {_g(d.get('impact_bound'))} (seen {_g(found)}); "
                f"connections {b.get('connections')} -> {a.get('connections')}")
    elif row.command == "discrepancy":
        text = f"delta_max <= {_g(d.get('delta_max'))} (seen {_g(d.get('found'))}, {d.get('analysis', d.get('method'))})"
    else:  # compress
        b, a = d["before"]["connections"], d["after"]["connections"]
        text = f"connections {b} -> {a}{' GREW' if a > b else ''}; a/i/u/undecided {_stable(d['stable']['totals'])}"
        if "--certify" in row.args:
            cert = d.get("certificate") or {}
            real = f", real {_g(cert['real_delta_max'])}" if "real_delta_max" in cert else ""
            text += (f"; certified <= {_g(cert.get('delta_max'))} ({cert.get('method')}, {cert.get('analysis')}{real})"
                     if cert else "; not certified")
    if _limit_reached({k: v for k, v in d.items() if k not in ("model", "output", "domain")}):
        text += "; limit reached"
    return f"{status}; {text}"


# ---------------------------------------------------------------------------------------------------- networks, rows

def prepare(folder: Path) -> None:
    """The networks and boxes, seeded, in ``folder`` (and the quantised copy ``discrepancy`` compares against)."""
    nets = {"maxpool": verivital("MaxPool", 0), "avgpool": verivital("AveragePool", 0), "dronet": dronet(0),
            "cgan": cgan(0), "resnet_2b": resnet_2b(0)}
    for name, model in nets.items():
        onnx.save(model, folder / f"{name}.onnx")
    for name, shape, eps in (("mnist", (1, 1, 28, 28), 0.02), ("dronet", (1, 1, 200, 200), 0.01),
                             ("cifar", (1, 3, 32, 32), 2 / 255)):
        _, lower, upper = image_box(shape, eps, SEED)
        np.save(folder / f"{name}.lower.npy", lower)
        np.save(folder / f"{name}.upper.npy", upper)
    np.save(folder / "cgan.lower.npy", np.full((1, 5), -1.0, np.float32))
    np.save(folder / "cgan.upper.npy", np.full((1, 5), 1.0, np.float32))
    setup = [[*cli(), "quantize", "maxpool.onnx", "-o", "maxpool.q8.onnx", "--bits", "8"]]
    if ACAS_NET.exists() and ACAS_PROP.exists():
        setup.append([*cli(), "vnnlib-normalize", str(ACAS_PROP), "-o", "prop_6.vnnlib"])
    for cmd in setup:  # not measured
        subprocess.run(cmd, cwd=folder, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))


def _acas() -> str | None:
    return None if ACAS_NET.exists() and ACAS_PROP.exists() else f"{ACAS} not found"


def rows() -> list[Row]:
    def box(name: str) -> list[str]:
        return ["--lower", f"{name}.lower.npy", "--upper", f"{name}.upper.npy"]

    def row(name: str, network: str, command: str, model: list[str], opts: list[str], domain: list[str],
            needs: Callable[[], str | None] = lambda: None, shown: str = "") -> Row:
        kept = [a for i, a in enumerate(opts) if a != "-o" and (i == 0 or opts[i - 1] != "-o")]  # without its output
        return Row(name, network, command, [*model, *opts, *domain], shown or " ".join([command, *kept]), needs)

    mp, dr, cg, acas = ["maxpool.onnx"], ["dronet.onnx"], ["cgan.onnx"], [str(ACAS_NET)]
    return [
        row("maxpool-prune-weight", "verivital Convnet_maxpool", "prune", mp,
            ["-m", "weight", "-r", "0.3", "-o", "maxpool.w30.onnx"], box("mnist")),
        row("maxpool-quantize", "verivital Convnet_maxpool", "quantize", mp, ["--bits", "8", "-o", "maxpool.q8.m.onnx"],
            box("mnist")),
        row("maxpool-discrepancy", "verivital Convnet_maxpool", "discrepancy", [*mp, "maxpool.q8.onnx"], [],
            box("mnist"), shown="discrepancy (against its --bits 8 copy)"),
        row("maxpool-compress-certify", "verivital Convnet_maxpool", "compress", mp,
            ["--certify", "--certify-time-limit", "30", "--time-limit", "60", "-o", "maxpool.c.onnx"], box("mnist")),
        row("dronet-stable", "DNNV dronet", "stable", dr, ["--time-limit", "60"], box("dronet")),
        row("dronet-prune-neuron", "DNNV dronet", "prune", dr, ["-m", "neuron", "-r", "0.3", "-o", "dronet.n30.onnx"],
            box("dronet")),
        row("dronet-prune-weight", "DNNV dronet", "prune", dr, ["-m", "weight", "-r", "0.3", "-o", "dronet.w30.onnx"],
            box("dronet")),
        row("cgan-quantize", "cGAN_imgSz32_nCh_1", "quantize", cg,
            ["--bits", "8", "--time-limit", "30", "-o", "cgan.q8.onnx"], box("cgan")),
        row("cgan-compress-certify", "cGAN_imgSz32_nCh_1", "compress", cg,
            ["--certify", "--time-limit", "60", "--certify-time-limit", "30", "-o", "cgan.cc.onnx"], box("cgan")),
        row("cgan-compress", "cGAN_imgSz32_nCh_1", "compress", cg, ["--time-limit", "60", "-o", "cgan.c.onnx"],
            box("cgan")),
        row("avgpool-stable", "verivital Convnet_avgpool", "stable", ["avgpool.onnx"], ["--time-limit", "60"],
            box("mnist")),
        row("resnet_2b-compress-certify", "resnet_2b", "compress", ["resnet_2b.onnx"],
            ["--certify", "--certify-time-limit", "30", "--time-limit", "60", "-o", "resnet_2b.c.onnx"], box("cifar")),
        row("acasxu-stable", "ACAS Xu 3_3 prop_6 box 0", "stable", acas, ["--time-limit", "60"],
            ["--vnnlib", "prop_6_0.vnnlib"], _acas),
        row("acasxu-compress", "ACAS Xu 3_3 prop_6 box 0", "compress", acas, ["--time-limit", "60", "-o", "acasxu.c.onnx"],
            ["--vnnlib", "prop_6_0.vnnlib"], _acas),
    ]


# ---------------------------------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    all_rows = rows()
    parser.add_argument("--only", default="", help="rows to run, comma-separated: " + ", ".join(r.name for r in all_rows))
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    parser.add_argument("--dir", default=None, help="work folder, kept (default: a temporary folder, removed)")
    args = parser.parse_args()
    chosen = all_rows
    if args.only:
        names = args.only.split(",")
        unknown = [n for n in names if n not in {r.name for r in all_rows}]
        if unknown:
            parser.error(f"unknown row(s) {', '.join(unknown)}; rows: {', '.join(r.name for r in all_rows)}")
        chosen = [r for r in all_rows if r.name in names]
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="nnxform-resources-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"Resources (issue 19): {machine()}; networks and boxes in {folder}; CLI {' '.join(cli())}", flush=True)
    table, records = [], []
    try:
        prepare(folder)
        for row in chosen:
            skip = row.needs()
            if skip:
                print(f"  {row.name}: skipped ({skip})", flush=True)
                table.append([row.network, row.shown, _g(row.limit), "", "", "", "", f"skipped: {skip}"])
                records.append({"row": row.name, "network": row.network, "command": row.shown, "limit": row.limit,
                                "skipped": skip})
                continue
            m = run([*cli(), row.command, *row.args], row.limit, folder / f"{row.name}.json", folder)
            in_memory = m.peak_mb < PEAK_LIMIT_MB
            in_time = m.seconds <= SLACK * row.limit
            text = answer(row, m)
            table.append([row.network, row.shown, _g(row.limit), f"{m.seconds:.1f}",
                          f"> {m.peak_mb:.0f}" if m.killed else f"{m.peak_mb:.0f}",
                          "yes" if in_memory else "no", "yes" if in_time else "no", text])
            records.append({"row": row.name, "network": row.network, "command": row.shown,
                            "argv": ["nnxform", row.command, *row.args], "limit": row.limit, "seconds": m.seconds,
                            "peak_mb": m.peak_mb, "within_2gb": in_memory, "within_limit": in_time, "exit": m.rc,
                            "killed": m.killed or None, "answer": text})
            print(f"  {row.name}: {m.seconds:.1f} s (limit {row.limit:g}), {m.peak_mb:.0f} MB, {text}", flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)
    print_table(f"Resources on public networks' kinds (look-alikes; {machine()}; OPENBLAS_NUM_THREADS=1, one at a "
                "time)", ["network", "command", "limit s", "seconds", "peak MB", "within 2 GB",
                          "within limit + 10 %", "answer"], table)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "rows": records}, indent=1) + "\n")
    missed = [r for r in records if not r.get("skipped") and not (r["within_2gb"] and r["within_limit"] and r["exit"] == 0)]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
