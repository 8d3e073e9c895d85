"""`LogHandler`: Python `logging` records as pulseboard messages, through the background sender."""

from __future__ import annotations

import logging
import numbers
from decimal import Decimal
from typing import Any

from .sender import Sender, default_sender

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class LogHandler(logging.Handler):
    """Publishes each record on `channel` as `{"level", "levelno", "logger", "message", ...}`
    plus every numeric field passed in `extra=` (so `log.info("epoch done", extra={"loss": 0.3})`
    charts `loss`). Like `pulseboard.log`, it queues and returns; it never raises.
    """

    def __init__(self, channel: str, level: int = logging.NOTSET, sender: Sender | None = None) -> None:
        super().__init__(level)
        self.channel = channel
        self._sender = sender

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data: dict[str, Any] = {
                "level": record.levelname,
                "levelno": record.levelno,
                "logger": record.name,
                "message": self.format(record),
            }
            for k, v in vars(record).items():
                if k not in _STANDARD and k not in data and _numeric(v):
                    data[k] = v
            (self._sender or default_sender()).log(self.channel, data, ts=record.created)
        except Exception:
            self.handleError(record)


def _numeric(v: Any) -> bool:
    if isinstance(v, (numbers.Real, Decimal)):
        return True
    return getattr(v, "ndim", None) == 0  # a numpy scalar or 0-d array


__all__ = ["LogHandler"]
