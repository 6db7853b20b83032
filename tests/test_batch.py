"""``nnxform batch`` and ``batch-compare``: the same rows through -j 1, -j 2 and a real Dask LocalCluster give the
same results and byte-identical outputs; a failing row, a timed-out row and a worker killed with SIGKILL mid-row
each end with the right status while the others complete; --resume after Ctrl-C redoes only what is missing; bad
input stops at once with one line and exit 2."""

from __future__ import annotations

import _thread
import csv
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import typer.main

from conftest import MODELS

ACAS = "ACASXU_run2a_1_1_batch_2000.onnx"
MNIST = "mnist-net_256x2.onnx"
SMALL = "test_small.onnx"


def nnx(capsys, *args: object) -> tuple[int, str, str]:
    """Run the real command line in this process (as a batch worker runs a row): exit status, stdout, stderr."""
    from nnxform.cli import _with_commands
    from nnxform.cli.application import _run

    try:
        _run(typer.main.get_command(_with_commands()), [str(a) for a in args])
        code = 0
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """A benchmark folder in the VNN-COMP layout: onnx/, vnnlib/, and a corrupt network."""
    root = tmp_path_factory.mktemp("bench")
    (root / "onnx").mkdir()
    (root / "vnnlib").mkdir()
    for name in (ACAS, MNIST, SMALL):
        shutil.copy(MODELS / name, root / "onnx" / name)
    for path in (MODELS / "vnnlib").glob("*.vnnlib"):
        shutil.copy(path, root / "vnnlib" / path.name)
    (root / "onnx" / "corrupt.onnx").write_bytes(b"\x08\x07 not a protobuf at all")
    return root


def write_csv(folder: Path, name: str, rows: list[tuple]) -> Path:
    path = folder / name
    path.write_text("".join(",".join(map(str, row)) + "\n" for row in rows))
    return path


def results(folder: Path) -> list[dict]:
    with open(folder / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder/rows`` (relative path -> bytes), what the command wrote and printed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted((folder / "rows").rglob("*")) if p.is_file()}


#: canon on two ACAS boxes, the MNIST network, a tiny net without a time limit, a missing and a corrupt file.
ENGINE_ROWS = [(f"onnx/{ACAS}", "vnnlib/acasxu_prop_1.vnnlib", 60), (f"onnx/{ACAS}", "vnnlib/acasxu_prop_3.vnnlib", 60),
               (f"onnx/{MNIST}", "vnnlib/mnist_prop_0_0.03.vnnlib", 60), (f"onnx/{SMALL}", "vnnlib/test_small.vnnlib"),
               ("onnx/missing.onnx", "vnnlib/acasxu_prop_1.vnnlib", 60), ("onnx/corrupt.onnx", "vnnlib/acasxu_prop_1.vnnlib", 60)]


@pytest.fixture(scope="module")
def engine_runs(bench, tmp_path_factory) -> dict[str, Path]:
    """The same batch through -j 1, -j 2 and a 2-worker Dask LocalCluster."""
    pytest.importorskip("distributed")
    instances = write_csv(bench, "engines.csv", ENGINE_ROWS)
    out = tmp_path_factory.mktemp("engines")
    runs = {"j1": ["-j", "1"], "j2": ["-j", "2"], "dask": ["-j", "2", "--scheduler", "local"]}
    from nnxform.cli import _with_commands
    from nnxform.cli.application import _run

    for label, engine in runs.items():
        try:
            _run(typer.main.get_command(_with_commands()),
                 ["batch", str(instances), "canon", "--samples", "300", "--out", str(out / label), *engine])
        except SystemExit as stop:
            pytest.fail(f"batch {label} ended with status {stop.code}")
    return {label: out / label for label in runs}


def test_engines_give_the_same_results_and_byte_identical_outputs(engine_runs):
    tables = {label: results(folder) for label, folder in engine_runs.items()}
    for label, rows in tables.items():
        assert [r["status"] for r in rows] == ["ok", "ok", "ok", "ok", "error", "error"], label
        assert rows[4]["message"] == "onnx/missing.onnx: no such file"
        assert "corrupt.onnx" in rows[5]["message"] and rows[5]["outputs"].endswith("log.txt")
        assert int(rows[0]["nodes_before"]) > int(rows[0]["nodes_after"])  # canon folded the ACAS Sub/MatMul/Add
    without_seconds = {label: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
                       for label, rows in tables.items()}
    assert without_seconds["j1"] == without_seconds["j2"] == without_seconds["dask"]
    outputs = {label: {k: v for k, v in files_under(folder).items() if not k.endswith("log.txt")}
               for label, folder in engine_runs.items()}
    assert len(outputs["j1"]) == 2 * 4  # a report and a network for each row that ended ok
    assert outputs["j1"] == outputs["j2"] == outputs["dask"]
    listed = {label: (folder / "instances.csv").read_text() for label, folder in engine_runs.items()}
    assert listed["j1"] == listed["j2"] == listed["dask"]
    lines = listed["j1"].splitlines()
    assert lines[0].startswith(f"rows/ACASXU_run2a_1_1_batch_2000__acasxu_prop_1/{ACAS},") and lines[0].endswith(",60")
    assert len(lines) == 4 and lines[3].count(",") == 1  # the row without a time limit: two columns
    for line in lines:  # the new instances.csv points at the written networks and the rows' own properties
        network, prop = line.split(",")[:2]
        assert (engine_runs["j1"] / network).is_file() and (engine_runs["j1"] / prop).is_file()


def test_instances_csv_of_a_batch_feeds_the_next_batch(engine_runs, capsys, tmp_path):
    code, out, err = nnx(capsys, "batch", engine_runs["j1"] / "instances.csv", "bounds", "--method", "interval",
                         "--out", tmp_path / "next", "-j", "1")
    assert code == 0, err
    rows = results(tmp_path / "next")
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert rows[0]["model"].startswith("rows/") and float(rows[0]["width_sum"]) > 0


def _worker_in_a_row(parent: int, seen: set[int]) -> int | None:
    """A worker process of ``parent`` not in ``seen`` whose working folder is a row's (it is running a row)."""
    for task in Path(f"/proc/{parent}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                if int(pid) not in seen and "/row-" in os.readlink(f"/proc/{pid}/cwd"):
                    return int(pid)
            except OSError:
                continue
    return None


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the worker processes through /proc")
def test_failing_timed_out_and_killed_rows_end_with_their_status_and_the_rest_complete(bench, capsys, tmp_path):
    instances = write_csv(bench, "faults.csv", [
        (f"onnx/{ACAS}", "vnnlib/acasxu_prop_1.vnnlib", 0.5),  # LP bounds take seconds: past its limit
        (f"onnx/{ACAS}", "vnnlib/acasxu_prop_3.vnnlib", 120),  # its worker is killed with SIGKILL mid-row
        (f"onnx/{SMALL}", "vnnlib/test_small.vnnlib", 60),
        ("onnx/corrupt.onnx", "vnnlib/test_small.vnnlib", 60),
        (f"onnx/{SMALL}", "vnnlib/test_small.vnnlib", 60)])
    out = tmp_path / "faults"
    killed: list[int] = []

    def kill_second_row() -> None:
        deadline, seen = time.monotonic() + 60, set()
        first = None
        while time.monotonic() < deadline and not killed:
            pid = _worker_in_a_row(os.getpid(), seen)
            if pid is not None and first is None:
                first = pid  # the worker of the first row, which the batch kills at its time limit
                seen.add(pid)
            elif pid is not None:
                time.sleep(0.3)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_second_row)
    killer.start()
    code, stdout, err = nnx(capsys, "batch", instances, "bounds", "--method", "lp", "--out", out, "-j", "1")
    killer.join()
    assert code == 0, err
    assert killed, "no worker was seen running the second row"
    rows = results(out)
    assert [r["status"] for r in rows] == ["timeout", "error", "ok", "error", "ok"]
    assert "time limit of 0.5 s" in rows[0]["message"] and float(rows[0]["seconds"]) == 0.5
    assert "killed by SIGKILL" in rows[1]["message"]
    assert "corrupt.onnx" in rows[3]["message"]
    assert not rows[0]["outputs"] and not rows[1]["outputs"]
    # nothing partial: no folder for the rows that did not finish, no temporary anywhere in the output folder
    assert sorted(p.name for p in (out / "rows").iterdir()) == ["corrupt__test_small", "test_small__test_small",
                                                               "test_small__test_small__2"]
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    assert "timeout 1" in stdout and "error 2" in stdout


def test_resume_after_ctrl_c_redoes_only_what_is_missing(bench, capsys, tmp_path):
    rows = [(f"onnx/{MNIST}", "vnnlib/mnist_prop_0_0.03.vnnlib", 60)] * 2 + [(f"onnx/{SMALL}", "vnnlib/test_small.vnnlib", 60)]
    instances = write_csv(bench, "resume.csv", rows)
    out = tmp_path / "resume"
    args = ["batch", instances, "bounds", "--method", "lp", "--out", out, "-j", "1"]

    def interrupt_after_first_row() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out / "results.json").exists():
            time.sleep(0.02)
        _thread.interrupt_main()

    # Ctrl-C as a terminal sends it, even where this process was started with SIGINT ignored (a background job)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt_after_first_row, daemon=True).start()
        code, _, err = nnx(capsys, *args)
    finally:
        signal.signal(signal.SIGINT, before)
    assert code == 130
    assert "interrupted: " in err and "--resume" in err and len(err.strip().splitlines()) == 1
    first = results(out)
    assert 1 <= len(first) < 3 and all(r["status"] == "ok" for r in first)
    kept = {r["row"]: (out / r["outputs"].split()[0]).stat().st_mtime_ns for r in first}
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]

    code, _, err = nnx(capsys, *args)
    assert code == 2 and "--resume" in err  # the folder holds a batch: refused without --resume

    code, stdout, err = nnx(capsys, *args, "--resume")
    assert code == 0, err
    assert f"{len(first)} kept from the earlier run" in stdout
    final = results(out)
    assert [r["status"] for r in final] == ["ok"] * 3
    for r in final:  # the kept rows' files are untouched; the others written now
        report = out / r["outputs"].split()[0]
        assert (report.stat().st_mtime_ns == kept.get(r["row"])) == (r["row"] in kept)
    assert json.loads((out / "results.json").read_text())["reused"] == len(first)

    (bench / "onnx" / "tiny.onnx").write_bytes((bench / "onnx" / SMALL).read_bytes())
    write_csv(bench, "resume.csv", rows[:2] + [("onnx/tiny.onnx", "vnnlib/test_small.vnnlib", 60)])
    code, stdout, err = nnx(capsys, *args, "--resume")  # a changed row is run, the rest kept
    assert code == 0, err
    assert "2 kept from the earlier run" in stdout
    assert [r["status"] for r in results(out)] == ["ok"] * 3


def test_bad_input_stops_at_once_with_one_line(bench, capsys, tmp_path):
    good = write_csv(bench, "good.csv", [(f"onnx/{SMALL}", "vnnlib/test_small.vnnlib", 60)])
    out = tmp_path / "never"
    cases = {
        "line 2: expected 'onnx,vnnlib[,timeout]'": [write_csv(bench, "four.csv", [("a", "b", 1), ("a", "b", 1, 2)]), "bounds"],
        "the time limit must be a positive number": [write_csv(bench, "neg.csv", [("a", "b", -1)]), "bounds"],
        "no rows": [write_csv(bench, "empty.csv", []), "bounds"],
        "batch runs a command that takes one model": [good, "merge"],
        "No such option: --frobnicate": [good, "bounds", "--frobnicate", "1"],
        "batch gives each row its own output network": [good, "canon", "-o", "x.onnx"],
        "batch gives each row its own input box": [good, "bounds", "--eps", "0.1"],
        "--time-limit must be a positive number": [good, "bounds", "--time-limit", "0"],
    }
    for expected, args in cases.items():
        code, _, err = nnx(capsys, "batch", *args, "--out", out)
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, (expected, err)
    assert not out.exists()  # nothing written


def test_unreachable_scheduler_stops_with_one_line(bench, capsys, tmp_path):
    pytest.importorskip("distributed")
    good = write_csv(bench, "good.csv", [(f"onnx/{SMALL}", "vnnlib/test_small.vnnlib", 60)])
    code, _, err = nnx(capsys, "batch", good, "bounds", "--out", tmp_path / "d", "--scheduler", "tcp://127.0.0.1:9")
    assert code == 2 and "cannot reach the Dask scheduler" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_compare_puts_runs_in_one_table_and_one_plot(engine_runs, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "cactus.png"
    code, out, err = nnx(capsys, "batch-compare", engine_runs["j1"], engine_runs["dask"], "--plot", plot,
                         "--json", tmp_path / "c.json")
    assert code == 0, err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = json.loads((tmp_path / "c.json").read_text())["runs"]
    assert [(r["run"], r["rows"], r["ok"], r["error"], r["solved"]) for r in runs] == [("j1", 6, 4, 2, 4),
                                                                                      ("dask", 6, 4, 2, 4)]
    assert "j1" in out and "dask" in out


def test_verify_runs_over_the_vnncomp_test_instances_with_its_answers(capsys, tmp_path):
    """``batch … verify``: the property goes in as verify's argument, the row's limit as its own --timeout; a sat
    (exit 1) is an answer, not an error; every row's verdict is VNN-COMP's, and sat and unsat count as solved."""
    test = MODELS / "vnncomp_test"
    expected = {"test_sat.onnx": "sat", "test_unsat.onnx": "unsat", "test_small.onnx": "unsat"}
    rows = [(test / name, test / ("test_small.vnnlib" if name == "test_small.onnx" else "test_prop.vnnlib"), 30)
            for name in expected]
    code, out, err = nnx(capsys, "batch", write_csv(tmp_path, "instances.csv", rows), "verify", "--workers", "1",
                         "--out", tmp_path / "out", "-j", "1")
    assert code == 0, err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["status"] for r in results["rows"]] == ["ok"] * 3
    assert [r["figures"]["result"] for r in results["rows"]] == list(expected.values())
    assert [r["exit_code"] for r in results["rows"]] == [1, 0, 0]
    assert results["summary"]["solved"] == 3 and "solved 3 of 3 (sat 1, unsat 2)" in out
    log = (tmp_path / "out" / "rows" / "test_sat__test_prop" / "log.txt").read_text()
    assert "sat" in log
    for args, expected_error in ((["--result", "r.txt"], "batch gives each row its own report"),
                                 (["--frobnicate"], "No such option: --frobnicate")):
        code, _, err = nnx(capsys, "batch", tmp_path / "instances.csv", "verify", *args, "--out", tmp_path / "never")
        assert code == 2 and expected_error in err, err


def test_a_decision_command_gets_the_row_limit_as_its_own_and_is_killed_only_past_it(tmp_path):
    from nnxform.batch import read_instances
    from nnxform.batch.runner import _task, kill_after
    from nnxform.cli.batch import batch_spec
    rows = read_instances(write_csv(tmp_path, "i.csv", [(f"{tmp_path}/a.onnx", f"{tmp_path}/p.vnnlib", 30)]))
    verify_task = _task(batch_spec("verify", ["--workers", "1"]), rows[0])
    assert verify_task.argv[:3] == ["verify", "model/a.onnx", "property/p.vnnlib"] and verify_task.argv[-2:] == ["--timeout", "30"]
    assert verify_task.timeout == kill_after(30) > 30 and verify_task.answers == (1, 3)
    bounds_task = _task(batch_spec("bounds", []), rows[0])
    assert bounds_task.argv[:4] == ["bounds", "model/a.onnx", "--vnnlib", "property/p.vnnlib"] and "--timeout" not in bounds_task.argv
    assert bounds_task.timeout == 30 and bounds_task.answers == ()
