"""pulseboard: live metric charts in Jupyter, straight from a pulseboard server.

`LiveChart` is the notebook widget, `publish` sends a message from Python code
and `subscribe` is an async iterator of envelopes with exact resume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .publish import Publisher, PublishError, publish

__version__ = "0.1.0"
__all__ = ["Client", "LiveChart", "PublishError", "Publisher", "publish", "subscribe"]

if TYPE_CHECKING:
    from .client import Client, subscribe
    from .widget import LiveChart


def __getattr__(name: str) -> Any:
    # The widget and the async client pull in anywidget / websockets only when used.
    if name == "LiveChart":
        from .widget import LiveChart

        return LiveChart
    if name in ("Client", "subscribe"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'pulseboard' has no attribute {name!r}")
