from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

from harness.browsers import PageServer
from harness.servers import RedisProcess, ServerProcess, check_stalls


@pytest.fixture(autouse=True)
def loop_watchdog() -> Iterator[None]:
    """Every test server runs the event-loop watchdog; a stall fails the test it happened in."""
    check_stalls(report=False)  # a stall before this test (another's teardown) is not this test's
    yield
    check_stalls()


# A folder's tests share what they need to run; its marker lets a tier leave them out.
FOLDER_MARKS = {
    "e2e": "browser",
    "report": "browser",
    "hub": "hub",
    "faults": "faults",
    "redis": "redis",
    "bench": "bench",
    "install": "install",
    "docs": "jupyter",
}
# Kinds of test file by how long one takes, slowest first (see pytest_collection_modifyitems).
SLOW_FIRST = ("install", "hub", "jupyter", "faults", "browser", "bench", "redis", "process")
# Fixtures that start processes: a test using one is not in-process.
PROCESS_FIXTURES = {
    "server", "server_factory", "redis_server", "redis_factory", "redis_proc", "module_servers", "page_server",
    "feeder",
}


LONG = os.environ.get("PULSEBOARD_LONG") == "1"
# Property tests: no per-example time limit (a loaded CI machine is not a bug; speed lives in
# bench/), and the same examples every CI run (a failure reproduces); the long mode draws anew.
settings.register_profile("pulseboard", deadline=None, derandomize=not LONG, database=None)
settings.load_profile("pulseboard")
# The long mode's integrations import torch, Lightning and Transformers, which only it installs.
collect_ignore = [] if LONG else ["integrations"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Long-mode tests (torch, many examples) are left out, not skipped, unless PULSEBOARD_LONG=1.
    if not LONG:
        left_out = [item for item in items if item.get_closest_marker("long")]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = [item for item in items if not item.get_closest_marker("long")]
    for item in items:
        parts = item.path.parts
        folder = parts[parts.index("tests") + 1] if "tests" in parts else ""
        mark = FOLDER_MARKS.get(folder)
        if mark:
            item.add_marker(mark)
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker("process")
    # The slowest kinds of file first: the parallel run (`--dist loadfile` hands out files in
    # this order) then ends on short files instead of waiting on one worker's Hub or install.
    first_index: dict[object, int] = {}
    rank: dict[object, int] = {}
    for i, item in enumerate(items):
        first_index.setdefault(item.path, i)
        here = min((n for n, mark in enumerate(SLOW_FIRST) if item.get_closest_marker(mark)), default=len(SLOW_FIRST))
        rank[item.path] = min(rank.get(item.path, here), here)
    order = {id(item): (rank[item.path], first_index[item.path], i) for i, item in enumerate(items)}
    items.sort(key=lambda item: order[id(item)])


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    """Start `pulseboard serve` processes; every one is stopped after the test."""
    started: list[ServerProcess] = []

    def make(*args: str, start: bool = True, **kwargs: object) -> ServerProcess:
        proc = ServerProcess(*args, **kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc.start() if start else proc

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """One server on the memory broker, collector off."""
    return server_factory()


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisProcess]]:
    started: list[RedisProcess] = []

    def make(**kwargs: object) -> RedisProcess:
        proc = RedisProcess(**kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        proc.cleanup()


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisProcess]) -> RedisProcess:
    return redis_factory()


@pytest.fixture(scope="module")
def page_server() -> Iterator[PageServer]:
    """A second origin for widget pages, like a JupyterLab next to the pulseboard server."""
    srv = PageServer()
    try:
        yield srv
    finally:
        srv.close()
