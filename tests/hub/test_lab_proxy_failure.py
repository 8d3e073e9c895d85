"""Plain JupyterLab with jupyter-server-proxy, where the on-demand pulseboard cannot start
(its store is unusable): the proxy gets the reason at once, as a 503, and does not start the
server again and again."""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness.jupyter import JupyterLabProcess
from harness.servers import wait_until
from pulseboard import serverproxy

pytestmark = pytest.mark.jupyter


def test_a_server_that_cannot_start_says_why_through_the_proxy_once() -> None:
    root = Path(tempfile.mkdtemp(prefix="pb-failinglab-"))
    jlab = JupyterLabProcess(root)
    for name in list(jlab.env):
        if name.startswith(("PULSEBOARD_", "JUPYTERHUB_")):
            del jlab.env[name]
    jlab.env["XDG_DATA_HOME"] = str(jlab.home / "data")
    (jlab.home / "data" / "pulseboard").mkdir(parents=True)
    (jlab.home / "data" / "pulseboard" / "jupyterlab").write_text("")  # the on-demand server's store: unusable
    try:
        jlab.start()
        # What the kernel's discovery asks (find_proxied): Jupyter's own token, /pulseboard/healthz.
        req = urllib.request.Request(f"{jlab.url}/pulseboard/healthz", headers={"Authorization": f"token {jlab.token}"})

        def answer() -> urllib.error.HTTPError:
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=40)
            return err.value

        first = answer()
        assert first.code == 503
        reason = serverproxy._failure_of(first)
        assert reason.startswith("pulseboard could not start: the store folder")
        assert reason.endswith("jupyterlab is not a folder")
        for _ in range(5):
            again = answer()
            assert again.code == 503 and json.loads(again.read())["error"] == "unavailable"
        # Started once, for all of those requests: no restart loop in JupyterLab's log.
        wait_until(lambda: "answering 503" in jlab.output(), timeout=10, what="the server's one line")
        assert jlab.output().count("pulseboard: error:") == 1, jlab.output()[-3000:]
    finally:
        jlab.stop()
        shutil.rmtree(root, ignore_errors=True)
