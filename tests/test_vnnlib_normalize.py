"""Issue 14: any VNN-LIB property rewritten in the form the simplest parsers read, with the same meaning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, assert_clean_error, run_cli

from nnxform.errors import NnxformError
from nnxform.vnnlib import normalize, read_property

#: Two input boxes and a nested output condition, as ACAS Xu's prop_6 and VNN-COMP's generators write them.
DISJUNCTIVE = """
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (or (and (>= X_0 -1) (<= X_0 -0.5) (>= X_1 0) (<= X_1 1))
            (and (>= X_0 0.5) (<= X_0 1) (>= X_1 0) (<= X_1 1))))
(assert (or (<= Y_0 Y_1) (and (>= Y_2 0.25) (<= Y_2 3))))
(assert (<= Y_1 10))
"""


def same_meaning(before: str, after: list[str]) -> None:
    """The cases (input box, output disjuncts) of ``before`` are those of the files ``after``, in order."""
    cases = read_property(before)
    assert len(after) == len(cases)
    for (box, dnf), text in zip(cases, after):
        ((got, got_dnf),) = read_property(text)
        assert np.array_equal(got.lower, box.lower) and np.array_equal(got.upper, box.upper)
        assert {frozenset(c) for c in got_dnf} == {frozenset(c) for c in dnf}


@pytest.mark.parametrize("name", sorted(p.name for p in (MODELS / "vnnlib").glob("*.vnnlib")))
def test_every_bundled_property_keeps_its_meaning(name: str) -> None:
    text = (MODELS / "vnnlib" / name).read_text()
    files = normalize(text, name)
    same_meaning(text, files)
    for out in files:  # the form: declarations first, one bound per assert, one (or (and ...)) at most
        lines = [ln for ln in out.splitlines() if ln and not ln.startswith(";")]
        declared = [i for i, ln in enumerate(lines) if ln.startswith("(declare-const")]
        assert declared == list(range(len(declared)))
        ors = [ln for ln in lines if ln.startswith("(assert (or")]
        assert len(ors) <= 1 and all(ln.count("X_") <= 1 for ln in lines if ln.startswith("(assert (") and "X_" in ln)


def test_a_top_level_output_assertion_becomes_one_disjunction() -> None:
    """pynever refuses VNN-COMP's top-level (assert (>= Y_0 ...)) as 'Mixed input and output variables'."""
    (out,) = normalize((MODELS / "vnnlib" / "acasxu_prop_1.vnnlib").read_text())
    assert "(assert (or\n    (and (>= Y_0 3.991125645861615))\n))" in out


def test_a_disjunction_over_inputs_becomes_one_file_per_box() -> None:
    files = normalize(DISJUNCTIVE)
    assert len(files) == 2
    same_meaning(DISJUNCTIVE, files)
    ((_, dnf),) = read_property(files[0])
    assert len(dnf) == 2 and all("(<= Y_1 10)" in c for c in dnf)


def test_disjuncts_that_mix_inputs_and_outputs_become_cases() -> None:
    """VNN-COMP's (assert (or (and X-bounds Y-condition) ...)): each disjunct's box with its own output condition."""
    mixed = "(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_0 0))(assert (<= X_0 1))" \
            "(assert (or (and (<= X_0 0.5) (>= Y_0 1)) (and (>= X_0 0.5) (<= Y_0 0))))"
    files = normalize(mixed)
    assert len(files) == 2 and "(and (>= Y_0 1))" in files[0] and "(and (<= Y_0 0))" in files[1]
    same_meaning(mixed, files)
    with pytest.raises(NnxformError, match="only box constraints on inputs"):
        normalize("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_0 0))(assert (<= X_0 1))"
                  "(assert (<= X_0 Y_0))")


def test_the_command_writes_every_box_and_their_instances(tmp_path: Path) -> None:
    source = tmp_path / "prop_6.vnnlib"
    source.write_text(DISJUNCTIVE)
    net = MODELS / "marabou_fc_2-2-3.onnx"
    r = run_cli("vnnlib-normalize", source, "-o", tmp_path / "norm.vnnlib", "--onnx", net)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instances.csv", "norm_0.vnnlib", "norm_1.vnnlib", "prop_6.vnnlib"]
    same_meaning(DISJUNCTIVE, [(tmp_path / f"norm_{k}.vnnlib").read_text() for k in range(2)])
    assert len((tmp_path / "instances.csv").read_text().splitlines()) == 2
    single = tmp_path / "prop_1.vnnlib"
    single.write_text((MODELS / "vnnlib" / "acasxu_prop_1.vnnlib").read_text())
    assert_clean_error(run_cli("vnnlib-normalize", single, "-o", single), "is the input file")
