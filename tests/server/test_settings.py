"""Settings are the one source of `pulseboard serve`'s defaults, options and docs table."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from pulseboard_server.cli import parser, settings_from
from pulseboard_server.config import Settings, cli_fields, settings_table

DOCS = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_every_option_reaches_settings() -> None:
    args = parser().parse_args([
        "serve", "--ping-interval", "2.5", "--tick", "0", "--max-buffer", "4096", "--allowed-origin", "http://a",
        "--allowed-origin", "http://b", "--hub", "--node", "n1", "--heartbeat", "3", "--poll-timeout", "0",
    ])
    s = settings_from(args)
    assert s.ping_interval == 2.5
    assert (s.tick, s.max_buffer, s.hub, s.node, s.heartbeat, s.poll_timeout) == (0, 4096, True, "n1", 3, 0)
    assert s.allowed_origins == ["http://a", "http://b"]


def test_defaults_come_from_settings() -> None:
    s = settings_from(parser().parse_args(["serve"]))
    default = Settings()
    for f in cli_fields():
        assert getattr(s, f.name) == getattr(default, f.name), f.name
    assert "secret" in {f.name for f in fields(Settings)} - {f.name for f in cli_fields()}  # env only


def test_docs_table_is_the_generated_one() -> None:
    assert settings_table() in DOCS.read_text()
