"""Named close values (code + reason), from `closes.json`, the table the TypeScript client reads too."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Close:
    code: int
    reason: str
    retry: bool = True  # whether a client should reconnect after it


def _load() -> dict[str, Close]:
    table = json.loads((Path(__file__).parent / "closes.json").read_text())
    return {name: Close(v["code"], v["reason"], v["retry"]) for name, v in table.items()}


CLOSES = _load()
GOING_AWAY = CLOSES["going_away"]
INTERNAL = CLOSES["internal"]
TOKEN_EXPIRED = CLOSES["token_expired"]
FORBIDDEN = CLOSES["forbidden"]
PROTOCOL_ERRORS = CLOSES["protocol_errors"]
TOO_SLOW = CLOSES["too_slow"]
