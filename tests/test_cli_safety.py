"""File safety and option checks of the real ``nnxform`` command: nothing lost, nothing partial, one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import MODELS, assert_clean_error, outcome, run_cli

from nnxform.errors import NnxformError
from nnxform.fileio import Outputs

CARTPOLE = MODELS / "cartpole.onnx"
BOX = ("--lower", "0", "--upper", "1")

#: Every command that writes a network or a property: its arguments after the input, "-o" last.
WRITERS = {
    "canon": [],
    "fold-bn": [],
    "pad": ["--depth", "5"],
    "merge": ["{model}"],
    "vnnlib": ["--property", "robustness", "--label", "0", *BOX],
    "compress": [*BOX],
    "prune": ["-m", "neuron", "-r", "0.5"],
}


def writer(command: str, model: Path, output: Path, *extra: str) -> list[str]:
    """The arguments of ``command`` reading ``model`` and writing ``output``."""
    args = [str(model) if a == "{model}" else a for a in WRITERS[command]]
    return [command, str(model), *args, "-o", str(output), *extra]


@pytest.fixture
def net(tmp_path: Path) -> Path:
    return Path(shutil.copy(CARTPOLE, tmp_path / "net.onnx"))


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- 1. an output never overwrites an input ----------------------------------------------------------


@pytest.mark.parametrize("command", WRITERS)
def test_output_equal_to_the_input_is_refused(net: Path, command: str) -> None:
    before = net.read_bytes()
    assert_clean_error(run_cli(*writer(command, net, net)), "-o", "is the input file")
    assert net.read_bytes() == before and files(net.parent) == ["net.onnx"]


def test_output_equal_to_the_input_by_another_name_is_refused(net: Path) -> None:
    os.link(net, net.parent / "link.onnx")
    assert_clean_error(run_cli("canon", net, "-o", net.parent / "link.onnx"), "is the input file")
    assert_clean_error(run_cli("canon", net, "-o", net.parent / "." / "net.onnx"), "is the input file")
    vnnlib = shutil.copy(MODELS / "vnnlib" / "test_small.vnnlib", net.parent / "p.vnnlib")
    assert_clean_error(run_cli("vnnlib", net, "-o", vnnlib, "--property", "robustness", "--label", "0",
                               "--vnnlib", vnnlib), "is the input file")


@pytest.mark.parametrize("command", [c for c in WRITERS if c != "vnnlib"])
def test_json_equal_to_the_output_is_refused(net: Path, command: str) -> None:
    out = net.parent / "out.onnx"
    assert_clean_error(run_cli(*writer(command, net, out, "--json", out)), "--json", "names the same file")
    assert files(net.parent) == ["net.onnx"]


def test_merge_outputs_must_differ(net: Path) -> None:
    out = net.parent / "ab.onnx"
    r = run_cli("merge", net, net, "-o", out, *BOX, "--write-vnnlib", out, "--equiv-eps", "0.1")
    assert_clean_error(r, "--write-vnnlib", "names the same file")
    r = run_cli("merge", net, net, "-o", out, *BOX, "--write-vnnlib", net.parent / "p.vnnlib", "--equiv-eps", "0.1",
                "--instances", net)
    assert_clean_error(r, "--instances", "is the input file")
    assert files(net.parent) == ["net.onnx"]


# --- 2. all outputs of a command, or none -------------------------------------------------------------


@pytest.mark.parametrize("command", [c for c in WRITERS if c != "vnnlib"])
def test_a_json_path_that_cannot_be_written_leaves_no_network(net: Path, command: str) -> None:
    r = run_cli(*writer(command, net, net.parent / "out.onnx", "--json", net.parent / "nodir" / "r.json"))
    assert_clean_error(r, "--json", "does not exist")
    assert files(net.parent) == ["net.onnx"]


def test_vnnlib_instances_that_cannot_be_written_leave_no_property(net: Path) -> None:
    r = run_cli(*writer("vnnlib", net, net.parent / "p.vnnlib", "--instances", net.parent / "nodir" / "i.csv"))
    assert_clean_error(r, "--instances", "does not exist")
    assert files(net.parent) == ["net.onnx"]


def test_merge_with_a_bad_timeout_writes_nothing(net: Path) -> None:
    r = run_cli("merge", net, net, "-o", net.parent / "ab.onnx", *BOX, "--write-vnnlib", net.parent / "p.vnnlib",
                "--equiv-eps", "0.1", "--timeout", "0")
    assert_clean_error(r, "--timeout", "positive")
    assert files(net.parent) == ["net.onnx"]


def test_merge_rewrites_instances_csv_whole(net: Path) -> None:
    csv = net.parent / "instances.csv"
    csv.write_text("other.onnx,other.vnnlib,30\n")
    args = ("merge", net, net, "-o", net.parent / "ab.onnx", *BOX, "--write-vnnlib", net.parent / "p.vnnlib",
            "--equiv-eps", "0.1")
    assert run_cli(*args).returncode == 0
    assert run_cli(*args, "--timeout", "12.5").returncode == 0
    assert csv.read_text() == "other.onnx,other.vnnlib,30\nab.onnx,p.vnnlib,12.5\n"


def test_a_read_only_json_folder_is_found_before_any_work(net: Path, monkeypatch) -> None:
    read_only = net.parent / "ro"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != read_only and real_access(p, mode))
    monkeypatch.setattr("nnxform.cli.canon.load", lambda path: pytest.fail("the command ran before checking"))
    status, _, err = outcome(run_cli("canon", net, "-o", net.parent / "o.onnx",
                           "--json", read_only / "r.json"))
    assert status == 2 and err.count("\n") == 1 and "cannot write in folder" in err and "read-only" in err
    assert files(net.parent) == ["net.onnx", "ro"] and files(read_only) == []


def test_a_failed_write_at_the_end_leaves_no_output(net: Path, monkeypatch) -> None:
    real_replace = os.replace

    def replace(src: str, dst: os.PathLike) -> None:
        if Path(dst).suffix == ".json":
            raise OSError(30, "Read-only file system")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    status, _, err = outcome(run_cli("canon", net, "-o", net.parent / "o.onnx", "--json",
                           net.parent / "r.json"))
    assert status == 2 and err.count("\n") == 1 and "r.json: cannot be written (Read-only file system)" in err
    assert files(net.parent) == ["net.onnx"]


def test_outputs_are_all_written_or_none(tmp_path: Path, monkeypatch) -> None:
    old, new = tmp_path / "old.txt", tmp_path / "new.txt"
    old.write_text("old")
    outputs = Outputs()
    for path in (new, old):
        outputs.add_path(path)
    outputs.put(new, b"new")
    outputs.put(old, "changed")
    _full_disk_for(monkeypatch, old)
    with pytest.raises(NnxformError, match="old.txt: cannot be written"):
        outputs.commit()
    assert files(tmp_path) == ["old.txt"] and old.read_text() == "old"  # new.txt, renamed first, is gone again
    monkeypatch.undo()
    outputs.commit()
    assert files(tmp_path) == ["new.txt", "old.txt"] and old.read_text() == "changed"


# --- 3. what used to be internal errors ----------------------------------------------------------------


@pytest.mark.parametrize("command", WRITERS)
def test_output_path_that_is_a_folder(net: Path, command: str) -> None:
    assert_clean_error(run_cli(*writer(command, net, net.parent)), "-o", "is a folder")
    assert_clean_error(run_cli(*writer(command, net, net / "out.onnx")), "is not a folder")
    assert files(net.parent) == ["net.onnx"]


def test_output_path_that_is_not_a_regular_file(net: Path) -> None:
    fifo = net.parent / "fifo.onnx"
    os.mkfifo(fifo)
    assert_clean_error(run_cli("canon", net, "-o", fifo), "-o", "not a regular file")
    assert stat.S_ISFIFO(fifo.stat().st_mode)


@pytest.mark.parametrize("content", [None, b"\x00\x01\x02 binary", "X_0 ≤ 1".encode("utf-16")],
                         ids=["folder", "binary", "utf-16"])
def test_unreadable_vnnlib(net: Path, content: bytes | None) -> None:
    prop = net.parent / "prop.vnnlib"
    if content is None:
        prop.mkdir()
    else:
        prop.write_bytes(content)
    r = run_cli("canon", net, "-o", net.parent / "o.onnx", "--vnnlib", prop)
    assert_clean_error(r, "prop.vnnlib", "is a directory" if content is None else "not a text file")
    assert not (net.parent / "o.onnx").exists()


@pytest.mark.parametrize("command, args", [
    ("canon", ["-o", "o.onnx"]), ("fold-bn", ["-o", "o.onnx"]), ("pad", ["--depth", "5", "-o", "o.onnx"]),
    ("merge", [str(CARTPOLE), "-o", "o.onnx"]), ("compress", ["-o", "o.onnx"]), ("stable", []),
])
@pytest.mark.parametrize("samples", ["0", "-1"])
def test_samples_must_be_positive(tmp_path: Path, command: str, args: list[str], samples: str) -> None:
    r = run_cli(command, CARTPOLE, *args, "--samples", samples, cwd=tmp_path)
    assert_clean_error(r, "--samples must be an integer >= 1", f"got {samples}")
    assert files(tmp_path) == []


def test_evaluate_binary_data(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_bytes(bytes(range(128, 256)) * 8)
    assert_clean_error(run_cli("evaluate", CARTPOLE, "--data", data), "data.csv", "not a text file")


# --- 4. option values checked up front -----------------------------------------------------------------


def test_pad_refuses_an_absurd_depth(tmp_path: Path) -> None:
    r = run_cli("pad", CARTPOLE, "--depth", "100000000", "-o", tmp_path / "o.onnx")
    assert_clean_error(r, "--depth must be an integer in [1, 1000]")


@pytest.mark.parametrize("command, args", [
    ("canon", ["-o", "o.onnx"]), ("fold-bn", ["-o", "o.onnx"]), ("pad", ["--depth", "5", "-o", "o.onnx"]),
    ("merge", [str(CARTPOLE), "-o", "o.onnx"]), ("compress", ["-o", "o.onnx"]),
])
@pytest.mark.parametrize("tol", ["-1", "nan", "inf"])
def test_tolerance_must_be_finite_and_not_negative(tmp_path: Path, command: str, args: list[str], tol: str) -> None:
    r = run_cli(command, CARTPOLE, *args, "--tol", tol, cwd=tmp_path)
    assert_clean_error(r, "--tol must be a finite number >= 0")
    assert files(tmp_path) == []


@pytest.mark.parametrize("args, message", [
    (["evaluate", CARTPOLE, "--data", "x.csv", "--eps", "0.1", "--eps", "nan"], "--eps must be a finite number >= 0"),
    (["evaluate", CARTPOLE, "--data", "x.csv", "--scale", "0"], "--scale must be a positive number"),
    (["evaluate", CARTPOLE, "--data", "x.csv", "--clip-lower", "-inf"], "--clip-lower must be a finite number"),
    (["bounds", CARTPOLE, "--time-limit", "0"], "--time-limit must be a positive number"),
    (["discrepancy", CARTPOLE, CARTPOLE, *BOX, "--time-limit", "nan"], "--time-limit must be a positive number"),
    (["stable", CARTPOLE, "--time-limit", "-1"], "--time-limit must be a finite number >= 0"),
    (["stable", CARTPOLE, "--seed", "-1"], "--seed must be an integer >= 0"),
    (["compress", CARTPOLE, "-o", "o.onnx", "--certify-time-limit", "0"], "--certify-time-limit must be a positive"),
    (["compress", CARTPOLE, "-o", "o.onnx", "--rank-tol", "nan"], "--rank-tol must be a finite number >= 0"),
    (["prune", CARTPOLE, "-m", "neuron", "-r", "1.5", "-o", "o.onnx"], "--ratio must be a finite number in [0, 1]"),
    (["prune", CARTPOLE, "-m", "saliency", "-r", "0.5", "--step", "0", "-o", "o.onnx"], "--step must be a finite "
                                                                                         "number in (0, 1]"),
    (["prune", CARTPOLE, "-m", "saliency", "-r", "0.5", "--alpha", "nan", "-o", "o.onnx"], "--alpha must be"),
    (["prune", CARTPOLE, "-m", "neuron", "-r", "0.5", "--fgsm-eps", "-1", "-o", "o.onnx"], "--fgsm-eps must be"),
    (["vnnlib", CARTPOLE, "-o", "p.vnnlib", "--property", "equivalence", "--equiv-eps", "nan", *BOX],
     "--equiv-eps must be a positive number"),
    (["vnnlib", CARTPOLE, "-o", "p.vnnlib", "--property", "robustness", "--label", "0", "--timeout", "inf", *BOX],
     "--timeout must be a positive number"),
])
def test_number_options_are_checked_before_any_work(tmp_path: Path, args: list, message: str) -> None:
    assert_clean_error(run_cli(*args, cwd=tmp_path), message)
    assert files(tmp_path) == []


# --- 5. usage errors and interrupts: one line ----------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["canon", CARTPOLE, "-o", "o.onnx", "--bogus"], "No such option: --bogus"),
    (["canon"], "Missing argument"),
    (["canonx"], "No such command 'canonx'"),
    (["canon", CARTPOLE, "-o", "o.onnx", "--samples", "many"], "'--samples'"),
    (["bounds", CARTPOLE, "--method"], "--method"),
])
def test_usage_errors_are_one_line(tmp_path: Path, args: list, message: str) -> None:
    r = run_cli(*args, cwd=tmp_path)
    command = args[0] if args[0] != "canonx" else None
    assert_clean_error(r, "nnxform: error: ", message, f"(see 'nnxform{' ' + command if command else ''} --help')")
    assert files(tmp_path) == []


def test_help_and_version_still_exit_0() -> None:
    for args in (["--help"], ["canon", "--help"], ["pad", "-h"], ["--version"]):
        r = run_cli(*args)
        assert r.returncode == 0 and r.stderr == "" and r.stdout, args


# --- 6. provenance names files by content, not by path -------------------------------------------------


def test_outputs_do_not_depend_on_where_the_inputs_are(tmp_path: Path) -> None:
    outputs = []
    for place in ("one", "two/deeper"):
        folder = tmp_path / place
        folder.mkdir(parents=True)
        model = shutil.copy(CARTPOLE, folder / "net.onnx")
        prop = shutil.copy(MODELS / "vnnlib" / "acasxu_prop_1.vnnlib", folder / "prop.vnnlib")
        np.save(folder / "lo.npy", np.zeros(4))
        results = []
        for args in (["canon", model, "--lower", folder / "lo.npy", "--upper", "1"],
                     ["merge", model, model, "--lower", folder / "lo.npy", "--upper", "1"],
                     ["pad", model, "--like", model, "--lower", "0", "--upper", "1"]):
            out = folder / "out.onnx"
            r = run_cli(*args, "-o", out, cwd=folder.parent)
            assert r.returncode == 0, r.stderr
            results.append(out.read_bytes())
        outputs.append(results)
    assert outputs[0] == outputs[1]
    meta = {p.key: p.value for p in onnx.ModelProto.FromString(outputs[0][0]).metadata_props}
    domain = json.loads(meta["nnxform.parameters"])["domain"]
    assert domain["lower"] == "lo.npy"
    assert domain["lower_sha256"] == hashlib.sha256((tmp_path / "one" / "lo.npy").read_bytes()).hexdigest()
    assert str(tmp_path) not in meta["nnxform.parameters"]


def test_vnnlib_is_recorded_by_name_and_content(tmp_path: Path) -> None:
    prop = shutil.copy(MODELS / "vnnlib" / "acasxu_prop_1.vnnlib", tmp_path / "prop.vnnlib")
    out = tmp_path / "o.onnx"
    r = run_cli("canon", MODELS / "ACASXU_run2a_1_1_batch_2000.onnx", "-o", out, "--vnnlib", prop)
    assert r.returncode == 0, r.stderr
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    domain = json.loads(meta["nnxform.parameters"])["domain"]
    assert domain == {"vnnlib": "prop.vnnlib", "vnnlib_sha256": hashlib.sha256(Path(prop).read_bytes()).hexdigest()}


# --- 7. a VNN-LIB file with several input boxes --------------------------------------------------------

TWO_BOXES = """(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const X_3 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_1 0)) (assert (<= X_1 1)) (assert (>= X_2 0)) (assert (<= X_2 1)) (assert (>= X_3 0)) (assert (<= X_3 1))
(assert (or (and (>= X_0 0) (<= X_0 1))
            (and (>= X_0 2) (<= X_0 3))))
(assert (>= Y_0 Y_1))
"""


def test_box_picks_one_input_box_of_a_vnnlib_file(tmp_path: Path) -> None:
    prop = tmp_path / "two.vnnlib"
    prop.write_text(TWO_BOXES)
    assert_clean_error(run_cli("bounds", CARTPOLE, "--vnnlib", prop), "2 input boxes", "--box K")
    assert_clean_error(run_cli("bounds", CARTPOLE, "--vnnlib", prop, "--box", "2"), "--box 2 does not exist",
                       "2 input boxes")
    assert_clean_error(run_cli("bounds", CARTPOLE, "--box", "0"), "--box", "give --vnnlib")
    assert_clean_error(run_cli("bounds", CARTPOLE, "--vnnlib", prop, "--box", "-1"), "--box must be an integer >= 0")
    lowers = []
    for k in ("0", "1"):
        r = run_cli("bounds", CARTPOLE, "--vnnlib", prop, "--box", k, "--method", "interval", "--json", "-")
        assert r.returncode == 0, r.stderr
        lowers.append(json.loads(r.stdout)["output"]["lower"])
    assert lowers[0] != lowers[1]
    out = tmp_path / "o.onnx"
    assert run_cli("canon", CARTPOLE, "-o", out, "--vnnlib", prop, "--box", "1").returncode == 0
    domain = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["nnxform.parameters"])["domain"]
    assert domain["box_index"] == 1 and domain["vnnlib"] == "two.vnnlib"


# --- info and check write through the same checks; HiGHS stays off stdout; one tolerance rule -------------


@pytest.mark.parametrize("args", [["info", "{net}", "--json", "{net}"],
                                  ["check", "{net}", "{other}", "--save-worst", "{net}", *BOX],
                                  ["check", "{net}", "{other}", "--json", "{out}", "--save-worst", "{out}", *BOX]])
def test_info_and_check_never_overwrite_an_input_or_each_other(net: Path, args: list[str]) -> None:
    other = Path(shutil.copy(CARTPOLE, net.parent / "other.onnx"))
    before = net.read_bytes()
    subst = {"{net}": str(net), "{other}": str(other), "{out}": str(net.parent / "out.json")}
    r = run_cli(*[subst.get(a, a) for a in args])
    assert_clean_error(r)
    assert net.read_bytes() == before and not (net.parent / "out.json").exists()


@pytest.mark.parametrize("args", [["bounds", "{small}", "--method", "lp", "--vnnlib", "{small_box}"],
                                  ["bounds", "{small}", "--method", "milp", "--vnnlib", "{small_box}", "--time-limit", "5"],
                                  ["discrepancy", "{small}", "{small}", "--method", "lp", "--vnnlib", "{small_box}"],
                                  ["stable", "{acas}", "--vnnlib", "{acas_box}", "--time-limit", "4"]])
def test_json_on_stdout_is_parseable_when_highs_runs(args: list[str]) -> None:
    """HiGHS prints a banner on stdout from C++ the first time it is used: it must not reach --json -. Once per
    process, on file descriptor 1: only a new process shows it (in this one HiGHS ran long ago, and an in-process
    run captures Python's stdout, not the descriptor). The banner on stderr shows HiGHS did run (the stable case
    reaches its milp stage: on mnist's box the bound stages settle every neuron and HiGHS never starts)."""
    subst = {"{small}": str(MODELS / "test_small.onnx"), "{small_box}": str(MODELS / "vnnlib" / "test_small.vnnlib"),
             "{acas}": str(MODELS / "ACASXU_run2a_1_1_batch_2000.onnx"),
             "{acas_box}": str(MODELS / "vnnlib" / "acasxu_prop_1.vnnlib")}
    r = run_cli(*[subst.get(a, a) for a in args], "--json", "-", process=True)
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)
    assert "Running HiGHS" in r.stderr, r.stderr


def test_compress_certifies_a_network_with_huge_outputs(tmp_path: Path) -> None:
    """Outputs ~1e15: the certificate compares with tol·(1 + |y|), as the sampled check does (it used an absolute 1e-5)."""
    from conftest import make_model, save
    from onnx import helper

    rng = np.random.default_rng(3)
    W1, b1 = rng.normal(size=(8, 3)) * 1e7, rng.normal(size=8) * 1e7
    W2, b2 = rng.normal(size=(2, 8)) * 1e7, rng.normal(size=2)
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1)]
    path = save(make_model(nodes, [1, 3], weights={"W1": W1, "b1": b1, "W2": W2, "b2": b2}), tmp_path / "big.onnx")
    r = run_cli("compress", path, "-o", tmp_path / "small.onnx", *BOX, "--certify", "--time-limit", "20")
    assert r.returncode == 0, r.stderr
    assert "tolerance 1e-05·(1 + |y|)" in r.stdout and (tmp_path / "small.onnx").exists()


def test_compress_reuses_a_stable_classification_of_the_same_file_and_box(tmp_path: Path) -> None:
    mnist, box = MODELS / "mnist-net_256x2.onnx", MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib"
    r = run_cli("stable", mnist, "--vnnlib", box, "--node-limit", "100", "--json", tmp_path / "s.json")
    assert r.returncode == 0, r.stderr
    r = run_cli("compress", mnist, "--vnnlib", box, "--stability", tmp_path / "s.json", "-o", tmp_path / "c.onnx")
    assert r.returncode == 0, r.stderr
    assert "read from a 'nnxform stable --json' file" in r.stdout
    fresh = run_cli("compress", mnist, "--vnnlib", box, "-o", tmp_path / "d.onnx")
    assert (tmp_path / "c.onnx").read_bytes() == (tmp_path / "d.onnx").read_bytes()
    r = run_cli("compress", mnist, "--lower", "0", "--upper", "1", "--stability", tmp_path / "s.json", "-o", tmp_path / "e.onnx")
    assert_clean_error(r, "another input box")
    assert not (tmp_path / "e.onnx").exists()


def test_stable_and_compress_take_a_milp_solver(tmp_path: Path) -> None:
    """--solver cbc reaches the MILP stage through pulp; an unknown solver is one line before any work."""
    mnist, box = MODELS / "mnist-net_256x2.onnx", MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib"
    r = run_cli("compress", mnist, "--vnnlib", box, "--solver", "cbc", "-o", tmp_path / "c.onnx")
    assert r.returncode == 0, r.stderr
    assert_clean_error(run_cli("stable", mnist, "--vnnlib", box, "--solver", "glpk"), "unknown MILP solver 'glpk'")


def test_a_replaced_file_is_put_back_when_a_later_output_fails(tmp_path: Path, monkeypatch) -> None:
    """An existing output already replaced gets its old content back when a later one cannot be written."""
    old, new = tmp_path / "old.txt", tmp_path / "new.txt"
    old.write_text("old")
    outputs = Outputs()
    for path in (old, new):
        outputs.add_path(path)
    outputs.put(old, "changed")
    outputs.put(new, b"new")
    _full_disk_for(monkeypatch, new)
    with pytest.raises(NnxformError, match="new.txt: cannot be written"):
        outputs.commit()
    assert files(tmp_path) == ["old.txt"] and old.read_text() == "old"


def _full_disk_for(monkeypatch, path: Path) -> None:
    """Make every rename onto ``path`` fail as on a full disk."""
    real_replace = os.replace

    def replace(src: str, dst: os.PathLike) -> None:
        if Path(dst) == path:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
