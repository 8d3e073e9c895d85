"""`POST token` (Hub mode) against a slow Hub: rate-limited per client address, and on its own
threads, so store reads go on (issue: one string must not stop the server, finding "POST token
has no rate limit and shares the thread pool with store reads")."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from harness.http_stub import stub
from harness.servers import ServerProcess
from harness.tokens import auth
from harness.ws import publish
from pulseboard_server.limits import EXCHANGE_BURST


def test_a_slow_hub_does_not_hold_up_store_reads(server_factory: Any) -> None:
    with stub({"kind": "user", "name": "ann"}) as hub:
        hub.gate = threading.Event()  # the Hub answers nothing until the end
        srv: ServerProcess = server_factory("--hub", env={"JUPYTERHUB_API_URL": hub.url + "/hub/api"})
        publish(srv, "shared.run", 3)
        answers: list[int] = []

        def exchange() -> None:
            try:
                answers.append(httpx.post(srv.url + "/token", headers={"Authorization": "token garbage"},
                                          timeout=60).status_code)
            except httpx.HTTPError:
                answers.append(0)

        flood = [threading.Thread(target=exchange) for _ in range(30)]
        for t in flood:
            t.start()
        try:
            # 30 exchanges are stuck in the Hub (a few asked it, the rest wait for a Hub thread)
            got = httpx.get(srv.url + "/history", params={"ch": "shared.run"}, headers=auth(), timeout=15)
            assert got.status_code == 200 and [m["seq"] for m in got.json()["msgs"]] == [1, 2, 3]
            assert len(hub.seen) <= 4  # the Hub's own threads, not the store's
        finally:
            hub.gate.set()
            for t in flood:
                t.join(60)
        assert sorted(set(answers)) == [200]
        assert "Traceback" not in srv.output()


def test_token_exchanges_are_rate_limited_per_address(server_factory: Any) -> None:
    with stub(None, status=401) as hub:  # the Hub refuses every token
        srv: ServerProcess = server_factory("--hub", env={"JUPYTERHUB_API_URL": hub.url + "/hub/api"})
        codes: list[int] = []
        limited: list[httpx.Response] = []
        with httpx.Client(timeout=30) as client:
            for _ in range(EXCHANGE_BURST + 40):
                r = client.post(srv.url + "/token", headers={"Authorization": "token garbage"})
                codes.append(r.status_code)
                if r.status_code == 429:
                    limited.append(r)
        assert set(codes) == {401, 429}
        assert len(hub.seen) == codes.count(401) < len(codes)  # a 429 never reaches the Hub
        body = limited[0].json()
        assert body["error"] == "rate_limited" and "too many token exchanges" in body["detail"]
        assert int(limited[0].headers["Retry-After"]) >= 1
        assert "Traceback" not in srv.output()
