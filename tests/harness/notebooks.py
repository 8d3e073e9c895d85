"""Notebooks for tests: code cells written as an .ipynb file a real Jupyter opens."""

from __future__ import annotations

import json
from pathlib import Path

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def notebook(path: Path, cells: list[str]) -> Path:
    """Write a notebook of `cells` (code, not yet run) to `path`, for the python3 kernel."""
    nb = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": KERNELSPEC},
        "cells": [
            {"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None,
             "outputs": [], "source": src}
            for i, src in enumerate(cells)
        ],
    }
    path.write_text(json.dumps(nb))
    return path
