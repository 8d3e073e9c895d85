"""The chart options (smoothing, log y, thresholds, x, units) on the Python side: synced state and clear errors."""

from __future__ import annotations

import pytest

from pulseboard import LiveChart


def chart(**kwargs: object) -> LiveChart:
    return LiveChart("train.*", url="http://h:1", token="t", **kwargs)  # type: ignore[arg-type]


def test_chart_options_become_synced_state() -> None:
    w = chart(fields=["loss"], smoothing=0.6, log_y=True, thresholds={"loss": 0.1, "acc": {"below": 0.9}})
    state = w.get_state()
    assert state["channels"] == ["train.*"]  # patterns pass through to the browser
    assert (state["smoothing"], state["log_y"]) == (0.6, True)
    assert state["thresholds"] == {"loss": 0.1, "acc": {"below": 0.9}}
    assert state["max_points"] == 200_000


@pytest.mark.parametrize("window", [None, "all"])
def test_window_everything(window: object) -> None:
    assert chart(window=window).window is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"smoothing": 1.0}, "smoothing must be in [0, 1)"),
        ({"smoothing": -0.1}, "smoothing must be in [0, 1)"),
        ({"window": "week"}, "window must be"),
        ({"window": -5}, "window must be"),
        ({"thresholds": {"loss": "high"}}, "threshold for 'loss'"),
        ({"thresholds": {"loss": {"over": 1}}}, "threshold for 'loss'"),
    ],
)
def test_bad_chart_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
        chart(**kwargs)
