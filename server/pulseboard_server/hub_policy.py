"""What an exchanged JupyterHub token may do: least privilege by default, wider by policy.

Every Hub user reads `sys.*`, `shared.*` and `user.<user>.*` and publishes `user.<user>.*`
(`<user>` made channel-safe by `channel_safe`). `PULSEBOARD_HUB_READ` and
`PULSEBOARD_HUB_PUBLISH` (comma-separated globs) replace those defaults. A policy file,
`PULSEBOARD_HUB_POLICY` (JSON, or YAML when PyYAML is installed, which JupyterHub brings),
adds grants by Hub group and admin flag:

```yaml
groups:
  team-a: {read: [team-a.*, user.*], publish: [team-a.*]}
admin: {read: ["*"]}
```

A user's grants are the defaults plus those of each of their groups plus `admin` when
the Hub says they are an admin. `{user}` in any glob becomes the channel-safe user name.
A policy file that cannot be read or parsed is an error at startup and a 503 afterwards.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pulseboard.protocol import UNAVAILABLE, PulseboardError

DEFAULT_READ = ["sys.*", "shared.*", "user.{user}.*"]
DEFAULT_PUBLISH = ["user.{user}.*"]
MAX_POLICY_BYTES = 1_000_000  # a policy file is small; this bounds what one read can take
_SAFE = re.compile(r"[A-Za-z0-9-]")


def channel_safe(name: str) -> str:
    """`name` as a channel-name fragment: one-to-one, and with no `.`, `*`, `?` or `[`."""
    # surrogatepass: a name that isn't valid text still maps one-to-one (never raises)
    return "".join(
        c if _SAFE.fullmatch(c) else "".join(f"_{b:02x}" for b in c.encode("utf-8", "surrogatepass")) for c in name
    )


@dataclass(frozen=True)
class Grant:
    read: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    """Grants by Hub group and for admins, on top of the defaults."""

    groups: Mapping[str, Grant] = field(default_factory=dict)
    admin: Grant = Grant()

    def extra_for(self, groups: list[str], admin: bool) -> Grant:
        read: list[str] = []
        publish: list[str] = []
        picked = [self.groups[g] for g in groups if g in self.groups]
        if admin:
            picked.append(self.admin)
        for grant in picked:
            read += grant.read
            publish += grant.publish
        return Grant(tuple(read), tuple(publish))


def _globs(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(g, str) and g.strip() for g in value):
        raise ValueError(f"{where} must be a list of channel globs")
    return tuple(g.strip() for g in value)


def _keys_are_text(value: dict[Any, Any], where: str) -> None:
    """YAML reads unquoted null/no/off/on/yes and numbers as non-strings: a group `no:`
    would silently become "False". Refuse them and say how to write the name."""
    for k in value:
        if not isinstance(k, str):
            raise ValueError(
                f"{where} has a key YAML reads as {k!r}, not as a name: put it in quotes (\"no\": not no:)"
            )


def _grant(value: Any, where: str) -> Grant:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a mapping with 'read' and/or 'publish'")
    _keys_are_text(value, where)
    unknown = set(value) - {"read", "publish"}
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(unknown)}: only 'read' and 'publish'")
    return Grant(_globs(value.get("read"), f"{where}.read"), _globs(value.get("publish"), f"{where}.publish"))


def parse_policy(text: str, name: str = "policy") -> Policy:
    """A policy from JSON or YAML text; `ValueError` saying what is wrong."""
    try:
        return _parse(text, name)
    except RecursionError:  # both parsers recurse per level: a bound, not a crash
        raise ValueError(f"{name} is nested too deeply: a policy is a few levels deep") from None


def _parse(text: str, name: str) -> Policy:
    try:
        doc = json.loads(text)
    except ValueError:
        try:
            import yaml
        except ImportError:
            raise ValueError(f"{name} is not JSON (install PyYAML to write it in YAML)") from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{name} is neither JSON nor YAML: {e}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ValueError(f"{name} must be a mapping with 'groups' and/or 'admin'")
    _keys_are_text(doc, name)
    unknown = set(doc) - {"groups", "admin"}
    if unknown:
        raise ValueError(f"{name} has unknown keys {sorted(unknown)}: only 'groups' and 'admin'")
    groups = doc.get("groups") or {}
    if not isinstance(groups, dict):
        raise ValueError(f"{name}: 'groups' must map group names to grants")
    _keys_are_text(groups, "groups")
    return Policy(
        groups={g: _grant(v, f"groups.{g}") for g, v in groups.items()},
        admin=_grant(doc.get("admin") or {}, "admin"),
    )


_loaded: dict[str, tuple[float, int, Policy]] = {}
_lock = threading.Lock()


def load_policy(path: str) -> Policy:
    """The policy in `path`, re-read when the file changes; `PulseboardError(unavailable)` if bad."""
    try:
        st = os.stat(path)
        with _lock:
            hit = _loaded.get(path)
        if hit is not None and hit[:2] == (st.st_mtime, st.st_size):
            return hit[2]
        if st.st_size > MAX_POLICY_BYTES:
            raise ValueError(f"larger than {MAX_POLICY_BYTES} bytes")
        with open(path, encoding="utf-8") as f:
            policy = parse_policy(f.read(), f"PULSEBOARD_HUB_POLICY {path}")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise PulseboardError(UNAVAILABLE, f"hub mode: cannot use the policy file {path}: {detail}") from None
    with _lock:
        _loaded[path] = (st.st_mtime, st.st_size, policy)
    return policy
