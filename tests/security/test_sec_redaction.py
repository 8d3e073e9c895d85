"""`redact` on its own: every way a token or ticket can be written into a log line."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from harness.tokens import token
from pulseboard_server.redaction import redact

TOK = token()
SIG = TOK.split(".")[2]

LINES = [
    f"GET /ws?token={TOK} HTTP/1.1",
    f"GET /sse?tok%65n={TOK}&ch=a",
    f"GET /sse?%74%6F%6B%65%6E={TOK}",
    f"GET /sse?tok%2565n={TOK}",  # encoded twice
    f"GET /poll?ticket={TOK}",
    f"GET /poll?ch=a&TOKEN={TOK}",
    f"GET /poll?access_token={TOK}",
    f"GET /x?token={quote(TOK, safe='')}",
    f"GET /x?token={TOK.replace('.', '%2E')}",
    f"GET /x?t%6Fken={TOK.replace('.', '%2e')}",
    f"GET /x?other={TOK}",  # JWT-shaped anywhere
    f"GET /x?other={TOK.replace('.', '%2E')}",
    f"Authorization: Bearer {TOK}",
    f"protocols: pulseboard.v1, bearer.{TOK}",
    f"{{'token': '{TOK}'}}",
    f'{{"ticket": "{TOK}"}}',
    f"refresh with token={TOK[:-3]}",  # truncated still hidden
]


@pytest.mark.parametrize("line", LINES)
def test_secrets_are_redacted(line: str) -> None:
    out = redact(line)
    assert "[redacted" in out
    assert SIG not in out and SIG[:16] not in out and TOK.split(".")[1] not in out


@pytest.mark.parametrize("line", ["token expired: get a new one", "cpu 50% load", "GET /poll?ch=a&cursor=abc HTTP/1.1",
                                  "ticket already used: ask for a new one", "seq=5 epoch=abc"])
def test_ordinary_lines_are_left_alone(line: str) -> None:
    assert redact(line) == line
