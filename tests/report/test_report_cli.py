"""`pulseboard report` on bad input: one line on stderr, exit 1, no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from report_support import BIN

from harness.notebooks import notebook


def report(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "pulseboard"), "report", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize(("content", "said"), [
    (None, "cannot read nb.ipynb: No such file or directory"),
    ("not json", "nb.ipynb is not a valid notebook: Notebook does not appear to be JSON"),
    ('{"cells": 3}', "nb.ipynb is not a valid notebook"),
])
def test_bad_notebooks_are_refused_in_one_line(tmp_path: Path, content: str | None, said: str) -> None:
    if content is not None:
        (tmp_path / "nb.ipynb").write_text(content)
    done = report("nb.ipynb", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"pulseboard report: {said}")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_failing_cell_under_execute_is_named(tmp_path: Path) -> None:
    notebook(tmp_path / "nb.ipynb", ["x = 1", "1 / 0"])
    done = report("nb.ipynb", "--execute", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "pulseboard report: executing nb.ipynb failed: ZeroDivisionError: division by zero" in done.stderr
    assert not (tmp_path / "nb.html").exists()


def test_a_notebook_without_charts_is_still_a_report(tmp_path: Path) -> None:
    notebook(tmp_path / "nb.ipynb", ["print('hello')"])
    done = report("nb.ipynb", "--execute", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "nb.html"
    html = (tmp_path / "nb.html").read_text()
    assert "hello" in html and 'id="pulseboard-report-data">[]<' in html
