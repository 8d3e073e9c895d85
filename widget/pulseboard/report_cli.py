"""`pulseboard report NOTEBOOK [-o OUT.html] [--execute]`: the subcommand (nbconvert loads only when run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_report_parser(sub: Any) -> None:
    r = sub.add_parser("report", help="write a notebook as an offline HTML report",
                       description="Write a notebook as one HTML file whose charts open with no network.")
    r.add_argument("notebook", type=Path, help="the .ipynb file")
    r.add_argument("-o", "--output", type=Path, default=None, help="the HTML file (NOTEBOOK.html)")
    r.add_argument("--execute", action="store_true", help="run the notebook first (headless)")


def report_command(args: argparse.Namespace) -> None:
    try:
        from .report import ReportError, make_report
    except ImportError as e:
        print(f"pulseboard report: needs nbconvert and nbclient ({e.name} is missing): "
              "pip install 'pulseboard[report]'", file=sys.stderr)
        raise SystemExit(1) from None
    try:
        path = make_report(args.notebook, args.output, args.execute)
    except ReportError as e:
        print(f"pulseboard report: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(path)
