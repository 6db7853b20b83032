"""examples/papers.mk, paper 001's queries: every query decided by ``nnxform verify``, its exit statuses 1 (sat) and
3 (timeout / unknown) taken as answers, an error stopping make, and the summary table per network. The pipeline runs
with a stand-in for nnxform (a shell script: each command writes empty files, verify answers by the query's test
row), so the test takes about a second; the one thing it cannot see, the form of verify's real report that the
summary reads, is checked against ``Verdict.to_json`` as the command writes it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nnxform.cli.common import json_text
from nnxform.verify import Verdict

ROOT = Path(__file__).resolve().parents[1]
NETS = ["baseline", "sparse", "np50", "np75", "wp50", "wp90"]

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("awk") is None,
                                reason="needs make and awk")

# verify's stand-in: test row 0 unsat (exit 0), row 1 sat (exit 1), row 2 timeout (exit 3), row 3 unknown (exit 3);
# seconds = row + 0.5, and 10 more for np75. FAKE_STATUS=N: exit N writing nothing (an error); FAKE_NO_SECONDS: a
# report without seconds. Other commands write an empty file at -o and --json.
FAKE = r"""#!/bin/sh
cmd=$1; shift
if [ "$cmd" = verify ]; then
  prop=$2; result=; json=
  while [ $# -gt 0 ]; do case $1 in --result) result=$2; shift;; --json) json=$2; shift;; esac; shift; done
  echo "verify $prop" >> "$FAKE_LOG"
  [ -n "$FAKE_STATUS" ] && exit "$FAKE_STATUS"
  row=${prop##*_}; row=${row%.vnnlib}
  case $row in 0) a=unsat s=0;; 1) a=sat s=1;; 2) a=timeout s=3;; *) a=unknown s=3;; esac
  extra=0; case $prop in */np75_*) extra=10;; esac
  printf '%s\n' $a > "$result"
  printf '{\n  "answer": "%s",\n  "seconds": %s.5,\n  "branches": 1\n}\n' $a $((row + extra)) > "$json"
  [ -n "$FAKE_NO_SECONDS" ] && printf '{\n  "answer": "%s"\n}\n' $a > "$json"
  exit $s
fi
while [ $# -gt 0 ]; do case $1 in -o|--json) : > "$2"; shift;; esac; shift; done
"""


def make(tmp_path: Path, *goals: str, jobs: int = 1, **env: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "nnxform"
    if not fake.exists():
        fake.write_text(FAKE)
        fake.chmod(0o755)
    return subprocess.run(["make", "-f", "examples/papers.mk", f"NNX={fake}", f"OUT={tmp_path / 'out'}",
                           "QUERIES=0 1 2 3", f"-j{jobs}", *goals], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FAKE_LOG": str(tmp_path / "log"), **env})


@pytest.mark.parametrize("jobs", [1, 4])
def test_every_query_is_decided_by_verify_and_tabulated(tmp_path, jobs):
    done = make(tmp_path, "queries", jobs=jobs)
    assert done.returncode == 0, done.stderr
    queries = tmp_path / "out" / "p001" / "queries"
    assert len((tmp_path / "log").read_text().splitlines()) == 24  # 6 networks x 4 rows, each verified once
    for net in NETS:
        assert [(queries / f"{net}_{i}.result").read_text() for i in range(4)] == \
               ["unsat\n", "sat\n", "timeout\n", "unknown\n"]
    csv = (tmp_path / "out" / "p001" / "verify.csv").read_text().splitlines()
    assert csv[0] == "network,row,answer,seconds" and len(csv) == 25
    assert "np75,3,unknown,13.500" in csv and "baseline,1,sat,1.500" in csv
    table = (tmp_path / "out" / "p001" / "verify.md").read_text().splitlines()
    assert table[0].startswith("| network | queries | solved | unsat (robust) | sat (not robust) | timeout / unknown")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    assert [r[0] for r in rows] == NETS
    assert rows[0] == ["baseline", "4", "2", "1", "1", "1 / 1", "2.00", "8.0", "1 2? 3?"]
    assert rows[3] == ["np75", "4", "2", "1", "1", "1 / 1", "12.00", "48.0", "1 2? 3?"]
    assert "verify.md" in done.stdout and "| wp90 | 4 |" in done.stdout
    assert (queries / "instances.csv").read_text().splitlines() == \
           [f"../{net}.onnx,{net}_{i}.vnnlib,60" for net in NETS for i in range(4)]
    # nothing left to do: answers, sat and timeouts included, are files make keeps
    again = make(tmp_path, "queries")
    assert again.returncode == 0 and len((tmp_path / "log").read_text().splitlines()) == 24


@pytest.mark.parametrize("status", ["2", "3", "130"])
def test_an_error_of_verify_stops_make(tmp_path, status):
    """Bad input (2), an internal error (3, as a timeout exits, but nothing written), Ctrl-C: make stops, no result
    file is left, and no table is written."""
    done = make(tmp_path, "queries", FAKE_STATUS=status)
    assert done.returncode != 0
    assert f"nnxform verify failed on {tmp_path / 'out'}/p001/queries/baseline_0.vnnlib (exit status {status})" \
        in done.stderr
    queries = tmp_path / "out" / "p001" / "queries"
    assert not list(queries.glob("*.result")) and not (tmp_path / "out" / "p001" / "verify.md").exists()


def test_a_stale_result_is_not_taken_for_an_answer(tmp_path):
    """A result file left by an earlier run does not stand in for an answer verify did not give."""
    assert make(tmp_path, "queries").returncode == 0
    (tmp_path / "out" / "p001" / "sparse.onnx").touch()  # sparse changed: its queries are decided again
    done = make(tmp_path, "queries", FAKE_STATUS="3")
    assert done.returncode != 0 and "sparse_" in done.stderr
    assert not (tmp_path / "out" / "p001" / "queries" / "sparse_0.result").exists()


def test_a_report_the_summary_cannot_read_stops_make(tmp_path):
    done = make(tmp_path, "queries", FAKE_NO_SECONDS="1")
    assert done.returncode != 0 and "24 of verify's reports unread" in done.stderr
    assert not (tmp_path / "out" / "p001" / "verify.csv").exists()


def test_verify_report_has_the_lines_the_summary_reads():
    """The summary's awk reads verify's --json by its top-level "answer" and "seconds" lines (two spaces in, as
    json_text writes them); a counterexample's numbers sit deeper and are not mistaken for them."""
    for verdict in (Verdict("unsat", 0.75, branches=1, proved=1.0),
                    Verdict("sat", 1.25, case=0, counterexample=np.array([0.0, 0.5], np.float32),
                            outputs=np.array([1.0, 2.0], np.float32)),
                    Verdict("timeout", 60.0, note="x")):
        text = json_text(verdict.to_json())
        answers = re.findall(r'^  "answer": "([a-z]+)",$', text, re.M)
        seconds = re.findall(r'^  "seconds": ([0-9.e+-]+),$', text, re.M)
        assert answers == [verdict.answer] and [float(s) for s in seconds] == [verdict.seconds]
