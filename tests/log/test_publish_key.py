"""POST publish honours the contract's idempotency `key` and checks it."""

from __future__ import annotations

import httpx

from harness.servers import ServerProcess
from harness.tokens import token


def test_publish_key_over_http(server: ServerProcess) -> None:
    auth = {"Authorization": "Bearer " + token()}
    batch = [{"ch": "key.a", "data": {"i": i}, "key": f"k{i}"} for i in range(3)]
    first = httpx.post(server.url + "/publish", json=batch[:2], headers=auth)
    assert first.json() == {"seqs": [1, 2]}
    retried = httpx.post(server.url + "/publish", json=batch, headers=auth)  # the answer was lost
    assert retried.json() == {"seqs": [1, 2, 3]}
    history = httpx.get(server.url + "/history?ch=key.a", headers=auth).json()
    assert [m["data"]["i"] for m in history["msgs"]] == [0, 1, 2]
    for bad in (7, "", "x" * 201):
        r = httpx.post(server.url + "/publish", json={"ch": "key.a", "data": {}, "key": bad}, headers=auth)
        assert r.status_code == 400 and r.json()["error"] == "bad_request" and "'key'" in r.json()["detail"]


def test_a_bad_channel_anywhere_in_a_batch_refuses_the_batch(server: ServerProcess) -> None:
    auth = {"Authorization": "Bearer " + token()}
    for bad in (["x"], {"a": 1}, None, "has space"):
        body = [{"ch": "ok.a", "data": {"i": 1}}, {"ch": bad, "data": {"i": 2}}]
        r = httpx.post(server.url + "/publish", json=body, headers=auth)
        assert r.status_code == 400 and r.json()["error"] == "bad_request"
    assert httpx.get(server.url + "/history?ch=ok.a", headers=auth).status_code == 404  # nothing published
