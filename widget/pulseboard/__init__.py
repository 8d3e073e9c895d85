"""pulseboard: live metric charts in Jupyter, straight from a pulseboard server.

`LiveChart` is the notebook widget, `log` queues a message from training code and
returns at once (a background thread delivers it), `publish` sends one and waits
for its seq, and `subscribe` is an async iterator of envelopes with exact resume.

Every name here but `publish` is imported on first use, so `import pulseboard.protocol`
(the wire format the server shares) loads no sender thread, no fork hook and no anywidget.
`publish` (the function) is bound at once because its module has the same name: once
anything imported `pulseboard.publish`, the module would otherwise stand in its place.
No framework (numpy, pandas, Keras) is imported here either.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .publish import Publisher, PublishError, publish

__version__ = "0.1.0"

# public name -> the module that defines it
_HOMES = {
    "Client": "client",
    "LiveChart": "widget",
    "LogHandler": "loghandler",
    "Run": "tracking",
    "Runs": "runs_widget",
    "SenderStatus": "sender",
    "flush": "sender",
    "log": "sender",
    "sender_status": "sender",
    "subscribe": "client",
    "delete": "tracking",
    "finish": "tracking",
    "init": "tracking",
    "runs": "tracking",
    "watch": "tbwatch",  # TensorBoard's protobuf classes load only when a log dir is watched
}
__all__ = [
    "Client",
    "LiveChart",
    "LogHandler",
    "PublishError",
    "Publisher",
    "Run",
    "Runs",
    "SenderStatus",
    "delete",
    "finish",
    "flush",
    "init",
    "log",
    "publish",
    "runs",
    "sender_status",
    "subscribe",
    "watch",
]

if TYPE_CHECKING:
    from .client import Client, subscribe
    from .loghandler import LogHandler
    from .runs_widget import Runs
    from .sender import SenderStatus, flush, log, sender_status
    from .tbwatch import watch
    from .tracking import Run, delete, finish, init, runs
    from .widget import LiveChart


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pulseboard' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
