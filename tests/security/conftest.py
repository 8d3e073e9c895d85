from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from harness.servers import ServerProcess


@pytest.fixture(scope="module")
def module_servers() -> Iterator[Callable[..., ServerProcess]]:
    """Like `server_factory`, but the servers live for the whole module (shared by its tests)."""
    started: list[ServerProcess] = []

    def make(*args: str, **kwargs: object) -> ServerProcess:
        proc = ServerProcess(*args, **kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        proc.stop()
