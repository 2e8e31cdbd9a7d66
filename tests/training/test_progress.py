"""The training progress bar: a tqdm bar on a terminal, sparse plain lines elsewhere, nothing when off."""

from __future__ import annotations

import io

from zoo.training.metrics import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_bar_shows_rate_and_postfix() -> None:
    stream = Terminal()
    bar = ProgressBar(10, stream=stream)
    for step in range(1, 11):
        bar.update(step, loss=1.5, lr=0.003)
    bar.close()
    text = stream.getvalue()
    assert "\r" in text  # redrawn in place
    last = text.rstrip("\n").split("\r")[-1]
    assert "10/10" in last and "step/s" in last and "loss=1.5" in last and "lr=0.003" in last


def test_log_stream_gets_sparse_lines_with_rate_and_eta() -> None:
    stream = io.StringIO()
    bar = ProgressBar(100, stream=stream)
    for step in range(1, 101):
        bar.update(step, loss=2.0)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 20 and "\r" not in stream.getvalue()
    assert lines[-1].startswith("100/100 [") and "step/s" in lines[-1] and "loss=2" in lines[-1]
    assert "<" in lines[0]  # elapsed<remaining


def test_disabled_bar_writes_nothing() -> None:
    for stream in (io.StringIO(), Terminal()):
        bar = ProgressBar(5, enabled=False, stream=stream)
        for step in range(1, 6):
            bar.update(step, loss=1.0)
        bar.close()
        assert stream.getvalue() == ""


def test_total_can_move_and_resumed_run_starts_at_its_step() -> None:
    stream = Terminal()
    bar = ProgressBar(100, stream=stream)
    bar.update(41, loss=1.0)  # resumed after step 40
    bar.total = 50  # a time budget moved the end
    bar.update(42, loss=1.0)
    bar.close()
    assert "42/50" in stream.getvalue().split("\r")[-1]
