"""A newcomer's first mistakes with a chart say what to do, in the chart's message line: no
server at the URL (is `pulseboard serve` running?) and a token the server refuses (which
setting holds it, how to make one). Found trying the README's quick start as a new user."""

from __future__ import annotations

from harness.servers import ServerProcess, free_port
from harness.tokens import token
from pulseboard import LiveChart


def problem_of(url: str, tok: str) -> str:
    chart = LiveChart("train.run1", url=url, token=tok)
    try:
        return str(chart.problem)
    finally:
        chart.close()


def test_no_server_at_the_url_asks_whether_it_is_running() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    shown = problem_of(dead, token())
    assert f"cannot reach a pulseboard server at {dead}" in shown and "Connection refused" in shown
    assert "is `pulseboard serve` running there, and is PULSEBOARD_URL right?" in shown


def test_a_refused_token_names_the_setting_and_how_to_make_one(server: ServerProcess) -> None:
    shown = problem_of(server.url, "garbage")
    assert "the server refused your token (401: token is malformed or its signature is bad)" in shown
    assert "check PULSEBOARD_TOKEN (`pulseboard token --sub NAME` makes one)" in shown
    expired = problem_of(server.url, token(ttl=-10))
    assert "the server refused your token (401: token expired" in expired, expired
