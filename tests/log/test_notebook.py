"""A notebook run by nbclient logs 10,000 points and ends without flush(): the exit hook delivers all."""

from __future__ import annotations

from collections.abc import Callable

import nbformat
import pytest
from nbclient import NotebookClient

from harness.channels import read_all, top_seq
from harness.servers import ServerProcess
from harness.tokens import token

CELLS = [
    "import pulseboard",
    "for i in range(10_000):\n    pulseboard.log('nb.a', {'loss': 1 / (i + 1)}, step=i)",
    "status = pulseboard.sender_status()\nprint('logged', status.queued + status.sent)",
]


def test_notebook_exit_delivers_everything(server_factory: Callable[..., ServerProcess],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # memory://: what is tested is the exit hook. A kernel asked to shut down is killed after
    # 5 s (jupyter_client's shutdown_wait_time), so the store must take 10,000 keyed messages
    # in less than that on a loaded CI machine.
    server = server_factory("--broker", "memory://", "--history", "10000")
    secret_token = token()
    monkeypatch.setenv("PULSEBOARD_URL", server.url)  # the kernel inherits these
    monkeypatch.setenv("PULSEBOARD_TOKEN", secret_token)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()  # shuts the kernel down at the end
    assert "logged 10000" in nb.cells[2].outputs[0]["text"]
    assert top_seq(server.url, "nb.a") == 10_000
    msgs = read_all(server.url, "nb.a", page=5000)
    assert [m["data"]["step"] for m in msgs] == list(range(10_000))
    assert secret_token not in nbformat.writes(nb)
