"""What a verified token lets its holder do: read and publish globs, checked per channel."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from pulseboard.protocol import FORBIDDEN, PulseboardError, bad_request


@dataclass(frozen=True, slots=True)
class Grants:
    """What a decoded token lets its holder do. Globs use `*`, `?` and `[...]`."""

    sub: str
    exp: float
    read: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()

    def can_read(self, ch: str) -> bool:
        return any(fnmatchcase(ch, g) for g in self.read)

    def can_publish(self, ch: str) -> bool:
        return any(fnmatchcase(ch, g) for g in self.publish)

    def check_read(self, ch: str) -> None:
        if not self.can_read(ch):
            raise PulseboardError(FORBIDDEN, f"token may not read {ch!r}")

    def check_publish(self, ch: str) -> None:
        if not self.can_publish(ch):
            raise PulseboardError(FORBIDDEN, f"token may not publish to {ch!r}")

    def covers(self, pattern: str) -> bool:
        """True when every channel `pattern` can match is readable.

        `pattern` is a channel name, or a name prefix followed by one trailing `*` (`train.*`).
        A prefix pattern is covered by a read grant `*` or a grant `<p>*` whose `<p>` (free of
        wildcards) starts the pattern's prefix; anything else is refused rather than guessed.
        """
        if not pattern.endswith("*"):
            return self.can_read(pattern)
        prefix = pattern[:-1]
        for g in self.read:
            if g == "*":
                return True
            gp = g[:-1]
            if g.endswith("*") and not any(c in gp for c in "*?[") and prefix.startswith(gp):
                return True
        return False


def grants_from_claims(claims: Mapping[str, Any]) -> Grants:
    """Turn verified JWT claims into `Grants`; raise `bad_request` on wrong shapes.

    The signature, `exp` and `nbf` must already have been checked by the caller.
    """
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise bad_request("token claim 'sub' must be a non-empty string")
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise bad_request("token claim 'exp' must be a number")
    return Grants(
        sub=sub,
        exp=float(exp),
        read=_globs(claims, "read"),
        publish=_globs(claims, "publish"),
    )


def _globs(claims: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = claims.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise bad_request(f"token claim {key!r} must be a list of channel globs")
    return tuple(value)
