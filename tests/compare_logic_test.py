#!/usr/bin/env python3
"""perf/compare.py's two verdicts, without running a comparison: a reply that failed reactord-load's
verification makes the run exit non-zero with its results named *-INVALID and marked invalid, and
the "uncommitted changes" note ignores the comparison's own results under perf/results/.
Usage: compare_logic_test.py (exits 0 when every check holds)."""

import contextlib
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "perf"))
import compare  # noqa: E402
import compare_report  # noqa: E402


def git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def check_uncommitted(tmp):
    root = Path(tmp) / "repo"
    (root / "perf/results").mkdir(parents=True)
    (root / "perf/bench.cc").write_text("int main() {}\n")
    git(root, "init", "-q")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "seed")
    (root / "perf/results/compare-1.json").write_text("{}\n")
    assert compare_report.uncommitted_sources(root) == "", "its own results count as changes"
    (root / "perf/bench.cc").write_text("int main() { return 1; }\n")
    assert "perf/bench.cc" in compare_report.uncommitted_sources(root), "an edit goes unreported"


def run_main(tmp, result, name):
    """Runs compare.main() with a fake comparison whose one cell is `result`; returns its exit
    status and the files it wrote."""
    out = Path(tmp) / name

    class FakeCompare:
        def __init__(self, args):
            pass

        def run(self):
            compare.note_mismatch(result, "echo, 1 connections, 64 B, port 1")
            return {"sections": {}, "loadavg": {}, "started": "now", "seconds": 0}

    compare.byte_mismatches.clear()
    compare.Compare = FakeCompare
    sys.argv = ["compare.py", "--no-build", "--quick", "--out-dir", str(out)]
    status = 0
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            compare.main()
    except SystemExit as e:
        status = e.code
    return status, sorted(out.iterdir())


def check_mismatch(tmp):
    status, files = run_main(tmp, {"errors_verify": 0}, "clean")
    assert status in (0, None), f"a clean run exited {status}"
    assert not any("INVALID" in f.name for f in files), files
    status, files = run_main(tmp, {"errors_verify": 3, "first_error": "echo differs"}, "bad")
    assert status not in (0, None), "a run with a byte mismatch exited 0"
    assert files and all("-INVALID." in f.name for f in files), files
    res = json.loads(next(f for f in files if f.suffix == ".json").read_text())
    assert res["valid"] is False and "3 replies differed" in res["byte_mismatches"][0], res
    md = next(f for f in files if f.suffix == ".md").read_text()
    assert "INVALID" in md, md


with tempfile.TemporaryDirectory() as tmp:
    check_uncommitted(tmp)
    check_mismatch(tmp)
print("compare_logic_test: 2 passed, 0 failed")
