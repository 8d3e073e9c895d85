"""The JSON depth bound, without a server: the fast scan agrees with the parsed value's depth."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pulseboard_server.limits import MAX_JSON_DEPTH, json_depth


def depth(v: Any) -> int:
    if isinstance(v, dict):
        return 1 + max((depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((depth(x) for x in v), default=0)
    return 0


tricky = st.text(st.sampled_from('[]{}"\\ab/\n\u00e9'), max_size=12)  # brackets, quotes, escapes in strings
values = st.recursive(st.none() | st.integers() | st.floats(allow_nan=False) | tricky,
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky, inner, max_size=4),
                      max_leaves=40)


@given(st.lists(values, min_size=1, max_size=40), st.booleans())
def test_depth_of_any_body_is_its_nesting(items: list[Any], ascii_only: bool) -> None:
    body = json.dumps(items, ensure_ascii=ascii_only)
    want = depth(items)
    got = json_depth(body)
    if body.count("[") + body.count("{") <= MAX_JSON_DEPTH:
        assert got == 0  # too few brackets to matter: not scanned
    else:
        assert got == want, body


def test_deep_bodies_are_caught_past_the_bound_whatever_their_strings_hold() -> None:
    deep = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    assert json_depth(deep) == MAX_JSON_DEPTH + 1
    assert json_depth('["\\"]", ' + deep[1:]) == MAX_JSON_DEPTH + 1
    batch = json.dumps([{"ch": "tb.r", "data": {f"m{k}": k for k in range(50)}, "key": "a[{"} for _ in range(100)])
    assert json_depth(batch) == 3
    assert json_depth('["' + "[" * 200 + '"]') == 1  # brackets inside a string do not nest
