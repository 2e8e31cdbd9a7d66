"""Metrics to JSONL, and the training progress bar (tqdm)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value


class JsonlLogger:
    """Appends one JSON object per line; flushed per record so a killed run loses at most one."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._handle: TextIO | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Held open for the whole run; close() releases it.
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def log(self, record: dict[str, Any]) -> None:
        if self._handle is not None:
            self._handle.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a metrics file; a torn last line (the writer was killed) is skipped."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_jsonl(path: str | Path, max_step: int) -> None:
    """Drop records after ``max_step`` (a resumed run re-logs the steps the killed run had done)."""
    path = Path(path)
    if not path.exists():
        return
    from zoo.checkpoint import atomic_write_text

    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= max_step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


class ProgressBar:
    """Training progress through tqdm: rate, ETA and a ``loss/lr/eval`` postfix.

    On a terminal it is a live tqdm bar; elsewhere (a log file, a pipe, a test's captured
    stream) it writes a plain line every ``total // 20`` steps (and at the end) in tqdm's
    format, so a log shows rate and ETA without carriage-return noise. ``enabled=False``
    writes nothing. ``total`` may change while running (a time-budgeted run moves its end).
    """

    def __init__(self, total: int, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._total = total
        self.every = 1 if self.tty else max(1, total // 20)
        self._bar: Any = None  # a tqdm, opened at the first update
        self._start: float | None = None
        self._first = 0

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        self._total = value
        if self._bar is not None:
            self._bar.total = value
            self._bar.refresh()

    def update(self, step: int, **values: Any) -> None:
        """Progress to ``step`` (steps count from 1; a resumed run starts above 1)."""
        if not self.enabled:
            return
        postfix = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        if self.tty:
            self._tty_update(step, postfix)
            return
        if self._start is None:  # timed from the first update, as the terminal bar is
            self._start, self._first = time.perf_counter(), step
        if step % self.every == 0 or step >= self._total:
            self._line(step, postfix)

    def _tty_update(self, step: int, postfix: str) -> None:
        if self._bar is None:
            # the clock starts at the first update: a first step that compiles is not a rate
            self._bar = tqdm(
                total=self._total,
                initial=step,
                file=self.stream,
                unit="step",
                dynamic_ncols=True,
                leave=True,
            )
            self._bar.set_postfix_str(postfix)
            return
        self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.update(step - self._bar.n)

    def _line(self, step: int, postfix: str) -> None:
        text = tqdm.format_meter(
            step,
            self._total,
            time.perf_counter() - (self._start or 0.0),
            unit="step",
            initial=self._first,
            postfix=postfix or None,
            bar_format="{n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]",
        )
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
